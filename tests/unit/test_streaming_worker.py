"""The CDC worker's plain parts (`streaming/worker.py`): where a table resumes, the counters and the
summary file `cdc run --json` reads (the Flink side: tests/integration/test_streaming_job.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from streaming.poller import SCHEMA_OP, TOMBSTONE_OP, Position, Record
from streaming.transactions import TRANSACTION_OP
from streaming.worker import Tally, resume_position

pytestmark = pytest.mark.unit


def _record(op: str) -> Record:
    return Record("icetide.sales.t", b"k", b"v", op, 0, 1)


def test_the_keyed_state_wins_over_the_seed_of_a_once_run() -> None:
    stored, seed = Position(after=7).to_json(), Position(after=3).to_json()
    poller: Any = None  # only `--start` needs the table
    assert resume_position(poller, stored, seed, "earliest") == (Position(after=7), False)
    assert resume_position(poller, None, seed, "earliest") == (Position(after=3), False)


def test_the_tally_counts_change_events_apart_and_writes_the_summary(tmp_path: Path) -> None:
    tally = Tally()
    counted = [tally.count(_record(op)) for op in ("c", "u", "c", SCHEMA_OP, TOMBSTONE_OP, TRANSACTION_OP, "d")]
    assert counted == [True, True, True, False, False, False, True]
    tally.write(str(tmp_path), "sales.t", Position(after=5))
    summary = json.loads((tmp_path / "summary" / "sales.t.json").read_text())
    assert summary == {"table": "sales.t", "events": {"c": 2, "u": 1, "d": 1}, "last_snapshot": 5,
                       "position": Position(after=5).to_json(), "busy_s": 0.0, "schema_changes": 1,
                       "tombstones": 1}
    tally.last_snapshot = 9
    tally.write(str(tmp_path), "sales.t", Position(after=5))
    assert json.loads((tmp_path / "summary" / "sales.t.json").read_text())["last_snapshot"] == 9
