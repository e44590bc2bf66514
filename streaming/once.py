"""What `cdc run --once` feeds its bounded job: each table named once per chunk of work it has.

A Python operator's output reaches the JVM through one unbounded buffer that the task thread drains only
between input elements: a single element that emits a whole large snapshot must fit the TaskManager's heap
in one go (a 200K-row snapshot did not fit a 1 GB TaskManager: Beam's data-plane thread died with
`OutOfMemoryError`). So a `--once` run works as a continuous one does, a chunk per element —
`cdc.chunk_events` change events at most (serial) or the snapshots one planning tick takes (parallel
derivation, `planned_groups`) — and its source names each table as many times as it has chunks, from
the snapshot summaries (`poller.estimated_events`, an upper bound but for equality deletes).

Should a table still be behind the snapshot that was current when the run began (an estimate too low),
`behind` says so and the run goes on with another round from the positions the last one stored.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from streaming.poller import Position, estimated_events, snapshot_estimate, start_position

if TYPE_CHECKING:
    from icetide.settings import Settings
    from pyiceberg.table.snapshots import Snapshot

    from streaming.changelog import Changelog

PLAN_AHEAD = 16  # snapshots one planning tick takes at most (Flink's back-pressure bounds what is in flight)


@dataclass(frozen=True)
class Pending:
    """One table's work at the start of a run: where it is, the snapshot to reach, the chunks between."""

    table: str
    position: Position
    target: int | None
    chunks: int


def planned_groups(snapshots: list[Snapshot], chunk_events: int) -> list[list[Snapshot]]:
    """Pending snapshots as the parallel planner takes them, a group per tick: snapshots until their
    estimated events reach `chunk_events` (at least one, at most PLAN_AHEAD)."""
    groups: list[list[Snapshot]] = []
    group: list[Snapshot] = []
    events = 0
    for snap in snapshots:
        group.append(snap)
        events += snapshot_estimate(snap)
        if events >= chunk_events or len(group) >= PLAN_AHEAD:
            groups.append(group)
            group, events = [], 0
    if group:
        groups.append(group)
    return groups


def pending(changelog: Changelog, table: str, position: Position, chunk_events: int, parallel: bool) -> Pending:
    """`table`'s chunks from `position` to the current snapshot; one more than the work needs (the serial
    poller may stop exactly at a snapshot's end and close it on the next element; an idle element costs one
    metadata refresh)."""
    target = changelog.current_snapshot_id
    if parallel:
        after = position.after
        ticks = 0
        if position.snapshot_id is not None and position.initial:
            ticks, after = 1, position.snapshot_id  # the initial read is planned on a tick of its own
        ticks += len(planned_groups(changelog.snapshots_between(after, target), chunk_events))
    else:
        ticks = math.ceil(estimated_events(changelog, position) / chunk_events)
    return Pending(table, position, target, ticks + 1)


def ticks(work: list[Pending]) -> list[str]:
    """The bounded source: table names round-robin, each as often as its chunks (tables advance together)."""
    names: list[str] = []
    for turn in range(max((w.chunks for w in work), default=0)):
        names += [w.table for w in work if w.chunks > turn]
    return names


def plan(settings: Settings, tables: list[str], seeds: dict[str, str], start: str,
         key_fields: dict[str, list[str]], parallel: bool) -> list[Pending]:
    """Each existing table's work, from its stored position (`seeds`) or `start`; a table not created yet
    gets one element (the job publishes nothing for it either)."""
    out = []
    for table, changelog in _changelogs(settings, tables, key_fields):
        if changelog is None:
            out.append(Pending(table, Position(None), None, 1))
            continue
        position = Position.from_json(seeds[table]) if table in seeds else start_position(changelog, start)
        out.append(pending(changelog, table, position, settings.cdc.chunk_events, parallel))
    return out


def behind(settings: Settings, work: list[Pending], positions: dict[str, str],
           key_fields: dict[str, list[str]]) -> list[str]:
    """Tables whose stored position has not reached the snapshot current when the run began."""
    late = []
    changelogs = dict(_changelogs(settings, [w.table for w in work if w.target is not None], key_fields))
    for w in work:
        changelog = changelogs.get(w.table)
        if changelog is None or w.target is None:
            continue
        if w.table not in positions:
            late.append(w.table)
            continue
        position = Position.from_json(positions[w.table])
        inside = position.snapshot_id is not None  # inside a snapshot (or its initial read)
        if inside or (position.after != w.target and target_is_ahead(changelog, position.after, w.target)):
            late.append(w.table)
    return late


def target_is_ahead(changelog: Changelog, after: int | None, target: int) -> bool:
    """Whether `target` comes after `after` (`after` may be newer: a commit published during the run)."""
    return any(snap.snapshot_id == target for snap in changelog.snapshots_between(after, changelog.current_snapshot_id))


def _changelogs(settings: Settings, tables: list[str],
                key_fields: dict[str, list[str]]) -> Iterator[tuple[str, Changelog | None]]:
    from icetide.catalog import pyiceberg_catalog
    from pyiceberg.exceptions import NoSuchTableError

    from streaming.changelog import Changelog

    catalog = pyiceberg_catalog(settings, "cdc")
    for table in tables:
        try:
            loaded = catalog.load_table(table)
        except NoSuchTableError:
            yield table, None
            continue
        yield table, Changelog(loaded, settings.catalog.name, key_fields.get(table), settings.cdc.topic_prefix)
