"""The embedded Trino serving the example policy: every user's rows and values equal the DuckDB stream
filter's on the same rows, BI metadata works with rows still filtered, and the attack probes are refused.

One Trino for the module (it starts in 30-60 s); the table is written by PyIceberg into the JDBC catalog
Trino reads. Spark's secure views are compared with DuckDB in test_policies_spark.py.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from icetide.cli import main
from icetide.services.trino import TrinoServer, write_private
from icetide.settings import load_settings
from policies.compiler import duckdb_sql
from tests.unit.policy_engine.support import KEY_ENV, SCHEMA_FILE, compile_text, rows, trino_example_text

pytestmark = pytest.mark.integration

USERS = ("ana", "bruno", "carla", "erin", "dave")
PASSWORDS = {u: f"pw-{u}-{os.getpid()}" for u in (*USERS, "superset")}
TABLE = "sales.vendas"


@pytest.fixture(scope="module")
def trino_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state = tmp_path_factory.mktemp("trino-state")
    env = {"ICETIDE__STACK__STATE_DIR": str(state), "ICETIDE__TRINO__BI_ACCOUNT": "superset", **KEY_ENV}
    saved = {k: os.environ.get(k) for k in [*env, "ICETIDE_CONFIG", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"]}
    os.environ.update(env)
    # this machine points requests at its own bundle, which would override the client's verify=
    for key in ("ICETIDE_CONFIG", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        os.environ.pop(key, None)
    settings = load_settings()
    data = rows(24)
    policy_file = state / "vendas-bi.yaml"
    policy_file.write_text(trino_example_text())
    server = TrinoServer(settings.state_dir)
    try:
        server.home.mkdir(parents=True, exist_ok=True)
        for user, password in PASSWORDS.items():
            server.set_password(user, password)
        write_private(server.rules_file, json.dumps({"catalogs": [{"user": "^carla$", "allow": "all"}]}))
        server.start(settings, settings.state_dir)
        env_ = {"server": server, "data": data, "policy": policy_file, "settings": settings}
        write_table(env_)  # as the admin, through Trino's Iceberg connector, into the engines' JDBC catalog
        assert main(["policy", "apply", str(policy_file), "--target", "trino", "--schema", str(SCHEMA_FILE)]) == 0
        time.sleep(3)  # the rules file's refresh period
        yield env_
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def write_table(env: dict[str, Any]) -> None:
    cur = connect(env, "carla").cursor()
    cur.execute("CREATE SCHEMA lake.sales")
    cur.fetchall()
    cur.execute("CREATE TABLE lake.sales.vendas (sale_id bigint, sale_ts timestamp(6), year integer, month integer, "
                "region varchar, product varchar, customer_email varchar, price decimal(10,2), quantity integer)")
    cur.fetchall()
    marks = ", ".join(["(?, ?, ?, ?, ?, ?, ?, ?, ?)"] * len(env["data"]))
    params = [r[c] for r in env["data"] for c in COLUMNS.split(", ")]
    cur.execute(f"INSERT INTO lake.sales.vendas VALUES {marks}", params)
    cur.fetchall()


def connect(env: dict[str, Any], user: str, password: str | None = None, as_user: str | None = None) -> Any:
    import trino
    from trino.auth import BasicAuthentication

    server: TrinoServer = env["server"]
    return trino.dbapi.connect(host="127.0.0.1", port=server.port(), user=as_user or user, http_scheme="https",
                               auth=BasicAuthentication(user, password or PASSWORDS[user]),
                               verify=str(server.ca_file), catalog="lake", schema="sales")


def query(env: dict[str, Any], user: str, sql: str, **kw: Any) -> list[list[Any]]:
    cur = connect(env, user, **kw).cursor()
    cur.execute(sql)
    return [list(r) for r in cur.fetchall()]


def duckdb_rows(env: dict[str, Any], user: str) -> list[list[Any]]:
    """The DuckDB stream filter's rows for `user`, over the very rows written to the table."""
    import duckdb
    import pyarrow as pa

    compiled = compile_text(env["policy"].read_text(), str(env["policy"]))
    src = pa.Table.from_pylist(env["data"])  # noqa: F841 (read by DuckDB's replacement scan)
    return [list(r) for r in duckdb.connect().sql(duckdb_sql(compiled, user, TABLE, "src")).fetchall()]


COLUMNS = "sale_id, sale_ts, year, month, region, product, customer_email, price, quantity"


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
