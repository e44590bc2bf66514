"""`cdc apply --snapshot-consistent`'s batching (connectors/snapshots.py) against a real SQLite sink.

Generated cases: a few tables, each a run of multi-event snapshots framed by BEGIN/END records
(built by the job's own `streaming.transactions.boundary`), published at least once (producer
restarts re-publish from an earlier point: duplicate BEGINs, events at new offsets, duplicate
ENDs), spread over several partitions per table plus one transaction partition, delivered in a
random interleaving of the partitions, in random batches, with consumer crashes (the gate is
rebuilt and every partition re-read from the offsets the sink stored). Invariants: every commit
holds whole snapshots only, each table's snapshots are committed in order, and in the end every
event is applied exactly once (the rows are keyless and unique, so a double apply shows).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.base import Consumed
from connectors.records import decode
from connectors.snapshots import SnapshotGate, parse_boundary, with_transaction_topic
from connectors.sqlite import SqliteConfig, SqliteSink
from icetide.errors import ConfigError
from icetide.events import ChangeEvent, Source, to_json, transaction_topic
from streaming.transactions import boundary

pytestmark = pytest.mark.unit
PREFIX = "icetide"
TXN = transaction_topic(PREFIX)


class Msg:
    """A Kafka record as the consumer sees it (confluent_kafka.Message's accessors)."""

    def __init__(self, topic: str, partition: int, offset: int, value: bytes | None, key: bytes | None = None):
        self._t, self._p, self._o, self._v, self._k = topic, partition, offset, value, key

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def value(self) -> bytes | None:
        return self._v

    def key(self) -> bytes | None:
        return self._k

    def error(self) -> None:
        return None


def _source(table: int, snap: int, ordinal: int) -> Source:
    return Source(catalog="lake", db="sales", table=f"t{table}", snapshot_id=1000 * table + snap,
                  sequence_number=snap + 1, commit_ts_ms=1_700_000_000_000 + snap, ordinal=ordinal)


def _published(counts: list[int], table: int, restarts: list[tuple[int, int]]) -> list[tuple[str, int, int]]:
    """One table's records in publish order: ("BEGIN"|"event"|"END", snapshot, ordinal or count);
    each restart (cut, back) re-publishes from `back` records before the `cut`-th record."""
    once: list[tuple[str, int, int]] = []
    for snap, n in enumerate(counts):
        once += [("BEGIN", snap, 0), *(("event", snap, o) for o in range(n)), ("END", snap, n)]
    out: list[tuple[str, int, int]] = []
    at = 0
    for cut, back in restarts:
        stop = min(len(once), at + cut)
        out += once[at:stop]
        at = max(0, stop - back)
    return out + once[at:]


def _layout(plan: list[dict[str, Any]], rng: random.Random) -> dict[tuple[str, int], list[Msg]]:
    """Every partition's records: table events by key (fixed per event), BEGIN/END on one partition."""
    parts: dict[tuple[str, int], list[Msg]] = defaultdict(list)
    txn_queues = []
    for t, table in enumerate(plan):
        topic = f"{PREFIX}.sales.t{t}"
        queue = []
        for kind, snap, n in _published(table["counts"], t, table["restarts"]):
            if kind == "event":
                p = (snap * 7 + n * 3) % table["partitions"]
                event = ChangeEvent("c", None, {"t": t, "s": snap, "o": n}, _source(t, snap, n))
                parts[(topic, p)].append(Msg(topic, p, len(parts[(topic, p)]), to_json(event)))
            else:
                src = _source(t, snap, 0)
                _key, value = boundary("sales", f"t{t}", src.snapshot_id, src.sequence_number, src.commit_ts_ms,
                                       kind, n)  # type: ignore[arg-type]
                queue.append(value)
        txn_queues.append(queue)
    while any(txn_queues):  # the tables' boundaries interleave; each table's stay in order
        queue = rng.choice([q for q in txn_queues if q])
        parts[(TXN, 0)].append(Msg(TXN, 0, len(parts[(TXN, 0)]), queue.pop(0)))
    return parts


table_plan = st.fixed_dictionaries({
    "counts": st.lists(st.integers(1, 6), min_size=1, max_size=4),
    "partitions": st.integers(1, 3),
    "restarts": st.lists(st.tuples(st.integers(0, 12), st.integers(0, 8)), max_size=3),
})


@settings(max_examples=200, deadline=None)
@given(plan=st.lists(table_plan, min_size=1, max_size=3), seed=st.integers(0, 2**32 - 1),
       crashes=st.integers(0, 3))
def test_commits_hold_whole_snapshots_and_every_event_once(plan: list[dict[str, Any]], seed: int,
                                                          crashes: int) -> None:
    rng = random.Random(seed)
    parts = _layout(plan, rng)
    expected = {(t, s, o) for t, table in enumerate(plan) for s, n in enumerate(table["counts"]) for o in range(n)}
    # on tmpfs when there is one: each commit's fsync on a disk would make this 15x slower
    with TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as tmp:
        sink = SqliteSink(SqliteConfig(Path(tmp) / "down.db"))
        sink.open()
        try:
            committed: set[tuple[str, int]] = set()
            last_seq: dict[str, int] = {}

            def restart() -> tuple[SnapshotGate, dict[tuple[str, int], int]]:
                gate = SnapshotGate(PREFIX)
                gate.reset(sink.applied(), sorted({t for t, _ in parts}))
                stored = sink.positions()
                return gate, {tp: stored.get(tp, -1) + 1 for tp in parts}

            gate, cursor = restart()
            while any(cursor[tp] < len(msgs) for tp, msgs in parts.items()):
                batch = []
                for _ in range(rng.randint(1, 12)):
                    live = [tp for tp, msgs in parts.items() if cursor[tp] < len(msgs)]
                    if not live:
                        break
                    tp = rng.choice(live)
                    batch.append(parts[tp][cursor[tp]])
                    cursor[tp] += 1
                items = []
                for msg in batch:
                    if not gate.take((msg.topic(), msg.partition()), msg):
                        change = decode(msg)
                        assert change is not None
                        items.append((change, msg))
                released, offsets = gate.admit(items)
                result = sink.apply([c for c, _ in released], offsets)
                _check_whole(result.applied_changes, plan, committed, last_seq)
                if crashes and rng.random() < 0.15:  # the consumer dies: memory lost, offsets stay
                    crashes -= 1
                    gate, cursor = restart()
            assert gate.held == 0
            rows = sink.read_rows(("sales", "t0"))
            for t in range(1, len(plan)):
                rows += sink.read_rows(("sales", f"t{t}"))
            applied = Counter((r["t"], r["s"], r["o"]) for r in rows)
            assert set(applied) == expected and max(applied.values()) == 1
        finally:
            sink.close()


def _check_whole(changes: list[Consumed], plan: list[dict[str, Any]], committed: set[tuple[str, int]],
                 last_seq: dict[str, int]) -> None:
    """One commit: each snapshot in it is whole, none was committed before, each table in order."""
    by_snapshot: dict[tuple[str, int], list[int]] = defaultdict(list)
    for change in changes:
        by_snapshot[(change.topic, change.event.source.snapshot_id)].append(change.event.source.ordinal)
    for (topic, snapshot_id), ordinals in sorted(by_snapshot.items(), key=lambda kv: kv[0]):
        table = int(topic.rsplit("t", 1)[1])
        count = plan[table]["counts"][snapshot_id - 1000 * table]
        assert sorted(ordinals) == list(range(count)), f"partial snapshot {snapshot_id} of {topic}"
        assert (topic, snapshot_id) not in committed, f"snapshot {snapshot_id} split across commits"
        committed.add((topic, snapshot_id))
    for change in changes:  # within a commit, one table's snapshots in sequence order
        seq = change.event.source.sequence_number
        assert seq >= last_seq.get(change.topic, 0)
        last_seq[change.topic] = seq


def test_a_snapshot_beyond_the_bound_stops_with_a_clear_error() -> None:
    gate = SnapshotGate(PREFIX, max_held=3)
    gate.reset({}, [f"{PREFIX}.sales.t0", TXN])
    items = []
    for o in range(4):
        msg = Msg(f"{PREFIX}.sales.t0", 0, o, to_json(ChangeEvent("c", None, {"o": o}, _source(0, 0, o))))
        gate.take((msg.topic(), 0), msg)
        change = decode(msg)
        assert change is not None
        items.append((change, msg))
    with pytest.raises(ConfigError, match=r"4 events held back .* --max-held-events 3 .*snapshot 0: 4 events held, "
                                          r"END not read yet"):
        gate.admit(items)


def test_held_events_hold_back_the_offsets_and_an_end_of_an_applied_snapshot_is_ignored() -> None:
    topic = f"{PREFIX}.sales.t0"
    gate = SnapshotGate(PREFIX)
    gate.reset({}, [topic, TXN])
    msgs = [Msg(topic, 0, 5 + o, to_json(ChangeEvent("c", None, {"o": o}, _source(0, 0, o)))) for o in range(2)]
    items = []
    for msg in msgs:
        gate.take((topic, 0), msg)
        change = decode(msg)
        assert change is not None
        items.append((change, msg))
    released, offsets = gate.admit(items)
    assert released == [] and offsets == {(topic, 0): 4} and gate.held == 2  # nothing consumed yet
    src = _source(0, 0, 0)
    _k, end = boundary("sales", "t0", src.snapshot_id, src.sequence_number, src.commit_ts_ms, "END", 2)
    gate.take((TXN, 0), Msg(TXN, 0, 9, end))
    released, offsets = gate.admit([])
    assert [c.event.source.ordinal for c, _ in released] == [0, 1]
    assert offsets == {(topic, 0): 6, (TXN, 0): 9} and gate.held == 0
    gate.take((TXN, 0), Msg(TXN, 0, 10, end))  # a duplicate END: the snapshot is applied already
    assert gate.admit([]) == ([], {(topic, 0): 6, (TXN, 0): 10})
    assert parse_boundary(end, PREFIX)[0].topic == topic


def test_the_transaction_topic_is_added_only_when_it_exists() -> None:
    gate = SnapshotGate(PREFIX)
    assert with_transaction_topic(gate, ["icetide.a.b"], {"icetide.a.b"}) == ["icetide.a.b"]
    assert with_transaction_topic(gate, ["icetide.a.b"], {"icetide.a.b", TXN}) == ["icetide.a.b", TXN]
    assert with_transaction_topic(None, ["icetide.a.b"], {TXN}) == ["icetide.a.b"]


def test_the_default_selection_leaves_the_transaction_topic_to_the_gate() -> None:
    from connectors.consumer import ConsumeOptions, select_topics
    from icetide.settings import load_settings

    settings = load_settings(None, environ={})
    assert select_topics(["icetide.sales.a", TXN], settings, ConsumeOptions()) == ["icetide.sales.a"]
