"""One table's publishing loop, independent of Flink: position in, Kafka records out.

The Flink job (`job.py`) keeps a `Position` per table in checkpointed keyed state and calls
`TablePoller.poll` on every tick. A position says which snapshot was published completely
(`after`) and, inside a large snapshot, how many of its events were already emitted
(`snapshot_id`, `emitted`), so a restart from a checkpoint resumes exactly where the
checkpointed state stands: the events of a partly published snapshot are re-derived
deterministically and the first `emitted` ones skipped.
A poll emits at most `budget` events and returns, so checkpoints (which wait for the current
element) are taken between chunks of a large snapshot.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

from icetide.events import ChangeEvent, key_to_json, to_json, topic_for

if TYPE_CHECKING:
    from streaming.changelog import Changelog


@dataclass(frozen=True)
class Position:
    """Where a table's publishing stands (JSON in Flink state)."""

    after: int | None  # last snapshot whose events were all emitted (None: before the first)
    snapshot_id: int | None = None  # snapshot in progress
    emitted: int = 0  # events of `snapshot_id` already emitted
    initial: bool = False  # `snapshot_id` is being read as an initial snapshot (op "r")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Position:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Record:
    """One Kafka record: topic, key and value bytes, plus what metrics need."""

    topic: str
    key: bytes
    value: bytes
    op: str
    commit_ts_ms: int
    snapshot_id: int


def to_record(event: ChangeEvent, topic: str, key_fields: list[str]) -> Record:
    """Key = the row's key fields (the whole row when the table has none: identical rows share a key)."""
    key = event.key(key_fields) if key_fields else event.row
    return Record(topic, key_to_json(key), to_json(event), event.op, event.source.commit_ts_ms,
                  event.source.snapshot_id)


class TablePoller:
    """Derives the records of one table from its position (see module docstring)."""

    def __init__(self, changelog: Changelog, topic_prefix: str) -> None:
        self.changelog = changelog
        self.topic = topic_for(topic_prefix, changelog.namespace, changelog.name)
        # a live iterator over the snapshot in progress, so chunked polls do not re-read it
        self._open: tuple[Position, Iterator[ChangeEvent]] | None = None

    def poll(self, position: Position, budget: int | None = None) -> Iterator[Record | Position]:
        """Yield records, each followed by nothing, and a new `Position` whenever it advances.

        The caller stores the last Position it saw. Stops after `budget` records (None: no
        limit) or when the current snapshot is reached.
        """
        self.changelog.refresh()
        keys = self.changelog.key_fields
        target = self.changelog.current_snapshot_id
        count = 0
        while True:
            if position.snapshot_id is None:
                pending = self.changelog.snapshots_between(position.after, target)
                if not pending:
                    return
                position = Position(position.after, pending[0].snapshot_id, 0)
            events = self._events(position)
            exhausted = True
            for event in events:
                yield to_record(event, self.topic, keys)
                position = replace(position, emitted=position.emitted + 1)
                count += 1
                if budget is not None and count >= budget:
                    exhausted = False
                    break
            if not exhausted:
                self._open = (position, events)
                yield position
                return
            self._open = None
            position = Position(position.snapshot_id)
            yield position

    def _events(self, position: Position) -> Iterator[ChangeEvent]:
        if self._open is not None and self._open[0] == position:
            return self._open[1]
        assert position.snapshot_id is not None
        if position.initial:
            return self.changelog.initial_events(position.snapshot_id, skip=position.emitted)
        snapshot = self.changelog.snapshot(position.snapshot_id)
        return self.changelog.snapshot_events(snapshot, skip=position.emitted)


def start_position(changelog: Changelog, start: str) -> Position:
    """The position of a table seen for the first time (`--start`)."""
    resolved = changelog.resolve_start(start)
    if resolved.initial and resolved.after is not None:
        return Position(after=resolved.after, snapshot_id=resolved.after, initial=True)
    return Position(after=resolved.after)

