"""The parts of parallel derivation that need no table: Kafka's partitioner, a lane's bookkeeping, release order.

The end-to-end property (events per key identical at 1, 2 and 4 lanes on Spark-written tables) is in
tests/integration/test_streaming_changelog.py; the Flink job at parallelism 2 in test_streaming_parallel.py.
"""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streaming.derivation import LaneBook, Share, murmur2, partition_of, release

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("data", "expected"), [
    # Kafka's own test vectors (clients/src/test/java/org/apache/kafka/common/utils/UtilsTest.java, testMurmur2)
    (b"21", -973932308), (b"foobar", -790332482), (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971), (b"abc", 479470107),
])
def test_murmur2_is_kafkas(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


@given(st.binary(max_size=64), st.integers(1, 64))
def test_partition_is_in_range(key: bytes, partitions: int) -> None:
    assert 0 <= partition_of(key, partitions) < partitions


def _share(plan_no: int, index: int, count: int, since: int = 1) -> Share:
    return Share("t", 0, 1000 + plan_no, plan_no, index, count, since)


@settings(max_examples=200)
@given(counts=st.lists(st.integers(1, 4), min_size=1, max_size=6), seed=st.integers(0, 2**32 - 1))
def test_a_lane_releases_each_snapshot_once_in_plan_order_when_complete(counts: list[int], seed: int) -> None:
    shares = [_share(plan_no, i, count) for plan_no, count in enumerate(counts, start=1) for i in range(count)]
    random.Random(seed).shuffle(shares)  # subtasks interleave units of different snapshots
    book, seen, released = LaneBook(), [], []
    for share in shares:
        seen.append(share)
        for plan_no in book.add(share):
            got = [s for s in seen if s.plan_no == plan_no]
            assert len(got) == counts[plan_no - 1], "released before every unit reported"
            released.append(plan_no)
    assert released == list(range(1, len(counts) + 1))
    assert not book.pending


def test_a_new_lane_starts_at_the_plan_its_lane_count_took_effect() -> None:
    """A lane that appears when the topic grew (plans 7.. have one more lane) must not wait for plans 1..6."""
    book = LaneBook()
    assert book.add(_share(7, 0, 1, since=7)) == [7]
    old = LaneBook(released=5)  # a lane that existed: its plan 6 is still due, `since` does not skip it
    assert old.add(_share(7, 0, 1, since=7)) == []
    assert old.add(_share(6, 0, 1, since=1)) == [6, 7]


def test_release_restores_the_engines_order_then_pairs_by_key() -> None:
    """Shares arrive in any order; rows go back to the engine's (group, path, kind, row) order before
    pairing, so which delete of a key pairs with its insert is the serial engine's choice."""
    def share(index: int, path: str, kind: str, side: str, *rows: dict[str, object]) -> Share:
        return Share("t", 0, 9, 1, index, 3, 1, [(("g", path, kind, n), side, row) for n, row in enumerate(rows)])

    x, y, z, other = {"id": 1, "v": "x"}, {"id": 1, "v": "y"}, {"id": 1, "v": "z"}, {"id": 2, "v": "x"}
    a = share(0, "a.parquet", "removed", "d", x, other)
    b = share(1, "b.parquet", "added", "i", y)
    c = share(2, "c.parquet", "removed", "d", z)
    changes = release([c, b, a], ["id"])  # serial order: a, b, c → x pairs with y
    assert [(ch.op, ch.before, ch.after) for ch in changes] == [("d", other, None), ("d", z, None), ("u", x, y)]
    assert [ch.op for ch in release([c, b, a], [])] == ["d", "d", "d", "c"]  # keyless: no pairing
