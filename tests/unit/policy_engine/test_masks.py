"""Every mask in DuckDB equals the Python reference, on many generated values."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from policies.keys import HmacPads
from policies.masks import applicable, reference, render, strictest
from policies.model import MaskSpec
from policies.yamlpos import Pos

pytestmark = pytest.mark.unit

POS = Pos("t.yaml", 1, 1)
PADS = HmacPads("k1", b"a-secret-key-of-enough-bytes")
LONG_PADS = HmacPads("k2", b"x" * 100)  # longer than the HMAC block: hashed first
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=40)


@pytest.fixture(scope="module")
def con() -> Any:
    from policies.stream import connect

    connection = connect()
    yield connection
    connection.close()


def run_duckdb(con: Any, mask: MaskSpec, col_type: str, values: list[Any], pads: HmacPads | None = None) -> list[Any]:
    import pyarrow as pa

    from policies.stream import arrow_type

    table = pa.table({"v": pa.array(values, type=arrow_type(col_type))})
    con.register("vals", table)
    select = exp.select(exp.alias_(render(mask, exp.column("v"), col_type, "duckdb", pads), "m")).from_("vals")
    out = [r["m"] for r in con.sql(select.sql(dialect="duckdb")).to_arrow_table().to_pylist()]
    con.unregister("vals")
    return out


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.one_of(st.none(), TEXT), min_size=1, max_size=30), n=st.integers(1, 8))
def test_string_masks_match_reference(con: Any, values: list[str | None], n: int) -> None:
    for mask in (MaskSpec("show_first", POS, n=n), MaskSpec("show_last", POS, n=n), MaskSpec("redact", POS),
                 MaskSpec("null", POS), MaskSpec("none", POS)):
        assert run_duckdb(con, mask, "string", values) == [reference(mask, v, "string") for v in values], mask


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.one_of(st.none(), TEXT), min_size=1, max_size=20))
def test_keyed_hash_is_hmac_sha256(con: Any, values: list[str | None]) -> None:
    for pads in (PADS, LONG_PADS):
        mask = MaskSpec("hash", POS, key=pads.key_id)
        assert run_duckdb(con, mask, "string", values, pads) == [reference(mask, v, "string", pads) for v in values]


@settings(max_examples=30, deadline=None)
@given(values=st.lists(st.integers(-(2**62), 2**62), min_size=1, max_size=20))
def test_keyed_hash_of_integers(con: Any, values: list[int]) -> None:
    mask = MaskSpec("hash", POS, key="k1")
    assert run_duckdb(con, mask, "long", values, PADS) == [reference(mask, v, "long", PADS) for v in values]


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.one_of(st.none(), st.integers(-(10**12), 10**12)), min_size=1, max_size=30),
       width=st.integers(1, 10**6))
def test_bucket_on_integers(con: Any, values: list[int | None], width: int) -> None:
    mask = MaskSpec("bucket", POS, width=Decimal(width))
    assert run_duckdb(con, mask, "long", values) == [reference(mask, v, "long") for v in values]
    ints = [None if v is None else v % 2**31 for v in values]
    assert run_duckdb(con, mask, "int", ints) == [reference(mask, v, "int") for v in ints]


@settings(max_examples=30, deadline=None)
@given(values=st.lists(st.integers(-(2**60), 2**60), min_size=1, max_size=20), width=st.integers(1, 10**6))
def test_bucket_of_longs_beyond_doubles_exact_range(con: Any, values: list[int], width: int) -> None:
    """Past 2**53 the quotient is still floored in double precision, but the multiple is an exact BIGINT."""
    mask = MaskSpec("bucket", POS, width=Decimal(width))
    assert run_duckdb(con, mask, "long", values) == [reference(mask, v, "long") for v in values]


@settings(max_examples=30, deadline=None)
@given(values=st.lists(st.decimals(min_value=-(10**30), max_value=10**30, places=2, allow_nan=False),
                       min_size=1, max_size=20), width=st.integers(1, 10**4))
@example(values=[Decimal("-499999999999998.04")], width=1)  # DuckDB's double→decimal(38,2) cast gave .04
def test_bucket_on_wide_decimals(con: Any, values: list[Decimal], width: int) -> None:
    """decimal(38,2) has more integer digits than a BIGINT: its bucket stays in double precision."""
    mask = MaskSpec("bucket", POS, width=Decimal(width))
    assert run_duckdb(con, mask, "decimal(38,2)", values) == [reference(mask, v, "decimal(38,2)") for v in values]


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.decimals(min_value=-(10**7), max_value=10**7, places=2, allow_nan=False),
                       min_size=1, max_size=30), width=st.integers(1, 10**4))
def test_bucket_on_decimals(con: Any, values: list[Decimal], width: int) -> None:
    mask = MaskSpec("bucket", POS, width=Decimal(width))
    assert run_duckdb(con, mask, "decimal(10,2)", values) == [reference(mask, v, "decimal(10,2)") for v in values]


@settings(max_examples=40, deadline=None)
@given(values=st.lists(st.floats(-1e12, 1e12, allow_nan=False), min_size=1, max_size=30),
       width=st.integers(1, 10**4))
def test_bucket_on_doubles(con: Any, values: list[float], width: int) -> None:
    mask = MaskSpec("bucket", POS, width=Decimal(width))
    assert run_duckdb(con, mask, "double", values) == [reference(mask, v, "double") for v in values]


@settings(max_examples=40, deadline=None)
@given(days=st.lists(st.dates(dt.date(1, 1, 1), dt.date(9999, 12, 31)), min_size=1, max_size=20),
       stamps=st.lists(st.datetimes(dt.datetime(1900, 1, 1), dt.datetime(2200, 1, 1)), min_size=1, max_size=20))
def test_year_only(con: Any, days: list[dt.date], stamps: list[dt.datetime]) -> None:
    mask = MaskSpec("year_only", POS)
    assert run_duckdb(con, mask, "date", days) == [reference(mask, v, "date") for v in days]
    assert run_duckdb(con, mask, "timestamp", stamps) == [reference(mask, v, "timestamp") for v in stamps]


def test_applicability() -> None:
    assert applicable("redact", "string") and not applicable("redact", "long")
    assert applicable("bucket", "decimal(10,2)") and not applicable("bucket", "string")
    assert applicable("year_only", "timestamptz") and not applicable("year_only", "int")
    assert applicable("null", "other:struct<a:int>")


@given(st.lists(st.sampled_from(["none", "null", "redact", "hash", "show_first", "show_last"]), min_size=1,
                max_size=5), st.integers(1, 9))
def test_strictest_is_never_weaker_than_any_input(kinds: list[str], n: int) -> None:
    from policies.masks import RANK

    masks = [MaskSpec(k, POS, n=n if k.startswith("show") else None, key="k1" if k == "hash" else None)
             for k in kinds]
    chosen, _ = strictest(masks, "string")
    assert all(RANK[chosen.kind] >= RANK[m.kind] for m in masks)


def test_every_dialect_renders_every_mask() -> None:
    import sqlglot

    cases = [("string", MaskSpec("show_last", POS, n=4)), ("string", MaskSpec("hash", POS, key="k1")),
             ("date", MaskSpec("year_only", POS)), ("decimal(10,2)", MaskSpec("bucket", POS, width=Decimal(10))),
             ("timestamp", MaskSpec("null", POS)), ("string", MaskSpec("redact", POS))]
    for col_type, mask in cases:
        for dialect in ("spark", "trino", "duckdb"):
            sql = render(mask, exp.column("c"), col_type, dialect, PADS).sql(dialect=dialect)
            assert sqlglot.parse_one(sql, read=dialect) is not None


@pytest.mark.parametrize(("col_type", "values", "width"), [
    ("decimal(10,2)", [Decimal("-99999999.99"), Decimal("99999999.99"), Decimal("-99999950.00")], 100),
    ("decimal(4,2)", [Decimal("-99.99"), Decimal("99.99")], 7),
    ("int", [-(2**31), 2**31 - 1], 7),
    ("long", [-(2**63), 2**63 - 1, 2**63 - 1000], 1000),
])
def test_bucket_at_the_ends_of_the_type_stays_in_the_type(con: Any, col_type: str, values: list[Any],
                                                          width: int) -> None:
    # before the fix: the bucket below the type's minimum (and above its maximum, for longs rounded through
    # double) did not fit the column type, and the query failed on a legal value in every engine — DuckDB
    # "Could not cast value -100000000.000000 to DECIMAL(10,2)"; now the end buckets are the type's outermost
    # multiples of the width
    mask = MaskSpec("bucket", POS, width=Decimal(width))
    got = run_duckdb(con, mask, col_type, [*values, None])
    assert got == [reference(mask, v, col_type) for v in [*values, None]]
    assert got[-1] is None and all(g % width == 0 for g in got[:-1] if col_type != "long")
