"""Operational database errors are transient, never poison (issue #9, bug 2), without a server.

SQLite faults are real (SQLITE_FULL from `PRAGMA max_page_count`, SQLITE_BUSY from a second writer,
SQLITE_READONLY from a read-only connection); PostgreSQL errors are psycopg's own exception classes,
one per SQLSTATE it knows (the servers' faults are in tests/integration/test_connectors_faults.py).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.base import Consumed
from connectors.metrics import ConsumerMetrics
from connectors.postgres import TRANSIENT_CLASSES, TRANSIENT_CODES, PostgresConfig, PostgresSink
from connectors.retry import Backoff, SinkHealth, SinkUnavailable, Stopped, call_until_ok
from connectors.sqlite import SqliteConfig, SqliteSink
from icetide.errors import EventError, TransientError
from icetide.events import ChangeEvent, Source

pytestmark = pytest.mark.unit


def test_postgres_errors_are_transient_by_sqlstate_class() -> None:
    """Every SQLSTATE psycopg knows: the server's condition is retried, the row's is dead-lettered."""
    import re

    from psycopg import errors

    sink = PostgresSink(PostgresConfig("host=unused"))  # never opened: classify reads the error only
    states = sorted(s for s in errors._sqlcodes if re.fullmatch(r"[0-9A-Z]{5}", s))
    assert len(states) > 200
    wrong = []
    for state in states:
        got = sink.classify(errors.lookup(state)("boom"))
        transient = state[:2] in TRANSIENT_CLASSES or state in TRANSIENT_CODES
        if isinstance(got, SinkUnavailable) is not transient or (not transient and not isinstance(got, EventError)):
            wrong.append((state, got))
    assert not wrong
    for must in ("53100", "53200", "53300", "57014", "57P01", "58030", "08006", "40001", "40P01", "55P03"):
        assert isinstance(sink.classify(errors.lookup(must)("x")), SinkUnavailable), must
    for row in ("22003", "22P02", "23505", "23502"):  # a value or a constraint: the row cannot be applied
        assert isinstance(sink.classify(errors.lookup(row)("x")), EventError), row


def test_postgres_kinds_name_the_condition() -> None:
    from psycopg import errors

    sink = PostgresSink(PostgresConfig("host=unused"))
    kinds = {s: sink.classify(errors.lookup(s)("x")) for s in ("53100", "53300", "57P01", "58030")}
    assert {s: getattr(e, "kind", None) for s, e in kinds.items()} == {
        "53100": "disk_full", "53300": "too_many_connections", "57P01": "admin_shutdown", "58030": "io_error"}


def _source(seq: int) -> Source:
    return Source(catalog="lake", db="sales", table="t", snapshot_id=seq, sequence_number=seq, commit_ts_ms=1,
                  ordinal=0)


def _insert(offset: int, width: int = 2000) -> Consumed:
    row = {"id": offset, "payload": "x" * width}
    return Consumed("icetide.sales.t", 0, offset, ChangeEvent("c", None, row, _source(offset)), ("id",))


def test_sqlite_full_is_transient_and_the_batch_applies_once_there_is_room(tmp_path: Path) -> None:
    """A real SQLITE_FULL (the page limit stands in for the disk here; the tmpfs test fills a disk)."""
    sink = SqliteSink(SqliteConfig(tmp_path / "d.db"))
    with sink:
        sink.apply([_insert(0)], {("icetide.sales.t", 0): 0})
        pages = sink.conn.execute("PRAGMA page_count").fetchone()[0]
        sink.conn.execute(f"PRAGMA max_page_count = {pages + 2}")
        batch = [_insert(i) for i in range(1, 40)]
        with pytest.raises(SinkUnavailable) as caught:
            sink.apply(batch, {("icetide.sales.t", 0): 39})
        assert caught.value.kind == "sqlite_full"
        assert sink.positions() == {("icetide.sales.t", 0): 0}  # nothing of the batch, positions unmoved
        sink.conn.execute("PRAGMA max_page_count = 1000000")
        sink.apply(batch, {("icetide.sales.t", 0): 39})
        assert len(sink.read_rows(("sales", "t"))) == 40


def _error(make: Any) -> sqlite3.Error:
    try:
        make()
    except sqlite3.Error as exc:
        return exc
    raise AssertionError("no error")


def test_sqlite_errors_by_result_code(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    writer.execute("INSERT INTO t VALUES (1, 'a')")
    writer.execute("BEGIN IMMEDIATE")
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    reader = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    sink = SqliteSink(SqliteConfig(path))
    sink._conn = other
    busy = _error(lambda: other.execute("INSERT INTO t VALUES (2, 'b')"))
    readonly = _error(lambda: reader.execute("INSERT INTO t VALUES (3, 'c')"))
    writer.execute("ROLLBACK")
    constraint = _error(lambda: other.execute("INSERT INTO t VALUES (1, 'dup')"))
    not_null = _error(lambda: other.execute("INSERT INTO t VALUES (4, NULL)"))
    mismatch = _error(lambda: other.execute("INSERT INTO t VALUES ('not a rowid', 'x')"))
    missing = _error(lambda: other.execute("INSERT INTO nope VALUES (1)"))
    got = {name: sink.classify(exc) for name, exc in
           {"busy": busy, "readonly": readonly, "constraint": constraint, "not_null": not_null,
            "mismatch": mismatch, "missing": missing}.items()}
    assert {n: type(e).__name__ for n, e in got.items()} == {
        "busy": "SinkUnavailable", "readonly": "SinkUnavailable", "constraint": "EventError",
        "not_null": "EventError", "mismatch": "EventError", "missing": "EventError"}
    assert getattr(got["busy"], "kind", None) == "sqlite_busy"
    for conn in (writer, other, reader):
        conn.close()


@given(st.integers(0, 200))
def test_backoff_grows_and_is_capped(attempts: int) -> None:
    backoff = Backoff(first=0.2, cap=30.0)
    delays = [backoff.next() for _ in range(attempts + 1)]
    assert all(0.16 <= d <= 36.0 for d in delays)
    assert delays[-1] >= min(30.0, 0.2 * 2 ** attempts) * 0.8


def test_health_logs_once_per_state_change_and_keeps_metrics(caplog: pytest.LogCaptureFixture) -> None:
    metrics = ConsumerMetrics()
    health = SinkHealth(metrics, "sqlite")
    gauge = lambda: metrics.registry.get_sample_value("icetide_cdc_sink_retrying")  # noqa: E731
    caplog.set_level(logging.DEBUG, logger="connectors.retry")
    for _ in range(5):
        health.failed(SinkUnavailable("disk full", "sqlite_full"))
    assert gauge() == 1 and health.retrying
    health.failed(TransientError("plain"))
    health.ok()
    health.ok()
    assert gauge() == 0 and not health.retrying
    errors = metrics.registry.get_sample_value
    assert errors("icetide_cdc_sink_transient_errors_total", {"kind": "sqlite_full"}) == 5
    assert errors("icetide_cdc_sink_transient_errors_total", {"kind": "other"}) == 1
    above_debug = [(r.levelname, r.getMessage().split(" (")[0]) for r in caplog.records if r.levelno > logging.DEBUG]
    assert above_debug == [("WARNING", "sqlite sink unavailable"),
                           ("INFO", "sqlite sink recovered after 0.0s and 6 failed attempts")]


def test_call_until_ok_retries_without_end_and_stops_when_asked() -> None:
    health, stop = SinkHealth(ConsumerMetrics(), "x"), threading.Event()
    health.backoff = Backoff(first=0.001, cap=0.002)
    calls, reopens = [], []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 50:
            raise SinkUnavailable("away", "connection_lost")
        return "done"

    assert call_until_ok(health, stop, flaky, lambda: reopens.append(1)) == "done"
    assert (len(calls), len(reopens)) == (50, 49)
    stop.set()
    with pytest.raises(Stopped):
        call_until_ok(health, stop, lambda: (_ for _ in ()).throw(SinkUnavailable("away", "x")))
    with pytest.raises(EventError):  # the row's errors are not retried
        call_until_ok(health, threading.Event(), lambda: (_ for _ in ()).throw(EventError("bad row")))
