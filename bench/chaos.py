"""Chaos campaign: SIGKILL the Flink job, the consumer or the Kafka broker while changes flow, then check.

In its own state directory (wiped at start, kept afterwards for its logs in <state-dir>/logs/):
the embedded Kafka broker (icetide.stack), a downstream database (a scratch PostgreSQL server from
Debian's binaries, or SQLite), a writer (bench/chaos_writer.py: one Spark session committing random
INSERT / UPDATE / DELETE / MERGE, and now and then rewrite_data_files, to a keyed merge-on-read table
and a keyless copy-on-write table), the continuous CDC job (`icetide cdc run`) and the continuous
consumer (`icetide cdc apply`). Then, --kills times per kind, in a seeded random order with a seeded
random pause in between: SIGKILL one target (the job's whole process group / the consumer / the
broker's process group) and restart it; the next pause starts once it is back (job: a checkpoint
completed; consumer: a batch applied; broker: it answers on its old port).

At the end the writer stops, the job runs until every event of both tables' changelogs is in Kafka
and is stopped, the consumer catches up and stops, `cdc apply --once` runs, then `cdc verify` per table.
Prints one JSON report: kills, restart times, Kafka records vs distinct event positions (what the
at-least-once replays duplicated) checked against the changelog re-derived here, events applied,
a downstream audit (row images inserted more than once = a change applied twice), the row diff and
verify result per table, wall time, and the processes still running from the state dir once everything
was stopped. Exit code 1 if a table differs, an event is missing from Kafka, a change was applied twice
or a process was left behind; 0 otherwise.

The lake's shape is the settings' (ICETIDE__CATALOG__TYPE, ICETIDE__STORAGE__KIND in the environment), or
`--shape`: `local` is the default (JDBC catalog on SQLite, a warehouse folder), `lake` is Iceberg's REST
catalog server over the embedded object store (SeaweedFS, SSE-S3). On the lake, `icetide stack up` starts
both servers from the state dir and `stack down` stops them; the job's checkpoints are in the bucket.

    .venv/bin/python bench/chaos.py --kills 20 --out docs/results/chaos.json
    .venv/bin/python bench/chaos.py --kills 1 --shape lake --out docs/results/chaos-rest-s3.json
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import chaos_parts as parts

HERE = Path(__file__).resolve().parent
KINDS = ("flink", "consumer", "broker")
READY_TIMEOUT_S = 300.0
CRASH_LOOP_S = 30.0
SHAPES = {"local": {"ICETIDE__CATALOG__TYPE": "jdbc", "ICETIDE__STORAGE__KIND": "local"},
          "lake": {"ICETIDE__CATALOG__TYPE": "rest", "ICETIDE__STORAGE__KIND": "s3"}}


class CampaignError(Exception):
    pass


class Campaign:
    def __init__(self, args: argparse.Namespace) -> None:
        from icetide.settings import load_settings

        self.args = args
        self.state = args.state_dir.resolve()
        self.logs = self.state / "logs"
        inherited = {k: v for k, v in os.environ.items() if k.startswith("ICETIDE__") and not k.startswith(
            ("ICETIDE__STACK__", "ICETIDE__KAFKA__BOOTSTRAP", "ICETIDE__SINK__", "ICETIDE__CDC__"))}
        self.environ = {**inherited, **SHAPES.get(args.shape or "", {}), "ICETIDE__STACK__STATE_DIR": str(self.state)}
        self.settings = load_settings(None, environ=self.environ)
        self.rng = random.Random(args.seed)
        self.tables = [f"{parts.NAMESPACE}.{t}" for t in parts.TABLES]
        from streaming.checkpoints import tables_dir

        self.checkpoints = tables_dir(self.settings, self.tables)  # where `cdc run --tables …` keeps them
        self.topics = [f"{self.settings.cdc.topic_prefix}.{t}" for t in self.tables]
        self.started = time.monotonic()
        self.events: list[dict[str, Any]] = []  # kills and unexpected exits, in order
        self.consumer_runs: list[dict[str, Any]] = []
        self.children: list[parts.Child] = []
        self.stack: Any = None
        self.pg: Any = None
        self.broker_pid: int | None = None
        self.last_scrape: dict[str, float] | None = None
        self.stopped: set[str] = set()  # children stopped on purpose at the end
        self.crashes: dict[str, int] = {}  # unexpected exits in a row, each soon after its start

    def now(self) -> float:
        return round(time.monotonic() - self.started, 1)

    # -- set-up ------------------------------------------------------------------------------
    def setup(self) -> None:
        from icetide.stack import Stack

        if self.state.is_dir():  # a broker or lake server of an earlier run would outlive its deleted files
            Stack(self.settings).down()
        shutil.rmtree(self.state, ignore_errors=True)
        self.logs.mkdir(parents=True)
        self.stack = Stack(self.settings)
        status = self.stack.up()
        self.bootstrap, self.broker_pid = status.bootstrap, status.pid
        env = {**os.environ, **self.environ, "ICETIDE__KAFKA__BOOTSTRAP_SERVERS": self.bootstrap,
               "ICETIDE__FLINK__CHECKPOINT_INTERVAL_MS": str(self.args.checkpoint_ms),
               "ICETIDE__SINK__GROUP_ID": "chaos", "ICETIDE__CDC__TOPIC_PREFIX": self.settings.cdc.topic_prefix}
        if self.args.sink == "postgres":
            from icetide import pgserver

            self.pg = pgserver.start()
            self.sink_target = pgserver.create_database(self.pg.dsn, "chaos")
            env["ICETIDE__SINK__POSTGRES_DSN"] = self.sink_target  # passed in the environment, never printed
        else:
            self.sink_target = str(self.settings.sqlite_path)
        parts.setup_audit(self.args.sink, self.sink_target)
        from confluent_kafka.admin import NewTopic

        from icetide import kafka_client

        admin = kafka_client.admin(self.settings, "admin", self.bootstrap)
        for future in admin.create_topics([NewTopic(t, self.args.partitions, 1) for t in self.topics]).values():
            future.result(timeout=60)
        py = sys.executable
        self.writer = parts.Child("writer", [py, str(HERE / "chaos_writer.py"), "--seed", str(self.args.seed),
                                       "--ready", str(self.state / "writer.ready"),
                                       "--stats", str(self.state / "writer-stats.json")], env, self.state, self.logs)
        self.job = parts.Child("flink", [py, "-m", "icetide.cli", "cdc", "run", "--tables", ",".join(self.tables),
                                   "--delivery", self.args.delivery, "--json"], env, self.state, self.logs,
                         stdout_json=True)
        self.consumer = parts.Child("consumer", [py, "-m", "icetide.cli", "cdc", "apply", "--sink", self.args.sink,
                                           "--topics", ",".join(self.topics), "--metrics-port", "0", "--json"],
                              env, self.state, self.logs, stdout_json=True)
        self.env = env
        self.children = [self.writer, self.job, self.consumer]
        for child in self.children:
            child.start()
        self.wait("writer ready", lambda: (self.state / "writer.ready").exists(), required=True)
        self.wait("first checkpoint", lambda: self.checkpoint_after(0), required=True)
        self.wait("first batch applied", self.consumer_ready, required=True)

    # -- supervision -------------------------------------------------------------------------
    def checkpoint_after(self, wall: float) -> bool:
        """A completed checkpoint whose metadata was written after `wall` (time.time()): in the state dir, or in
        the bucket on S3 (whole seconds there, so this may see one up to a second late — never early)."""
        from streaming.checkpoints import completed_checkpoints

        return any(written > wall for _, written in completed_checkpoints(self.settings, self.checkpoints))

    def consumer_ready(self) -> bool:
        scraped = parts.scrape(self.consumer.log_file)
        if scraped is not None:
            self.last_scrape = scraped
        return scraped is not None and scraped["batches"] >= 1

    def supervise(self) -> None:
        """Restart a part that died without being killed by us (and record it)."""
        if not self.writer.alive() and self.writer.name not in self.stopped:
            raise CampaignError(f"the writer died (exit {self.writer.proc and self.writer.proc.returncode}):\n"
                                + self.writer.tail())
        for child in (self.job, self.consumer):
            if not child.alive() and child.name not in self.stopped:
                assert child.proc is not None
                self.events.append({"event": "unexpected_exit", "part": child.name, "at_s": self.now(),
                                    "exit_code": child.proc.returncode, "incarnation": child.incarnation,
                                    "log": str(child.log_file), "tail": child.tail(8)})
                if child is self.consumer:
                    self.end_consumer_run("exited")
                quick = time.monotonic() - child.started_at < CRASH_LOOP_S
                self.crashes[child.name] = self.crashes.get(child.name, 0) + 1 if quick else 0
                if self.crashes[child.name] > self.args.max_crash_loop:
                    raise CampaignError(f"{child.name} keeps dying within {CRASH_LOOP_S:.0f}s of its start; "
                                        f"last log:\n{child.tail(30)}")
                child.start()
        if self.broker_pid is not None and not parts.alive(self.broker_pid):
            self.events.append({"event": "unexpected_exit", "part": "broker", "at_s": self.now()})
            self.restart_broker()

    def wait(self, what: str, ready: Any, timeout_s: float = READY_TIMEOUT_S, required: bool = False) -> float | None:
        """Supervise until `ready()`; seconds waited, or None after `timeout_s` (CampaignError if `required`)."""
        began = time.monotonic()
        while time.monotonic() - began < timeout_s:
            self.supervise()
            if ready():
                return time.monotonic() - began
            if self.consumer.alive() and int(time.monotonic() - began) % 2 == 0:
                self.consumer_ready()  # keep the last counters of the running consumer
            time.sleep(0.5)
        if required:
            raise CampaignError(f"{what}: not within {timeout_s:.0f}s")
        return None

    def end_consumer_run(self, how: str) -> None:
        out = self.consumer.output()
        self.consumer_runs.append({"incarnation": self.consumer.incarnation, "ended": how,
                                   "summary": out, "scraped_applied": (self.last_scrape or {}).get("applied")})
        self.last_scrape = None

    def restart_broker(self) -> None:
        status = self.stack.up()
        if status.bootstrap != self.bootstrap:
            raise CampaignError(f"the restarted broker moved from {self.bootstrap} to {status.bootstrap}")
        self.broker_pid = status.pid

    # -- kills -------------------------------------------------------------------------------
    def kill(self, kind: str) -> dict[str, Any]:
        record: dict[str, Any] = {"kind": kind, "at_s": self.now()}
        wall, began = time.time(), time.monotonic()
        if kind == "flink":
            record["orphans"] = self.job.kill_group()
            self.job.start()
            record["restart_s"] = self.wait("job checkpoint", lambda: self.job.alive() and self.checkpoint_after(wall))
        elif kind == "consumer":
            self.consumer_ready()
            record["orphans"] = self.consumer.kill_group()
            self.end_consumer_run("killed")
            self.consumer.start()
            record["restart_s"] = self.wait("consumer batch", self.consumer_ready)
        else:
            assert self.broker_pid is not None
            os.killpg(self.broker_pid, signal.SIGKILL)
            while parts.alive(self.broker_pid):
                time.sleep(0.1)
            self.restart_broker()
            record["restart_s"] = time.monotonic() - began
            back = time.time()
            resumed = self.wait("job checkpoint after broker restart", lambda: self.checkpoint_after(back))
            record["pipeline_resumed_s"] = None if resumed is None else round(record["restart_s"] + resumed, 2)
        if record["restart_s"] is not None:
            record["restart_s"] = round(record["restart_s"], 2)
        return record

    def campaign(self) -> None:
        plan = [kind for kind in KINDS for _ in range(self.args.kills)]
        self.rng.shuffle(plan)
        for index, kind in enumerate(plan, 1):
            pause = self.rng.uniform(self.args.min_gap, self.args.max_gap)
            self.wait("pause", lambda: False, timeout_s=pause)
            record = self.kill(kind)
            self.events.append({"event": "kill", **record})
            print(f"chaos: kill {index}/{len(plan)} {kind} at {record['at_s']} s, back in {record['restart_s']} s",
                  file=sys.stderr, flush=True)

    # -- the end -----------------------------------------------------------------------------
    def finish(self) -> dict[str, Any]:
        self.stopped.add(self.writer.name)
        self.writer.terminate(180)
        writer_stats = json.loads((self.state / "writer-stats.json").read_text())
        expected = {t: parts.expected_events(self.settings, t) for t in self.tables}
        reader = parts.TopicReader(self.bootstrap, self.topics, self.settings)
        began = time.monotonic()

        def published() -> bool:
            reader.read(60)
            return all(set(expected[t]) <= set(reader.copy_count[topic]) for t, topic in zip(self.tables, self.topics,
                                                                                               strict=True))

        drained = self.wait("job drained", published, timeout_s=self.args.drain_timeout)
        self.stopped.add(self.job.name)
        job_rc = self.job.terminate(120)
        job_summary = self.job.output()
        reader.read(120)
        kafka = {t: parts.census(reader, topic, expected[t]) for t, topic in zip(self.tables, self.topics, strict=True)}
        kafka_ends = reader.ends()
        reader.close()
        self.wait("consumer caught up", lambda: self.sink_caught_up(kafka_ends), timeout_s=180)
        self.consumer_ready()
        self.stopped.add(self.consumer.name)
        self.consumer.terminate(120)
        self.end_consumer_run("stopped")
        final = subprocess.run([sys.executable, "-m", "icetide.cli", "cdc", "apply", "--sink", self.args.sink,
                                "--topics", ",".join(self.topics), "--once", "--json"], env=self.env, cwd=self.state,
                               capture_output=True, text=True, timeout=600)
        verify = self.verify()
        diffs = self.diffs()
        audited = parts.audit(self.args.sink, self.sink_target)
        return {"writer": writer_stats, "drain_s": None if drained is None else round(time.monotonic() - began, 1),
                "job_final": {"exit_code": job_rc, "summary": job_summary}, "kafka": kafka,
                "final_apply": _json_or_error(final), "verify": verify, "row_diff": diffs, "audit": audited}

    def sink(self) -> Any:
        if self.args.sink == "postgres":
            from connectors.postgres import PostgresConfig, PostgresSink

            return PostgresSink(PostgresConfig(self.sink_target))
        from connectors.sqlite import SqliteConfig, SqliteSink

        return SqliteSink(SqliteConfig(Path(self.sink_target)))

    def sink_caught_up(self, ends: dict[tuple[str, int], int]) -> bool:
        with self.sink() as sink:
            positions = sink.positions()
        # a transaction marker may hold the last offset (exactly-once): within 1 is caught up for a transaction
        slack = 1 if self.args.delivery == "exactly-once" else 0
        return all(end == 0 or positions.get(tp, -1) + 1 + slack >= end for tp, end in ends.items())

    def verify(self) -> dict[str, Any]:
        procs = {t: subprocess.Popen([sys.executable, "-m", "icetide.cli", "cdc", "verify", "--table", t, "--sink",
                                      self.args.sink, "--json"], env=self.env, cwd=self.state,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for t in self.tables}
        out = {}
        for table, proc in procs.items():
            stdout, stderr = proc.communicate(timeout=600)
            out[table] = _json_or_error(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
        return out

    def diffs(self) -> dict[str, Any]:
        with self.sink() as sink:
            return {t: parts.row_diff(self.settings, sink, t) for t in self.tables}

    def cleanup(self) -> None:
        for child in self.children:
            if child.alive():
                child.kill_group()
        if self.stack is not None:
            self.stack.down()
        if self.pg is not None:
            self.pg.stop()


def _json_or_error(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    try:
        return {"exit_code": done.returncode, **json.loads(done.stdout)}
    except ValueError:
        return {"exit_code": done.returncode, "error": (done.stderr or done.stdout)[-2000:]}


def report(c: Campaign, end: dict[str, Any], wall_s: float) -> dict[str, Any]:
    kills = [e for e in c.events if e["event"] == "kill"]
    restart = {k: parts.stats([e["restart_s"] for e in kills if e["kind"] == k and e["restart_s"] is not None])
               for k in KINDS}
    broker_pipeline = [e["pipeline_resumed_s"] for e in kills if e.get("pipeline_resumed_s") is not None]
    equal = {t: v.get("equal") is True for t, v in end["verify"].items()}
    missing = sum(v["missing"] for v in end["kafka"].values())
    twice = sum(v["images_inserted_more_than_once"] for v in end["audit"].values())
    runs = c.consumer_runs
    graceful = [r["summary"] for r in runs if r["summary"]]
    return {
        "benchmark": "chaos",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "shape": {"catalog": c.settings.catalog.type, "storage": c.settings.storage.kind,
                  "checkpoints": c.checkpoints},
        "seed": c.args.seed, "sink": c.args.sink, "delivery": c.args.delivery, "partitions": c.args.partitions,
        "checkpoint_interval_ms": c.args.checkpoint_ms, "wall_s": round(wall_s, 1),
        "ok": all(equal.values()) and missing == 0 and twice == 0,
        "tables_equal": equal, "events_missing_from_kafka": missing, "changes_applied_twice": twice,
        "kills": {k: sum(1 for e in kills if e["kind"] == k) for k in KINDS},
        "kills_not_back_in_time": [e for e in kills if e["restart_s"] is None],
        "restart_s": restart, "broker_kill_to_next_checkpoint_s": parts.stats(broker_pipeline),
        "orphans_after_kill": sum(e.get("orphans", 0) for e in kills),
        "unexpected_exits": [e for e in c.events if e["event"] == "unexpected_exit"],
        "writer": end["writer"], "kafka": end["kafka"],
        "consumer": {
            "incarnations": len(runs),
            "applied_by_killed_runs_at_last_scrape": sum(r["scraped_applied"] or 0 for r in runs
                                                         if r["ended"] != "stopped"),
            "applied_by_stopped_runs": sum(s.get("applied", 0) for s in graceful),
            "skipped_by_stopped_runs": sum(s.get("skipped", 0) for s in graceful),
            "replayed_by_stopped_runs": sum(s.get("replayed", 0) for s in graceful),
            "final_once": end["final_apply"],
        },
        "audit": end["audit"], "verify": end["verify"], "row_diff": end["row_diff"],
        "drain_s": end["drain_s"], "job_final": end["job_final"],
        "kill_log": kills, "state_dir": str(c.state),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs of each kind (default 20)")
    parser.add_argument("--seed", type=int, default=1, help="seeds the kill order, the pauses and the writer")
    parser.add_argument("--sink", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--shape", choices=sorted(SHAPES), default=None,
                        help="local: JDBC catalog + warehouse folder; lake: REST catalog + S3 (default: the settings')")
    parser.add_argument("--delivery", choices=["at-least-once", "exactly-once"], default="at-least-once")
    parser.add_argument("--state-dir", type=Path, default=Path(".state/chaos"), help="wiped at start")
    parser.add_argument("--partitions", type=int, default=3, help="partitions of each table's topic")
    parser.add_argument("--min-gap", type=float, default=3.0, help="shortest pause between kills (s)")
    parser.add_argument("--max-gap", type=float, default=25.0, help="longest pause between kills (s)")
    parser.add_argument("--checkpoint-ms", type=int, default=2000, help="the job's checkpoint interval")
    parser.add_argument("--drain-timeout", type=float, default=900.0,
                        help="how long the job may take to publish the rest at the end (s)")
    parser.add_argument("--max-crash-loop", type=int, default=5,
                        help="give up when the job or the consumer dies on its own this many times in a row, "
                             f"each within {CRASH_LOOP_S:.0f} s of its start")
    parser.add_argument("--out", type=Path, help="also write the report here")
    args = parser.parse_args()

    def on_signal(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    campaign = Campaign(args)
    try:
        campaign.setup()
        campaign.campaign()
        end = campaign.finish()
        result = report(campaign, end, time.monotonic() - campaign.started)
    except CampaignError as exc:
        result = {"benchmark": "chaos", "ok": False, "error": str(exc), "events": campaign.events,
                  "state_dir": str(campaign.state)}
    finally:
        campaign.cleanup()
    result["left_behind"] = parts.left_behind(campaign.state)
    result["ok"] = result["ok"] and not result["left_behind"]
    text = json.dumps(result, indent=2, default=str)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
