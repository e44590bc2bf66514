"""The embedded lake's least-privilege identities, its access log and S3 key rotation, on real SeaweedFS.

One lake for the session (tests/fixtures/lake.py). Each role is tried on what it must not do (and on what it
must), signed with the key `stack up` wrote for it; the access log must show both kinds of request under
the right identity and status; a rotation must leave a PyIceberg reader working and refuse the old key.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from icetide.catalog import pyiceberg_catalog
from icetide.services.access_log import AccessLogCollector, read_records
from icetide.services.identities import rotate_s3
from icetide.services.object_store import ObjectStore, s3_client
from icetide.settings import Settings
from icetide.storage import checkpoint_uri, embedded_credentials_file, roles, s3_endpoint, s3_key
from tests.fixtures.lake import LAKE_CATALOG
from tests.fixtures.spark import fresh_table_name

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.integration

BUCKET = "warehouse"
DATA, CHECKPOINT = "warehouse/sec/probe.bin", "checkpoints/sec/probe.bin"


def _client(settings: Settings, role: Any) -> Any:
    return s3_client(s3_endpoint(settings), s3_key(settings, role), settings.storage.region)


def _outcome(call: Any) -> str:
    from botocore.exceptions import ClientError

    try:
        result = call()
    except ClientError as exc:
        return "denied" if exc.response["ResponseMetadata"]["HTTPStatusCode"] == 403 else "error"
    errors = result.get("Errors") if isinstance(result, dict) else None  # a batch delete reports per key
    return "denied" if errors else "ok"


def _matrix(settings: Settings, role: Any) -> dict[str, str]:
    c = _client(settings, role)
    tag = secrets.token_hex(3)
    return {
        "get": _outcome(lambda: c.get_object(Bucket=BUCKET, Key=DATA)),
        "list": _outcome(lambda: c.list_objects_v2(Bucket=BUCKET, Prefix="warehouse/sec/")),
        "put": _outcome(lambda: c.put_object(Bucket=BUCKET, Key=f"warehouse/sec/{role}-{tag}", Body=b"x")),
        "delete": _outcome(lambda: c.delete_object(Bucket=BUCKET, Key=DATA + ".doomed")),
        "batch_delete": _outcome(lambda: c.delete_objects(Bucket=BUCKET,
                                                          Delete={"Objects": [{"Key": DATA + ".doomed"}]})),
        "checkpoint_get": _outcome(lambda: c.get_object(Bucket=BUCKET, Key=CHECKPOINT)),
        "checkpoint_list": _outcome(lambda: c.list_objects_v2(Bucket=BUCKET, Prefix="checkpoints/")),
        "checkpoint_put": _outcome(lambda: c.put_object(Bucket=BUCKET, Key=f"checkpoints/sec/{tag}", Body=b"c")),
        "list_everything": _outcome(lambda: c.list_objects_v2(Bucket=BUCKET)),
        "other_bucket": _outcome(lambda: c.create_bucket(Bucket=f"mine-{role}-{tag}")),
    }


OK, NO = "ok", "denied"
EXPECTED = {  # the policies of icetide/services/identities.py, as behaviour
    "writer": dict(get=OK, list=OK, put=OK, delete=NO, batch_delete=NO, checkpoint_get=NO, checkpoint_list=NO,
                   checkpoint_put=NO, list_everything=NO, other_bucket=NO),
    "cdc": dict(get=OK, list=OK, put=NO, delete=NO, batch_delete=NO, checkpoint_get=OK, checkpoint_list=OK,
                checkpoint_put=OK, list_everything=NO, other_bucket=NO),
    "maint": dict(get=OK, list=OK, put=OK, delete=OK, batch_delete=OK, checkpoint_get=NO, checkpoint_list=NO,
                  checkpoint_put=NO, list_everything=NO, other_bucket=NO),
    "bi": dict(get=OK, list=OK, put=NO, delete=NO, batch_delete=NO, checkpoint_get=NO, checkpoint_list=NO,
               checkpoint_put=NO, list_everything=NO, other_bucket=NO),
    "catalog": dict(get=OK, list=OK, put=OK, delete=OK, batch_delete=OK, checkpoint_get=NO, checkpoint_list=NO,
                    checkpoint_put=NO, list_everything=NO, other_bucket=NO),
    # reads the warehouse only; it writes to the backup bucket when dr.location is one (batch/test_dr_s3.py)
    "backup": dict(get=OK, list=OK, put=NO, delete=NO, batch_delete=NO, checkpoint_get=NO, checkpoint_list=NO,
                   checkpoint_put=NO, list_everything=NO, other_bucket=NO),
}


def test_each_role_is_denied_what_it_must_not_do(lake_settings: Settings) -> None:
    admin = ObjectStore(lake_settings.state_dir).client()
    admin.put_object(Bucket=BUCKET, Key=DATA, Body=b"data")
    admin.put_object(Bucket=BUCKET, Key=CHECKPOINT, Body=b"checkpoint")
    assert checkpoint_uri(lake_settings) == "s3://warehouse/checkpoints"
    for role in roles():
        admin.put_object(Bucket=BUCKET, Key=DATA + ".doomed", Body=b"to delete")
        assert _matrix(lake_settings, role) == EXPECTED[role], role
        path = embedded_credentials_file(lake_settings, role)
        assert path.stat().st_mode & 0o077 == 0 and path.parent.stat().st_mode & 0o077 == 0


def test_a_role_cannot_make_itself_keys_or_users(lake_settings: Settings) -> None:
    from botocore.exceptions import ClientError

    from icetide.services.identities import iam_client

    iam = iam_client(s3_endpoint(lake_settings), s3_key(lake_settings, "writer"), lake_settings.storage.region)
    for call in (lambda: iam.create_access_key(UserName="icetide-writer"), lambda: iam.create_access_key(),
                 lambda: iam.create_user(UserName="intruder"),
                 lambda: iam.put_user_policy(UserName="icetide-writer", PolicyName="p", PolicyDocument="{}")):
        with pytest.raises(ClientError) as refused:
            call()
        assert refused.value.response["Error"]["Code"] == "AccessDenied"


def _records_until(settings: Settings, wanted: Any, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    log = AccessLogCollector(settings.state_dir).log_file
    deadline = time.monotonic() + timeout_s
    while True:
        found = [r for r in read_records(log) if wanted(r)]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_the_access_log_records_allowed_and_denied_requests_by_identity(lake_settings: Settings) -> None:
    from click.testing import CliRunner

    from icetide.cli import root

    key = f"warehouse/sec/logged-{secrets.token_hex(4)}"
    bi = _client(lake_settings, "bi")
    assert _outcome(lambda: bi.put_object(Bucket=BUCKET, Key=key, Body=b"no")) == "denied"
    assert _outcome(lambda: _client(lake_settings, "maint").put_object(Bucket=BUCKET, Key=key, Body=b"y")) == "ok"
    assert _outcome(lambda: bi.get_object(Bucket=BUCKET, Key=key)) == "ok"
    found = _records_until(lake_settings, lambda r: r["key"] == key and r["identity"] == "icetide-bi"
                           and r["operation"] == "REST.GET.OBJECT")
    mine = [(r["identity"], r["operation"], r["status"], r["error_code"])
            for r in read_records(AccessLogCollector(lake_settings.state_dir).log_file) if r["key"] == key]
    assert found and mine == [("icetide-bi", "REST.PUT.OBJECT", 403, "AccessDenied"),
                              ("icetide-maint", "REST.PUT.OBJECT", 200, None),
                              ("icetide-bi", "REST.GET.OBJECT", 200, None)]
    # the command shows them, filtered by identity (a role or a user) and time; no secret in any record
    env = {"ICETIDE__STACK__STATE_DIR": str(lake_settings.state_dir), "ICETIDE__STORAGE__KIND": "s3"}
    out = CliRunner().invoke(root, ["stack", "access-log", "--json", "--identity", "bi", "--since", "5m"], env=env)
    assert out.exit_code == 0, out.output
    import json

    shown = [r for r in json.loads(out.output) if r["key"] == key]
    assert [(r["identity"], r["status"]) for r in shown] == [("icetide-bi", 403), ("icetide-bi", 200)]
    text = AccessLogCollector(lake_settings.state_dir).log_file.read_text()
    for role in (*roles(), "admin"):
        assert s3_key(lake_settings, role).secret_access_key.get_secret_value() not in text


def test_spark_writes_as_writer_and_pyiceberg_reads_as_bi(lake_spark: SparkSession, lake_settings: Settings) -> None:
    table = fresh_table_name("roles")
    lake_spark.sql(f"CREATE TABLE {LAKE_CATALOG}.{table} (id BIGINT) USING iceberg")
    lake_spark.sql(f"INSERT INTO {LAKE_CATALOG}.{table} VALUES (1), (2)")
    loaded = pyiceberg_catalog(lake_settings).load_table(table)
    assert sorted(r["id"] for r in loaded.scan().to_arrow().to_pylist()) == [1, 2]
    prefix = loaded.location().removeprefix(f"s3://{BUCKET}/")
    puts = _records_until(lake_settings, lambda r: (r["key"] or "").startswith(prefix + "/data/")
                          and r["operation"] == "REST.PUT.OBJECT")
    gets = _records_until(lake_settings, lambda r: (r["key"] or "").startswith(prefix + "/data/")
                          and r["operation"] == "REST.GET.OBJECT")
    assert {r["identity"] for r in puts} == {"icetide-writer"} and {r["status"] for r in puts} == {200}
    assert {r["identity"] for r in gets} == {"icetide-bi"}


def test_rotation_keeps_a_pyiceberg_reader_working_and_refuses_the_old_key(
        lake_spark: SparkSession, lake_settings: Settings) -> None:
    table = fresh_table_name("rot")
    lake_spark.sql(f"CREATE TABLE {LAKE_CATALOG}.{table} (id BIGINT) USING iceberg")
    lake_spark.sql(f"INSERT INTO {LAKE_CATALOG}.{table} VALUES (7)")
    catalog = pyiceberg_catalog(lake_settings, "bi")
    reader = catalog.load_table(table)
    old = s3_key(lake_settings, "bi")
    failures: list[str] = []
    reads = 0
    stop = threading.Event()

    def read_forever() -> None:
        nonlocal reads
        while not stop.is_set():
            try:
                assert [r["id"] for r in reader.refresh().scan().to_arrow().to_pylist()] == [7]
                reads += 1
            except Exception as exc:  # any failure of the reader is what the test is about
                failures.append(repr(exc)[:200])
            time.sleep(0.05)

    thread = threading.Thread(target=read_forever, daemon=True)
    thread.start()
    try:
        time.sleep(0.5)
        [result] = rotate_s3(lake_settings, "bi", grace_s=1.5)
        time.sleep(1.0)
    finally:
        stop.set()
        thread.join(10)
    assert failures == [] and reads > 5
    new = s3_key(lake_settings, "bi")
    assert new.access_key_id == result["access_key_id"] != old.access_key_id
    assert result["deleted"] == [old.access_key_id] and result["old_key_refused"] is True
    assert _outcome(lambda: s3_client(s3_endpoint(lake_settings), old, "us-east-1").get_object(
        Bucket=BUCKET, Key=reader.metadata_location.removeprefix(f"s3://{BUCKET}/"))) == "denied"
    assert catalog.properties["s3.access-key-id"] == new.access_key_id  # the reader took the new file
