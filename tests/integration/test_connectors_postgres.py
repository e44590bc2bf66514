"""The PostgreSQL sink against a real server: same invariants as the SQLite unit tests."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.base import Consumed
from connectors.postgres import PostgresConfig, PostgresSink
from icetide.errors import EventError
from icetide.events import ChangeEvent, Source
from tests.fixtures.postgres import create_database
from tests.unit.test_connectors_sqlite import TABLE, TOPIC, _changes, _event, _normalise, steps

pytestmark = pytest.mark.integration


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=steps, cuts=st.lists(st.integers(1, 15), min_size=1, max_size=10), rewinds=st.lists(st.integers(0, 10)),
       keyed=st.booleans())
def test_batches_with_redelivery_equal_the_model(postgres_dsn: str, plan: list, cuts: list[int],
                                                 rewinds: list[int], keyed: bool) -> None:
    changes, model = _changes(plan, keyed)
    applied: Counter[tuple[str, str]] = Counter()
    with PostgresSink(PostgresConfig(create_database(postgres_dsn))) as sink:
        pos, i = 0, 0
        while pos < len(changes):
            start = max(0, pos - rewinds[i]) if i < len(rewinds) else pos
            batch = changes[start : pos + cuts[i % len(cuts)]]
            applied.update(sink.apply(batch, {(TOPIC, 0): batch[-1].offset}).applied)
            pos, i = batch[-1].offset + 1, i + 1
        rows = sink.read_rows(TABLE)
        if changes:
            assert sink.positions() == {(TOPIC, 0): len(changes) - 1}
    assert sum(applied.values()) == len(changes)
    assert _normalise(rows) == _normalise(list(model.values()))


def test_schema_growth_types_and_poison(postgres_db: str) -> None:
    with PostgresSink(PostgresConfig(postgres_db)) as sink:
        first = _event("c", None, {"id": 1, "a": "x", "n": 1.5}, 0)
        second = _event("c", None, {"id": 2, "a": "y", "n": 2.5, "b": {"k": [1]}, "flag": True}, 1)
        sink.apply([Consumed(TOPIC, 0, 0, first, ("id",))], {(TOPIC, 0): 0})
        sink.apply([Consumed(TOPIC, 0, 1, second, ("id",))], {(TOPIC, 0): 1})
        poison = Consumed(TOPIC, 0, 2, _event("c", None, {"id": 3, "a": "z", "n": 1.0, "big": 2**70}, 2), ("id",))
        with pytest.raises(EventError):
            sink.apply([poison], {(TOPIC, 0): 2})
        assert sink.positions() == {(TOPIC, 0): 1}
        rows: list[dict[str, Any]] = sorted(sink.read_rows(TABLE), key=lambda r: r["id"])
    assert rows == [{"id": 1, "a": "x", "n": 1.5, "b": None, "flag": None},
                    {"id": 2, "a": "y", "n": 2.5, "b": {"k": [1]}, "flag": True}]


def test_column_first_seen_null_gets_the_type_of_its_first_value(postgres_db: str) -> None:
    changes = [Consumed(TOPIC, 0, i, _event("c", None, row, i), ("id",)) for i, row in enumerate([
        {"id": 1, "n": None}, {"id": 2, "n": 7, "j": None}, {"id": 3, "n": 8, "j": None, "f": None}])]
    with PostgresSink(PostgresConfig(postgres_db)) as sink:
        for change in changes:
            sink.apply([change], {(TOPIC, 0): change.offset})
    later = Consumed(TOPIC, 0, 3, _event("c", None, {"id": 4, "n": 9, "j": {"a": [1]}, "f": 2.5}, 3), ("id",))
    with PostgresSink(PostgresConfig(postgres_db)) as sink:  # a new process: untyped columns come from comments
        sink.apply([later], {(TOPIC, 0): 3})
        rows = sorted(sink.read_rows(TABLE), key=lambda r: r["id"])
        types = dict(sink.conn.execute("SELECT column_name, data_type FROM information_schema.columns "
                                       "WHERE table_name = 't'").fetchall())
    assert types == {"id": "bigint", "n": "bigint", "j": "jsonb", "f": "double precision"}
    assert rows[-1] == {"id": 4, "n": 9, "j": {"a": [1]}, "f": 2.5}
    assert rows[1] == {"id": 2, "n": 7, "j": None, "f": None}


def test_text_keys_and_keyless_rows_with_nulls(postgres_db: str) -> None:
    """Delete-by-key binds typed arrays (a list of str alone is `unknown[]` to PostgreSQL), and a
    keyless table keeps identical rows and deletes a row holding a NULL."""
    code = [Consumed(TOPIC, 0, i, _event(op, before, after, i), ("code",)) for i, (op, before, after) in enumerate([
        ("c", None, {"code": "A-1", "n": 1}), ("c", None, {"code": "B-2", "n": 2}),
        ("u", {"code": "A-1", "n": 1}, {"code": "A-1", "n": 10}), ("d", {"code": "B-2", "n": 2}, None)])]
    twin, holey = {"a": "x", "n": 1}, {"a": "y", "n": None}
    keyless = [Consumed("icetide.sales.log", 0, i, ChangeEvent(op, before, after, Source(  # type: ignore[arg-type]
        catalog="lake", db="sales", table="log", snapshot_id=9, sequence_number=1, commit_ts_ms=1, ordinal=i)), ())
        for i, (op, before, after) in enumerate([("c", None, twin), ("c", None, twin), ("c", None, holey),
                                                  ("d", twin, None), ("d", holey, None)])]
    with PostgresSink(PostgresConfig(postgres_db)) as sink:
        sink.apply(code[:2], {(TOPIC, 0): 1})
        sink.apply(code[2:], {(TOPIC, 0): 3})
        sink.apply(keyless, {("icetide.sales.log", 0): 4})
        assert sink.read_rows(TABLE) == [{"code": "A-1", "n": 10}]
        assert sink.read_rows(("sales", "log")) == [twin]


def _open_at_once(dsn: str, n: int) -> list[str]:
    """Open `n` sinks on `dsn` from `n` threads released together; the errors they raised."""
    import threading

    gate, errors = threading.Barrier(n), []

    def open_one() -> None:
        gate.wait()
        try:
            with PostgresSink(PostgresConfig(dsn)) as sink:
                assert sink.positions() == {}
        except Exception as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=open_one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def test_workers_opening_a_fresh_database_at_once_all_open(postgres_dsn: str) -> None:
    """`cdc apply --workers N` starts N sinks on one database together: the bookkeeping tables' `CREATE TABLE
    IF NOT EXISTS` races on PostgreSQL's catalog (a unique violation) unless it runs under the apply lock."""
    for _ in range(5):
        assert _open_at_once(create_database(postgres_dsn), 6) == []
