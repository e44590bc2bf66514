"""The sales table `vendas` and its deterministic data generator (roadmap iteration 1).

Rows are computed by Spark itself from `spark.range` and `xxhash64(sale_id, seed, k)`, so every
column is a pure function of (seed, sale_id): the same seed gives the same rows however Spark
partitions the work, and 10M rows never pass through Python. Each call appends one snapshot with
sale ids continuing after the table's current maximum.
"""

from __future__ import annotations

import calendar
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from sqlglot import exp, parse_one

from batch.common import DIALECT, metadata_table, render

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

REGIONS = ("North", "South", "East", "West")
CHANNELS = ("online", "store", "partner")
PRODUCTS = 100  # PROD_001 … PROD_100
CUSTOMERS = 50_000
YEAR = 2025

# The table's columns, in order. sale_id is the row key (Iceberg identifier field).
VENDAS_DDL = """
CREATE TABLE IF NOT EXISTS t (
  sale_id BIGINT NOT NULL,
  sale_ts TIMESTAMP,
  year INT,
  month INT,
  region STRING,
  product STRING,
  customer_email STRING,
  price DECIMAL(10, 2),
  quantity INT,
  channel STRING,
  amount DECIMAL(12, 2)
) USING iceberg
PARTITIONED BY (year, month)
TBLPROPERTIES ('format-version' = '2', 'write.distribution-mode' = 'hash')
"""


@dataclass
class GenerateResult:
    """What `batch generate` reports."""

    table: str
    rows: int
    first_sale_id: int
    last_sale_id: int
    seed: int
    seconds: float
    rows_per_s: float
    snapshot_id: int | None
    created: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ensure_namespace(spark: SparkSession, table: exp.Table) -> None:
    """CREATE NAMESPACE IF NOT EXISTS for the table's catalog.namespace."""
    namespace = exp.Table(this=exp.to_identifier(table.db), db=exp.to_identifier(table.catalog))
    spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {render(namespace)}")


def table_exists(spark: SparkSession, table: exp.Table) -> bool:
    """True if the catalog has the table (asks the catalog, reads no data)."""
    return bool(spark.catalog.tableExists(f"{table.catalog}.{table.db}.{table.name}"))


def create_vendas(spark: SparkSession, table: exp.Table) -> bool:
    """Create the sales table (and namespace) if missing, with sale_id as identifier field."""
    if table_exists(spark, table):
        return False
    ensure_namespace(spark, table)
    ddl = parse_one(VENDAS_DDL, read=DIALECT)
    ddl_table = ddl.find(exp.Table)
    assert ddl_table is not None
    ddl_table.replace(table.copy())
    spark.sql(render(ddl))
    spark.sql(f"ALTER TABLE {render(table)} SET IDENTIFIER FIELDS sale_id")
    return True


def _pick(hashed: Column, choices: tuple[str, ...]) -> Column:
    """A column choosing one of `choices` by a hash value (uniformly)."""
    from pyspark.sql import functions as F

    index = F.pmod(hashed, F.lit(len(choices))).cast("int") + F.lit(1)
    return F.element_at(F.array(*[F.lit(c) for c in choices]), index)


def vendas_rows(spark: SparkSession, rows: int, first_id: int, seed: int) -> DataFrame:
    """`rows` sales rows with ids first_id…first_id+rows-1; every value derived from (seed, id).

    Two 64-bit hashes per row are sliced into bit fields (cheap shifts and masks), and strings are
    built with concat/lpad rather than format_string (Java's String.format is slow per row).
    """
    from pyspark.sql import functions as F

    def bits(column: str, shift: int, width: int, below: int) -> Column:
        """A uniform integer in [0, below) from `width` bits of a hash column: (bits × below) >> width."""
        raw = F.shiftright(F.col(column), shift).bitwiseAND(F.lit((1 << width) - 1))
        return F.shiftright(raw * F.lit(below), width)

    start = calendar.timegm((YEAR, 1, 1, 0, 0, 0))  # UTC midnight, January 1st
    seconds_in_year = 365 * 24 * 3600
    hashed = spark.range(first_id, first_id + rows).select(
        F.col("id").alias("sale_id"),
        F.xxhash64(F.col("id"), F.lit(seed)).alias("_a"),
        F.xxhash64(F.col("id"), F.lit(seed), F.lit(1)).alias("_b"),
    )
    ts = F.timestamp_seconds(F.lit(start) + bits("_a", 0, 25, seconds_in_year))
    # Skewed products: the square of a uniform value favours low product numbers (top sellers).
    uniform = bits("_b", 0, 20, 1 << 20) / F.lit(float(1 << 20))
    product_no = (uniform * uniform * F.lit(PRODUCTS)).cast("int") + F.lit(1)
    cents = bits("_b", 20, 17, 99_900) + F.lit(100)
    quantity = (bits("_a", 35, 8, 20) + F.lit(1)).cast("int")
    customer = bits("_a", 43, 16, CUSTOMERS)
    staged = hashed.select(
        F.col("sale_id"),
        ts.alias("sale_ts"),
        _pick(bits("_a", 25, 2, 4), REGIONS).alias("region"),
        F.concat(F.lit("PROD_"), F.lpad(product_no.cast("string"), 3, "0")).alias("product"),
        F.concat(F.lit("customer"), F.lpad(customer.cast("string"), 5, "0"), F.lit("@example.com"))
        .alias("customer_email"),
        (cents.cast("decimal(12,0)") / F.lit(100)).cast("decimal(10,2)").alias("price"),
        quantity.alias("quantity"),
        _pick(bits("_a", 27, 8, 3), CHANNELS).alias("channel"),
    )
    frame = staged.select(
        "sale_id", "sale_ts", F.year("sale_ts").alias("year"), F.month("sale_ts").alias("month"),
        "region", "product", "customer_email", "price", "quantity", "channel",
        (F.col("price") * F.col("quantity")).cast("decimal(12,2)").alias("amount"),
    )
    return frame


def current_max_id(spark: SparkSession, table: exp.Table) -> int:
    """The table's largest sale_id, 0 when empty (Iceberg answers max() from file statistics)."""
    row = spark.sql(f"SELECT max(sale_id) AS m FROM {render(table)}").first()
    return int(row["m"]) if row is not None and row["m"] is not None else 0


def latest_snapshot_id(spark: SparkSession, table: exp.Table) -> int | None:
    """The id of the table's current snapshot (None for a table without snapshots)."""
    rows = spark.sql(
        f"SELECT snapshot_id FROM {metadata_table(table, 'history')} "
        "WHERE is_current_ancestor ORDER BY made_current_at DESC LIMIT 1"
    ).collect()
    return int(rows[0]["snapshot_id"]) if rows else None


def generate(spark: SparkSession, table: exp.Table, rows: int, seed: int = 42) -> GenerateResult:
    """Create the table if needed and append `rows` generated rows as one snapshot."""
    created = create_vendas(spark, table)
    first_id = current_max_id(spark, table) + 1
    start = time.perf_counter()
    frame = vendas_rows(spark, rows, first_id, seed)
    frame.writeTo(render(table)).append()
    seconds = time.perf_counter() - start
    return GenerateResult(
        table=f"{table.catalog}.{table.db}.{table.name}",
        rows=rows,
        first_sale_id=first_id,
        last_sale_id=first_id + rows - 1,
        seed=seed,
        seconds=round(seconds, 3),
        rows_per_s=round(rows / seconds, 1) if seconds > 0 else 0.0,
        snapshot_id=latest_snapshot_id(spark, table),
        created=created,
    )
