"""Benchmark: what each mask costs an aggregation in Spark and DuckDB, beside the unmasked column in the same run.

One in-memory table of --rows rows (a decimal(10,2) price, a string e-mail, a timestamp, a product key) cached
in Spark and held by DuckDB; for every mask of `policies.masks` that fits a column, the query
`SELECT product, agg(masked column) ... GROUP BY product` is timed against the same query on the plain column
(the baseline), the variants interleaved round by round (median of --repeat). The bucket mask is also timed
as it was rendered before (through double and back to decimal) so the change stays measured.
Spark's CPU is the driver JVM's (local mode runs every task there): steadier than wall time on a shared
machine. JSON on stdout.

    .venv/bin/python bench/mask_cost.py [--rows 1000000] [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlglot import exp

from icetide import jvm
from policies.masks import render
from policies.model import MaskSpec
from policies.yamlpos import Pos

POS = Pos("bench", 1, 1)
# column, its type, the aggregate over it, the masks timed on it
CASES: dict[str, tuple[str, str, tuple[MaskSpec, ...]]] = {
    "price": ("decimal(10,2)", "SUM", (MaskSpec("bucket", POS, width=Decimal(100)), MaskSpec("null", POS))),
    "customer_email": ("string", "MAX", (MaskSpec("redact", POS), MaskSpec("show_first", POS, n=2),
                                         MaskSpec("show_last", POS, n=4))),
    "sale_ts": ("timestamp", "MAX", (MaskSpec("year_only", POS),)),
}
OLD_BUCKET = ("CAST(CAST(FLOOR(CAST(price AS DOUBLE) / CAST(100 AS DOUBLE)) AS DOUBLE) * CAST(100 AS DOUBLE) "
              "AS DECIMAL(10, 2))")


def jvm_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def variants(dialect: str) -> dict[str, str]:
    """name → the query, per dialect: `plain:<col>` baselines, `<mask>:<col>` masked."""
    out: dict[str, str] = {}
    for column, (col_type, agg, masks) in CASES.items():
        def query(expr: str, agg: str = agg) -> str:
            return f"SELECT product, {agg}(v) AS a FROM (SELECT product, {expr} AS v FROM t) GROUP BY product"

        out[f"plain:{column}"] = query(column)
        for mask in masks:
            out[f"{mask.label()}:{column}"] = query(render(mask, exp.column(column), col_type, dialect).sql(dialect))
    out["bucket(100), before:price"] = out["plain:price"].replace("price AS v", f"{OLD_BUCKET} AS v")
    return out


def interleaved(run: Callable[[str], tuple[float, float]], sqls: dict[str, str], repeat: int) -> dict[str, Any]:
    for sql in sqls.values():
        run(sql)  # warm-up
    walls: dict[str, list[float]] = {n: [] for n in sqls}
    cpus: dict[str, list[float]] = {n: [] for n in sqls}
    names = list(sqls)
    for round_ in range(repeat):
        for name in names[round_ % len(names):] + names[:round_ % len(names)]:
            wall, cpu = run(sqls[name])
            walls[name].append(wall)
            cpus[name].append(cpu)
    return {n: {"wall_s": statistics.median(walls[n]), "cpu_s": statistics.median(cpus[n])} for n in sqls}


def overheads(times: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for name, t in times.items():
        column = name.split(":")[1]
        base = times[f"plain:{column}"]
        if name.startswith("plain:"):
            out[name] = {k: round(v, 4) for k, v in t.items()}
            continue
        out[name] = {**{k: round(v, 4) for k, v in t.items()},
                     "wall_overhead_pct": round(100 * (t["wall_s"] - base["wall_s"]) / base["wall_s"], 1),
                     "cpu_overhead_pct": round(100 * (t["cpu_s"] - base["cpu_s"]) / base["cpu_s"], 1)}
    return out


def spark_times(rows: int, repeat: int) -> dict[str, Any]:
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    builder = (SparkSession.builder.master("local[2]").config("spark.ui.enabled", "false")
               .config("spark.sql.shuffle.partitions", "4").config("spark.sql.session.timeZone", "UTC"))
    with jvm.gateway_launch():
        spark = builder.getOrCreate()
    i = F.col("id")
    table = spark.range(rows).select(
        F.concat(F.lit("P"), (i % 50).cast("string")).alias("product"),
        ((i % 100000) / 100 + 1).cast("decimal(10,2)").alias("price"),
        F.concat(F.lit("c"), i.cast("string"), F.lit("@mail.example")).alias("customer_email"),
        F.make_timestamp_ntz(2023 + i % 3, 1 + i % 12, 1 + i % 28, i % 24, i % 60, F.lit(0)).alias("sale_ts"))
    table.cache().count()
    table.createOrReplaceTempView("t")
    gateway = spark.sparkContext._jvm
    assert gateway is not None
    pid = int(gateway.java.lang.ProcessHandle.current().pid())

    def run(sql: str) -> tuple[float, float]:
        cpu, start = jvm_cpu_s(pid), time.perf_counter()
        spark.sql(sql).collect()
        return time.perf_counter() - start, jvm_cpu_s(pid) - cpu

    try:
        return overheads(interleaved(run, variants("spark"), repeat))
    finally:
        spark.stop()


def duckdb_times(rows: int, repeat: int) -> dict[str, Any]:
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(f"""CREATE TABLE t AS SELECT 'P' || (i % 50) AS product,
        CAST((i % 100000) / 100 + 1 AS DECIMAL(10, 2)) AS price, 'c' || i || '@mail.example' AS customer_email,
        make_timestamp(2023 + i % 3, 1 + i % 12, 1 + i % 28, i % 24, i % 60, 0) AS sale_ts
        FROM range({rows}) r(i)""")

    def run(sql: str) -> tuple[float, float]:
        cpu, start = time.process_time(), time.perf_counter()
        con.sql(sql).fetchall()
        return time.perf_counter() - start, time.process_time() - cpu

    try:
        return overheads(interleaved(run, variants("duckdb"), repeat))
    finally:
        con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    print(json.dumps({"benchmark": "mask_cost", "rows": args.rows, "repeat": args.repeat,
                      "spark": spark_times(args.rows, args.repeat), "duckdb": duckdb_times(args.rows, args.repeat),
                      "machine": {"cpus": os.cpu_count(), "loadavg": os.getloadavg()}}, indent=2))


if __name__ == "__main__":
    main()
