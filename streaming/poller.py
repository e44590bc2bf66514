"""One table's publishing loop, independent of Flink: position in, Kafka records out.

The Flink job (`job.py`) keeps a `Position` per table in checkpointed keyed state and calls
`TablePoller.poll` on every tick. A position says which snapshot was published completely
(`after`) and, inside a large snapshot, how many of its events were already emitted
(`snapshot_id`, `emitted`), so a restart from a checkpoint resumes exactly where the
checkpointed state stands: the events of a partly published snapshot are re-derived
deterministically and the first `emitted` ones skipped.
A poll emits at most `budget` events and returns, so checkpoints (which wait for the current
element) are taken between chunks of a large snapshot.

Encoding (`cdc.format`): `JsonEncoder` writes the Debezium JSON envelope (`icetide.events`);
`ConnectJsonEncoder` writes it as Kafka Connect's JsonConverter does with schemas
(`icetide.connect_json`, one codec per (topic, Iceberg schema id)); `AvroEncoder` writes Avro in
the Confluent wire format, registering the key and value schemas of each (topic, Iceberg schema
id) under `<topic>-key` / `<topic>-value` the first time an event in that schema is encoded (a
schema change thus registers a new version). Schema-change records stay JSON on
`<prefix>.schema-changes`. With `tombstones`, each delete of a keyed table is followed by a
record with the same key bytes and a null value, so log compaction can drop the key; keyless
tables get none: their key is the whole row, and identical rows share it, so a tombstone would
let compaction drop the live duplicates of a deleted row.

With `transactions`, a BEGIN record precedes the first event of each snapshot (ordinal 0, so a
resume inside a snapshot publishes none) and an END record with the event count follows its last,
before the Position that marks the snapshot complete (`transactions.py`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol

from icetide.errors import ConfigError
from icetide.events import ChangeEvent, Row, key_to_json, to_json, topic_for, transaction_topic
from icetide.schema_registry import SchemaRegistryClient

from streaming.transactions import TRANSACTION_OP, boundary

if TYPE_CHECKING:
    from icetide.avro import AvroCodec
    from icetide.connect_json import ConnectJsonCodec
    from icetide.settings import CdcSettings

    from streaming.changelog import Changelog


SCHEMA_OP = "schema"  # Record.op of a schema-change record
TOMBSTONE_OP = "tombstone"  # Record.op of a tombstone (null value after a delete)


@dataclass(frozen=True)
class Position:
    """Where a table's publishing stands (JSON in Flink state)."""

    after: int | None  # last snapshot whose events were all emitted (None: before the first)
    snapshot_id: int | None = None  # snapshot in progress
    emitted: int = 0  # events of `snapshot_id` already emitted
    initial: bool = False  # `snapshot_id` is being read as an initial snapshot (op "r")
    schema_id: int | None = None  # schema of the last change record published

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Position:
        return cls(**json.loads(text))


@dataclass(frozen=True)
class Record:
    """One Kafka record: topic, key and value bytes (None: a tombstone), plus what metrics need.

    `event` is the change event a change record encodes (audience topics derive from it)."""

    topic: str
    key: bytes
    value: bytes | None
    op: str
    commit_ts_ms: int
    snapshot_id: int
    event: ChangeEvent | None = field(default=None, compare=False, repr=False)


def schema_topic(prefix: str) -> str:
    return f"{prefix}.schema-changes"


def schema_change(changelog: Changelog, event: ChangeEvent, previous: int | None, topic: str) -> Record:
    """A Debezium-style schema-change record: the table's columns in the schema the next records use."""
    schema = changelog.schema_by_id(event.source.schema_id)
    columns = [{"name": f.name, "typeName": str(f.field_type), "optional": not f.required,
                "position": i + 1, "fieldId": f.field_id} for i, f in enumerate(schema.fields)]
    table_id = f"{changelog.namespace}.{changelog.name}"
    value = {
        "source": event.source.to_dict(),
        "ts_ms": int(time.time() * 1000),
        "databaseName": changelog.namespace,
        "ddl": None,
        "schema_id": event.source.schema_id,
        "previous_schema_id": previous,
        "tableChanges": [{"type": "CREATE" if previous is None else "ALTER", "id": table_id,
                          "table": {"primaryKeyColumnNames": changelog.key_fields, "columns": columns}}],
    }
    key = key_to_json({"db": changelog.namespace, "table": changelog.name})
    return Record(topic, key, json.dumps(value, separators=(",", ":")).encode(), SCHEMA_OP,
                  event.source.commit_ts_ms, event.source.snapshot_id)


def to_record(event: ChangeEvent, topic: str, key_fields: list[str], ready: bool = False,
              transaction: bool = False) -> Record:
    """Key = the row's key fields (the whole row when the table has none: identical rows share a key).
    `ready`: the images are JSON-ready already (the changelog's are: `encode_row`), not encoded again;
    `transaction`: the value carries Debezium's transaction block."""
    key = event.key(key_fields) if key_fields else event.row
    return Record(topic, key_to_json(key, ready), to_json(event, ready, transaction), event.op,
                  event.source.commit_ts_ms, event.source.snapshot_id, event)


def tombstone(record: Record) -> Record:
    """The tombstone that follows a delete record: the same topic and key bytes, a null value."""
    return Record(record.topic, record.key, None, TOMBSTONE_OP, record.commit_ts_ms, record.snapshot_id)


def with_tombstones(records: list[Record], key_fields: list[str]) -> list[Record]:
    """`records` with a tombstone after each delete; unchanged for keyless tables (module docstring)."""
    if not key_fields:
        return records
    return [out for r in records for out in ((r, tombstone(r)) if r.op == "d" else (r,))]


class Encoder(Protocol):
    """Turns one change event of a table into its Kafka record (`cdc.format`)."""

    format: str

    def record(self, changelog: Changelog, event: ChangeEvent, topic: str, key_fields: list[str]) -> Record: ...

    def key(self, changelog: Changelog, schema_id: int, topic: str, key_fields: list[str], row: Row) -> bytes:
        """The record key of a change whose row image is `row` (parallel derivation routes by it)."""
        ...


def key_image(row: Row, key_fields: list[str]) -> Row:
    """What a record key encodes: the key fields, or the whole row for a keyless table."""
    return {name: row.get(name) for name in key_fields} if key_fields else row


class JsonEncoder:
    """The Debezium JSON envelope; key = the JSON of the key fields (`to_record`); with
    `transaction_block`, Debezium's `transaction` block in each value (`cdc.transaction_metadata`)."""

    format = "json"

    def __init__(self, transaction_block: bool = False) -> None:
        self.transaction_block = transaction_block

    def record(self, changelog: Changelog, event: ChangeEvent, topic: str, key_fields: list[str]) -> Record:
        return to_record(event, topic, key_fields, ready=True,  # changelog images are JSON-ready
                         transaction=self.transaction_block)

    def key(self, changelog: Changelog, schema_id: int, topic: str, key_fields: list[str], row: Row) -> bytes:
        return key_to_json(key_image(row, key_fields), True)


class ConnectJsonEncoder:
    """Kafka Connect JSON with schemas (`icetide.connect_json`); a codec per (topic, schema id, key fields)."""

    format = "connect-json"

    def __init__(self) -> None:
        self._codecs: dict[tuple[str, int, tuple[str, ...]], ConnectJsonCodec] = {}

    def codec(self, changelog: Changelog, schema_id: int, topic: str, key_fields: list[str]) -> ConnectJsonCodec:
        cache_key = (topic, schema_id, tuple(key_fields))
        codec = self._codecs.get(cache_key)
        if codec is None:
            from icetide.connect_json import ConnectJsonCodec, key_schema, value_schema

            schema = changelog.schema_by_id(schema_id)
            codec = ConnectJsonCodec(key_schema(schema, key_fields, topic), value_schema(schema, topic))
            self._codecs[cache_key] = codec
        return codec

    def key(self, changelog: Changelog, schema_id: int, topic: str, key_fields: list[str], row: Row) -> bytes:
        return self.codec(changelog, schema_id, topic, key_fields).encode_key(key_image(row, key_fields))

    def record(self, changelog: Changelog, event: ChangeEvent, topic: str, key_fields: list[str]) -> Record:
        codec = self.codec(changelog, event.source.schema_id, topic, key_fields)
        key = codec.encode_key(key_image(event.row, key_fields))
        return Record(topic, key, codec.encode_value(event), event.op, event.source.commit_ts_ms,
                      event.source.snapshot_id, event)


class AvroEncoder:
    """Avro in the Confluent wire format (magic 0 + 4-byte schema id), schemas registered on first use.

    Key schema: the key fields, or the whole row for a keyless table (as in JSON). A codec is cached
    per (topic, Iceberg schema id, key fields); registering is idempotent, so a restarted worker gets
    the same ids back, and a new Iceberg schema registers a new version of `<topic>-value` (and of
    `<topic>-key` only if the key record changed: a keyed table's key bytes stay the same).
    """

    format = "avro"

    def __init__(self, registry: SchemaRegistryClient) -> None:
        self.registry = registry
        self._codecs: dict[tuple[str, int, tuple[str, ...]], AvroCodec] = {}

    def codec(self, changelog: Changelog, schema_id: int, topic: str, key_fields: list[str]) -> AvroCodec:
        cache_key = (topic, schema_id, tuple(key_fields))
        codec = self._codecs.get(cache_key)
        if codec is None:
            from icetide.avro import AvroCodec, key_schema, value_schema

            schema = changelog.schema_by_id(schema_id)
            key = key_schema(schema, key_fields, changelog.namespace, changelog.name)
            value = value_schema(schema, changelog.namespace, changelog.name)
            codec = AvroCodec(key, value, self.registry.register(f"{topic}-key", key),
                              self.registry.register(f"{topic}-value", value))
            self._codecs[cache_key] = codec
        return codec

    def key(self, changelog: Changelog, schema_id: int, topic: str, key_fields: list[str], row: Row) -> bytes:
        return self.codec(changelog, schema_id, topic, key_fields).encode_key(key_image(row, key_fields))

    def record(self, changelog: Changelog, event: ChangeEvent, topic: str, key_fields: list[str]) -> Record:
        codec = self.codec(changelog, event.source.schema_id, topic, key_fields)
        key = codec.encode_key(key_image(event.row, key_fields))
        return Record(topic, key, codec.encode_value(event), event.op, event.source.commit_ts_ms,
                      event.source.snapshot_id, event)


def make_encoder(cdc: CdcSettings) -> Encoder:
    """The encoder of `cdc.format` (Avro needs `cdc.schema_registry_url`, checked by the CLI)."""
    if cdc.format == "avro":
        if not cdc.schema_registry_url:
            raise ConfigError("setting 'cdc.schema_registry_url' is required when cdc.format is avro")
        return AvroEncoder(SchemaRegistryClient(cdc.schema_registry_url))
    if cdc.format == "connect-json":
        return ConnectJsonEncoder()
    return JsonEncoder(transaction_block=cdc.transaction_metadata)


class TablePoller:
    """Derives the records of one table from its position (see module docstring)."""

    def __init__(self, changelog: Changelog, topic_prefix: str, schema_changes: bool = True,
                 encoder: Encoder | None = None, tombstones: bool = False, transactions: bool = False) -> None:
        self.changelog = changelog
        self.topic = topic_for(topic_prefix, changelog.namespace, changelog.name)
        self.schema_topic = schema_topic(topic_prefix) if schema_changes else None
        self.transaction_topic = transaction_topic(topic_prefix) if transactions else None
        self.encoder: Encoder = encoder or JsonEncoder()
        self.tombstones = tombstones
        # a live iterator over the snapshot in progress, so chunked polls do not re-read it
        self._open: tuple[Position, Iterator[ChangeEvent]] | None = None

    def poll(self, position: Position, budget: int | None = None) -> Iterator[Record | Position]:
        """Yield records, and a new `Position` after each chunk and each completed snapshot.

        The caller stores the last Position it saw. Stops after `budget` change records (None: no
        limit) or when the current snapshot is reached. A schema-change record precedes the first
        change record read with a schema other than the last one published; with `tombstones`, a
        tombstone follows each delete of a keyed table (not counted in the budget or the position);
        with `transactions`, BEGIN/END records frame each snapshot's events (module docstring).
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
                position = replace(position, snapshot_id=pending[0].snapshot_id, emitted=0, initial=False)
            events = self._events(position)
            emitted = position.emitted  # a plain int in the loop; the Position is rebuilt after it
            exhausted = True
            for event in events:
                if emitted == 0 and self.transaction_topic is not None:
                    yield self._boundary(position, "BEGIN")
                if self.schema_topic is not None and event.source.schema_id != position.schema_id:
                    yield schema_change(self.changelog, event, position.schema_id, self.schema_topic)
                    position = replace(position, schema_id=event.source.schema_id)
                record = self.encoder.record(self.changelog, event, self.topic, keys)
                yield record
                if self.tombstones and keys and record.op == "d":
                    yield tombstone(record)
                emitted += 1
                count += 1
                if budget is not None and count >= budget:
                    exhausted = False
                    break
            position = replace(position, emitted=emitted)
            if not exhausted:
                self._open = (position, events)
                yield position
                return
            self._open = None
            if emitted and self.transaction_topic is not None:
                yield self._boundary(position, "END", emitted)
            position = Position(position.snapshot_id, schema_id=position.schema_id)
            yield position

    def _boundary(self, position: Position, status: Literal["BEGIN", "END"], count: int | None = None) -> Record:
        assert position.snapshot_id is not None and self.transaction_topic is not None
        snap = self.changelog.snapshot(position.snapshot_id)
        key, value = boundary(self.changelog.namespace, self.changelog.name, snap.snapshot_id,
                              int(snap.sequence_number or 0), snap.timestamp_ms, status, count)
        return Record(self.transaction_topic, key, value, TRANSACTION_OP, snap.timestamp_ms, snap.snapshot_id)

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



def _summary_count(snapshot: Any, *names: str) -> int:
    summary = snapshot.summary
    return sum(int(summary[name] or 0) for name in names) if summary is not None else 0


def estimated_events(changelog: Changelog, position: Position) -> int:
    """How many change events publishing from `position` to the current snapshot will emit, from the snapshot
    summaries alone (no data file is read) — the total of `cdc run --once`'s progress bar. Exact for appends
    and initial snapshots; for an overwrite (copy-on-write rewrites whole files) the larger of the records
    added and removed, an upper bound; replace (compaction) emits nothing."""
    if position.initial and position.snapshot_id is not None:
        return max(0, _summary_count(changelog.snapshot(position.snapshot_id), "total-records") - position.emitted)
    total = 0
    pending = changelog.snapshots_between(position.after, changelog.current_snapshot_id)
    for index, snap in enumerate(pending):
        count = snapshot_estimate(snap)
        if index == 0 and snap.snapshot_id == position.snapshot_id:
            count = max(0, count - position.emitted)
        total += count
    return total


def snapshot_estimate(snap: Any) -> int:
    """One snapshot's change events as `estimated_events` estimates them."""
    operation = snap.summary.operation.value if snap.summary is not None else "overwrite"
    if operation == "append":
        return _summary_count(snap, "added-records")
    if operation == "delete":
        return _summary_count(snap, "deleted-records", "added-position-deletes", "added-equality-deletes")
    if operation == "overwrite":
        return max(_summary_count(snap, "added-records"),
                   _summary_count(snap, "deleted-records", "added-position-deletes", "added-equality-deletes"))
    return 0
