"""`cdc run` with parallel derivation (streaming/derivation.py, streaming/parallel_job.py) in PyFlink's
mini-cluster at parallelism 2: one table's snapshots derived by both subtasks, published through one lane per
partition of its topic.

What must hold on the real topic: per key, the serial engine's events (content and order, across snapshots);
each partition written by one lane only (ordinal ≡ partition mod lanes) with increasing event positions —
what the sinks' replay guard needs (connectors/base.py); END records whose counts are each snapshot's events.
The engine-level property over generated histories is in test_streaming_changelog.py (check_parallel).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from icetide.catalog import pyiceberg_catalog
from icetide.events import from_json, identity, topic_for, transaction_topic
from streaming.changelog import Changelog
from tests.fixtures.kafka import consume_all
from tests.fixtures.spark import fresh_table_name

pytestmark = pytest.mark.integration


def per_key(events: list[Any]) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for e in events:
        out[identity({"id": e.row["id"]})].append((e.op, json.dumps(e.before, sort_keys=True),
                                                   json.dumps(e.after, sort_keys=True), e.source.snapshot_id))
    return out


def test_one_table_in_parallel_equals_the_serial_changelog_per_key(spark: Any, base_settings: Any,
                                                                 kafka_bootstrap: str, session_dir: Path) -> None:
    table = fresh_table_name("par")
    spark.sql(f"CREATE TABLE {table} (id BIGINT NOT NULL, v STRING, p INT) USING iceberg PARTITIONED BY (p) "
              "TBLPROPERTIES ('format-version'='2', 'write.update.mode'='merge-on-read', "
              "'write.delete.mode'='merge-on-read', 'write.merge.mode'='copy-on-write')")
    spark.sql(f"ALTER TABLE {table} SET IDENTIFIER FIELDS id")
    for batch in range(3):  # several files per snapshot and per partition: units for both subtasks
        spark.sql(f"INSERT INTO {table} SELECT id, 'a', CAST(id % 4 AS INT) FROM range({batch * 400}, "
                  f"{(batch + 1) * 400}) DISTRIBUTE BY id % 7")
    spark.sql(f"UPDATE {table} SET v = 'b' WHERE id % 3 = 0")  # MoR: position deletes + new rows
    spark.sql(f"DELETE FROM {table} WHERE id % 10 = 1")
    spark.sql(f"MERGE INTO {table} t USING (SELECT id, 'c' AS v, CAST(id % 4 AS INT) AS p FROM range(1100, 1300)) s "
              "ON t.id = s.id WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT *")  # CoW
    prefix = f"par{abs(hash(table)) % 10_000}"
    env = {**os.environ, "ICETIDE__STACK__STATE_DIR": str(session_dir), "ICETIDE__FLINK__PARALLELISM": "2",
           "ICETIDE__CDC__TOPIC_PREFIX": prefix,
           "ICETIDE__CDC__CHUNK_EVENTS": "500"}  # the planner takes the six snapshots over several ticks
    proc = subprocess.run([sys.executable, "-m", "icetide.cli", "cdc", "run", "--once", "--json", "--tables", table],
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)

    changelog = Changelog(pyiceberg_catalog(base_settings).load_table(table), "lake")
    serial = list(changelog.events(None))
    by_op: dict[str, int] = defaultdict(int)
    for e in serial:
        by_op[e.op] += 1
    assert result["tables"][table]["by_op"] == dict(by_op)

    messages = consume_all(kafka_bootstrap, topic_for(prefix, *table.split(".")), timeout_s=60)
    lanes = 1 + max(m.partition() for m in messages)
    assert lanes == 2, "the table's topic is created with a partition per subtask"
    published = [from_json(m.value()) for m in messages]
    assert per_key(published) == per_key(serial)  # per key: same events, same order, each once
    by_partition: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for m, event in zip(messages, published, strict=True):
        by_partition[m.partition()].append(event.source.position)
        assert event.source.ordinal % lanes == m.partition(), "a partition is written by its own lane only"
    for positions in by_partition.values():
        assert positions == sorted(set(positions)), "event positions increase within a partition"

    ends = [json.loads(m.value()) for m in consume_all(kafka_bootstrap, transaction_topic(prefix), timeout_s=60)]
    counted = {e["snapshot_id"]: e["event_count"] for e in ends if e["status"] == "END"}
    per_snapshot: dict[int, int] = defaultdict(int)
    for e in serial:
        per_snapshot[e.source.snapshot_id] += 1
    assert counted == dict(per_snapshot)

    # an initial read (op "r" of every live row) derived in parallel: the engine's rows, each once
    initial_prefix = f"{prefix}i"
    proc = subprocess.run([sys.executable, "-m", "icetide.cli", "cdc", "run", "--once", "--json", "--tables", table,
                           "--start", "initial", "--reset"],
                          env={**env, "ICETIDE__CDC__TOPIC_PREFIX": initial_prefix}, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    head = changelog.current_snapshot_id
    assert head is not None
    rows = [from_json(m.value()) for m in consume_all(kafka_bootstrap, topic_for(initial_prefix, *table.split(".")),
                                                      timeout_s=60)]
    assert per_key(rows) == per_key(list(changelog.initial_events(head)))


def test_lane_keys_are_spread_over_subtasks_as_flink_assigns_them() -> None:
    """`lane_key` computes Flink's key group itself. PyFlink's `key_by` partitions on a one-field Row
    holding the key (`KeyByKeySelector`, key type `Types.ROW([key_type])`), not on the String: Flink's
    own assignment of that Row (in the JVM PyFlink starts) must agree, and with as many subtasks as lanes
    each lane gets its own subtask (a lane pair on one subtask halves the job's parallelism silently)."""
    from pyflink.java_gateway import get_gateway

    from icetide import jvm
    from streaming.parallel_job import MAX_PARALLELISM, _key_group, lane_key

    with jvm.gateway_launch({}):
        java = get_gateway().jvm
    assignment = java.org.apache.flink.runtime.state.KeyGroupRangeAssignment

    def row(key: str) -> object:
        wrapped = java.org.apache.flink.types.Row(1)
        wrapped.setField(0, key)
        return wrapped

    for key in ["", "a", "sales.vendas#0#0", "ß-ü-€-𝄞", "x" * 100, *(f"db.t#{i}#{i * 7}" for i in range(50))]:
        assert _key_group(key) == assignment.assignToKeyGroup(row(key), MAX_PARALLELISM), key
    for lanes in (2, 3, 4, 8):
        subtasks = [assignment.assignKeyToParallelOperator(row(lane_key("db.t", lane, lanes)), MAX_PARALLELISM,
                                                           lanes) for lane in range(lanes)]
        assert subtasks == list(range(lanes))
