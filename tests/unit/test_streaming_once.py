"""`cdc run --once`'s bounded source (streaming/once.py): the elements each table gets, and the planner's groups."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streaming.once import PLAN_AHEAD, Pending, planned_groups, ticks
from streaming.poller import Position

pytestmark = pytest.mark.unit


def snapshot(added: int, n: int) -> Any:
    return SimpleNamespace(snapshot_id=n, summary=_Summary("append", {"added-records": str(added)}))


class _Summary(dict[str, str]):
    def __init__(self, operation: str, fields: dict[str, str]) -> None:
        super().__init__(fields)
        self.operation = SimpleNamespace(value=operation)

    def __missing__(self, key: str) -> None:
        return None


@given(st.lists(st.integers(min_value=0, max_value=5_000), max_size=60), st.integers(min_value=1, max_value=4_000))
def test_groups_cover_the_snapshots_in_order_and_each_stops_at_its_chunk(sizes: list[int], chunk: int) -> None:
    snaps = [snapshot(size, n) for n, size in enumerate(sizes)]
    groups = planned_groups(snaps, chunk)
    assert [s for g in groups for s in g] == snaps
    for group in groups:
        assert 1 <= len(group) <= PLAN_AHEAD
        events = [int(s.summary["added-records"]) for s in group]
        assert sum(events[:-1]) < chunk, "a group closes as soon as its events reach the chunk"
    for group in groups[:-1]:  # all but the last one close on the chunk or on PLAN_AHEAD
        assert sum(int(s.summary["added-records"]) for s in group) >= chunk or len(group) == PLAN_AHEAD


@given(st.dictionaries(st.sampled_from(["a.x", "a.y", "b.z"]), st.integers(min_value=1, max_value=9), min_size=1))
def test_ticks_name_each_table_as_often_as_its_chunks_round_robin(chunks: dict[str, int]) -> None:
    work = [Pending(table, Position(None), 1, n) for table, n in chunks.items()]
    names = ticks(work)
    assert {t: names.count(t) for t in chunks} == chunks
    for turn in range(max(chunks.values())):  # every table's k-th element comes before any table's (k+1)-th
        seen = [t for t in names[:sum(min(n, turn + 1) for n in chunks.values())]]
        assert all(seen.count(t) == min(n, turn + 1) for t, n in chunks.items())
