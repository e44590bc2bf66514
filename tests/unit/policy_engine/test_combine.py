"""Combination rules: deny overrides allow, the strictest mask wins, the reports."""

from __future__ import annotations

import pytest

from policies.combine import findings
from policies.stream import apply_to_rows
from tests.unit.policy_engine.support import VENDAS, compile_text, rows

pytestmark = pytest.mark.unit

BASE = """
policy: combo
version: 2
principals:
  attributes: {region: string}
  groups: [analysts, interns, admins]
  users:
    ana: {groups: [analysts, interns], attributes: {region: North}}
    carla: {groups: [admins, interns]}
    zed: {groups: []}
keys: {k1: {env: ICETIDE_POLICY_KEY_K1}}
tags:
  pii: {default_mask: redact}
  open: {default_mask: none}
tables:
  sales.vendas:
    columns:
      sale_id: [open]
      sale_ts: [open]
      year: [open]
      month: [open]
      region: [open]
      product: [open]
      customer_email: [pii]
      price: [open]
    row_filters:
%ROWS%
    masks:
%MASKS%
"""


def policy(rows_yaml: str, masks_yaml: str = "      []") -> str:
    text = BASE.replace("%ROWS%", rows_yaml).replace("%MASKS%", masks_yaml)
    return text.replace("    masks:\n      []", "    masks: []")


def test_deny_overrides_allow() -> None:
    compiled = compile_text(policy("""
      - {id: all, to: everyone}
      - {id: no-south, to: {groups: [interns]}, effect: deny, filter: "region = 'South'"}
"""))
    out = apply_to_rows(compiled, "carla", VENDAS, rows())
    assert out and "South" not in {r["region"] for r in out}
    assert {r["region"] for r in apply_to_rows(compiled, "zed", VENDAS, rows())} == {"North", "South", "East"}


def test_deny_without_filter_hides_the_table() -> None:
    compiled = compile_text(policy("""
      - {id: all, to: everyone}
      - {id: block, to: {users: [ana]}, effect: deny}
"""))
    assert apply_to_rows(compiled, "ana", VENDAS, rows()) == []
    assert not compiled.get("ana", VENDAS).visible  # type: ignore[union-attr]


def test_null_filter_result_never_lets_a_row_through() -> None:
    compiled = compile_text(policy("""
      - {id: all, to: everyone}
      - {id: d, to: everyone, effect: deny, filter: "CASE WHEN region = 'North' THEN NULL ELSE FALSE END"}
"""))
    out = apply_to_rows(compiled, "zed", VENDAS, rows())
    assert out and "North" not in {r["region"] for r in out}


def test_strictest_mask_wins_and_overlap_is_reported() -> None:
    compiled = compile_text(policy("      - {id: all, to: everyone}", """
      - {id: m-a, to: {groups: [analysts]}, columns: [customer_email], mask: {show_last: 4}}
      - {id: m-b, to: {groups: [interns]}, columns: [customer_email], mask: {show_last: 8}}
      - {id: m-c, to: {groups: [admins]}, tags: [pii], mask: none}
      - {id: m-d, to: {groups: [analysts]}, columns: [customer_email], mask: {show_first: 2}}
"""))
    ana = compiled.get("ana", VENDAS)
    assert ana is not None and ana.mask_of("customer_email").kind == "redact"  # show_first vs show_last
    carla = compiled.get("carla", VENDAS)
    assert carla is not None and carla.mask_of("customer_email").label() == "show_last(8)"  # beats none
    kinds = {f.kind for f in findings(compiled.checked)}
    assert "overlapping-masks" in kinds


def test_first_match_cannot_unmask() -> None:
    """Rule order is irrelevant: an unmasking rule listed first does not win."""
    a = compile_text(policy("      - {id: all, to: everyone}", """
      - {id: clear, to: everyone, columns: [price], mask: none}
      - {id: hide, to: {users: [zed]}, columns: [price], mask: "null"}
"""))
    b = compile_text(policy("      - {id: all, to: everyone}", """
      - {id: hide, to: {users: [zed]}, columns: [price], mask: "null"}
      - {id: clear, to: everyone, columns: [price], mask: none}
"""))
    for compiled in (a, b):
        assert compiled.get("zed", VENDAS).mask_of("price").kind == "null"  # type: ignore[union-attr]
        assert compiled.get("ana", VENDAS).mask_of("price").kind == "none"  # type: ignore[union-attr]


def test_reports_never_matching_rules_and_uncovered_columns() -> None:
    compiled = compile_text(policy("      - {id: all, to: everyone}"))
    found = findings(compiled.checked)
    assert any(f.kind == "uncovered-column" and "quantity" in f.message for f in found)
    text = policy("      - {id: all, to: everyone}\n      - {id: lonely, to: {groups: [admins]}}")
    text = text.replace("carla: {groups: [admins, interns]}", "carla: {groups: [interns]}")
    found = findings(compile_text(text).checked)
    assert any(f.kind == "never-matches" and "lonely" in f.message for f in found)


def test_lookup_subquery_only_when_declared() -> None:
    from icetide.errors import PolicyError
    from policies.schemas import DictSchemaProvider
    from tests.unit.policy_engine.support import provider

    tables = {VENDAS: dict(provider().table(VENDAS).columns),  # type: ignore[union-attr]
              "sales.managers": {"region": "string", "manager": "string"}}
    schema = DictSchemaProvider(tables)
    sub = "region IN (SELECT region FROM sales.managers WHERE manager = user_name())"
    with pytest.raises(PolicyError, match="lookup_tables"):
        compile_text(policy(f'      - {{id: r, to: everyone, filter: "{sub}"}}'), schema=schema)
    compiled = compile_text(policy(
        f'      - {{id: r, to: everyone, filter: "{sub}", lookup_tables: [sales.managers]}}'), schema=schema)
    view = compiled.get("ana", VENDAS)
    assert view is not None and "'ana'" in view.filter.sql(dialect="spark")


def test_trino_refuses_hash_masks_of_any_type() -> None:
    from policies.compiler import TrinoTargetError, trino_rules

    compiled = compile_text(policy("      - {id: all, to: everyone}", """
      - {id: h, to: everyone, columns: [sale_id], mask: hash}
"""))
    with pytest.raises(TrinoTargetError, match="refuses keyed hashes"):
        trino_rules(compiled)
    assert compiled.get("ana", VENDAS).mask_of("sale_id").kind == "hash"  # type: ignore[union-attr]
