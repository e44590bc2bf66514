"""A real lake: Iceberg's reference REST catalog server over SeaweedFS (S3), written by Spark, read by PyIceberg.

The lake services are the stack's own objects (`icetide.services.lake`), started once for the session from
their own state dir (tests/fixtures/lake.py); Spark is the session's, with this lake's catalog registered
beside the default one.
Encryption at rest is checked on the store's files on disk: a value written through Spark is not in them,
while the same file stored in an unencrypted control bucket is.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from icetide.catalog import pyiceberg_catalog
from icetide.services import lake
from icetide.services.object_store import ObjectStore, s3_client
from icetide.services.rest_catalog import RestCatalogServer
from icetide.settings import Settings, load_settings
from icetide.stack import Stack
from icetide.storage import s3_endpoint, s3_key
from tests.fixtures.lake import LAKE_CATALOG
from tests.fixtures.spark import fresh_table_name

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

pytestmark = pytest.mark.integration

CATALOG = LAKE_CATALOG  # this lake's catalog name in the session's Spark (beside the default `lake`)


@pytest.fixture(scope="module")
def lake_settings(s3_lake: Settings) -> Settings:
    """The session's lake (tests/fixtures/lake.py): REST catalog + S3, both running from their state dir."""
    return s3_lake


@pytest.fixture(scope="module")
def lake_spark(s3_lake_spark: SparkSession) -> SparkSession:
    """The session's Spark with this lake's catalog registered."""
    return s3_lake_spark


def _files_containing(folder: Path, needle: bytes) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_spark_writes_and_pyiceberg_reads_through_rest_and_s3(lake_spark: SparkSession,
                                                              lake_settings: Settings) -> None:
    table = fresh_table_name("rest")
    lake_spark.sql(f"CREATE TABLE {CATALOG}.{table} (id BIGINT, name STRING) USING iceberg")
    lake_spark.sql(f"INSERT INTO {CATALOG}.{table} VALUES (1, 'um'), (2, 'dois'), (3, 'três')")
    lake_spark.sql(f"DELETE FROM {CATALOG}.{table} WHERE id = 2")

    loaded = pyiceberg_catalog(lake_settings).load_table(table)
    assert loaded.location().startswith(f"s3://{lake_settings.storage.bucket}/warehouse/")
    rows = sorted(loaded.scan().to_arrow().to_pylist(), key=lambda r: r["id"])
    assert rows == [{"id": 1, "name": "um"}, {"id": 3, "name": "três"}]

    # the files are objects in the bucket, and Spark's writer asked for SSE-S3 on each
    client = s3_client(s3_endpoint(lake_settings), s3_key(lake_settings), lake_settings.storage.region)
    prefix = loaded.location().removeprefix(f"s3://{lake_settings.storage.bucket}/")
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=lake_settings.storage.bucket,
                                                      Prefix=prefix)["Contents"]]
    assert any(k.endswith(".parquet") for k in keys) and any(k.endswith(".metadata.json") for k in keys)
    for key in keys:
        assert client.head_object(Bucket=lake_settings.storage.bucket, Key=key)["ServerSideEncryption"] == "AES256"

    # the REST server keeps its own JDBC catalog; the local default's catalog file and warehouse are not made
    server = RestCatalogServer(lake_settings.state_dir)
    assert server.backing_db.is_file()
    assert not (lake_settings.state_dir / "catalog.db").exists()
    assert not (lake_settings.state_dir / "warehouse").exists()


def test_the_store_refuses_unsigned_and_wrongly_signed_requests(lake_settings: Settings) -> None:
    from botocore import UNSIGNED
    from botocore.config import Config
    from botocore.exceptions import ClientError
    from pydantic import SecretStr

    endpoint, key = s3_endpoint(lake_settings), s3_key(lake_settings)
    wrong = type(key)(key.access_key_id, SecretStr(secrets.token_urlsafe(30)))
    import boto3

    anonymous = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                             config=Config(signature_version=UNSIGNED, s3={"addressing_style": "path"}))
    for client in (anonymous, s3_client(endpoint, wrong, "us-east-1")):
        with pytest.raises(ClientError) as refused:
            client.list_objects_v2(Bucket=lake_settings.storage.bucket)
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_secrets_stay_in_owner_only_files_and_out_of_the_logs(lake_settings: Settings) -> None:
    store, server = ObjectStore(lake_settings.state_dir), RestCatalogServer(lake_settings.state_dir)
    for secret_file in (store.kek_file, store.credentials_file, store.identities_file, server.config_file):
        assert secret_file.stat().st_mode & 0o077 == 0, secret_file
    assert store.kek_file.parent.stat().st_mode & 0o077 == 0
    secret = s3_key(lake_settings).secret_access_key.get_secret_value()
    kek = store.kek_file.read_text().strip()
    for log in (store.log_file, server.process.out_file):
        text = log.read_text(errors="replace")
        assert secret not in text and kek not in text, log
    assert "listening on http://127.0.0.1:" in server.process.out_file.read_text()
    # the key-encryption key is the store's only from its environment: not kept beside the data it protects
    assert _files_containing(store.data_dir, kek.encode()) == []
    assert _files_containing(store.data_dir, bytes.fromhex(kek)) == []


def test_stack_status_reports_catalog_and_storage(lake_settings: Settings) -> None:
    reported = Stack(lake_settings).status().to_dict()
    assert reported["catalog"]["type"] == "rest"
    assert reported["catalog"]["uri"] == RestCatalogServer(lake_settings.state_dir).url()
    assert reported["catalog"]["running"] is True
    storage = reported["storage"]
    assert storage["kind"] == "s3" and storage["bucket"] == "warehouse" and storage["running"] is True
    assert storage["endpoint"] == s3_endpoint(lake_settings).rstrip("/")
    assert storage["data_dir"] == str(ObjectStore(lake_settings.state_dir).data_dir)


def test_values_written_through_spark_are_not_on_disk_but_are_in_a_plain_bucket(
        lake_spark: SparkSession, lake_settings: Settings) -> None:
    marker = f"icetide-{secrets.token_hex(12)}"
    table = fresh_table_name("sse")
    lake_spark.sql(f"CREATE TABLE {CATALOG}.{table} (id BIGINT, secret STRING) USING iceberg "
                   "TBLPROPERTIES ('write.parquet.compression-codec' = 'uncompressed')")
    lake_spark.sql(f"INSERT INTO {CATALOG}.{table} VALUES (1, '{marker}'), (2, '{marker}-2')")

    store = ObjectStore(lake_settings.state_dir)
    client = s3_client(s3_endpoint(lake_settings), s3_key(lake_settings), lake_settings.storage.region)
    bucket = lake_settings.storage.bucket
    prefix = pyiceberg_catalog(lake_settings).load_table(table).location().removeprefix(f"s3://{bucket}/")
    data_keys = [o["Key"] for o in client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/data/")["Contents"]]
    plaintext = [client.get_object(Bucket=bucket, Key=k)["Body"].read() for k in data_keys]
    assert any(marker.encode() in body for body in plaintext), "the marker must be literally in the data files"

    assert _files_containing(store.data_dir, marker.encode()) == []

    # the control: the same bytes in a bucket without default encryption, stored without the header
    store.ensure_bucket("plain-control", encrypted=False)
    for n, body in enumerate(plaintext):
        client.put_object(Bucket="plain-control", Key=f"copy-{n}.parquet", Body=body)
        assert "ServerSideEncryption" not in client.head_object(Bucket="plain-control", Key=f"copy-{n}.parquet")
    assert _files_containing(store.data_dir, marker.encode()) != []


def test_stop_all_stops_both_and_engines_are_told_to_start_the_stack(tmp_path: Path) -> None:
    from icetide.catalog import catalog_properties
    from icetide.errors import StackError

    settings = load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(tmp_path),
                                            "ICETIDE__CATALOG__TYPE": "rest", "ICETIDE__STORAGE__KIND": "s3"})
    lake.start(settings)
    assert RestCatalogServer(tmp_path).recorded_uri() and ObjectStore(tmp_path).recorded_endpoint()
    assert sorted(lake.stop_all(tmp_path)) == ["object-store", "rest-catalog"]
    with pytest.raises(StackError, match="icetide stack up"):
        catalog_properties(settings)
    assert lake.stop_all(tmp_path) == []


def test_a_restarted_store_reads_its_encrypted_objects_and_refuses_to_start_without_its_key(tmp_path: Path) -> None:
    from icetide.errors import StackError

    settings = load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(tmp_path), "ICETIDE__STORAGE__KIND": "s3"})
    store = ObjectStore()
    body = secrets.token_bytes(4096)
    try:
        store.start(settings, settings.state_dir)
        endpoint = store.recorded_endpoint()
        store.client().put_object(Bucket="warehouse", Key="k/blob.bin", Body=body)
        assert store.stop()
        restarted = ObjectStore()
        assert restarted.start(settings, settings.state_dir) == {"s3": endpoint}  # same port, same key
        got = restarted.client().get_object(Bucket="warehouse", Key="k/blob.bin")
        assert got["ServerSideEncryption"] == "AES256" and got["Body"].read() == body
        assert restarted.stop()
        kek = restarted.kek_file.read_text()
        restarted.kek_file.unlink()
        with pytest.raises(StackError, match="restore the key from its backup"):
            ObjectStore().start(settings, settings.state_dir)
        assert ObjectStore(settings.state_dir).live_pid() is None
        restarted.kek_file.write_text(kek)
    finally:
        lake.stop_all(settings.state_dir)
