"""Stream filtering equals the secure views: a topic carries what the audience's view returns."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import exp

from policies.local import lake
from policies.stream import apply_to_arrow, apply_to_rows
from tests.unit.policy_engine.support import VENDAS, example

pytestmark = pytest.mark.unit

COMPILED = example()
ROW = st.fixed_dictionaries({
    "sale_id": st.integers(1, 10**9),
    "sale_ts": st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2030, 1, 1)),
    "year": st.integers(2020, 2026), "month": st.integers(1, 12),
    "region": st.sampled_from(["North", "South", "East", "north", None]),
    "product": st.text(max_size=8), "customer_email": st.one_of(st.none(), st.emails()),
    "price": st.decimals(0, 10**6, places=2, allow_nan=False), "quantity": st.integers(0, 1000),
})


def key(row: dict[str, Any]) -> str:
    return repr(sorted(row.items()))


@settings(max_examples=15, deadline=None)
@given(rows=st.lists(ROW, max_size=15))
def test_stream_rows_equal_view_rows(rows: list[dict[str, Any]]) -> None:
    con = lake(COMPILED, {VENDAS: rows})
    try:
        for user in ("ana", "bruno", "carla", "erin", "dave"):
            streamed = apply_to_rows(COMPILED, user, VENDAS, rows)
            access = COMPILED.get(user, VENDAS)
            if access is None or not access.visible:
                assert streamed == []
                continue
            view = exp.table_("vendas", db=f"sec_{user}", catalog="lake")
            rel = con.sql(exp.select("*").from_(view).sql(dialect="duckdb"))
            viewed = [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]
            assert sorted(map(key, streamed)) == sorted(map(key, viewed))
    finally:
        con.close()


def test_arrow_batches_missing_and_extra_columns() -> None:
    import pyarrow as pa

    batch = pa.table({"sale_id": [1, 2], "region": ["North", "South"], "price": [Decimal("150.00"), Decimal("9.99")],
                      "surprise": ["x", "y"]})
    out = apply_to_arrow(COMPILED, "ana", VENDAS, batch).to_pylist()
    assert [r["sale_id"] for r in out] == [1]
    assert out[0]["price"] == Decimal("100.00") and out[0]["surprise"] is None and out[0]["customer_email"] == "****"
