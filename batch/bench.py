"""The analyst benchmark (roadmap iteration 1): ten queries, warm medians, files scanned vs total.

Queries are written against the placeholder tables `vendas` and `products`; sqlglot swaps in the
real, quoted names. Every run goes through the query analyzer, so each query reports how many data
files its scans read out of the table's total (partition pruning and min/max skipping).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlglot import exp, parse_one

from batch.common import DIALECT, render
from batch.generate import CHANNELS, PRODUCTS, ensure_namespace, table_exists
from batch.stats import analyze, table_stats

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

QUERIES: dict[str, str] = {
    "monthly_revenue": "SELECT year, month, count(*) AS sales, sum(amount) AS revenue FROM vendas "
                       "GROUP BY year, month ORDER BY year, month",
    "top_products": "SELECT product, sum(quantity) AS units FROM vendas GROUP BY product "
                    "ORDER BY units DESC LIMIT 10",
    "region_filter": "SELECT channel, sum(amount) AS revenue, avg(price) AS avg_price FROM vendas "
                     "WHERE region = 'North' GROUP BY channel",
    "one_month": "SELECT region, sum(amount) AS revenue, count(*) AS sales FROM vendas "
                 "WHERE year = 2025 AND month = 6 GROUP BY region",
    "product_join": "SELECT p.category, sum(v.amount) AS revenue, sum(v.quantity * p.unit_cost) AS cost "
                    "FROM vendas v JOIN products p ON v.product = p.product GROUP BY p.category",
    "window_top3_per_region": "SELECT region, product, revenue FROM (SELECT region, product, revenue, "
                              "row_number() OVER (PARTITION BY region ORDER BY revenue DESC) AS rn FROM "
                              "(SELECT region, product, sum(amount) AS revenue FROM vendas "
                              "GROUP BY region, product) r) ranked WHERE rn <= 3",
    "distinct_customers": "SELECT month, count(DISTINCT customer_email) AS customers FROM vendas "
                          "WHERE year = 2025 GROUP BY month",
    "time_range": "SELECT count(*) AS sales, sum(amount) AS revenue FROM vendas "
                  "WHERE sale_ts >= TIMESTAMP '2025-03-01 00:00:00' AND sale_ts < TIMESTAMP '2025-03-15 00:00:00'",
    "point_lookup": "SELECT * FROM vendas WHERE sale_id = 4242",
    "top_customers": "SELECT customer_email, sum(amount) AS spent FROM vendas GROUP BY customer_email "
                     "ORDER BY spent DESC LIMIT 10",
}


def bind(query: str, tables: dict[str, exp.Table]) -> str:
    """Replace the placeholder table names in `query` with the real (quoted) tables."""
    tree = parse_one(query, read=DIALECT)
    for node in list(tree.find_all(exp.Table)):
        real = tables.get(node.name)
        if real is not None and not node.args.get("db"):
            replacement = real.copy()
            if node.alias:
                replacement.set("alias", node.args["alias"].copy())
            node.replace(replacement)
    return render(tree)


def ensure_products(spark: SparkSession, vendas: exp.Table) -> exp.Table:
    """The product dimension (`products` beside the sales table), created once from Spark functions."""
    from pyspark.sql import functions as F

    products = exp.Table(this=exp.to_identifier("products"), db=vendas.args["db"].copy(),
                         catalog=vendas.args["catalog"].copy())
    if table_exists(spark, products):
        return products
    ensure_namespace(spark, products)
    categories = ("electronics", "home", "garden", "toys", "books")
    frame = spark.range(1, PRODUCTS + 1).select(
        F.format_string("PROD_%03d", F.col("id")).alias("product"),
        F.element_at(F.array(*[F.lit(c) for c in categories]),
                     (F.col("id") % len(categories) + 1).cast("int")).alias("category"),
        F.element_at(F.array(*[F.lit(c) for c in CHANNELS]),
                     (F.col("id") % len(CHANNELS) + 1).cast("int")).alias("preferred_channel"),
        (F.col("id") * F.lit(1.25) + F.lit(2)).cast("decimal(10,2)").alias("unit_cost"),
    )
    frame.writeTo(render(products)).using("iceberg").create()
    return products


def run_suite(spark: SparkSession, vendas: exp.Table, runs: int = 3, names: list[str] | None = None,
              on_query: Callable[[str, int, int], None] | None = None) -> dict[str, Any]:
    """Run each query once to warm up, then `runs` times; report the median and files scanned."""
    tables = {"vendas": vendas, "products": ensure_products(spark, vendas)}
    stats = table_stats(spark, vendas)
    chosen = names or list(QUERIES)
    totals: dict[str, int] = {}
    results: list[dict[str, Any]] = []
    for index, name in enumerate(chosen, start=1):
        if on_query is not None:
            on_query(name, index, len(chosen))
        sql = bind(QUERIES[name], tables)
        analyze(spark, sql, name, totals=totals)  # warm-up: JIT, metadata caches, file system cache
        reports = [analyze(spark, sql, name, totals=totals) for _ in range(runs)]
        times = [r.seconds for r in reports]
        last = reports[-1]
        results.append({
            "name": name, "sql": sql, "median_s": round(statistics.median(times), 4),
            "min_s": min(times), "max_s": max(times), "runs": runs, "rows": last.rows,
            "files_scanned": last.files_scanned, "files_total": last.files_total, "pruning": last.pruning,
        })
    medians = [r["median_s"] for r in results]
    return {
        "table": f"{vendas.db}.{vendas.name}", "records": stats.records, "data_files": stats.data_files,
        "bytes": stats.bytes, "queries": results,
        "avg_median_s": round(statistics.mean(medians), 4) if medians else None,
        "fastest": min(results, key=lambda r: r["median_s"])["name"] if results else None,
        "slowest": max(results, key=lambda r: r["median_s"])["name"] if results else None,
    }


def environment(spark: SparkSession) -> dict[str, Any]:
    """What the numbers were measured on (they mean little without it)."""
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    conf = spark.sparkContext.getConf()
    return {
        "spark": spark.version, "master": conf.get("spark.master"),
        "driver_memory": conf.get("spark.driver.memory"), "cpus": os.cpu_count(),
        "python": platform.python_version(), "load_avg_1m": round(load[0], 2),
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }

