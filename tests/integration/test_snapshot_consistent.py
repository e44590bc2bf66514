"""`cdc apply --snapshot-consistent`: a reader of the downstream database only sees source states.

Spark writes five large multi-row snapshots (an insert, an UPDATE of every row, a MERGE that
updates, deletes and inserts, a DELETE, another UPDATE) to a keyed table whose topic has three
partitions; the real Flink job publishes them twice (`--once`, then `--once --reset`: every event
and every BEGIN/END again, at new offsets — what an at-least-once restart does). The consumer
applies them into SQLite (WAL) in small Kafka batches while a separate process reads the
downstream table in its own transactions as fast as it can and records every state it sees.
Each state is compared with the table as of each snapshot (read with PyIceberg): without
`--snapshot-consistent` the reader catches intermediate states (a snapshot spans many batches,
each its own commit); with it, never — and both end equal to the source.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from connectors.consumer import ChangeConsumer, ConsumeOptions
from connectors.sqlite import SqliteConfig, SqliteSink, table_name
from icetide.catalog import pyiceberg_catalog
from icetide.events import loads, topic_for, transaction_id, transaction_topic
from icetide.settings import load_settings
from tests.fixtures.kafka import consume_all, create_topic
from tests.fixtures.spark import fresh_table_name

pytestmark = pytest.mark.integration
ROWS = 3000

# The reader: a loop of read transactions on the downstream table; one line per new state seen.
READER = textwrap.dedent("""
    import hashlib, sqlite3, sys, time
    from pathlib import Path
    path, table, out, stop = sys.argv[1:5]
    while not Path(path).exists():
        time.sleep(0.005)
    conn = sqlite3.connect(path, isolation_level=None, timeout=30)
    seen, reads = set(), 0
    with open(out, "w") as sink:
        while not Path(stop).exists():
            conn.execute("BEGIN")
            try:
                rows = conn.execute(f'SELECT id, qty, grp FROM "{table}"').fetchall()
            except sqlite3.OperationalError:  # not created yet
                rows = []
            conn.execute("COMMIT")
            reads += 1
            state = hashlib.sha256(repr(sorted(rows)).encode()).hexdigest()
            if state not in seen:
                seen.add(state)
                sink.write(f"{state} {len(rows)}\\n")
                sink.flush()
        sink.write(f"reads {reads}\\n")
""")


def fingerprint(rows: list[tuple[int, int, int]]) -> str:
    return hashlib.sha256(repr(sorted(rows)).encode()).hexdigest()


def cdc_run(state_dir: Path, prefix: str, *args: str) -> dict[str, Any]:
    env = {**os.environ, "ICETIDE__STACK__STATE_DIR": str(state_dir), "ICETIDE__CDC__TOPIC_PREFIX": prefix}
    proc = subprocess.run([sys.executable, "-m", "icetide.cli", "cdc", "run", "--once", "--json", *args],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary: dict[str, Any] = json.loads(proc.stdout)
    return summary


def write_snapshots(spark: Any, table: str) -> None:
    spark.sql(f"CREATE TABLE {table} (id BIGINT NOT NULL, qty BIGINT, grp INT) USING iceberg "
              "TBLPROPERTIES ('format-version'='2', 'write.delete.mode'='merge-on-read', "
              "'write.update.mode'='merge-on-read', 'write.merge.mode'='merge-on-read')")
    spark.sql(f"ALTER TABLE {table} SET IDENTIFIER FIELDS id")
    spark.sql(f"INSERT INTO {table} SELECT id, id * 10, CAST(id % 7 AS INT) FROM range({ROWS})")
    spark.sql(f"UPDATE {table} SET qty = qty + 1")
    spark.sql(f"MERGE INTO {table} t USING (SELECT id, CAST(id % 7 AS INT) AS grp FROM range({ROWS // 2}, "
              f"{ROWS + ROWS // 2})) s ON t.id = s.id "
              "WHEN MATCHED AND s.id % 5 = 0 THEN DELETE "
              "WHEN MATCHED THEN UPDATE SET qty = t.qty * 2 "
              "WHEN NOT MATCHED THEN INSERT (id, qty, grp) VALUES (s.id, 7, s.grp)")
    spark.sql(f"DELETE FROM {table} WHERE id % 3 = 0")
    spark.sql(f"UPDATE {table} SET qty = qty - 1, grp = grp + 1 WHERE id % 2 = 1")


def apply_watched(settings_env: dict[str, str], db: Path, ref: tuple[str, str], topic: str,
                  consistent: bool) -> tuple[list[str], int, Any]:
    """Apply with a concurrent reader process; (states the reader saw, its reads, the summary)."""
    out, stop = db.with_suffix(".states"), db.with_suffix(".stop")
    settings = load_settings(None, environ={**settings_env, "ICETIDE__SINK__GROUP_ID": f"g-{uuid.uuid4().hex[:8]}"})
    sink = SqliteSink(SqliteConfig(db))
    sink.open()  # the file is in WAL mode before the reader opens it
    reader = subprocess.Popen([sys.executable, "-c", READER, str(db), table_name(ref), str(out), str(stop)])
    try:
        options = ConsumeOptions(once=True, batch_size=25, snapshot_consistent=consistent)  # default topics
        summary = ChangeConsumer(settings, sink, settings.kafka.bootstrap_servers or "", options).run()
    finally:
        sink.close()
        stop.touch()
        reader.wait(timeout=60)
    assert summary.topics == sorted([topic, *([transaction_topic(settings.cdc.topic_prefix)] if consistent else [])])
    lines = out.read_text().splitlines()
    assert lines[-1].startswith("reads ")
    return [line.split()[0] for line in lines[:-1]], int(lines[-1].split()[1]), summary


def test_a_reader_sees_only_source_states_with_snapshot_consistent(spark: Any, base_settings: Any,
                                                                    kafka_bootstrap: str, session_dir: Path,
                                                                    tmp_path: Path) -> None:
    table = fresh_table_name("consistent")
    namespace, name = table.split(".")
    prefix = f"snap{uuid.uuid4().hex[:8]}"
    topic = create_topic(kafka_bootstrap, topic_for(prefix, namespace, name), partitions=3)
    write_snapshots(spark, table)

    first = cdc_run(session_dir, prefix, "--tables", table)
    again = cdc_run(session_dir, prefix, "--tables", table, "--reset")  # every record once more
    assert again["events"] == first["events"] > 5 * ROWS // 2

    # the table as of each snapshot: the only states a reader may see (and the empty table)
    iceberg = pyiceberg_catalog(base_settings).load_table(table)
    snapshots = [s for s in iceberg.metadata.snapshots]
    states = {fingerprint([]): "empty"}
    for snap in snapshots:
        rows = iceberg.scan(snapshot_id=snap.snapshot_id).to_arrow().to_pylist()
        states[fingerprint([(r["id"], r["qty"], r["grp"]) for r in rows])] = str(snap.snapshot_id)
    assert len(states) == len(snapshots) + 1

    # the boundaries: per snapshot a BEGIN and an END with its event count, twice (the --reset run)
    boundaries = [loads(m.value()) for m in consume_all(kafka_bootstrap, transaction_topic(prefix), 30)]
    ends = [b for b in boundaries if b["status"] == "END"]
    assert len(ends) == 2 * len(snapshots) and len(boundaries) == 2 * len(ends)
    assert sum(b["event_count"] for b in ends) == 2 * first["events"]
    assert {b["id"] for b in ends} == {transaction_id(namespace, name, s.snapshot_id) for s in snapshots}
    assert all(b["data_collections"] == [{"data_collection": table, "event_count": b["event_count"]}] for b in ends)
    event = loads(consume_all(kafka_bootstrap, topic, 30)[0].value())
    assert event["transaction"]["id"] == transaction_id(namespace, name, event["source"]["snapshot_id"])
    assert event["transaction"]["total_order"] == event["source"]["ordinal"] + 1

    env = {"ICETIDE__STACK__STATE_DIR": str(session_dir), "ICETIDE__KAFKA__BOOTSTRAP_SERVERS": kafka_bootstrap,
           "ICETIDE__CDC__TOPIC_PREFIX": prefix}
    final = fingerprint([(r["id"], r["qty"], r["grp"]) for r in iceberg.scan().to_arrow().to_pylist()])
    ref = (namespace, name)

    seen, reads, plain = apply_watched(env, tmp_path / "plain.db", ref, topic, consistent=False)
    foreign = [s for s in seen if s not in states]
    assert plain.applied == first["events"] and plain.replayed == first["events"]
    assert seen[-1] == final
    assert foreign, f"{reads} reads saw no intermediate state without --snapshot-consistent"
    print(f"without --snapshot-consistent: {len(seen)} states in {reads} reads, {len(foreign)} of them "
          f"no snapshot of the source")

    seen, reads, gated = apply_watched(env, tmp_path / "consistent.db", ref, topic, consistent=True)
    assert gated.applied == first["events"] and gated.held == 0
    assert seen[-1] == final
    assert [s for s in seen if s not in states] == [], f"intermediate states seen in {reads} reads"
    print(f"with --snapshot-consistent: {len(seen)} states in {reads} reads, each a snapshot of the source "
          f"(of {len(states)}, the empty table included)")

    # the command line: the flag reaches the consumer, the summary says nothing is held back
    cli_env = {**os.environ, **env, "ICETIDE__SINK__GROUP_ID": f"g-{uuid.uuid4().hex[:8]}",
               "ICETIDE__SINK__SQLITE_PATH": str(tmp_path / "cli.db")}
    proc = subprocess.run([sys.executable, "-m", "icetide.cli", "cdc", "apply", "--once", "--json",
                           "--snapshot-consistent", "--max-held-events", "20000"],
                          env=cli_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    assert (out["applied"], out["held"]) == (first["events"], 0)
    assert transaction_topic(prefix) in out["topics"]
    proc = subprocess.run([sys.executable, "-m", "icetide.cli", "cdc", "apply", "--once", "--snapshot-consistent",
                           "--max-held-events", "100"], env={**cli_env, "ICETIDE__SINK__SQLITE_PATH":
                                                              str(tmp_path / "small.db")},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "more than --max-held-events 100" in proc.stderr, proc.stderr[-2000:]
    with SqliteSink(SqliteConfig(tmp_path / "small.db")) as small:
        assert small.read_rows(ref) == []  # nothing of the first snapshot (3000 rows) was committed
