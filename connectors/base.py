"""The shape every sink shares: config, open, apply(batch) with its offsets in one transaction, close.

Why one transaction: the sink, not Kafka, is the source of truth for what has been applied. Each
`apply()` writes the rows AND the last applied Kafka offset per (topic, partition) atomically, so a
crash at any moment leaves either both or neither; on restart the consumer seeks to stored + 1 and
`apply()` also drops anything at or below the stored offset (a re-delivery after a rebalance).

Offsets alone are not enough: an at-least-once producer (the Flink job restored from a checkpoint)
re-publishes events at NEW offsets. Every event carries its position in its table's total order
(snapshot sequence number, ordinal), and one table's events reach one partition in that order, so
the sink also stores the last applied event position per (topic, partition) and drops any event at
or below it (counted as `replayed`). Without that, a keyless table would get the row twice.
That is the exactly-once *effect* (docs/architecture.md, "Exactly-once effect downstream") over an
at-least-once transport.

Within a batch the events of one keyed table collapse to their net effect per key (last image wins,
or gone), applied as delete-by-key + insert: the same result as replaying them one by one, in two
bulk statements. Tables without key fields (no Kafka key) are replayed event by event.

Column types come from the Iceberg schema the events carry (`Consumed.schema`): the sink creates,
renames, widens and adds columns as `connectors.evolve` plans, remembers each column's field id and
Iceberg type in `_icetide_columns`, and binds every value as its typed parameter (`connectors.types`).
Without any schema (a foreign producer's plain JSON) a column's type is inferred from its first
non-NULL value, as before: numbers, booleans and nested values typed, everything else text.
"""

from __future__ import annotations

import abc
import contextlib
import json
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from icetide.errors import EventError, IcetideError
from icetide.events import ChangeEvent, net_effect
from icetide.rowschema import RowSchema

from connectors import evolve
from connectors.typed import typed_changes
from connectors.types import Convert

TopicPartition = tuple[str, int]
EventPosition = tuple[int, int]  # (snapshot sequence number, ordinal): `Source.position`
TableRef = tuple[str, str]  # (namespace, table) as in the event's source block
POSITIONS_TABLE = "_icetide_positions"
COLUMNS_TABLE = "_icetide_columns"  # per downstream column: the Iceberg field id and type it was made for


@dataclass(frozen=True)
class Consumed:
    """One decoded change event and where it sits in Kafka (the change itself: `event`)."""

    topic: str
    partition: int
    offset: int
    event: ChangeEvent
    key_fields: tuple[str, ...] = ()  # from the record key; () → the table has no key
    schema: RowSchema | None = None  # the row images' columns and types, when the encoding tells them

    @property
    def table(self) -> TableRef:
        return (self.event.source.db, self.event.source.table)


@dataclass(frozen=True)
class Applied:
    """What a sink stores per (topic, partition): the last offset consumed and the last event applied."""

    offset: int
    event: EventPosition | None = None


@dataclass
class ApplyResult:
    """What one `apply()` did: events applied per (table, op), duplicates skipped, last snapshots."""

    applied: Counter[tuple[str, str]] = field(default_factory=Counter)
    skipped: int = 0  # every duplicate: at or below the stored offset, or a replayed event
    replayed: int = 0  # of which re-published at a new offset (event position already applied)
    last_snapshot: dict[str, int] = field(default_factory=dict)
    applied_changes: list[Consumed] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.applied.values())


def display_name(table: TableRef) -> str:
    return f"{table[0]}.{table[1]}"


def ordered_columns(images: Sequence[Mapping[str, Any]]) -> list[str]:
    """Every column of `images`, in order of first appearance (consecutive images of one schema
    share their key set, so each distinct shape is walked once)."""
    seen: dict[str, None] = {}
    last: Any = None
    for image in images:
        keys = image.keys()
        if keys != last:
            seen.update(dict.fromkeys(keys))
            last = keys
    return list(seen)


def first_values(images: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """The first non-NULL value of each of `names` in `images` (None when every one is NULL)."""
    found: dict[str, Any] = {}
    wanted = set(names)
    for image in images:
        for name in [n for n in wanted if image.get(n) is not None]:
            found[name] = image[name]
            wanted.discard(name)
        if not wanted:
            break
    return {name: found.get(name) for name in names}


class Sink(abc.ABC):
    """A downstream database. Subclasses supply the dialect primitives; `apply()` is shared."""

    kind: str = "sink"

    def __init__(self) -> None:
        self._columns: dict[TableRef, list[str]] = {}
        self._untyped: dict[TableRef, set[str]] = {}
        self._meta: dict[TableRef, evolve.Meta] = {}  # `_icetide_columns` of the table ({} : untyped)
        self._reconciled: dict[TableRef, RowSchema] = {}  # the schema the table was last brought to
        self._convert: dict[TableRef, dict[str, Convert]] = {}

    # -- lifecycle (subclasses) --------------------------------------------------------------
    @abc.abstractmethod
    def open(self) -> None:
        """Connect and create the positions table if needed."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Sink:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- dialect primitives (subclasses) -----------------------------------------------------
    @abc.abstractmethod
    def _begin(self) -> None: ...

    @abc.abstractmethod
    def _commit(self) -> None: ...

    @abc.abstractmethod
    def _rollback(self) -> None: ...

    @abc.abstractmethod
    def _load_positions(self, lock: bool) -> dict[TopicPartition, Applied]: ...

    @abc.abstractmethod
    def _save_positions(self, positions: Mapping[TopicPartition, Applied]) -> None: ...

    @abc.abstractmethod
    def _table_columns(self, table: TableRef) -> list[str] | None:
        """The downstream table's columns, or None if it does not exist."""

    @abc.abstractmethod
    def _create_table(self, table: TableRef, columns: Mapping[str, Any], key_fields: Sequence[str]) -> None:
        """Create the table; `columns` maps each name to a sample value (None if unknown)."""

    @abc.abstractmethod
    def _add_column(self, table: TableRef, name: str, sample: Any) -> None: ...

    @abc.abstractmethod
    def _delete_keys(self, table: TableRef, key_fields: Sequence[str], keys: Sequence[tuple[Any, ...]]) -> None: ...

    @abc.abstractmethod
    def _insert_rows(self, table: TableRef, columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> None: ...

    @abc.abstractmethod
    def _delete_one(self, table: TableRef, image: Mapping[str, Any]) -> None:
        """Delete ONE row equal to `image` (tables without key fields)."""

    # -- typed tables (subclasses; `connectors.types` has the mapping) -------------------------
    @abc.abstractmethod
    def declared_type(self, iceberg: str) -> str:
        """The column type this database declares for an Iceberg type."""

    @abc.abstractmethod
    def store(self, iceberg: str) -> Convert:
        """JSON-ready value → the parameter this database stores for an Iceberg type."""

    @abc.abstractmethod
    def _declared_types(self, table: TableRef) -> dict[str, str] | None:
        """Column → declared type, in table order; None if the table does not exist."""

    @abc.abstractmethod
    def _load_meta(self, table: TableRef) -> evolve.Meta: ...

    @abc.abstractmethod
    def _save_meta(self, table: TableRef, meta: evolve.Meta) -> None: ...

    @abc.abstractmethod
    def _create_typed(self, table: TableRef, columns: Sequence[tuple[str, str]], key_fields: Sequence[str]) -> None:
        ...

    @abc.abstractmethod
    def _add_typed(self, table: TableRef, name: str, declared: str) -> None: ...

    @abc.abstractmethod
    def _rename_column(self, table: TableRef, old: str, new: str) -> None: ...

    @abc.abstractmethod
    def _retype(self, table: TableRef, retypes: Sequence[evolve.Retype], topic: str) -> None:
        """Change column types, converting the values; DownstreamError (what to do) if some do not."""

    @abc.abstractmethod
    def classify(self, exc: Exception) -> IcetideError:
        """A database error → TransientError (retry) or EventError (dead-letter)."""

    @abc.abstractmethod
    def read_rows(self, table: TableRef) -> list[dict[str, Any]]:
        """Every row of the downstream copy of `table` (for verify and tests); [] if absent."""

    # -- shared behaviour --------------------------------------------------------------------
    def positions(self) -> dict[TopicPartition, int]:
        """The last applied offset per (topic, partition), as committed in the sink."""
        try:
            return {tp: applied.offset for tp, applied in self._load_positions(lock=False).items()}
        except IcetideError:
            raise
        except Exception as exc:
            raise self.classify(exc) from exc

    def applied(self) -> dict[TopicPartition, Applied]:
        """The last applied offset and event position per (topic, partition), as committed."""
        try:
            return self._load_positions(lock=False)
        except IcetideError:
            raise
        except Exception as exc:
            raise self.classify(exc) from exc

    def apply(self, changes: Sequence[Consumed], positions: Mapping[TopicPartition, int]) -> ApplyResult:
        """Apply `changes` and store `positions` in one transaction; skip what is already applied.

        `positions` is the highest offset consumed per (topic, partition) in this batch, including
        records that were dead-lettered (so they are not consumed again).
        """
        result = ApplyResult()
        try:
            self._begin()
            stored = self._load_positions(lock=True)
            fresh, last = self._fresh(changes, stored, result)
            by_table: dict[TableRef, list[Consumed]] = defaultdict(list)
            for change in fresh:
                by_table[change.table].append(change)
            for table, items in by_table.items():
                self._apply_table(table, items)
                name = display_name(table)
                result.applied.update((name, c.event.op) for c in items)
                result.last_snapshot[name] = items[-1].event.source.snapshot_id
            result.applied_changes = fresh
            advanced = {tp: Applied(off, last.get(tp)) for tp, off in positions.items()
                        if tp not in stored or off > stored[tp].offset}
            if advanced:
                self._save_positions(advanced)
            self._commit()
        except BaseException as exc:
            for cache in (self._columns, self._untyped, self._meta, self._reconciled, self._convert):
                cache.clear()  # DDL may have rolled back with the transaction
            with contextlib.suppress(Exception):
                self._rollback()
            if isinstance(exc, IcetideError) or not isinstance(exc, Exception):
                raise
            raise self.classify(exc) from exc
        return result

    @staticmethod
    def _fresh(changes: Sequence[Consumed], stored: Mapping[TopicPartition, Applied],
               result: ApplyResult) -> tuple[list[Consumed], dict[TopicPartition, EventPosition | None]]:
        """The changes not applied yet, and the last event position per partition after them."""
        last = {tp: applied.event for tp, applied in stored.items()}
        fresh = []
        for change in changes:
            tp = (change.topic, change.partition)
            done = stored.get(tp)
            if done is not None and change.offset <= done.offset:
                result.skipped += 1
                continue
            position = change.event.source.position
            seen = last.get(tp)
            if seen is not None and position <= seen:
                result.skipped += 1
                result.replayed += 1
                continue
            last[tp] = position
            fresh.append(change)
        return fresh, last

    def _apply_table(self, table: TableRef, items: Sequence[Consumed]) -> None:
        # Every schema the batch passes through, in order, not only its last: a column widened and then
        # dropped within one batch must still be widened downstream for the events written in between.
        current = self._reconciled.get(table)
        for schema in _schema_steps(items):
            if schema != current:
                self._reconcile(table, schema, items)
                current = schema
        meta = self._meta_of(table)
        if meta:
            convert = self._convert.get(table)
            if convert is None:
                convert = self._convert[table] = {name: self.store(kind) for name, (_, kind) in meta.items()}
            items = typed_changes(items, meta, convert)
        key_fields = list(items[0].key_fields)
        for change in items:
            if list(change.key_fields) != key_fields:
                raise EventError(f"key fields of {display_name(table)} changed within a batch")
        images = [img for c in items for img in (c.event.before, c.event.after) if img is not None]
        self._ensure_columns(table, images, key_fields)
        if not key_fields:
            for change in items:
                event = change.event
                if event.before is not None:
                    self._delete_one(table, event.before)
                if event.after is not None:
                    self._insert_rows(table, list(event.after), [event.after])
            return
        final = net_effect([c.event for c in items], key_fields).after
        self._delete_keys(table, key_fields, list(final))
        rows = [row for row in final.values() if row is not None]
        if rows:
            self._insert_rows(table, ordered_columns(rows), rows)

    def _ensure_columns(self, table: TableRef, images: Sequence[Mapping[str, Any]], key_fields: Sequence[str]) -> None:
        """Create the table on first sight; add columns the table lacks (schema evolution)."""
        wanted = ordered_columns(images)
        existing = self._columns.get(table)
        if existing is None:
            existing = self._table_columns(table)
        if existing is None:
            missing_keys = [k for k in key_fields if k not in wanted]
            if missing_keys:
                raise EventError(f"key field(s) {missing_keys} not in the rows of {display_name(table)}")
            self._create_table(table, first_values(images, wanted), key_fields)
            existing = list(wanted)
        else:
            known = set(existing)
            new = [name for name in wanted if name not in known]
            for name, sample in first_values(images, new).items():
                self._add_column(table, name, sample)
                existing = [*existing, name]
        self._columns[table] = existing
        untyped = self._untyped.get(table)
        if untyped is None:
            untyped = self._untyped[table] = self._untyped_columns(table) - set(self._meta_of(table))
        if untyped:
            for name, sample in first_values(images, sorted(untyped)).items():
                if sample is not None:
                    self._type_column(table, name, sample)
                    untyped.discard(name)

    def _meta_of(self, table: TableRef) -> evolve.Meta:
        meta = self._meta.get(table)
        if meta is None:
            meta = self._meta[table] = self._load_meta(table)
        return meta

    def _reconcile(self, table: TableRef, target: RowSchema, items: Sequence[Consumed]) -> None:
        """Bring the downstream table to `target` (create, rename, add, retype; `connectors.evolve`)."""
        declared = self._declared_types(table)
        meta = self._meta_of(table) if declared is not None else {}
        plan = evolve.plan(target, declared, meta, self.declared_type)
        if plan.create is not None:
            key_fields = next(c for c in reversed(items) if c.schema is target).key_fields
            if missing := [k for k in key_fields if target.column(k) is None]:
                raise EventError(f"key field(s) {missing} not in the schema of {display_name(table)}")
            self._create_typed(table, plan.create, key_fields)
        for old, new in plan.renames:
            self._rename_column(table, old, new)
        for name, declared_type in plan.adds:
            self._add_typed(table, name, declared_type)
        if plan.retypes:
            self._retype(table, plan.retypes, items[-1].topic)
        if plan.meta != meta:
            self._save_meta(table, plan.meta)
        self._meta[table], self._reconciled[table] = plan.meta, target
        for cache in (self._columns, self._untyped, self._convert):
            cache.pop(table, None)

    # -- untyped tables: a column first seen only as NULL gets its type from its first value ---
    def _untyped_columns(self, table: TableRef) -> set[str]:
        """Columns created before any non-NULL value was seen (typeless sinks: none)."""
        return set()

    def _type_column(self, table: TableRef, name: str, sample: Any) -> None:  # noqa: B027 (optional hook)
        """Give an untyped (so far all-NULL) column the type of its first value."""


def _schema_steps(items: Sequence[Consumed]) -> list[RowSchema]:
    """The schemas of `items` in order, each run of one schema (mostly the whole batch) once."""
    steps: list[RowSchema] = []
    for change in items:
        schema = change.schema
        if schema is not None and (not steps or (schema is not steps[-1] and schema != steps[-1])):
            steps.append(schema)
    return steps


def sql_value(value: Any) -> Any:
    """A JSON row value as a database parameter: nested values as JSON text, scalars as they are."""
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True)
    return value
