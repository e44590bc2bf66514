"""The sink's apply logic against SQLite: net effect per key, duplicates skipped, schema growth."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.base import Consumed
from connectors.sqlite import SqliteConfig, SqliteSink
from icetide.errors import EventError
from icetide.events import ChangeEvent, Source

pytestmark = pytest.mark.unit

TOPIC = "icetide.sales.t"
TABLE = ("sales", "t")


def _event(op: str, before: dict[str, Any] | None, after: dict[str, Any] | None, seq: int) -> ChangeEvent:
    source = Source(catalog="lake", db=TABLE[0], table=TABLE[1], snapshot_id=1000 + seq, sequence_number=seq,
                    commit_ts_ms=1_700_000_000_000, ordinal=0)
    return ChangeEvent(op=op, before=before, after=after, source=source)  # type: ignore[arg-type]


# One step: (key, None) deletes the key if present; (key, value) upserts it (extra column sometimes).
steps = st.lists(st.tuples(st.integers(0, 6), st.one_of(st.none(), st.integers(-5, 5)), st.booleans()),
                 min_size=1, max_size=60)


def _changes(plan: list[tuple[int, int | None, bool]], keyed: bool = True) -> tuple[list[Consumed], dict]:
    model: dict[int, dict[str, Any]] = {}
    out: list[Consumed] = []
    for key, value, extra in plan:
        if value is None:
            if key not in model:
                continue
            event = _event("d", model.pop(key), None, len(out))
        else:
            row: dict[str, Any] = {"id": key, "v": value, "name": f"n{value}", "ok": value > 0}
            if extra:
                row["extra"] = value * 1.5
            event = _event("u" if key in model else "c", model.get(key), row, len(out))
            model[key] = row
        out.append(Consumed(TOPIC, 0, len(out), event, ("id",) if keyed else ()))
    return out, model


def _normalise(rows: list[dict[str, Any]]) -> list[tuple[tuple[str, Any], ...]]:
    return sorted(tuple(sorted((k, v) for k, v in row.items() if v is not None)) for row in rows)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=steps, cuts=st.lists(st.integers(1, 15), min_size=1, max_size=20), rewinds=st.lists(st.integers(0, 10)),
       keyed=st.booleans())
def test_batches_with_redelivery_equal_the_model(tmp_path: Path, plan: list, cuts: list[int], rewinds: list[int],
                                                 keyed: bool) -> None:
    changes, model = _changes(plan, keyed)
    db = tmp_path / f"{uuid.uuid4().hex}.db"
    applied: Counter[tuple[str, str]] = Counter()
    with SqliteSink(SqliteConfig(db)) as sink:
        pos, i = 0, 0
        while pos < len(changes):
            size = cuts[i % len(cuts)]
            start = pos
            if i < len(rewinds):  # re-deliver from an earlier offset than the stored one
                start = max(0, pos - rewinds[i])
            batch = changes[start : pos + size]
            result = sink.apply(batch, {(TOPIC, 0): batch[-1].offset})
            applied.update(result.applied)
            pos = batch[-1].offset + 1
            i += 1
        if changes:
            sink.apply(changes, {(TOPIC, 0): changes[-1].offset})  # a full replay is a no-op
            assert sink.positions() == {(TOPIC, 0): len(changes) - 1}
        rows = sink.read_rows(TABLE)
    assert sum(applied.values()) == len(changes), "every event applied exactly once"
    assert _normalise(rows) == _normalise(list(model.values()))


def test_new_column_is_added_and_old_rows_read_null(tmp_path: Path) -> None:
    with SqliteSink(SqliteConfig(tmp_path / "d.db")) as sink:
        first = _event("c", None, {"id": 1, "a": "x"}, 0)
        second = _event("c", None, {"id": 2, "a": "y", "b": {"nested": [1, 2]}, "flag": True}, 1)
        sink.apply([Consumed(TOPIC, 0, 0, first, ("id",))], {(TOPIC, 0): 0})
        sink.apply([Consumed(TOPIC, 0, 1, second, ("id",))], {(TOPIC, 0): 1})
        rows = sorted(sink.read_rows(TABLE), key=lambda r: r["id"])
    assert rows == [{"id": 1, "a": "x", "b": None, "flag": None},
                    {"id": 2, "a": "y", "b": {"nested": [1, 2]}, "flag": True}]


def test_failed_batch_leaves_rows_and_positions_untouched(tmp_path: Path) -> None:
    with SqliteSink(SqliteConfig(tmp_path / "d.db")) as sink:
        good = Consumed(TOPIC, 0, 0, _event("c", None, {"id": 1, "a": "x"}, 0), ("id",))
        sink.apply([good], {(TOPIC, 0): 0})
        ok = Consumed(TOPIC, 0, 1, _event("c", None, {"id": 2, "a": "y"}, 1), ("id",))
        too_big = Consumed(TOPIC, 0, 2, _event("c", None, {"id": 3, "a": 2**70}, 2), ("id",))
        with pytest.raises(EventError):
            sink.apply([ok, too_big], {(TOPIC, 0): 2})
        assert sink.positions() == {(TOPIC, 0): 0}
        assert [r["id"] for r in sink.read_rows(TABLE)] == [1]
        sink.apply([ok], {(TOPIC, 0): 2})  # the poison one is skipped by its position
        assert sorted(r["id"] for r in sink.read_rows(TABLE)) == [1, 2]


def test_identifiers_are_quoted_not_pasted(tmp_path: Path) -> None:
    evil = 'x"); DROP TABLE "_icetide_positions'
    with SqliteSink(SqliteConfig(tmp_path / "d.db")) as sink:
        event = _event("c", None, {"id": 1, evil: "'; --"}, 0)
        sink.apply([Consumed(TOPIC, 0, 0, event, ("id",))], {(TOPIC, 0): 0})
        assert sink.read_rows(TABLE) == [{"id": 1, evil: "'; --"}]
        assert sink.positions() == {(TOPIC, 0): 0}


def test_column_first_seen_null_keeps_later_numbers(tmp_path: Path) -> None:
    with SqliteSink(SqliteConfig(tmp_path / "d.db")) as sink:
        first = Consumed(TOPIC, 0, 0, _event("c", None, {"id": 1, "n": None}, 0), ("id",))
        second = Consumed(TOPIC, 0, 1, _event("c", None, {"id": 2, "n": 7, "m": None}, 1), ("id",))
        third = Consumed(TOPIC, 0, 2, _event("c", None, {"id": 3, "n": 8.5, "m": 3}, 2), ("id",))
        for change in (first, second, third):
            sink.apply([change], {(TOPIC, 0): change.offset})
        rows = sorted(sink.read_rows(TABLE), key=lambda r: r["id"])
    assert rows == [{"id": 1, "n": None, "m": None}, {"id": 2, "n": 7, "m": None}, {"id": 3, "n": 8.5, "m": 3}]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=steps, cuts=st.lists(st.integers(1, 15), min_size=1, max_size=20),
       replays=st.lists(st.tuples(st.integers(0, 80), st.integers(0, 30)), max_size=4), keyed=st.booleans())
def test_events_republished_at_new_offsets_apply_once(tmp_path: Path, plan: list, cuts: list[int],
                                                      replays: list[tuple[int, int]], keyed: bool) -> None:
    """An at-least-once producer restarted from a checkpoint re-publishes a stretch of events at new
    offsets; the sink recognises them by their event position, so even a keyless table (where a
    second insert would leave a duplicate row) ends equal to the model."""
    changes, model = _changes(plan, keyed)
    events = [c.event for c in changes]
    published: list[ChangeEvent] = []
    done = 0
    for at, back in sorted(replays):  # the producer crashed after `at` events, resumed `back` earlier
        at = min(at, len(events))
        published += events[done:at]
        done = max(0, at - back)
    published += events[done:]
    stream = [Consumed(TOPIC, 0, offset, event, ("id",) if keyed else ()) for offset, event in enumerate(published)]
    applied = replayed = 0
    with SqliteSink(SqliteConfig(tmp_path / f"{uuid.uuid4().hex}.db")) as sink:
        pos, i = 0, 0
        while pos < len(stream):
            batch = stream[pos : pos + cuts[i % len(cuts)]]
            result = sink.apply(batch, {(TOPIC, 0): batch[-1].offset})
            applied, replayed = applied + result.total, replayed + result.replayed
            pos, i = pos + len(batch), i + 1
        rows = sink.read_rows(TABLE)
    assert applied == len(events), "every distinct event applied exactly once"
    assert replayed == len(published) - len(events)
    assert _normalise(rows) == _normalise(list(model.values()))


def test_positions_table_of_an_older_version_is_upgraded(tmp_path: Path) -> None:
    import sqlite3

    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.execute('CREATE TABLE "_icetide_positions" (topic TEXT NOT NULL, kafka_partition INTEGER NOT NULL, '
                     "applied_offset INTEGER NOT NULL, PRIMARY KEY (topic, kafka_partition))")
        conn.execute("INSERT INTO _icetide_positions VALUES (?, 0, 4)", (TOPIC,))
    with SqliteSink(SqliteConfig(db)) as sink:
        assert sink.positions() == {(TOPIC, 0): 4}
        result = sink.apply([Consumed(TOPIC, 0, 5, _event("c", None, {"id": 1}, 5), ("id",))], {(TOPIC, 0): 5})
        assert result.total == 1 and sink.positions() == {(TOPIC, 0): 5}
