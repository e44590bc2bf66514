"""Pure changelog logic: carry-over removal, update pairing, delete-file rules (net changes: test_events_net_effect)."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from icetide.events import Change, identity
from streaming.changes import pair_updates, remove_carry_overs, snapshot_changes
from streaming.files import EQUALITY_DELETES, POSITION_DELETES, FileRef, FileState, applies, diff

pytestmark = pytest.mark.unit

rows = st.fixed_dictionaries({"id": st.integers(0, 5), "v": st.sampled_from(["a", "b", "c"])})


def apply_multiset(table: Counter[str], changes: list[Change]) -> Counter[str]:
    out = Counter(table)
    for change in changes:
        if change.before is not None:
            out[identity(change.before)] -= 1
        if change.after is not None:
            out[identity(change.after)] += 1
    return +out


@given(st.lists(rows, max_size=8), st.lists(rows, max_size=8), st.lists(rows, max_size=8))
def test_carry_over_removal_preserves_the_multiset_effect(kept: list, deleted: list, inserted: list) -> None:
    before = Counter(identity(r) for r in kept + deleted)
    after = Counter(identity(r) for r in kept + inserted)
    # copy-on-write: every kept row is rewritten (deleted and inserted again)
    changes = snapshot_changes(kept + deleted, kept + inserted, [])
    assert apply_multiset(before, changes) == after
    del_ids = Counter(identity(c.before) for c in changes if c.op == "d" and c.before)
    ins_ids = Counter(identity(c.after) for c in changes if c.op == "c" and c.after)
    assert not (del_ids & ins_ids), "an identical DELETE/INSERT pair survived"


def test_carry_over_is_a_multiset_cancellation() -> None:
    a, b = {"id": 1, "v": "a"}, {"id": 2, "v": "b"}
    assert remove_carry_overs([a, a, b], [a]) == ([a, b], [])
    assert remove_carry_overs([a], [a, a]) == ([], [a])


def test_update_pairing_by_key() -> None:
    old, new, gone, born = {"id": 1, "v": "a"}, {"id": 1, "v": "b"}, {"id": 2, "v": "x"}, {"id": 3, "v": "y"}
    changes = pair_updates([old, gone], [born, new], ["id"])
    assert [c.op for c in changes] == ["d", "u", "c"]
    assert changes[1] == Change("u", old, new)


def test_update_pairing_needs_keys() -> None:
    changes = pair_updates([{"id": 1, "v": "a"}], [{"id": 1, "v": "b"}], [])
    assert [c.op for c in changes] == ["d", "c"]


@given(st.dictionaries(st.integers(0, 6), st.sampled_from("abc"), max_size=6),
       st.dictionaries(st.integers(0, 6), st.sampled_from("abc"), max_size=6))
def test_keyed_snapshot_changes_apply_by_key(before: dict, after: dict) -> None:
    """CoW rewrite of the whole table: applying the changes by key gives the new table."""
    old = [{"id": k, "v": v} for k, v in before.items()]
    new = [{"id": k, "v": v} for k, v in after.items()]
    table = {r["id"]: r for r in old}
    for change in snapshot_changes(old, new, ["id"]):
        if change.op == "d":
            assert change.before is not None
            del table[change.before["id"]]
        else:
            assert change.after is not None
            table[change.after["id"]] = change.after
    assert table == {r["id"]: r for r in new}


def ref(path: str, content: int, seq: int, spec: int = 0, part: tuple = (), **kw: object) -> FileRef:
    return FileRef(path=path, content=content, spec_id=spec, partition=part, data_seq=seq, **kw)  # type: ignore[arg-type]


def test_position_deletes_apply_to_same_and_older_sequence_numbers() -> None:
    data = ref("d1", 0, 5)
    assert applies(ref("p", POSITION_DELETES, 5), data, frozenset())
    assert applies(ref("p", POSITION_DELETES, 6), data, frozenset())
    assert not applies(ref("p", POSITION_DELETES, 4), data, frozenset())
    assert not applies(ref("p", POSITION_DELETES, 6, referenced_file="d2"), data, frozenset())


def test_equality_deletes_apply_strictly_older_in_the_same_partition() -> None:
    data = ref("d1", 0, 5, spec=1, part=(2024,))
    assert not applies(ref("e", EQUALITY_DELETES, 5, spec=1, part=(2024,)), data, frozenset())
    assert applies(ref("e", EQUALITY_DELETES, 6, spec=1, part=(2024,)), data, frozenset())
    assert not applies(ref("e", EQUALITY_DELETES, 6, spec=1, part=(2025,)), data, frozenset())
    assert applies(ref("e", EQUALITY_DELETES, 6, spec=0, part=()), data, frozenset({0}))


def test_diff_of_file_states() -> None:
    a, b, c, p = ref("a", 0, 1), ref("b", 0, 1), ref("c", 0, 2), ref("p", POSITION_DELETES, 2)
    changed = diff(FileState({"a": a, "b": b}, {}), FileState({"b": b, "c": c}, {"p": p}))
    assert (changed.added_data, changed.removed_data, changed.kept_data) == ([c], [a], [b])
    assert changed.added_deletes == [p] and not changed.is_pure_append
