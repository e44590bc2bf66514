"""Avro against a real Confluent-compatible schema registry (Apicurio Registry, ccompat API v7).

The plain-HTTP tests speak the Confluent REST protocol with urllib only, so they check the registry
itself; the last test sends icetide's own Avro schemas and wire format through it.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest
from pyiceberg.schema import Schema
from pyiceberg.types import DateType, DecimalType, LongType, NestedField, StringType, TimestamptzType

from icetide.avro import AvroCodec, key_schema, schema_id_of, value_schema
from icetide.events import ChangeEvent, Source
from icetide.registry import Registry
from icetide.schema_registry import SchemaRegistryClient

pytestmark = pytest.mark.integration

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
ROW = {"type": "record", "name": "Row", "namespace": "io.icetide.test",
       "fields": [{"name": "id", "type": "long"}, {"name": "name", "type": ["null", "string"], "default": None}]}


def http(method: str, url: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """One request; returns (status, decoded JSON), HTTP errors included."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": CONTENT_TYPE, "Accept": CONTENT_TYPE})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def subject() -> str:
    return f"test.{uuid.uuid4().hex[:10]}-value"


def register(base: str, name: str, schema: dict[str, Any]) -> int:
    status, answer = http("POST", f"{base}/subjects/{name}/versions", {"schema": json.dumps(schema)})
    assert status == 200, answer
    return int(answer["id"])


def test_register_then_read_back_by_id(schema_registry: str) -> None:
    name = subject()
    schema_id = register(schema_registry, name, ROW)

    status, answer = http("GET", f"{schema_registry}/schemas/ids/{schema_id}")
    assert status == 200
    assert json.loads(answer["schema"]) == ROW
    assert http("GET", f"{schema_registry}/subjects/{name}/versions") == (200, [1])
    status, latest = http("GET", f"{schema_registry}/subjects/{name}/versions/latest")
    assert (status, latest["id"], latest["version"], latest["subject"]) == (200, schema_id, 1, name)
    assert name in http("GET", f"{schema_registry}/subjects")[1]


def test_registering_again_is_idempotent_and_a_new_schema_is_a_new_version(schema_registry: str) -> None:
    name = subject()
    first = register(schema_registry, name, ROW)
    assert register(schema_registry, name, ROW) == first

    evolved = {**ROW, "fields": [*ROW["fields"], {"name": "qty", "type": ["null", "long"], "default": None}]}
    second = register(schema_registry, name, evolved)
    assert second != first
    assert http("GET", f"{schema_registry}/subjects/{name}/versions") == (200, [1, 2])
    assert json.loads(http("GET", f"{schema_registry}/schemas/ids/{first}")[1]["schema"]) == ROW


def test_unknown_id_is_a_404_in_confluent_error_shape(schema_registry: str) -> None:
    status, answer = http("GET", f"{schema_registry}/schemas/ids/987654321")
    assert status == 404
    assert isinstance(answer["error_code"], int) and answer["message"]


def test_icetide_avro_events_round_trip_through_the_registry(schema_registry: str) -> None:
    """icetide's derived schemas (logical types included) are accepted, and a reader that knows only
    the payload and the registry decodes the event the writer framed."""
    table = Schema(
        NestedField(1, "id", LongType(), required=True),
        NestedField(2, "name", StringType()),
        NestedField(3, "price", DecimalType(10, 2)),
        NestedField(4, "day", DateType()),
        NestedField(5, "at", TimestamptzType()),
        identifier_field_ids=[1],
    )
    topic = f"icetide.sales.t{uuid.uuid4().hex[:8]}"
    key, value = key_schema(table, ["id"], "sales", "t"), value_schema(table, "sales", "t")
    writer = SchemaRegistryClient(schema_registry)
    key_id, value_id = writer.register(f"{topic}-key", key), writer.register(f"{topic}-value", value)
    assert key_id != value_id

    source = Source(catalog="lake", db="sales", table="t", snapshot_id=7, sequence_number=3,
                    commit_ts_ms=1_700_000_000_000, ordinal=0)
    event = ChangeEvent(op="c", before=None, source=source, ts_ms=1_700_000_000_123,
                        after={"id": 42, "name": "ana", "price": "12.50", "day": "2024-02-29",
                               "at": "2024-02-29T10:11:12.123456+00:00"})
    payload = AvroCodec(key, value, key_id, value_id).encode_value(event)

    reader = SchemaRegistryClient(schema_registry)  # a fresh cache: the schema comes from the registry
    got_id = schema_id_of(payload)
    fetched = reader.schema(got_id)
    decoded = AvroCodec(reader.schema(key_id), fetched, key_id, got_id).decode_value(payload)
    assert got_id == value_id
    assert decoded.after is not None and decoded.after["id"] == 42 and decoded.after["name"] == "ana"
    assert str(decoded.after["price"]) == "12.50"
    assert decoded.source == source and decoded.op == "c"


def test_start_is_idempotent_and_status_reports_the_running_process(schema_registry: str, session_dir: Any) -> None:
    registry = Registry(session_dir)
    status = registry.start()  # reuses the session's process
    assert status.running and status.url == schema_registry
    assert registry.status().pid == status.pid
    rss = registry.rss_bytes()
    assert rss is not None and rss > 0
