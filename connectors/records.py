"""From Kafka records to `Consumed` change events, and poison records to the dead-letter topic.

A record that cannot be decoded (or later cannot be applied) is copied, key and value untouched,
to the dead-letter topic with headers saying why and where it came from
(`icetide.reason`, `icetide.error`, `icetide.topic`, `icetide.partition`, `icetide.offset`).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from icetide import kafka_client
from icetide.connect_json import ConnectJsonDecoder, is_connect_json
from icetide.connect_json import key_fields as connect_key_fields
from icetide.errors import EventError, TransientError
from icetide.events import ChangeEvent, loads
from icetide.rowschema import RowSchema
from icetide.settings import Settings

from connectors.base import Consumed

FLUSH_TIMEOUT_S = 30.0


_CONNECT_HEAD, _CONNECT_PAYLOAD = b'{"schema":', b',"payload":'
_KEY_SCHEMAS: dict[bytes, tuple[str, ...]] = {}  # a connect-json key's schema text → its field names


def key_fields_of(raw_key: bytes | None) -> tuple[str, ...]:
    """The key fields named by a JSON record key (an object, or connect-json's struct schema); ()
    for keyless tables.

    A connect-json key repeats one schema text on every record: its field names are cached by that
    text (checked to be one whole JSON value when first seen), so the key is not parsed again."""
    if raw_key is None or raw_key in (b"", b"null"):
        return ()
    if raw_key.startswith(_CONNECT_HEAD) and (end := raw_key.find(_CONNECT_PAYLOAD)) > 0:
        schema_text = raw_key[len(_CONNECT_HEAD):end]
        found = _KEY_SCHEMAS.get(schema_text)
        if found is not None:
            return found
        try:
            whole = isinstance(loads(schema_text), dict)
        except EventError:
            whole = False
        fields = _key_fields_parsed(raw_key)
        if whole and len(_KEY_SCHEMAS) < 1024:
            _KEY_SCHEMAS[schema_text] = fields
        return fields
    return _key_fields_parsed(raw_key)


def _key_fields_parsed(raw_key: bytes) -> tuple[str, ...]:
    try:
        key = loads(raw_key)
    except EventError:
        raise EventError("record key is not JSON") from None
    if key is None:
        return ()
    if is_connect_json(key):
        return connect_key_fields(key)
    if not isinstance(key, dict):
        raise EventError("record key is not a JSON object")
    return tuple(key)


class AvroDecoder:
    """Confluent wire-format records (magic 0 + schema id + Avro body) → events with JSON-ready images.

    Schemas are looked up by id (`SchemaRegistryClient.schema`) and parsed once. Decoded images are
    turned into their JSON-ready form (`icetide.avro.ready_converter`), so a sink sees the same
    values as from JSON events, and the value schema gives the images' `RowSchema`. A key's field
    names come from its schema alone (cached per id): the key body is never decoded.
    """

    def __init__(self, lookup: Callable[[int], dict[str, Any]]) -> None:
        self._lookup = lookup
        self._values: dict[int, tuple[Any, Callable[[Any], Any], RowSchema]] = {}
        self._keys: dict[int, tuple[str, ...]] = {}

    def _value(self, schema_id: int) -> tuple[Any, Callable[[Any], Any], RowSchema]:
        found = self._values.get(schema_id)
        if found is None:
            from fastavro import parse_schema
            from icetide.avro import ready_converter
            from icetide.avro_rowschema import row_schema

            raw = self._lookup(schema_id)
            if not isinstance(raw, dict) or raw.get("type") != "record":
                raise EventError(f"Avro schema {schema_id} is not a change-event envelope")
            row = next((f["type"] for f in raw.get("fields", []) if f.get("name") == "before"), None)
            if row is None:
                raise EventError(f"Avro schema {schema_id} is not a change-event envelope")
            found = (parse_schema(raw, {}), ready_converter(row), row_schema(raw))
            self._values[schema_id] = found
        return found

    def decoded(self, payload: bytes) -> tuple[ChangeEvent, RowSchema]:
        from fastavro import schemaless_reader
        from icetide.avro import envelope_event, schema_id_of

        parsed, ready, rows = self._value(schema_id_of(payload))
        try:
            raw = schemaless_reader(io.BytesIO(payload[5:]), parsed, None)
        except (EOFError, ValueError, TypeError, IndexError) as exc:
            raise EventError(f"cannot decode Avro body: {exc}") from None
        event = envelope_event(raw, ready)
        if rows.schema_id != event.source.schema_id:
            rows = replace(rows, schema_id=event.source.schema_id)
        return event, rows

    def event(self, payload: bytes) -> ChangeEvent:
        return self.decoded(payload)[0]

    def key_fields(self, payload: bytes) -> tuple[str, ...]:
        from icetide.avro import field_names, schema_id_of

        schema_id = schema_id_of(payload)
        if schema_id not in self._keys:
            self._keys[schema_id] = field_names(self._lookup(schema_id))
        return self._keys[schema_id]


def is_avro(payload: bytes | None) -> bool:
    """JSON never starts with byte 0; the Confluent wire format always does."""
    return payload is not None and len(payload) > 0 and payload[0] == 0


_CONNECT_JSON = ConnectJsonDecoder()  # converters per distinct schema: shared, a cache only


def decode(msg: Any, avro: AvroDecoder | None = None, connect: ConnectJsonDecoder | None = None) -> Consumed | None:
    """A record as a `Consumed` change event; None for a tombstone (nothing to apply); EventError if malformed.

    Reads the three encodings (docs/encodings.md): Avro in the Confluent wire format (needs `avro`),
    connect-json (`{"schema", "payload"}`, Kafka Connect's JsonConverter with schemas) and plain
    JSON. Images are JSON-ready (`icetide.events`) whatever the encoding; `Consumed.schema` is the
    images' `RowSchema` when the encoding carries one (Avro, connect-json).

    A keyless table's records are keyed by the whole row (so one row's events share a partition),
    and a key naming every column of the row means exactly that: the change is applied as keyless
    (delete one equal row, insert one), never as an upsert that would fold identical rows into one.
    For a table whose identifier fields are all of its columns both readings give the same result."""
    value, key = msg.value(), msg.key()
    if value is None:
        return None
    schema: RowSchema | None = None
    if is_avro(value) or is_avro(key):
        if avro is None:
            raise EventError("Avro record, but no schema registry is configured (--schema-registry)")
        if is_avro(value):
            event, schema = avro.decoded(value)
        else:
            event, schema = _json_event(value, connect or _CONNECT_JSON)
        fields = avro.key_fields(key) if is_avro(key) else key_fields_of(key)
    else:
        event, schema = _json_event(value, connect or _CONNECT_JSON)
        fields = key_fields_of(key)
    if fields and len(fields) == len(event.row) and set(fields) == event.row.keys():
        fields = ()  # keyed by the whole row: a keyless table (see below)
    return Consumed(msg.topic(), msg.partition(), msg.offset(), event, fields, schema)


def _json_event(value: bytes, connect: ConnectJsonDecoder) -> tuple[ChangeEvent, RowSchema | None]:
    fast = connect.record(value)  # connect-json with a schema seen before: only the payload is parsed
    if fast is not None:
        return fast
    raw = loads(value)
    if is_connect_json(raw):
        return connect.event(raw)
    return ChangeEvent.from_dict(raw), None


class DeadLetters:
    """A producer for the dead-letter topic; `flush()` before committing the positions that skip them."""

    def __init__(self, bootstrap: str, topic: str, settings: Settings | None = None) -> None:
        self.bootstrap = bootstrap
        self.settings = settings or Settings()  # its Kafka security (`kafka_client`, principal `apply`)
        self.topic = topic
        self.sent = 0
        self._errors: list[str] = []
        self._producer: Any = None  # made on the first dead letter: most runs never need one

    def _get_producer(self) -> Any:
        if self._producer is None:
            self._producer = kafka_client.producer(
                self.settings, "apply", self.bootstrap,
                {"enable.idempotence": True, "linger.ms": 5, "logger": logging.getLogger("icetide.kafka.dead_letters")})
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
