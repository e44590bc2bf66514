"""Change events as Kafka Connect's `JsonConverter` writes them with `schemas.enable=true`.

`cdc.format: connect-json`. Key and value are each `{"schema": <Connect schema>, "payload": …}`,
the schema in JsonConverter's own shape and key order (`type`, `fields`/`items`/`keys`+`values`,
`optional`, `name`, `version`, `parameters`, and `field` last for struct fields). A stock Kafka
Connect sink (the Debezium JDBC sink) reads them with `value.converter=…JsonConverter`,
`value.converter.schemas.enable=true` (and the same for the key); docs/encodings.md.

Value schema: struct `<topic>.Envelope` with `before`/`after` (struct `<topic>.Value`, optional),
`source` (struct `io.icetide.Source`), `op`, `ts_ms`. Key schema: struct `<topic>.Key` of the key
fields (every column for a keyless table, as in JSON). Column types, Debezium's semantic types:

    boolean → boolean          int → int32               long → int64
    float → float              double → double           string → string
    binary → bytes             fixed[n] → bytes (parameter connect.fixed.size, as AvroData writes)
    date → int32 io.debezium.time.Date (days since 1970-01-01)
    time → int64 io.debezium.time.MicroTime (µs since midnight)
    timestamp → int64 io.debezium.time.MicroTimestamp (µs since the epoch)
    timestamptz → string io.debezium.time.ZonedTimestamp (ISO-8601, UTC, `Z`)
    decimal(p, s) → bytes org.apache.kafka.connect.data.Decimal (base64 of the big-endian two's-
                    complement unscaled value; parameters scale, connect.decimal.precision)
    uuid → string io.debezium.data.Uuid
    struct → struct, list → array, map → map (string keys: a JSON object; other keys: [[k, v], …],
             as JsonConverter writes them)

Every row field also carries its Iceberg field id as the parameter `iceberg.field.id` (Connect
sinks ignore unknown parameters), so a decoder's `RowSchema` follows columns through renames.
NaN and ±Infinity are the strings "NaN", "Infinity", "-Infinity", as Jackson writes them.
Payload values are converted from the JSON-ready images of `icetide.events` and back, exactly.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import decimal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson

from icetide.connect_names import (
    DATE,
    DECIMAL,
    FIELD_ID,
    FIXED_SIZE,
    MICRO_TIME,
    MICRO_TIMESTAMP,
    PRECISION,
    UUID,
    ZONED_TIMESTAMP,
)
from icetide.connect_rowschema import row_schema
from icetide.errors import EventError
from icetide.events import ChangeEvent, Source
from icetide.rowschema import RowSchema

if TYPE_CHECKING:
    from pyiceberg.schema import Schema
    from pyiceberg.types import IcebergType, NestedField

SOURCE_NAME = "io.icetide.Source"
_SOURCE_TYPES = (("version", "string"), ("connector", "string"), ("name", "string"), ("catalog", "string"),
                 ("db", "string"), ("schema", "string"), ("table", "string"), ("snapshot_id", "int64"),
                 ("sequence_number", "int64"), ("commit_ts_ms", "int64"), ("ts_ms", "int64"),
                 ("ordinal", "int64"), ("schema_id", "int32"), ("snapshot", "string"))
EPOCH = dt.datetime(1970, 1, 1)
_EPOCH_DAY = dt.date(1970, 1, 1).toordinal()


def _schema(kind: str, optional: bool, name: str | None = None, version: int | None = None,
            parameters: dict[str, str] | None = None, **shape: Any) -> dict[str, Any]:
    """One Connect schema in JsonConverter's key order."""
    out: dict[str, Any] = {"type": kind, **shape, "optional": optional}
    if name is not None:
        out["name"] = name
    if version is not None:
        out["version"] = version
    if parameters:
        out["parameters"] = parameters
    return out


def connect_type(kind: IcebergType, optional: bool, parameters: dict[str, str] | None = None) -> dict[str, Any]:
    """The Connect schema of one Iceberg type (module docstring)."""
    from pyiceberg import types as t

    params = dict(parameters or {})
    simple: dict[type, tuple[str, str | None]] = {
        t.BooleanType: ("boolean", None), t.IntegerType: ("int32", None), t.LongType: ("int64", None),
        t.FloatType: ("float", None), t.DoubleType: ("double", None), t.StringType: ("string", None),
        t.BinaryType: ("bytes", None), t.DateType: ("int32", DATE), t.TimeType: ("int64", MICRO_TIME),
        t.TimestampType: ("int64", MICRO_TIMESTAMP), t.TimestamptzType: ("string", ZONED_TIMESTAMP),
        t.UUIDType: ("string", UUID),
    }
    if type(kind) in simple:
        physical, name = simple[type(kind)]
        return _schema(physical, optional, name, 1 if name else None, params)
    if isinstance(kind, t.DecimalType):
        params = {"scale": str(kind.scale), PRECISION: str(kind.precision), **params}
        return _schema("bytes", optional, DECIMAL, 1, params)
    if isinstance(kind, t.FixedType):
        return _schema("bytes", optional, None, None, {FIXED_SIZE: str(len(kind)), **params})
    if isinstance(kind, t.StructType):
        return _schema("struct", optional, None, None, params, fields=[_field(f) for f in kind.fields])
    if isinstance(kind, t.ListType):
        return _schema("array", optional, None, None, params,
                       items=connect_type(kind.element_type, not kind.element_required))
    if isinstance(kind, t.MapType):
        return _schema("map", optional, None, None, params, keys=connect_type(kind.key_type, False),
                       values=connect_type(kind.value_type, not kind.value_required))
    raise EventError(f"no Kafka Connect mapping for Iceberg type {kind}")


def _field(f: NestedField) -> dict[str, Any]:
    return {**connect_type(f.field_type, not f.required, {FIELD_ID: str(f.field_id)}), "field": f.name}


def _struct(fields: list[NestedField], name: str, optional: bool) -> dict[str, Any]:
    return _schema("struct", optional, name, fields=[_field(f) for f in fields])


def value_schema(schema: Schema, topic: str) -> dict[str, Any]:
    """The envelope schema (`<topic>.Envelope`) of a table's change events in one Iceberg schema."""
    row = _struct(list(schema.fields), f"{topic}.Value", True)
    source = _schema("struct", False, SOURCE_NAME,
                     fields=[{**_schema(kind, False), "field": name} for name, kind in _SOURCE_TYPES])
    return _schema("struct", False, f"{topic}.Envelope", 1, fields=[
        {**row, "field": "before"}, {**row, "field": "after"}, {**source, "field": "source"},
        {**_schema("string", False), "field": "op"}, {**_schema("int64", True), "field": "ts_ms"}])


def key_schema(schema: Schema, key_fields: list[str], topic: str) -> dict[str, Any]:
    """The key struct (`<topic>.Key`): the key fields, or every column of a keyless table."""
    try:
        fields = [schema.find_field(name) for name in key_fields] if key_fields else list(schema.fields)
    except ValueError:
        raise EventError(f"key columns {key_fields} are not all columns of {topic}") from None
    return _struct(fields, f"{topic}.Key", False)


# -- values: JSON-ready image values ⇄ Connect payload values ------------------------------

Convert = Callable[[Any], Any]


def _unscaled(text: Any, scale: int) -> bytes:
    """A decimal's unscaled value as Java's BigInteger.toByteArray(): minimal two's complement."""
    try:
        sign, digits, exponent = decimal.Decimal(str(text)).as_tuple()
    except decimal.InvalidOperation:
        raise EventError(f"not a decimal: {text!r}") from None
    if not isinstance(exponent, int):
        raise EventError(f"decimal {text!r} is not finite")
    magnitude = int("".join(map(str, digits)) or "0")
    shift = exponent + scale
    if shift >= 0:
        magnitude *= 10**shift
    else:
        magnitude, rest = divmod(magnitude, pow(10, -shift))
        if rest:
            raise EventError(f"decimal {text!r} has more than {scale} fraction digits")
    n: int = -magnitude if sign else magnitude
    bits = n.bit_length() if n >= 0 else (~n).bit_length()
    out: bytes = n.to_bytes(bits // 8 + 1, "big", signed=True)
    return out


def _decimal_text(payload: Any, scale: int) -> str:
    """Back to the JSON-ready text: `str()` of the Decimal with exponent -scale (as Arrow gives it)."""
    raw = base64.b64decode(payload, validate=True)
    if not raw:
        raise ValueError("empty decimal bytes")
    n = int.from_bytes(raw, "big", signed=True)
    return decimal_text(n, scale)


def decimal_text(unscaled: int, scale: int) -> str:
    """`str(Decimal)` of `unscaled` × 10^-scale, built from the digits when that is plain notation
    (the adjusted exponent ≥ -6, as `Decimal.__str__` decides); through `Decimal` otherwise."""
    digits = str(abs(unscaled))
    if scale == 0:
        return str(unscaled)
    if scale < 0 or len(digits) - 1 - scale < -6:
        return str(decimal.Decimal((1 if unscaled < 0 else 0, tuple(int(c) for c in digits), -scale)))
    digits = digits.rjust(scale + 1, "0")
    return ("-" if unscaled < 0 else "") + digits[:-scale] + "." + digits[-scale:]


def _micros(text: Any) -> int:
    value = dt.datetime.fromisoformat(str(text).removesuffix("Z"))
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    delta = value - EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _from_micros(micros: Any) -> str:
    return (EPOCH + dt.timedelta(microseconds=int(micros))).isoformat(timespec="microseconds")


def _zoned(text: Any) -> str:
    """Any ISO-8601 timestamp → UTC with `Z`, microseconds (the JSON-ready form)."""
    value = dt.datetime.fromisoformat(str(text).removesuffix("Z"))
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.isoformat(timespec="microseconds") + "Z"


def _time_micros(text: Any) -> int:
    t = dt.time.fromisoformat(str(text))
    return ((t.hour * 60 + t.minute) * 60 + t.second) * 1_000_000 + t.microsecond


def _from_time_micros(micros: Any) -> str:
    seconds, us = divmod(int(micros), 1_000_000)
    return dt.time(seconds // 3600, seconds // 60 % 60, seconds % 60, us).isoformat(timespec="microseconds")


def _nullable(convert: Convert) -> Convert:
    return lambda v: None if v is None else convert(v)


def _pairs(value: Any) -> list[Any]:
    """A map image as [key, value] pairs (the JSON-ready form; a dict is accepted too)."""
    return [list(kv) for kv in value.items()] if isinstance(value, dict) else [list(kv) for kv in value]


def payload_converter(schema: dict[str, Any], to_connect: bool) -> Convert | None:
    """JSON-ready value → Connect payload value (`to_connect`), or back; None when both are the same."""
    kind, name = schema.get("type"), schema.get("name")
    params = schema.get("parameters") or {}
    convert: Convert | None = None
    if name == DECIMAL:
        scale = int(params.get("scale", 0))
        convert = ((lambda v: base64.b64encode(_unscaled(v, scale)).decode("ascii")) if to_connect
                   else (lambda v: _decimal_text(v, scale)))
    elif name == DATE:
        convert = ((lambda v: dt.date.fromisoformat(str(v)).toordinal() - _EPOCH_DAY) if to_connect
                   else (lambda v: dt.date.fromordinal(int(v) + _EPOCH_DAY).isoformat()))
    elif name == MICRO_TIME:
        convert = _time_micros if to_connect else _from_time_micros
    elif name == MICRO_TIMESTAMP:
        convert = _micros if to_connect else _from_micros
    elif name == ZONED_TIMESTAMP:
        convert = _zoned
    elif kind == "struct":
        fields = [(f["field"], payload_converter(f, to_connect)) for f in schema.get("fields", [])]
        convert = _struct_converter(fields)
    elif kind == "array":
        item = payload_converter(schema["items"], to_connect)
        convert = (lambda v: [item(x) for x in v]) if item else None
    elif kind == "map":
        convert = _map_converter(schema, to_connect)
    return _nullable(convert) if convert is not None else None


def _struct_converter(fields: list[tuple[str, Convert | None]]) -> Convert:
    """A struct's fields in schema order, converting only those that need it (most pass as they are)."""
    names = [name for name, _ in fields]
    special = [(name, c) for name, c in fields if c is not None]

    def struct(v: Any) -> dict[str, Any]:
        out = {name: v.get(name) for name in names}
        for name, convert in special:
            out[name] = convert(out[name])
        return out

    return struct


def _map_converter(schema: dict[str, Any], to_connect: bool) -> Convert:
    key = payload_converter(schema["keys"], to_connect) or (lambda k: k)
    value = payload_converter(schema["values"], to_connect) or (lambda x: x)
    if schema["keys"].get("type") == "string":  # JsonConverter: a JSON object
        if to_connect:
            return lambda v: {key(k): value(x) for k, x in _pairs(v)}
        return lambda v: [[key(k), value(x)] for k, x in v.items()]
    return lambda v: [[key(k), value(x)] for k, x in _pairs(v)]  # an array of [key, value] tuples


# -- records --------------------------------------------------------------------------------


class ConnectJsonCodec:
    """Encodes one table's keys and envelopes in one Iceberg schema (schemas serialised once)."""

    def __init__(self, key: dict[str, Any], value: dict[str, Any]) -> None:
        self.key_schema, self.value_schema = key, value
        self._key_head = b'{"schema":' + orjson.dumps(key) + b',"payload":'
        self._value_head = b'{"schema":' + orjson.dumps(value) + b',"payload":'
        self._key = payload_converter(key, True)
        self._row = payload_converter(value["fields"][0], True)

    def encode_key(self, key: dict[str, Any]) -> bytes:
        return self._key_head + _dumps(self._key, key) + b"}"

    def encode_value(self, event: ChangeEvent) -> bytes:
        row = self._row
        payload = {"before": event.before, "after": event.after, "source": event.source.to_dict(), "op": event.op,
                   "ts_ms": event.ts_ms}
        convert = (lambda p: {**p, "before": row(p["before"]), "after": row(p["after"])}) if row else None
        return self._value_head + _dumps(convert, payload) + b"}"


def _dumps(convert: Convert | None, value: Any) -> bytes:
    """The payload's JSON; EventError (terminal) if an image value does not fit its column's type."""
    try:
        return orjson.dumps(convert(value) if convert else value)
    except (TypeError, ValueError, AttributeError, OverflowError, decimal.InvalidOperation) as exc:
        raise EventError(f"cannot encode as connect-json: {exc!r}") from None


_HEAD, _PAYLOAD = b'{"schema":', b',"payload":'  # a record as JsonConverter spells it


class ConnectJsonDecoder:
    """`{"schema", "payload"}` records → events with JSON-ready images and their `RowSchema`.

    Converters are built once per distinct schema (keyed by its serialised form)."""

    def __init__(self, cache_size: int = 256) -> None:
        self._cache: dict[bytes, tuple[Convert | None, RowSchema]] = {}
        self._by_text: dict[bytes, tuple[Convert | None, RowSchema]] = {}  # the schema's text as sent
        self._cache_size = cache_size

    def record(self, value: bytes) -> tuple[ChangeEvent, RowSchema] | None:
        """Decode a record's bytes without parsing its schema again: a record `{"schema":S,"payload":P}`
        whose S was seen before (and was one whole JSON object) parses only P. None when the record is
        not spelled that way (or S is new and not a whole object): then parse it all and call `event`."""
        if not (value.startswith(_HEAD) and value.endswith(b"}")):
            return None
        end = value.find(_PAYLOAD)
        if end < 0:
            return None
        text = value[len(_HEAD):end]
        compiled = self._by_text.get(text)
        if compiled is None:
            try:
                schema = orjson.loads(text)
            except orjson.JSONDecodeError:
                return None  # the marker was inside the schema, or the record is malformed: the slow path says
            if not isinstance(schema, dict):
                return None
            compiled = self._compiled(schema)
            if len(self._by_text) >= self._cache_size:
                self._by_text.clear()
            self._by_text[text] = compiled
        try:
            payload = orjson.loads(value[end + len(_PAYLOAD):-1])
        except orjson.JSONDecodeError:
            return None
        return self._event(payload, compiled)

    def _compiled(self, schema: dict[str, Any]) -> tuple[Convert | None, RowSchema]:
        cache_key = orjson.dumps(schema)
        found = self._cache.get(cache_key)
        if found is None:
            row = _row_field(schema)
            found = (payload_converter(row, False), row_schema(row))
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[cache_key] = found
        return found

    def event(self, raw: Any) -> tuple[ChangeEvent, RowSchema]:
        """Decode one parsed value (`{"schema", "payload"}`); EventError if it is not an envelope."""
        schema, payload = split(raw)
        return self._event(payload, self._compiled(schema))

    def _event(self, payload: Any, compiled: tuple[Convert | None, RowSchema]) -> tuple[ChangeEvent, RowSchema]:
        if not isinstance(payload, dict):
            raise EventError("connect-json payload is not an object")
        convert, rows = compiled
        for image in ("before", "after"):
            if payload.get(image) is not None and not isinstance(payload[image], dict):
                raise EventError(f"'{image}' is not an object")
        if not isinstance(payload.get("source"), dict):
            raise EventError("'source' is not an object")
        try:
            before, after = (convert(payload.get(image)) if convert is not None else payload.get(image)
                             for image in ("before", "after"))
            event = ChangeEvent(op=payload.get("op"), before=before, after=after,  # type: ignore[arg-type]
                                source=Source.from_dict(payload["source"]), ts_ms=int(payload.get("ts_ms") or 0))
        except (ValueError, TypeError, KeyError, AttributeError, OverflowError, decimal.InvalidOperation) as exc:
            raise EventError(f"bad connect-json value: {exc!r}") from None
        if rows.schema_id != event.source.schema_id:
            rows = dataclasses.replace(rows, schema_id=event.source.schema_id)
        return event, rows


def is_connect_json(raw: Any) -> bool:
    """A parsed record in JsonConverter's envelope: exactly the keys schema and payload."""
    return isinstance(raw, dict) and len(raw) == 2 and "schema" in raw and "payload" in raw


def split(raw: Any) -> tuple[dict[str, Any], Any]:
    if not is_connect_json(raw) or not isinstance(raw["schema"], dict):
        raise EventError('not a connect-json record (expected {"schema": {...}, "payload": ...})')
    return raw["schema"], raw["payload"]


def key_fields(raw: Any) -> tuple[str, ...]:
    """The field names of a connect-json key, from its schema (no payload decoding)."""
    schema, _ = split(raw)
    if schema.get("type") != "struct":
        raise EventError("connect-json key schema is not a struct")
    return tuple(str(f["field"]) for f in schema.get("fields", []))


def _row_field(envelope: dict[str, Any]) -> dict[str, Any]:
    for f in envelope.get("fields", []):
        if isinstance(f, dict) and f.get("field") in ("after", "before") and f.get("type") == "struct":
            found: dict[str, Any] = f
            return found
    raise EventError("connect-json value schema has no before/after struct")
