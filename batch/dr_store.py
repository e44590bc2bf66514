"""The backup location of `icetide dr`: files copied as they are, and one manifest per backup.

`dr.location` is a directory (default `<state_dir>/backups`; `DirectoryStore`) or `s3://<bucket>/<prefix>`, a
second bucket with versioning and SSE-S3 default encryption (`dr_store_s3.S3Store`). Both have one interface
(`BackupStore`) and one layout of keys under their root::

    files/<scheme>/<host or _>/<path>   every table file, under its original absolute path
    backups/<id>.json                   one manifest per backup (written last: a backup without one is not a backup)
    extras/<id>/...                     the catalog database and the CDC positions of that backup

Iceberg files are immutable and never reused under the same name, so one copy per original path serves every
backup that lists it: an incremental backup copies only the paths no earlier manifest lists, and its own manifest
still lists every file its tables need (with size and sha256), so each backup restores on its own. Copying files
as they are — rather than rewriting their paths (`rewrite_table_path`) — keeps merge-on-read tables whole: that
procedure's copy plan has named rewritten position-delete files that did not exist at copy time (iceberg#12586,
#16662, #17498). A restore puts files back at their original paths, or rewrites them under another warehouse
root from these copies (`dr_relocate`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlparse

from icetide.errors import ConfigError, IcetideError

if TYPE_CHECKING:
    from pyiceberg.io import FileIO

FORMAT = 1
CHUNK = 4 * 2**20


class IntegrityError(IcetideError):
    """A backed-up file is missing or its size or sha256 differs from the manifest: the backup is refused."""


@dataclass(frozen=True)
class FileEntry:
    """One file a backup needs: its original location, size, sha256 and what it is to Iceberg."""

    path: str
    size: int
    sha256: str
    kind: str  # data | delete | manifest | manifest-list | metadata | statistics

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256, "kind": self.kind}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileEntry:
        return cls(str(data["path"]), int(data["size"]), str(data["sha256"]), str(data["kind"]))


def file_key(location: str) -> str:
    """`file:/w/t/x.parquet` → `file/_/w/t/x.parquet`; `s3://bucket/w/x` → `s3/bucket/w/x` (no `..` escapes)."""
    parsed = urlparse(location)
    scheme = parsed.scheme or "file"
    parts = [p for p in parsed.path.split("/") if p]
    if any(p in (".", "..") for p in parts) or not parts:
        raise ConfigError(f"not a file location a backup can hold: {location!r}")
    return "/".join([scheme, parsed.netloc or "_", *parts])


def is_local(location: str) -> bool:
    return urlparse(location).scheme in ("", "file")


def local_path(location: str) -> Path:
    return Path(urlparse(location).path)


def new_backup_id(now: dt.datetime | None = None) -> str:
    """A sortable id: the UTC start time to the microsecond (`20261202T021500.123456Z`)."""
    return (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%dT%H%M%S.%fZ")


@contextmanager
def open_source(io: FileIO, location: str) -> Iterator[IO[bytes]]:
    """Read a table file through the table's FileIO (local or object store)."""
    if is_local(location):
        with local_path(location).open("rb") as stream:
            yield stream
        return
    with io.new_input(location).open() as stream:
        yield stream  # type: ignore[misc]


@contextmanager
def open_target(io: FileIO, location: str) -> Iterator[IO[bytes]]:
    """Write a table file at its original location; never over an existing one (Iceberg files are immutable)."""
    if is_local(location):
        path = local_path(location)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("xb") as stream:
            yield stream
        return
    with io.new_output(location).create(overwrite=False) as stream:
        yield stream  # type: ignore[misc]


def source_exists(io: FileIO, location: str) -> bool:
    return local_path(location).is_file() if is_local(location) else bool(io.new_input(location).exists())


def copy_stream(source: IO[bytes], target: IO[bytes]) -> tuple[int, str]:
    """Copy in chunks, hashing on the way: (bytes, sha256 hex) of what was written."""
    digest = hashlib.sha256()
    size = 0
    while chunk := source.read(CHUNK):
        digest.update(chunk)
        target.write(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


def sha256_of(path: Path) -> tuple[int, str]:
    with path.open("rb") as stream:
        return hash_stream(stream)


@dataclass(frozen=True)
class Stored:
    """One object of a store: its key under the root, size and last-modified time (UTC)."""

    key: str
    size: int
    modified: dt.datetime


def id_time(backup_id: str) -> dt.datetime:
    """The start time a backup id names (`new_backup_id`)."""
    return dt.datetime.strptime(backup_id, "%Y%m%dT%H%M%S.%fZ").replace(tzinfo=dt.UTC)


def manifest_key(backup_id: str) -> str:
    return f"backups/{backup_id}.json"


def copy_key(location: str) -> str:
    return f"files/{file_key(location)}"


def extras_keys(manifest: dict[str, Any]) -> set[str]:
    return {str(e["path"]) for e in manifest.get("extras", [])}


class BackupStore(ABC):
    """Where backups go: a few primitives on keys (`files/…`, `backups/<id>.json`, `extras/<id>/…`) per kind
    of store, and everything `dr` does built on them here."""

    where: str  # the store's location, for messages

    # -- the primitives of a kind of store ---------------------------------------------------
    @abstractmethod
    def _exists(self, key: str) -> bool: ...

    @abstractmethod
    def _open(self, key: str) -> Any:
        """A context manager yielding a readable binary stream; FileNotFoundError when missing."""

    @abstractmethod
    def _put(self, key: str, source: IO[bytes]) -> tuple[int, str]:
        """Store `source` under `key` whole or not at all (streamed, hashed on the way): (bytes, sha256)."""

    @abstractmethod
    def _list(self, prefix: str) -> Iterator[Stored]: ...

    @abstractmethod
    def _delete(self, key: str) -> None: ...

    def ready_to_write(self) -> None:  # noqa: B027 — a directory needs no check
        """Raise ConfigError when the store must not receive a backup (an S3 bucket without protection)."""

    # -- built on them ------------------------------------------------------------------------
    def ids(self) -> list[str]:
        """Finished backups, oldest first."""
        return sorted(s.key.removeprefix("backups/").removesuffix(".json") for s in self._list("backups/")
                      if s.key.endswith(".json"))

    def load(self, backup_id: str | None = None) -> dict[str, Any]:
        """A backup's manifest (the newest without `backup_id`)."""
        ids = self.ids()
        if not ids:
            raise ConfigError(f"no backup in {self.where}: take one with `icetide dr backup`")
        chosen = backup_id or ids[-1]
        if chosen not in ids:
            raise ConfigError(f"no backup {chosen!r} in {self.where} (have {', '.join(ids[-5:])})")
        with self._open(manifest_key(chosen)) as stream:
            data: dict[str, Any] = json.loads(stream.read())
        if data.get("format") != FORMAT:
            raise ConfigError(f"{self.where}/{manifest_key(chosen)}: backup format {data.get('format')!r}, "
                              f"this icetide reads {FORMAT}")
        return data

    def known(self) -> dict[str, FileEntry]:
        """The table files the newest backup holds, by original path: what the next incremental skips (a file an
        older backup holds is found by `find`, so a round of `--every` reads one manifest, not all of them)."""
        ids = self.ids()
        return self._entries(ids[-1]) if ids else {}

    def has_copy(self, location: str) -> bool:
        return self._exists(copy_key(location))

    def find(self, location: str) -> FileEntry | None:
        """The entry of a file some older backup holds (after a table went back to an older version)."""
        if not self.has_copy(location):
            return None
        for backup_id in reversed(self.ids()):
            entry = self._entries(backup_id).get(location)
            if entry is not None:
                return entry
        return None

    def _entries(self, backup_id: str) -> dict[str, FileEntry]:
        return {item["path"]: FileEntry.from_dict(item)
                for table in self.load(backup_id)["tables"].values() for item in table["files"]}

    def open_copy(self, location: str) -> Any:
        """A context manager yielding a readable binary stream of the backed-up copy of the table file at
        `location` (its original path); FileNotFoundError when the store holds none."""
        return self._open(copy_key(location))

    def copy_in(self, io: FileIO, entry_path: str, kind: str) -> FileEntry:
        """Copy one table file into the store (whole or not at all: a crash leaves no half file)."""
        with open_source(io, entry_path) as source:
            size, sha = self._put(copy_key(entry_path), source)
        return FileEntry(entry_path, size, sha, kind)

    def add_extra(self, backup_id: str, name: str, produce: Callable[[Path], Any]) -> dict[str, Any]:
        """Write one extra file of a backup with `produce(path)`; return its entry (key, size, sha256)."""
        key = f"extras/{backup_id}/{name}"
        with tempfile.TemporaryDirectory(prefix="icetide-dr-") as scratch:
            path = Path(scratch) / name
            produce(path)
            with path.open("rb") as source:
                size, sha = self._put(key, source)
        return {"path": key, "size": size, "sha256": sha}

    def read_extra(self, extra: dict[str, Any]) -> bytes:
        with self._open(str(extra["path"])) as stream:
            data: bytes = stream.read()
        return data

    def restore_extra(self, extra: dict[str, Any], target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        with self._open(str(extra["path"])) as source, partial.open("wb") as out:
            copy_stream(source, out)
        partial.replace(target)

    def commit(self, manifest: dict[str, Any]) -> str:
        """Publish a backup: its manifest appears whole, after every file it names is in place."""
        text = json.dumps({"format": FORMAT, **manifest}, indent=1, sort_keys=True).encode()
        with tempfile.SpooledTemporaryFile() as source:
            source.write(text)
            source.seek(0)
            self._put(manifest_key(manifest["id"]), source)
        return f"{self.where}/{manifest_key(manifest['id'])}"

    def check(self, manifest: dict[str, Any], tables: list[str] | None = None) -> dict[str, Any]:
        """Re-hash every file of a backup (of `tables`, default all) against its manifest; raise IntegrityError
        naming the first file that is missing or differs, before anything is restored."""
        files = bytes_ = 0
        for name, table in manifest["tables"].items():
            if tables is not None and name not in tables:
                continue
            for item in table["files"]:
                entry = FileEntry.from_dict(item)
                self._check_one(copy_key(entry.path), entry.size, entry.sha256, f"{name}: {entry.path}")
                files += 1
                bytes_ += entry.size
        for extra in manifest.get("extras", []):
            self._check_one(extra["path"], int(extra["size"]), str(extra["sha256"]), extra["path"])
            files += 1
            bytes_ += int(extra["size"])
        return {"files": files, "bytes": bytes_}

    def _check_one(self, key: str, size: int, sha: str, what: str) -> None:
        at = f"{self.where}/{key}"
        try:
            with self._open(key) as stream:
                have_size, have_sha = hash_stream(stream)
        except FileNotFoundError:
            raise IntegrityError(f"backup file missing: {what} (expected at {at})") from None
        if have_size != size:
            raise IntegrityError(f"backup file damaged: {what} ({at}): {have_size} bytes, manifest says {size}")
        if have_sha != sha:
            raise IntegrityError(f"backup file damaged: {what} ({at}): sha256 {have_sha[:16]}…, "
                                 f"manifest says {sha[:16]}…")

    def prune(self, keep: int, *, grace_s: float = 3600.0, dry_run: bool = False,
              now: dt.datetime | None = None) -> dict[str, Any]:
        """Delete the manifests older than the newest `keep`, then every stored file no kept manifest lists.

        A file no kept manifest lists is left when it is newer than the oldest kept backup's start or than
        `grace_s`: it may belong to a backup still copying (its manifest comes last). Manifests go first, so
        a crash in between leaves unreferenced files (the next prune takes them), never a manifest naming a
        deleted file. A backup that reuses a file it did not copy checks it is still there before it commits
        (`dr_backup.run_backup`), so a prune running beside `dr backup --every` cannot break it."""
        if keep < 1:
            raise ConfigError(f"--keep must be at least 1, got {keep}")
        ids = self.ids()
        kept, dropped = ids[-keep:], ids[:-keep]
        referenced = {manifest_key(i) for i in kept}
        for backup_id in kept:
            manifest = self.load(backup_id)
            referenced |= {copy_key(f["path"]) for t in manifest["tables"].values() for f in t["files"]}
            referenced |= extras_keys(manifest)
        now = now or dt.datetime.now(dt.UTC)
        cutoff = min([id_time(kept[0]), now - dt.timedelta(seconds=grace_s)]) if kept else now
        for backup_id in dropped:
            if not dry_run:
                self._delete(manifest_key(backup_id))
        removed, freed, young = [], 0, 0
        for prefix in ("files/", "extras/"):
            for item in self._list(prefix):
                if item.key in referenced:
                    continue
                if item.modified >= cutoff:
                    young += 1
                    continue
                if not dry_run:
                    self._delete(item.key)
                removed.append(item.key)
                freed += item.size
        return {"kept": kept, "manifests_removed": dropped, "files_removed": len(removed), "bytes_freed": freed,
                "left_young": young, "dry_run": dry_run, "where": self.where}


def hash_stream(stream: IO[bytes]) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    while chunk := stream.read(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return size, digest.hexdigest()


class DirectoryStore(BackupStore):
    """A local backup directory (a mounted disk, a second machine's share)."""

    def __init__(self, root: Path) -> None:
        if "://" in str(root):
            raise ConfigError(f"not a backup directory: {root}")
        self.root = root
        self.where = str(root)

    def file_path(self, location: str) -> Path:
        return self.root / copy_key(location)

    def _exists(self, key: str) -> bool:
        return (self.root / key).is_file()

    def _open(self, key: str) -> Any:
        return (self.root / key).open("rb")

    def _put(self, key: str, source: IO[bytes]) -> tuple[int, str]:
        target = self.root / key
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        with partial.open("wb") as out:
            size, sha = copy_stream(source, out)
            out.flush()
            os.fsync(out.fileno())
        partial.replace(target)
        return size, sha

    def _list(self, prefix: str) -> Iterator[Stored]:
        folder = self.root / prefix
        if not folder.is_dir():
            return
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                stat = path.stat()
                yield Stored(path.relative_to(self.root).as_posix(), stat.st_size,
                             dt.datetime.fromtimestamp(stat.st_mtime, dt.UTC))

    def _delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)


def open_store(settings: Any) -> BackupStore:
    """The store `dr.location` names: an S3 bucket (`s3://bucket/prefix`) or a directory."""
    if settings.backup_bucket is not None:
        from batch.dr_store_s3 import S3Store

        return S3Store.of(settings)
    return DirectoryStore(settings.backup_dir)
