"""The consumer against real database faults (issue #9, bugs 2 and 4): it waits, never dead-letters, never exits.

- SQLite on a small tmpfs mounted for the test (we run as root): a ballast file fills the disk while
  events flow, so the sink gets a real SQLITE_FULL; every event is kept (no dead letters), and once the
  ballast is removed the consumer catches up and the downstream table equals the model.
- PostgreSQL with its connection limit exhausted: the consumer's role has CONNECTION LIMIT 1 and the
  test holds that connection, before the consumer starts and again mid-run (after terminating the
  consumer's backend); it retries, then catches up when the connection is released.
- PostgreSQL stopped before the partitions are assigned (the rebalance callback cannot load positions)
  and again while assigned, for longer than the old retry budget (≈ 31 s): the consumer stays up and
  catches up once the server is back.
Each waits on the consumer's own metrics (`icetide_cdc_sink_retrying`, `…_transient_errors_total`).
"""

from __future__ import annotations

import errno
import logging
import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.base import Sink
from connectors.consumer import ChangeConsumer, ConsumeOptions, run_consumer
from connectors.metrics import ConsumerMetrics
from connectors.postgres import PostgresConfig, PostgresSink
from connectors.sqlite import SqliteConfig, SqliteSink
from icetide import pgserver
from icetide.events import ChangeEvent, Source, key_to_json, to_json
from tests.fixtures.kafka import create_topic, new_topic_name
from tests.integration.test_connectors_consumer import Generator, _norm, _produce, _settings

pytestmark = pytest.mark.integration
RETRYING = "icetide_cdc_sink_retrying"
ERRORS = "icetide_cdc_sink_transient_errors_total"


class Running:
    """A continuous consumer (`cdc apply` without --once) in a thread, observed through its metrics."""

    def __init__(self, settings: Any, sink: Sink, bootstrap: str, topics: list[str], open_sink: bool = True) -> None:
        self.metrics = ConsumerMetrics()
        self.error: BaseException | None = None
        options = ConsumeOptions(topics=topics)
        options.retry_max_delay_s = 1.0  # a short back-off cap: recovery is seen within a second
        self.consumer = ChangeConsumer(settings, sink, bootstrap, options, self.metrics)

        def target() -> None:
            try:
                if open_sink:
                    run_consumer(settings, sink, bootstrap, options, self.metrics,
                                 on_start=lambda c: setattr(self, "consumer", c))
                else:  # the sink was opened by the test
                    self.consumer.run()
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def value(self, name: str, **labels: str) -> float:
        found = self.metrics.registry.get_sample_value(name, labels)
        return found or 0.0

    def errors(self) -> float:
        return sum(s.value for m in self.metrics.registry.collect() for s in m.samples if s.name == ERRORS)

    def wait(self, what: str, done: Callable[[], bool], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            assert self.thread.is_alive(), f"consumer exited ({self.error!r}) while waiting for {what}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.2)

    def stop(self) -> None:
        self.consumer.stop.set()
        self.thread.join(60)
        assert not self.thread.is_alive()
        assert self.error is None, repr(self.error)


def _state_changes(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage().split(" (")[0].split(" after")[0] for r in caplog.records
            if r.name == "connectors.retry" and r.levelno >= logging.INFO]


# -- SQLite on a full disk -------------------------------------------------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs, mounted for this test (root only: refused elsewhere, and then skipped)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:  # the unit tier still makes a real SQLITE_FULL (PRAGMA max_page_count)
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(disk: Path) -> Path:
    """Write a ballast file until the filesystem says ENOSPC."""
    ballast = disk / "ballast"
    chunk = b"\1" * 65536
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, chunk)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return ballast


class Growing:
    """Inserts of new ids with ~800-byte rows (the table must grow), and every tenth event a delete."""

    def __init__(self) -> None:
        self.model: dict[int, dict[str, Any]] = {}
        self.seq = 0
        self.next_id = 0

    def events(self, n: int) -> list[tuple[bytes | None, bytes]]:
        self.seq += 1
        out = []
        for i in range(n):
            source = Source(catalog="lake", db="sales", table="big", snapshot_id=self.seq, sequence_number=self.seq,
                            commit_ts_ms=int(time.time() * 1000), ordinal=i)
            if i % 10 == 9 and self.model:  # the oldest row goes
                key = next(iter(self.model))
                event = ChangeEvent("d", self.model.pop(key), None, source)
            else:
                key, self.next_id = self.next_id, self.next_id + 1
                row = {"id": key, "payload": f"{key:08d}" * 100, "n": i}
                self.model[key] = row
                event = ChangeEvent("c", None, row, source)
            out.append((key_to_json({"id": key}), to_json(event)))
        return out


def test_sqlite_on_a_full_disk_keeps_every_event_and_catches_up(kafka_bootstrap: str, small_disk: Path,
                                                                 tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    topic = create_topic(kafka_bootstrap, new_topic_name("icetide.sales.big"), partitions=2)
    settings = _settings(kafka_bootstrap, tmp_path, new_topic_name("dead"))
    gen = Growing()
    first = gen.events(200)
    _produce(kafka_bootstrap, topic, first)
    path = small_disk / "downstream.db"
    run = Running(settings, SqliteSink(SqliteConfig(path)), kafka_bootstrap, [topic])
    try:
        run.wait("the first events", lambda: run.consumer.summary.applied == len(first))
        ballast = _fill(small_disk)
        second = gen.events(4000)  # ~3.4 MB of rows: more than the WAL's reusable space
        _produce(kafka_bootstrap, topic, second)
        run.wait("the full disk", lambda: run.value(ERRORS, kind="sqlite_full") >= 5
                 or run.consumer.summary.dead_letters > 0)
        assert run.consumer.summary.dead_letters == 0
        assert run.value(RETRYING) == 1
        assert run.consumer.summary.applied < len(first) + len(second)
        ballast.unlink()  # space freed
        run.wait("catch-up", lambda: run.consumer.summary.applied == len(first) + len(second))
        assert run.value(RETRYING) == 0
    finally:
        run.stop()
    assert run.consumer.summary.dead_letters == 0 and run.value("icetide_cdc_dead_letters_total", reason="apply") == 0
    with SqliteSink(SqliteConfig(path)) as sink:
        assert _norm(sink.read_rows(("sales", "big"))) == _norm(list(gen.model.values()))
    assert _state_changes(caplog) == ["sqlite sink unavailable", "sqlite sink recovered"]


# -- PostgreSQL: connection limit exhausted -------------------------------------------------------------------
def _limited_database(server_dsn: str, limit: int) -> str:
    """A database owned by a new role limited to `limit` connections (superusers are never limited)."""
    import psycopg
    from psycopg import sql

    role = f"r_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN CONNECTION LIMIT {}").format(sql.Identifier(role),
                                                                               sql.Literal(limit)))
        conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(sql.Identifier(role), sql.Identifier(role)))
    return server_dsn.replace("user=postgres", f"user={role}").replace("dbname=postgres", f"dbname={role}")


def _hold(dsn: str, timeout: float = 30.0) -> Any:
    """Take the role's one connection (retrying while the consumer still holds it)."""
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            return psycopg.connect(dsn, autocommit=True)
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_postgres_connection_limit_exhausted_then_released(kafka_bootstrap: str, postgres_dsn: str, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    import psycopg

    caplog.set_level(logging.INFO)
    dsn = _limited_database(postgres_dsn, 1)
    role = dsn.split("user=")[1].split()[0]
    holder = _hold(dsn)
    topic = create_topic(kafka_bootstrap, new_topic_name("icetide.sales.orders"), partitions=2)
    gen = Generator("sales", "orders", seed=11)
    batches = [gen.events(300), gen.events(300)]
    _produce(kafka_bootstrap, topic, batches[0])
    settings = _settings(kafka_bootstrap, tmp_path, new_topic_name("dead"))
    run = Running(settings, PostgresSink(PostgresConfig(dsn)), kafka_bootstrap, [topic])
    try:
        run.wait("connection refusals", lambda: run.errors() >= 3)  # cannot even open the sink
        assert run.value(RETRYING) == 1 and run.consumer.summary.applied == 0
        holder.close()
        run.wait("the first batch", lambda: run.consumer.summary.applied == len(batches[0]))
        assert run.value(RETRYING) == 0

        # mid-run: the consumer's backend is terminated and its slot taken before it reconnects
        before = run.errors()
        with psycopg.connect(postgres_dsn, autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", (role,))
        holder = _hold(dsn)
        _produce(kafka_bootstrap, topic, batches[1])
        run.wait("refusals mid-run", lambda: run.errors() >= before + 3)
        assert run.consumer.summary.dead_letters == 0 and run.value(RETRYING) == 1
        holder.close()
        run.wait("catch-up", lambda: run.consumer.summary.applied == sum(map(len, batches)))
    finally:
        holder.close()
        run.stop()
    assert run.consumer.summary.dead_letters == 0
    with PostgresSink(PostgresConfig(dsn)) as sink:
        assert _norm(sink.read_rows(("sales", "orders"))) == _norm(list(gen.model.values()))
    assert _state_changes(caplog) == ["postgres sink unavailable", "postgres sink recovered"] * 2


# -- PostgreSQL stopped: before assignment and while assigned ------------------------------------------------
def test_postgres_stopped_before_assignment_and_while_assigned(kafka_bootstrap: str, tmp_path: Path) -> None:
    server = pgserver.start()
    try:
        dsn = pgserver.create_database(server.dsn)
        topic = create_topic(kafka_bootstrap, new_topic_name("icetide.sales.orders"), partitions=3)
        gen = Generator("sales", "orders", seed=12)
        batches = [gen.events(400), gen.events(400)]
        _produce(kafka_bootstrap, topic, batches[0])
        settings = _settings(kafka_bootstrap, tmp_path, new_topic_name("dead"))
        sink = PostgresSink(PostgresConfig(dsn))
        sink.open()
        server.halt()  # the sink was open; the first thing the consumer asks it is the rebalance callback's
        run = Running(settings, sink, kafka_bootstrap, [topic], open_sink=False)
        try:
            run.wait("failures in the rebalance callback", lambda: run.errors() >= 3)
            assert run.consumer.summary.applied == 0
            # the partitions are the consumer's but not fetched (not from Kafka's offsets either)
            assert run.consumer._pending and run.consumer._consumer.assignment() == []
            server.resume()
            run.wait("the first batch", lambda: run.consumer.summary.applied == len(batches[0]))

            server.halt()  # while assigned, longer than the old 10-retry budget (≈ 31 s)
            _produce(kafka_bootstrap, topic, batches[1])
            run.wait("failures while assigned", lambda: run.errors() >= 6)
            time.sleep(35)
            assert run.thread.is_alive() and run.value(RETRYING) == 1
            assert run.consumer.summary.dead_letters == 0
            server.resume()
            run.wait("catch-up", lambda: run.consumer.summary.applied == sum(map(len, batches)))
        finally:
            run.stop()
            sink.close()
        with PostgresSink(PostgresConfig(dsn)) as reader:
            assert _norm(reader.read_rows(("sales", "orders"))) == _norm(list(gen.model.values()))
    finally:
        server.stop()
