"""Scaling: one table's changelog through `cdc run --once` at flink.parallelism 1, 2, 4 (and 1 vs 3 brokers).

One keyed merge-on-read table, written by Spark in this process: `--rows` inserts spread over `--files`
data files (one snapshot), then an UPDATE of every fifth row (delete files + new rows → `u` events) and a
DELETE of every tenth (position deletes → `d`). Then, per broker count and parallelism, the real `icetide cdc
run --once --reset` (PyFlink's mini-cluster, Debezium JSON, at-least-once) publishes the whole changelog to
fresh topics; at parallelism > 1 the table is derived by every subtask (streaming/derivation.py, one lane per
partition of the table's topic, created with one per subtask). Per run:

  events/s      change events ÷ the job's run time (the summary's duration minus its submit time: JVM
                start and graph building are not the derivation's);
  cpu_us/event  CPU of the whole `cdc run` process tree (gateway JVM, Python workers) ÷ events;
  ratio         events/s over parallelism 1 in the same broker setting (the baseline of this run).

`--flink cluster` runs the same on a fresh `icetide flink up` per parallelism P: P one-slot TaskManagers,
each with its own Python worker (the mini-cluster runs every subtask in one Python process: one GIL); its
CPU adds the JobManager's and TaskManagers' process trees.

Medians of `--repeat` runs. On this 2-core machine parallelism 4 oversubscribes the cores: the curve's slope
from 1 to 2 is what more machines would add per subtask, minus what the planner and the lanes share.

    .venv/bin/python bench/cdc_scaling.py --rows 200000 --files 8 --parallelism 1,2,4 --brokers 1,3 \\
        --flink local,cluster --repeat 2 --out docs/results/cdc-scaling.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from report import emit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ICETIDE = str(Path(sys.executable).with_name("icetide"))
TABLE = "bench.scaling"


def write_table(spark: Any, rows: int, files: int) -> None:
    spark.sql("CREATE NAMESPACE IF NOT EXISTS bench")
    spark.sql(f"DROP TABLE IF EXISTS {TABLE}")
    spark.sql(f"CREATE TABLE {TABLE} (id BIGINT NOT NULL, qty INT, product STRING, price DECIMAL(10,2), "
              "at TIMESTAMP) USING iceberg TBLPROPERTIES ('format-version'='2', "
              "'write.delete.mode'='merge-on-read', 'write.update.mode'='merge-on-read', "
              "'write.distribution-mode'='none')")
    spark.sql(f"ALTER TABLE {TABLE} SET IDENTIFIER FIELDS id")
    spark.range(rows).repartition(files).selectExpr(
        "id", "CAST(id % 97 AS INT) AS qty", "concat('product-', id % 1000) AS product",
        "CAST(id % 10000 / 100 AS DECIMAL(10,2)) AS price",
        "TIMESTAMP '2026-01-01 00:00:00' + make_interval(0, 0, 0, 0, 0, 0, id % 86400) AS at",
    ).writeTo(TABLE).append()
    spark.sql(f"UPDATE {TABLE} SET qty = qty + 1 WHERE id % 5 = 0")
    spark.sql(f"DELETE FROM {TABLE} WHERE id % 10 = 1")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds of processes and their descendants (live ones, and the reaped ones through cutime)."""
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = fields
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    total, todo = 0, list(pids)
    while todo:
        pid = todo.pop()
        if pid in stats:
            fields = stats[pid]  # after ")": state ppid ... utime(12) stime(13) cutime(14) cstime(15)
            total += sum(int(v) for v in fields[11:15])
            todo += children.get(pid, [])
    return total / tick


def cluster_up(env: dict[str, str], taskmanagers: int) -> tuple[str, list[int]]:
    """A fresh session cluster of `taskmanagers` one-slot TaskManagers (each its own Python worker): its
    REST address and the pids of its processes."""
    subprocess.run([ICETIDE, "flink", "down"], env=env, check=True, capture_output=True)
    proc = subprocess.run([ICETIDE, "flink", "up", "--json", "--taskmanagers", str(taskmanagers)],
                          env={**env, "ICETIDE__FLINK__TASKMANAGER_SLOTS": "1"}, check=True,
                          capture_output=True, text=True)
    status = json.loads(proc.stdout)
    return status["address"], [int(pid) for pid in status["pids"].values()]


def run_once(env: dict[str, str], parallelism: int, prefix: str, cluster: list[int]) -> dict[str, Any]:
    job_env = {**env, "ICETIDE__FLINK__PARALLELISM": str(parallelism), "ICETIDE__CDC__TOPIC_PREFIX": prefix}
    before = children_cpu() + tree_cpu(cluster)
    proc = subprocess.run([ICETIDE, "cdc", "run", "--once", "--reset", "--json", "--tables", TABLE],
                          env=job_env, capture_output=True, text=True, timeout=3600)
    cpu = children_cpu() + tree_cpu(cluster) - before
    if proc.returncode != 0:
        raise SystemExit(f"cdc run failed at parallelism {parallelism}:\n{proc.stderr[-3000:]}")
    summary = json.loads(proc.stdout)
    events = int(summary["events"])
    run_s = float(summary["duration_s"]) - float(summary["submit_s"])
    return {"events": events, "run_s": round(run_s, 2), "duration_s": summary["duration_s"],
            "events_per_s": round(events / run_s), "cpu_s": round(cpu, 1),
            "cpu_us_per_event": round(cpu / events * 1e6, 1), "by_op": summary["tables"][TABLE]["by_op"]}


def measure(env: dict[str, str], flink: str, levels: list[int], repeat: int, brokers: int,
            write_s: float) -> list[dict[str, Any]]:
    runs: dict[int, list[dict[str, Any]]] = {p: [] for p in levels}
    for round_no in range(repeat):
        for p in levels:  # interleaved, so drift of the machine hits every level alike
            run_env, cluster = env, []
            if flink == "cluster":
                address, cluster = cluster_up(env, p)
                run_env = {**env, "ICETIDE__FLINK__ADDRESS": address}
            runs[p].append(run_once(run_env, p, f"scale{brokers}b{flink}{p}p{round_no}", cluster))
    base = statistics.median(r["events_per_s"] for r in runs[levels[0]])
    results = []
    for p in levels:
        rate = statistics.median(r["events_per_s"] for r in runs[p])
        results.append({"brokers": brokers, "flink": flink, "parallelism": p, "events": runs[p][0]["events"],
                        "by_op": runs[p][0]["by_op"], "events_per_s": round(rate),
                        "ratio_to_parallelism_1": round(rate / base, 2),
                        "cpu_us_per_event": statistics.median(r["cpu_us_per_event"] for r in runs[p]),
                        "runs": runs[p], "table_write_s": round(write_s, 1)})
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--files", type=int, default=8, help="Data files of the insert snapshot.")
    parser.add_argument("--parallelism", default="1,2,4")
    parser.add_argument("--brokers", default="1", help="Comma-separated broker counts (kafka.brokers).")
    parser.add_argument("--flink", default="local,cluster",
                        help="Comma-separated: local (PyFlink's mini-cluster in the cdc process: one Python "
                             "worker for all subtasks) and/or cluster (`flink up`, one one-slot TaskManager "
                             "per subtask, each its own Python worker).")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--state-dir", type=Path, default=ROOT / ".state" / "bench-scaling")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    levels = [int(p) for p in args.parallelism.split(",")]
    brokers = [int(b) for b in args.brokers.split(",")]
    shapes = args.flink.split(",")

    from icetide.settings import load_settings
    from icetide.spark import spark_session
    from icetide.stack import Stack

    results: list[dict[str, Any]] = []
    for count in brokers:
        state = args.state_dir / f"brokers-{count}"
        shutil.rmtree(state, ignore_errors=True)
        state.mkdir(parents=True)
        env = {**os.environ, "ICETIDE__STACK__STATE_DIR": str(state), "ICETIDE__KAFKA__BROKERS": str(count),
               "ICETIDE__CDC__TRANSACTION_METADATA": "true"}
        settings = load_settings(None, environ=env)
        stack = Stack(settings)
        stack.up()
        try:
            spark = spark_session(settings)
            began = time.monotonic()
            write_table(spark, args.rows, args.files)
            spark.stop()
            write_s = time.monotonic() - began
            for flink in shapes:
                results += measure(env, flink, levels, args.repeat, count, write_s)
        finally:
            subprocess.run([ICETIDE, "flink", "down"], env=env, capture_output=True)
            stack.down()
    emit({"benchmark": "cdc_scaling", "rows": args.rows, "files": args.files, "cores": os.cpu_count(),
          "load_avg_1m": round(os.getloadavg()[0], 2), "results": results}, args.out)


if __name__ == "__main__":
    main()
