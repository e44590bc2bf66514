"""Operational faults of the sink: back off, retry without end, say so once per state change.

A sink error is either about the event (a value the column cannot take, a constraint: the event goes
to the dead-letter topic) or about the database (disk full, out of memory, too many connections, the
server shutting down or unreachable, a lock): those are `SinkUnavailable`, and nothing is
dead-lettered for them. The consumer waits (capped exponential back-off with jitter) and tries again,
for as long as it takes; the positions stored in the sink do not move meanwhile, so nothing is lost
and nothing is applied twice.

`SinkHealth` is the state machine behind it: healthy → retrying on the first failure (one WARNING
log line, gauge `icetide_cdc_sink_retrying` = 1), retrying → healthy on the first success after it
(one INFO line with the outage's duration and attempts, gauge 0). Each failed attempt counts in
`icetide_cdc_sink_transient_errors_total{kind}` and is logged at DEBUG only.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from icetide.errors import TransientError

from connectors.metrics import ConsumerMetrics

log = logging.getLogger(__name__)
T = TypeVar("T")
FIRST_DELAY_S = 0.2
MAX_DELAY_S = 30.0


class SinkUnavailable(TransientError):
    """A database-side fault (not the event's): retry. `kind` names it for the metrics, e.g.
    `disk_full`, `too_many_connections`, `sqlite_full`, `connection_lost`."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


class Stopped(Exception):
    """The consumer was asked to stop while it waited for the sink."""


def snake(name: str) -> str:
    """`TooManyConnections` → `too_many_connections`; `SQLITE_FULL` → `sqlite_full`."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", name).lower()


def kind_of(exc: Exception) -> str:
    return exc.kind if isinstance(exc, SinkUnavailable) else "other"


class Backoff:
    """Delays 0.2 s, 0.4 s, 0.8 s … capped at `cap` s, each with ±20 % jitter (consumers that lost
    the same database do not come back in lockstep). `reset()` after a success."""

    def __init__(self, first: float = FIRST_DELAY_S, cap: float = MAX_DELAY_S) -> None:
        self.first, self.cap = first, cap
        self.attempt = 0

    def next(self) -> float:
        delay = min(self.cap, self.first * 2 ** min(self.attempt, 30))
        self.attempt += 1
        return float(delay * random.uniform(0.8, 1.2))

    def reset(self) -> None:
        self.attempt = 0


class SinkHealth:
    """Healthy or retrying; logs and sets the gauge on each change of state, never per attempt."""

    def __init__(self, metrics: ConsumerMetrics, sink_kind: str, max_delay_s: float = MAX_DELAY_S) -> None:
        self.metrics = metrics
        self.sink_kind = sink_kind
        self.backoff = Backoff(cap=max_delay_s)
        self.retrying = False
        self.since = 0.0
        self.attempts = 0
        self.metrics.sink_retrying.set(0)

    def failed(self, exc: TransientError) -> float:
        """Record a failed attempt; returns how long to wait before the next one."""
        kind = kind_of(exc)
        self.metrics.transient_errors.labels(kind=kind).inc()
        self.attempts += 1
        if not self.retrying:
            self.retrying, self.since = True, time.monotonic()
            self.metrics.sink_retrying.set(1)
            log.warning("%s sink unavailable (%s: %s); retrying until it recovers (nothing is dead-lettered "
                        "for this)", self.sink_kind, kind, exc)
        else:
            log.debug("%s sink still unavailable (attempt %d): %s", self.sink_kind, self.attempts, exc)
        return self.backoff.next()

    def ok(self) -> None:
        """A sink call succeeded."""
        if self.retrying:
            log.info("%s sink recovered after %.1fs and %d failed attempts", self.sink_kind,
                     time.monotonic() - self.since, self.attempts)
            self.metrics.sink_retrying.set(0)
        self.retrying, self.attempts = False, 0
        self.backoff.reset()


def call_until_ok(health: SinkHealth, stop: threading.Event, call: Callable[[], T],
             reopen: Callable[[], None] | None = None) -> T:
    """`call()` until it does not raise TransientError; between tries wait (the back-off) and
    `reopen()` the sink. Raises Stopped if `stop` is set while waiting. Other errors propagate."""
    broken = False
    while True:
        try:
            if broken and reopen is not None:
                reopen()
            result = call()
        except TransientError as exc:
            broken = True
            delay = health.failed(exc)
            if stop.wait(delay):
                raise Stopped from None
            continue
        health.ok()
        return result
