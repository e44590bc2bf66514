"""BI tools against the embedded Trino, as they connect: `icetide stack up` starts it (`trino.enabled: true`);
SQLAlchemy's Trino dialect (what Superset and other Python tools use) and the Trino JDBC driver (Tableau,
DBeaver) list schemas, tables and columns and query as two users with different policies, over TLS with
passwords, and see the metadata catalog's descriptions (`icetide catalog annotate`) as table and column
comments; every query, allowed or denied, lands in icetide's hash-chained audit log.

One stack (broker + Trino) for the module; the last test stops it with `icetide stack down`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from icetide import jvm
from icetide.services.trino import TrinoServer
from tests.fixtures.trino import PASSWORDS, prepare, query, seed, trino_environment

pytestmark = pytest.mark.integration

ICETIDE = str(Path(sys.executable).parent / "icetide")
PROBE = Path(__file__).parent / "jdbc" / "TrinoJdbcProbe.java"
DESCRIPTIONS = Path(__file__).resolve().parents[2] / "policies" / "examples" / "vendas.descriptions.yaml"
TABLE_COMMENT = "One row per sale of the shop, from the order system."
EMAIL_COMMENT = "The buyer's e-mail address. [pii: personal data]"
VENDAS_COLUMNS = ["sale_id", "sale_ts", "year", "month", "region", "product", "customer_email", "price", "quantity"]


def icetide(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ICETIDE, *args], env=os.environ.copy(), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def bi_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state = tmp_path_factory.mktemp("trino-bi-state")
    with trino_environment(state, ICETIDE__TRINO__ENABLED="true") as settings:
        server = TrinoServer(settings.state_dir)
        prepare(server)
        try:
            up = icetide("stack", "up", "--json")
            assert up.returncode == 0, up.stderr
            env = seed(server, settings, state)
            env["up"] = json.loads(up.stdout)
            done = icetide("catalog", "annotate", str(DESCRIPTIONS), "--policy", str(env["policy"]))
            assert done.returncode == 0, done.stderr
            yield env
        finally:
            icetide("stack", "down")


def test_stack_up_starts_trino_and_its_audit_receiver(bi_env: dict[str, Any]) -> None:
    for data in (bi_env["up"], json.loads(icetide("stack", "status", "--json").stdout)):
        trino = data["trino"]
        assert data["kafka"]["running"] and trino["enabled"] and trino["running"]
        assert trino["jdbc_url"] == bi_env["server"].jdbc_url() and trino["audit"]["running"]
    assert "trino      running  jdbc:trino://127.0.0.1:" in icetide("stack", "status").stdout


def engine(env: dict[str, Any], user: str) -> Any:
    """A SQLAlchemy engine as Superset builds one: `trino://user@host:port/catalog/schema`, TLS, password."""
    import sqlalchemy
    from trino.auth import BasicAuthentication

    server: TrinoServer = env["server"]
    return sqlalchemy.create_engine(
        f"trino://{user}@127.0.0.1:{server.port()}/lake/sales",
        connect_args={"auth": BasicAuthentication(user, PASSWORDS[user]), "http_scheme": "https",
                      "verify": str(server.ca_file)})


def test_sqlalchemy_lists_and_queries_as_each_user(bi_env: dict[str, Any]) -> None:
    import sqlalchemy

    seen = {}
    for user in ("ana", "bruno", "dave"):
        eng = engine(bi_env, user)
        try:
            inspector = sqlalchemy.inspect(eng)
            tables = inspector.get_table_names(schema="sales")
            seen[user] = (sorted(inspector.get_schema_names()), tables)
            if user == "dave":  # deny by default: nothing listed, and a query is refused
                with pytest.raises(sqlalchemy.exc.DBAPIError, match="Access Denied"), eng.connect() as conn:
                    conn.execute(sqlalchemy.text("SELECT count(*) FROM vendas")).all()
                continue
            columns = inspector.get_columns("vendas", schema="sales")
            assert [c["name"] for c in columns] == VENDAS_COLUMNS and columns[6]["comment"] == EMAIL_COMMENT
            # what Superset's table view asks
            assert inspector.get_table_comment("vendas", schema="sales") == {"text": TABLE_COMMENT}
            with eng.connect() as conn:
                got = conn.execute(sqlalchemy.text(
                    "SELECT DISTINCT region, customer_email, price % 100 = 0 FROM vendas")).all()
            assert {tuple(r) for r in got} == {("North" if user == "ana" else "South", "****", True)}
        finally:
            eng.dispose()
    assert "sales" in seen["ana"][0] and seen["ana"][1] == seen["bruno"][1] == ["vendas"]
    assert "sales" not in seen["dave"][0] and seen["dave"][1] == []


def jdbc(env: dict[str, Any], user: str, sql: str) -> list[list[str]]:
    """The JDBC probe's lines as `user` (the driver from the trino-jdbc jar group, the JDK 17 of the stack)."""
    java = jvm.java_home() / "bin" / "java"
    classpath = os.pathsep.join(str(j) for j in jvm.jars("trino-jdbc"))
    done = subprocess.run([str(java), "-cp", classpath, str(PROBE), env["server"].jdbc_url(), user, "sales", sql],
                          env={**os.environ, "TRINO_PASSWORD": PASSWORDS[user]}, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return [line.split("\t") for line in done.stdout.splitlines()]


def test_jdbc_metadata_and_queries_as_each_user(bi_env: dict[str, Any]) -> None:
    ana = jdbc(bi_env, "ana", "SELECT DISTINCT region, customer_email FROM lake.sales.vendas")
    assert [r[:5] for r in ana if r[0] == "table"] == [["table", "lake", "sales", "vendas", "TABLE"]]
    columns = {r[2]: r[4] for r in ana if r[0] == "column" and r[1] == "vendas"}
    # column REMARKS carry the metadata catalog's words (Trino 476 leaves a table's REMARKS empty)
    assert list(columns) == VENDAS_COLUMNS and columns["customer_email"] == EMAIL_COMMENT
    assert [r for r in ana if r[0] == "row"] == [["row", "North", "****"]]
    dave = jdbc(bi_env, "dave", "SELECT count(*) FROM lake.sales.vendas")
    assert not [r for r in dave if r[0] in ("table", "column", "row")]
    assert [r[0] for r in dave] == ["error"] and "Access Denied" in dave[0][2]


def audit_records(env: dict[str, Any]) -> list[dict[str, Any]]:
    log = env["settings"].state_dir / "audit" / "policy-audit.jsonl"
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def wait_for(env: dict[str, Any], query_id: str) -> dict[str, Any]:
    """The audit record of `query_id` (Trino posts its events asynchronously, within a second or so)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = [r for r in audit_records(env) if r.get("query_id") == query_id]
        if found:
            return found[0]
        time.sleep(0.5)
    raise AssertionError(f"no audit record for query {query_id}")


def test_show_columns_and_information_schema_carry_the_descriptions(bi_env: dict[str, Any]) -> None:
    shown = {r[0]: r[3] for r in query(bi_env, "bruno", "SHOW COLUMNS FROM vendas")}
    assert shown["customer_email"] == EMAIL_COMMENT and shown["price"] == "Unit price in euros. [financial: amounts]"
    assert query(bi_env, "ana", "SELECT comment FROM information_schema.columns WHERE table_schema = 'sales' "
                                "AND table_name = 'vendas' AND column_name = 'region'") == [
        ["Sales region of the shop that sold it. [public: safe for every reader]"]]
    assert query(bi_env, "ana", "SELECT count(*) FROM vendas")[0][0] == 8  # the docs commit kept the rows


def test_every_query_allowed_or_denied_is_audited(bi_env: dict[str, Any]) -> None:
    import trino

    from tests.fixtures.trino import connect

    cur = connect(bi_env, "ana").cursor()
    cur.execute("SELECT region, price FROM vendas WHERE quantity > 1")
    cur.fetchall()
    allowed = wait_for(bi_env, cur.query_id)
    assert allowed["user"] == "ana" and allowed["result"] == "allowed" and allowed["engine"] == "trino"
    assert allowed["resource"] == ["lake.sales.vendas"] and allowed["policy_id"] == "sales-access"
    assert set(allowed["columns"]["lake.sales.vendas"]) >= {"region", "price", "quantity"}
    assert "North" in allowed["filters"]["lake.sales.vendas"] and "price" in allowed["masks"]["lake.sales.vendas"]
    assert allowed["query"].startswith("SELECT region, price") and allowed["time"].startswith("20")

    cur = connect(bi_env, "dave").cursor()
    with pytest.raises(trino.exceptions.TrinoUserError, match="Access Denied") as refused:
        cur.execute("SELECT customer_email FROM vendas")
    denied = wait_for(bi_env, refused.value.query_id)
    assert denied["user"] == "dave" and denied["result"] == "denied" and "Access Denied" in denied["reason"]
    assert query(bi_env, "carla", "SELECT 1") == [[1]]

    done = icetide("policy", "audit-verify", "--json")  # Trino's records sit in the same chain as the others
    assert done.returncode == 0 and json.loads(done.stdout)["ok"], done.stdout
    assert {r["action"] for r in audit_records(bi_env)} >= {"apply", "select"}


def test_the_audit_receiver_takes_events_from_trino_only(bi_env: dict[str, Any]) -> None:
    server: TrinoServer = bi_env["server"]
    before = len(audit_records(bi_env))
    forged = json.dumps({"metadata": {"queryId": "forged"}, "context": {"user": "mallory"}}).encode()
    for headers in ({}, {"Authorization": "Bearer not-the-token"}):
        request = urllib.request.Request(server.audit.url(), data=forged, headers=headers, method="POST")
        with pytest.raises(urllib.error.HTTPError, match="403"):
            urllib.request.urlopen(request, timeout=5)
    assert not [r for r in audit_records(bi_env)[before:] if r["query_id"] == "forged"]


def test_a_bi_query_is_a_lineage_run_reading_the_table(bi_env: dict[str, Any]) -> None:
    """Trino's OpenLineage listener → the receiver's lineage path → the lineage log, in icetide's names:
    `icetide lineage sales.vendas` lists the query among the runs that read the table."""
    from icetide.lineage import events_path, read_events
    from tests.fixtures.trino import connect

    cur = connect(bi_env, "ana").cursor()
    cur.execute("SELECT count(*) FROM vendas")
    cur.fetchall()
    settings = bi_env["settings"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        runs = [e for e in read_events(events_path(settings.state_dir))
                if e["job"]["name"] == cur.query_id and e["eventType"] == "COMPLETE"]
        if runs:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"no lineage event for query {cur.query_id}")
    assert {(d["namespace"], d["name"]) for d in runs[0]["inputs"]} == {(settings.warehouse, "sales.vendas")}
    done = icetide("lineage", "sales.vendas", "--json")
    assert done.returncode == 0, done.stderr
    assert cur.query_id in [r["job"] for r in json.loads(done.stdout)["read_by"]]


def test_stack_down_stops_trino(bi_env: dict[str, Any]) -> None:
    """Last in the module: it stops the stack the others share."""
    server: TrinoServer = bi_env["server"]
    assert icetide("stack", "down").returncode == 0
    assert server.process.live_pid() is None and server.audit.live_pid() is None
    status = json.loads(icetide("stack", "status", "--json").stdout)
    assert not status["kafka"]["running"] and not status["trino"]["running"]
