"""The three encodings (JSON, connect-json, Avro) decode to the same JSON-ready images through
`cdc apply`'s decoder, and the two that carry a schema yield `RowSchema.from_iceberg(schema)`."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

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
    FixedType,
    FloatType,
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

from connectors.records import AvroDecoder, decode
from icetide.avro import AvroCodec
from icetide.avro import key_schema as avro_key
from icetide.avro import value_schema as avro_value
from icetide.avro_rowschema import row_schema as avro_row_schema
from icetide.connect_json import ConnectJsonCodec
from icetide.connect_json import key_schema as connect_key
from icetide.connect_json import value_schema as connect_value
from icetide.events import ChangeEvent, Source, encode_row, key_to_json, to_json
from icetide.rowschema import RowSchema

pytestmark = pytest.mark.unit

TOPIC = "icetide.sales.tudo"
SCHEMA = Schema(
    NestedField(1, "id", LongType(), required=True),
    NestedField(2, "flag", BooleanType()),
    NestedField(3, "n", IntegerType()),
    NestedField(4, "f", FloatType()),
    NestedField(5, "x", DoubleType()),
    NestedField(6, "s", StringType()),
    NestedField(7, "d", DateType()),
    NestedField(8, "t", TimeType()),
    NestedField(9, "ts", TimestampType()),
    NestedField(10, "tstz", TimestamptzType()),
    NestedField(11, "price", DecimalType(10, 2)),
    NestedField(12, "whole", DecimalType(38, 0)),
    NestedField(13, "tiny", DecimalType(9, 7)),
    NestedField(14, "u", UUIDType()),
    NestedField(15, "b", BinaryType()),
    NestedField(16, "fx", FixedType(3)),
    NestedField(17, "tags", ListType(18, DateType(), element_required=False)),
    NestedField(19, "attrs", MapType(20, StringType(), 21, DecimalType(6, 3), value_required=False)),
    NestedField(22, "addr", StructType(NestedField(23, "city", StringType(), required=True),
                                       NestedField(24, "at", TimestamptzType()))),
    schema_id=5, identifier_field_ids=[1],
)


def _opt(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), strategy)


def _decimals(precision: int, scale: int) -> st.SearchStrategy[Any]:
    from decimal import Decimal

    if not scale:  # st.decimals overshoots bounds this wide (it generated -10**38 for precision 38)
        return st.integers(-(10**precision - 1), 10**precision - 1).map(Decimal)
    bound = Decimal("9" * (precision - scale) + "." + "9" * scale)
    return st.decimals(min_value=-bound, max_value=bound, places=scale, allow_nan=False, allow_infinity=False)


zones = st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=5, minutes=30)), dt.timezone(dt.timedelta(hours=-8))])
stamps = st.datetimes(min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30))
ROWS = st.fixed_dictionaries({
    "id": st.integers(-(2**63), 2**63 - 1),
    "flag": _opt(st.booleans()),
    "n": _opt(st.integers(-(2**31), 2**31 - 1)),
    "f": _opt(st.floats(width=32, allow_nan=False)),
    "x": _opt(st.floats()),  # NaN and ±Infinity included: the strings Jackson writes
    "s": _opt(st.text()),
    "d": _opt(st.dates()),
    "t": _opt(st.times()),
    "ts": _opt(stamps),
    "tstz": _opt(st.builds(lambda d, z: d.replace(tzinfo=z), stamps, zones)),
    "price": _opt(_decimals(10, 2)),
    "whole": _opt(_decimals(38, 0)),
    "tiny": _opt(_decimals(9, 7)),
    "u": _opt(st.uuids()),
    "b": _opt(st.binary(max_size=12)),
    "fx": _opt(st.binary(min_size=3, max_size=3)),
    "tags": _opt(st.lists(_opt(st.dates()), max_size=3)),
    "attrs": _opt(st.dictionaries(st.text(max_size=4), _opt(_decimals(6, 3)), max_size=3).map(
        lambda d: list(d.items()))),  # maps as Arrow gives them: (key, value) pairs
    "addr": _opt(st.fixed_dictionaries({"city": st.text(max_size=6), "at": _opt(stamps.map(
        lambda d: d.replace(tzinfo=dt.UTC)))})),
})


@dataclass
class Message:
    _value: bytes | None
    _key: bytes | None

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def topic(self) -> str:
        return TOPIC

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return 1


SOURCE = Source(catalog="lake", db="sales", table="tudo", snapshot_id=3, sequence_number=2, commit_ts_ms=10,
                ordinal=4, schema_id=5)
AVRO_KEY, AVRO_VALUE = avro_key(SCHEMA, ["id"], "sales", "tudo"), avro_value(SCHEMA, "sales", "tudo")
REGISTRY = {21: AVRO_KEY, 22: AVRO_VALUE}


def _encodings(event: ChangeEvent) -> dict[str, Message]:
    key = event.key(["id"])
    connect = ConnectJsonCodec(connect_key(SCHEMA, ["id"], TOPIC), connect_value(SCHEMA, TOPIC))
    avro = AvroCodec(AVRO_KEY, AVRO_VALUE, 21, 22)
    return {"json": Message(to_json(event, ready=True), key_to_json(key, ready=True)),
            "connect-json": Message(connect.encode_value(event), connect.encode_key(key)),
            "avro": Message(avro.encode_value(event), avro.encode_key(key))}


@settings(max_examples=150, deadline=None)
@given(before=ROWS, after=ROWS, op=st.sampled_from(["c", "u", "d", "r"]))
def test_every_encoding_decodes_to_the_same_images(before: dict[str, Any], after: dict[str, Any], op: str) -> None:
    b, a = encode_row(before), encode_row(after)
    images = {"c": (None, a), "r": (None, a), "u": (b, a), "d": (b, None)}[op]
    event = ChangeEvent(op, images[0], images[1], SOURCE, ts_ms=99)  # type: ignore[arg-type]
    expected = RowSchema.from_iceberg(SCHEMA)
    for name, message in _encodings(event).items():
        change = decode(message, AvroDecoder(REGISTRY.__getitem__))
        assert change is not None, name
        assert change.event == event, name
        assert change.key_fields == ("id",), name
        assert change.schema == (None if name == "json" else expected), name


def test_avro_row_schema_reads_old_icetide_schemas() -> None:
    """Schemas registered before the Connect names: timestamptz was long/timestamp-micros."""
    old = avro_value(SCHEMA, "sales", "tudo")
    row = old["fields"][0]["type"][1]
    for field in row["fields"]:
        if field["name"] == "tstz":
            field["type"] = ["null", {"type": "long", "logicalType": "timestamp-micros"}]
    assert avro_row_schema(old).column("tstz") == RowSchema.from_iceberg(SCHEMA).column("tstz")


def test_avro_key_fields_come_from_the_key_schema_without_decoding() -> None:
    looked_up: list[int] = []

    def lookup(schema_id: int) -> dict[str, Any]:
        looked_up.append(schema_id)
        return REGISTRY[schema_id]

    decoder = AvroDecoder(lookup)
    body_is_garbage = b"\x00\x00\x00\x00\x15" + b"\xff" * 3  # schema id 21, not a valid Avro body
    assert decoder.key_fields(body_is_garbage) == ("id",)
    assert decoder.key_fields(body_is_garbage) == ("id",)
    assert looked_up == [21]  # cached per schema id
