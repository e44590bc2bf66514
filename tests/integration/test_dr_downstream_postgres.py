"""`dr restore` against a PostgreSQL downstream the real sink wrote: a sink that applied commits past the backup
is named and the restore refused before any file is written (the SQLite side: tests/unit/batch/test_dr_store.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from batch.dr_restore import restore, stream_ahead
from connectors.postgres import PostgresConfig, PostgresSink
from icetide.errors import ConfigError
from icetide.settings import load_settings
from tests.unit.batch.test_dr_store import _CatalogReached, _never_a_catalog, one_file_backup
from tests.unit.test_connectors_sqlite import TOPIC, _changes

pytestmark = pytest.mark.integration


def test_a_postgres_downstream_ahead_of_the_backup_refuses_the_restore(postgres_db: str, tmp_path: Path) -> None:
    settings = load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(tmp_path / "state"),
                                            "ICETIDE__SINK__KIND": "postgres",
                                            "ICETIDE__SINK__POSTGRES_DSN": postgres_db})
    assert stream_ahead(settings, {"sales.t": {"sequence_number": 0}}) == []  # no sink state yet: nothing ahead
    changes, _ = _changes([(k % 5, k, False) for k in range(12)])  # sequences 0..11 on TOPIC (sales.t)
    with PostgresSink(PostgresConfig(postgres_db)) as sink:
        sink.apply(changes, {(TOPIC, 0): changes[-1].offset})
    newest = changes[-1].event.source.sequence_number

    assert stream_ahead(settings, {"sales.t": {"sequence_number": newest}}) == []
    restored = {"sales.t": {"sequence_number": newest - 4}, "sales.other": {"sequence_number": 1}}
    warnings = stream_ahead(settings, restored)
    assert len(warnings) == 1
    assert warnings[0].startswith(f"sales.t: the downstream applied changes up to sequence {newest}, "
                                  f"the restored table ends at {newest - 4}")

    store, source = one_file_backup(tmp_path, settings, "sales.t", newest - 4)
    with pytest.raises(ConfigError, match=rf"nothing was written: sales.t: the downstream applied changes up to "
                                          rf"sequence {newest}"):
        restore(settings, _never_a_catalog, store)
    assert not source.exists()
    with pytest.raises(_CatalogReached):  # --allow-downstream-ahead goes on to the catalog
        restore(settings, _never_a_catalog, store, allow_ahead=True)
