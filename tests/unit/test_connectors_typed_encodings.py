"""Each encoding lands typed: JSON (schema from the job's schema-change record), connect-json and Avro
(schema from the decoder) decode through `cdc apply`'s decoder and apply into SQLite, and every row of
every Iceberg type reads back equal to the typed source row, with the same declared types."""

from __future__ import annotations

import sqlite3
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.records import AvroDecoder, decode
from connectors.sqlite import SqliteConfig, SqliteSink
from connectors.types import sqlite_type
from icetide.events import ChangeEvent, encode_row
from icetide.rowschema import RowSchema
from streaming.poller import schema_change
from tests.unit.test_connectors_typed import same
from tests.unit.test_encodings_round_trip import REGISTRY, ROWS, SCHEMA, SOURCE, _encodings

pytestmark = pytest.mark.unit


class _Changelog:
    namespace, name, key_fields = "sales", "tudo", ["id"]

    def schema_by_id(self, schema_id: int) -> Any:
        return SCHEMA


def _schema_change_row_schema() -> RowSchema:
    """What the consumer attaches to plain JSON events: the job's own schema-change record, parsed."""
    import json

    event = ChangeEvent("c", None, {"id": 1}, SOURCE)
    record = schema_change(_Changelog(), event, None, "icetide.schema-changes")  # type: ignore[arg-type]
    return RowSchema.from_schema_change(json.loads(record.value or b""))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(ROWS, min_size=1, max_size=4, unique_by=lambda r: r["id"]))
def test_every_encoding_lands_typed(tmp_path: Path, rows: list[dict[str, Any]]) -> None:
    from_topic = _schema_change_row_schema()
    assert from_topic.columns == RowSchema.from_iceberg(SCHEMA).columns
    expected = RowSchema.from_iceberg(SCHEMA)
    for name in ("json", "connect-json", "avro"):
        db = tmp_path / f"{uuid.uuid4().hex}.db"
        with SqliteSink(SqliteConfig(db)) as sink:
            for offset, row in enumerate(rows):
                event = ChangeEvent("c", None, encode_row(row), replace(SOURCE, ordinal=offset), ts_ms=1)
                change = decode(_encodings(event)[name], AvroDecoder(REGISTRY.__getitem__))
                assert change is not None
                if name == "json":
                    assert change.schema is None
                    change = change.__class__(change.topic, change.partition, offset, change.event,
                                              change.key_fields, from_topic)
                else:
                    change = change.__class__(change.topic, change.partition, offset, change.event,
                                              change.key_fields, change.schema)
                sink.apply([change], {(change.topic, 0): offset})
            got = {r["id"]: r for r in sink.read_rows(("sales", "tudo"))}
        with sqlite3.connect(db) as conn:
            declared = {str(n): str(t) for _, n, t, *_ in conn.execute("PRAGMA table_info(sales__tudo)")}
        assert declared == {c.name: sqlite_type(c.type) for c in expected.columns}, name
        for row in rows:
            for column in expected.columns:
                assert same(column.type, row[column.name], got[row["id"]][column.name]), (name, column.name)
