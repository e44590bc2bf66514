"""Where table schemas come from: the Iceberg catalog, or a YAML/dict for tests and `--schema`.

Types are kept as canonical Spark-style names: string, boolean, int, long, float, double,
decimal(p,s), date, timestamp, timestamptz, binary. Nested types are recorded as `other:<t>`
(they can be masked with null but not used in filters).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml
from icetide.errors import PolicyError

if TYPE_CHECKING:
    from icetide.settings import Settings

SIMPLE_TYPES = ("string", "boolean", "int", "long", "float", "double", "date", "timestamp", "timestamptz",
                "binary")
DECIMAL = re.compile(r"decimal\((\d{1,2}),\s*(\d{1,2})\)")


def normalize_type(raw: str) -> str:
    """Canonical name for a type written in a schema file or by Iceberg; ValueError if unknown."""
    t = raw.strip().lower()
    aliases = {"bigint": "long", "integer": "int", "varchar": "string", "text": "string", "bool": "boolean",
               "timestamp_ntz": "timestamp", "timestamp_ltz": "timestamptz", "real": "float"}
    t = aliases.get(t, t)
    if t in SIMPLE_TYPES:
        return t
    m = DECIMAL.fullmatch(t)
    if m and 0 <= int(m.group(2)) <= int(m.group(1)) <= 38 and int(m.group(1)) > 0:
        return f"decimal({int(m.group(1))},{int(m.group(2))})"
    raise ValueError(f"unknown column type {raw!r}")


def family(col_type: str) -> str:
    """The comparison family: number, string, boolean, date, timestamp, binary, other."""
    if col_type in ("int", "long", "float", "double") or col_type.startswith("decimal"):
        return "number"
    if col_type in ("timestamp", "timestamptz"):
        return "timestamp"
    if col_type in ("string", "boolean", "date", "binary"):
        return col_type
    return "other"


@dataclass(frozen=True)
class TableSchema:
    """Columns of one table, in order, with canonical types."""

    name: str
    columns: tuple[tuple[str, str], ...]

    def type_of(self, column: str) -> str | None:
        for name, col_type in self.columns:
            if name == column:
                return col_type
        return None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.columns)


class SchemaProvider(Protocol):
    """Looks up a table's schema by `namespace.table`; None when the table does not exist."""

    def table(self, name: str) -> TableSchema | None: ...


class DictSchemaProvider:
    """Schemas given as {table: {column: type}} (unit tests, `policy check --schema FILE`)."""

    def __init__(self, tables: dict[str, dict[str, str]], source: str = "<schema>") -> None:
        self._tables: dict[str, TableSchema] = {}
        for name, columns in tables.items():
            if not isinstance(columns, dict) or not columns:
                raise PolicyError(f"schema of {name!r} must map column names to types", file=source, line=1, col=1)
            try:
                cols = tuple((str(c).lower(), normalize_type(str(t))) for c, t in columns.items())
            except ValueError as exc:
                raise PolicyError(f"table {name!r}: {exc}", file=source, line=1, col=1) from None
            self._tables[name.lower()] = TableSchema(name.lower(), cols)

    def table(self, name: str) -> TableSchema | None:
        return self._tables.get(name.lower())

    @classmethod
    def from_file(cls, path: str | Path) -> DictSchemaProvider:
        """A YAML file `tables: {ns.table: {column: type}}`."""
        try:
            data: Any = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise PolicyError(f"cannot read schema file: {exc.__class__.__name__}", file=str(path), line=1,
                              col=1) from None
        if not isinstance(data, dict) or not isinstance(data.get("tables"), dict):
            raise PolicyError("schema file must have a 'tables' mapping", file=str(path), line=1, col=1)
        return cls(data["tables"], str(path))


def iceberg_type_name(iceberg_type: Any) -> str:
    """Canonical name for a PyIceberg type object."""
    text = str(iceberg_type).lower()
    try:
        return normalize_type(text)
    except ValueError:
        return f"other:{text}"


class CatalogSchemaProvider:
    """Schemas read from the Iceberg catalog through PyIceberg (read-only), cached per table."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._cache: dict[str, TableSchema | None] = {}

    def table(self, name: str) -> TableSchema | None:
        if name not in self._cache:
            from icetide.catalog import pyiceberg_catalog
            from pyiceberg.exceptions import NoSuchTableError

            try:
                table = pyiceberg_catalog(self._settings).load_table(name)
            except NoSuchTableError:
                self._cache[name] = None
            else:
                cols = tuple((f.name.lower(), iceberg_type_name(f.field_type)) for f in table.schema().fields)
                self._cache[name] = TableSchema(name, cols)
        return self._cache[name]
