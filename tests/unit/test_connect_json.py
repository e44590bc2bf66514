"""connect-json: Kafka Connect's JsonConverter shape (schemas.enable=true), Debezium's semantic types,
exact round trips to the JSON-ready images, and the RowSchema the decoder yields."""

from __future__ import annotations

import datetime as dt
import decimal
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given
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

from icetide.connect_json import ConnectJsonCodec, ConnectJsonDecoder, _unscaled, key_schema, value_schema
from icetide.errors import EventError
from icetide.events import ChangeEvent, Source, encode_row
from icetide.rowschema import RowSchema

pytestmark = pytest.mark.unit

TOPIC = "icetide.sales.vendas"
SOURCE = Source(catalog="lake", db="sales", table="vendas", snapshot_id=9, sequence_number=4,
                commit_ts_ms=1_700_000_000_000, ordinal=2, schema_id=3)
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
    NestedField(13, "u", UUIDType()),
    NestedField(14, "b", BinaryType()),
    NestedField(15, "fx", FixedType(2)),
    NestedField(16, "tags", ListType(17, StringType(), element_required=False)),
    NestedField(18, "attrs", MapType(19, StringType(), 20, LongType(), value_required=False)),
    NestedField(21, "byint", MapType(22, IntegerType(), 23, DateType(), value_required=True)),
    NestedField(24, "addr", StructType(NestedField(25, "city", StringType(), required=True),
                                       NestedField(26, "at", TimestamptzType()))),
    schema_id=3, identifier_field_ids=[1],
)


def _p(field_id: int, **more: str) -> dict[str, Any]:
    return {"parameters": {**more, "iceberg.field.id": str(field_id)}}


# What JsonConverter.asJsonSchema writes for the Connect schemas Debezium builds, key order included.
ROW_FIELDS: list[dict[str, Any]] = [
    {"type": "int64", "optional": False, **_p(1), "field": "id"},
    {"type": "boolean", "optional": True, **_p(2), "field": "flag"},
    {"type": "int32", "optional": True, **_p(3), "field": "n"},
    {"type": "float", "optional": True, **_p(4), "field": "f"},
    {"type": "double", "optional": True, **_p(5), "field": "x"},
    {"type": "string", "optional": True, **_p(6), "field": "s"},
    {"type": "int32", "optional": True, "name": "io.debezium.time.Date", "version": 1, **_p(7), "field": "d"},
    {"type": "int64", "optional": True, "name": "io.debezium.time.MicroTime", "version": 1, **_p(8), "field": "t"},
    {"type": "int64", "optional": True, "name": "io.debezium.time.MicroTimestamp", "version": 1, **_p(9),
     "field": "ts"},
    {"type": "string", "optional": True, "name": "io.debezium.time.ZonedTimestamp", "version": 1, **_p(10),
     "field": "tstz"},
    {"type": "bytes", "optional": True, "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
     **_p(11, **{"scale": "2", "connect.decimal.precision": "10"}), "field": "price"},
    {"type": "bytes", "optional": True, "name": "org.apache.kafka.connect.data.Decimal", "version": 1,
     **_p(12, **{"scale": "0", "connect.decimal.precision": "38"}), "field": "whole"},
    {"type": "string", "optional": True, "name": "io.debezium.data.Uuid", "version": 1, **_p(13), "field": "u"},
    {"type": "bytes", "optional": True, **_p(14), "field": "b"},
    {"type": "bytes", "optional": True, **_p(15, **{"connect.fixed.size": "2"}), "field": "fx"},
    {"type": "array", "items": {"type": "string", "optional": True}, "optional": True, **_p(16), "field": "tags"},
    {"type": "map", "keys": {"type": "string", "optional": False}, "values": {"type": "int64", "optional": True},
     "optional": True, **_p(18), "field": "attrs"},
    {"type": "map", "keys": {"type": "int32", "optional": False},
     "values": {"type": "int32", "optional": False, "name": "io.debezium.time.Date", "version": 1},
     "optional": True, **_p(21), "field": "byint"},
    {"type": "struct", "fields": [
        {"type": "string", "optional": False, **_p(25), "field": "city"},
        {"type": "string", "optional": True, "name": "io.debezium.time.ZonedTimestamp", "version": 1, **_p(26),
         "field": "at"}], "optional": True, **_p(24), "field": "addr"},
]
SOURCE_FIELDS = [{"type": kind, "optional": False, "field": name} for name, kind in [
    ("version", "string"), ("connector", "string"), ("name", "string"), ("catalog", "string"), ("db", "string"),
    ("schema", "string"), ("table", "string"), ("snapshot_id", "int64"), ("sequence_number", "int64"),
    ("commit_ts_ms", "int64"), ("ts_ms", "int64"), ("ordinal", "int64"), ("schema_id", "int32"),
    ("snapshot", "string")]]


def _codec() -> ConnectJsonCodec:
    return ConnectJsonCodec(key_schema(SCHEMA, ["id"], TOPIC), value_schema(SCHEMA, TOPIC))


def test_value_schema_is_exactly_what_json_converter_writes() -> None:
    row = {"type": "struct", "fields": ROW_FIELDS, "optional": True, "name": f"{TOPIC}.Value"}
    expected = {"type": "struct", "fields": [
        {**row, "field": "before"}, {**row, "field": "after"},
        {"type": "struct", "fields": SOURCE_FIELDS, "optional": False, "name": "io.icetide.Source",
         "field": "source"},
        {"type": "string", "optional": False, "field": "op"},
        {"type": "int64", "optional": True, "field": "ts_ms"},
    ], "optional": False, "name": f"{TOPIC}.Envelope", "version": 1}
    # byte-exact: the same keys in the same order as JsonConverter.asJsonSchema puts them
    assert orjson.dumps(value_schema(SCHEMA, TOPIC)) == orjson.dumps(expected)


def test_key_is_a_struct_of_the_key_fields_or_the_whole_row() -> None:
    codec = _codec()
    assert orjson.loads(codec.encode_key({"id": 42})) == {
        "schema": {"type": "struct", "fields": [ROW_FIELDS[0]], "optional": False, "name": f"{TOPIC}.Key"},
        "payload": {"id": 42}}
    assert codec.encode_key({"id": 42}).startswith(b'{"schema":{"type":"struct","fields":[{"type":"int64",')
    whole = key_schema(SCHEMA, [], TOPIC)
    assert [f["field"] for f in whole["fields"]] == [f.name for f in SCHEMA.fields]
    with pytest.raises(EventError, match=r"key columns \['nope'\]"):
        key_schema(SCHEMA, ["nope"], TOPIC)


ROW = {
    "id": 7, "flag": True, "n": -3, "f": 1.5, "x": float("nan"), "s": "olá", "d": dt.date(1969, 12, 31),
    "t": dt.time(23, 59, 59, 999999), "ts": dt.datetime(2024, 1, 1, 1, 0, 0, 123456),
    "tstz": dt.datetime(2024, 1, 1, 2, 0, tzinfo=dt.timezone(dt.timedelta(hours=1))),
    "price": Decimal("-12.50"), "whole": Decimal("-" + "9" * 38), "u": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
    "b": b"\x00\xff", "fx": b"\x01\x02", "tags": ["a", None], "attrs": [("k", 1), ("z", None)],
    "byint": [(5, dt.date(2024, 2, 29))], "addr": {"city": "Lisboa", "at": None},
}


def test_payload_values_are_debezium_semantic_types() -> None:
    value = orjson.loads(_codec().encode_value(ChangeEvent("c", None, encode_row(ROW), SOURCE, ts_ms=5)))
    assert list(value) == ["schema", "payload"]
    payload = value["payload"]
    assert list(payload) == ["before", "after", "source", "op", "ts_ms"]  # the schema's field order
    assert payload["before"] is None and payload["op"] == "c" and payload["ts_ms"] == 5
    assert payload["source"]["schema"] == "sales" and payload["source"]["snapshot_id"] == 9
    assert payload["after"] == {
        "id": 7, "flag": True, "n": -3, "f": 1.5, "x": "NaN", "s": "olá",
        "d": -1,  # days since the epoch
        "t": 86_399_999_999,  # µs since midnight
        "ts": 1_704_070_800_123_456,  # µs since the epoch
        "tstz": "2024-01-01T01:00:00.000000Z",  # ISO-8601 in UTC
        "price": "+x4=",  # -1250, big-endian two's complement
        "whole": "tMSzV6V5O4X2dd3AAAAAAQ==",  # 2**128 - (10**38 - 1): 16 bytes, sign bit set
        "u": "1b4e28ba-2fa1-11d2-883f-0016d3cca427",
        "b": "AP8=", "fx": "AQI=", "tags": ["a", None],
        "attrs": {"k": 1, "z": None},  # string keys: a JSON object
        "byint": [[5, 19782]],  # other keys: [key, value] pairs, as JsonConverter writes them
        "addr": {"city": "Lisboa", "at": None},
    }


@pytest.mark.parametrize(("text", "scale", "b64"), [
    ("1.56", 2, "AJw="),  # Kafka's own JsonConverterTest vector
    ("0", 0, "AA=="), ("127", 0, "fw=="), ("128", 0, "AIA="), ("-128", 0, "gA=="), ("-129", 0, "/38="),
    ("-0.001", 3, "/w=="), ("5", 2, "AfQ="),
])
def test_decimals_are_minimal_twos_complement_like_bigdecimal(text: str, scale: int, b64: str) -> None:
    import base64

    assert base64.b64encode(_unscaled(text, scale)).decode() == b64


def test_decimal_with_too_many_fraction_digits_is_an_event_error() -> None:
    with pytest.raises(EventError, match="fraction digits"):
        _unscaled("1.234", 2)


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_doubles_are_strings_as_jackson_writes_them(value: float) -> None:
    event = ChangeEvent("c", None, encode_row({"id": 1, "x": value}), SOURCE)
    out = orjson.loads(_codec().encode_value(event))["payload"]["after"]["x"]
    assert out == {"inf": "Infinity", "-inf": "-Infinity", "nan": "NaN"}[str(value)]
    decoded, _ = ConnectJsonDecoder().event(orjson.loads(_codec().encode_value(event)))
    assert decoded.row["x"] == out


def test_decode_gives_the_json_ready_images_and_the_row_schema() -> None:
    image = encode_row(ROW)
    event = ChangeEvent("u", image, {**image, "s": None}, SOURCE, ts_ms=11)
    decoded, rows = ConnectJsonDecoder().event(orjson.loads(_codec().encode_value(event)))
    assert decoded == event
    assert rows == RowSchema.from_iceberg(SCHEMA)


def test_a_known_schema_is_not_parsed_again_and_gives_the_same_event() -> None:
    """`record()` (only the payload parsed, the schema found by its text) equals the full parse."""
    image = encode_row(ROW)
    decoder = ConnectJsonDecoder()
    values = [_codec().encode_value(ChangeEvent("c", None, {**image, "id": i}, SOURCE, ts_ms=i)) for i in range(3)]
    for value in values:
        assert decoder.record(value) == ConnectJsonDecoder().event(orjson.loads(value))
    assert len(decoder._by_text) == 1


@pytest.mark.parametrize("value", [
    b'{"schema":{"type":"struct"},"payload":{"op":"c"',  # cut short
    b'{"schema":{"type":"struct","x":"a,\\"payload\\":"},"payload":{"op":"c"}} ',  # not spelled as JsonConverter
    b'{"schema":{"type":"struct","fields":[{"field":"after","type":"struct","fields":[]}]},"payload":{nope}}',
    b'{"schema":[1,"payload":{}}',
])
def test_the_fast_path_steps_aside_for_what_it_cannot_vouch_for(value: bytes) -> None:
    """None (the caller parses it all, which gives the EventError) — never a wrong event."""
    assert ConnectJsonDecoder().record(value) is None


@pytest.mark.parametrize("raw", [
    {"schema": {"type": "struct", "fields": []}, "payload": {}},
    {"schema": None, "payload": {}},
    {"payload": {}},
    {"schema": {"type": "struct", "fields": [{"type": "struct", "fields": [], "field": "after"}]}, "payload": []},
    {"schema": value_schema(SCHEMA, TOPIC), "payload": {"op": "c", "after": {"d": "x"}, "source": SOURCE.to_dict()}},
    {"schema": value_schema(SCHEMA, TOPIC), "payload": {"op": "c", "after": {"price": "***"},
                                                       "source": SOURCE.to_dict()}},
    {"schema": value_schema(SCHEMA, TOPIC), "payload": {"op": "x", "after": {}, "source": SOURCE.to_dict()}},
    {"schema": value_schema(SCHEMA, TOPIC), "payload": {"op": "c", "after": {}, "source": {}}},
])
def test_malformed_records_are_event_errors(raw: Any) -> None:
    with pytest.raises(EventError):
        ConnectJsonDecoder().event(raw)


@pytest.mark.parametrize("bad", [{"id": 1, "d": "not a date"}, {"id": 1, "price": "x"}, {"id": 1, "addr": [1]}])
def test_an_image_that_does_not_fit_its_schema_is_an_event_error(bad: dict[str, Any]) -> None:
    with pytest.raises(EventError):
        _codec().encode_value(ChangeEvent("c", None, bad, SOURCE))


@given(st.integers(min_value=-(10**40), max_value=10**40), st.integers(min_value=-3, max_value=38))
def test_decimal_text_is_str_of_the_decimal(unscaled: int, scale: int) -> None:
    """The fast digit-string path gives exactly `str(Decimal)` (plain or scientific notation)."""
    from icetide.connect_json import decimal_text

    sign = 1 if unscaled < 0 else 0
    expected = str(decimal.Decimal((sign, tuple(int(c) for c in str(abs(unscaled))), -scale)))
    assert decimal_text(unscaled, scale) == expected
