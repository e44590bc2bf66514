"""Which files are live in a snapshot, and which delete files apply to which data file.

A snapshot's live files are the ADDED and EXISTING entries of its manifests. Delete files apply
by the format spec's sequence-number rules:

- a position delete (or deletion vector) with data sequence number p applies to a data file with
  data sequence number d ≤ p (same-commit position deletes apply), and only to the file it names;
- an equality delete with sequence number e applies to a data file with d < e (strictly: rows
  written in the same commit survive), in the same partition unless its spec is unpartitioned.

`FileRef` keeps what those rules need; the PyIceberg `DataFile` rides along for reading.
The rule functions are pure (unit-tested without any table).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pyiceberg.io import FileIO
    from pyiceberg.table.metadata import TableMetadata
    from pyiceberg.table.snapshots import Snapshot

DATA, POSITION_DELETES, EQUALITY_DELETES = 0, 1, 2
MANIFEST_CACHE_SIZE = 2048


@dataclass(frozen=True)
class FileRef:
    """A live file of a snapshot, with what the delete rules need."""

    path: str
    content: int  # DATA | POSITION_DELETES | EQUALITY_DELETES
    spec_id: int
    partition: tuple[Any, ...]
    data_seq: int
    equality_ids: tuple[int, ...] = ()
    referenced_file: str | None = None  # position deletes / DVs scoped to one data file
    record_count: int = 0
    added_snapshot_id: int | None = None
    raw: Any = field(default=None, compare=False, hash=False, repr=False)

    @property
    def group(self) -> tuple[int, tuple[Any, ...]]:
        """Rows of one partition of one spec: carry-overs and keys never cross it (see changelog)."""
        return (self.spec_id, self.partition)


def applies(delete: FileRef, data: FileRef, unpartitioned_specs: frozenset[int]) -> bool:
    """May `delete` remove rows of `data`? (Position deletes are then filtered by path.)"""
    if delete.content == POSITION_DELETES:
        if delete.referenced_file is not None and delete.referenced_file != data.path:
            return False
        return data.data_seq <= delete.data_seq
    if delete.content == EQUALITY_DELETES:
        if data.data_seq >= delete.data_seq:
            return False
        if delete.spec_id in unpartitioned_specs:
            return True
        return delete.spec_id == data.spec_id and delete.partition == data.partition
    return False


def applicable(
    deletes: Iterable[FileRef], data: FileRef, unpartitioned_specs: frozenset[int]
) -> frozenset[FileRef]:
    return frozenset(d for d in deletes if applies(d, data, unpartitioned_specs))


@dataclass(frozen=True)
class FileState:
    """Live data files and delete files of one snapshot (empty for "before the first snapshot")."""

    data: dict[str, FileRef]
    deletes: dict[str, FileRef]

    @classmethod
    def empty(cls) -> FileState:
        return cls({}, {})


@dataclass(frozen=True)
class SnapshotDiff:
    """What one snapshot changed in the file layout, relative to its parent."""

    added_data: list[FileRef]
    removed_data: list[FileRef]
    kept_data: list[FileRef]  # live before and after (their deletes may have changed)
    added_deletes: list[FileRef]
    removed_deletes: list[FileRef]

    @property
    def is_pure_append(self) -> bool:
        return not (self.removed_data or self.added_deletes or self.removed_deletes)


def diff(parent: FileState, child: FileState) -> SnapshotDiff:
    """Files added/removed between two states, sorted by path so the event order is stable."""

    def by_path(refs: Iterable[FileRef]) -> list[FileRef]:
        return sorted(refs, key=lambda ref: ref.path)

    return SnapshotDiff(
        added_data=by_path(r for p, r in child.data.items() if p not in parent.data),
        removed_data=by_path(r for p, r in parent.data.items() if p not in child.data),
        kept_data=by_path(r for p, r in child.data.items() if p in parent.data),
        added_deletes=by_path(r for p, r in child.deletes.items() if p not in parent.deletes),
        removed_deletes=by_path(r for p, r in parent.deletes.items() if p not in child.deletes),
    )


def unpartitioned_specs(metadata: TableMetadata) -> frozenset[int]:
    return frozenset(spec.spec_id for spec in metadata.partition_specs if not spec.fields)


class StateReader:
    """Reads (and caches) the live file state of snapshots; manifests are shared between them."""

    def __init__(self, io: FileIO) -> None:
        self._io = io
        self._manifest_cache: dict[str, list[FileRef]] = {}
        self._state_cache: dict[int, FileState] = {}

    def state(self, snapshot: Snapshot | None) -> FileState:
        if snapshot is None:
            return FileState.empty()
        cached = self._state_cache.get(snapshot.snapshot_id)
        if cached is not None:
            return cached
        data: dict[str, FileRef] = {}
        deletes: dict[str, FileRef] = {}
        for manifest in snapshot.manifests(self._io):
            for ref in self._manifest_refs(manifest):
                (data if ref.content == DATA else deletes)[ref.path] = ref
        state = FileState(data, deletes)
        if len(self._state_cache) > 8:  # the engine walks forward: keep only a few recent states
            self._state_cache.pop(next(iter(self._state_cache)))
        self._state_cache[snapshot.snapshot_id] = state
        return state

    def _manifest_refs(self, manifest: Any) -> list[FileRef]:
        """Manifests are immutable: cache their entries by path (bounded, oldest out first)."""
        cached = self._manifest_cache.pop(manifest.manifest_path, None)
        if cached is None:
            cached = [_ref(entry) for entry in manifest.fetch_manifest_entry(self._io, discard_deleted=True)]
            if len(self._manifest_cache) >= MANIFEST_CACHE_SIZE:
                self._manifest_cache.pop(next(iter(self._manifest_cache)))
        self._manifest_cache[manifest.manifest_path] = cached  # (re)inserted last: most recently used
        return cached


def _ref(entry: Any) -> FileRef:
    data_file = entry.data_file
    partition = tuple(data_file.partition._data) if data_file.partition is not None else ()
    referenced = getattr(data_file, "referenced_data_file", None)
    return FileRef(
        path=data_file.file_path,
        content=int(data_file.content),
        spec_id=int(data_file.spec_id or 0),
        partition=partition,
        data_seq=int(entry.sequence_number or 0),
        equality_ids=tuple(data_file.equality_ids or ()),
        referenced_file=referenced,
        record_count=int(data_file.record_count),
        added_snapshot_id=entry.snapshot_id,
        raw=data_file,
    )
