"""The changelog invariant on real Spark-written tables (docs/architecture.md, "Changelog semantics").

For every pair of snapshots a < b: applying the changelog (a, b] to the table as of a gives
exactly the table as of b — for copy-on-write and merge-on-read tables, with and without
identifier fields, interleaved with compaction — and the same per key when the changes are derived in parallel
(streaming/derivation.py, 1, 2 and 4 lanes, units in a shuffled order). Hypothesis draws the operation sequences; the
example count is small by default (each example is a few Spark commits); raise it with
ICETIDE_CDC_EXAMPLES for a longer run. The invariant also runs on the REST catalog + S3
(ICETIDE_CDC_S3_EXAMPLES, 3 by default).
"""

from __future__ import annotations

import itertools
import os
import random
from collections import Counter, defaultdict
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from icetide.catalog import pyiceberg_catalog
from icetide.events import ChangeEvent, encode_row, identity, key_to_json
from streaming.changelog import Changelog
from streaming.derivation import lane_router, run_in_process
from streaming.poller import key_image
from tests.fixtures.lake import LAKE_CATALOG
from tests.fixtures.spark import fresh_table_name

pytestmark = pytest.mark.integration

MOR = {"write.delete.mode": "merge-on-read", "write.update.mode": "merge-on-read",
       "write.merge.mode": "merge-on-read"}
COW = {"write.delete.mode": "copy-on-write", "write.update.mode": "copy-on-write",
       "write.merge.mode": "copy-on-write"}
EXAMPLES = int(os.environ.get("ICETIDE_CDC_EXAMPLES", "8"))
# Shrinking re-runs Spark commits for minutes; on by request only (ICETIDE_CDC_SHRINK=1).
PHASES = [Phase.explicit, Phase.reuse, Phase.generate] + (
    [Phase.shrink] if os.environ.get("ICETIDE_CDC_SHRINK") else [])


# -- applying a changelog ------------------------------------------------------------------
def apply_events(state: Counter[str], events: list[ChangeEvent], keys: list[str]) -> Counter[str]:
    """Apply events to a table given as a multiset of row identities (by key when keyed)."""
    if not keys:
        out = Counter(state)
        for event in events:
            if event.before is not None:
                ident = identity(encode_row(event.before))
                assert out[ident] > 0, f"delete of a row that is not there: {event.before}"
                out[ident] -= 1
            if event.after is not None:
                out[identity(encode_row(event.after))] += 1
        return +out
    by_key: dict[str, dict[str, Any]] = {}
    for ident in state.elements():
        row = _row(ident)
        by_key[identity({k: row[k] for k in keys})] = row
    for event in events:
        if event.before is not None:
            key = identity({k: event.before[k] for k in keys})
            assert by_key.get(key) == encode_row(event.before), f"stale before image {event.before}"
            del by_key[key]
        if event.after is not None:
            key = identity({k: event.after[k] for k in keys})
            assert key not in by_key, f"insert of a key that exists: {event.after}"
            by_key[key] = encode_row(event.after)
    return Counter(identity(row) for row in by_key.values())


def _row(ident: str) -> dict[str, Any]:
    import json

    row: dict[str, Any] = json.loads(ident)
    return row


def table_as_of(spark: Any, table: str, snapshot_id: int | None) -> Counter[str]:
    if snapshot_id is None:
        return Counter()
    rows = spark.sql(f"SELECT * FROM {table} VERSION AS OF {int(snapshot_id)}").collect()
    return Counter(identity(encode_row(r.asDict())) for r in rows)


# -- writing tables with Spark -------------------------------------------------------------
def create_table(spark: Any, mode: dict[str, str], keyed: bool, partitioned: bool, version: int = 2) -> str:
    name = fresh_table_name("cdc")
    props = {"format-version": str(version), **mode}
    spark.sql(
        f"CREATE TABLE {name} (id BIGINT NOT NULL, v STRING, amount DECIMAL(10,2), p INT) USING iceberg"
        + (" PARTITIONED BY (p)" if partitioned else "")
        + " TBLPROPERTIES (" + ", ".join(f"'{k}'='{v}'" for k, v in props.items()) + ")"
    )
    if keyed:
        spark.sql(f"ALTER TABLE {name} SET IDENTIFIER FIELDS id")
    return name


def source_view(spark: Any, rows: list[tuple[int, str, int]]) -> None:
    from decimal import Decimal

    frame = spark.createDataFrame(
        [(i, v, Decimal(i) / 4, p) for i, v, p in rows], "id BIGINT, v STRING, amount DECIMAL(10,2), p INT"
    )
    frame.createOrReplaceTempView("cdc_src")


def run_op(spark: Any, table: str, op: tuple[Any, ...], fresh: itertools.count[int], keyed: bool) -> None:
    kind = op[0]
    if kind == "insert":
        rows = [((next(fresh) if keyed else i), v, p) for i, v, p in op[1]]
        source_view(spark, rows)
        spark.sql(f"INSERT INTO {table} SELECT * FROM cdc_src")
    elif kind == "update":
        _, lo, hi, value, move = op
        spark.sql(f"UPDATE {table} SET v = :v, amount = amount + 1{', p = 1 - p' if move else ''}"
                  " WHERE id BETWEEN :lo AND :hi", args={"v": value, "lo": lo, "hi": hi})
    elif kind == "delete":
        spark.sql(f"DELETE FROM {table} WHERE id BETWEEN :lo AND :hi", args={"lo": op[1], "hi": op[2]})
    elif kind == "merge":
        rows = list({i: (i, v, p) for i, v, p in op[1]}.values())  # one source row per id
        source_view(spark, rows)
        spark.sql(f"MERGE INTO {table} t USING cdc_src s ON t.id = s.id "
                  "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *")
    elif kind == "compact":
        # CALL takes no bound parameters; the name is a generated identifier, not user input
        spark.sql(f"CALL {spark.catalog.currentCatalog()}.system.rewrite_data_files(table => '{table}', "
                  "options => map('rewrite-all', 'true'))")


row = st.tuples(st.integers(0, 12), st.sampled_from(["a", "b", "c"]), st.integers(0, 1))
ops = st.one_of(
    st.tuples(st.just("insert"), st.lists(row, min_size=1, max_size=6)),
    st.tuples(st.just("update"), st.integers(0, 12), st.integers(0, 12), st.sampled_from(["x", "y"]),
              st.booleans()),
    st.tuples(st.just("delete"), st.integers(0, 12), st.integers(0, 12)),
    st.tuples(st.just("merge"), st.lists(row, min_size=1, max_size=4)),
    st.tuples(st.just("compact")),
)


def check_all_pairs(spark: Any, base_settings: Any, table: str) -> None:
    changelog = Changelog(pyiceberg_catalog(base_settings).load_table(table), "lake")
    keys = changelog.key_fields
    chain = [s.snapshot_id for s in changelog.snapshots_between(None, changelog.current_snapshot_id)]
    states = {sid: table_as_of(spark, table, sid) for sid in [None, *chain]}
    for sid in chain:  # the initial-snapshot read (op "r") is the table as of that snapshot
        initial = Counter(identity(encode_row(e.row)) for e in changelog.initial_events(sid))
        assert initial == states[sid], f"initial read of {sid}"
    for a, b in itertools.combinations([None, *chain], 2):
        events = list(changelog.events(a, b))
        assert apply_events(states[a], events, keys) == states[b], f"changelog ({a}, {b}] of {table}"
        ordinals = [(e.source.snapshot_id, e.source.ordinal) for e in events]
        assert len(set(ordinals)) == len(ordinals)
        if keys:  # the net-changes mode has the same effect, with at most one event per key
            net = changelog.net_events(a, b)
            assert apply_events(states[a], net, keys) == states[b], f"net changes ({a}, {b}] of {table}"
            assert len({identity({k: e.row[k] for k in keys}) for e in net}) == len(net)
    for a in [None, *chain[1:2]]:
        check_parallel(changelog, states, a, chain[-1], table)


def _per_key(events: list[ChangeEvent], keys: list[str]) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = defaultdict(list)
    for e in events:
        out[identity({k: e.row[k] for k in keys} if keys else e.row)].append(
            (e.op, e.before, e.after, e.source.snapshot_id))
    return out


def check_parallel(changelog: Changelog, states: dict[int | None, Counter[str]], a: int | None, b: int,
                   table: str) -> None:
    """Parallel derivation (streaming/derivation.py) at 1, 2 and 4 lanes, units derived in a shuffled
    order: per key the serial engine's events (content and order); per lane increasing, unique ordinals;
    and the changelog invariant on what the lanes publish together."""
    keys = changelog.key_fields
    serial = _per_key(list(changelog.events(a, b)), keys)
    for lanes in (1, 2, 4):
        rng = random.Random(lanes)
        lane_of = lane_router(lambda row: key_to_json(key_image(row, keys), True), lanes)
        out = run_in_process(changelog, a, b, lanes, lane_of,
                             order=lambda shares, rng=rng: rng.sample(shares, len(shares)))
        merged = [e for lane in out for e in lane]
        assert _per_key(merged, keys) == serial, f"events per key at {lanes} lanes, ({a}, {b}] of {table}"
        for lane, events in enumerate(out):
            positions = [e.source.position for e in events]
            assert positions == sorted(set(positions)), f"lane {lane}: positions not increasing"
            assert all(e.source.ordinal % lanes == lane for e in events)
        merged.sort(key=lambda e: e.source.sequence_number)  # lanes of one snapshot commute (different keys)
        assert apply_events(states[a], merged, keys) == states[b], f"parallel changelog ({a}, {b}] of {table}"


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True, phases=PHASES,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(mode=st.sampled_from([COW, MOR]), keyed=st.booleans(), partitioned=st.booleans(),
       version=st.sampled_from([2, 3]), steps=st.lists(ops, min_size=2, max_size=6))
def test_changelog_invariant(spark: Any, base_settings: Any, mode: dict[str, str], keyed: bool,
                             partitioned: bool, version: int, steps: list[tuple[Any, ...]]) -> None:
    """Format v3 merge-on-read writes deletion vectors (Puffin) instead of position delete files."""
    table = create_table(spark, mode, keyed, partitioned, version)
    fresh = itertools.count(100)
    run_op(spark, table, ("insert", [(i, "a", i % 2) for i in range(6)]), fresh, keyed)
    for op in steps:
        run_op(spark, table, op, fresh, keyed)
    check_all_pairs(spark, base_settings, table)
    spark.sql(f"DROP TABLE {table}")


S3_EXAMPLES = int(os.environ.get("ICETIDE_CDC_S3_EXAMPLES", "3"))


@settings(max_examples=S3_EXAMPLES, deadline=None, derandomize=True, phases=PHASES,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(mode=st.sampled_from([COW, MOR]), keyed=st.booleans(), partitioned=st.booleans(),
       version=st.sampled_from([2, 3]), steps=st.lists(ops, min_size=2, max_size=4))
def test_changelog_invariant_on_rest_and_s3(lake_spark: Any, lake_settings: Any, mode: dict[str, str], keyed: bool,
                                            partitioned: bool, version: int, steps: list[tuple[Any, ...]]) -> None:
    """The same invariant on the REST catalog + S3 (the session's lake, tests/fixtures/lake.py), fewer examples."""
    spark = lake_spark
    spark.sql(f"USE {LAKE_CATALOG}")  # unqualified names (test.cdc_…) resolve in the lake's catalog
    try:
        table = create_table(spark, mode, keyed, partitioned, version)
        fresh = itertools.count(100)
        run_op(spark, table, ("insert", [(i, "a", i % 2) for i in range(6)]), fresh, keyed)
        for op in steps:
            run_op(spark, table, op, fresh, keyed)
        check_all_pairs(spark, lake_settings, table)
        spark.sql(f"DROP TABLE {table}")
    finally:
        spark.sql("USE lake")


@pytest.mark.parametrize(("mode", "version"), [(COW, 2), (MOR, 2), (MOR, 3)], ids=["cow", "mor", "mor-v3-dv"])
def test_mor_and_cow_updates_pair_by_key(spark: Any, base_settings: Any, mode: dict[str, str],
                                         version: int) -> None:
    table = create_table(spark, mode, keyed=True, partitioned=True, version=version)
    fresh = itertools.count(0)
    run_op(spark, table, ("insert", [(0, "a", 0), (0, "b", 0), (0, "c", 1)]), fresh, True)
    run_op(spark, table, ("update", 1, 1, "x", True), fresh, True)
    run_op(spark, table, ("delete", 2, 2), fresh, True)
    run_op(spark, table, ("compact",), fresh, True)
    changelog = Changelog(pyiceberg_catalog(base_settings).load_table(table), "lake")
    events = list(changelog.events(None))
    assert [(e.op, e.row["id"]) for e in events] == [("c", 0), ("c", 1), ("c", 2), ("u", 1), ("d", 2)]
    update = events[3]
    assert update.before is not None and update.after is not None
    assert (update.before["v"], update.before["p"], update.after["v"], update.after["p"]) == ("b", 0, "x", 1)
    assert [e.source.ordinal for e in events] == [0, 1, 2, 0, 0]
    check_all_pairs(spark, base_settings, table)


def test_cow_matches_icebergs_changelog_view(spark: Any, base_settings: Any) -> None:
    """Iceberg's own create_changelog_view (identifier columns, updates computed) is the oracle."""
    table = create_table(spark, COW, keyed=False, partitioned=True)
    fresh = itertools.count(0)
    for op in [("insert", [(i, "a", i % 2) for i in range(8)]), ("update", 2, 4, "x", False),
               ("delete", 5, 6), ("merge", [(1, "m", 1), (20, "n", 0)]), ("compact",),
               ("update", 0, 20, "z", True), ("insert", [(30, "q", 1)])]:
        run_op(spark, table, op, fresh, keyed=False)
    spark.sql(f"CALL lake.system.create_changelog_view(table => '{table}', changelog_view => 'cdc_oracle', "
              "identifier_columns => array('id'), compute_updates => true)")
    names = ["id", "v", "amount", "p"]
    oracle = Counter(
        (r["_commit_snapshot_id"], r["_change_type"], identity(encode_row({n: r[n] for n in names})))
        for r in spark.sql("SELECT * FROM cdc_oracle").collect()
    )
    changelog = Changelog(pyiceberg_catalog(base_settings).load_table(table), "lake", key_fields=["id"])
    ours: Counter[tuple[int, str, str]] = Counter()
    kinds = {"c": "INSERT", "d": "DELETE"}
    for e in changelog.events(None):
        if e.op == "u":
            assert e.before is not None and e.after is not None
            ours[(e.source.snapshot_id, "UPDATE_BEFORE", identity(encode_row(e.before)))] += 1
            ours[(e.source.snapshot_id, "UPDATE_AFTER", identity(encode_row(e.after)))] += 1
        else:
            ours[(e.source.snapshot_id, kinds[e.op], identity(encode_row(e.row)))] += 1
    assert ours == oracle


def flink_upsert(flink_tables: Any, table: str, rows: list[tuple[int, str, int]]) -> None:
    """One Flink job writing `rows` in upsert mode (equality deletes by key)."""
    from decimal import Decimal

    from pyflink.table import DataTypes

    schema = DataTypes.ROW([DataTypes.FIELD("id", DataTypes.BIGINT().not_null()),
                            DataTypes.FIELD("v", DataTypes.STRING()),
                            DataTypes.FIELD("amount", DataTypes.DECIMAL(10, 2)),
                            DataTypes.FIELD("p", DataTypes.INT())])
    values = [(i, v, Decimal(i) / 4, p) for i, v, p in rows]
    flink_tables.from_elements(values, schema).execute_insert(f"lake.{table}").wait()


def test_flink_upsert_equality_deletes_with_spark_row_level_ops(spark: Any, base_settings: Any,
                                                                flink_tables: Any) -> None:
    """A table written by Flink in upsert mode (equality deletes), then by Spark (position deletes)."""
    table = fresh_table_name("upsert")
    flink_tables.execute_sql(
        f"CREATE TABLE lake.{table} (id BIGINT NOT NULL, v STRING, amount DECIMAL(10,2), p INT, "
        "PRIMARY KEY (id) NOT ENFORCED) WITH ('format-version' = '2', 'write.upsert.enabled' = 'true', "
        "'write.delete.mode' = 'merge-on-read', 'write.update.mode' = 'merge-on-read')"
    ).wait()
    fresh = itertools.count(100)
    flink_upsert(flink_tables, table, [(1, "a", 0), (2, "b", 0), (3, "c", 1)])
    flink_upsert(flink_tables, table, [(1, "a2", 0), (4, "d", 1)])
    spark.sql(f"REFRESH TABLE {table}")
    run_op(spark, table, ("delete", 2, 2), fresh, keyed=True)
    run_op(spark, table, ("update", 3, 4, "x", False), fresh, keyed=True)
    flink_upsert(flink_tables, table, [(1, "a3", 0), (2, "b2", 1)])
    spark.sql(f"REFRESH TABLE {table}")
    changelog = Changelog(pyiceberg_catalog(base_settings).load_table(table), "lake")
    assert changelog.key_fields == ["id"]
    per_snapshot: dict[int, list[tuple[str, int]]] = {}
    for e in changelog.events(None):
        per_snapshot.setdefault(e.source.snapshot_id, []).append((e.op, e.row["id"]))
    assert [sorted(ops) for ops in per_snapshot.values()] == [
        [("c", 1), ("c", 2), ("c", 3)], [("c", 4), ("u", 1)], [("d", 2)], [("u", 3), ("u", 4)],
        [("c", 2), ("u", 1)]]
    check_all_pairs(spark, base_settings, table)
