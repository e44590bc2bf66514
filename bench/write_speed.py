"""Write speed: `batch generate` (Spark: generate + write Iceberg) vs plain Parquet, same run, same rows.

For each row count N, in a fresh state directory:
  1. icetide  — `batch.generate.generate`: Spark computes N rows and appends them to an Iceberg
     table partitioned by (year, month), on the local default (JDBC catalog on SQLite, a warehouse
     folder); seconds and rows/s.
  2. rest_s3 — the same on REST + S3: Iceberg's reference REST catalog server over the embedded object
     store (SeaweedFS, SSE-S3), both started here from their own state dir and stopped at the end, its
     catalog registered in the same Spark session (catalog properties are runtime SQL conf), so the
     ratio to 1. is what the lake costs and nothing else. `--no-lake` leaves it out.
  3. spark_parquet — the same DataFrame written by the same Spark as plain Parquet, partitioned
     the same way (what Iceberg's bookkeeping costs on top of Spark).
  4. pyarrow_parquet — the rows icetide wrote, already in memory as an Arrow table, written by
     pyarrow as plain Parquet (zstd, partitioned the same way): a write-only lower bound.
Each Iceberg write is preceded by a 1,000-row write to the same catalog (JVM and catalog warm).
Prints one JSON document; `--out FILE` also writes it.

    .venv/bin/python bench/write_speed.py --rows 1000000 --rows 10000000 --out docs/results/batch-write-speed.json
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

LAKE_CATALOG = "rlake"  # beside the local default's catalog in the one Spark session


def spark_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("ICETIDE__SPARK__")}


def data_bytes(spark: Any, table: Any) -> int:
    """Bytes of the table's data files, from its `files` metadata table (a folder or a bucket alike)."""
    from batch.common import render

    return int(spark.sql(f"SELECT sum(file_size_in_bytes) FROM {render(table)}.`files` WHERE content = 0")
               .collect()[0][0])


def start_lake(spark: Any, workdir: Path) -> Any:
    """Start the REST catalog server and the object store from `workdir/lake`; register the catalog in `spark`."""
    from icetide.catalog import spark_conf
    from icetide.services import lake
    from icetide.settings import load_settings

    settings = load_settings(None, environ={
        "ICETIDE__STACK__STATE_DIR": str(workdir / "lake"), "ICETIDE__CATALOG__NAME": LAKE_CATALOG,
        "ICETIDE__CATALOG__TYPE": "rest", "ICETIDE__STORAGE__KIND": "s3", **spark_environ()})
    lake.start(settings)
    for key, value in spark_conf(settings).items():
        if key.startswith(f"spark.sql.catalog.{LAKE_CATALOG}"):
            spark.conf.set(key, value)
    return settings


def measure_lake(rows: int, seed: int, spark: Any, settings: Any) -> dict[str, Any]:
    """icetide's write on REST + S3: the same generate, into the lake's catalog."""
    from batch.common import table_ref
    from batch.generate import generate

    generate(spark, table_ref(settings, f"bench.warmup_{rows}"), rows=1000, seed=seed)
    table = table_ref(settings, f"bench.vendas_write_{rows}")
    result = generate(spark, table, rows=rows, seed=seed)
    return {"seconds": round(result.seconds, 3), "rows_per_s": round(rows / result.seconds),
            "bytes": data_bytes(spark, table), "snapshot_id": result.snapshot_id}


def measure(rows: int, seed: int, workdir: Path) -> dict[str, Any]:
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    from batch.common import render, table_ref
    from batch.generate import generate, vendas_rows
    from icetide.settings import load_settings
    from icetide.spark import spark_session

    settings = load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(workdir / "state"), **spark_environ()})
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

    return {
        "rows": rows,
        "icetide": {"seconds": round(icetide_s, 3), "rows_per_s": round(rows / icetide_s),
                    "bytes": data_bytes(spark, table), "snapshot_id": result.snapshot_id},
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
    parser.add_argument("--no-lake", action="store_true", help="Only the local default (no REST + S3 run).")
    parser.add_argument("--out", type=Path, help="Also write the JSON here.")
    args = parser.parse_args()
    runs = []
    # One state directory for the whole process: the Spark session (and its catalog) is built once.
    workdir = Path(tempfile.mkdtemp(prefix="icetide-write-"))
    lake_settings = None
    try:
        for rows in args.rows or [1_000_000]:
            run = measure(rows, args.seed, workdir)
            if not args.no_lake:
                from pyspark.sql import SparkSession

                session = SparkSession.getActiveSession()
                lake_settings = lake_settings or start_lake(session, workdir)
                run["rest_s3"] = measure_lake(rows, args.seed, session, lake_settings)
                run["ratio_rest_s3_vs_local"] = round(run["rest_s3"]["seconds"] / run["icetide"]["seconds"], 2)
            runs.append(run)
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    finally:
        if lake_settings is not None:
            from icetide.services import lake

            lake.stop_all(lake_settings.state_dir)
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
        "shapes": {"icetide": "JDBC catalog (SQLite) + local warehouse folder",
                   **({} if args.no_lake else {"rest_s3": "Iceberg REST reference server + SeaweedFS (SSE-S3), "
                                                          "same Spark session"})},
        "runs": runs,
    }
    emit(payload, args.out)


if __name__ == "__main__":
    main()
