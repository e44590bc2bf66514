"""The roadmap's cases and deny-by-default, on rows filtered and masked in DuckDB."""

from __future__ import annotations

import pytest

from policies.stream import apply_to_rows
from tests.unit.policy_engine.support import VENDAS, compile_text, example, provider, rows

pytestmark = pytest.mark.unit


def test_user_a_sees_only_north_and_user_b_only_south() -> None:
    compiled = example()
    data = rows()
    ana = apply_to_rows(compiled, "ana", VENDAS, data)
    bruno = apply_to_rows(compiled, "bruno", VENDAS, data)
    assert ana and {r["region"] for r in ana} == {"North"}
    assert bruno and {r["region"] for r in bruno} == {"South"}
    assert len(ana) == sum(r["region"] == "North" for r in data)


def test_price_is_masked_for_analysts_and_clear_for_admins() -> None:
    compiled = example()
    data = rows()
    clear = {r["price"] for r in data}
    for row in apply_to_rows(compiled, "ana", VENDAS, data):
        assert row["price"] % 100 == 0 and row["price"] not in clear
    assert {r["price"] for r in apply_to_rows(compiled, "carla", VENDAS, data)} == clear


def test_email_is_redacted_for_non_admins() -> None:
    compiled = example()
    data = rows()
    emails = {r["customer_email"] for r in data}
    for user in ("ana", "bruno", "erin"):
        seen = {r["customer_email"] for r in apply_to_rows(compiled, user, VENDAS, data)}
        assert seen and not seen & emails
    assert {r["customer_email"] for r in apply_to_rows(compiled, "carla", VENDAS, data)} == emails


def test_a_user_no_rule_matches_sees_nothing() -> None:
    compiled = example()
    assert apply_to_rows(compiled, "dave", VENDAS, rows()) == []
    assert apply_to_rows(compiled, "mallory", VENDAS, rows()) == []  # not even declared
    assert compiled.get("dave", VENDAS) is not None
    assert not compiled.get("dave", VENDAS).visible  # type: ignore[union-attr]


def test_a_column_added_later_is_masked_until_classified() -> None:
    schema = provider()
    tables = {"sales.vendas": {**dict(schema.table(VENDAS).columns), "discount": "double"}}  # type: ignore[union-attr]
    from policies.schemas import DictSchemaProvider
    from tests.unit.policy_engine.support import EXAMPLE

    compiled = compile_text(EXAMPLE.read_text(), schema=DictSchemaProvider(tables))
    data = [dict(r, discount=0.25) for r in rows()]
    for user in ("ana", "carla"):  # even admins: no rule classifies the new column yet
        out = apply_to_rows(compiled, user, VENDAS, data)
        assert out and all(r["discount"] is None for r in out)
    # rows carrying a column the compiled policy never heard of: NULL as well
    out = apply_to_rows(example(), "carla", VENDAS, [dict(r, brand_new="x") for r in rows()])
    assert out and all(r["brand_new"] is None for r in out)


def test_user_without_the_attribute_is_denied() -> None:
    text = (example_text := __import__("tests.unit.policy_engine.support", fromlist=["EXAMPLE"]).EXAMPLE.read_text())
    text = example_text.replace("bruno: {groups: [analysts], attributes: {region: South}}",
                                "bruno: {groups: [analysts]}")
    assert text != example_text
    compiled = compile_text(text)
    assert apply_to_rows(compiled, "bruno", VENDAS, rows()) == []
    access = compiled.get("bruno", VENDAS)
    assert access is not None and any("no attribute region" in n for n in access.notes)
