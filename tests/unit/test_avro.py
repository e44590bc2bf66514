"""Avro in the Confluent wire format: schemas from Iceberg types, exact round trips, framing."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyiceberg.schema import Schema
from pyiceberg.types import (
    BinaryType,
    BooleanType,
    DateType,
    DecimalType,
    DoubleType,
    IntegerType,
    ListType,
    LongType,
    MapType,
    NestedField,
    StringType,
    StructType,
    TimestampType,
    TimestamptzType,
    TimeType,
    UUIDType,
)

from icetide.avro import AvroCodec, key_schema, schema_id_of, value_schema
from icetide.errors import EventError
from icetide.events import ChangeEvent, Source, encode_row

pytestmark = pytest.mark.unit

SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=True),
    NestedField(2, "flag", BooleanType()),
    NestedField(3, "n", IntegerType()),
    NestedField(4, "x", DoubleType()),
    NestedField(5, "s", StringType()),
    NestedField(6, "d", DateType()),
    NestedField(7, "ts", TimestampType()),
    NestedField(8, "tstz", TimestamptzType()),
    NestedField(9, "price", DecimalType(10, 2)),
    NestedField(10, "b", BinaryType()),
    NestedField(11, "u", UUIDType()),
    NestedField(12, "t", TimeType()),
    NestedField(13, "tags", ListType(14, StringType(), element_required=False)),
    NestedField(15, "attrs", MapType(16, StringType(), 17, LongType(), value_required=False)),
    NestedField(18, "addr", StructType(NestedField(19, "city", StringType()))),
    identifier_field_ids=[1],
)
SOURCE = Source(catalog="lake", db="sales", table="vendas", snapshot_id=1, sequence_number=1,
                commit_ts_ms=1, ordinal=0)

micros = st.integers(0, 10**6 - 1)
naive_ts = st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2200, 1, 1)).map(
    lambda d: d.replace(microsecond=d.microsecond))
rows = st.fixed_dictionaries({
    "id": st.integers(-(2**63), 2**63 - 1),
    "flag": st.one_of(st.none(), st.booleans()),
    "n": st.one_of(st.none(), st.integers(-(2**31), 2**31 - 1)),
    "x": st.one_of(st.none(), st.floats(allow_nan=False)),
    "s": st.one_of(st.none(), st.text()),
    "d": st.one_of(st.none(), st.dates(min_value=dt.date(1, 1, 1))),
    "ts": st.one_of(st.none(), naive_ts),
    "tstz": st.one_of(st.none(), naive_ts.map(lambda d: d.replace(tzinfo=dt.UTC))),
    "price": st.one_of(st.none(), st.decimals(min_value=-(10**8) + 1, max_value=10**8 - 1, places=2)),
    "b": st.one_of(st.none(), st.binary(max_size=20)),
    "u": st.one_of(st.none(), st.uuids()),
    "t": st.one_of(st.none(), st.times()),
    "tags": st.one_of(st.none(), st.lists(st.one_of(st.none(), st.text(max_size=5)), max_size=3)),
    "attrs": st.one_of(st.none(), st.dictionaries(st.text(max_size=4), st.one_of(st.none(), st.integers(0, 9))).map(
        lambda d: list(d.items()))),  # a map as Arrow gives it: (key, value) pairs
    "addr": st.one_of(st.none(), st.fixed_dictionaries({"city": st.one_of(st.none(), st.text(max_size=8))})),
})


def _codec() -> AvroCodec:
    return AvroCodec(key_schema(SCHEMA, ["id"], "sales", "vendas"), value_schema(SCHEMA, "sales", "vendas"),
                     key_id=7, value_id=8)


@settings(max_examples=150)
@given(row=rows, op=st.sampled_from(["c", "d", "r"]))
def test_round_trip_is_exact(row: dict, op: str) -> None:
    codec = _codec()
    before, after = (row, None) if op == "d" else (None, row)
    event = ChangeEvent(op=op, before=before, after=after, source=SOURCE, ts_ms=3)  # type: ignore[arg-type]
    decoded = codec.decode_value(codec.encode_value(event))
    assert decoded.op == op and decoded.source == SOURCE and decoded.ts_ms == 3
    assert decoded.row == encode_row(row)  # the JSON-ready image, whatever the encoding


@settings(max_examples=100)
@given(row=rows)
def test_json_encoded_images_encode_to_the_same_bytes(row: dict) -> None:
    codec = _codec()
    raw = ChangeEvent(op="c", before=None, after=row, source=SOURCE, ts_ms=1)
    encoded = ChangeEvent(op="c", before=None, after=encode_row(row), source=SOURCE, ts_ms=1)
    assert codec.encode_value(raw) == codec.encode_value(encoded)


def test_wire_format_header_and_key() -> None:
    codec = _codec()
    payload = codec.encode_key({"id": 42})
    assert payload[0] == 0 and schema_id_of(payload) == 7
    assert codec.decode_key(payload) == {"id": 42}


@pytest.mark.parametrize("payload", [b"", b"\x01\x00\x00\x00\x08", b"\x00\x00\x00\x00\x09abc", b"\x00\x00\x00\x00\x08"])
def test_bad_payloads_raise_event_error(payload: bytes) -> None:
    with pytest.raises(EventError):
        _codec().decode_value(payload)


def test_logical_types_in_schema() -> None:
    fields = {f["name"]: f["type"] for f in value_schema(SCHEMA, "sales", "vendas")["fields"][0]["type"][1]["fields"]}
    assert fields["id"] == "long"  # required: not nullable
    assert fields["d"] == ["null", {"type": "int", "logicalType": "date"}]
    assert fields["price"][1] == {"type": "bytes", "logicalType": "decimal", "precision": 10, "scale": 2,
                                  "connect.name": "org.apache.kafka.connect.data.Decimal", "connect.version": 1,
                                  "connect.parameters": {"scale": "2", "connect.decimal.precision": "10"}}
    # Connect's AvroData knows only timestamp-millis: the Debezium names keep the column types
    assert fields["tstz"][1] == {"type": "string", "connect.name": "io.debezium.time.ZonedTimestamp",
                                 "connect.version": 1}
    assert fields["ts"][1] == {"type": "long", "logicalType": "local-timestamp-micros",
                               "connect.name": "io.debezium.time.MicroTimestamp", "connect.version": 1}
    assert fields["t"][1]["connect.name"] == "io.debezium.time.MicroTime"
    assert fields["u"][1] == {"type": "string", "logicalType": "uuid", "connect.name": "io.debezium.data.Uuid",
                              "connect.version": 1}


def test_uuid_objects_are_accepted() -> None:
    codec = _codec()
    u = uuid.uuid4()
    row = {"id": 1, "u": u, "price": Decimal("1.50")}
    out = codec.decode_value(codec.encode_value(ChangeEvent(op="c", before=None, after=row, source=SOURCE)))
    assert out.row["u"] == str(u) and out.row["price"] == "1.50"


def test_keyless_key_is_the_whole_row_and_unknown_key_columns_are_named() -> None:
    whole = key_schema(SCHEMA, [], "sales", "vendas")
    assert [f["name"] for f in whole["fields"]] == [f.name for f in SCHEMA.fields]
    assert whole["name"] == "Key" and whole["namespace"] == "io.icetide.sales.vendas"
    codec = AvroCodec(whole, value_schema(SCHEMA, "sales", "vendas"), 3, 4)
    row = {"id": 1, "s": "a", "price": "1.50", "tags": ["x", None]}
    decoded = codec.decode_key(codec.encode_key(row))
    assert (decoded["id"], decoded["s"], str(decoded["price"]), decoded["tags"], decoded["n"]) == (
        1, "a", "1.50", ["x", None], None)
    with pytest.raises(EventError, match=r"key columns \['nope'\]"):
        key_schema(SCHEMA, ["nope"], "sales", "vendas")
