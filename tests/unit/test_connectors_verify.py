"""`icetide cdc verify` against a real Iceberg table (pyiceberg, no JVM) and SQLite copies: a typed copy
is EQUAL; a copy built the old way (text where the source has decimal and date) is DIFFERENT, and the
output names the columns."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from connectors.sqlite import SqliteConfig, SqliteSink
from icetide.rowschema import RowSchema
from icetide.settings import load_settings
from tests.unit.test_connectors_typed import inserts

pytestmark = pytest.mark.unit

ROWS = [{"id": 1, "price": Decimal("-12.50"), "day": dt.date(2024, 2, 29), "x": float("nan")},
        {"id": 2, "price": None, "day": dt.date(2024, 3, 1), "x": 1.5}]


def _verify(state_dir: Path, db: Path) -> tuple[int, dict[str, Any], str]:
    env = {**os.environ, "ICETIDE__STACK__STATE_DIR": str(state_dir), "ICETIDE__SINK__SQLITE_PATH": str(db)}
    done = subprocess.run([sys.executable, "-m", "icetide.cli", "cdc", "verify", "--table", "sales.v", "--sink",
                           "sqlite", "--json"], env=env, capture_output=True, text=True, timeout=120)
    text = subprocess.run([sys.executable, "-m", "icetide.cli", "cdc", "verify", "--table", "sales.v", "--sink",
                           "sqlite"], env=env, capture_output=True, text=True, timeout=120).stdout
    return done.returncode, json.loads(done.stdout), text


def test_verify_compares_typed_values(tmp_path: Path) -> None:
    import pyarrow as pa
    from pyiceberg.schema import Schema
    from pyiceberg.types import DateType, DecimalType, DoubleType, LongType, NestedField

    from icetide.catalog import pyiceberg_catalog

    settings = load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(tmp_path)})
    catalog = pyiceberg_catalog(settings)
    catalog.create_namespace("sales")
    schema = Schema(NestedField(1, "id", LongType(), required=True), NestedField(2, "price", DecimalType(10, 2)),
                    NestedField(3, "day", DateType()), NestedField(4, "x", DoubleType()))
    table = catalog.create_table("sales.v", schema)
    import pyarrow.parquet as pq  # pyiceberg's own writer needs a newer pyarrow: add a Parquet file instead

    data_file = tmp_path / "rows.parquet"
    arrow_schema = pa.schema([pa.field("id", pa.int64(), nullable=False), pa.field("price", pa.decimal128(10, 2)),
                              pa.field("day", pa.date32()), pa.field("x", pa.float64())])
    pq.write_table(pa.Table.from_pylist(ROWS, schema=arrow_schema), data_file)
    table.add_files([f"file://{data_file}"])
    row_schema = RowSchema.from_iceberg(table.schema())
    topic = "icetide.sales.v"

    typed, old = tmp_path / "typed.db", tmp_path / "old.db"
    for db, schema_given in ((typed, row_schema), (old, None)):
        with SqliteSink(SqliteConfig(db)) as sink:
            sink.apply(inserts(ROWS, schema_given, topic=topic, table=("sales", "v")), {(topic, 0): 1})

    code, data, _ = _verify(tmp_path, typed)
    assert (code, data["equal"]) == (0, True)
    code, data, text = _verify(tmp_path, old)  # the JSON encodings are equal; the types are not
    assert (code, data["equal"]) == (1, False)
    assert data["downstream"]["type_mismatches"] == {"day": "2 values of type str", "price": "1 values of type str",
                                                     "x": "2 values of type str"}  # NaN first: text
    assert "downstream column price: 1 values of type str (source: decimal(10, 2))" in text and "DIFFERENT" in text
