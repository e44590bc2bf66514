"""Snapshot boundaries (BEGIN/END on `<prefix>.transaction`) from the publishing loop, without Flink.

Chunked polls (a budget) and resumes from the stored position publish exactly one BEGIN and one END
per snapshot with events; restarts from an older position (an at-least-once restore) may repeat
them, but every BEGIN still directly precedes its snapshot's first event and every END directly
follows its last, with the snapshot's event count.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from icetide.events import from_json, transaction_id
from icetide.settings import CdcSettings
from streaming.poller import SCHEMA_OP, JsonEncoder, Position, Record, TablePoller, make_encoder
from streaming.transactions import TRANSACTION_OP, boundary
from tests.unit.test_streaming_poller import FakeChangelog, drain

pytestmark = pytest.mark.unit


class Changelog(FakeChangelog):
    """FakeChangelog whose snapshots also tell their sequence number and commit time."""

    def __init__(self, sizes: list[int]) -> None:
        super().__init__(sizes)
        for snap in self.snaps:
            snap.sequence_number = snap.snapshot_id  # type: ignore[attr-defined]
            snap.timestamp_ms = 1_000 + snap.snapshot_id  # type: ignore[attr-defined]


def _poller(changelog: Any) -> TablePoller:
    return TablePoller(changelog, "p", encoder=JsonEncoder(transaction_block=True), transactions=True)


def _stream(records: list[Record]) -> list[tuple[str, int, int]]:
    """(BEGIN|END|event, snapshot, count or ordinal), schema-change records left out."""
    out = []
    for r in records:
        if r.op == TRANSACTION_OP:
            value = json.loads(r.value or b"")
            out.append((value["status"], value["snapshot_id"], value["event_count"] or 0))
        elif r.op != SCHEMA_OP:
            out.append(("event", r.snapshot_id, from_json(r.value).source.ordinal))
    return out


@given(st.lists(st.integers(0, 6), max_size=5), st.integers(1, 5))
def test_one_begin_and_one_end_per_snapshot_across_chunks(sizes: list[int], budget: int) -> None:
    changelog: Any = Changelog(sizes)
    position, got = Position(None), []
    for _ in range(100):
        records, position = drain(_poller(changelog), position, budget)  # a fresh poller: a restore
        got += records
        if not records:
            break
    want = []
    for snap, n in enumerate(sizes, start=1):
        if n:
            want += [("BEGIN", snap, 0), *(("event", snap, o) for o in range(n)), ("END", snap, n)]
    assert _stream(got) == want
    assert all(r.topic == "p.transaction" for r in got if r.op == TRANSACTION_OP)


@given(st.lists(st.integers(0, 6), max_size=5), st.integers(1, 5), st.lists(st.integers(0, 6), max_size=4))
def test_restarts_from_older_positions_keep_the_boundaries_around_their_events(
        sizes: list[int], budget: int, rewinds: list[int]) -> None:
    changelog: Any = Changelog(sizes)
    history, runs = [Position(None)], []
    for _ in range(200):
        if rewinds and len(history) > 1:  # restore a checkpoint taken some chunks ago
            back = min(rewinds.pop(), len(history) - 1)
            del history[len(history) - back:]
        resumed = history[-1]
        records, position = drain(_poller(changelog), resumed, budget)
        runs.append((resumed, _stream(records)))
        history.append(position)
        if not records and not rewinds:
            break
    # Each run (a poller resumed from a stored position) is checked on its own: what an earlier run
    # published after that position is what a restore replaces, so it is not this run's context.
    for resumed, stream in runs:
        for i, (kind, snap, n) in enumerate(stream):
            if kind == "BEGIN":
                assert stream[i + 1] == ("event", snap, 0)
            elif kind == "END":
                assert n == sizes[snap - 1]
                if i == 0:  # resumed between the snapshot's last event and its END: the END comes first
                    assert (resumed.snapshot_id, resumed.emitted) == (snap, n)
                else:
                    assert stream[i - 1] == ("event", snap, n - 1)
    ends = Counter(snap for _, stream in runs for kind, snap, _ in stream if kind == "END")
    assert set(ends) == {s for s, n in enumerate(sizes, start=1) if n}


def test_the_records_have_debeziums_shape() -> None:
    changelog: Any = Changelog([2])
    records, _ = drain(_poller(changelog), Position(None), None)
    begin, first, _second, end = [r for r in records if r.op != SCHEMA_OP]
    txid = transaction_id("sales", "vendas", 1)
    assert begin.key == end.key == json.dumps({"id": txid}).replace(" ", "").encode()
    assert json.loads(begin.value or b"") == {"status": "BEGIN", "id": txid, "ts_ms": 1001, "event_count": None,
                                             "data_collections": None, "snapshot_id": 1, "sequence_number": 1}
    assert json.loads(end.value or b"") == {
        "status": "END", "id": txid, "ts_ms": 1001, "event_count": 2,
        "data_collections": [{"data_collection": "sales.vendas", "event_count": 2}],
        "snapshot_id": 1, "sequence_number": 1}
    assert json.loads(first.value or b"")["transaction"] == {"id": txid, "total_order": 1, "data_collection_order": 1}
    assert (begin.key, begin.value) == boundary("sales", "vendas", 1, 1, 1001, "BEGIN")  # deterministic


def test_off_by_default_in_the_poller_and_switchable_in_the_settings() -> None:
    changelog: Any = Changelog([2])
    records, _ = drain(TablePoller(changelog, "p", schema_changes=False), Position(None), None)
    assert [r.op for r in records] == ["c", "c"] and "transaction" not in json.loads(records[0].value or b"")
    assert make_encoder(CdcSettings()).transaction_block is True  # type: ignore[attr-defined]
    assert make_encoder(CdcSettings(transaction_metadata=False)).transaction_block is False  # type: ignore[attr-defined]
