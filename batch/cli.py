"""`icetide batch …`: lakehouse batch jobs on the configured catalog (roadmap iterations 1–2).

Each command starts the Spark session only when it runs (never for --help).
"""

from __future__ import annotations

from typing import Any

import click
from icetide.cli import emit

from batch.common import progress, spark_for, table_ref


@click.group()
def batch() -> None:
    """Lakehouse batch jobs: generate, bench, merge, time travel, schema evolution."""


@batch.command()
@click.option("--table", "table_name", default="sales.vendas", show_default=True,
              help="Target table (namespace.table); created if missing.")
@click.option("--rows", type=click.IntRange(min=1), required=True, help="Rows to append.")
@click.option("--seed", type=int, default=42, show_default=True, help="Same seed + same ids → same rows.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def generate(app: Any, table_name: str, rows: int, seed: int, as_json: bool) -> None:
    """Append N generated sales rows (one new snapshot; sale ids continue after the current max)."""
    from batch.generate import generate as run

    table = table_ref(app.settings, table_name)
    spark = spark_for(app.settings)
    with progress(f"generating {rows:,} rows into {table.db}.{table.name}"):
        result = run(spark, table, rows, seed)
    text = (
        f"{result.table}: wrote {result.rows:,} rows (sale_id {result.first_sale_id}…{result.last_sale_id}) "
        f"in {result.seconds:.2f} s = {result.rows_per_s:,.0f} rows/s; snapshot {result.snapshot_id}"
        + (" (table created)" if result.created else "")
    )
    emit(result.as_dict(), as_json, text)
