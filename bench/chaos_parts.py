"""Parts of bench/chaos.py: supervised child processes, the downstream audit, the Kafka census.

The audit: every row inserted into a downstream table is logged by a database trigger (in the
same transaction as the insert, so a rolled-back batch leaves no trace). The writer never writes
the same row image twice (bench/chaos_writer.py), so an image inserted more than once downstream
is a change applied twice. PostgreSQL: an event trigger attaches the row trigger to every table
the sink creates in schema `chaos`. SQLite has no event triggers, so the two tables are created
beforehand by the sink's own DDL code, then given the row trigger.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import subprocess
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

NAMESPACE = "chaos"
TABLES = ("keyed", "log")


# -- processes ---------------------------------------------------------------------------------
def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of process group `pgid`."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            out.append(int(entry.name))
    return out


def left_behind(root: Path, grace_s: float = 10.0) -> list[dict[str, Any]]:
    """Live processes other than this one and its ancestors (whose command line may name `root`: a shell, flock)
    that run from `root` (their working directory is under it, or their command line names it): what the
    campaign started and did not stop. Waits up to `grace_s` for them to go."""
    mark = str(root)
    mine, pid = set(), os.getpid()
    while pid > 1:
        mine.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
        except OSError:
            break
    deadline = time.monotonic() + grace_s
    while True:
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in mine:
                continue
            try:
                if (entry / "stat").read_text().rpartition(")")[2].split()[0] == "Z":
                    continue
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            if cwd == mark or cwd.startswith(mark + "/") or mark in cmdline:
                found.append({"pid": int(entry.name), "cwd": cwd, "cmdline": cmdline[:300]})
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


class Child:
    """A supervised child process in its own process group; one log file per incarnation."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], cwd: Path, logs: Path,
                 stdout_json: bool = False) -> None:
        self.name, self.cmd, self.env, self.cwd, self.logs = name, cmd, env, cwd, logs
        self.stdout_json = stdout_json
        self.incarnation = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at = 0.0

    @property
    def log_file(self) -> Path:
        return self.logs / f"{self.name}-{self.incarnation}.log"

    @property
    def out_file(self) -> Path:
        return self.logs / f"{self.name}-{self.incarnation}.out"

    def start(self) -> None:
        self.incarnation += 1
        with self.log_file.open("ab") as err, self.out_file.open("ab") as out:
            self.proc = subprocess.Popen(self.cmd, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                         stdout=out if self.stdout_json else err, stderr=err,
                                         start_new_session=True)
        self.started_at = time.monotonic()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill_group(self) -> int:
        """SIGKILL the whole process group; returns how many members outlived it by 3 s (then killed)."""
        assert self.proc is not None
        pgid = self.proc.pid
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        self.proc.wait()
        deadline = time.monotonic() + 3
        while group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = group_members(pgid)
        for pid in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return len(left)

    def terminate(self, timeout_s: float) -> int | None:
        """SIGTERM the main process (it stops gracefully), then SIGKILL the group after `timeout_s`."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill_group()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # stragglers of a graceful stop
        return self.proc.returncode

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def output(self) -> dict[str, Any] | None:
        """The JSON document the incarnation printed on stdout, if any."""
        try:
            return dict(json.loads(self.out_file.read_text()))
        except (OSError, ValueError):
            return None


def scrape(log_file: Path) -> dict[str, float] | None:
    """The consumer's counters from the metrics endpoint it announced in `log_file`, or None."""
    try:
        match = re.search(r"metrics on (http://\S+)", log_file.read_text(errors="replace"))
        if not match:
            return None
        text = urllib.request.urlopen(match.group(1), timeout=2).read().decode()
    except OSError:
        return None
    applied = sum(float(v) for v in re.findall(r"^icetide_cdc_events_applied_total\{[^}]*\} (\S+)$", text, re.M))
    batches = re.search(r"^icetide_cdc_batches_total (\S+)$", text, re.M)
    return {"applied": applied, "batches": float(batches.group(1)) if batches else 0.0}


def stats(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0}
    ordered = sorted(values)
    return {"n": len(ordered), "min": round(ordered[0], 2), "p50": round(ordered[len(ordered) // 2], 2),
            "mean": round(sum(ordered) / len(ordered), 2), "max": round(ordered[-1], 2)}


# -- the downstream audit ----------------------------------------------------------------------
PG_AUDIT = """
CREATE TABLE public.chaos_audit (tbl text NOT NULL, id bigint, ver bigint, xid bigint DEFAULT txid_current(),
                                 at timestamptz DEFAULT clock_timestamp());
CREATE FUNCTION public.chaos_audit_row() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.chaos_audit (tbl, id, ver) VALUES (TG_TABLE_NAME, NEW.id, NEW.ver);
  RETURN NULL;
END $$;
CREATE FUNCTION public.chaos_attach_audit() RETURNS event_trigger LANGUAGE plpgsql AS $$
DECLARE obj record;
BEGIN
  FOR obj IN SELECT * FROM pg_event_trigger_ddl_commands()
             WHERE command_tag = 'CREATE TABLE' AND schema_name = 'chaos' LOOP
    EXECUTE format('CREATE TRIGGER chaos_audit AFTER INSERT ON %s FOR EACH ROW '
                   'EXECUTE FUNCTION public.chaos_audit_row()', obj.object_identity);
  END LOOP;
END $$;
CREATE EVENT TRIGGER chaos_attach ON ddl_command_end WHEN TAG IN ('CREATE TABLE')
  EXECUTE FUNCTION public.chaos_attach_audit();
"""


def setup_audit(kind: str, target: str) -> None:
    """Install the insert audit in the downstream database (`target`: DSN or SQLite path)."""
    if kind == "postgres":
        import psycopg

        with psycopg.connect(target, autocommit=True) as conn:
            conn.execute(PG_AUDIT)
        return
    import sqlite3

    from connectors.sqlite import SqliteConfig, SqliteSink, table_name

    sink = SqliteSink(SqliteConfig(Path(target)))
    sink.open()
    try:  # the sink's own DDL, with the key fields the consumer applies them with (keyless: none)
        sink._create_table((NAMESPACE, "keyed"), {"id": 0, "ver": 0, "v": ""}, ["id"])
        sink._create_table((NAMESPACE, "log"), {"id": 0, "ver": 0, "v": ""}, [])
    finally:
        sink.close()
    with contextlib.closing(sqlite3.connect(target)) as conn:
        conn.execute("CREATE TABLE chaos_audit (tbl TEXT NOT NULL, id INTEGER, ver INTEGER)")
        for table in TABLES:
            name = table_name((NAMESPACE, table))
            conn.execute(f'CREATE TRIGGER "audit_{name}" AFTER INSERT ON "{name}" BEGIN '
                         f"INSERT INTO chaos_audit (tbl, id, ver) VALUES ('{table}', NEW.id, NEW.ver); END")
        conn.commit()


def audit(kind: str, target: str) -> dict[str, Any]:
    """Per table: row images inserted downstream, and those inserted more than once (with examples)."""
    query = ("SELECT tbl, id, ver, count(*) FROM chaos_audit GROUP BY tbl, id, ver")
    if kind == "postgres":
        import psycopg

        with psycopg.connect(target) as conn:
            rows = conn.execute(query).fetchall()
    else:
        import sqlite3

        with contextlib.closing(sqlite3.connect(target)) as conn:
            rows = conn.execute(query).fetchall()
    out: dict[str, Any] = {}
    for table in TABLES:
        mine = [(int(i), int(v), int(n)) for t, i, v, n in rows if t.rsplit("__", 1)[-1] == table]
        twice = [r for r in mine if r[2] > 1]
        out[f"{NAMESPACE}.{table}"] = {
            "images_inserted": len(mine), "inserts": sum(n for _, _, n in mine),
            "images_inserted_more_than_once": len(twice),
            "examples": [{"id": i, "ver": v, "times": n} for i, v, n in sorted(twice)[:10]],
        }
    return out


# -- Kafka census ------------------------------------------------------------------------------
def content_hash(value: dict[str, Any]) -> str:
    """An event's identity without its production time (ts_ms): op, images and source."""
    body = {k: value.get(k) for k in ("op", "before", "after", "source")}
    return hashlib.sha1(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class TopicReader:
    """Reads every record of the topics from offset 0 and keeps reading as they grow."""

    def __init__(self, bootstrap: str, topics: list[str], settings: Any) -> None:
        from confluent_kafka import TopicPartition

        from icetide import kafka_client

        self.consumer = kafka_client.consumer(settings, "admin", bootstrap, {
            "group.id": f"chaos-census-{os.getpid()}", "enable.auto.commit": False,
            "isolation.level": "read_committed"})
        meta = self.consumer.list_topics(timeout=30)
        self.parts = [TopicPartition(t, p, 0) for t in topics for p in sorted(meta.topics[t].partitions)]
        self.consumer.assign(self.parts)
        self.records: Counter[str] = Counter()
        self.copies: dict[str, dict[tuple[int, int], set[str]]] = {t: {} for t in topics}
        self.copy_count: dict[str, Counter[tuple[int, int]]] = {t: Counter() for t in topics}

    def ends(self) -> dict[tuple[str, int], int]:
        return {(tp.topic, tp.partition): self.consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in self.parts}

    def read(self, timeout_s: float = 120.0) -> bool:
        """Read up to the end offsets as they are now; False if that took longer than `timeout_s`."""
        from confluent_kafka import TopicPartition

        ends = self.ends()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for msg in self.consumer.consume(2000, 0.5):
                if msg.error() or msg.value() is None:
                    continue
                value = json.loads(msg.value())
                source = value["source"]
                position = (int(source["sequence_number"]), int(source["ordinal"]))
                topic = msg.topic()
                self.records[topic] += 1
                self.copy_count[topic][position] += 1
                self.copies[topic].setdefault(position, set()).add(content_hash(value))
            now = self.consumer.position([TopicPartition(t, p) for t, p in ends])
            if all(tp.offset >= ends[(tp.topic, tp.partition)] or (ends[(tp.topic, tp.partition)] == 0)
                   for tp in now):
                return True
        return False

    def close(self) -> None:
        self.consumer.close()


def expected_events(settings: Any, table: str) -> dict[tuple[int, int], str]:
    """Every change event of the table's history, re-derived here: position → content hash."""
    from icetide.catalog import pyiceberg_catalog
    from icetide.events import to_json
    from streaming.changelog import Changelog

    loaded = pyiceberg_catalog(settings).load_table(table)
    changelog = Changelog(loaded, settings.catalog.name, None, settings.cdc.topic_prefix)
    return {e.source.position: content_hash(json.loads(to_json(e))) for e in changelog.events(None)}


def census(reader: TopicReader, topic: str, expected: dict[tuple[int, int], str]) -> dict[str, Any]:
    """Kafka records of one topic against the table's re-derived changelog."""
    seen = reader.copy_count[topic]
    copies = reader.copies[topic]
    missing = [p for p in expected if p not in seen]
    unexpected = [p for p in seen if p not in expected]
    differing = [p for p in expected if p in copies and copies[p] != {expected[p]}]
    return {
        "records": reader.records[topic], "distinct_positions": len(seen),
        "duplicate_records": reader.records[topic] - len(seen),
        "positions_published_more_than_once": sum(1 for n in seen.values() if n > 1),
        "expected_events": len(expected), "missing": len(missing), "unexpected": len(unexpected),
        "content_differs_from_changelog": len(differing),
        "examples": {"missing": sorted(missing)[:5], "unexpected": sorted(unexpected)[:5],
                     "differing": sorted(differing)[:5]},
    }


def row_diff(settings: Any, sink: Any, table: str) -> dict[str, Any]:
    """Source rows vs downstream rows as multisets of (id, ver, v): what is missing or extra downstream."""
    from icetide.catalog import pyiceberg_catalog

    source = Counter((r["id"], r["ver"], r["v"]) for r in
                     pyiceberg_catalog(settings).load_table(table).scan().to_arrow().to_pylist())
    namespace, _, name = table.partition(".")
    down = Counter((r["id"], r["ver"], r["v"]) for r in sink.read_rows((namespace, name)))
    missing, extra = source - down, down - source
    return {"source_rows": sum(source.values()), "downstream_rows": sum(down.values()),
            "missing_downstream": sum(missing.values()), "extra_downstream": sum(extra.values()),
            "examples": {"missing": sorted(missing)[:10], "extra": sorted(extra)[:10]}}
