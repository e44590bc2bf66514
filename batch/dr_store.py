"""The backup location of `icetide dr`: one directory of files copied as they are, and one manifest per backup.

Layout (`dr.location`, default `<state_dir>/backups`)::

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
import shutil
from collections.abc import Iterator
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
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


class BackupStore:
    """A local backup directory (a mounted disk, a second machine's share)."""

    def __init__(self, root: Path) -> None:
        if "://" in str(root):
            raise ConfigError(f"setting 'dr.location': backups go to a directory for now, got {root}")
        self.root = root

    def file_path(self, location: str) -> Path:
        return self.root / "files" / file_key(location)

    def open_copy(self, location: str) -> Any:
        """A readable binary stream of the backed-up copy of the table file at `location`."""
        return self.file_path(location).open("rb")

    def extras_dir(self, backup_id: str) -> Path:
        return self.root / "extras" / backup_id

    def manifest_path(self, backup_id: str) -> Path:
        return self.root / "backups" / f"{backup_id}.json"

    def ids(self) -> list[str]:
        """Finished backups, oldest first."""
        folder = self.root / "backups"
        return sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []

    def load(self, backup_id: str | None = None) -> dict[str, Any]:
        """A backup's manifest (the newest without `backup_id`)."""
        ids = self.ids()
        if not ids:
            raise ConfigError(f"no backup in {self.root}: take one with `icetide dr backup`")
        chosen = backup_id or ids[-1]
        path = self.manifest_path(chosen)
        if not path.is_file():
            raise ConfigError(f"no backup {chosen!r} in {self.root} (have {', '.join(ids[-5:])})")
        data: dict[str, Any] = json.loads(path.read_text())
        if data.get("format") != FORMAT:
            raise ConfigError(f"{path}: backup format {data.get('format')!r}, this icetide reads {FORMAT}")
        return data

    def known(self) -> dict[str, FileEntry]:
        """The table files the newest backup holds, by original path: what the next incremental skips (a file an
        older backup holds is found by `find`, so a round of `--every` reads one manifest, not all of them)."""
        ids = self.ids()
        return self._entries(ids[-1]) if ids else {}

    def find(self, location: str) -> FileEntry | None:
        """The entry of a file some older backup holds (after a table went back to an older version)."""
        if not self.file_path(location).is_file():
            return None
        for backup_id in reversed(self.ids()):
            entry = self._entries(backup_id).get(location)
            if entry is not None:
                return entry
        return None

    def _entries(self, backup_id: str) -> dict[str, FileEntry]:
        return {item["path"]: FileEntry.from_dict(item)
                for table in self.load(backup_id)["tables"].values() for item in table["files"]}

    def copy_in(self, io: FileIO, entry_path: str, kind: str) -> FileEntry:
        """Copy one table file into the store (via a temporary name, so a crash leaves no half file)."""
        target = self.file_path(entry_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        with open_source(io, entry_path) as source, partial.open("wb") as out:
            size, sha = copy_stream(source, out)
            out.flush()
            os.fsync(out.fileno())
        partial.replace(target)
        return FileEntry(entry_path, size, sha, kind)

    def add_extra(self, backup_id: str, name: str, produce: Any) -> dict[str, Any]:
        """Write one extra file of a backup with `produce(path)`; return its entry (relative path, size, sha256)."""
        path = self.extras_dir(backup_id) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        produce(path)
        size, sha = sha256_of(path)
        return {"path": str(path.relative_to(self.root)), "size": size, "sha256": sha}

    def commit(self, manifest: dict[str, Any]) -> Path:
        """Publish a backup: its manifest appears whole, after every file it names is in place."""
        path = self.manifest_path(manifest["id"])
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        partial.write_text(json.dumps({"format": FORMAT, **manifest}, indent=1, sort_keys=True))
        partial.replace(path)
        return path

    def check(self, manifest: dict[str, Any], tables: list[str] | None = None) -> dict[str, Any]:
        """Re-hash every file of a backup (of `tables`, default all) against its manifest; raise IntegrityError
        naming the first file that is missing or differs, before anything is restored."""
        files = bytes_ = 0
        for name, table in manifest["tables"].items():
            if tables is not None and name not in tables:
                continue
            for item in table["files"]:
                entry = FileEntry.from_dict(item)
                self._check_one(self.file_path(entry.path), entry.size, entry.sha256, f"{name}: {entry.path}")
                files += 1
                bytes_ += entry.size
        for extra in manifest.get("extras", []):
            self._check_one(self.root / extra["path"], int(extra["size"]), str(extra["sha256"]), extra["path"])
            files += 1
            bytes_ += int(extra["size"])
        return {"files": files, "bytes": bytes_}

    @staticmethod
    def _check_one(path: Path, size: int, sha: str, what: str) -> None:
        if not path.is_file():
            raise IntegrityError(f"backup file missing: {what} (expected at {path})")
        have_size, have_sha = sha256_of(path)
        if have_size != size:
            raise IntegrityError(f"backup file damaged: {what} ({path}): {have_size} bytes, manifest says {size}")
        if have_sha != sha:
            raise IntegrityError(f"backup file damaged: {what} ({path}): sha256 {have_sha[:16]}…, "
                                 f"manifest says {sha[:16]}…")

    def restore_extra(self, extra: dict[str, Any], target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        shutil.copyfile(self.root / extra["path"], partial)
        partial.replace(target)
