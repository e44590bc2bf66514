"""The row schema a change event travels with: column names, Iceberg types, nullability.

Every encoding can tell a consumer what its row images hold: Avro through the registered value
schema, `connect-json` inline (`{"schema": …, "payload": …}`), plain JSON through the table's record
on `<prefix>.schema-changes`. Each decoder turns what it has into one `RowSchema`, so sinks type
their downstream columns from the same description whatever the encoding.

Types are Iceberg's own type strings, as `str(pyiceberg type)` prints them and as the
schema-change records carry them (`typeName`): `boolean`, `int`, `long`, `float`, `double`,
`decimal(10, 2)`, `date`, `time`, `timestamp`, `timestamptz`, `string`, `uuid`, `binary`,
`fixed[16]`, and nested `struct<…>` / `list<…>` / `map<…>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from icetide.errors import EventError

if TYPE_CHECKING:
    from pyiceberg.schema import Schema

_DECIMAL = re.compile(r"decimal\((\d+),\s*(\d+)\)")


@dataclass(frozen=True)
class Column:
    """One column of a row image."""

    name: str
    type: str  # an Iceberg type string (module docstring)
    optional: bool = True
    field_id: int | None = None  # the Iceberg field id when known: follows a column through a rename

    @property
    def decimal(self) -> tuple[int, int] | None:
        """(precision, scale) of a decimal column, else None."""
        found = _DECIMAL.fullmatch(self.type)
        return (int(found.group(1)), int(found.group(2))) if found else None


@dataclass(frozen=True)
class RowSchema:
    """The columns of one table's row images in one Iceberg schema version."""

    columns: tuple[Column, ...]
    schema_id: int = 0

    def column(self, name: str) -> Column | None:
        for column in self.columns:
            if column.name == name:
                return column
        return None

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    @classmethod
    def from_iceberg(cls, schema: Schema) -> RowSchema:
        return cls(tuple(Column(f.name, str(f.field_type), not f.required, f.field_id) for f in schema.fields),
                   schema.schema_id)

    @classmethod
    def from_schema_change(cls, value: dict[str, Any]) -> RowSchema:
        """From one `<prefix>.schema-changes` record value (`streaming.poller.schema_change`)."""
        try:
            table = value["tableChanges"][0]["table"]
            columns = tuple(Column(str(c["name"]), str(c["typeName"]), bool(c.get("optional", True)),
                                   c.get("fieldId")) for c in table["columns"])
            return cls(columns, int(value.get("schema_id", 0)))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise EventError(f"bad schema-change record: {exc!r}") from None
