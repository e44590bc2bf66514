"""Flink SQL string literals and `WITH (...)` options, written one way for every statement icetide sends.

Flink SQL DDL has no bound parameters, so catalog and connector options (bootstrap servers, topics,
credentials of a catalog) are pasted as string literals: single quotes, an embedded quote doubled,
as Flink's SQL parser reads them. The kernel's catalog DDL and the streaming room's job and mirror
statements all go through here.
"""

from __future__ import annotations

from collections.abc import Mapping


def quote_literal(value: str) -> str:
    """A Flink SQL string literal: `it's` → `'it''s'`."""
    return "'" + value.replace("'", "''") + "'"


def with_options(options: Mapping[str, str]) -> str:
    """The inside of a `WITH (...)` clause: one `'key' = 'value'` per line, in the mapping's order."""
    return ",\n  ".join(f"{quote_literal(k)} = {quote_literal(v)}" for k, v in options.items())
