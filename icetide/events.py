"""The change-event contract: one Kafka record per changed row.

Value: a Debezium-shaped envelope without schemas (`cdc.format: json`; Flink's `debezium-json`
format and plain clients read it; Kafka Connect sinks need schemas: `connect-json` or Avro, see
docs/encodings.md)::

    {"before": {...} | null, "after": {...} | null, "op": "c" | "u" | "d" | "r",
     "ts_ms": <when icetide produced it>,
     "source": {"version", "connector": "icetide", "name": <topic prefix>, "catalog", "db",
                "schema" (= db, the namespace), "table", "snapshot_id", "sequence_number",
                "commit_ts_ms", "ts_ms" (= commit time), "ordinal", "schema_id",
                "snapshot": "true" | "false"}}

Key: a JSON object of the row's identifier fields. Topic: `<prefix>.<namespace>.<table>`.

With `cdc.transaction_metadata` (Debezium's `provide.transaction.metadata`), each snapshot of a
table is one transaction: BEGIN/END records on `<prefix>.transaction` (`streaming/transactions.py`)
and, in JSON envelopes, a `transaction` block `{"id", "total_order", "data_collection_order"}`
(`transaction_block`): the id is `<namespace>.<table>:<snapshot id>` (Iceberg snapshot ids are
unique within a table only), the orders are the event's ordinal + 1 (one table per transaction).

Row values are JSON-encoded (the "JSON-ready" images every decoder yields, whatever the
encoding): dates `YYYY-MM-DD`, times `HH:MM:SS.ffffff`, timestamps ISO-8601 as Debezium writes them,
`YYYY-MM-DDTHH:MM:SS.ffffff` (with a trailing `Z` when the column is timestamptz, in UTC; Flink's
JSON formats read them with `timestamp-format.standard = ISO-8601`), decimals as exact strings
(Debezium's `decimal.handling.mode=string`), binary as base64, NaN and ±Infinity as the strings
"NaN", "Infinity", "-Infinity" (as Jackson writes them; Flink's JSON format parses them back into
DOUBLE/FLOAT), maps as a list of `[key, value]` pairs (as the changelog reads them from Arrow).

The change itself (`Change`: op, before, after) is the one record both rooms share: the changelog
derives them, an event is one with its `Source`, and a sink reduces a batch to its `net_effect` per
`key_of` (the row's key-field values) — one definition, so what a range "nets to" upstream
(`Changelog.net_events`) and what a sink applies downstream cannot drift apart.

Serialisation goes through orjson (about 3× the standard library both ways). Integers are 64-bit
(Iceberg has no wider integer type; wider numbers travel as decimal strings).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import math
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

import orjson

from icetide import __version__
from icetide.errors import EventError

Op = Literal["c", "u", "d", "r"]
Row = dict[str, Any]  # a JSON-ready row image
RowKey = tuple[Any, ...]  # a row's values of its key fields (`key_of`)
OPS: frozenset[str] = frozenset({"c", "u", "d", "r"})
CONNECTOR = "icetide"


def topic_for(prefix: str, namespace: str, table: str) -> str:
    """`icetide.sales.vendas` for table `sales.vendas` under prefix `icetide`."""
    return f"{prefix}.{namespace}.{table}"


def transaction_topic(prefix: str) -> str:
    """`icetide.transaction`: the snapshot boundaries (Debezium's `<topic.prefix>.transaction`)."""
    return f"{prefix}.transaction"


def transaction_id(namespace: str, table: str, snapshot_id: int) -> str:
    """The transaction id of one snapshot of one table: `sales.vendas:5093113421640152357`."""
    return f"{namespace}.{table}:{snapshot_id}"


@dataclass(frozen=True)
class Source:
    """Where a change comes from: the table, the snapshot that committed it, and its position."""

    catalog: str
    db: str
    table: str
    snapshot_id: int
    sequence_number: int
    commit_ts_ms: int
    ordinal: int  # position of this row's event within its snapshot, 0-based
    schema_id: int = 0
    name: str = "icetide"  # the topic prefix (Debezium's logical server name)
    snapshot: bool = False  # True for the initial read (op "r")

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": __version__,
            "connector": CONNECTOR,
            "name": self.name,
            "catalog": self.catalog,
            "db": self.db,
            "schema": self.db,  # Debezium's relational sources name the schema: the Iceberg namespace
            "table": self.table,
            "snapshot_id": self.snapshot_id,
            "sequence_number": self.sequence_number,
            "commit_ts_ms": self.commit_ts_ms,
            "ts_ms": self.commit_ts_ms,
            "ordinal": self.ordinal,
            "schema_id": self.schema_id,
            "snapshot": "true" if self.snapshot else "false",
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Source:
        try:
            return cls(
                catalog=str(raw["catalog"]),
                db=str(raw["db"]),
                table=str(raw["table"]),
                snapshot_id=int(raw["snapshot_id"]),
                sequence_number=int(raw["sequence_number"]),
                commit_ts_ms=int(raw["commit_ts_ms"]),
                ordinal=int(raw["ordinal"]),
                schema_id=int(raw.get("schema_id", 0)),
                name=str(raw.get("name", CONNECTOR)),
                snapshot=str(raw.get("snapshot", "false")) == "true",
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EventError(f"bad source block: {exc!r}") from None

    @property
    def position(self) -> tuple[int, int]:
        """Total order of events of one table: (sequence number, ordinal)."""
        return (self.sequence_number, self.ordinal)

    def transaction_block(self) -> dict[str, Any]:
        """Debezium's `transaction` block of a change event (one snapshot = one transaction)."""
        order = self.ordinal + 1
        return {"id": transaction_id(self.db, self.table, self.snapshot_id), "total_order": order,
                "data_collection_order": order}


@dataclass(frozen=True)
class Change:
    """One change of one row: the operation and its images (`u` carries both, `c`/`r` only after,
    `d` only before). The changelog derives these before a snapshot position is known; a
    `ChangeEvent` is one with its source."""

    op: Op
    before: Row | None
    after: Row | None

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise EventError(f"unknown op {self.op!r}")
        if self.op in ("c", "r") and (self.after is None or self.before is not None):
            raise EventError(f"op {self.op!r} needs an after image and no before image")
        if self.op == "d" and (self.before is None or self.after is not None):
            raise EventError("op 'd' needs a before image and no after image")
        if self.op == "u" and (self.before is None or self.after is None):
            raise EventError("op 'u' needs both before and after images")

    @property
    def row(self) -> Row:
        """The image that identifies the row: after for c/r/u, before for d."""
        image = self.after if self.after is not None else self.before
        assert image is not None
        return image


@dataclass(frozen=True)
class ChangeEvent(Change):
    """One changed row: before/after images, the operation and its source."""

    source: Source
    ts_ms: int = field(default_factory=lambda: int(time.time() * 1000))

    def key(self, key_fields: list[str]) -> dict[str, Any]:
        image = self.row
        return {name: image.get(name) for name in key_fields}

    def to_dict(self, transaction: bool = False) -> dict[str, Any]:
        """The envelope; with `transaction`, Debezium's transaction block too (`Source.transaction_block`)."""
        envelope = {
            "before": self.before,
            "after": self.after,
            "op": self.op,
            "ts_ms": self.ts_ms,
            "source": self.source.to_dict(),
        }
        if transaction:
            envelope["transaction"] = self.source.transaction_block()
        return envelope

    @classmethod
    def from_dict(cls, raw: Any) -> ChangeEvent:
        if not isinstance(raw, dict):
            raise EventError("event is not a JSON object")
        for name in ("op", "source"):
            if name not in raw:
                raise EventError(f"event has no '{name}'")
        before, after = raw.get("before"), raw.get("after")
        if before is not None and not isinstance(before, dict):
            raise EventError("'before' is not an object")
        if after is not None and not isinstance(after, dict):
            raise EventError("'after' is not an object")
        if not isinstance(raw["source"], dict):
            raise EventError("'source' is not an object")
        return cls(
            op=raw["op"],
            before=before,
            after=after,
            source=Source.from_dict(raw["source"]),
            ts_ms=int(raw.get("ts_ms", 0)),
        )


# -- keys and net effect ---------------------------------------------------------------------


def identity(row: Row) -> str:
    """A hashable identity of a whole row image (column order does not matter)."""
    return json.dumps(row, sort_keys=True, separators=(",", ":"), default=str)


def _hashable(value: Any) -> Any:
    # the text a sink binds for a nested value (`connectors.base.sql_value`), so a key can delete by it
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value


def key_of(image: Mapping[str, Any], key_fields: Sequence[str]) -> RowKey:
    """The row's key: its values of `key_fields`; EventError if the image lacks one."""
    try:
        values = tuple([image[name] for name in key_fields])
    except KeyError:
        missing = [name for name in key_fields if name not in image]
        raise EventError(f"row image lacks key field(s) {missing}") from None
    for value in values:
        if isinstance(value, dict | list):  # rare: a nested key column, made hashable
            return tuple(_hashable(v) for v in values)
    return values


@dataclass(frozen=True)
class NetEffect:
    """What a run of changes does, per key: `after` holds every key they touch, in order of first
    touch, with its image after them (None: gone); `before` holds the image before them of each
    touched key that existed (a key missing there was free)."""

    before: dict[RowKey, Row]
    after: dict[RowKey, Row | None]


def net_effect(changes: Iterable[Change], key_fields: Sequence[str]) -> NetEffect:
    """The net effect of `changes` in order. An update that moves a row to another key frees the
    old key. One pass, a dict write per image (the sinks reduce every batch with it)."""
    before: dict[RowKey, Row] = {}
    after: dict[RowKey, Row | None] = {}
    for change in changes:
        if change.before is not None:
            key = key_of(change.before, key_fields)
            if key not in after:
                before[key] = change.before
            after[key] = None
        if change.after is not None:
            after[key_of(change.after, key_fields)] = change.after
    return NetEffect(before, after)


def net_changes(changes: Iterable[Change], key_fields: Sequence[str]) -> list[Change]:
    """The net effect as at most one change per key, in order of first touch: insert→delete of a
    key vanishes, an update chain is one update from the first image to the last, an update back to
    the original row vanishes."""
    if not key_fields:
        raise ValueError("net changes need key fields")
    net = net_effect(changes, key_fields)
    out: list[Change] = []
    for key, last in net.after.items():
        first = net.before.get(key)
        if first is None and last is not None:
            out.append(Change("c", None, last))
        elif last is None and first is not None:
            out.append(Change("d", first, None))
        elif first is not None and last is not None and identity(first) != identity(last):
            out.append(Change("u", first, last))
    return out


# -- JSON serde -----------------------------------------------------------------------------


_NON_FINITE = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}
_AS_IS: frozenset[type] = frozenset({str, int, bool, type(None)})


def _float(value: float) -> Any:
    return value if math.isfinite(value) else _NON_FINITE[str(value)]


def _datetime(value: dt.datetime) -> str:
    if value.tzinfo is not None:
        utc = value.astimezone(dt.UTC).replace(tzinfo=None)
        return utc.isoformat(timespec="microseconds") + "Z"
    return value.isoformat(timespec="microseconds")


def _bytes(value: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(bytes(value)).decode("ascii")


_ENCODERS: dict[type, Any] = {  # exact types → encoder (the hot path of the job: one call per value)
    float: _float,
    Decimal: str,  # exact; Debezium's decimal.handling.mode=string, read by Flink's JSON format
    dt.datetime: _datetime,
    dt.date: dt.date.isoformat,
    dt.time: lambda v: v.isoformat(timespec="microseconds"),
    bytes: _bytes,
    uuid.UUID: str,
}


def encode_value(value: Any) -> Any:
    """A Python/Arrow value → its JSON representation (see module docstring)."""
    kind = type(value)
    if kind in _AS_IS:
        return value
    encoder = _ENCODERS.get(kind)
    if encoder is not None:
        return encoder(value)
    return _encode_other(value)


def _encode_other(value: Any) -> Any:
    """Subclasses of the types above, and containers."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime):
        return _datetime(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.isoformat(timespec="microseconds")
    if isinstance(value, bytes | bytearray | memoryview):
        return _bytes(value)
    if isinstance(value, dict):
        return {str(k): encode_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [encode_value(v) for v in value]
    raise EventError(f"cannot encode value of type {type(value).__name__}")


def encode_row(row: dict[str, Any]) -> dict[str, Any]:
    as_is = _AS_IS
    return {name: value if type(value) in as_is else encode_value(value) for name, value in row.items()}


def to_json(event: ChangeEvent, ready: bool = False, transaction: bool = False) -> bytes:
    """The envelope as compact UTF-8 JSON bytes. Row values are encoded here (idempotent) unless
    `ready` says the images already went through `encode_row` (the changelog's do); `transaction`
    adds the transaction block."""
    record = event.to_dict(transaction)
    if not ready:
        for image in ("before", "after"):
            if record[image] is not None:
                record[image] = encode_row(record[image])
    return _dumps(record, 0)


def key_to_json(key: dict[str, Any], ready: bool = False) -> bytes:
    return _dumps(key if ready else encode_row(key), orjson.OPT_SORT_KEYS)


def _dumps(value: Any, option: int) -> bytes:
    try:
        return orjson.dumps(value, option=option)
    except TypeError:  # an integer beyond 64 bits (never from Iceberg): the standard library writes it
        return json.dumps(value, separators=(",", ":"), sort_keys=bool(option & orjson.OPT_SORT_KEYS)).encode()


def from_json(payload: bytes | str | None) -> ChangeEvent:
    """Decode one envelope; raises EventError (terminal) for anything malformed."""
    if payload is None:
        raise EventError("tombstone has no envelope")
    return ChangeEvent.from_dict(loads(payload))


def loads(payload: bytes | str) -> Any:
    """Parse JSON; EventError (terminal) if it is not valid UTF-8 JSON.

    orjson reads an integer beyond 64 bits as a float (inexact). icetide never writes one (Iceberg's
    widest integer is 64-bit; decimals travel as strings); a foreign producer's would lose digits."""
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise EventError(f"not JSON: {exc.msg}") from None
    return value
