"""`dr backup`: copy every file the configured tables need, plus the catalog database and the CDC positions.

What a table needs is read from ONE loaded metadata version (PyIceberg, no JVM): that metadata file, each retained
snapshot's manifest list, the live entries of their manifests (data, position/equality delete and deletion-vector
files), and the statistics files. One version, so a writer committing meanwhile cannot mix two states into a
backup; the version is the table's watermark. A file that vanishes while it is copied (snapshot expiry, a
compaction's cleanup) makes the table load again and list again, up to three times.

Order matters for the change stream: the CDC job's positions and the downstream database are copied BEFORE the
tables are listed, so each position is at or before the version backed up — after a restore the job can only
re-publish (the sinks skip replays by event position), never skip a commit.
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icetide.errors import ConfigError, TransientError

from batch.dr_store import BackupStore, FileEntry, new_backup_id

if TYPE_CHECKING:
    from icetide.settings import Settings
    from pyiceberg.catalog import Catalog
    from pyiceberg.table import Table

ATTEMPTS = 3


def cdc_positions_path(settings: Settings) -> Path:
    """Where a finished `cdc run --once` stores its positions (streaming/job.py's `write_positions`)."""
    return settings.state_dir / "cdc" / "positions.json"


def needed_files(table: Table) -> dict[str, str]:
    """Every file of the loaded metadata version → its kind, metadata file last (the order copies go in)."""
    from pyiceberg.manifest import DataFileContent

    io, meta = table.io, table.metadata
    files: dict[str, str] = {}
    manifests_seen: set[str] = set()
    for snapshot in meta.snapshots:
        for manifest in snapshot.manifests(io):
            if manifest.manifest_path in manifests_seen:
                continue
            manifests_seen.add(manifest.manifest_path)
            for entry in manifest.fetch_manifest_entry(io, discard_deleted=True):
                content = entry.data_file.content
                files[entry.data_file.file_path] = "data" if content == DataFileContent.DATA else "delete"
    files.update({path: "manifest" for path in sorted(manifests_seen)})
    for stats in [*meta.statistics, *meta.partition_statistics]:
        files[stats.statistics_path] = "statistics"
    files.update({s.manifest_list: "manifest-list" for s in meta.snapshots if s.manifest_list})
    files[table.metadata_location] = "metadata"
    return files


@dataclass
class TableBackup:
    """What one table's part of a backup says (and how much of it this backup copied)."""

    name: str
    metadata_location: str
    location: str
    snapshot_id: int | None
    sequence_number: int
    committed_at_ms: int | None
    files: list[FileEntry] = field(default_factory=list)
    copied_files: int = 0
    copied_bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"metadata_location": self.metadata_location, "location": self.location,
                "snapshot_id": self.snapshot_id, "sequence_number": self.sequence_number,
                "committed_at_ms": self.committed_at_ms, "copied_files": self.copied_files,
                "copied_bytes": self.copied_bytes, "files": [f.to_dict() for f in self.files]}


def backup_table(catalog: Catalog, name: str, store: BackupStore, held: dict[str, FileEntry]) -> TableBackup:
    """Copy what `name` needs at its current version and the store lacks; `held` grows with what was copied."""
    for attempt in range(1, ATTEMPTS + 1):
        table = catalog.load_table(name)
        current = table.metadata.current_snapshot()
        result = TableBackup(name, table.metadata_location, table.metadata.location,
                             current.snapshot_id if current else None,
                             int(getattr(table.metadata, "last_sequence_number", 0)),  # v1 tables have none
                             current.timestamp_ms if current else None)
        try:
            for path, kind in needed_files(table).items():
                entry = held.get(path) or store.find(path)
                if entry is None:
                    entry = store.copy_in(table.io, path, kind)
                    held[path] = entry
                    result.copied_files += 1
                    result.copied_bytes += entry.size
                result.files.append(entry)
            return result
        except FileNotFoundError as exc:  # removed by expiry or cleanup after we loaded: list again
            if attempt == ATTEMPTS:
                raise TransientError(f"{name}: files kept disappearing while copied ({exc}); run the backup "
                                     "again (is snapshot expiry running with a very short retention?)") from exc
    raise AssertionError("unreachable")


def table_names(settings: Settings, catalog: Catalog) -> list[str]:
    """`dr.tables`, or every table of every (top-level) namespace of the catalog."""
    if settings.dr.tables:
        return list(settings.dr.tables)
    return sorted(".".join(ident) for ns in catalog.list_namespaces() for ident in catalog.list_tables(ns))


def _sqlite_copy(source: Path) -> Callable[[Path], None]:
    """SQLite's online backup API: a consistent copy while writers keep writing."""

    def produce(target: Path) -> None:
        src, dst = sqlite3.connect(source), sqlite3.connect(target)
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()

    return produce


def _pg_dump(settings: Settings) -> Callable[[Path], None]:
    """`pg_dump --format=custom` of the catalog database; the password goes by environment, never argv."""
    uri = settings.catalog_uri[len("jdbc:"):].split("?")[0]
    binary = shutil.which("pg_dump")
    if binary is None:
        raise ConfigError("the catalog is PostgreSQL and pg_dump is not on PATH: install the PostgreSQL client")

    def produce(target: Path) -> None:
        env = dict(os.environ)
        if settings.catalog.password is not None:
            env["PGPASSWORD"] = settings.catalog.password.get_secret_value()
        argv = [binary, "--format=custom", f"--file={target}", uri]
        if settings.catalog.user:
            argv[1:1] = [f"--username={settings.catalog.user}"]
        done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise TransientError(f"pg_dump of the catalog failed: {done.stderr.strip().splitlines()[-1:]}")

    return produce


def backup_extras(settings: Settings, store: BackupStore,
                  backup_id: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The catalog database and the change stream's positions (files), and what was left out and why."""
    extras: list[dict[str, Any]] = []
    notes: dict[str, Any] = {}
    uri = settings.catalog_uri
    if settings.catalog.type == "rest":
        notes["catalog"] = ("REST catalog: its database is the catalog service's to back up; a restore registers "
                            "each table at its backed-up metadata file")
    elif uri.startswith("jdbc:sqlite:"):
        db = Path(uri[len("jdbc:sqlite:"):].removeprefix("file:").split("?")[0])
        if db.is_file():
            extras.append({"role": "catalog-sqlite", "source": str(db),
                           **store.add_extra(backup_id, "catalog.db", _sqlite_copy(db))})
    elif uri.startswith("jdbc:postgresql:"):
        extras.append({"role": "catalog-pg_dump", **store.add_extra(backup_id, "catalog.pgdump", _pg_dump(settings))})
    positions = cdc_positions_path(settings)
    if positions.is_file():
        extras.append({"role": "cdc-positions", "source": str(positions),
                       **store.add_extra(backup_id, "cdc-positions.json", lambda p: shutil.copyfile(positions, p))})
    if settings.sink.kind == "sqlite" and settings.sqlite_path.is_file():
        extras.append({"role": "downstream-sqlite", "source": str(settings.sqlite_path),
                       **store.add_extra(backup_id, "downstream.db", _sqlite_copy(settings.sqlite_path))})
    elif settings.sink.kind == "postgres":
        notes["downstream"] = "PostgreSQL sink: back it up with the database's own tools (its positions are in it)"
    return extras, notes


def run_backup(settings: Settings, catalog: Catalog, store: BackupStore, tables: list[str] | None = None,
               digest: Callable[[str, int | None], dict[str, Any]] | None = None) -> dict[str, Any]:
    """One backup (full the first time, incremental after): copy, then publish its manifest. With `digest`
    (name, snapshot id → rows and content digest, `dr_verify.content_digest`) each table's is recorded too."""
    started = dt.datetime.now(dt.UTC)
    backup_id = new_backup_id(started)
    clock = time.perf_counter()
    store.ready_to_write()
    held = store.known()
    extras, notes = backup_extras(settings, store, backup_id)
    results = [backup_table(catalog, name, store, held) for name in (tables or table_names(settings, catalog))]
    _recopy_pruned(catalog, store, results)
    records = {r.name: r.to_dict() for r in results}
    if digest is not None:
        for name, record in records.items():
            record["digest"] = digest(name, record["snapshot_id"])
    manifest = {
        "id": backup_id, "started_at": started.isoformat(), "finished_at": dt.datetime.now(dt.UTC).isoformat(),
        "previous": store.ids()[-1] if store.ids() else None, "catalog_name": settings.catalog.name,
        "warehouse": settings.warehouse, "tables": records,
        "extras": extras, "notes": notes,
    }
    path = store.commit(manifest)
    return summary(manifest, time.perf_counter() - clock, path)


def _recopy_pruned(catalog: Catalog, store: BackupStore, results: list[TableBackup]) -> None:
    """Before the manifest: a file this backup reused without copying (held by an older backup) is checked to
    be still in the store, and copied again if a concurrent `dr prune` deleted it meanwhile."""
    for result in results:
        io = None
        for i, entry in enumerate(result.files):
            if store.has_copy(entry.path):
                continue
            io = io or catalog.load_table(result.name).io
            result.files[i] = store.copy_in(io, entry.path, entry.kind)
            result.copied_files += 1
            result.copied_bytes += entry.size


def summary(manifest: dict[str, Any], seconds: float, path: str) -> dict[str, Any]:
    """What a backup did, without its file lists."""
    tables = {name: {k: v for k, v in t.items() if k != "files"} | {"files": len(t["files"]),
                                                                      "bytes": sum(f["size"] for f in t["files"])}
              for name, t in manifest["tables"].items()}
    return {"id": manifest["id"], "manifest": str(path), "seconds": round(seconds, 3), "tables": tables,
            "copied_files": sum(t["copied_files"] for t in tables.values()),
            "copied_bytes": sum(t["copied_bytes"] for t in tables.values()),
            "files": sum(t["files"] for t in tables.values()), "bytes": sum(t["bytes"] for t in tables.values()),
            "extras": [e["role"] for e in manifest["extras"]], "notes": manifest["notes"]}
