"""The embedded Trino serving the example policy: every user's rows and values equal the DuckDB stream
filter's on the same rows, BI metadata works with rows still filtered, and the attack probes are refused.

One Trino for the module (it starts in 30-60 s; tests/fixtures/trino.py); the admin writes the table through
Trino's Iceberg connector into the engines' JDBC catalog. Spark's secure views are compared with DuckDB in
test_policies_spark.py.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from icetide.cli import main
from icetide.services.trino import TrinoServer
from tests.fixtures.trino import COLUMNS, PASSWORDS, USERS, duckdb_rows, prepare, query, seed, trino_environment
from tests.unit.policy_engine.support import KEY_ENV, SCHEMA_FILE, trino_example_text

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def trino_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state = tmp_path_factory.mktemp("trino-state")
    with trino_environment(state) as settings:
        server = TrinoServer(settings.state_dir)
        try:
            prepare(server)
            server.start(settings, settings.state_dir)
            yield seed(server, settings, state)
        finally:
            server.stop()


@pytest.mark.parametrize("user", [u for u in USERS if u != "dave"])
def test_trino_equals_the_duckdb_stream_filter(trino_env: dict[str, Any], user: str) -> None:
    got = sorted(query(trino_env, user, f"SELECT {COLUMNS} FROM vendas"), key=lambda r: r[0])
    want = sorted(duckdb_rows(trino_env, user), key=lambda r: r[0])
    assert got == want and got  # same rows, same masked values
    if user in ("ana", "bruno"):
        assert all(r[7] == Decimal(int(r[7]) // 100 * 100) for r in got) and {r[4] for r in got} == {
            "North" if user == "ana" else "South"}


def test_deny_by_default_and_probes(trino_env: dict[str, Any]) -> None:
    import trino

    with pytest.raises(trino.exceptions.TrinoUserError, match="Access Denied"):
        query(trino_env, "dave", "SELECT * FROM vendas")
    # predicates, GROUP BY and ORDER BY see masked values only
    assert query(trino_env, "ana", "SELECT count(*) FROM vendas WHERE customer_email LIKE 'secret%'") == [[0]]
    assert query(trino_env, "ana", "SELECT count(*) FROM vendas WHERE region <> 'North'") == [[0]]
    prices = query(trino_env, "ana", "SELECT price FROM vendas GROUP BY price ORDER BY price")
    assert all(p[0] % 100 == 0 for p in prices)
    for probe in ('SELECT * FROM "vendas$files"', 'SELECT * FROM "vendas$snapshots"',
                  'SELECT * FROM "vendas$partitions"'):
        with pytest.raises(trino.exceptions.TrinoUserError, match="Access Denied"):
            query(trino_env, "ana", probe)
    # time travel stays masked and filtered
    # (metadata tables are denied to every policy user, the admin too: the snapshot id comes from the catalog)
    from icetide.catalog import pyiceberg_catalog

    snap = pyiceberg_catalog(trino_env["settings"]).load_table("sales.vendas").current_snapshot().snapshot_id
    old = query(trino_env, "ana", f"SELECT DISTINCT region, customer_email FROM vendas FOR VERSION AS OF {snap}")
    assert old == [["North", "****"]]
    explain = json.dumps(query(trino_env, "erin", "EXPLAIN SELECT customer_email FROM vendas"))
    assert "secret" not in explain and KEY_ENV["ICETIDE_POLICY_KEY_K1"] not in explain


def test_hidden_columns_only_for_a_user_who_sees_everything(trino_env: dict[str, Any]) -> None:
    """The Iceberg connector's hidden columns (a row's file path with its partition values, the file's write time)
    are classified by no policy: refused to the filtered, masked analyst; the admin reads them."""
    import trino

    for column in ("$path", "$file_modified_time"):
        with pytest.raises(trino.exceptions.TrinoUserError, match="Access Denied"):
            query(trino_env, "ana", f'SELECT "{column}" FROM vendas')
        with pytest.raises(trino.exceptions.TrinoUserError, match="Access Denied"):
            query(trino_env, "ana", f'SELECT count(*) FROM vendas WHERE "{column}" IS NOT NULL')
        assert len(query(trino_env, "carla", f'SELECT "{column}" FROM vendas')) == len(trino_env["data"])


def test_bi_metadata_lists_tables_with_rows_still_filtered(trino_env: dict[str, Any]) -> None:
    for user in ("carla", "ana"):
        tables = query(trino_env, user, "SELECT table_schem, table_name FROM system.jdbc.tables "
                                        "WHERE table_cat = 'lake' AND table_schem = 'sales'")
        assert ["sales", "vendas"] in tables
        query(trino_env, user, "SELECT * FROM system.metadata.table_comments WHERE catalog_name = 'lake'")
    assert query(trino_env, "dave", "SELECT table_name FROM system.jdbc.tables WHERE table_cat = 'lake' "
                                    "AND table_schem = 'sales'") == []
    assert query(trino_env, "ana", "SELECT count(*) FROM vendas")[0][0] == 8


def test_passwords_tls_and_impersonation(trino_env: dict[str, Any]) -> None:
    import trino

    with pytest.raises(trino.exceptions.HttpError, match="401"):
        query(trino_env, "ana", "SELECT 1", password="wrong")
    # the BI account may act as a policy user and then sees exactly that user's rows; a user may not
    assert query(trino_env, "superset", "SELECT DISTINCT region FROM vendas", as_user="ana") == [["North"]]
    with pytest.raises(trino.exceptions.TrinoUserError, match="Access Denied"):
        query(trino_env, "ana", "SELECT 1", as_user="carla")
    status = trino_env["server"].status()
    assert status["running"] and status["jdbc_url"].startswith("jdbc:trino://127.0.0.1:")
    text = json.dumps(status)
    assert all(p not in text for p in PASSWORDS.values())
    assert trino_env["server"].secret_file.read_text().strip() not in text


def test_a_new_policy_is_reloaded(trino_env: dict[str, Any], tmp_path: Path) -> None:
    changed = tmp_path / "p.yaml"
    changed.write_text(trino_example_text().replace("region = user_attr('region')", "region = 'South'"))
    try:
        assert main(["policy", "apply", str(changed), "--target", "trino", "--schema", str(SCHEMA_FILE)]) == 0
        deadline = time.monotonic() + 20
        while query(trino_env, "ana", "SELECT DISTINCT region FROM vendas") != [["South"]]:
            assert time.monotonic() < deadline, "Trino did not reload rules.json"
            time.sleep(1)
    finally:
        assert main(["policy", "apply", str(trino_env["policy"]), "--target", "trino",
                     "--schema", str(SCHEMA_FILE)]) == 0
        time.sleep(3)
