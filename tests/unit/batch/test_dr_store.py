"""The backup store without a JVM: path keys, copy + manifest round trip, damaged files named, SQLite extras."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from batch.dr_backup import backup_extras, cdc_positions_path
from batch.dr_store import DirectoryStore, FileEntry, IntegrityError, file_key
from icetide.errors import ConfigError
from icetide.settings import load_settings

pytestmark = pytest.mark.unit


def test_file_keys_keep_the_original_path_and_refuse_escapes() -> None:
    assert file_key("file:/w/t/data/a.parquet") == "file/_/w/t/data/a.parquet"
    assert file_key("file:///w/t/data/a.parquet") == "file/_/w/t/data/a.parquet"
    assert file_key("s3://bucket/warehouse/t/m.avro") == "s3/bucket/warehouse/t/m.avro"
    with pytest.raises(ConfigError):
        file_key("file:/w/../etc/passwd")


def _backup_of(store: DirectoryStore, source: Path, backup_id: str = "20260101T000000.000000Z") -> FileEntry:
    entry = store.copy_in(None, source.as_uri(), "data")  # type: ignore[arg-type]  # local files need no FileIO
    store.commit({"id": backup_id, "tables": {"ns.t": {"files": [entry.to_dict()]}}, "extras": []})
    return entry


def test_copy_manifest_round_trip_and_damage_is_named(tmp_path: Path) -> None:
    source = tmp_path / "warehouse" / "ns" / "t" / "data" / "part-0.parquet"
    source.parent.mkdir(parents=True)
    source.write_bytes(b"PAR1" + bytes(range(256)) * 10)
    store = DirectoryStore(tmp_path / "backups")
    entry = _backup_of(store, source)
    assert entry.size == source.stat().st_size and len(entry.sha256) == 64
    assert store.known() == {source.as_uri(): entry}
    assert store.check(store.load()) == {"files": 1, "bytes": entry.size}

    held = store.file_path(entry.path)
    damaged = bytearray(held.read_bytes())
    damaged[7] ^= 1
    held.write_bytes(bytes(damaged))
    with pytest.raises(IntegrityError, match=r"part-0.parquet.*sha256"):
        store.check(store.load())
    held.unlink()
    with pytest.raises(IntegrityError, match=r"missing: ns.t: .*part-0.parquet"):
        store.check(store.load())


def test_manifests_of_another_format_and_unknown_ids_are_refused(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    with pytest.raises(ConfigError, match="no backup"):
        store.load()
    (tmp_path / "backups").mkdir()
    (tmp_path / "backups" / "x.json").write_text(json.dumps({"format": 99, "tables": {}}))
    with pytest.raises(ConfigError, match="format 99"):
        store.load()
    with pytest.raises(ConfigError, match="no backup 'y'"):
        store.load("y")


def test_extras_are_online_copies_of_catalog_downstream_and_positions(tmp_path: Path) -> None:
    settings = load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(tmp_path / "state")})
    settings.state_dir.mkdir()
    for db in (settings.state_dir / "catalog.db", settings.sqlite_path):
        with sqlite3.connect(db) as conn:
            conn.execute("CREATE TABLE x (v INTEGER)")
            conn.execute("INSERT INTO x VALUES (42)")
        conn.close()
    cdc_positions_path(settings).parent.mkdir()
    cdc_positions_path(settings).write_text('{"ns.t": "{}"}')
    store = DirectoryStore(tmp_path / "backups")
    extras, notes = backup_extras(settings, store, "b1")
    assert [e["role"] for e in extras] == ["catalog-sqlite", "cdc-positions", "downstream-sqlite"] and not notes
    copy = sqlite3.connect(store.root / extras[0]["path"])
    assert copy.execute("SELECT v FROM x").fetchall() == [(42,)]
    copy.close()


def test_positions_path_is_the_cdc_jobs() -> None:
    from streaming.job import cdc_dir

    settings = load_settings(None, environ={})
    assert cdc_positions_path(settings) == cdc_dir(settings) / "positions.json"


def test_a_downstream_ahead_of_the_restored_table_is_named(tmp_path: Path) -> None:
    from batch.dr_restore import SINK_POSITIONS_TABLE, stream_ahead
    from connectors.base import POSITIONS_TABLE

    assert SINK_POSITIONS_TABLE == POSITIONS_TABLE
    settings = load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(tmp_path)})
    conn = sqlite3.connect(settings.sqlite_path)
    conn.execute(f'CREATE TABLE "{POSITIONS_TABLE}" (topic TEXT, kafka_partition INTEGER, applied_offset INTEGER, '
                 "event_sequence INTEGER, event_ordinal INTEGER)")
    conn.executemany(f'INSERT INTO "{POSITIONS_TABLE}" VALUES (?, 0, 9, ?, 0)',
                     [("icetide.ns.ahead", 7), ("icetide.ns.even", 5)])
    conn.commit()
    conn.close()
    warnings = stream_ahead(settings, {"ns.ahead": {"sequence_number": 5}, "ns.even": {"sequence_number": 5},
                                       "ns.unseen": {"sequence_number": 1}})
    assert len(warnings) == 1 and warnings[0].startswith("ns.ahead: the downstream applied changes up to sequence 7")


def one_file_backup(tmp_path: Path, settings: Any, table: str, sequence: int) -> tuple[DirectoryStore, Path]:
    """A backup of `table` holding one file at `sequence`, that file then lost: (the store, the lost file)."""
    source = tmp_path / "warehouse" / Path(*table.split(".")) / "data" / "part-0.parquet"
    source.parent.mkdir(parents=True)
    source.write_bytes(b"PAR1" + bytes(range(256)))
    store = DirectoryStore(tmp_path / "backups")
    entry = store.copy_in(None, source.as_uri(), "data")  # type: ignore[arg-type]  # local files need no FileIO
    store.commit({"id": "20260101T000000.000000Z", "warehouse": settings.warehouse, "extras": [],
                  "tables": {table: {"files": [entry.to_dict()], "sequence_number": sequence, "snapshot_id": 1,
                                     "metadata_location": source.as_uri()}}})
    source.unlink()  # the loss the restore would repair
    return store, source


class _CatalogReached(Exception):
    """Raised by the catalog factory: the restore got past its refusals to the point of writing."""


def _never_a_catalog() -> None:
    raise _CatalogReached


def test_restore_refuses_before_writing_when_the_downstream_is_ahead(tmp_path: Path) -> None:
    from batch.dr_restore import restore
    from connectors.base import POSITIONS_TABLE

    settings = load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(tmp_path / "state")})
    store, source = one_file_backup(tmp_path, settings, "ns.ahead", 5)
    settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(settings.sqlite_path)
    conn.execute(f'CREATE TABLE "{POSITIONS_TABLE}" (topic TEXT, kafka_partition INTEGER, applied_offset INTEGER, '
                 "event_sequence INTEGER, event_ordinal INTEGER)")
    conn.execute(f'INSERT INTO "{POSITIONS_TABLE}" VALUES (\'icetide.ns.ahead\', 0, 9, 7, 0)')
    conn.commit()
    conn.close()

    with pytest.raises(ConfigError, match=r"nothing was written: ns.ahead: the downstream applied changes up to "
                                          r"sequence 7.*--allow-downstream-ahead"):
        restore(settings, _never_a_catalog, store)
    assert not source.exists()
    with pytest.raises(_CatalogReached):  # the operator's override goes on to the catalog
        restore(settings, _never_a_catalog, store, allow_ahead=True)
