"""Change events as Avro in the Confluent wire format.

Wire format: byte 0 = magic 0, bytes 1–4 = the schema id (big-endian), then the Avro binary body.
Subjects follow TopicNameStrategy: `<topic>-key` and `<topic>-value`. The value schema is a
Debezium-shaped envelope record (`before`, `after`, `op`, `ts_ms`, `source`) whose row record is
derived from the table's Iceberg schema with Avro logical types and the Kafka Connect names
(`connect.name`, `connect.version`, `connect.parameters`) Connect's AvroData reads, so a Connect
sink keeps the column types (Debezium's semantic types, as its Avro converter writes them):

    date         int, logicalType date                     → Connect Date
    time         long, time-micros + io.debezium.time.MicroTime
    timestamp    long, local-timestamp-micros + io.debezium.time.MicroTimestamp
    timestamptz  string + io.debezium.time.ZonedTimestamp (ISO-8601 with `Z`; no Avro logical
                 type: Connect knows only timestamp-millis, and Debezium's JDBC sink makes
                 `timestamptz` columns from ZonedTimestamp only)
    decimal      bytes, logicalType decimal + org.apache.kafka.connect.data.Decimal (scale and
                 connect.decimal.precision parameters)
    uuid         string, logicalType uuid + io.debezium.data.Uuid

Fields carry their Iceberg field id (`field-id`, Iceberg's own Avro convention). Schemas written
before these names had timestamptz as `long`/timestamp-micros: readers still decode both
(`row_schema`); registering the new shape over such a subject is a type change that a registry
enforcing BACKWARD compatibility rejects (docs/encodings.md says what to do).

Row images may hold Python values (date, Decimal, datetime) or their JSON encodings from
`icetide.events` (ISO strings, decimal strings): both are accepted.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import re
import struct
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from icetide.connect_names import DECIMAL, MICRO_TIME, MICRO_TIMESTAMP, PRECISION, UUID, ZONED_TIMESTAMP
from icetide.errors import EventError
from icetide.events import ChangeEvent, Source, encode_value

if TYPE_CHECKING:
    from pyiceberg.schema import Schema
    from pyiceberg.types import IcebergType

MAGIC = 0
_HEADER = struct.Struct(">bI")
SOURCE_SCHEMA: dict[str, Any] = {
    "type": "record",
    "name": "Source",
    "namespace": "io.icetide",
    "fields": [
        {"name": "version", "type": "string"},
        {"name": "connector", "type": "string"},
        {"name": "name", "type": "string"},
        {"name": "catalog", "type": "string"},
        {"name": "db", "type": "string"},
        {"name": "schema", "type": "string", "default": ""},  # = db; the default keeps old data readable
        {"name": "table", "type": "string"},
        {"name": "snapshot_id", "type": "long"},
        {"name": "sequence_number", "type": "long"},
        {"name": "commit_ts_ms", "type": "long"},
        {"name": "ts_ms", "type": "long"},
        {"name": "ordinal", "type": "long"},
        {"name": "schema_id", "type": "int"},
        {"name": "snapshot", "type": "string"},
    ],
}


def _avro_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9_]", "_", text)
    return name if re.match(r"[A-Za-z_]", name) else f"_{name}"


def avro_type(field_type: IcebergType, name_hint: str) -> Any:
    """The Avro type of one Iceberg type (not nullable; callers wrap optional fields)."""
    from pyiceberg import types as t

    simple: dict[type, Any] = {
        t.BooleanType: "boolean",
        t.IntegerType: "int",
        t.LongType: "long",
        t.FloatType: "float",
        t.DoubleType: "double",
        t.StringType: "string",
        t.BinaryType: "bytes",
        t.DateType: {"type": "int", "logicalType": "date"},
        t.TimeType: {"type": "long", "logicalType": "time-micros", **_connect(MICRO_TIME)},
        t.TimestampType: {"type": "long", "logicalType": "local-timestamp-micros", **_connect(MICRO_TIMESTAMP)},
        t.TimestamptzType: {"type": "string", **_connect(ZONED_TIMESTAMP)},
        t.UUIDType: {"type": "string", "logicalType": "uuid", **_connect(UUID)},
    }
    for cls, avro in simple.items():
        if isinstance(field_type, cls):
            return avro
    if isinstance(field_type, t.DecimalType):
        return {"type": "bytes", "logicalType": "decimal", "precision": field_type.precision,
                "scale": field_type.scale, **_connect(DECIMAL), "connect.parameters": {
                    "scale": str(field_type.scale), PRECISION: str(field_type.precision)}}
    if isinstance(field_type, t.FixedType):
        return {"type": "fixed", "name": _avro_name(name_hint), "size": len(field_type)}
    if isinstance(field_type, t.StructType):
        return _record(name_hint, field_type.fields)
    if isinstance(field_type, t.ListType):
        return {"type": "array", "items": _maybe_null(avro_type(field_type.element_type, name_hint + "_element"),
                                                      not field_type.element_required)}
    if isinstance(field_type, t.MapType) and isinstance(field_type.key_type, t.StringType):
        return {"type": "map", "values": _maybe_null(avro_type(field_type.value_type, name_hint + "_value"),
                                                     not field_type.value_required)}
    raise EventError(f"no Avro mapping for Iceberg type {field_type} (column {name_hint})")


def _connect(name: str) -> dict[str, Any]:
    return {"connect.name": name, "connect.version": 1}


def _maybe_null(avro: Any, optional: bool) -> Any:
    return ["null", avro] if optional else avro


def _record(name: str, fields: Any) -> dict[str, Any]:
    return {
        "type": "record",
        "name": _avro_name(name),
        "fields": [
            {"name": f.name, **({"default": None} if not f.required else {}),
             "type": _maybe_null(avro_type(f.field_type, f"{name}_{f.name}"), not f.required),
             "field-id": f.field_id}
            for f in fields
        ],
    }


def value_schema(schema: Schema, namespace: str, table: str) -> dict[str, Any]:
    """The envelope schema of a table's change events (record `<ns>.<table>.Envelope`)."""
    row = _record("Value", schema.fields)
    return {
        "type": "record",
        "name": "Envelope",
        "namespace": f"io.icetide.{_avro_name(namespace)}.{_avro_name(table)}",
        "fields": [
            {"name": "before", "type": ["null", row], "default": None},
            {"name": "after", "type": ["null", "Value"], "default": None},
            {"name": "op", "type": "string"},
            {"name": "ts_ms", "type": "long"},
            {"name": "source", "type": SOURCE_SCHEMA},
        ],
    }


def key_schema(schema: Schema, key_fields: list[str], namespace: str, table: str) -> dict[str, Any]:
    """The key record (`<ns>.<table>.Key`): the key fields, or every column when there are none
    (a keyless table is keyed by its whole row, as its JSON events are)."""
    try:
        fields = [schema.find_field(name) for name in key_fields] if key_fields else list(schema.fields)
    except ValueError:
        raise EventError(f"key columns {key_fields} are not all columns of {namespace}.{table}") from None
    record = _record("Key", fields)
    record["namespace"] = f"io.icetide.{_avro_name(namespace)}.{_avro_name(table)}"
    return record


# -- values: Python or JSON-encoded → what fastavro writes ---------------------------------

_EPOCH_DATE = dt.date(1970, 1, 1)


def _to_date(v: Any) -> dt.date:
    return v if isinstance(v, dt.date) else dt.date.fromisoformat(str(v))


def _to_datetime(v: Any, tz: bool) -> dt.datetime:
    if isinstance(v, dt.datetime):
        out = v
    else:
        text = str(v)
        out = dt.datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    if tz and out.tzinfo is None:
        out = out.replace(tzinfo=dt.UTC)
    if not tz and out.tzinfo is not None:
        out = out.astimezone(dt.UTC).replace(tzinfo=None)
    return out


def _zoned_text(v: Any) -> str:
    utc = _to_datetime(v, tz=True).astimezone(dt.UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"


def _coerce(avro: Any, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(avro, list):  # ["null", T]
        return _coerce(avro[1], value)
    if isinstance(avro, str):
        if avro == "bytes" and isinstance(value, str):
            return base64.b64decode(value)
        if avro in ("float", "double") and isinstance(value, str):
            return float(value)  # "NaN" / "Infinity" / "-Infinity" of a JSON image
        return value
    logical = avro.get("logicalType")
    kind = avro["type"]
    if avro.get("connect.name") == ZONED_TIMESTAMP:
        return _zoned_text(value)
    converters: dict[str | None, Callable[[Any], Any]] = {
        "date": _to_date,
        "local-timestamp-micros": lambda v: _to_datetime(v, tz=False),
        "timestamp-micros": lambda v: _to_datetime(v, tz=True),
        "time-micros": lambda v: v if isinstance(v, dt.time) else dt.time.fromisoformat(str(v)),
        "decimal": lambda v: Decimal(str(v)),
        "uuid": lambda v: str(v) if isinstance(v, uuid.UUID) else v,
    }
    if logical in converters:
        return converters[logical](value)
    if kind == "record":
        return {f["name"]: _coerce(f["type"], value.get(f["name"])) for f in avro["fields"]}
    if kind == "array":
        return [_coerce(avro["items"], v) for v in value]
    if kind == "map":
        pairs = value.items() if isinstance(value, dict) else value  # JSON-ready maps are [key, value] pairs
        return {k: _coerce(avro["values"], v) for k, v in pairs}
    if kind == "fixed" and isinstance(value, str):
        return base64.b64decode(value)
    return value


class AvroCodec:
    """Encodes/decodes one table's keys and envelopes given their registered schema ids."""

    def __init__(self, key: dict[str, Any], value: dict[str, Any], key_id: int, value_id: int) -> None:
        from fastavro import parse_schema

        self._named: dict[str, Any] = {}
        self.key_schema = parse_schema(key, self._named)
        self.value_schema = parse_schema(value, {})
        self._row = value["fields"][0]["type"][1]
        self._key = key
        self._ready = ready_converter(self._row)
        self._key_ready = ready_converter(key)
        self.key_id, self.value_id = key_id, value_id

    def encode_value(self, event: ChangeEvent) -> bytes:
        record = event.to_dict()
        record["before"] = _coerce(self._row, event.before)
        record["after"] = _coerce(self._row, event.after)
        return _frame(self.value_id, self.value_schema, record)

    def encode_key(self, key: dict[str, Any]) -> bytes:
        return _frame(self.key_id, self.key_schema, _coerce(self._key, key))

    def decode_value(self, payload: bytes) -> ChangeEvent:
        """The event, images JSON-ready (`icetide.events.encode_row`'s representation)."""
        return envelope_event(_unframe(payload, self.value_id, self.value_schema), self._ready)

    def decode_key(self, payload: bytes) -> dict[str, Any]:
        decoded: dict[str, Any] = self._key_ready(_unframe(payload, self.key_id, self.key_schema))
        return decoded


def envelope_event(raw: Any, ready: Callable[[Any], Any]) -> ChangeEvent:
    """A decoded envelope record as an event; `ready` turns a decoded row into its JSON-ready image."""
    if not isinstance(raw, dict) or not isinstance(raw.get("source"), dict):
        raise EventError("Avro value is not a change-event envelope")
    try:
        before = ready(raw["before"]) if raw.get("before") is not None else None
        after = ready(raw["after"]) if raw.get("after") is not None else None
        return ChangeEvent(op=raw["op"], before=before, after=after, source=Source.from_dict(raw["source"]),
                           ts_ms=int(raw["ts_ms"]))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise EventError(f"bad Avro change event: {exc!r}") from None


_AS_IS_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "string"})


def _as_is(avro: Any) -> bool:
    """True if fastavro decodes values of `avro` to their JSON-ready form already (no logical type)."""
    if isinstance(avro, str):
        return avro in _AS_IS_PRIMITIVES
    if isinstance(avro, list):
        return all(_as_is(branch) for branch in avro)
    return isinstance(avro, dict) and "logicalType" not in avro and avro.get("type") in _AS_IS_PRIMITIVES


def ready_converter(avro: Any, named: dict[str, Any] | None = None) -> Callable[[Any], Any]:
    """Decoded Avro value → its JSON-ready form (maps as [key, value] pairs, as the changelog's)."""
    named = {} if named is None else named
    if isinstance(avro, list):
        inner = ready_converter(unwrap(avro)[0], named)
        return lambda v: None if v is None else inner(v)
    if isinstance(avro, str):
        if avro in named:
            return lambda v: ready_converter(named[avro], named)(v)
        return encode_value
    kind = avro.get("type")
    if kind in ("record", "fixed"):
        named[avro["name"]] = avro
    if kind == "record":
        names = [f["name"] for f in avro["fields"]]
        special = [(f["name"], ready_converter(f["type"], named)) for f in avro["fields"]
                   if not _as_is(f["type"])]
        if not special:  # every field decodes to its JSON-ready value already (str, int, bool)
            return lambda v: {name: v.get(name) for name in names}

        def record(v: Any) -> dict[str, Any]:
            out = {name: v.get(name) for name in names}
            for name, convert in special:  # only the fields that need it (dates, decimals, floats, …)
                out[name] = convert(out[name])
            return out

        return record
    if kind == "array":
        item = ready_converter(avro["items"], named)
        return lambda v: [item(x) for x in v]
    if kind == "map":
        value = ready_converter(avro["values"], named)
        return lambda v: [[k, value(x)] for k, x in v.items()]
    return lambda v: None if v is None else encode_value(v)


def _frame(schema_id: int, schema: Any, record: Any) -> bytes:
    from fastavro import schemaless_writer

    buf = io.BytesIO()
    buf.write(_HEADER.pack(MAGIC, schema_id))
    try:
        schemaless_writer(buf, schema, record)
    except (ValueError, TypeError, AttributeError) as exc:
        raise EventError(f"cannot encode as Avro: {exc}") from None
    return buf.getvalue()


def schema_id_of(payload: bytes) -> int:
    """The schema id in a Confluent-framed payload; EventError if it is not one."""
    if len(payload) < _HEADER.size or payload[0] != MAGIC:
        raise EventError("not a Confluent wire-format payload (magic byte 0 missing)")
    return int(_HEADER.unpack_from(payload)[1])


def _unframe(payload: bytes, expected_id: int, schema: Any) -> Any:
    from fastavro import schemaless_reader

    got = schema_id_of(payload)
    if got != expected_id:
        raise EventError(f"payload has schema id {got}, expected {expected_id}")
    try:
        return schemaless_reader(io.BytesIO(payload[_HEADER.size :]), schema, None)
    except (EOFError, ValueError, TypeError, IndexError) as exc:
        raise EventError(f"cannot decode Avro body: {exc}") from None


def unwrap(avro: Any) -> tuple[Any, bool]:
    """(the non-null branch, optional) of a field type."""
    if isinstance(avro, list):
        branches = [b for b in avro if b != "null"]
        if len(branches) != 1:
            raise EventError(f"unsupported Avro union {avro}")
        return branches[0], len(branches) < len(avro)
    return avro, False


def field_names(key: dict[str, Any]) -> tuple[str, ...]:
    """The field names of a key record schema."""
    if not isinstance(key, dict) or key.get("type") != "record":
        raise EventError("Avro key schema is not a record")
    return tuple(str(f["name"]) for f in key["fields"])
