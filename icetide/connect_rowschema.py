"""The `RowSchema` of a Kafka Connect schema (connect-json's inline one, `icetide.connect_json`):
Debezium's and Connect's semantic type names first, then the physical types."""

from __future__ import annotations

from typing import Any

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
from icetide.errors import EventError
from icetide.rowschema import Column, RowSchema

_NAMED = {DATE: "date", "org.apache.kafka.connect.data.Date": "date", MICRO_TIME: "time",
          "io.debezium.time.Time": "time", "io.debezium.time.NanoTime": "time",
          "org.apache.kafka.connect.data.Time": "time", MICRO_TIMESTAMP: "timestamp",
          "io.debezium.time.Timestamp": "timestamp", "io.debezium.time.NanoTimestamp": "timestamp",
          "org.apache.kafka.connect.data.Timestamp": "timestamp", ZONED_TIMESTAMP: "timestamptz",
          UUID: "uuid"}
_PHYSICAL = {"boolean": "boolean", "int8": "int", "int16": "int", "int32": "int", "int64": "long",
             "float": "float", "double": "double", "string": "string", "bytes": "binary"}


def iceberg_type(schema: dict[str, Any]) -> str:
    """The Iceberg type string (`icetide.rowschema`) of one Connect schema."""
    kind, name = schema.get("type"), schema.get("name")
    params = schema.get("parameters") or {}
    if name == DECIMAL:
        return f"decimal({int(params.get(PRECISION, 38))}, {int(params.get('scale', 0))})"
    if name in _NAMED:
        return _NAMED[name]
    if kind == "bytes" and FIXED_SIZE in params:
        return f"fixed[{int(params[FIXED_SIZE])}]"
    if kind == "struct":
        inner = ", ".join(f"{int((f.get('parameters') or {}).get(FIELD_ID, 0))}: {f['field']}: "
                          f"{'optional' if f.get('optional', True) else 'required'} {iceberg_type(f)}"
                          for f in schema.get("fields", []))
        return f"struct<{inner}>"
    if kind == "array":
        return f"list<{iceberg_type(schema['items'])}>"
    if kind == "map":
        return f"map<{iceberg_type(schema['keys'])}, {iceberg_type(schema['values'])}>"
    if kind in _PHYSICAL:
        return _PHYSICAL[str(kind)]
    raise EventError(f"unknown Connect schema type {kind!r}")


def row_schema(row: dict[str, Any], schema_id: int = 0) -> RowSchema:
    """The `RowSchema` of a Connect row struct (e.g. the envelope's `after` field)."""
    try:
        columns = []
        for f in row.get("fields", []):
            field_id = (f.get("parameters") or {}).get(FIELD_ID)
            columns.append(Column(str(f["field"]), iceberg_type(f), bool(f.get("optional", True)),
                                  int(field_id) if field_id is not None else None))
    except (KeyError, TypeError, ValueError) as exc:
        raise EventError(f"bad Connect schema: {exc!r}") from None
    return RowSchema(tuple(columns), schema_id)
