"""The per-batch net-effect reduction (`icetide.events.net_effect`), as the sinks apply it (delete every
key it names, insert the surviving images), gives the state of applying the events one by one — for
random keyed streams of inserts, updates (also of the key itself), deletes, cut into random batches."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.base import Consumed
from icetide.events import ChangeEvent, Source, net_effect

pytestmark = pytest.mark.unit
KEY = ("k1", "k2")

# one step: (op choice, key slot, new key slot, value)
steps = st.lists(st.tuples(st.sampled_from("cudm"), st.integers(0, 5), st.integers(0, 5), st.integers(0, 9)),
                 max_size=80)


def _stream(plan: list[tuple[str, int, int, int]]) -> list[Consumed]:
    """A valid change stream: updates and deletes name the live row's image as `before`; 'm' moves a
    row to another key (an update whose key changes, as Iceberg's update pairing may emit)."""
    live: dict[tuple[Any, ...], dict[str, Any]] = {}
    out: list[Consumed] = []

    def key(slot: int) -> tuple[Any, ...]:
        return (slot % 3, f"s{slot}")

    for i, (op, slot, to, value) in enumerate(plan):
        k = key(slot)
        before = live.get(k)
        if before is None:
            if op == "d":
                continue
            after: dict[str, Any] | None = {"k1": k[0], "k2": k[1], "v": value}
            kind = "c"
        elif op == "d":
            after, kind = None, "d"
        elif op == "m" and key(to) not in live:
            after, kind = {"k1": key(to)[0], "k2": key(to)[1], "v": value}, "u"
        else:
            after, kind = {**before, "v": value}, "u"
        if before is not None and op == "c":
            kind = "u"
        if before is not None:
            del live[k]
        if after is not None:
            live[(after["k1"], after["k2"])] = after
        source = Source("lake", "ns", "t", 100 + i, i + 1, 0, 0)
        out.append(Consumed("icetide.ns.t", 0, len(out), ChangeEvent(kind, before, after, source), KEY))  # type: ignore[arg-type]
    return out


def _one_by_one(state: dict[tuple[Any, ...], dict[str, Any]], change: Consumed) -> None:
    event = change.event
    if event.before is not None:
        state.pop((event.before["k1"], event.before["k2"]), None)
    if event.after is not None:
        state[(event.after["k1"], event.after["k2"])] = event.after


@settings(max_examples=300, deadline=None)
@given(plan=steps, cuts=st.lists(st.integers(1, 20), min_size=1, max_size=10))
def test_net_effect_per_batch_equals_one_by_one(plan: list[tuple[str, int, int, int]], cuts: list[int]) -> None:
    changes = _stream(plan)
    expected: dict[tuple[Any, ...], dict[str, Any]] = {}
    for change in changes:
        _one_by_one(expected, change)
    reduced: dict[tuple[Any, ...], dict[str, Any]] = {}
    pos, i = 0, 0
    while pos < len(changes):
        batch = changes[pos:pos + cuts[i % len(cuts)]]
        final = net_effect([c.event for c in batch], KEY).after
        for k in final:  # delete-by-key for every key the batch touched …
            reduced.pop(k, None)
        for k, image in final.items():  # … then insert the survivors
            if image is not None:
                reduced[k] = image
        pos, i = pos + len(batch), i + 1
    assert reduced == expected


def test_a_delete_after_an_upsert_of_the_same_key_drops_the_upsert() -> None:
    """Debezium's reduction buffer: the stream switching between upserts and deletes is one batch."""
    source = Source("lake", "ns", "t", 1, 1, 0, 0)
    row = {"k1": 1, "k2": "a", "v": 1}
    changes = [Consumed("t", 0, 0, ChangeEvent("c", None, row, source), KEY),
               Consumed("t", 0, 1, ChangeEvent("d", row, None, source), KEY)]
    assert net_effect([c.event for c in changes], KEY).after == {(1, "a"): None}
