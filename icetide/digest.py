"""Order-independent table digests, to prove that a downstream copy equals its source.

A digest is (row count, checksum): the checksum is the sum modulo 2**128 of the SHA-256 of each
row's canonical JSON (keys sorted, values encoded as in change events). Summing keeps it
independent of row order while still counting duplicates (XOR would cancel them).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from icetide.events import encode_row

_MOD = 2**128


@dataclass(frozen=True)
class Digest:
    rows: int
    checksum: str  # 32 hex digits

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "checksum": self.checksum}


def canonical_row(row: Mapping[str, Any], columns: Iterable[str] | None = None) -> str:
    """The canonical text of one row (optionally restricted to `columns`)."""
    encoded = encode_row(dict(row))
    if columns is not None:
        encoded = {c: encoded.get(c) for c in columns}
    return json.dumps(encoded, sort_keys=True, separators=(",", ":"), default=str)


def digest(rows: Iterable[Mapping[str, Any]], columns: Iterable[str] | None = None) -> Digest:
    cols = list(columns) if columns is not None else None
    total = 0
    count = 0
    for row in rows:
        h = hashlib.sha256(canonical_row(row, cols).encode()).digest()
        total = (total + int.from_bytes(h[:16], "big")) % _MOD
        count += 1
    return Digest(rows=count, checksum=f"{total:032x}")
