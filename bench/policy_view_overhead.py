"""Benchmark: query time through a secure view vs the same query on the base table (Spark).

Builds `lake.bench.vendas` (default 1M rows) in a fresh state directory, applies the example
policy to it, and times three queries (median of --repeat runs, after a warm-up; the variants of a
query interleaved round by round):
- admin view (filter TRUE, no masks) vs base table: the pure cost of the view (goal ≤ 5 %);
- analyst view (region filter + masks) vs the base table with the same region filter.
Results must be equal for the admin view; prints JSON.

    .venv/bin/python bench/policy_view_overhead.py [--rows 1000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlglot
from sqlglot import exp

from icetide.settings import load_settings
from icetide.spark import spark_session
from policies.apply import apply_policy
from policies.compiler import compile_policy
from policies.loader import parse_policy
from policies.schemas import CatalogSchemaProvider
from policies.validate import check_policy

EXAMPLE = Path(__file__).resolve().parents[1] / "policies" / "examples" / "vendas.yaml"
QUERIES = {
    "group_by_region": "SELECT region, SUM(price) AS total, COUNT(*) AS n FROM T GROUP BY region ORDER BY region",
    "partition_filter": "SELECT COUNT(*) AS n, SUM(quantity) AS q FROM T WHERE year = 2024 AND month = 6",
    "top_products": "SELECT product, MAX(quantity) AS q, AVG(price) AS p FROM T GROUP BY product ORDER BY product",
}


def on(template: str, table: exp.Table, extra: exp.Expression | None = None) -> str:
    """A query template with `T` replaced by `table` (and an extra WHERE condition)."""
    tree = sqlglot.parse_one(template, read="spark")
    for node in list(tree.find_all(exp.Table)):
        node.replace(table.copy())
    if extra is not None and isinstance(tree, exp.Select):
        tree = tree.where(extra)
    return tree.sql(dialect="spark")


def jvm_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the driver JVM has used: in local mode it runs every task, so the CPU a query
    costs is the difference around it — steadier than wall time on a machine shared with other work."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(spark: Any, sqls: dict[str, str], repeat: int) -> dict[str, tuple[float, float, list[Any]]]:
    """Median wall time, median CPU time and rows of each query, the queries interleaved (one run of each per
    round, the order rotated every round) so a change in the machine's load falls on all of them alike."""
    pid = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())
    rows = {name: spark.sql(sql).collect() for name, sql in sqls.items()}  # warm-up
    walls: dict[str, list[float]] = {name: [] for name in sqls}
    cpus: dict[str, list[float]] = {name: [] for name in sqls}
    names = list(sqls)
    for round_ in range(repeat):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            cpu, start = jvm_cpu_s(pid), time.perf_counter()
            rows[name] = spark.sql(sqls[name]).collect()
            walls[name].append(time.perf_counter() - start)
            cpus[name].append(jvm_cpu_s(pid) - cpu)
    return {name: (statistics.median(walls[name]), statistics.median(cpus[name]), rows[name]) for name in sqls}


def build_table(spark: Any, rows: int) -> None:
    from pyspark.sql import functions as F

    spark.sql(exp.Create(this=exp.table_("bench", db="lake"), kind="SCHEMA", exists=True).sql(dialect="spark"))
    i = F.col("id")
    df = spark.range(rows).select(
        i.alias("sale_id"),
        F.make_timestamp_ntz(2023 + i % 3, 1 + i % 12, 1 + i % 28, i % 24, i % 60, F.lit(0)).alias("sale_ts"),
        (2023 + i % 3).cast("int").alias("year"), (1 + i % 12).cast("int").alias("month"),
        F.element_at(F.array(*[F.lit(r) for r in ("North", "South", "East", "West")]), (i % 4 + 1).cast("int"))
        .alias("region"),
        F.concat(F.lit("P"), (i % 50).cast("string")).alias("product"),
        F.concat(F.lit("c"), i.cast("string"), F.lit("@mail.example")).alias("customer_email"),
        ((i % 100000) / 100 + 1).cast("decimal(10,2)").alias("price"),
        (i % 10 + 1).cast("int").alias("quantity"),
    )
    df.writeTo("lake.bench.vendas").using("iceberg").partitionedBy("year", "month").createOrReplace()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="icetide-bench-"))
    settings = load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(state)})
    spark = spark_session(settings)
    start = time.perf_counter()
    build_table(spark, args.rows)
    build_s = time.perf_counter() - start
    env = {"ICETIDE_POLICY_KEY_K1": secrets.token_hex(16)}
    text = EXAMPLE.read_text().replace("sales.vendas", "bench.vendas")
    compiled = compile_policy(check_policy(parse_policy(text, str(EXAMPLE)), CatalogSchemaProvider(settings)), env)
    apply_policy(spark, compiled, state / "policies" / "applied.json")
    base = exp.table_("vendas", db="bench", catalog="lake")
    admin = exp.table_("vendas", db="sec_carla", catalog="lake")
    analyst = exp.table_("vendas", db="sec_ana", catalog="lake")
    north = exp.EQ(this=exp.column("region"), expression=exp.Literal.string("North"))
    results: dict[str, Any] = {}
    for name, template in QUERIES.items():
        runs = timed(spark, {"base": on(template, base), "admin": on(template, admin),
                             "north": on(template, base, north), "ana": on(template, analyst)}, args.repeat)
        (base_s, base_cpu, base_rows), (admin_s, admin_cpu, admin_rows) = runs["base"], runs["admin"]
        (north_s, north_cpu, _), (ana_s, ana_cpu, _) = runs["north"], runs["ana"]
        results[name] = {
            "base_s": round(base_s, 4), "admin_view_s": round(admin_s, 4),
            "admin_overhead_pct": round(100 * (admin_s - base_s) / base_s, 1), "same_result": base_rows == admin_rows,
            "base_north_s": round(north_s, 4), "analyst_view_s": round(ana_s, 4),
            "analyst_overhead_pct": round(100 * (ana_s - north_s) / north_s, 1),
            "cpu_s": {"base": round(base_cpu, 3), "admin_view": round(admin_cpu, 3), "base_north": round(north_cpu, 3),
                      "analyst_view": round(ana_cpu, 3)},
            "admin_cpu_overhead_pct": round(100 * (admin_cpu - base_cpu) / base_cpu, 1),
            "analyst_cpu_overhead_pct": round(100 * (ana_cpu - north_cpu) / north_cpu, 1),
        }
    overheads = [r["admin_overhead_pct"] for r in results.values()]
    masked = [r["analyst_overhead_pct"] for r in results.values()]
    masked_cpu = [r["analyst_cpu_overhead_pct"] for r in results.values()]
    admin_cpus = [r["admin_cpu_overhead_pct"] for r in results.values()]
    print(json.dumps({
        "benchmark": "policy_view_overhead", "rows": args.rows, "repeat": args.repeat,
        "build_table_s": round(build_s, 2), "queries": results,
        "median_admin_overhead_pct": statistics.median(overheads), "goal_pct": 5.0,
        "meets_goal": statistics.median(overheads) <= 5.0,
        "median_analyst_overhead_pct": statistics.median(masked), "analyst_goal_pct": 10.0,
        "analyst_meets_goal": statistics.median(masked) <= 10.0,
        "median_admin_cpu_overhead_pct": statistics.median(admin_cpus),
        "median_analyst_cpu_overhead_pct": statistics.median(masked_cpu),
        "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg(), "spark_master": settings.spark.master},
    }, indent=2))
    spark.stop()
    shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
