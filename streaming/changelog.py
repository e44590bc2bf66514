"""The changelog engine: row-level change events between two snapshots of an Iceberg table.

Engine-independent and read-only: PyIceberg reads the table metadata, manifests and data files;
nothing is written. For the snapshots s_a (exclusive) → s_b (inclusive) along the ancestor chain
of s_b, each snapshot S with parent P yields the difference between the live rows of P and of S,
restricted to the files S touched (docs/architecture.md, "Changelog semantics"):

- `replace` snapshots (compaction, rewritten delete files) yield nothing;
- data files added by S → INSERT of their rows live in S (same-commit position deletes applied);
- data files removed by S → DELETE of their rows that were live in P (earlier deletes applied, so
  an already-deleted row is never deleted twice);
- data files kept by S whose applicable delete files changed (new position deletes, deletion
  vectors, equality deletes; rules in `files.py`) → DELETE of the rows newly killed;
- then carry-over removal and, with key fields, update pairing (`changes.py`).

Memory: a pure append snapshot (no removed files, no delete files changed) is streamed record
batch by record batch (a few thousand rows held). Any other snapshot is processed per group of
rows that carry-overs and updates cannot cross — one partition of one spec — holding that group's
changed rows (DELETE and INSERT candidates) of that snapshot; when a key may move between
partitions (key fields that do not determine the partition) or files of several specs are
touched, the group is the whole snapshot. Delete files are cached per file (positions, or the
equality values), manifests per path.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import TYPE_CHECKING, Any

from icetide.errors import IcetideError
from icetide.events import Change, ChangeEvent, Row, Source, encode_row, key_of, net_changes

from streaming.changes import snapshot_changes
from streaming.files import FileRef, FileState, StateReader, applicable, diff, unpartitioned_specs
from streaming.rows import FileReader

if TYPE_CHECKING:
    from pyiceberg.schema import Schema
    from pyiceberg.table import Table
    from pyiceberg.table.snapshots import Snapshot


class ChangelogError(IcetideError):
    """The requested range cannot be read (unknown snapshot, not an ancestor, expired)."""


APPEND = "append"  # WorkItem.kind of a pure append's files
INITIAL = "initial"  # WorkItem.kind of a file read whole as an initial snapshot (op "r")


@dataclass(frozen=True)
class WorkItem:
    """One data file of a snapshot's changes: `kind` added | removed | kept (its deletes changed) |
    append (a pure append's file) | initial (its live rows, `plan_initial`); `group` names the rows it
    may pair with (`Changelog.plan`)."""

    group: str
    path: str
    kind: str


@dataclass(frozen=True)
class Start:
    """Where a changelog starts: after snapshot `after` (None = before the first), optionally
    preceded by an initial read (op `r`) of snapshot `after`."""

    after: int | None
    initial: bool = False


class Changelog:
    """Change events of one table. Keeps manifest / delete-file caches across `refresh()`es."""

    def __init__(
        self,
        table: Table,
        catalog_name: str,
        key_fields: Sequence[str] | None = None,
        topic_prefix: str = "icetide",
    ) -> None:
        self._table = table
        self._catalog_name = catalog_name
        self._configured_keys = list(key_fields) if key_fields else None
        if self._configured_keys:  # every row image has every column, so a key is one of them
            columns = {f.name for f in table.metadata.schema().fields}
            if missing := [k for k in self._configured_keys if k not in columns]:
                raise ChangelogError(f"key column(s) {missing} not in table {'.'.join(table.name())}")
        self._prefix = topic_prefix
        self._states = StateReader(table.io)
        self._open_reader: tuple[tuple[int, int], FileReader] | None = None
        namespace, name = table.name()[-2], table.name()[-1]
        self.namespace, self.name = str(namespace), str(name)

    # -- table metadata ------------------------------------------------------------------
    def refresh(self) -> None:
        self._table.refresh()

    @property
    def key_fields(self) -> list[str]:
        """Configured key columns, else the table's identifier fields (may be empty)."""
        if self._configured_keys:
            return self._configured_keys
        schema = self._table.metadata.schema()
        return [schema.find_column_name(field_id) or "" for field_id in schema.identifier_field_ids]

    @property
    def current_snapshot_id(self) -> int | None:
        snapshot = self._table.metadata.current_snapshot()
        return snapshot.snapshot_id if snapshot else None

    def snapshot(self, snapshot_id: int) -> Snapshot:
        found = self._table.metadata.snapshot_by_id(snapshot_id)
        if found is None:
            raise ChangelogError(f"table {self.namespace}.{self.name} has no snapshot {snapshot_id}")
        return found

    def resolve_start(self, spec: str) -> Start:
        """earliest | latest | initial | snapshot:<id> (inclusive) | timestamp:<ms> (commits at/after)."""
        metadata = self._table.metadata
        current = metadata.current_snapshot()
        if spec == "earliest":
            return Start(None)
        if spec == "latest":
            return Start(current.snapshot_id if current else None)
        if spec == "initial":
            return Start(current.snapshot_id if current else None, initial=current is not None)
        kind, _, value = spec.partition(":")
        try:
            number = int(value)
        except ValueError:
            raise ChangelogError(f"bad start {spec!r}: expected earliest, latest, initial, "
                                 "snapshot:<id> or timestamp:<ms>") from None
        if kind == "snapshot":
            return Start(self.snapshot(number).parent_snapshot_id)
        if kind == "timestamp":
            after = None
            for snap in self.ancestors(current.snapshot_id if current else None):
                if snap.timestamp_ms < number:
                    after = snap.snapshot_id
                    break
            return Start(after)
        raise ChangelogError(f"bad start {spec!r}")

    def ancestors(self, snapshot_id: int | None) -> Iterator[Snapshot]:
        """`snapshot_id` and its retained ancestors, newest first."""
        metadata = self._table.metadata
        snap = metadata.snapshot_by_id(snapshot_id) if snapshot_id is not None else None
        while snap is not None:
            yield snap
            parent = snap.parent_snapshot_id
            snap = metadata.snapshot_by_id(parent) if parent is not None else None

    def snapshots_between(self, after: int | None, upto: int | None) -> list[Snapshot]:
        """Snapshots in (after, upto] along upto's ancestors, oldest first."""
        if upto is None or upto == after:
            return []
        chain: list[Snapshot] = []
        for snap in self.ancestors(upto):
            if snap.snapshot_id == after:
                return chain[::-1]
            chain.append(snap)
        if after is not None:
            raise ChangelogError(
                f"snapshot {after} is not an ancestor of {upto} in {self.namespace}.{self.name} "
                "(expired, or the table was rolled back)"
            )
        return chain[::-1]

    # -- events --------------------------------------------------------------------------
    def events(self, after: int | None, upto: int | None = None, skip: int = 0) -> Iterator[ChangeEvent]:
        """Change events of (after, upto] (upto: the current snapshot); the first `skip` events of
        the first snapshot are not yielded (resuming inside a snapshot)."""
        upto = self.current_snapshot_id if upto is None else upto
        for index, snap in enumerate(self.snapshots_between(after, upto)):
            yield from self.snapshot_events(snap, skip=skip if index == 0 else 0)

    def net_events(self, after: int | None, upto: int | None = None) -> list[ChangeEvent]:
        """The net effect of (after, upto] per key: at most one event per key, carrying the source
        of the key's last change. Holds the range's changes in memory (meant for bounded ranges)."""
        keys = self.key_fields
        if not keys:
            raise ChangelogError("net changes need key fields (identifier fields or configured keys)")
        changes = list(self.events(after, upto))
        last = {key_of(event.row, keys): event for event in changes}
        net = net_changes(changes, keys)
        out = [(last[key_of(c.row, keys)], c) for c in net]
        out.sort(key=lambda pair: pair[0].source.position)
        return [ChangeEvent(c.op, c.before, c.after, event.source) for event, c in out]

    def snapshot_events(self, snapshot: Snapshot, skip: int = 0) -> Iterator[ChangeEvent]:
        """The events of one snapshot, ordinals 0.. in a deterministic order."""
        schema = self._schema(snapshot)
        for ordinal, change in enumerate(self._changes(snapshot, schema)):
            if ordinal >= skip:
                yield self.event(change, snapshot, schema, ordinal)

    def initial_events(self, snapshot_id: int, skip: int = 0) -> Iterator[ChangeEvent]:
        """Every live row of `snapshot_id` as op `r` (Debezium's initial snapshot read)."""
        snapshot = self.snapshot(snapshot_id)
        schema = self._schema(snapshot)
        ordinal = 0
        for item in self.plan_initial(snapshot):
            for _, row in self.derive(snapshot, item, schema):
                if ordinal >= skip:
                    yield self.event(Change("r", None, row), snapshot, schema, ordinal)
                ordinal += 1

    def _schema(self, snapshot: Snapshot) -> Schema:
        return self.schema_by_id(snapshot.schema_id)

    def schema_by_id(self, schema_id: int | None) -> Schema:
        """The schema with that id (the current one when unknown)."""
        metadata = self._table.metadata
        for schema in metadata.schemas:
            if schema.schema_id == schema_id:
                return schema
        return metadata.schema()

    def event(self, change: Change, snapshot: Snapshot, schema: Schema, ordinal: int) -> ChangeEvent:
        source = Source(
            catalog=self._catalog_name,
            db=self.namespace,
            table=self.name,
            snapshot_id=snapshot.snapshot_id,
            sequence_number=int(snapshot.sequence_number or 0),
            commit_ts_ms=snapshot.timestamp_ms,
            ordinal=ordinal,
            schema_id=schema.schema_id,
            name=self._prefix,
            snapshot=change.op == "r",
        )
        return ChangeEvent(op=change.op, before=change.before, after=change.after, source=source)

    # -- the semantics -------------------------------------------------------------------
    def _parent_state(self, snapshot: Snapshot) -> FileState | None:
        parent_id = snapshot.parent_snapshot_id
        if parent_id is None:
            return FileState.empty()
        parent = self._table.metadata.snapshot_by_id(parent_id)
        return self._states.state(parent) if parent is not None else None

    def _changes(self, snapshot: Snapshot, schema: Schema) -> Iterator[Change]:
        keys = self.key_fields
        items = self.plan(snapshot)
        if items and items[0].kind == APPEND:  # a pure append: streamed, nothing to pair
            for item in items:
                for _, row in self.derive(snapshot, item, schema):
                    yield Change("c", None, row)
            return
        for _, group in groupby(items, key=lambda item: item.group):
            deletes: list[dict[str, Any]] = []
            inserts: list[dict[str, Any]] = []
            for item in group:
                for side, row in self.derive(snapshot, item, schema):
                    (deletes if side == "d" else inserts).append(row)
            yield from snapshot_changes(deletes, inserts, keys)

    # -- one snapshot as work items (the serial engine above; parallel subtasks, derivation.py) --
    def plan(self, snapshot: Snapshot) -> list[WorkItem]:
        """The files a snapshot's changes come from, in the engine's order (group, path, kind).

        Rows of different groups never cancel or pair (module docstring), and every row of one key
        lies in one group, so deriving the items anywhere and pairing per key gives the same events
        per key as deriving them here in this order."""
        operation = snapshot.summary.operation.value if snapshot.summary else "append"
        if operation == "replace":
            return []
        parent, child = self._states_of(snapshot)
        changed = diff(parent, child)
        if changed.is_pure_append:
            return [WorkItem("", ref.path, APPEND) for ref in changed.added_data]
        reader = self._reader(snapshot, self._schema(snapshot))
        unpart = unpartitioned_specs(self._table.metadata)
        work: list[tuple[str, FileRef]] = [("removed", ref) for ref in changed.removed_data]
        work += [("added", ref) for ref in changed.added_data]
        touched = [*changed.added_deletes, *changed.removed_deletes]
        if touched:
            for ref in changed.kept_data:
                if any(self._effective(reader, d, ref, unpart) for d in touched):
                    work.append(("kept", ref))
        whole = not self._groupable([ref for _, ref in work], self.key_fields)
        items = [WorkItem(repr(None if whole else ref.group), ref.path, kind) for kind, ref in work]
        return sorted(items, key=lambda item: (item.group, item.path, item.kind))

    def plan_initial(self, snapshot: Snapshot) -> list[WorkItem]:
        """The files of an initial read of `snapshot` (every live row as op `r`), by path."""
        state = self._states.state(snapshot)
        return [WorkItem("", path, INITIAL) for path in sorted(state.data)]

    def derive(self, snapshot: Snapshot, item: WorkItem, schema: Schema | None = None) -> Iterator[tuple[str, Row]]:
        """The rows one work item takes out of the table ("d") or puts in ("i"), JSON-ready, in file order."""
        schema = schema or self._schema(snapshot)
        reader = self._reader(snapshot, schema)
        parent, child = self._states_of(snapshot)
        if item.kind == APPEND:
            for _, row in reader.rows(child.data[item.path]):
                yield "i", encode_row(row)
            return
        unpart = unpartitioned_specs(self._table.metadata)
        if item.kind == INITIAL:
            ref = child.data[item.path]
            kills = reader.kills(ref, applicable(child.deletes.values(), ref, unpart))
            for position, row in reader.rows(ref):
                if kills.empty or not kills.killed(position, row):
                    yield "r", encode_row(row)
            return
        ref = (parent if item.kind == "removed" else child).data[item.path]
        before = self._live_deletes(reader, parent, ref, unpart) if item.kind != "added" else None
        after = self._live_deletes(reader, child, ref, unpart) if item.kind != "removed" else None
        for position, row in reader.rows(ref):
            live_before = before is not None and (before.empty or not before.killed(position, row))
            live_after = after is not None and (after.empty or not after.killed(position, row))
            if live_before and not live_after:
                yield "d", encode_row(row)
            elif live_after and not live_before:
                yield "i", encode_row(row)

    def _states_of(self, snapshot: Snapshot) -> tuple[FileState, FileState]:
        """The live files before and after `snapshot` (an expired parent reads as empty: all inserts)."""
        parent = self._parent_state(snapshot)
        return parent if parent is not None else FileState.empty(), self._states.state(snapshot)

    def _reader(self, snapshot: Snapshot, schema: Schema) -> FileReader:
        """One reader per (snapshot, schema) at a time: its delete-file caches serve every item of it."""
        if self._open_reader is None or self._open_reader[0] != (snapshot.snapshot_id, schema.schema_id):
            self._open_reader = ((snapshot.snapshot_id, schema.schema_id),
                                 FileReader(self._table.metadata, self._table.io, schema))
        return self._open_reader[1]

    def _effective(self, reader: FileReader, delete: FileRef, data: FileRef, unpart: frozenset[int]) -> bool:
        if not applicable([delete], data, unpart):
            return False
        return delete.content != 1 or data.path in reader.referenced_paths(delete)

    def _live_deletes(self, reader: FileReader, state: FileState, ref: FileRef, unpart: frozenset[int]) -> Any:
        deletes = [d for d in state.deletes.values() if self._effective(reader, d, ref, unpart)]
        return reader.kills(ref, deletes)

    def _groupable(self, refs: list[FileRef], keys: list[str]) -> bool:
        """Can this snapshot's changes be processed one partition at a time? (see module docstring)"""
        specs = {ref.spec_id for ref in refs}
        if len(specs) > 1:
            return False
        if not keys or not specs:
            return True
        spec = self._table.metadata.specs()[specs.pop()]
        schema = self._table.metadata.schema()
        sources = {schema.find_column_name(f.source_id) for f in spec.fields}
        return sources <= set(keys)
