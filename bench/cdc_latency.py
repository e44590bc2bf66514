"""Latency: Spark commits → `cdc run` (PyFlink) → Kafka → `cdc apply` → PostgreSQL, at a sustained rate.

One Spark session (this process) commits to a keyed merge-on-read Iceberg table at a target rate of
changes/s for `--seconds`: every `--commit-interval` it commits what brings the total up to rate ×
elapsed — inserts of new keys, and every fifth commit an UPDATE of that many earlier rows (delete
files + inserts → 'u' events). The continuous CDC job and the continuous consumer run as the real
CLI subprocesses, downstream a real PostgreSQL server. Per rate, the consumer is restarted once the
pipeline is warm, so its summary holds only the measured events:

  commit→apply   the consumer's figure: downstream transaction commit minus the snapshot's commit
                 time (`source.commit_ts_ms`), per event: p50, p99, max;
  commit→publish from the topic afterwards: each record's Kafka timestamp (set when the job
                 produced it) minus its snapshot's commit time.

The achieved write rate and the load average are reported beside them: when the machine cannot
keep up, latency grows with the backlog and the figures say so.

    .venv/bin/python bench/cdc_latency.py --rates 2000,10000 --seconds 60 --out docs/results/cdc-latency.json
    .venv/bin/python bench/cdc_latency.py --modes local,cluster --rates 10000 --seconds 60   # the same job on
        PyFlink's mini-cluster, then submitted to a session cluster (`icetide flink up`, 2 TaskManagers)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from report import emit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ICETIDE = str(Path(sys.executable).with_name("icetide"))
TABLE = "bench.latency"


def quantiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_s": None, "p99_s": None, "max_s": None}
    values = sorted(values)
    pick = lambda q: round(values[min(len(values) - 1, int(q * len(values)))], 3)  # noqa: E731
    return {"p50_s": pick(0.5), "p99_s": pick(0.99), "max_s": round(values[-1], 3)}


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=out, start_new_session=True)


def create_table(spark: Any) -> None:
    """The benchmark's keyed merge-on-read table (`TABLE`), which `Writer` writes to."""
    spark.sql("CREATE NAMESPACE IF NOT EXISTS bench")
    spark.sql(f"CREATE TABLE {TABLE} (id BIGINT NOT NULL, qty INT, product STRING, at TIMESTAMP) USING iceberg "
              "TBLPROPERTIES ('format-version'='2', 'write.delete.mode'='merge-on-read', "
              "'write.update.mode'='merge-on-read', 'write.merge.mode'='merge-on-read')")
    spark.sql(f"ALTER TABLE {TABLE} SET IDENTIFIER FIELDS id")


def stop(proc: subprocess.Popen[bytes], timeout: float = 120) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def downstream_state(dsn: str) -> tuple[int, int]:
    """(rows, sum of qty) downstream: equal to the writer's once every insert AND update is applied."""
    import psycopg

    try:
        with psycopg.connect(dsn) as conn:
            row = conn.execute('SELECT count(*), coalesce(sum(qty), 0) FROM "bench"."latency"').fetchone()
        return (int(row[0]), int(row[1])) if row else (0, 0)
    except psycopg.errors.UndefinedTable:
        return (0, 0)


def wait_rows(dsn: str, expected: tuple[int, int], procs: list[subprocess.Popen[bytes]], timeout: float) -> float:
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        for proc in procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        if downstream_state(dsn) == expected:
            return time.monotonic() - began
        time.sleep(0.5)
    raise RuntimeError(f"downstream has {downstream_state(dsn)}, expected {expected} after {timeout:.0f}s")


class Writer:
    """Commits changes at a target rate; keeps the ids and the commit timings."""

    def __init__(self, spark: Any) -> None:
        self.spark = spark
        self.next_id = 0
        self.qty_sum = 0  # sum of qty over the table, as the writer made it
        self.commits: list[float] = []

    def insert(self, n: int) -> None:
        first, self.next_id = self.next_id, self.next_id + n
        self.qty_sum += sum(i % 1000 for i in range(first, first + n))
        self.spark.sql(f"INSERT INTO {TABLE} SELECT id, id % 1000, 'p' || (id % 97), current_timestamp() "
                       f"FROM range({first}, {first + n})")

    def update(self, n: int) -> None:
        low = max(0, self.next_id - 3 * n)
        self.qty_sum += min(n, self.next_id - low)
        self.spark.sql(f"UPDATE {TABLE} SET qty = qty + 1 WHERE id >= {low} AND id < {low + n}")

    def run(self, rate: int, seconds: float, interval: float) -> dict[str, Any]:
        """Every `interval`, commit what brings the total up to rate × elapsed (a slow commit makes
        the next one bigger, so the rate holds as long as Spark keeps up)."""
        began = time.monotonic()
        changes = commits = 0
        while (elapsed := time.monotonic() - began) < seconds:
            time.sleep(max(0.0, began + (commits + 1) * interval - time.monotonic()))
            n = max(1, round(rate * (time.monotonic() - began)) - changes)
            t0 = time.monotonic()
            if commits % 5 == 4 and self.next_id >= 3 * n:
                self.update(n)
            else:
                self.insert(n)
            self.commits.append(time.monotonic() - t0)
            changes += n
            commits += 1
        elapsed = time.monotonic() - began
        return {"target_changes_per_s": rate, "changes": changes, "commits": commits,
                "achieved_changes_per_s": round(changes / elapsed, 1), "write_s": round(elapsed, 1),
                "commit_s": quantiles(self.commits[-commits:])}


def publish_latencies(settings: Any, bootstrap: str, topic: str, since_ms: int) -> list[float]:
    from icetide import kafka_client
    from icetide.events import loads

    consumer = kafka_client.consumer(settings, "admin", bootstrap, {
        "group.id": f"lat-{time.time_ns()}", "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    out: list[float] = []
    idle = 0
    while idle < 5:
        msgs = consumer.consume(5000, 1.0)
        idle = 0 if msgs else idle + 1
        for msg in msgs:
            if msg.error() or msg.value() is None:
                continue
            commit_ms = loads(msg.value())["source"]["commit_ts_ms"]
            if commit_ms >= since_ms:
                out.append((msg.timestamp()[1] - commit_ms) / 1000)
    consumer.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rates", default="10000", help="Comma-separated target changes/s.")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--commit-interval", type=float, default=1.0)
    parser.add_argument("--poll-interval", type=float, default=0.5, help="cdc.poll_interval_s of the job.")
    parser.add_argument("--partitions", type=int, default=2)
    parser.add_argument("--state-dir", type=Path, default=ROOT / ".state" / "bench-latency")
    parser.add_argument("--modes", default="local",
                        help="Comma-separated: local (PyFlink's mini-cluster), cluster (a session cluster of "
                             "`icetide flink up`, the job submitted to it); each runs every rate, in this order.")
    parser.add_argument("--taskmanagers", type=int, default=2, help="TaskManagers of the cluster mode.")
    parser.add_argument("--parallelism", type=int, default=1, help="flink.parallelism of the job.")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    if not modes or set(modes) - {"local", "cluster"}:
        parser.error(f"--modes {args.modes!r}: local and/or cluster")

    from icetide import pgserver
    from icetide.events import topic_for
    from icetide.services.flink_cluster import FlinkCluster
    from icetide.settings import load_settings
    from icetide.spark import spark_session
    from icetide.stack import Stack

    shutil.rmtree(args.state_dir, ignore_errors=True)
    args.state_dir.mkdir(parents=True)
    server = pgserver.start()
    dsn = pgserver.create_database(server.dsn, "latency")
    env = {**os.environ, "ICETIDE__STACK__STATE_DIR": str(args.state_dir), "ICETIDE__SINK__POSTGRES_DSN": dsn,
           "ICETIDE__CDC__POLL_INTERVAL_S": str(args.poll_interval),
           "ICETIDE__KAFKA__NUM_PARTITIONS": str(args.partitions), "ICETIDE__SINK__BATCH_SIZE": "5000",
           "ICETIDE__FLINK__PARALLELISM": str(args.parallelism)}
    settings = load_settings(None, environ=env)
    stack = Stack(settings)
    status = stack.up()
    cluster = FlinkCluster(args.state_dir)
    logs = args.state_dir / "logs"
    logs.mkdir()
    apply_argv = [ICETIDE, "cdc", "apply", "--sink", "postgres", "--json"]
    topic = topic_for(settings.cdc.topic_prefix, *TABLE.split("."))
    runs: list[dict[str, Any]] = []
    startup: dict[str, float] = {}
    job = consumer = None
    try:
        spark = spark_session(settings)
        create_table(spark)
        writer = Writer(spark)
        for mode in modes:
            job_env = dict(env)
            if mode == "cluster":
                started = time.monotonic()
                cluster.start(settings, args.state_dir, args.taskmanagers)
                startup["cluster_up_s"] = round(time.monotonic() - started, 1)
                job_env["ICETIDE__FLINK__ADDRESS"] = cluster.address()
            writer.insert(100)  # warm-up: the pipeline is up once these rows are downstream
            job = start([ICETIDE, "cdc", "run", "--tables", TABLE], job_env, logs / f"job-{mode}.log")
            consumer = start(apply_argv, env, logs / "apply-warmup.log")
            startup[f"pipeline_{mode}_s"] = round(
                wait_rows(dsn, (writer.next_id, writer.qty_sum), [job, consumer], 600), 1)
            stop(consumer)
            for rate in [int(r) for r in args.rates.split(",")]:
                out = args.state_dir / f"apply-{mode}-{rate}.json"
                with out.open("wb") as sink_out, (logs / "apply.log").open("ab") as errors:
                    consumer = subprocess.Popen(apply_argv, env=env, stdout=sink_out, stderr=errors,
                                                start_new_session=True)
                time.sleep(5)  # joined and assigned before the first measured commit
                since_ms = int(time.time() * 1000)
                load_before = os.getloadavg()[0]
                written = writer.run(rate, args.seconds, args.commit_interval)
                load_during = os.getloadavg()[0]
                drain_s = wait_rows(dsn, (writer.next_id, writer.qty_sum), [job, consumer], 1800)
                stop(consumer)
                summary = json.loads(out.read_text())
                run = {"mode": mode, **written, "applied": summary["applied"],
                       "drain_after_last_commit_s": round(drain_s, 1),
                       "commit_to_apply": {"p50_s": summary["commit_to_apply_p50_s"],
                                           "p99_s": summary["commit_to_apply_p99_s"],
                                           "max_s": summary["commit_to_apply_max_s"]},
                       "commit_to_publish": quantiles(publish_latencies(settings, status.bootstrap, topic, since_ms)),
                       "load_avg_1m": {"before": round(load_before, 2), "end_of_writes": round(load_during, 2)},
                       "goal_p99_s": 2.0}
                run["goal_met"] = (run["commit_to_apply"]["p99_s"] or 1e9) <= 2.0 and \
                    run["achieved_changes_per_s"] >= 0.95 * rate
                runs.append(run)
                print(json.dumps(run), file=sys.stderr)
            stop(job)  # the next mode's job restores this one's newest checkpoint
            job = None
        results = {"table": TABLE, "poll_interval_s": args.poll_interval, "commit_interval_s": args.commit_interval,
                   "partitions": args.partitions, "parallelism": args.parallelism, "delivery": settings.cdc.delivery,
                   "cpus": os.cpu_count(), "taskmanagers": args.taskmanagers if "cluster" in modes else None,
                   "startup_s": startup, "runs": runs}
    finally:
        for proc in (consumer, job):
            if proc is not None:
                stop(proc)
        cluster.stop()
        stack.down()
        server.stop()
    emit(results, args.out)


if __name__ == "__main__":
    main()
