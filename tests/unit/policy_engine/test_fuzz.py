"""Any input is either accepted or rejected with a PolicyError carrying file:line:col — never a crash."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from icetide.errors import PolicyError
from policies.compiler import compile_policy
from policies.loader import parse_policy
from policies.validate import check_policy
from tests.unit.policy_engine.support import EXAMPLE, KEY_ENV, provider

pytestmark = pytest.mark.unit

FILTER = "\"region = user_attr('region')\""
SQL_BITS = st.sampled_from([
    "region", "price", "year", "sale_ts", "customer_email", "'North'", "1", "2.5", "NULL", "TRUE", "=", "<>", ">",
    "AND", "OR", "NOT", "(", ")", ",", "IN", "LIKE", "BETWEEN", "IS", "CASE", "WHEN", "THEN", "ELSE", "END", "+",
    "-", "*", "/", "lower(", "user_attr('region')", "user_name()", "CAST(", "AS", "DATE", "SELECT", "FROM",
    "sales.vendas", "--", "/*", "*/", ";", "'", "\"", "`", "${x}", "?", ":a", "[0]", ".", "EXISTS", "x'00'",
])


def attempt(text: str) -> None:
    try:
        compile_policy(check_policy(parse_policy(text, "fuzz.yaml"), provider()), KEY_ENV)
    except PolicyError as exc:
        assert exc.file == "fuzz.yaml" and exc.line >= 1 and exc.col >= 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(SQL_BITS, min_size=1, max_size=12))
def test_random_filters(bits: list[str]) -> None:
    attempt(EXAMPLE.read_text().replace(FILTER, json.dumps(" ".join(bits))))


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=60))
def test_random_filter_text(text: str) -> None:
    attempt(EXAMPLE.read_text().replace(FILTER, json.dumps(text)))


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2000), st.text(max_size=8))
def test_random_edits_of_the_file(offset: int, insert: str) -> None:
    base = EXAMPLE.read_text()
    at = offset % len(base)
    attempt(base[:at] + insert + base[at + len(insert):])
