"""The one net effect (`icetide.events.net_effect` / `net_changes`) that the changelog's net mode and
every sink's batch reduction share: for random keyed streams from a random starting table — inserts,
updates, updates that move a row to another key (a foreign producer's, or Iceberg's update pairing
with configured keys), deletes — the net changes, applied by key, turn the starting table into the
table the stream leads to, with at most one change per key and none for a key that ends as it began.

The changelog's former copy keyed each change by its after image only; it lost the old key of a row
that moved onto a key deleted earlier in the range (`test_a_row_moving_onto_a_deleted_key`)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from icetide.events import Change, Row, RowKey, identity, key_of, net_changes, net_effect

pytestmark = pytest.mark.unit
KEY = ("id",)

tables = st.dictionaries(st.integers(0, 5), st.integers(0, 3), max_size=6)
# one step: (op choice, key slot, target key slot, value); invalid choices are skipped
steps = st.lists(st.tuples(st.sampled_from("cudm"), st.integers(0, 5), st.integers(0, 5), st.integers(0, 3)),
                 max_size=40)


def _row(key: int, value: int) -> Row:
    return {"id": key, "v": value}


def _stream(start: dict[RowKey, Row], plan: list[tuple[str, int, int, int]]) -> tuple[list[Change], dict[RowKey, Row]]:
    """A valid stream from `start`: updates and deletes name the live image as `before`; 'm' moves a
    live row to an absent key. Returns the stream and the table it leads to (applied one by one)."""
    live = dict(start)
    out: list[Change] = []
    for op, slot, to, value in plan:
        before = live.get((slot,))
        if before is None and op == "c":
            change = Change("c", None, _row(slot, value))
        elif before is not None and op == "u":
            change = Change("u", before, _row(slot, value))
        elif before is not None and op == "m" and (to,) not in live:
            change = Change("u", before, _row(to, value))
        elif before is not None and op == "d":
            change = Change("d", before, None)
        else:
            continue
        if change.before is not None:
            del live[key_of(change.before, KEY)]
        if change.after is not None:
            live[key_of(change.after, KEY)] = change.after
        out.append(change)
    return out, live


@settings(max_examples=400, deadline=None)
@given(table=tables, plan=steps)
def test_net_changes_applied_by_key_give_the_final_table(table: dict[int, int], plan: list[Any]) -> None:
    start = {(k,): _row(k, v) for k, v in table.items()}
    changes, expected = _stream(start, plan)
    state = dict(start)
    net = net_changes(changes, KEY)
    for change in net:  # strict: a net delete/update names the row as it was, an insert a free key
        if change.before is not None:
            assert state.pop(key_of(change.before, KEY)) == change.before
        if change.after is not None:
            assert key_of(change.after, KEY) not in state
            state[key_of(change.after, KEY)] = change.after
    assert state == expected
    keys = [key_of(c.row, KEY) for c in net]
    assert len(set(keys)) == len(keys), "more than one net change for a key"
    for key in set(start) | set(expected):
        if key not in keys:
            assert identity(start.get(key) or {}) == identity(expected.get(key) or {})


@settings(max_examples=200, deadline=None)
@given(table=tables, plan=steps)
def test_the_final_images_are_the_table_a_sink_reaches(table: dict[int, int], plan: list[Any]) -> None:
    """What a sink applies: delete every touched key, insert the final images."""
    start = {(k,): _row(k, v) for k, v in table.items()}
    changes, expected = _stream(start, plan)
    state = dict(start)
    net = net_effect(changes, KEY)
    assert net.before == {key: start[key] for key in net.after if key in start}
    for key, after in net.after.items():
        state.pop(key, None)
        if after is not None:
            state[key] = after
    assert state == expected


def test_net_changes_collapse_per_key() -> None:
    a1, a2, a3 = {"id": 1, "v": "a"}, {"id": 1, "v": "b"}, {"id": 1, "v": "c"}
    born, dies = {"id": 2, "v": "x"}, {"id": 3, "v": "y"}
    changes = [Change("u", a1, a2), Change("u", a2, a3), Change("c", None, born), Change("d", born, None),
               Change("d", dies, None), Change("u", {"id": 4, "v": "q"}, {"id": 4, "v": "r"}),
               Change("u", {"id": 4, "v": "r"}, {"id": 4, "v": "q"})]
    assert net_changes(changes, ["id"]) == [Change("u", a1, a3), Change("d", dies, None)]


def test_a_row_moving_onto_a_deleted_key() -> None:
    gone, mover, moved = _row(1, 0), _row(2, 0), _row(1, 5)
    changes = [Change("d", gone, None), Change("u", mover, moved)]
    assert net_changes(changes, KEY) == [Change("u", gone, moved), Change("d", mover, None)]
