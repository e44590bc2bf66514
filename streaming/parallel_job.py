"""The CDC job's stream graph under parallel derivation (`streaming/derivation.py`), and its operators.

::

    table names → key_by(table) → PlanSnapshots   position + plan counter in keyed state; units out
      → rebalance → DeriveUnits (any subtask)      one share per lane per unit
      → key_by(table#lane) → PublishLane           shares held in keyed state until a snapshot is whole;
                                                   pairing, encoding, tombstones, audiences → Kafka rows
      (transaction metadata) lane notices → key_by(table) → CloseSnapshots → BEGIN/END rows

Everything Flink checkpoints — planner positions, units and shares in flight, held shares — is taken
together, so a restore resumes inside a snapshot exactly. The planner keeps the serial operator's uid
and state name (`cdc-publish`, `position`): a job stopped at a snapshot boundary resumes in either shape.
The plain-Python work of each operator is a class here (`Planner`, `LanePublisher`, `SnapshotCloser`);
the Flink classes only move state and records.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from icetide.events import topic_for, transaction_topic

from streaming.derivation import LaneBook, Share, Unit, derive_shares, lane_events, lane_router, plan_units, release
from streaming.once import planned_groups
from streaming.poller import Encoder, Position, Record, make_encoder, schema_change, schema_topic, tombstone
from streaming.transactions import TRANSACTION_OP, boundary
from streaming.worker import Tally

if TYPE_CHECKING:
    from streaming.changelog import Changelog
    from streaming.job import JobOptions
    from streaming.metrics import CdcMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LaneDone:
    """A lane released a snapshot with `count` change events (the END collector adds the lanes' counts)."""

    table: str
    plan_no: int
    snapshot_id: int
    lanes: int
    count: int


@dataclass
class PlanState:
    """The planner's counter beside the position: snapshots planned, the lane count, from which plan on."""

    planned: int = 0
    lanes: int = 0
    since: int = 1


class Changelogs:
    """One `Changelog` per table in a subtask, refreshed when a unit names a snapshot it has not seen."""

    def __init__(self, options: JobOptions) -> None:
        from icetide.catalog import pyiceberg_catalog

        self._options = options
        self._catalog = pyiceberg_catalog(options.settings, "cdc")
        self._open: dict[str, Changelog] = {}

    def get(self, table: str, snapshot_id: int | None = None) -> Changelog:
        from streaming.changelog import Changelog

        changelog = self._open.get(table)
        if changelog is None:
            settings = self._options.settings
            changelog = self._open[table] = Changelog(self._catalog.load_table(table), settings.catalog.name,
                                                      self._options.key_fields.get(table), settings.cdc.topic_prefix)
        if snapshot_id is not None and changelog._table.metadata.snapshot_by_id(snapshot_id) is None:
            changelog.refresh()
        return changelog


class Planner:
    """Per table: the snapshots after the position, as units (`derivation.plan_units`)."""

    def __init__(self, options: JobOptions) -> None:
        self.options = options
        self.changelogs = Changelogs(options)

    def plan(self, table: str, position: Position, state: PlanState) -> Iterator[Unit | Position]:
        """Units of the next snapshots, and the Position after each planned snapshot (the caller stores
        it and `state`). A position inside a snapshot (a serial run stopped mid-snapshot) plans that
        snapshot whole: its first events are published again (positions let the sinks drop them)."""
        changelog = self.changelogs.get(table)
        changelog.refresh()
        lanes = self.options.lanes[table]
        if state.lanes != lanes:
            state.lanes, state.since = lanes, state.planned + 1
        if position.snapshot_id is not None and position.initial:
            yield from self._planned(plan_units(changelog, table, position.snapshot_id, state.planned + 1, lanes,
                                                state.since, initial=True), state)
            position = Position(position.snapshot_id, schema_id=position.schema_id)
            yield position
        elif position.snapshot_id is not None:
            log.warning("%s: resuming a serial position inside snapshot %s; its first %d events are published "
                        "again", table, position.snapshot_id, position.emitted)
            position = replace(position, snapshot_id=None, emitted=0)
        pending = changelog.snapshots_between(position.after, changelog.current_snapshot_id)
        for snapshot in (planned_groups(pending, self.options.settings.cdc.chunk_events) or [[]])[0]:
            units = plan_units(changelog, table, snapshot.snapshot_id, state.planned + 1, lanes, state.since)
            yield from self._planned(units, state)
            position = Position(snapshot.snapshot_id, schema_id=position.schema_id)
            yield position

    @staticmethod
    def _planned(units: list[Unit], state: PlanState) -> Iterator[Unit]:
        if units:  # a snapshot without changes is not planned: lanes never wait for it
            state.planned += 1
            yield from units


class Deriver:
    """Any subtask: a unit's rows, routed by the Kafka partition of their record key."""

    def __init__(self, options: JobOptions, encoder: Encoder | None = None) -> None:
        self.options = options
        self.changelogs = Changelogs(options)
        self.encoder = encoder or make_encoder(options.settings.cdc)

    def shares(self, unit: Unit) -> list[Share]:
        changelog = self.changelogs.get(unit.table, unit.snapshot_id)
        keys = changelog.key_fields
        topic = topic_for(self.options.settings.cdc.topic_prefix, changelog.namespace, changelog.name)
        schema_id = int(changelog.snapshot(unit.snapshot_id).schema_id or 0)
        encoder = self.encoder
        router = lane_router(lambda row: encoder.key(changelog, schema_id, topic, keys, row), unit.lanes)
        return derive_shares(changelog, unit, router)


@dataclass
class LaneOutput:
    """What releasing a snapshot in a lane gives: Kafka records and the notice for the END collector."""

    records: list[Record] = field(default_factory=list)
    done: LaneDone | None = None


class LanePublisher:
    """One lane (a table's Kafka partition): releases whole snapshots as records, counts them."""

    def __init__(self, options: JobOptions, metrics: CdcMetrics, encoder: Encoder | None = None) -> None:
        self.options = options
        self.metrics = metrics
        self.changelogs = Changelogs(options)
        self.encoder = encoder or make_encoder(options.settings.cdc)
        self.tallies: dict[tuple[str, int], Tally] = {}
        self.fanout: Any = None
        if options.policy_file is not None:
            from streaming.audiences import load_compiled
            from streaming.worker import AudienceFanout

            policy = load_compiled(options.policy_file, options.settings)
            self.fanout = AudienceFanout(policy, options.settings)
            metrics.policy_version.labels(policy.policy_id).set(policy.version)

    def release(self, shares: list[Share], last_schema: int | None) -> tuple[LaneOutput, int | None]:
        """The records of one planned snapshot in this lane (all its shares); lane 0 also announces a new
        schema. Returns them and the schema id now announced."""
        began = time.perf_counter()
        first = shares[0]
        cdc = self.options.settings.cdc
        changelog = self.changelogs.get(first.table, first.snapshot_id)
        keys = changelog.key_fields
        topic = topic_for(cdc.topic_prefix, changelog.namespace, changelog.name)
        lanes = self.options.lanes[first.table]
        events = list(lane_events(changelog, first.snapshot_id, release(shares, keys), first.lane, lanes))
        out = LaneOutput()
        tally = self.tallies.setdefault((first.table, first.lane), Tally())
        snapshot = changelog.snapshot(first.snapshot_id)
        if first.lane == 0 and snapshot.schema_id != last_schema and events:
            out.records.append(schema_change(changelog, events[0], last_schema, schema_topic(cdc.topic_prefix)))
            last_schema = snapshot.schema_id
        for event in events:
            record = self.encoder.record(changelog, event, topic, keys)
            out.records.append(replace(record, event=None))  # the event stays here: not pickled downstream
            tally.count(record)
            self.metrics.published(first.table, record.op, time.time() - record.commit_ts_ms / 1000)
            if self.fanout is not None:
                self.fanout.hold(record)
            if cdc.tombstones and keys and record.op == "d":
                out.records.append(tombstone(record))
        if self.fanout is not None:
            out.records += self.fanout.release(first.table, keys)
        if cdc.transaction_metadata:
            out.done = LaneDone(first.table, first.plan_no, first.snapshot_id, lanes, len(events))
        tally.last_snapshot = first.snapshot_id
        # per lane subtask: the table has published a snapshot once every subtask's gauge passed it (take the min)
        self.metrics.snapshot_done(first.table, snapshot.snapshot_id, snapshot.timestamp_ms)
        tally.busy_s += time.perf_counter() - began
        tally.write(self.options.run_dir, f"{first.table}.lane{first.lane}",
                    Position(first.snapshot_id, schema_id=last_schema))
        return out, last_schema


class SnapshotCloser:
    """Per table: BEGIN and END of a snapshot once every lane released it (`transactions.py`). Lanes
    release in plan order, each lane's notices arrive in order, so ENDs leave in plan order too."""

    def __init__(self, options: JobOptions) -> None:
        self.options = options
        self.changelogs = Changelogs(options)

    def add(self, pending: dict[int, list[int]], done: LaneDone) -> list[Record]:
        got = pending.setdefault(done.plan_no, [0, 0])
        got[0] += 1
        got[1] += done.count
        if got[0] < done.lanes:
            return []
        del pending[done.plan_no]
        if not got[1]:
            return []  # no events (carry-overs only): no transaction, as in the serial job
        changelog = self.changelogs.get(done.table, done.snapshot_id)
        snap = changelog.snapshot(done.snapshot_id)
        topic = transaction_topic(self.options.settings.cdc.topic_prefix)
        out = []
        for status, count in (("BEGIN", None), ("END", got[1])):
            key, value = boundary(changelog.namespace, changelog.name, snap.snapshot_id,
                                  int(snap.sequence_number or 0), snap.timestamp_ms, status, count)  # type: ignore[arg-type]
            out.append(Record(topic, key, value, TRANSACTION_OP, snap.timestamp_ms, snap.snapshot_id))
        return out


# -- the Flink side ------------------------------------------------------------------------------------
def build(options: JobOptions, names: Any) -> Any:
    """The graph above from the stream of table names; the stream of Row(topic, k, v) for the sinks."""
    from pyflink.common.typeinfo import Types
    from pyflink.datastream import OutputTag

    from streaming.job import flink_row_type


    pickled = Types.PICKLED_BYTE_ARRAY()
    units = (names.key_by(lambda name: name, key_type=Types.STRING())
             .process(_plan_function(options), output_type=pickled).uid("cdc-publish").name("plan snapshots"))
    shares = units.rebalance().flat_map(_derive_function(options), output_type=pickled).uid("cdc-derive") \
        .name("derive changes")
    # lanes emit Kafka rows straight to the sinks (each extra Python hop per record cost ≈ 20 µs: measured);
    # their per-snapshot counts leave through a side output
    notices = OutputTag("lane-done", pickled)
    rows = (shares.key_by(lambda share: lane_key(share.table, share.lane, options.lanes[share.table]),
                          key_type=Types.STRING())
            .process(_lane_function(options, notices), output_type=flink_row_type())
            .uid("cdc-lanes").name("publish lanes"))
    if options.settings.cdc.transaction_metadata:
        closes = (rows.get_side_output(notices).key_by(lambda done: done.table, key_type=Types.STRING())
                  .process(_close_function(options), output_type=flink_row_type())
                  .uid("cdc-close").name("close snapshots"))
        rows = rows.union(closes)
    return rows


MAX_PARALLELISM = 128  # Flink's default for parallelism < 86: the number of key groups


def lane_key(table: str, lane: int, lanes: int) -> str:
    """The Flink key of a lane, chosen so that the lanes of a table fall in evenly spread key groups (with
    as many subtasks as lanes, lane i runs on subtask i; a plain `table#i` would often put two lanes on
    one subtask). Depends only on (table, lane, lanes): a restore at another parallelism finds the state."""
    target = (lane * MAX_PARALLELISM + lanes - 1) // lanes  # the first key group of subtask `lane` of `lanes`
    suffix = 0
    while _key_group(f"{table}#{lane}#{suffix}") != target:
        suffix += 1
    return f"{table}#{lane}#{suffix}"


def _key_group(key: str) -> int:
    """Flink's `KeyGroupRangeAssignment.assignToKeyGroup` of the key PyFlink's `key_by` really partitions
    on: not the String but a one-field `Row` holding it (`KeyByKeySelector`), whose hashCode is the
    String's + 62 (`RowUtils.deepHashCodeInternal`, kind INSERT); then `MathUtils.murmurHash`."""
    def i32(value: int) -> int:
        value &= 0xFFFFFFFF
        return value - (1 << 32) if value & 0x80000000 else value

    def rotl(value: int, bits: int) -> int:
        value &= 0xFFFFFFFF
        return i32((value << bits) | (value >> (32 - bits)))

    code = 0
    for unit in key.encode("utf-16-be").hex(" ", 2).split():  # Java's String.hashCode over UTF-16 code units
        code = i32(31 * code + int(unit, 16))
    code = i32(code + 62)  # Row.of(key).hashCode()
    code = i32(code * 0xCC9E2D51)
    code = rotl(code, 15)
    code = i32(code * 0x1B873593)
    code = rotl(code, 13)
    code = i32(code * 5 + 0xE6546B64)
    code ^= 4
    code = i32(code ^ ((code & 0xFFFFFFFF) >> 16))
    code = i32(code * 0x85EBCA6B)
    code = i32(code ^ ((code & 0xFFFFFFFF) >> 13))
    code = i32(code * 0xC2B2AE35)
    code = i32(code ^ ((code & 0xFFFFFFFF) >> 16))
    code = code if code >= 0 else (-code if code != -(1 << 31) else 0)
    return code % MAX_PARALLELISM


def _row(record: Record) -> Any:
    from pyflink.common import Row

    return Row(record.topic, record.key, record.value)  # value None: a Kafka null (tombstone)


def _plan_function(options: JobOptions) -> Any:
    from pyflink.common.typeinfo import Types
    from pyflink.datastream.functions import KeyedProcessFunction, RuntimeContext
    from pyflink.datastream.state import ValueStateDescriptor

    from streaming.poller import start_position

    class PlanSnapshots(KeyedProcessFunction):  # type: ignore[misc]
        def __init__(self, opts: JobOptions) -> None:
            self.opts = opts

        def open(self, runtime_context: RuntimeContext) -> None:
            self.position = runtime_context.get_state(ValueStateDescriptor("position", Types.STRING()))
            self.plan_state = runtime_context.get_state(ValueStateDescriptor("plan", Types.PICKLED_BYTE_ARRAY()))
            self.planner = Planner(self.opts)

        def process_element(self, table: str, ctx: Any) -> Iterator[Any]:
            stored = self.position.value()
            if stored is not None:
                position = Position.from_json(stored)
            elif table in self.opts.seed_positions:
                position = Position.from_json(self.opts.seed_positions[table])
            else:
                from pyiceberg.exceptions import NoSuchTableError

                try:
                    position = start_position(self.planner.changelogs.get(table), self.opts.start)
                except NoSuchTableError:
                    return  # not created yet: try again on the next tick
                self.position.update(position.to_json())
            state = self.plan_state.value() or PlanState()
            for item in self.planner.plan(table, position, state):
                if isinstance(item, Position):
                    self.position.update(item.to_json())
                    self.plan_state.update(state)
                    position = item
                else:
                    yield item
            if self.opts.once:
                Tally(last_snapshot=position.after).write(self.opts.run_dir, table, position)

    return PlanSnapshots(options)


def _derive_function(options: JobOptions) -> Any:
    from pyflink.datastream.functions import FlatMapFunction, RuntimeContext

    class DeriveUnits(FlatMapFunction):  # type: ignore[misc]
        def __init__(self, opts: JobOptions) -> None:
            self.opts = opts

        def open(self, runtime_context: RuntimeContext) -> None:
            self.deriver = Deriver(self.opts)

        def flat_map(self, unit: Unit) -> Iterator[Share]:
            yield from self.deriver.shares(unit)

    return DeriveUnits(options)


def _lane_function(options: JobOptions, notices: Any) -> Any:
    from pyflink.common.typeinfo import Types
    from pyflink.datastream.functions import KeyedProcessFunction, RuntimeContext
    from pyflink.datastream.state import ListStateDescriptor, ValueStateDescriptor

    class PublishLane(KeyedProcessFunction):  # type: ignore[misc]
        def __init__(self, opts: JobOptions) -> None:
            self.opts = opts

        def open(self, runtime_context: RuntimeContext) -> None:
            from streaming.metrics import CdcMetrics
            from streaming.worker import MetricsEndpoint

            self.held = runtime_context.get_list_state(ListStateDescriptor("held", Types.PICKLED_BYTE_ARRAY()))
            self.book = runtime_context.get_state(ValueStateDescriptor("book", Types.PICKLED_BYTE_ARRAY()))
            self.schema = runtime_context.get_state(ValueStateDescriptor("schema", Types.PICKLED_BYTE_ARRAY()))
            self.metrics = CdcMetrics()
            self.publisher = LanePublisher(self.opts, self.metrics)
            self.endpoint = None
            if self.opts.metrics_port is not None:
                self.endpoint = MetricsEndpoint(self.metrics, self.opts.settings, self.opts.metrics_port,
                                                self.opts.run_dir, runtime_context.get_index_of_this_subtask())

        def close(self) -> None:
            if self.endpoint is not None:
                self.endpoint.close()

        def process_element(self, share: Share, ctx: Any) -> Iterator[Any]:
            book: LaneBook = self.book.value() or LaneBook()
            self.held.add(share)
            ready = book.add(share)
            self.book.update(book)
            if not ready:
                return
            held = list(self.held.get() or [])
            last_schema = self.schema.value()
            for plan_no in ready:
                mine = [s for s in held if s.plan_no == plan_no]
                held = [s for s in held if s.plan_no != plan_no]
                out, last_schema = self.publisher.release(mine, last_schema)
                yield from map(_row, out.records)
                if out.done is not None:
                    yield notices, out.done
            self.held.update(held)
            self.schema.update(last_schema)

    return PublishLane(options)


def _close_function(options: JobOptions) -> Any:
    from pyflink.common.typeinfo import Types
    from pyflink.datastream.functions import KeyedProcessFunction, RuntimeContext
    from pyflink.datastream.state import ValueStateDescriptor

    class CloseSnapshots(KeyedProcessFunction):  # type: ignore[misc]
        def __init__(self, opts: JobOptions) -> None:
            self.opts = opts

        def open(self, runtime_context: RuntimeContext) -> None:
            self.pending = runtime_context.get_state(ValueStateDescriptor("pending", Types.PICKLED_BYTE_ARRAY()))
            self.closer = SnapshotCloser(self.opts)

        def process_element(self, done: LaneDone, ctx: Any) -> Iterator[Any]:
            pending = self.pending.value() or {}
            records = self.closer.add(pending, done)
            self.pending.update(pending)
            yield from map(_row, records)

    return CloseSnapshots(options)

