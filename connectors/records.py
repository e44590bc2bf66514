"""From Kafka records to `Change`s, and poison records to the dead-letter topic.

A record that cannot be decoded (or later cannot be applied) is copied, key and value untouched,
to the dead-letter topic with headers saying why and where it came from
(`icetide.reason`, `icetide.error`, `icetide.topic`, `icetide.partition`, `icetide.offset`).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from typing import Any

from icetide.errors import EventError, TransientError
from icetide.events import ChangeEvent, Source, encode_row, from_json, loads

from connectors.base import Change

FLUSH_TIMEOUT_S = 30.0


def key_fields_of(raw_key: bytes | None) -> tuple[str, ...]:
    """The key fields named by a record key (a JSON object); () for keyless tables."""
    if raw_key is None or raw_key in (b"", b"null"):
        return ()
    try:
        key = loads(raw_key)
    except EventError:
        raise EventError("record key is not JSON") from None
    if key is None:
        return ()
    if not isinstance(key, dict):
        raise EventError("record key is not a JSON object")
    return tuple(key)


class AvroDecoder:
    """Confluent wire-format records (magic 0 + schema id + Avro body) → events with JSON-ready images.

    Schemas are looked up by id (`SchemaRegistryClient.schema`) and parsed once. Decoded images are
    re-encoded with `icetide.events.encode_row`, so a sink sees the same values as from JSON events.
    """

    def __init__(self, lookup: Callable[[int], dict[str, Any]]) -> None:
        self._lookup = lookup
        self._parsed: dict[int, Any] = {}

    def _read(self, payload: bytes) -> Any:
        from fastavro import parse_schema, schemaless_reader
        from icetide.avro import schema_id_of

        schema_id = schema_id_of(payload)
        if schema_id not in self._parsed:
            self._parsed[schema_id] = parse_schema(self._lookup(schema_id), {})
        try:
            return schemaless_reader(io.BytesIO(payload[5:]), self._parsed[schema_id], None)
        except (EOFError, ValueError, TypeError, IndexError) as exc:
            raise EventError(f"cannot decode Avro body: {exc}") from None

    def event(self, payload: bytes) -> ChangeEvent:
        raw = self._read(payload)
        if not isinstance(raw, dict) or "source" not in raw:
            raise EventError("Avro value is not a change-event envelope")
        images = {name: encode_row(raw[name]) if raw.get(name) is not None else None for name in ("before", "after")}
        return ChangeEvent(op=raw["op"], before=images["before"], after=images["after"],
                           source=Source.from_dict(raw["source"]), ts_ms=int(raw["ts_ms"]))

    def key_fields(self, payload: bytes) -> tuple[str, ...]:
        raw = self._read(payload)
        if not isinstance(raw, dict):
            raise EventError("Avro key is not a record")
        return tuple(raw)


def is_avro(payload: bytes | None) -> bool:
    """JSON never starts with byte 0; the Confluent wire format always does."""
    return payload is not None and len(payload) > 0 and payload[0] == 0


def decode(msg: Any, avro: AvroDecoder | None = None) -> Change | None:
    """A record as a Change; None for a tombstone (nothing to apply); EventError if malformed.

    A keyless table's records are keyed by the whole row (so one row's events share a partition),
    and a key naming every column of the row means exactly that: the change is applied as keyless
    (delete one equal row, insert one), never as an upsert that would fold identical rows into one.
    For a table whose identifier fields are all of its columns both readings give the same result."""
    value, key = msg.value(), msg.key()
    if value is None:
        return None
    if is_avro(value) or is_avro(key):
        if avro is None:
            raise EventError("Avro record, but no schema registry is configured (--schema-registry)")
        event = avro.event(value) if is_avro(value) else from_json(value)
        fields = avro.key_fields(key) if is_avro(key) else key_fields_of(key)
    else:
        event, fields = from_json(value), key_fields_of(key)
    if fields and len(fields) == len(event.row) and set(fields) == event.row.keys():
        fields = ()  # keyed by the whole row: a keyless table (see below)
    return Change(msg.topic(), msg.partition(), msg.offset(), event, fields)


class DeadLetters:
    """A producer for the dead-letter topic; `flush()` before committing the positions that skip them."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.bootstrap = bootstrap
        self.topic = topic
        self.sent = 0
        self._errors: list[str] = []
        self._producer: Any = None  # made on the first dead letter: most runs never need one

    def _get_producer(self) -> Any:
        if self._producer is None:
            from confluent_kafka import Producer

            self._producer = Producer({"bootstrap.servers": self.bootstrap, "enable.idempotence": True,
                                       "linger.ms": 5, "logger": logging.getLogger("icetide.kafka.dead_letters")})
        return self._producer

    def send(self, msg: Any, reason: str, error: str) -> None:
        headers = [
            ("icetide.reason", reason.encode()),
            ("icetide.error", error.encode()[:2000]),
            ("icetide.topic", msg.topic().encode()),
            ("icetide.partition", str(msg.partition()).encode()),
            ("icetide.offset", str(msg.offset()).encode()),
        ]
        self._get_producer().produce(self.topic, value=msg.value(), key=msg.key(), headers=headers,
                                     on_delivery=self._delivered)
        self.sent += 1

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))

    def flush(self) -> None:
        """Wait until every dead letter is acknowledged; TransientError if not (positions stay put)."""
        if self._producer is None:
            return
        left = self._producer.flush(FLUSH_TIMEOUT_S)
        if left or self._errors:
            problem = self._errors[-1] if self._errors else f"{left} not acknowledged"
            self._errors.clear()
            raise TransientError(f"dead-letter topic {self.topic}: {problem}")
