"""Audience streams applied downstream equal the audience's secure view of the final table.

A keyed model of `sales.vendas` receives generated upserts and deletes; their change events go
through `streaming.audiences` in arbitrary batches, each audience's events are applied to a dict
keyed by `sale_id` (a tiny sink), and the sink must equal what `lake.sec_<user>.vendas` returns
over the final rows (the policies room's DuckDB views of the same compiled policy).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot import exp

from icetide.errors import EventError
from icetide.events import ChangeEvent, Source, encode_row, from_json, topic_for
from policies.local import lake
from streaming.audiences import SLOT, audience_topic, audience_topics, audiences, derive, records
from streaming.poller import to_record
from tests.unit.policy_engine.support import VENDAS, example

pytestmark = pytest.mark.unit

COMPILED = example()
USERS = ("ana", "bruno", "carla", "erin", "dave", "zoe")  # dave: declared, no rule; zoe: unknown
KEY = ["sale_id"]
PREFIX = "icetide"

VALUES = st.fixed_dictionaries({
    "sale_ts": st.datetimes(dt.datetime(2000, 1, 1), dt.datetime(2030, 1, 1)),
    "year": st.integers(2020, 2026), "month": st.integers(1, 12),
    "region": st.sampled_from(["North", "South", "East", None]),
    "product": st.sampled_from(["P0", "P1", "TEST"]),
    "customer_email": st.one_of(st.none(), st.sampled_from(["a@x.example", "b@y.example"])),
    "price": st.decimals(0, 10**6, places=2, allow_nan=False), "quantity": st.integers(0, 1000),
})
STEP = st.one_of(st.tuples(st.just("upsert"), st.integers(1, 6), VALUES),
                 st.tuples(st.just("delete"), st.integers(1, 6), st.none()))


def source(ordinal: int) -> Source:
    return Source(catalog="lake", db="sales", table="vendas", snapshot_id=1 + ordinal // 4,
                  sequence_number=1 + ordinal // 4, commit_ts_ms=1_700_000_000_000, ordinal=ordinal)


def changes(steps: list[tuple[str, int, dict[str, Any] | None]]) -> tuple[list[ChangeEvent], dict[int, dict[str, Any]]]:
    """The change events of `steps` on a keyed table, and the table's final rows."""
    table: dict[int, dict[str, Any]] = {}
    events: list[ChangeEvent] = []
    for op, key, values in steps:
        before = table.get(key)
        if op == "delete":
            if before is not None:
                events.append(ChangeEvent("d", before, None, source(len(events))))
                del table[key]
            continue
        assert values is not None
        after = {"sale_id": key, **values}
        events.append(ChangeEvent("u" if before else "c", before, after, source(len(events))))
        table[key] = after
    return events, table


def apply(sink: dict[Any, dict[str, Any]], event: ChangeEvent) -> None:
    """A strict model sink: c must be new, u and d must exist."""
    key = event.row["sale_id"]
    if event.op in ("c", "r"):
        assert key not in sink, f"{event.op} of a row already in the sink"
        sink[key] = event.after  # type: ignore[assignment]
    elif event.op == "u":
        assert sink.get(key) == event.before, "u whose before image is not the sink's row"
        sink[key] = event.after  # type: ignore[assignment]
    else:
        assert sink.pop(key) == event.before, "d whose before image is not the sink's row"


def view_rows(user: str, final: dict[int, dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """What `lake.sec_<user>.vendas` returns over the final rows ({} when the user has no view)."""
    access = COMPILED.get(user, VENDAS)
    if access is None or not access.visible:
        return {}
    con = lake(COMPILED, {VENDAS: list(final.values())})
    try:
        rel = con.sql(exp.select("*").from_(exp.table_("vendas", db=f"sec_{user}", catalog="lake"))
                      .sql(dialect="duckdb"))
        return {r["sale_id"]: r for r in (dict(zip(rel.columns, row, strict=True)) for row in rel.fetchall())}
    finally:
        con.close()


def chunks(events: list[ChangeEvent], size: int) -> list[list[ChangeEvent]]:
    return [events[i:i + size] for i in range(0, len(events), size)]


@settings(max_examples=40, deadline=None)
@given(steps=st.lists(STEP, max_size=25), size=st.integers(1, 30))
def test_applied_audience_streams_equal_views(steps: list[tuple[str, int, dict[str, Any] | None]],
                                              size: int) -> None:
    events, final = changes(steps)
    sinks: dict[str, dict[Any, dict[str, Any]]] = {u: {} for u in USERS}
    for batch in chunks(events, size):
        derived = derive(COMPILED, VENDAS, batch)
        assert set(derived) <= {"ana", "bruno", "carla", "erin"}
        for user, out in derived.items():
            for event in out:
                apply(sinks[user], event)
    for user in USERS:
        assert sinks[user] == view_rows(user, final), user


@settings(max_examples=15, deadline=None)
@given(steps=st.lists(STEP, max_size=20), size=st.integers(1, 30))
def test_records_through_json_equal_views(steps: list[tuple[str, int, dict[str, Any] | None]], size: int) -> None:
    """The job's path: encoded records in, audience records out, decoded by a consumer."""
    events, final = changes(steps)
    base = topic_for(PREFIX, "sales", "vendas")
    sinks: dict[str, dict[Any, dict[str, Any]]] = {}
    for batch in chunks(events, size):
        for record in records(COMPILED, VENDAS, PREFIX, KEY, [to_record(e, base, KEY) for e in batch]):
            user = record.topic.split(".")[1].removeprefix("sec_")
            assert record.topic == audience_topic(PREFIX, user, VENDAS)
            event = from_json(record.value)
            assert record.key == to_record(event, record.topic, KEY).key
            apply(sinks.setdefault(user, {}), event)
    for user in USERS:
        expected = {k: encode_row(v) for k, v in view_rows(user, final).items()}
        assert sinks.get(user, {}) == expected, user


ROW = {"sale_id": 7, "sale_ts": dt.datetime(2024, 5, 1, 10, 30), "year": 2024, "month": 5, "region": "North",
       "product": "P1", "customer_email": "secret7@mail.example", "price": Decimal("1234.56"), "quantity": 3}


def test_row_moving_north_to_south_leaves_ana_and_enters_bruno() -> None:
    moved = {**ROW, "region": "South", "price": Decimal("1299.99")}
    out = derive(COMPILED, VENDAS, [ChangeEvent("c", None, ROW, source(0)),
                                    ChangeEvent("u", ROW, moved, source(1))])
    assert [e.op for e in out["ana"]] == ["c", "d"]
    left = out["ana"][1]
    assert left.before is not None and left.before["region"] == "North" and left.after is None
    assert left.before["price"] == Decimal("1200.00") and left.before["customer_email"] == "****"
    assert [e.op for e in out["bruno"]] == ["c"]
    entered = out["bruno"][0]
    assert entered.before is None and entered.after is not None
    assert entered.after["region"] == "South" and entered.after["price"] == Decimal("1200.00")
    assert entered.after["customer_email"] == "****"
    assert [e.op for e in out["carla"]] == ["c", "u"]  # admin: every row, in clear
    assert out["carla"][1].after == moved


def test_masked_values_equal_the_views() -> None:
    out = derive(COMPILED, VENDAS, [ChangeEvent("r", None, ROW, source(0))])
    for user in ("ana", "carla", "erin"):
        assert [e.op for e in out[user]] == ["r"]
        assert out[user][0].after == view_rows(user, {7: ROW})[7]
    assert out["erin"][0].after["customer_email"] not in (ROW["customer_email"], "****")  # type: ignore[index]
    assert out["carla"][0].after == ROW
    assert "bruno" not in out  # a North row is not in bruno's view


def test_update_only_of_hidden_values_is_not_forwarded() -> None:
    """ana sees price bucketed to 100s and e-mail redacted: this update changes nothing she sees."""
    changed = {**ROW, "price": Decimal("1250.00"), "customer_email": "other@mail.example"}
    out = derive(COMPILED, VENDAS, [ChangeEvent("u", ROW, changed, source(0))])
    assert "ana" not in out and [e.op for e in out["carla"]] == ["u"]


def test_unknown_users_and_tables_get_nothing() -> None:
    events = [ChangeEvent("c", None, ROW, source(0))]
    assert audiences(COMPILED, VENDAS) == ["ana", "bruno", "carla", "erin"]
    assert audience_topics(COMPILED, PREFIX, [VENDAS, "sales.other"]) == [
        f"icetide.sec_{u}.sales.vendas" for u in ("ana", "bruno", "carla", "erin")]
    out = derive(COMPILED, VENDAS, events)
    assert "dave" not in out and "zoe" not in out
    assert derive(COMPILED, "sales.other", events) == {}


def test_columns_unknown_to_the_policy_are_null() -> None:
    event = ChangeEvent("c", None, {**ROW, "surprise": "leak"}, source(0))
    for user, out in derive(COMPILED, VENDAS, [event]).items():
        assert out[0].after is not None and out[0].after["surprise"] is None, user
    with pytest.raises(EventError):
        derive(COMPILED, VENDAS, [ChangeEvent("c", None, {**ROW, SLOT: 1}, source(0))])
    with pytest.raises(EventError):
        derive(COMPILED, VENDAS, [ChangeEvent("c", None, {**ROW, "price": "not a number"}, source(0))])


def test_audience_deletes_are_followed_by_tombstones_when_asked() -> None:
    base = topic_for(PREFIX, "sales", "vendas")
    src = source(0)
    batch = [to_record(ChangeEvent("c", None, ROW, src), base, KEY),
             to_record(ChangeEvent("d", ROW, None, source(1)), base, KEY)]
    plain = records(COMPILED, VENDAS, PREFIX, KEY, batch)
    with_dead = records(COMPILED, VENDAS, PREFIX, KEY, batch, tombstones=True)
    assert [r.op for r in with_dead if r.op != "tombstone"] == [r.op for r in plain]
    deletes = [i for i, r in enumerate(with_dead) if r.op == "d"]
    assert deletes and all(with_dead[i + 1].op == "tombstone" for i in deletes)
    assert all((with_dead[i + 1].topic, with_dead[i + 1].key, with_dead[i + 1].value)
               == (with_dead[i].topic, with_dead[i].key, None) for i in deletes)
    assert records(COMPILED, VENDAS, PREFIX, [], batch, tombstones=True) == records(COMPILED, VENDAS, PREFIX, [], batch)
