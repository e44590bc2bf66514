"""connectors/workers.py without Kafka: the worker command line, and the supervisor on stand-in commands
(a worker here is any command: the restart and stop logic does not depend on what it runs)."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import pytest

from connectors import workers

pytestmark = pytest.mark.unit


def test_strip_options_drops_workers_metrics_and_json() -> None:
    argv = ["--config", "c.yaml", "cdc", "apply", "--workers", "3", "--metrics-port=9000", "--json", "--once"]
    assert workers.strip_options(argv, {"--workers": 1, "--metrics-port": 1, "--json": 0}) == [
        "--config", "c.yaml", "cdc", "apply", "--once"]


def test_worker_argv_gives_each_worker_its_port() -> None:
    argv = workers.worker_argv(["cdc", "apply"], 2, 9100)
    assert argv[-2:] == ["--metrics-port", "9102"] and "--workers" in argv and "1" in argv


def test_a_worker_that_dies_is_restarted_and_summaries_add_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in worker is killed by a signal on its first run, then succeeds (as a restarted consumer does)."""
    marker = tmp_path / "ran"
    script = ("import json, os, signal, pathlib, sys; m = pathlib.Path(sys.argv[1])\n"
              "if sys.argv[2] == '0' and not m.exists():\n    m.touch(); os.kill(os.getpid(), signal.SIGKILL)\n"
              "print(json.dumps({'applied': 5, 'skipped': 1, 'caught_up': True}))\n")
    monkeypatch.setattr(workers, "worker_argv",
                        lambda base, i, port: [sys.executable, "-c", script, str(marker), str(i)])
    summary = workers.supervise([], 2, stop=threading.Event())
    assert summary["restarts"] == 1 and summary["ok"] and summary["caught_up"]
    assert summary["applied"] == 10 and summary["skipped"] == 2
    assert sorted(w["starts"] for w in summary["workers"]) == [1, 2]
    json.dumps(summary)


def test_restarts_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "worker_argv", lambda base, i, port: [sys.executable, "-c", "raise SystemExit(3)"])
    summary = workers.supervise([], 1, max_restarts=2)
    assert summary["restarts"] == 2 and summary["failed_workers"] == [0] and not summary["ok"]
