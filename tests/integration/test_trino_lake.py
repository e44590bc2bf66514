"""The embedded Trino on the production lake shape: Iceberg's reference REST catalog over SeaweedFS (S3).

Spark writes the example table through the REST catalog and S3 as the `writer` role (the session's lake,
tests/fixtures/lake.py); Trino reads it through the same REST catalog and its native S3 file system as the
read-only `bi` role, with the example policy compiled to Trino rules (`policy apply --target trino`). Every
user's rows and values equal the DuckDB stream filter's; a write through Trino fails on S3 even for a user the
rules let write; and after the `bi` key is rotated (the old key deleted) the running Trino reads files
written after the rotation.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from icetide.services import trino_key
from icetide.services.access_log import AccessLogCollector, read_records
from icetide.services.identities import rotate_s3
from icetide.services.trino import TrinoServer, write_private
from icetide.settings import Settings
from icetide.storage import s3_key
from tests.fixtures.lake import LAKE_CATALOG, lake_environ
from tests.fixtures.spark import vendas_schema
from tests.fixtures.trino import (
    COLUMNS,
    PASSWORDS,
    TABLE,
    USERS,
    apply,
    duckdb_rows,
    prepare,
    query,
    trino_environment,
)
from tests.unit.policy_engine.support import rows, trino_example_text

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.integration

SPARK_TABLE = f"{LAKE_CATALOG}.{TABLE}"


def spark_write(spark: SparkSession, data: list[dict[str, Any]], create: bool = False) -> None:
    """Write `data` to the table through the REST catalog and S3 (Spark's role: writer)."""
    schema = vendas_schema()
    df = spark.createDataFrame([tuple(r[f.name] for f in schema.fields) for r in data], schema)
    if create:
        df.writeTo(SPARK_TABLE).using("iceberg").createOrReplace()
    else:
        df.writeTo(SPARK_TABLE).append()


@pytest.fixture(scope="module")
def lake_trino(lake_spark: SparkSession, lake_settings: Settings) -> Iterator[dict[str, Any]]:
    """Trino over the session's lake (its home under the lake's state dir) with the example policy applied."""
    data = rows(24)
    lake_spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {LAKE_CATALOG}.sales")
    spark_write(lake_spark, data, create=True)
    state = lake_settings.state_dir
    with trino_environment(state, **lake_environ(str(state))) as settings:
        assert (settings.catalog.type, settings.storage.kind, settings.catalog.name) == ("rest", "s3", LAKE_CATALOG)
        server = TrinoServer(settings.state_dir)
        policy_file = state / "vendas-bi.yaml"
        policy_file.write_text(trino_example_text())
        env = {"server": server, "data": data, "policy": policy_file, "settings": settings,
               "catalog": LAKE_CATALOG, "spark": lake_spark}
        try:
            prepare(server)
            started = time.monotonic()
            server.start(settings, settings.state_dir)
            env["start_s"] = round(time.monotonic() - started, 1)
            print(f"trino on the REST + S3 lake started in {env['start_s']} s")
            apply(policy_file)
            yield env
        finally:
            server.stop()


def _records(env: dict[str, Any], wanted: Any, since: float | None = None) -> list[dict[str, Any]]:
    """The object store's access records `wanted` picks (waiting up to 10 s for them to be collected)."""
    log = AccessLogCollector(env["settings"].state_dir).log_file
    deadline = time.monotonic() + 10
    while True:
        found = [r for r in read_records(log, since=since) if wanted(r)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def _seen(settings: Settings, since: float) -> list[tuple[Any, ...]]:
    """Who did what to which object name since `since` (a failure's account of the log; read only then)."""
    log = AccessLogCollector(settings.state_dir).log_file
    return sorted({(r["identity"], r["operation"], (r["key"] or "").rsplit("/", 1)[-1])
                   for r in read_records(log, since=since)}, key=str)


def test_the_catalog_file_reads_rest_and_s3_as_bi_without_a_key(lake_trino: dict[str, Any]) -> None:
    server: TrinoServer = lake_trino["server"]
    settings: Settings = lake_trino["settings"]
    catalog_file = server.etc / "catalog" / f"{LAKE_CATALOG}.properties"
    text = catalog_file.read_text()
    assert catalog_file.stat().st_mode & 0o777 == 0o600
    for line in ("iceberg.catalog.type=rest", "fs.native-s3.enabled=true", "s3.path-style-access=true",
                 "s3.sse.type=S3", "iceberg.table-statistics-enabled=false"):
        assert line in text.splitlines()
    # the bi key is followed through its file (the SDK's default chain in Trino's environment), never copied
    for role in ("bi", "writer", "catalog", "admin"):
        key = s3_key(settings, role)
        assert key.access_key_id not in text and key.secret_access_key.get_secret_value() not in text
    assert "jdbc" not in text and "local.location" not in text


@pytest.mark.parametrize("user", [u for u in USERS if u != "dave"])
def test_trino_on_the_lake_equals_the_duckdb_stream_filter(lake_trino: dict[str, Any], user: str) -> None:
    started = time.monotonic()
    got = sorted(query(lake_trino, user, f"SELECT {COLUMNS} FROM vendas"), key=lambda r: r[0])
    print(f"{user}: {len(got)} rows in {time.monotonic() - started:.2f} s")
    want = sorted(duckdb_rows(lake_trino, user), key=lambda r: r[0])
    assert got == want and got
    if user == "carla":
        assert len(got) == len(lake_trino["data"])  # the admin sees every row, in clear
        assert {r[6] for r in got} == {r["customer_email"] for r in lake_trino["data"]}


def test_deny_by_default_on_the_lake(lake_trino: dict[str, Any]) -> None:
    import trino

    with pytest.raises(trino.exceptions.TrinoUserError, match="Access Denied"):
        query(lake_trino, "dave", "SELECT * FROM vendas")
    assert query(lake_trino, "ana", "SELECT DISTINCT region FROM vendas") == [["North"]]


def test_the_bi_identity_cannot_write(lake_trino: dict[str, Any]) -> None:
    """With rules that let the admin write, an INSERT still fails: the bi key may not put objects."""
    import trino

    server: TrinoServer = lake_trino["server"]
    before = query(lake_trino, "carla", "SELECT count(*) FROM vendas")
    write_private(server.rules_file, json.dumps({"catalogs": [{"user": "^carla$", "allow": "all"}]}))  # prepare's
    time.sleep(3)
    try:
        with pytest.raises(trino.exceptions.TrinoQueryError) as refused:
            query(lake_trino, "carla", "INSERT INTO vendas (sale_id, region) VALUES (999, 'North')")
        assert refused.value.error_name != "PERMISSION_DENIED"  # not Trino's rules: S3 refused the data file
    finally:
        apply(lake_trino["policy"])
    query_id = refused.value.query_id
    puts = _records(lake_trino, lambda r: query_id in (r["key"] or "") and r["operation"] == "REST.PUT.OBJECT")
    assert puts and {(r["identity"], r["status"], r["error_code"]) for r in puts} == {
        ("icetide-bi", 403, "AccessDenied")}
    assert query(lake_trino, "carla", "SELECT count(*) FROM vendas") == before


def test_trino_follows_a_rotation_of_the_bi_key(lake_trino: dict[str, Any]) -> None:
    """`stack rotate s3 --role bi` under a running Trino: the old key deleted and refused, new files
    (written after the rotation) read with the new key by the same Trino process."""
    settings: Settings = lake_trino["settings"]
    pid = lake_trino["server"].process.live_pid()
    old = s3_key(settings, "bi")
    [done] = rotate_s3(settings, "bi", grace_s=2.0)
    assert done["deleted"] == [old.access_key_id] and done["old_key_refused"] is True
    assert done["grace_s"] > trino_key.LIFETIME_S  # Trino's copy of the old key expired before the delete
    new = s3_key(settings, "bi").access_key_id
    assert new != old.access_key_id
    rotated = time.time()

    more = [dict(r, sale_id=100 + r["sale_id"]) for r in rows(6)]
    spark_write(lake_trino["spark"], more)
    lake_trino["data"] = [*lake_trino["data"], *more]
    started = time.monotonic()
    got = sorted(query(lake_trino, "carla", f"SELECT {COLUMNS} FROM vendas"), key=lambda r: r[0])
    print(f"after the rotation: {len(got)} rows in {time.monotonic() - started:.2f} s")
    assert got == sorted(duckdb_rows(lake_trino, "carla"), key=lambda r: r[0])
    assert len(got) == 30
    ana = sorted(query(lake_trino, "ana", f"SELECT {COLUMNS} FROM vendas"), key=lambda r: r[0])
    assert ana == sorted(duckdb_rows(lake_trino, "ana"), key=lambda r: r[0])
    assert lake_trino["server"].process.live_pid() == pid  # the same Trino process
    # its reads since the rotation (the new data files among them) were signed with the new key and served
    gets = _records(lake_trino, lambda r: r["identity"] == "icetide-bi" and r["operation"] == "REST.GET.OBJECT"
                    and (r["key"] or "").startswith("warehouse/sales/vendas/"), since=rotated)
    assert gets, f"no bi GETs of the table since the rotation; records since: {_seen(settings, rotated)}"
    assert {r["access_key_id"] for r in gets} == {new} and {r["status"] for r in gets} <= {200, 206}
    assert any(r["key"].endswith(".parquet") for r in gets)
    assert all(p not in json.dumps(lake_trino["server"].status()) for p in PASSWORDS.values())
