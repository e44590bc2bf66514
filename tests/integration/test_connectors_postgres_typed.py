"""Typed downstream tables in a real PostgreSQL: the invariants of tests/unit/test_connectors_typed.py."""

from __future__ import annotations

import datetime as dt
import struct
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.base import Consumed
from connectors.postgres import PostgresConfig, PostgresSink
from icetide.errors import DownstreamError, EventError
from icetide.events import encode_row
from icetide.rowschema import Column, RowSchema
from tests.fixtures.postgres import create_database
from tests.unit.test_connectors_typed import (
    OLD,
    SCHEMA,
    TABLE,
    TOPIC,
    V0,
    V1,
    V2,
    assert_rows_equal,
    event,
    inserts,
    row_values,
)

pytestmark = pytest.mark.integration

PG_TYPES = {"id": "bigint", "c_boolean": "boolean", "c_int": "integer", "c_long": "bigint", "c_float": "real",
            "c_double": "double precision", "c_decimal_9__2": "numeric(9,2)", "c_decimal_38__10": "numeric(38,10)",
            "c_date": "date", "c_time": "time(6) without time zone", "c_timestamp": "timestamp(6) without time zone",
            "c_timestamptz": "timestamp with time zone", "c_string": "text", "c_uuid": "uuid", "c_binary": "bytea",
            "c_fixed_4": "bytea", "c_struct_a__int__b__string": "jsonb", "c_list_long": "jsonb"}


def declared(sink: PostgresSink) -> dict[str, str]:
    return dict(sink.conn.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a WHERE a.attrelid = "
        "'sales.typed'::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum").fetchall())


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(values=st.lists(row_values, min_size=1, max_size=6), cut=st.integers(1, 6))
def test_rows_of_every_type_read_back_equal(postgres_dsn: str, values: list[dict[str, Any]], cut: int) -> None:
    rows = [{"id": 0}, *({"id": i + 1, **v} for i, v in enumerate(values))]
    changes = inserts(rows)
    with PostgresSink(PostgresConfig(create_database(postgres_dsn))) as sink:
        for start in range(0, len(changes), cut):
            batch = changes[start : start + cut]
            sink.apply(batch, {(TOPIC, 0): batch[-1].offset})
        assert_rows_equal(sink.read_rows(TABLE), rows)
        updated = {**rows[-1], "c_string": "changed"}
        sink.apply([Consumed(TOPIC, 0, len(changes), event("u", encode_row(rows[-1]), encode_row(updated),
                                                          len(changes)), ("id",), SCHEMA)], {(TOPIC, 0): len(changes)})
        assert_rows_equal(sink.read_rows(TABLE), [*rows[:-1], updated])
        assert declared(sink) == PG_TYPES
        types = dict(sink.conn.execute("SELECT column_name, data_type FROM information_schema.columns "
                                       "WHERE table_schema = 'sales' AND table_name = 'typed'").fetchall())
        assert types["c_decimal_9__2"] == "numeric" and types["c_timestamptz"] == "timestamp with time zone"


def test_nan_first_value_and_decimals(postgres_db: str) -> None:
    """Bug 3: the first value NaN made a double column text; decimals and dates were text."""
    schema = RowSchema((Column("id", "long", False, 1), Column("x", "double", True, 2),
                        Column("price", "decimal(10, 2)", True, 3), Column("day", "date", True, 4)))
    rows = [{"id": 1, "x": float("nan"), "price": Decimal("-0.01"), "day": dt.date(2024, 2, 29)},
            {"id": 2, "x": 2.5, "price": Decimal("12345678.90"), "day": None}]
    with PostgresSink(PostgresConfig(postgres_db)) as sink:
        sink.apply(inserts(rows, schema), {(TOPIC, 0): 1})
        assert_rows_equal(sink.read_rows(TABLE), rows, schema)
        assert declared(sink) == {"id": "bigint", "x": "double precision", "price": "numeric(10,2)", "day": "date"}


def test_widen_rename_drop_and_add_again(postgres_db: str) -> None:
    f32 = struct.unpack("<f", struct.pack("<f", 0.1))[0]
    r0 = {"id": 1, "n": 2**31 - 1, "f": f32, "price": Decimal("-9999999.99"), "old": "a", "gone": "g"}
    r1 = {"id": 2, "n": 2**40, "f": 0.1, "price": Decimal("9999999999.99"), "new": "b"}
    r2 = {"id": 3, "n": 1, "f": 1.0, "price": Decimal("0.00"), "new": "c", "gone": dt.date(2024, 1, 1)}
    with PostgresSink(PostgresConfig(postgres_db)) as sink:
        sink.apply(inserts([r0], V0), {(TOPIC, 0): 0})
        assert declared(sink)["n"] == "integer" and declared(sink)["f"] == "real"
        update = Consumed(TOPIC, 0, 1, event("u", encode_row(r0), encode_row({**r0, "old": "a2"}), 1), ("id",), V0)
        sink.apply([update, *inserts([r1], V1, start=2)], {(TOPIC, 0): 2})
        assert declared(sink) == {"id": "bigint", "n": "bigint", "f": "double precision", "price": "numeric(12,2)",
                                  "new": "text", "gone": "text"}
        rows = {r["id"]: r for r in sink.read_rows(TABLE)}
        assert rows[1] == {"id": 1, "n": 2**31 - 1, "f": f32, "price": Decimal("-9999999.99"), "new": "a2",
                           "gone": "g"}
        assert rows[2] == {**r1, "gone": None}
        sink.apply(inserts([r2], V2, start=3), {(TOPIC, 0): 3})
        rows = {r["id"]: r for r in sink.read_rows(TABLE)}
        assert declared(sink) == {"id": "bigint", "n": "bigint", "f": "double precision", "price": "numeric(12,2)",
                                  "new": "text", "gone": "date", "gone__dropped_6": "text"}
    assert rows[1]["gone__dropped_6"] == "g" and rows[1]["gone"] is None
    assert rows[3] == {**r2, "gone__dropped_6": None}


def test_a_table_made_by_an_older_version_is_upgraded_in_place(postgres_db: str) -> None:
    old_rows = [{"id": 1, "price": None, "x": float("nan"), "day": dt.date(2024, 1, 2),
                 "at": dt.datetime(2024, 1, 1, 1, tzinfo=dt.UTC), "raw": b"\x00\xff", "later": None},
                {"id": 2, "price": Decimal("-3.10"), "x": 1.25, "day": None, "at": None, "raw": None, "later": None}]
    with PostgresSink(PostgresConfig(postgres_db)) as sink:  # the old code: no schema, types from first values
        sink.apply(inserts(old_rows, None), {(TOPIC, 0): 1})
        assert declared(sink)["x"] == "text" and declared(sink)["later"] == "text"  # NaN first; NULL first
    new = {"id": 3, "price": Decimal("7.00"), "x": 2.0, "day": dt.date(2025, 5, 5), "at": None, "raw": b"z", "later": 9}
    with PostgresSink(PostgresConfig(postgres_db)) as sink:
        sink.apply(inserts([new], OLD, start=2), {(TOPIC, 0): 2})
        assert_rows_equal(sink.read_rows(TABLE), [*old_rows, new], OLD)
        assert declared(sink) == {"id": "bigint", "price": "numeric(10,2)", "x": "double precision", "day": "date",
                                  "at": "timestamp with time zone", "raw": "bytea", "later": "integer"}
        assert sink.conn.execute("SELECT col_description('sales.typed'::regclass, 7)").fetchone() == (None,)
        assert sink._untyped_columns(TABLE) == set()  # the all-NULL column's marker went with the upgrade


def test_an_old_column_that_does_not_convert_stops_with_what_to_do(postgres_db: str) -> None:
    with PostgresSink(PostgresConfig(postgres_db)) as sink:
        sink.apply(inserts([{"id": 1, "price": "n/a"}], None), {(TOPIC, 0): 0})
    schema = RowSchema((Column("id", "long", False, 1), Column("price", "decimal(10, 2)", True, 2)))
    with PostgresSink(PostgresConfig(postgres_db)) as sink:
        with pytest.raises(DownstreamError) as failed:
            sink.apply(inserts([{"id": 2, "price": Decimal("1.00")}], schema, start=1), {(TOPIC, 0): 1})
        assert not isinstance(failed.value, EventError)
        message = str(failed.value)
        assert "column price" in message and "n/a" in message and "numeric(10,2)" in message
        assert 'DROP TABLE "sales"."typed"' in message and f"topic = '{TOPIC}'" in message
        assert sink.positions() == {(TOPIC, 0): 0} and sink.read_rows(TABLE) == [{"id": 1, "price": "n/a"}]
        assert declared(sink) == {"id": "bigint", "price": "text"}


def test_typed_composite_keys_delete_by_typed_arrays(postgres_db: str) -> None:
    """Delete-by-key binds one array per key column, cast to the column's type (uuid[], numeric(p,s)[],
    timestamp with time zone[], time(6) without time zone[], date[]); both timestamp spellings are one key."""
    import uuid

    schema = RowSchema((Column("at", "timestamptz", False, 1), Column("price", "decimal(6, 2)", False, 2),
                        Column("u", "uuid", False, 3), Column("t", "time", False, 4), Column("day", "date", False, 5),
                        Column("n", "int", True, 6)))
    keys = ("at", "price", "u", "t", "day")
    row = {"at": "2024-01-01 01:00:00.000000Z", "price": "-1.50", "u": str(uuid.UUID(int=1)),
           "t": "12:00:00.000001", "day": "2024-02-29", "n": 1}
    iso = {**row, "at": "2024-01-01T01:00:00Z"}
    other = {**row, "u": str(uuid.UUID(int=2)), "n": 5}
    changes = [Consumed(TOPIC, 0, 0, event("c", None, row, 0), keys, schema),
               Consumed(TOPIC, 0, 1, event("c", None, other, 1), keys, schema)]
    with PostgresSink(PostgresConfig(postgres_db)) as sink:
        sink.apply(changes, {(TOPIC, 0): 1})
        sink.apply([Consumed(TOPIC, 0, 2, event("u", iso, {**iso, "n": 2}, 2), keys, schema)], {(TOPIC, 0): 2})
        assert sorted(r["n"] for r in sink.read_rows(TABLE)) == [2, 5]
        sink.apply([Consumed(TOPIC, 0, 3, event("d", other, None, 3), keys, schema)], {(TOPIC, 0): 3})
        rows = sink.read_rows(TABLE)
    assert [r["n"] for r in rows] == [2]
    assert rows[0]["at"] == dt.datetime(2024, 1, 1, 1, tzinfo=dt.UTC) and rows[0]["t"] == dt.time(12, 0, 0, 1)
