"""Which topics `cdc apply` reads, and whose rows each event carries: the table's or an audience's.

The job publishes, under `cdc.topic_prefix`:

    <prefix>.<ns>.<table>                 the table's change events (base topics)
    <prefix>.sec_<user>.<ns>.<table>      the same changes filtered and masked for one audience
                                          (`cdc run --policy`, streaming/audiences.py)
    <prefix>.schema-changes, <prefix>.transaction, the dead-letter topic   not change events

Audience events keep the table's `source` block, so by their content they would land in the base
table: masked and filtered images over clear rows. The rule (docs/runbooks/cdc.md#audiences):
- a plain `cdc apply` reads base topics only: audience topics are left out of every pattern, and
  naming one in `--topics` is an error;
- `cdc apply --audience USER` reads that audience's topics only, and writes each table to a
  downstream table named for the audience, namespace `sec_<user>__<ns>` (PostgreSQL schema
  `sec_ana__sales`, SQLite table `sec_ana__sales__vendas`), never to the base table;
- whatever the topics, the consumer checks each event (`event_audience`) and refuses one whose
  audience is not the one it applies (`AudienceMismatch`): nothing of its batch is written.
"""

from __future__ import annotations

import logging
import re
from dataclasses import replace

from icetide.errors import ConfigError
from icetide.settings import Settings

from connectors.base import Consumed

log = logging.getLogger(__name__)
AUDIENCE_PREFIX = "sec_"  # policies.compiler.AUDIENCE_PREFIX (a room may not import another)
USER = re.compile(r"[a-z][a-z0-9_]*")
NAMESPACE_JOIN = "__"


class AudienceMismatch(ConfigError):
    """An event of one audience (or of the base table) reached a consumer applying another."""


def check_user(user: str) -> str:
    if not USER.fullmatch(user):
        raise ConfigError(f"--audience {user!r}: a policy user name ([a-z][a-z0-9_]*)")
    return user


def special_topics(settings: Settings) -> set[str]:
    """Topics under the prefix that carry no row changes."""
    prefix = settings.cdc.topic_prefix
    return {settings.dead_letter_topic, f"{prefix}.schema-changes", f"{prefix}.transaction"}


def topic_audience(topic: str, prefix: str) -> str | None:
    """By name: the user of `<prefix>.sec_<user>.<ns>.<table>`, else None (a base topic or other)."""
    head = f"{prefix}.{AUDIENCE_PREFIX}"
    if not topic.startswith(head):
        return None
    user, dot, rest = topic[len(head):].partition(".")
    return user if dot and "." in rest and USER.fullmatch(user) else None


def event_audience(change: Consumed, prefix: str) -> str | None:
    """Whose rows `change` carries: the user whose audience topic it came from, None for the table's.

    Read from the topic against the event's own table: `….sec_<user>.<ns>.<table>` where `<ns>.<table>`
    is the event's source table (also under another prefix, e.g. a mirrored topic); failing that, by
    the topic name under the configured prefix and the event's `source.name`."""
    source = change.event.source
    found = re.search(r"(?:^|\.)" + re.escape(AUDIENCE_PREFIX) + r"([a-z][a-z0-9_]*)\."
                      + re.escape(f"{source.db}.{source.table}") + "$", change.topic)
    if found:
        return found.group(1)
    return topic_audience(change.topic, prefix) or topic_audience(change.topic, source.name)


def audience_namespace(user: str, namespace: str) -> str:
    """The downstream namespace of `namespace`'s tables for `user`: `sec_ana__sales`."""
    return f"{AUDIENCE_PREFIX}{user}{NAMESPACE_JOIN}{namespace}"


def for_audience(change: Consumed, user: str) -> Consumed:
    """`change` aimed at the audience's downstream table (its source names the audience namespace)."""
    source = change.event.source
    event = replace(change.event, source=replace(source, db=audience_namespace(user, source.db)))
    return replace(change, event=event)


def checked(change: Consumed, audience: str | None, prefix: str) -> Consumed:
    """`change` as the consumer applying `audience` (None: base tables) may write it; raises
    AudienceMismatch for an event of another audience or, on an audience consumer, a base event."""
    found = event_audience(change, prefix)
    if found != audience:
        where = f"{change.topic}[{change.partition}]@{change.offset}"
        if found is None:
            raise AudienceMismatch(f"{where} carries base-table events, but this consumer applies audience "
                                   f"{audience!r}: select only that audience's topics")
        raise AudienceMismatch(f"{where} carries events of audience {found!r}: they would overwrite "
                               + ("the base table" if audience is None else f"audience {audience!r}'s tables")
                               + f"; apply them with `cdc apply --audience {found}`")
    return change if audience is None else for_audience(change, audience)


def default_pattern(settings: Settings, audience: str | None = None) -> str:
    prefix = re.escape(settings.cdc.topic_prefix)
    if audience is None:
        return "^" + prefix + r"\."
    return "^" + prefix + r"\." + re.escape(AUDIENCE_PREFIX + audience) + r"\."


def select_topics(available: list[str], settings: Settings, topics: list[str] | None, pattern: str | None,
                  audience: str | None) -> list[str]:
    """Explicit `topics` (each must be of `audience`: ConfigError otherwise), else the available
    topics matching `pattern` (default `^<prefix>\\.`, or `^<prefix>\\.sec_<user>\\.`) that are of
    `audience`, minus the dead-letter, schema-change, transaction and internal (`__…`) topics."""
    prefix = settings.cdc.topic_prefix
    if topics:
        for topic in topics:
            found = topic_audience(topic, prefix)
            if found != audience:
                what = f"audience {found!r}'s topic" if found else "a base topic"
                fix = f"pass --audience {found}" if found else "leave out --audience"
                raise ConfigError(f"--topics: {topic} is {what}, but this consumer applies "
                                  + (f"audience {audience!r}" if audience else "base tables") + f" ({fix})")
        return list(topics)
    regex = re.compile(pattern or default_pattern(settings, audience))
    excluded = special_topics(settings)
    chosen: list[str] = []
    others: list[str] = []
    for topic in sorted(available):
        if not regex.search(topic) or topic in excluded or topic.startswith("__"):
            continue
        (chosen if topic_audience(topic, prefix) == audience else others).append(topic)
    if others and pattern:
        log.info("--pattern also matches %d topic(s) of %s, left out: %s", len(others),
                 "audiences (apply them with --audience USER)" if audience is None else "other readers",
                 ", ".join(others[:5]) + (" …" if len(others) > 5 else ""))
    return chosen
