"""The `RowSchema` of an Avro change-event schema (`icetide.avro`), for decoders that know the
registered value schema: Connect/Debezium names first, then Avro logical types (schemas written by
icetide before the Connect names had timestamptz as `timestamp-micros`), then primitives.
"""

from __future__ import annotations

from typing import Any

from icetide.avro import unwrap
from icetide.connect_names import MICRO_TIME, MICRO_TIMESTAMP, ZONED_TIMESTAMP
from icetide.errors import EventError
from icetide.rowschema import Column, RowSchema

_PRIMITIVE = {"boolean": "boolean", "int": "int", "long": "long", "float": "float", "double": "double",
              "string": "string", "bytes": "binary"}
_LOGICAL = {"date": "date", "time-micros": "time", "time-millis": "time", "local-timestamp-micros": "timestamp",
            "local-timestamp-millis": "timestamp", "timestamp-micros": "timestamptz",  # icetide before connect names
            "timestamp-millis": "timestamptz", "uuid": "uuid"}
_CONNECT_NAMES = {ZONED_TIMESTAMP: "timestamptz", MICRO_TIMESTAMP: "timestamp", MICRO_TIME: "time"}


def iceberg_type(avro: Any, named: dict[str, Any]) -> str:
    """The Iceberg type string (`icetide.rowschema`) of one (non-union) Avro type."""
    if isinstance(avro, str):
        if avro in _PRIMITIVE:
            return _PRIMITIVE[avro]
        if avro in named:
            return iceberg_type(named[avro], named)
        raise EventError(f"unknown Avro type {avro!r}")
    if avro.get("connect.name") in _CONNECT_NAMES:
        return _CONNECT_NAMES[avro["connect.name"]]
    logical, kind = avro.get("logicalType"), avro.get("type")
    if logical == "decimal":
        return f"decimal({int(avro['precision'])}, {int(avro.get('scale', 0))})"
    if logical in _LOGICAL:
        return _LOGICAL[logical]
    if kind == "fixed":
        named[avro["name"]] = avro
        return f"fixed[{int(avro['size'])}]"
    if kind == "record":
        named[avro["name"]] = avro
        return f"struct<{', '.join(_struct_field(f, named) for f in avro['fields'])}>"
    if kind == "array":
        return f"list<{iceberg_type(unwrap(avro['items'])[0], named)}>"
    if kind == "map":
        return f"map<string, {iceberg_type(unwrap(avro['values'])[0], named)}>"
    return iceberg_type(kind, named)


def _struct_field(field: dict[str, Any], named: dict[str, Any]) -> str:
    kind, optional = unwrap(field["type"])
    return f"{int(field.get('field-id', 0))}: {field['name']}: {'optional' if optional else 'required'} " \
           f"{iceberg_type(kind, named)}"


def row_schema(value: dict[str, Any], schema_id: int = 0) -> RowSchema:
    """The `RowSchema` of an envelope's row record (from the registered value schema)."""
    try:
        row = next(f for f in value["fields"] if f["name"] in ("before", "after"))
        named: dict[str, Any] = {}
        record, _ = unwrap(row["type"])
        if isinstance(record, str):
            raise EventError("value schema's row record is a reference")
        columns = []
        for f in record["fields"]:
            kind, optional = unwrap(f["type"])
            columns.append(Column(str(f["name"]), iceberg_type(kind, named), optional, f.get("field-id")))
    except (KeyError, TypeError, ValueError, StopIteration) as exc:
        raise EventError(f"Avro value schema is not a change-event envelope: {exc!r}") from None
    return RowSchema(tuple(columns), schema_id)
