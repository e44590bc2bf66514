"""`cdc run --once`'s progress bar: its total estimated from the snapshot summaries, its count read from the
worker's progress files (streaming/progress.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from pyiceberg.table.snapshots import Operation, Summary

from streaming import progress as run_progress
from streaming.poller import Position, estimated_events
from tests.unit.test_streaming_poller import FakeChangelog

pytestmark = pytest.mark.unit


def test_the_estimate_is_exact_for_appends_and_bounds_overwrites() -> None:
    changelog: Any = FakeChangelog([5, 0, 0, 0])  # the snapshots' chain; their summaries below are pyiceberg's
    summaries = [Summary(Operation.APPEND, **{"added-records": "5", "total-records": "5"}),
                 Summary(Operation.OVERWRITE, **{"added-records": "100", "deleted-records": "98"}),
                 Summary(Operation.DELETE, **{"added-position-deletes": "3"}),
                 Summary(Operation.REPLACE, **{"added-records": "7", "deleted-records": "7"})]  # compaction: none
    for snap, summary in zip(changelog.snaps, summaries, strict=True):
        snap.summary = summary
    assert estimated_events(changelog, Position(None)) == 5 + 100 + 3
    assert estimated_events(changelog, Position(after=1)) == 100 + 3
    assert estimated_events(changelog, Position(after=None, snapshot_id=1, emitted=2)) == 3 + 100 + 3
    assert estimated_events(changelog, Position(after=1, snapshot_id=1, emitted=1, initial=True)) == 5 - 1
    assert estimated_events(changelog, Position(after=4)) == 0


class Recorder:
    """A Bar that remembers every count it was given (the polling thread's reports)."""

    def __init__(self) -> None:
        self.seen: list[float] = []
        self.total: float | None = None

    def advance(self, amount: float = 1) -> None:
        self.seen.append((self.seen[-1] if self.seen else 0) + amount)

    def update(self, completed: float | None = None, total: float | None = None, label: str | None = None) -> None:
        if completed is not None:
            self.seen.append(completed)
        if total is not None:
            self.total = total


def test_the_bar_counts_what_the_worker_wrote_and_ends_at_it(tmp_path: Path) -> None:
    run_dir, bar = str(tmp_path), Recorder()
    with run_progress.watch(run_dir, bar, interval_s=0.02):
        run_progress.write(run_dir, "sales.a", 3)
        run_progress.write(run_dir, "sales.b", 4)
        deadline = time.monotonic() + 5
        while 7 not in bar.seen and time.monotonic() < deadline:
            time.sleep(0.01)
        run_progress.write(run_dir, "sales.a", 6)
    assert 7 in bar.seen and bar.seen[-1] == 10 and bar.total == 10  # the estimate gives way to the count
    assert run_progress.published(str(tmp_path / "none")) == 0
