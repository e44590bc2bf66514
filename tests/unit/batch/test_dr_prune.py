"""`dr prune` on a directory store, over generated histories: kept backups still check clean, nothing they do not
list remains, and a backup still copying (no manifest yet) keeps its files."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batch.dr_store import DirectoryStore, FileEntry, copy_key, manifest_key, new_backup_id

pytestmark = pytest.mark.unit

NAMES = [f"f{i}.parquet" for i in range(8)]


def _take(store: DirectoryStore, warehouse: Path, names: set[str], extra: bool) -> str:
    """One backup the way `run_backup` takes it: copy what the store lacks, extras, then the manifest."""
    backup_id = new_backup_id()
    entries: list[FileEntry] = []
    for name in sorted(names):
        source = warehouse / name
        if not source.exists():  # Iceberg never rewrites a file under the same name
            source.write_bytes(name.encode() * 100)
        entries.append(store.find(source.as_uri()) or store.copy_in(None, source.as_uri(), "data"))  # type: ignore[arg-type]
    extras = [store.add_extra(backup_id, "cdc-positions.json", lambda p: p.write_text(backup_id))] if extra else []
    store.commit({"id": backup_id, "tables": {"ns.t": {"files": [e.to_dict() for e in entries]}}, "extras": extras})
    return backup_id


def _stored(store: DirectoryStore) -> set[str]:
    return {p.relative_to(store.root).as_posix() for p in store.root.rglob("*") if p.is_file()}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=st.lists(st.tuples(st.sets(st.sampled_from(NAMES), max_size=6), st.booleans()), min_size=1, max_size=6),
       keep=st.integers(min_value=1, max_value=7))
def test_prune_keeps_every_kept_backup_whole_and_nothing_else(history: list[tuple[set[str], bool]], keep: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        warehouse, store = Path(scratch) / "w", DirectoryStore(Path(scratch) / "backups")
        warehouse.mkdir()
        ids = [_take(store, warehouse, names, extra) for names, extra in history]
        before = _stored(store)
        planned = store.prune(keep, grace_s=0, dry_run=True)
        assert _stored(store) == before and store.ids() == ids  # a dry run deletes nothing
        done = store.prune(keep, grace_s=0)
        assert {k: v for k, v in done.items() if k != "dry_run"} == {k: v for k, v in planned.items() if k != "dry_run"}
        assert store.ids() == ids[-keep:] and done["manifests_removed"] == ids[:-keep]
        referenced = set()
        for backup_id in store.ids():
            manifest = store.load(backup_id)
            store.check(manifest)  # raises IntegrityError on a missing or damaged file
            referenced |= {manifest_key(backup_id)} | {e["path"] for e in manifest["extras"]}
            referenced |= {copy_key(f["path"]) for f in manifest["tables"]["ns.t"]["files"]}
        assert _stored(store) == referenced  # no file left that no kept backup lists
        assert done["files_removed"] == len(before) - len(referenced) - len(done["manifests_removed"])


def test_a_backup_still_copying_keeps_its_files(tmp_path: Path) -> None:
    """Files copied after the oldest kept backup started, or within the grace period, may be a running backup's:
    left; once both are past, the next prune takes them."""
    warehouse, store = tmp_path / "w", DirectoryStore(tmp_path / "backups")
    warehouse.mkdir()
    _take(store, warehouse, {"f0.parquet"}, False)
    newest = _take(store, warehouse, {"f1.parquet"}, False)
    source = warehouse / "f2.parquet"
    source.write_bytes(b"in flight")
    store.copy_in(None, source.as_uri(), "data")  # type: ignore[arg-type]  # a running backup's copy, no manifest yet
    assert store.prune(1, grace_s=3600)["left_young"] == 2  # f0 (dropped with the oldest backup) is within --grace
    result = store.prune(1, grace_s=0)
    assert result["files_removed"] == 1 and result["left_young"] == 1 and store.ids() == [newest]
    assert store.has_copy(source.as_uri()) and not store.has_copy((warehouse / "f0.parquet").as_uri())
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)  # the grace period is over, no backup committed it
    assert store.prune(1, grace_s=3600, now=later)["left_young"] == 1  # still newer than the oldest kept backup
    store.commit({"id": new_backup_id(later), "tables": {"ns.t": {"files": []}}, "extras": []})
    assert store.prune(1, grace_s=3600, now=later + dt.timedelta(seconds=1))["files_removed"] == 2
    assert not store.has_copy(source.as_uri())


def test_prune_refuses_keep_zero(tmp_path: Path) -> None:
    from icetide.errors import ConfigError

    with pytest.raises(ConfigError, match="at least 1"):
        DirectoryStore(tmp_path).prune(0)
