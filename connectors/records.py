"""From Kafka records to `Change`s, and poison records to the dead-letter topic.

A record that cannot be decoded (or later cannot be applied) is copied, key and value untouched,
to the dead-letter topic with headers saying why and where it came from
(`icetide.reason`, `icetide.error`, `icetide.topic`, `icetide.partition`, `icetide.offset`).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from icetide.errors import EventError, TransientError
from icetide.events import from_json

from connectors.base import Change

FLUSH_TIMEOUT_S = 30.0


def key_fields_of(raw_key: bytes | None) -> tuple[str, ...]:
    """The key fields named by a record key (a JSON object); () for keyless tables."""
    if raw_key is None or raw_key in (b"", b"null"):
        return ()
    try:
        key = json.loads(raw_key)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise EventError("record key is not JSON") from None
    if key is None:
        return ()
    if not isinstance(key, dict):
        raise EventError("record key is not a JSON object")
    return tuple(key)


def decode(msg: Any) -> Change | None:
    """A record as a Change; None for a tombstone (nothing to apply); EventError if malformed."""
    value = msg.value()
    if value is None:
        return None
    event = from_json(value)
    return Change(msg.topic(), msg.partition(), msg.offset(), event, key_fields_of(msg.key()))


class DeadLetters:
    """A producer for the dead-letter topic; `flush()` before committing the positions that skip them."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from confluent_kafka import Producer

        self.topic = topic
        self.sent = 0
        self._errors: list[str] = []
        self._producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5,
                                   "logger": logging.getLogger("icetide.kafka.dead_letters")})

    def send(self, msg: Any, reason: str, error: str) -> None:
        headers = [
            ("icetide.reason", reason.encode()),
            ("icetide.error", error.encode()[:2000]),
            ("icetide.topic", msg.topic().encode()),
            ("icetide.partition", str(msg.partition()).encode()),
            ("icetide.offset", str(msg.offset()).encode()),
        ]
        self._producer.produce(self.topic, value=msg.value(), key=msg.key(), headers=headers,
                               on_delivery=self._delivered)
        self.sent += 1

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self._errors.append(str(err))

    def flush(self) -> None:
        """Wait until every dead letter is acknowledged; TransientError if not (positions stay put)."""
        left = self._producer.flush(FLUSH_TIMEOUT_S)
        if left or self._errors:
            problem = self._errors[-1] if self._errors else f"{left} not acknowledged"
            self._errors.clear()
            raise TransientError(f"dead-letter topic {self.topic}: {problem}")
