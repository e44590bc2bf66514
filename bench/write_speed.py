"""Write speed: `batch generate` (Spark: generate + write Iceberg) vs plain Parquet, same run, same rows.

For each row count N, in a fresh state directory:
  1. icetide  — `batch.generate.generate`: Spark computes N rows and appends them to an Iceberg
     table partitioned by (year, month); seconds and rows/s.
  2. spark_parquet — the same DataFrame written by the same Spark as plain Parquet, partitioned
     the same way (what Iceberg's bookkeeping costs on top of Spark).
  3. pyarrow_parquet — the rows icetide wrote, already in memory as an Arrow table, written by
     pyarrow as plain Parquet (zstd, partitioned the same way): a write-only lower bound.
Prints one JSON document; `--out FILE` also writes it.

    .venv/bin/python bench/write_speed.py --rows 1000000 --rows 10000000 --out docs/results/write-speed.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from report import emit


def measure(rows: int, seed: int, workdir: Path) -> dict[str, Any]:
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    from batch.common import render, table_ref
    from batch.generate import generate, vendas_rows
    from icetide.settings import load_settings
    from icetide.spark import spark_session

    settings = load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(workdir / "state"),
                                            **{k: v for k, v in os.environ.items()
                                               if k.startswith("ICETIDE__SPARK__")}})
    spark = spark_session(settings)
    table = table_ref(settings, f"bench.vendas_write_{rows}")
    # Warm the JVM and the catalog with a tiny write so the timing is of writing, not of start-up.
    generate(spark, table_ref(settings, f"bench.warmup_{rows}"), rows=1000, seed=seed)

    result = generate(spark, table, rows=rows, seed=seed)
    icetide_s = result.seconds

    start = time.perf_counter()
    (vendas_rows(spark, rows, 1, seed).repartition("year", "month").write
     .partitionBy("year", "month").option("compression", "zstd").parquet(str(workdir / f"spark-parquet-{rows}")))
    spark_parquet_s = time.perf_counter() - start

    paths = [urlparse(r[0]).path for r in spark.sql(
        f"SELECT file_path FROM {render(table)}.`files` WHERE content = 0").collect()]
    arrow_table = ds.dataset(paths, format="parquet").to_table()
    assert arrow_table.num_rows == rows
    start = time.perf_counter()
    pq.write_to_dataset(arrow_table, root_path=str(workdir / f"arrow-parquet-{rows}"),
                        partition_cols=["year", "month"], compression="zstd")
    arrow_s = time.perf_counter() - start
    del arrow_table

    def size(path: Path) -> int:
        return sum(f.stat().st_size for f in path.rglob("*.parquet"))

    iceberg_bytes = sum(f.stat().st_size for f in (workdir / "state" / "warehouse" / "bench").rglob(
        f"vendas_write_{rows}/data/**/*.parquet"))
    return {
        "rows": rows,
        "icetide": {"seconds": round(icetide_s, 3), "rows_per_s": round(rows / icetide_s),
                    "bytes": iceberg_bytes, "snapshot_id": result.snapshot_id},
        "spark_parquet": {"seconds": round(spark_parquet_s, 3), "rows_per_s": round(rows / spark_parquet_s),
                          "bytes": size(workdir / f"spark-parquet-{rows}")},
        "pyarrow_parquet": {"seconds": round(arrow_s, 3), "rows_per_s": round(rows / arrow_s),
                            "bytes": size(workdir / f"arrow-parquet-{rows}"), "note": "write only, rows in memory"},
        "ratio_vs_spark_parquet": round(icetide_s / spark_parquet_s, 2),
        "ratio_vs_pyarrow": round(icetide_s / arrow_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append", help="Row count (repeatable). Default 1000000.")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--out", type=Path, help="Also write the JSON here.")
    args = parser.parse_args()
    runs = []
    # One state directory for the whole process: the Spark session (and its catalog) is built once.
    workdir = Path(tempfile.mkdtemp(prefix="icetide-write-"))
    try:
        for rows in args.rows or [1_000_000]:
            runs.append(measure(rows, args.seed, workdir))
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    from pyspark.sql import SparkSession

    spark = SparkSession.getActiveSession()
    payload = {
        "benchmark": "write_speed",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(), "load_avg_1m": round(os.getloadavg()[0], 2),
        "spark_master": spark.sparkContext.master if spark else None,
        "driver_memory": spark.sparkContext.getConf().get("spark.driver.memory") if spark else None,
        "goal": {"rows_per_s": 500_000, "max_ratio_vs_plain_parquet": 1.5},
        "runs": runs,
    }
    emit(payload, args.out)


if __name__ == "__main__":
    main()
