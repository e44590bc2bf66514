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
