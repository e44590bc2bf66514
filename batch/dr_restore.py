"""`dr restore`: put a backup's files back at their original paths and register each table at its backed-up version.

Every file of the chosen tables is re-hashed first; one that is missing or differs refuses the whole restore,
named, before anything is written. Then each file goes back where Iceberg's metadata says it lives (a file already
there must be the same bytes: Iceberg never rewrites a file in place), and the table is registered at its
backed-up metadata file — snapshot ids, sequence numbers and history are the backup's, so the change stream's
positions stay meaningful. A table still in the catalog is re-pointed only with `replace` (the pointer is
dropped without purging files, then registered).

With `location` the tables are written under another warehouse root instead, every path rewritten
(`dr_relocate`), and registered in the configured catalog.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icetide.errors import ConfigError
from icetide.events import topic_for

from batch.dr_backup import cdc_positions_path
from batch.dr_store import BackupStore, FileEntry, IntegrityError, copy_stream, open_target, sha256_of

if TYPE_CHECKING:
    from icetide.settings import Settings
    from pyiceberg.catalog import Catalog
    from pyiceberg.io import FileIO

SINK_POSITIONS_TABLE = "_icetide_positions"  # connectors/base.py POSITIONS_TABLE (a room the batch room cannot import)


def put_back(io: FileIO, store: BackupStore, entry: FileEntry) -> bool:
    """Copy one file to its original location; False if the same bytes are already there."""
    from batch.dr_store import is_local, local_path, source_exists

    if source_exists(io, entry.path):
        if is_local(entry.path):
            size, sha = sha256_of(local_path(entry.path))
            if (size, sha) != (entry.size, entry.sha256):
                raise IntegrityError(f"a different file is at {entry.path} ({size} bytes, sha256 {sha[:16]}…): "
                                     "refusing to overwrite a table file; move it aside first")
        return False
    with store.open_copy(entry.path) as source, open_target(io, entry.path) as target:
        size, sha = copy_stream(source, target)
    if (size, sha) != (entry.size, entry.sha256):
        raise IntegrityError(f"{entry.path}: the copy read back {size} bytes / {sha[:16]}…, not the manifest's")
    return True


def current_location(catalog: Catalog, name: str) -> str | None:
    """The metadata file the catalog points `name` at; None if absent or unreadable (lost with the table)."""
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    try:
        return str(catalog.load_table(name).metadata_location)
    except (NoSuchTableError, NoSuchNamespaceError, OSError):
        return None


def precheck(catalog: Catalog, name: str, metadata_location: str, replace: bool) -> None:
    """Refuse, before any file is written, to move a live table to another version without `replace`."""
    current = current_location(catalog, name)
    if current is not None and current != metadata_location and not replace:
        raise ConfigError(f"{name} exists in the catalog at another version ({current}); pass --replace to "
                          "re-point it at the backup (the pointer is dropped, no file is deleted)")


def register(catalog: Catalog, name: str, metadata_location: str) -> str:
    """Point the catalog's `name` at `metadata_location`: "registered", "replaced" or "unchanged"."""
    namespace = tuple(name.split(".")[:-1])
    if not catalog.namespace_exists(namespace):
        catalog.create_namespace(namespace)
    if current_location(catalog, name) == metadata_location:
        return "unchanged"
    status = "registered"
    if _in_catalog(catalog, name):
        catalog.drop_table(name)  # SqlCatalog and REST without purge: only the pointer goes
        status = "replaced"
    catalog.register_table(name, metadata_location)
    return status


def _in_catalog(catalog: Catalog, name: str) -> bool:
    namespace = tuple(name.split(".")[:-1])
    return tuple(name.split(".")) in {tuple(i) for i in catalog.list_tables(namespace)}


def _applied_sequences(settings: Settings) -> dict[str, Any]:
    """The newest event sequence the configured sink applied, per topic (empty: no sink state yet)."""
    query = f'SELECT topic, max(event_sequence) FROM "{SINK_POSITIONS_TABLE}" GROUP BY topic'
    if settings.sink.kind == "postgres":
        import psycopg

        if settings.sink.postgres_dsn is None:
            return {}
        with psycopg.connect(settings.sink.postgres_dsn.get_secret_value()) as pg:
            row = pg.execute("SELECT to_regclass(%s)", (f'"{SINK_POSITIONS_TABLE}"',)).fetchone()
            if row is None or row[0] is None:
                return {}
            return dict(pg.execute(query).fetchall())
    path = settings.sqlite_path
    if not path.is_file():
        return {}
    conn = sqlite3.connect(path)
    try:
        have = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name = ?",
                            (SINK_POSITIONS_TABLE,)).fetchone()
        return dict(conn.execute(query).fetchall()) if have else {}
    finally:
        conn.close()


def stream_ahead(settings: Settings, restored: dict[str, dict[str, Any]]) -> list[str]:
    """Tables whose downstream (the SQLite or PostgreSQL sink) applied commits past the restored version.

    New commits on the restored table reuse those sequence numbers, and the sink would skip them as replays:
    the downstream must come back from the same backup (`--downstream`) or be rebuilt."""
    applied = _applied_sequences(settings)
    warnings = []
    for name, table in restored.items():
        namespace, _, short = name.rpartition(".")
        sequence = applied.get(topic_for(settings.cdc.topic_prefix, namespace, short))
        if sequence is not None and int(sequence) > int(table["sequence_number"]):
            warnings.append(f"{name}: the downstream applied changes up to sequence {sequence}, the restored table "
                            f"ends at {table['sequence_number']}: restore the downstream from the same backup "
                            "(--downstream) or rebuild it, or new commits will be skipped as replays")
    return warnings


def _restore_positions(settings: Settings, store: BackupStore, extra: dict[str, Any], tables: list[str]) -> None:
    """The backed-up positions of the restored tables replace the current ones (others are kept)."""
    backed = json.loads(store.read_extra(extra))
    path = cdc_positions_path(settings)
    current = json.loads(path.read_text()) if path.is_file() else {}
    merged = {k: v for k, v in current.items() if k not in tables} | {k: v for k, v in backed.items() if k in tables}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(merged, indent=2, sort_keys=True))
    partial.replace(path)


def restore_catalog_db(settings: Settings, store: BackupStore, manifest: dict[str, Any]) -> None:
    """A lost SQLite catalog comes back from the backup (refused over an existing one)."""
    extra = next((e for e in manifest["extras"] if e["role"] == "catalog-sqlite"), None)
    if extra is None:
        raise ConfigError(f"backup {manifest['id']} holds no SQLite catalog database")
    target = Path(extra["source"])
    if target.exists():
        raise ConfigError(f"the catalog database {target} exists: restore the tables into it instead")
    store.restore_extra(extra, target)


def restore(settings: Settings, catalog_factory: Any, store: BackupStore, backup_id: str | None = None,
            tables: list[str] | None = None, replace: bool = False, catalog_db: bool = False,
            downstream: bool = False, allow_ahead: bool = False, location: str | None = None) -> dict[str, Any]:
    """Check, copy back and register; the timings add up to the restore's share of the RTO. With `location`
    (a warehouse root) the tables are written there instead, their paths rewritten (`dr_relocate`), and
    registered in the configured catalog."""
    manifest = store.load(backup_id)
    names = tables or sorted(manifest["tables"])
    unknown = [n for n in names if n not in manifest["tables"]]
    if unknown:
        raise ConfigError(f"backup {manifest['id']} has no table {', '.join(unknown)} "
                          f"(it has {', '.join(sorted(manifest['tables']))})")
    if location is None and manifest["warehouse"] != settings.warehouse:
        raise ConfigError(f"backup {manifest['id']} is of warehouse {manifest['warehouse']}, this configuration's "
                          f"is {settings.warehouse}: restore in place with this backup's configuration, or "
                          "under another warehouse root with --location")
    restored = {n: manifest["tables"][n] for n in names}
    ahead = [] if downstream else stream_ahead(settings, restored)  # it would skip the restored tables' new commits
    if ahead and not allow_ahead:
        raise ConfigError("refusing to restore, nothing was written: " + "; ".join(ahead)
                          + " (reset the downstream first, or pass --allow-downstream-ahead to restore anyway)")
    clock = time.perf_counter()
    checked = store.check(manifest, names)
    check_s = time.perf_counter() - clock
    if catalog_db:
        restore_catalog_db(settings, store, manifest)
        replace = True  # the database is older than the tables' watermarks
    catalog = catalog_factory()
    out: dict[str, Any] = {"backup": manifest["id"], "checked": checked, "tables": {}}
    from pyiceberg.io import load_file_io

    from batch.dr_relocate import relocate_table, relocated_location

    targets = {n: manifest["tables"][n]["metadata_location"] if location is None else
               relocated_location(manifest["tables"][n]["metadata_location"], manifest["warehouse"], location)
               for n in names}
    for name in names:
        precheck(catalog, name, targets[name], replace)
    copy_s = register_s = 0.0
    for name in names:
        table = manifest["tables"][name]
        start = time.perf_counter()
        entries = [FileEntry.from_dict(f) for f in table["files"]]
        if location is None:
            io = load_file_io(catalog.properties, table["metadata_location"])
            copied = sum(put_back(io, store, e) for e in entries)
        else:
            io = load_file_io(catalog.properties, targets[name])
            moved = relocate_table(io, store.open_copy, entries, manifest["warehouse"], location,
                                   table["metadata_location"])
            copied = len(moved["files"])
        middle = time.perf_counter()
        status = register(catalog, name, targets[name])
        copy_s += middle - start
        register_s += time.perf_counter() - middle
        out["tables"][name] = {"status": status, "snapshot_id": table["snapshot_id"],
                               "metadata_location": targets[name], "sequence_number": table["sequence_number"],
                               "files_copied": copied, "files": len(table["files"])}
    extras = {e["role"]: e for e in manifest["extras"]}
    if "cdc-positions" in extras:
        _restore_positions(settings, store, extras["cdc-positions"], names)
        out["cdc_positions"] = "restored"
    if downstream:
        if "downstream-sqlite" not in extras:
            raise ConfigError(f"backup {manifest['id']} holds no SQLite downstream database")
        for suffix in ("", "-wal", "-shm", "-journal"):  # stale WAL pages would be replayed into the copy
            settings.sqlite_path.with_name(settings.sqlite_path.name + suffix).unlink(missing_ok=True)
        store.restore_extra(extras["downstream-sqlite"], settings.sqlite_path)
        out["downstream"] = "restored"
    out["warnings"] = stream_ahead(settings, restored) if downstream else ahead  # the sink's positions: read once
    out["seconds"] = {"check": round(check_s, 3), "copy": round(copy_s, 3), "register": round(register_s, 3),
                      "total": round(time.perf_counter() - clock, 3)}
    return out
