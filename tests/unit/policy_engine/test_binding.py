"""Identity attributes are bound as escaped literals: any value selects exactly its own rows."""

from __future__ import annotations

import pytest
import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st

from policies.stream import apply_to_rows
from tests.unit.policy_engine.support import EXAMPLE, VENDAS, compile_text, rows

pytestmark = pytest.mark.unit

# YAML-level quirks (line separators, private/unassigned code points) are out of scope here
VALUES = st.text(st.characters(exclude_categories=("Cs", "Cc", "Zl", "Zp", "Co", "Cn"),
                               exclude_characters="\\\ufeff"), min_size=1, max_size=20)


@settings(max_examples=60, deadline=None)
@given(value=VALUES)
def test_attribute_values_cannot_escape_their_literal(value: str) -> None:
    text = EXAMPLE.read_text().replace("attributes: {region: North}", "attributes: {region: REGION}")
    import json

    compiled = compile_text(text.replace("REGION", json.dumps(value, ensure_ascii=False)))
    access = compiled.get("ana", VENDAS)
    assert access is not None
    for dialect in ("spark", "trino", "duckdb"):
        rendered = access.filter.sql(dialect=dialect)
        reparsed = sqlglot.parse_one(rendered, read=dialect)
        literals = [lit.this for lit in reparsed.find_all(sqlglot.exp.Literal) if lit.is_string]
        assert literals == [value], (dialect, rendered)
    data = [dict(r, region=value) if r["sale_id"] % 2 else r for r in rows(8)]
    seen = apply_to_rows(compiled, "ana", VENDAS, data)
    assert sorted(r["sale_id"] for r in seen) == sorted(r["sale_id"] for r in data if r["region"] == value)
