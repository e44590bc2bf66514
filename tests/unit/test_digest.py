"""Digests are order-independent, count duplicates, and see every changed value."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from icetide.digest import digest

pytestmark = pytest.mark.unit

rows_st = st.lists(st.fixed_dictionaries({"id": st.integers(0, 50), "v": st.one_of(st.none(), st.text(max_size=5))}),
                   max_size=30)


@given(rows=rows_st, data=st.data())
def test_order_independent(rows: list[dict], data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(rows))
    assert digest(rows) == digest(shuffled)


@given(rows=rows_st.filter(bool))
def test_duplicates_count(rows: list[dict]) -> None:
    assert digest(rows + rows[:1]) != digest(rows)


@given(rows=rows_st.filter(bool), data=st.data())
def test_any_value_change_is_seen(rows: list[dict], data: st.DataObject) -> None:
    i = data.draw(st.integers(0, len(rows) - 1))
    changed = [dict(r) for r in rows]
    changed[i]["v"] = (changed[i]["v"] or "") + "x"
    assert digest(changed) != digest(rows)


def test_column_restriction_ignores_other_columns() -> None:
    assert digest([{"id": 1, "x": 1}], ["id"]) == digest([{"id": 1, "x": 2}], ["id"])


def test_typed_digest_tells_text_from_the_decimal_it_spells() -> None:
    """Bug 3: verify compared JSON encodings, so a text column "12.50" digested equal to the decimal 12.50."""
    import datetime as dt
    from decimal import Decimal

    from icetide.rowschema import Column, RowSchema

    schema = RowSchema((Column("id", "long"), Column("price", "decimal(10, 2)"), Column("day", "date"),
                        Column("at", "timestamptz"), Column("f", "float")))
    source = [{"id": 1, "price": Decimal("12.50"), "day": dt.date(2024, 1, 2),
               "at": dt.datetime(2024, 1, 1, 1, tzinfo=dt.UTC), "f": 0.10000000149011612}]
    as_text = [{"id": 1, "price": "12.50", "day": "2024-01-02", "at": "2024-01-01T01:00:00.000000Z",
                "f": 0.10000000149011612}]
    assert digest(source, ["id", "price", "day", "at", "f"]) == digest(as_text, ["id", "price", "day", "at", "f"])
    typed = digest(as_text, schema=schema)
    assert digest(source, schema=schema) != typed
    assert typed.mismatches == {"at": "1 values of type str", "day": "1 values of type str",
                                "price": "1 values of type str"}
    # the same instant in another zone, and a real read back in its shortest form, are equal
    other_zone = dt.datetime(2024, 1, 1, 3, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    read_back = [{**source[0], "at": other_zone, "f": 0.1}]
    assert digest(read_back, schema=schema) == digest(source, schema=schema)
    assert digest([{**source[0], "price": Decimal("12.51")}], schema=schema) != digest(source, schema=schema)
