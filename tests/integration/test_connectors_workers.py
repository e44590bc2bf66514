"""`cdc apply --workers 2` on a 2-partition topic against the real broker and PostgreSQL: the two
workers end EQUAL to the model, and a worker SIGKILLed mid-stream is restarted by the supervisor and the
table still ends EQUAL, nothing applied twice (a keyless, append-only table would show a double apply)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from connectors.postgres import PostgresConfig, PostgresSink
from tests.fixtures.kafka import create_topic, new_topic_name
from tests.integration.test_connectors_consumer import Generator, _norm, _produce

pytestmark = pytest.mark.integration


def _env(bootstrap: str, dsn: str, state: Path) -> dict[str, str]:
    return {**os.environ, "ICETIDE__KAFKA__BOOTSTRAP_SERVERS": bootstrap,
            "ICETIDE__SINK__GROUP_ID": f"w-{uuid.uuid4().hex[:8]}", "ICETIDE__SINK__BATCH_SIZE": "100",
            "ICETIDE__SINK__DEAD_LETTER_TOPIC": new_topic_name("dead"),
            "ICETIDE__SINK__POSTGRES_DSN": dsn, "ICETIDE__STACK__STATE_DIR": str(state)}


def _workers(topics: list[str]) -> list[str]:
    return [sys.executable, "-m", "icetide.cli", "cdc", "apply", "--sink", "postgres", "--topics", ",".join(topics),
            "--once", "--idle-timeout", "60", "--workers", "2", "--json"]


def _applied(dsn: str) -> int:
    with PostgresSink(PostgresConfig(dsn)) as sink:
        return sum(off + 1 for off in sink.positions().values())


def _worker_pids(parent: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(parent)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_two_workers_then_one_killed_mid_stream_end_equal(kafka_bootstrap: str, postgres_db: str,
                                                          tmp_path: Path) -> None:
    keyed = create_topic(kafka_bootstrap, new_topic_name("icetide.sales.wkeyed"), partitions=2)
    keyless = create_topic(kafka_bootstrap, new_topic_name("icetide.sales.wlog"), partitions=2)
    gen, log_gen = Generator("sales", "wkeyed", seed=11), Generator("sales", "wlog", keyed=False, seed=12)
    env = _env(kafka_bootstrap, postgres_db, tmp_path)
    _produce(kafka_bootstrap, keyed, gen.events(3000))
    _produce(kafka_bootstrap, keyless, log_gen.events(1000))

    first = subprocess.run(_workers([keyed, keyless]), env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads(first.stdout)
    assert summary["applied"] == 4000 and summary["restarts"] == 0 and summary["caught_up"], first.stderr[-3000:]
    assert sum(w["applied"] for w in summary["workers"]) == 4000  # (one worker may take all: --once ends at the end)
    with PostgresSink(PostgresConfig(postgres_db)) as sink:
        assert _norm(sink.read_rows(("sales", "wkeyed"))) == _norm(list(gen.model.values()))

    # more events; SIGKILL one worker while they are applied: the supervisor restarts it
    for _ in range(4):
        _produce(kafka_bootstrap, keyed, gen.events(3000))
        _produce(kafka_bootstrap, keyless, log_gen.events(1500))
    proc = subprocess.Popen(_workers([keyed, keyless]), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    try:
        done_before = _applied(postgres_db)
        deadline = time.monotonic() + 120
        while _applied(postgres_db) == done_before and time.monotonic() < deadline:
            time.sleep(0.05)  # kill as soon as the second run has committed its first batch: mid-stream
        pids = _worker_pids(proc.pid)
        assert pids, "the workers ended before one could be killed"
        victim = pids[0]
        os.kill(victim, signal.SIGKILL)
        out, err = proc.communicate(timeout=400)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err[-3000:]
    second = json.loads(out)
    assert second["restarts"] >= 1 and second["caught_up"]
    with PostgresSink(PostgresConfig(postgres_db)) as sink:
        keyed_rows = sink.read_rows(("sales", "wkeyed"))
        log_rows = sink.read_rows(("sales", "wlog"))
    assert _norm(keyed_rows) == _norm(list(gen.model.values()))
    assert Counter(_norm(log_rows)) == Counter(_norm(log_gen.rows)), "keyless rows: none lost, none twice"
