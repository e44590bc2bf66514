"""Parallel changelog derivation inside one table: plan → derive anywhere → pair per key in lanes.

One table's changes used to be one keyed subtask's work (`poller.py`), so `flink.parallelism` could not
help a large table. Here a snapshot is cut into work units (its changed data files, `Changelog.plan`),
any subtask derives a unit (reads the file, applies the delete files before and after: the rows that
left or entered the table), and every row is routed by its key to a **lane**: one lane per Kafka
partition of the table's topic, the partition its record will land in (`partition_of`, Kafka's own
murmur2 partitioner on the record's key bytes). A lane holds the rows of a snapshot until every unit of
that snapshot has reported to it — each unit sends each lane a share, empty or not, so a lane knows when
it has them all — then releases the planned snapshots strictly in plan order: rows sorted back into the
engine's order (group, path, kind, position), carry-over removal and update pairing (`changes.py`).

Why that is exact: rows of one key (a keyless table: one identical row) all go to one lane, and every row
that can cancel or pair with another has the same key, so a lane computes, per key, what the serial
engine computes (`Changelog.plan`'s docstring says why groups never mix keys). The events per key —
content and order, within and across snapshots — are the serial engine's at any parallelism.

Why a lane per partition: the sinks drop an event at or below the last position applied per Kafka
partition (`connectors/base.py`), so each partition must receive positions in increasing order. One lane
writes one partition, and numbers its events of a snapshot `ordinal = i × lanes + lane` (i = 0, 1, … in
its release order): increasing within the partition, unique within the snapshot. Not dense: a snapshot's
ordinals are not 0..N-1, so transaction metadata (BEGIN/END with a count the gate checks ordinal by
ordinal) keeps the serial path.

Restarts: planner positions, units in flight and the lanes' held rows are Flink state, checkpointed
together, so a restore resumes inside a snapshot with nothing lost or doubled. Everything here is plain
Python; `job.py` wires it into Flink operators.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from icetide.events import Change, ChangeEvent, Row

from streaming.changelog import WorkItem
from streaming.changes import snapshot_changes

if TYPE_CHECKING:
    from streaming.changelog import Changelog

Order = tuple[str, str, str, int]  # (group, path, kind, row number in the file): the engine's order


@dataclass(frozen=True)
class Unit:
    """One work item of one planned snapshot, sent to any deriving subtask."""

    table: str
    snapshot_id: int
    plan_no: int  # 1, 2, … per table: lanes release snapshots in this order
    index: int  # 0 .. count-1 within the snapshot
    count: int  # units of the snapshot: a lane has all of it once `count` shares arrived
    lanes: int  # partitions of the table's topic when planned
    since: int  # the first plan_no planned with this many lanes (a new lane starts there)
    item: WorkItem


@dataclass
class Share:
    """What one unit gives one lane: its rows of that lane's keys (maybe none)."""

    table: str
    lane: int
    snapshot_id: int
    plan_no: int
    index: int
    count: int
    since: int
    rows: list[tuple[Order, str, Row]] = field(default_factory=list)  # (order, side "d"|"i"|"r", image)


def plan_units(changelog: Changelog, table: str, snapshot_id: int, plan_no: int, lanes: int, since: int,
               initial: bool = False) -> list[Unit]:
    """The units of one snapshot (its initial read with `initial`); none for a snapshot without changes."""
    snapshot = changelog.snapshot(snapshot_id)
    items = changelog.plan_initial(snapshot) if initial else changelog.plan(snapshot)
    return [Unit(table, snapshot_id, plan_no, i, len(items), lanes, since, item) for i, item in enumerate(items)]


def derive_shares(changelog: Changelog, unit: Unit, lane_of: Callable[[Row], int]) -> list[Share]:
    """Read one unit and split its rows by lane: one share per lane, in lane order."""
    shares = [Share(unit.table, lane, unit.snapshot_id, unit.plan_no, unit.index, unit.count, unit.since)
              for lane in range(unit.lanes)]
    item = unit.item
    snapshot = changelog.snapshot(unit.snapshot_id)
    for number, (side, row) in enumerate(changelog.derive(snapshot, item)):
        shares[lane_of(row)].rows.append(((item.group, item.path, item.kind, number), side, row))
    return shares


@dataclass
class LaneBook:
    """A lane's small bookkeeping (Flink keeps the held rows apart, append-only): which planned snapshot
    it released last, and per pending plan_no the snapshot and how many of its shares arrived."""

    released: int = 0
    pending: dict[int, tuple[int, int, int]] = field(default_factory=dict)  # plan_no → (snapshot, count, got)

    def add(self, share: Share) -> list[int]:
        """Count `share`; the plan numbers now releasable, in order (each one's shares are all in)."""
        if self.released == 0 and not self.pending:
            self.released = share.since - 1  # a new lane (the topic grew): nothing before `since` is its
        snapshot_id, count, got = self.pending.get(share.plan_no, (share.snapshot_id, share.count, 0))
        self.pending[share.plan_no] = (snapshot_id, count, got + 1)
        ready: list[int] = []
        while True:
            head = self.pending.get(self.released + 1)
            if head is None or head[2] < head[1]:
                return ready
            del self.pending[self.released + 1]
            self.released += 1
            ready.append(self.released)


def release(shares: Iterable[Share], key_fields: list[str]) -> list[Change]:
    """One lane's changes of one snapshot from all its shares: back in the engine's order, then carry-over
    removal and update pairing (initial reads: every row as op `r`)."""
    rows = sorted((row for share in shares for row in share.rows), key=lambda entry: entry[0])
    if rows and rows[0][1] == "r":
        return [Change("r", None, image) for _, _, image in rows]
    deletes = [image for _, side, image in rows if side == "d"]
    inserts = [image for _, side, image in rows if side == "i"]
    return snapshot_changes(deletes, inserts, key_fields)


def lane_events(changelog: Changelog, snapshot_id: int, changes: list[Change], lane: int,
                lanes: int) -> Iterator[ChangeEvent]:
    """The lane's events of a snapshot, ordinals i × lanes + lane (module docstring)."""
    snapshot = changelog.snapshot(snapshot_id)
    schema = changelog.schema_by_id(snapshot.schema_id)
    for i, change in enumerate(changes):
        yield changelog.event(change, snapshot, schema, i * lanes + lane)


# -- Kafka's partitioner ---------------------------------------------------------------------------
def murmur2(data: bytes) -> int:
    """Kafka's `Utils.murmur2` (the Java client's and librdkafka's `murmur2_random` partitioner), signed 32-bit."""
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    whole = length - length % 4
    for (k,) in struct.iter_unpack("<I", data[:whole]):
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = length % 4
    if tail == 3:
        h ^= data[whole + 2] << 16
    if tail >= 2:
        h ^= data[whole + 1] << 8
    if tail >= 1:
        h ^= data[whole]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives a record with this key (`toPositive(murmur2) % n`)."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions



def lane_router(key_of_row: Callable[[Row], bytes], lanes: int) -> Callable[[Row], int]:
    """Row → lane: the Kafka partition of its record key (`Encoder.key`)."""
    if lanes == 1:
        return lambda _row: 0
    return lambda row: partition_of(key_of_row(row), lanes)


def run_in_process(changelog: Changelog, after: int | None, upto: int | None, lanes: int,
                   lane_of: Callable[[Row], int], order: Callable[[list[Share]], list[Share]] | None = None,
                   table: str = "t") -> list[list[ChangeEvent]]:
    """The whole pipeline in one process: plan every snapshot of (after, upto], derive every unit, hand the
    shares to the lanes in the order `order` gives them (as subtasks would interleave them), release.
    The events each lane publishes, in its publishing order (tests compare them with the serial engine)."""
    shares: list[Share] = []
    plan_no = 0
    for snapshot in changelog.snapshots_between(after, upto):
        units = plan_units(changelog, table, snapshot.snapshot_id, plan_no + 1, lanes, 1)
        plan_no += bool(units)  # a snapshot without changes (compaction) is not planned: lanes never wait for it
        for unit in units:
            shares += derive_shares(changelog, unit, lane_of)
    books = [LaneBook() for _ in range(lanes)]
    held: list[list[Share]] = [[] for _ in range(lanes)]
    out: list[list[ChangeEvent]] = [[] for _ in range(lanes)]
    for share in order(shares) if order else shares:
        held[share.lane].append(share)
        for plan_no in books[share.lane].add(share):
            mine = [s for s in held[share.lane] if s.plan_no == plan_no]
            held[share.lane] = [s for s in held[share.lane] if s.plan_no != plan_no]
            changes = release(mine, changelog.key_fields)
            out[share.lane] += lane_events(changelog, mine[0].snapshot_id, changes, share.lane, lanes)
    assert not any(held), "every planned snapshot is released once all its shares arrived"
    return out
