"""The consumer against the real broker and real PostgreSQL / SQLite.

Envelopes are built with icetide.events and produced with confluent_kafka; the consumer runs
`--once` (in process, or as the `icetide cdc apply` command) and the downstream table must equal
the model the events were generated from. Crash safety: the consumer subprocess is SIGKILLed at
random moments while events flow, restarted, and nothing is lost or applied twice (a keyless,
append-only table would show any double apply as an extra row).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from connectors.consumer import ChangeConsumer, ConsumeOptions
from connectors.postgres import PostgresConfig, PostgresSink
from connectors.sqlite import SqliteConfig, SqliteSink
from icetide.events import ChangeEvent, Source, key_to_json, to_json
from icetide.settings import Settings, load_settings
from tests.fixtures.kafka import consume_all, create_topic, new_topic_name

pytestmark = pytest.mark.integration
ICETIDE = str(Path(sys.executable).parent / "icetide")


def _settings(bootstrap: str, state_dir: Path, dead_letter: str) -> Settings:
    return load_settings(None, environ={
        "ICETIDE__STACK__STATE_DIR": str(state_dir),
        "ICETIDE__KAFKA__BOOTSTRAP_SERVERS": bootstrap,
        "ICETIDE__SINK__GROUP_ID": f"g-{uuid.uuid4().hex[:8]}",
        "ICETIDE__SINK__DEAD_LETTER_TOPIC": dead_letter,
        "ICETIDE__SINK__BATCH_SIZE": "200",
    })


class Generator:
    """Random c/u/d events over a small key space, with the model they should produce."""

    def __init__(self, db: str, table: str, keyed: bool = True, seed: int = 0) -> None:
        self.db, self.table, self.keyed = db, table, keyed
        self.rng = random.Random(seed)
        self.model: dict[int, dict[str, Any]] = {}
        self.rows: list[dict[str, Any]] = []  # keyless: the multiset of rows (append-only)
        self.seq = 0

    def _source(self, ordinal: int) -> Source:
        return Source(catalog="lake", db=self.db, table=self.table, snapshot_id=10_000 + self.seq,
                      sequence_number=self.seq, commit_ts_ms=int(time.time() * 1000), ordinal=ordinal)

    def events(self, n: int) -> list[tuple[bytes | None, bytes]]:
        self.seq += 1
        out = []
        for i in range(n):
            if not self.keyed:
                row = {"n": len(self.rows), "v": self.rng.randint(0, 9)}
                self.rows.append(row)
                out.append((None, to_json(ChangeEvent("c", None, row, self._source(i)))))
                continue
            key = self.rng.randrange(200)
            before = self.model.get(key)
            if before is not None and self.rng.random() < 0.25:
                del self.model[key]
                event = ChangeEvent("d", before, None, self._source(i))
            else:
                after = {"id": key, "qty": self.rng.randint(0, 1000), "label": f"x{self.rng.randint(0, 9)}",
                         "price": str(self.rng.randint(0, 99999) / 100), "day": "2025-01-02"}
                if self.seq > 2:
                    after["note"] = "added later"  # schema growth
                self.model[key] = after
                event = ChangeEvent("u" if before else "c", before, after, self._source(i))
            out.append((key_to_json({"id": key}), to_json(event)))
        return out


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    for key, value in records:
        producer.produce(topic, value, key=key)
        producer.poll(0)
    assert producer.flush(60) == 0


def _norm(rows: list[dict[str, Any]]) -> list[tuple[tuple[str, Any], ...]]:
    return sorted(tuple(sorted((k, v) for k, v in r.items() if v is not None)) for r in rows)


def test_once_applies_everything_into_postgres_and_dead_letters_poison(
        kafka_bootstrap: str, postgres_db: str, tmp_path: Path) -> None:
    topic = create_topic(kafka_bootstrap, new_topic_name("icetide.sales.orders"), partitions=3)
    dead = new_topic_name("dead")
    gen = Generator("sales", "orders", seed=1)
    records = gen.events(400) + gen.events(300) + gen.events(300)
    poison = [(b'{"id":1}', b"{not json"), (b'{"id":2}', b'{"op":"x","source":{}}'),
              # decodes, but its value cannot go into the bigint column → isolated at apply time
              (key_to_json({"id": 9999}), to_json(ChangeEvent("c", None, {"id": 9999, "qty": 2**70},
                                                               gen._source(0))))]
    _produce(kafka_bootstrap, topic, records[:500] + poison + records[500:])

    settings = _settings(kafka_bootstrap, tmp_path, dead)
    with PostgresSink(PostgresConfig(postgres_db)) as sink:
        summary = ChangeConsumer(settings, sink, kafka_bootstrap, ConsumeOptions(topics=[topic], once=True)).run()
        rows = sink.read_rows(("sales", "orders"))
        positions = sink.positions()
    assert summary.dead_letters == 3
    assert summary.applied == len(records)
    assert _norm(rows) == _norm(list(gen.model.values()))
    assert sum(off + 1 for off in positions.values()) == len(records) + len(poison)

    letters = consume_all(kafka_bootstrap, dead)
    reasons = sorted(dict(m.headers())["icetide.reason"].decode() for m in letters)
    assert reasons == ["apply", "decode", "decode"]
    for m in letters:
        headers = dict(m.headers())
        assert headers["icetide.topic"].decode() == topic
        assert headers["icetide.error"]
        assert int(headers["icetide.offset"]) >= 0

    # a second run finds nothing new: exactly-once effect across runs
    with PostgresSink(PostgresConfig(postgres_db)) as sink:
        again = ChangeConsumer(settings, sink, kafka_bootstrap, ConsumeOptions(topics=[topic], once=True)).run()
    assert again.applied == 0 and again.dead_letters == 0


def _start_apply(env: dict[str, str], sink: str, topics: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([ICETIDE, "cdc", "apply", "--sink", sink, "--topics", ",".join(topics),
                             "--batch-size", "100"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)


# ICETIDE_TEST_KILLS raises the number of SIGKILLs per sink (the chaos figure of the report).
KILLS = int(os.environ.get("ICETIDE_TEST_KILLS", "5"))


@pytest.mark.parametrize("sink_kind", ["postgres", "sqlite"])
def test_kill_9_mid_run_then_restart_equals_expected(kafka_bootstrap: str, postgres_db: str, tmp_path: Path,
                                                     sink_kind: str) -> None:
    keyed = create_topic(kafka_bootstrap, new_topic_name("icetide.sales.keyed"), partitions=2)
    keyless = create_topic(kafka_bootstrap, new_topic_name("icetide.sales.log"), partitions=1)
    gen, log_gen = Generator("sales", "keyed", seed=2), Generator("sales", "log", keyed=False, seed=3)
    env = {**os.environ, "ICETIDE__KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
           "ICETIDE__SINK__GROUP_ID": f"kill-{uuid.uuid4().hex[:8]}",
           "ICETIDE__SINK__DEAD_LETTER_TOPIC": new_topic_name("dead"),
           "ICETIDE__SINK__POSTGRES_DSN": postgres_db, "ICETIDE__STACK__STATE_DIR": str(tmp_path)}
    rng = random.Random(7)
    kills = 0
    proc = _start_apply(env, sink_kind, [keyed, keyless])
    try:
        for _round in range(KILLS):
            _produce(kafka_bootstrap, keyed, gen.events(1500))
            _produce(kafka_bootstrap, keyless, log_gen.events(500))
            time.sleep(rng.uniform(0.5, 3.0))
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            proc = _start_apply(env, sink_kind, [keyed, keyless])
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    final = subprocess.run([ICETIDE, "cdc", "apply", "--sink", sink_kind, "--topics", f"{keyed},{keyless}",
                            "--once", "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-2000:]
    assert json.loads(final.stdout)["caught_up"] is True
    sink = (PostgresSink(PostgresConfig(postgres_db)) if sink_kind == "postgres"
            else SqliteSink(SqliteConfig(tmp_path / "downstream.db")))
    with sink:
        keyed_rows = sink.read_rows(("sales", "keyed"))
        log_rows = sink.read_rows(("sales", "log"))
    assert kills == KILLS
    assert _norm(keyed_rows) == _norm(list(gen.model.values()))
    assert Counter(_norm(log_rows)) == Counter(_norm(log_gen.rows)), "keyless rows: none lost, none twice"


def test_cli_once_into_sqlite_with_pattern(kafka_bootstrap: str, tmp_path: Path) -> None:
    prefix = f"p{uuid.uuid4().hex[:6]}"
    topic = create_topic(kafka_bootstrap, f"{prefix}.sales.items")
    gen = Generator("sales", "items", seed=4)
    _produce(kafka_bootstrap, topic, gen.events(250))
    _produce(kafka_bootstrap, f"{prefix}.dead-letter", [(None, b"must not be consumed")])
    env = {**os.environ, "ICETIDE__KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap, "ICETIDE__CDC__TOPIC_PREFIX": prefix,
           "ICETIDE__STACK__STATE_DIR": str(tmp_path)}
    done = subprocess.run([ICETIDE, "cdc", "apply", "--sink", "sqlite", "--once", "--json"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert summary["topics"] == [topic]
    assert summary["applied"] == 250 and summary["dead_letters"] == 0
    with SqliteSink(SqliteConfig(tmp_path / "downstream.db")) as sink:
        assert _norm(sink.read_rows(("sales", "items"))) == _norm(list(gen.model.values()))
    status = subprocess.run([ICETIDE, "cdc", "status", "--sink", "sqlite", "--json"], env=env,
                            capture_output=True, text=True, timeout=60)
    assert json.loads(status.stdout)["positions"] == [
        {"topic": topic, "partition": 0, "applied_offset": 249, "end_offset": 250, "lag": 0}]


def test_continuous_apply_serves_metrics_and_stops_on_sigterm(kafka_bootstrap: str, tmp_path: Path) -> None:
    import re
    import urllib.request

    topic = create_topic(kafka_bootstrap, new_topic_name("icetide.sales.live"))
    gen = Generator("sales", "live", seed=5)
    env = {**os.environ, "ICETIDE__KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
           "ICETIDE__SINK__GROUP_ID": f"live-{uuid.uuid4().hex[:8]}", "ICETIDE__STACK__STATE_DIR": str(tmp_path)}
    proc = subprocess.Popen([ICETIDE, "cdc", "apply", "--sink", "sqlite", "--topics", topic, "--metrics-port", "0",
                             "--json"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None
        match = re.search(r"metrics on (http://\S+)", proc.stderr.readline())
        assert match, "the endpoint is announced on stderr"
        _produce(kafka_bootstrap, topic, gen.events(300))  # produced while the consumer runs
        deadline, text = time.monotonic() + 120, ""
        while time.monotonic() < deadline:
            text = urllib.request.urlopen(match.group(1), timeout=5).read().decode()
            applied = sum(float(v) for v in re.findall(r'^icetide_cdc_events_applied_total\{[^}]*\} (\S+)$',
                                                       text, re.M))
            if applied == 300:
                break
            time.sleep(0.5)
        assert applied == 300
        assert 'icetide_cdc_commit_to_apply_seconds_count 300.0' in text
        assert 'icetide_cdc_last_applied_snapshot{table="sales.live"}' in text
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0
    assert json.loads(out)["applied"] == 300


def test_broker_kill_9_and_restart_while_consuming(tmp_path: Path, postgres_db: str) -> None:
    """The consumer rides out a broker SIGKILL + restart (same state dir, same ports): nothing lost."""
    from icetide.stack import Stack

    stack = Stack(load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(tmp_path / "broker")}))
    status = stack.up()
    proc = None
    try:
        bootstrap = status.bootstrap
        topic = create_topic(bootstrap, new_topic_name("icetide.sales.chaos"), partitions=2)
        gen = Generator("sales", "chaos", seed=9)
        env = {**os.environ, "ICETIDE__KAFKA__BOOTSTRAP_SERVERS": bootstrap,
               "ICETIDE__SINK__GROUP_ID": f"chaos-{uuid.uuid4().hex[:8]}",
               "ICETIDE__SINK__POSTGRES_DSN": postgres_db, "ICETIDE__STACK__STATE_DIR": str(tmp_path)}
        proc = _start_apply(env, "postgres", [topic])
        for _round in range(2):
            _produce(bootstrap, topic, gen.events(2000))
            time.sleep(2)
            assert status.pid is not None
            os.killpg(status.pid, signal.SIGKILL)
            while stack.status().pid is not None:
                time.sleep(0.2)
            time.sleep(6)  # down across a topic refresh (every 5 s) of the consumer
            status = stack.up()
            assert status.bootstrap == bootstrap, "the restarted broker keeps its port"
        _produce(bootstrap, topic, gen.events(500))
        time.sleep(6)  # past a topic refresh with the broker back: the consumer must still be running
        assert proc.poll() is None, "the continuous consumer died while the broker was away"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        final = subprocess.run([ICETIDE, "cdc", "apply", "--sink", "postgres", "--topics", topic, "--once", "--json"],
                               env=env, capture_output=True, text=True, timeout=300)
        assert final.returncode == 0, final.stderr[-2000:]
        with PostgresSink(PostgresConfig(postgres_db)) as sink:
            rows = sink.read_rows(("sales", "chaos"))
        assert _norm(rows) == _norm(list(gen.model.values()))
    finally:
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        stack.down()
