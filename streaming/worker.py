"""The CDC job's per-table work, apart from Flink: where a table resumes, what one tick publishes,
the audience fan-out, the counters and summary files, the `--once` progress files, the metrics endpoint.

`job.py`'s KeyedProcessFunction keeps only what is Flink's: the keyed position state, and turning
each `Record` into a row of the Kafka sink. Everything here is plain Python (pyflink is not
imported), one named part per job.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from streaming import progress
from streaming.poller import SCHEMA_OP, TOMBSTONE_OP, Position, Record, TablePoller, start_position
from streaming.transactions import TRANSACTION_OP

if TYPE_CHECKING:
    from icetide.settings import Settings
    from policies.compiler import CompiledPolicy

    from streaming.metrics import CdcMetrics

Out = TypeVar("Out")


def resume_position(poller: TablePoller, stored: str | None, seed: str | None, start: str) -> tuple[Position, bool]:
    """Where a table's publishing resumes: the keyed state, else the final position of a finished
    `--once` run, else `--start`. True when the position is new and must be stored now."""
    if stored is not None:
        return Position.from_json(stored), False
    if seed is not None:
        return Position.from_json(seed), False
    return start_position(poller.changelog, start), True


@dataclass
class Tally:
    """One table's counters in this worker, written to `<run dir>/summary/<table>.json` (`--json`)."""

    events: Counter[str] = field(default_factory=Counter)  # change events per op
    last_snapshot: int | None = None  # the last snapshot published completely
    busy_s: float = 0.0
    schema_changes: int = 0
    tombstones: int = 0

    def count(self, record: Record) -> bool:
        """Count `record`; True if it is a change event (not schema, tombstone or transaction)."""
        if record.op == SCHEMA_OP:
            self.schema_changes += 1
        elif record.op == TOMBSTONE_OP:
            self.tombstones += 1
        elif record.op != TRANSACTION_OP:
            self.events[record.op] += 1
            return True
        return False

    def write(self, run_dir: str, table: str, position: Position) -> None:
        folder = Path(run_dir) / "summary"
        folder.mkdir(parents=True, exist_ok=True)
        last = self.last_snapshot if self.last_snapshot is not None else position.after
        body = {"table": table, "events": dict(self.events), "last_snapshot": last,
                "position": position.to_json(), "busy_s": round(self.busy_s, 3),
                "schema_changes": self.schema_changes, "tombstones": self.tombstones}
        tmp = folder / f".{table}.tmp"
        tmp.write_text(json.dumps(body))
        tmp.replace(folder / f"{table}.json")


class AudienceFanout:
    """Per-audience topics (`streaming/audiences.py`): a chunk's change records are held, then
    filtered and masked per audience in one DuckDB batch — before the position moves past them."""

    def __init__(self, policy: CompiledPolicy, settings: Settings) -> None:
        self._policy = policy
        self._settings = settings
        self._pending: list[Record] = []

    def hold(self, record: Record) -> None:
        self._pending.append(record)

    def release(self, table: str, key_fields: list[str]) -> Iterator[Record]:
        if not self._pending:
            return
        from streaming.audiences import records

        cdc = self._settings.cdc
        yield from records(self._policy, table, cdc.topic_prefix, key_fields, self._pending,
                           tombstones=cdc.tombstones)
        self._pending.clear()


class ProgressFiles:
    """`cdc run --once` on a progress bar (`streaming/progress.py`): the events published per table,
    written at most every PROGRESS_S while a tick runs (one clock for the worker) and after it."""

    def __init__(self, run_dir: str) -> None:
        self._run_dir = run_dir
        self._at = 0.0

    def published(self, table: str, tally: Tally) -> None:
        if time.monotonic() - self._at > progress.PROGRESS_S:
            self.write(table, tally)
            self._at = time.monotonic()

    def write(self, table: str, tally: Tally) -> None:
        progress.write(self._run_dir, table, tally.events.total())


class MetricsEndpoint:
    """The worker's Prometheus endpoint (port `metrics_port` + subtask index; 0: any free port),
    its port in `<run dir>/metrics-port-<index>` and its scrape target registered."""

    def __init__(self, metrics: CdcMetrics, settings: Settings, metrics_port: int, run_dir: str, index: int) -> None:
        from icetide.metrics import register_target, serve

        port = metrics_port + index if metrics_port else 0
        self._server, bound = serve(metrics.registry, settings.metrics.host, port)
        folder = Path(run_dir)  # made by `cdc run`; absent in a task manager pod of its own
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"metrics-port-{index}").write_text(str(bound))
        self._target = register_target(settings.state_dir, "icetide-cdc", settings.metrics.host, bound,
                                       remove_at_exit=False, labels={"subtask": str(index)})

    def close(self) -> None:
        from icetide.metrics import unregister_target

        self._server.shutdown()
        unregister_target(self._target)


def publish_tick(poller: TablePoller, table: str, position: Position, budget: int | None, tally: Tally,
                 metrics: CdcMetrics, fanout: AudienceFanout | None, progress_files: ProgressFiles | None,
                 store: Callable[[Position], None],
                 out: Callable[[Record], Out]) -> Generator[Out, None, tuple[Position, bool]]:
    """One tick of one table: the records after `position` (at most `budget` change records), as
    `out` makes them (Flink rows), each new position stored as the poller passes it. Returns the
    last position and whether it moved."""
    began = time.perf_counter()
    metrics.polls.labels(table).inc()
    moved = False
    for item in poller.poll(position, budget):
        if isinstance(item, Record):
            if tally.count(item):
                metrics.published(table, item.op, time.time() - item.commit_ts_ms / 1000)
                if progress_files is not None:
                    progress_files.published(table, tally)
                if fanout is not None:
                    fanout.hold(item)
            yield out(item)
            continue
        if fanout is not None:
            yield from map(out, fanout.release(table, poller.changelog.key_fields))  # before the position moves
        if item.snapshot_id is None and item.after is not None and item.after != position.after:
            snap = poller.changelog.snapshot(item.after)  # a snapshot was published completely
            metrics.snapshot_done(table, item.after, snap.timestamp_ms)
            tally.last_snapshot = item.after
        position, moved = item, True
        store(position)
    if fanout is not None:
        yield from map(out, fanout.release(table, poller.changelog.key_fields))
    tally.busy_s += time.perf_counter() - began
    return position, moved
