"""How the mirror's Kafka source table declares columns whose wire value is not Flink's own type.

Plain JSON carries every value in a form Flink's `debezium-json` parses into the column's type
(timestamps as ISO-8601). connect-json carries Debezium's semantic types, which Flink's JSON format
reads only as their physical types (the way a Debezium user declares them in Flink): date → INT
(days), time → BIGINT (µs), timestamp → BIGINT (µs), decimal → BYTES (the unscaled two's-complement
value); timestamptz is an ISO-8601 string with `Z`, which Flink parses as TIMESTAMP_LTZ directly.
Avro (Flink's `debezium-avro-confluent`, reading with the registered writer schema) needs it for
time and timestamp (long µs: Flink's Avro schema converter refuses TIMESTAMP(6), "it only supports
precision less than 3") and timestamptz (a ZonedTimestamp string).

Such a column is declared with its wire type and converted in the INSERT's SELECT by a small
Python scalar function (`converter`, one per column), since Flink SQL has no function from epoch
microseconds or decimal bytes at full precision. The converters use only the standard library:
they are shipped to Flink's Python worker by value.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from icetide.errors import ConfigError

if TYPE_CHECKING:
    from pyiceberg.types import IcebergType

Spec = tuple[Any, ...]  # ("id",) | ("date",) | ("time",) | ("timestamp",) | ("zoned",) | ("decimal", scale)
#                         | ("struct", ((name, spec), ...)) | ("list", spec) | ("map", key spec, value spec)
IDENTITY: Spec = ("id",)


def wire(kind: IcebergType, fmt: str, flink_type: Callable[[IcebergType], str]) -> tuple[str, Spec]:
    """(Flink type of the value on the wire, conversion spec) of one Iceberg type under `fmt`."""
    from pyiceberg import types as t

    if fmt == "json":
        return flink_type(kind), IDENTITY
    connect = fmt == "connect-json"
    if isinstance(kind, t.DateType) and connect:
        return "INT", ("date",)
    if isinstance(kind, t.TimeType):
        return "BIGINT", ("time",)
    if isinstance(kind, t.TimestampType):  # Flink's Avro schema converter refuses TIMESTAMP(6)
        return "BIGINT", ("timestamp",)
    if isinstance(kind, t.DecimalType) and connect:
        return "BYTES", ("decimal", kind.scale)
    if isinstance(kind, t.TimestamptzType) and not connect:
        return "STRING", ("zoned",)
    if isinstance(kind, t.StructType):
        parts = [(f, *wire(f.field_type, fmt, flink_type)) for f in kind.fields]
        if all(spec == IDENTITY for _, _, spec in parts):
            return flink_type(kind), IDENTITY
        fields = ", ".join(f"`{f.name.replace('`', '``')}` {w}{'' if not f.required else ' NOT NULL'}"
                           for f, w, _ in parts)
        return f"ROW<{fields}>", ("struct", tuple((f.name, spec) for f, _, spec in parts))
    if isinstance(kind, t.ListType):
        inner, spec = wire(kind.element_type, fmt, flink_type)
        if spec == IDENTITY:
            return flink_type(kind), IDENTITY
        return f"ARRAY<{inner}{' NOT NULL' if kind.element_required else ''}>", ("list", spec)
    if isinstance(kind, t.MapType):
        (key, key_spec), (value, value_spec) = wire(kind.key_type, fmt, flink_type), wire(kind.value_type, fmt,
                                                                                           flink_type)
        if key_spec == value_spec == IDENTITY:
            return flink_type(kind), IDENTITY
        if connect and not isinstance(kind.key_type, t.StringType):
            raise ConfigError(f"map type {kind}: connect-json writes non-string keys as pairs, which Flink's "
                              "JSON format cannot read as a MAP")
        return (f"MAP<{key} NOT NULL, {value}{' NOT NULL' if kind.value_required else ''}>",
                ("map", key_spec, value_spec))
    return flink_type(kind), IDENTITY


def converter(spec: Spec) -> Callable[[Any], Any]:
    """The Python function turning a wire value (as PyFlink hands it over) into the column's value."""
    import datetime as dt
    import decimal

    epoch = dt.datetime(1970, 1, 1)

    def build(spec: Spec) -> Callable[[Any], Any]:
        kind = spec[0]
        if kind == "id":
            return lambda v: v
        if kind == "date":
            return lambda v: dt.date(1970, 1, 1) + dt.timedelta(days=v)
        if kind == "time":
            return lambda v: (epoch + dt.timedelta(microseconds=v)).time()
        if kind == "timestamp":
            return lambda v: epoch + dt.timedelta(microseconds=v)
        if kind == "zoned":
            return lambda v: dt.datetime.fromisoformat(v.replace("Z", "+00:00"))
        if kind == "decimal":
            scale = spec[1]

            def to_decimal(v: bytes) -> decimal.Decimal:
                n = int.from_bytes(v, "big", signed=True)
                return decimal.Decimal((1 if n < 0 else 0, tuple(int(c) for c in str(abs(n))), -scale))

            return to_decimal
        if kind == "struct":
            from pyflink.common import Row

            fields = [build(s) for _, s in spec[1]]
            return lambda v: Row(*[None if x is None else f(x) for f, x in zip(fields, v, strict=True)])
        if kind == "list":
            item = build(spec[1])
            return lambda v: [None if x is None else item(x) for x in v]
        if kind == "map":
            key, value = build(spec[1]), build(spec[2])
            return lambda v: {key(k): None if x is None else value(x) for k, x in v.items()}
        raise ValueError(f"unknown conversion {spec!r}")

    inner = build(spec)
    return lambda v: None if v is None else inner(v)
