"""Compaction before/after: a vendas table fragmented into ≥ 1,000 small files, then `maint compact`.

In a fresh state directory: N generated rows are appended by `--tasks` unclustered tasks (about
tasks × 12 month partitions small files), the ten benchmark queries run warm (median of --runs),
binpack compaction runs, and the queries run again. Prints one JSON document (`--out` writes it).

    .venv/bin/python bench/compaction.py --rows 1000000 --tasks 100 --out docs/results/compaction.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from report import emit


def measure(rows: int, tasks: int, runs: int, workdir: Path) -> dict[str, Any]:
    from batch.bench import environment, run_suite
    from batch.common import render, table_ref
    from batch.generate import create_vendas, vendas_rows
    from batch.maint import compact
    from batch.maint_cli import compare_suites
    from icetide.settings import load_settings
    from icetide.spark import spark_session

    settings = load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(workdir / "state"),
                                            **{k: v for k, v in os.environ.items()
                                               if k.startswith("ICETIDE__SPARK__")}})
    spark = spark_session(settings)
    table = table_ref(settings, "bench.vendas_fragmented")
    create_vendas(spark, table)
    start = time.perf_counter()
    (vendas_rows(spark, rows, 1, 42).repartition(tasks).writeTo(render(table))
     .option("distribution-mode", "none").option("fanout-enabled", "true").append())
    write_s = time.perf_counter() - start
    before = run_suite(spark, table, runs)
    result = compact(spark, table, "binpack")
    after = run_suite(spark, table, runs)
    return {
        "rows": rows, "write_tasks": tasks, "fragmented_write_s": round(write_s, 2),
        "compaction": {k: v for k, v in result.items() if k != "procedure"},
        "procedure": result["procedure"],
        "queries": compare_suites(before, after),
        "environment": environment(spark),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--tasks", type=int, default=100, help="≈ tasks × 12 small files")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="icetide-compaction-"))
    try:
        payload = {"benchmark": "compaction", **measure(args.rows, args.tasks, args.runs, workdir)}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    emit(payload, args.out)


if __name__ == "__main__":
    main()
