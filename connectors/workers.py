"""`cdc apply --workers N`: N consumer processes of one group under a supervisor.

Each worker is the same `icetide cdc apply` command with `--workers 1` (so the group, the sink, the
options and the exactly-once bookkeeping are exactly one consumer's: positions live in the sink, one
per partition, and any worker resumes any partition from them). Kafka spreads the partitions over the
group's members; more workers than partitions leaves the extra ones idle.

The supervisor
- passes SIGTERM / SIGINT on to every worker and waits for them to finish their batch (a clean end);
- restarts a worker that dies on its own (a signal, a crash) up to `max_restarts` times in all; the
  replacement joins the group, is assigned partitions and seeks to the stored positions, so nothing is
  applied twice or lost;
- with `--once`, ends when every worker has ended (each stops once the end offsets that existed at its
  start are applied, whoever applied them), and sums their `--json` summaries (`workers` lists each one).
Per-worker metrics: worker i serves its own /metrics on `metrics_port + i` (0: a free port each).
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)
SUMMED = ("applied", "skipped", "replayed", "dead_letters", "batches", "held")


@dataclass
class Worker:
    index: int
    argv: list[str]
    proc: subprocess.Popen[str] | None = None
    starts: int = 0
    outputs: list[str] = field(default_factory=list)  # each run's stdout (its --json summary)

    def start(self) -> None:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, text=True)
        self.starts += 1

    def collect(self) -> int:
        assert self.proc is not None
        out, _ = self.proc.communicate()
        self.outputs.append(out)
        return self.proc.returncode


def strip_options(argv: Sequence[str], drop: dict[str, int]) -> list[str]:
    """`argv` without the options in `drop` (name → how many values follow it; `--name=value` too)."""
    out: list[str] = []
    skip = 0
    for arg in argv:
        if skip:
            skip -= 1
            continue
        name = arg.split("=", 1)[0]
        if name in drop:
            skip = 0 if "=" in arg else drop[name]
            continue
        out.append(arg)
    return out


def worker_argv(base: Sequence[str], index: int, metrics_port: int | None) -> list[str]:
    """The worker's command: `icetide … cdc apply <options>` with `--workers 1`, `--json`, its own port."""
    argv = [sys.executable, "-m", "icetide.cli", *base, "--workers", "1", "--json"]
    if metrics_port is not None:
        argv += ["--metrics-port", str(metrics_port + index if metrics_port else 0)]
    return argv


def supervise(base: Sequence[str], n: int, metrics_port: int | None = None, max_restarts: int = 10,
              stop: threading.Event | None = None) -> dict[str, Any]:
    """Run `n` workers until they end (or `stop`); returns the summed summary. A worker that ends
    with a non-zero status after the restarts are used up makes `ok` false."""
    stop = stop or threading.Event()
    workers = [Worker(i, worker_argv(base, i, metrics_port)) for i in range(n)]
    for w in workers:
        w.start()
    restarts, failed = 0, []
    pending = list(workers)
    while pending:
        if stop.is_set():
            for w in pending:
                if w.proc is not None and w.proc.poll() is None:
                    w.proc.send_signal(signal.SIGTERM)
        for w in list(pending):
            assert w.proc is not None
            if w.proc.poll() is None:
                continue
            code = w.collect()
            if code == 0 or stop.is_set():
                pending.remove(w)
                if code != 0:
                    failed.append(w.index)
                continue
            if restarts >= max_restarts:
                log.error("worker %d ended with status %d; no restarts left", w.index, code)
                failed.append(w.index)
                pending.remove(w)
                continue
            restarts += 1
            log.warning("worker %d ended with status %d; restarting it (%d of %d)", w.index, code, restarts,
                        max_restarts)
            w.start()
        time.sleep(0.2)
    return _summed(workers, restarts, failed)


def _summed(workers: list[Worker], restarts: int, failed: list[int]) -> dict[str, Any]:
    per_worker = []
    total: dict[str, Any] = {k: 0 for k in SUMMED}
    caught_up = True
    for w in workers:
        runs = [json.loads(o) for o in w.outputs if o.strip().startswith("{")]
        for run in runs:
            for k in SUMMED:
                total[k] += run.get(k) or 0
        last = runs[-1] if runs else {}
        caught_up = caught_up and bool(last.get("caught_up", False))
        per_worker.append({"worker": w.index, "starts": w.starts, "applied": sum(r.get("applied", 0) for r in runs),
                           "active_seconds": last.get("active_seconds"),
                           "active_events_per_s": last.get("active_events_per_s")})
    return {**total, "workers": per_worker, "restarts": restarts, "failed_workers": failed,
            "caught_up": caught_up and not failed, "ok": not failed}
