"""Order-independent table digests, to prove that a downstream copy equals its source.

A digest is (row count, checksum): the checksum is the sum modulo 2**128 of the SHA-256 of each
row's canonical JSON (keys sorted, values encoded as in change events). Summing keeps it
independent of row order while still counting duplicates (XOR would cancel them).

With the source's `RowSchema` the comparison is typed: each value must be the Python value of its
column's Iceberg type (a `Decimal` for a decimal, a `date` for a date, an aware `datetime` for a
timestamptz, ...), so a downstream text column holding `"12.50"` where the source has the decimal
12.50 does not digest equal. A value of the wrong type is tagged with its type (and counted per
column in `Digest.mismatches`). `float` columns compare as 32-bit floats (PostgreSQL `real` reads
back in its shortest decimal form).
"""

from __future__ import annotations

import datetime as dt
import decimal
import hashlib
import json
import struct
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from icetide.events import encode_row, encode_value
from icetide.rowschema import RowSchema

_MOD = 2**128
_NESTED = ("struct<", "list<", "map<")


@dataclass(frozen=True)
class Digest:
    rows: int
    checksum: str  # 32 hex digits
    mismatches: dict[str, str] = field(default_factory=dict, compare=False)  # column → "N values of type T"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"rows": self.rows, "checksum": self.checksum}
        if self.mismatches:
            out["type_mismatches"] = self.mismatches
        return out


def _is(value: Any, kind: str) -> bool:
    """True if `value` is the Python value of Iceberg type `kind`."""
    if kind == "boolean":
        return isinstance(value, bool)
    if kind in ("int", "long"):
        return isinstance(value, int) and not isinstance(value, bool)
    if kind in ("float", "double"):
        return isinstance(value, float)
    if kind.startswith("decimal("):
        return isinstance(value, decimal.Decimal)
    if kind == "date":
        return isinstance(value, dt.date) and not isinstance(value, dt.datetime)
    if kind == "time":
        return isinstance(value, dt.time)
    if kind in ("timestamp", "timestamptz"):
        return isinstance(value, dt.datetime) and (value.tzinfo is not None) == (kind == "timestamptz")
    if kind == "string":
        return isinstance(value, str)
    if kind == "uuid":
        return isinstance(value, uuid.UUID)
    if kind == "binary" or kind.startswith("fixed["):
        return isinstance(value, bytes)
    if kind.startswith(_NESTED):
        return isinstance(value, dict | list | tuple)
    return True  # a type this digest does not know: compared by its JSON encoding


def typed_value(kind: str, value: Any) -> Any:
    """The canonical JSON of one value of Iceberg type `kind` (wrong types stay distinguishable)."""
    if value is None:
        return None
    if not _is(value, kind):
        return {"!type": type(value).__name__, "value": encode_value(value)}
    if kind == "float":
        return encode_value(struct.unpack("<f", struct.pack("<f", value))[0])
    return encode_value(value)


def canonical_row(row: Mapping[str, Any], columns: Iterable[str] | None = None,
                  schema: RowSchema | None = None) -> str:
    """The canonical text of one row (optionally restricted to `columns`, or typed by `schema`)."""
    if schema is not None:
        encoded = {c.name: typed_value(c.type, row.get(c.name)) for c in schema.columns}
    else:
        encoded = encode_row(dict(row))
        if columns is not None:
            encoded = {c: encoded.get(c) for c in columns}
    return json.dumps(encoded, sort_keys=True, separators=(",", ":"), default=str)


def digest(rows: Iterable[Mapping[str, Any]], columns: Iterable[str] | None = None,
           schema: RowSchema | None = None) -> Digest:
    cols = list(columns) if columns is not None else None
    total = 0
    count = 0
    wrong: Counter[tuple[str, str]] = Counter()
    for row in rows:
        if schema is not None:
            for c in schema.columns:
                value = row.get(c.name)
                if value is not None and not _is(value, c.type):
                    wrong[(c.name, type(value).__name__)] += 1
        h = hashlib.sha256(canonical_row(row, cols, schema).encode()).digest()
        total = (total + int.from_bytes(h[:16], "big")) % _MOD
        count += 1
    mismatches = {name: f"{n} values of type {kind}" for (name, kind), n in sorted(wrong.items())}
    return Digest(rows=count, checksum=f"{total:032x}", mismatches=mismatches)
