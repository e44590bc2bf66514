"""Audience topics never reach base tables (issue #9, bug 1): topic selection and the per-event check.

`cdc run --policy` publishes `<prefix>.sec_<user>.<ns>.<table>` beside `<prefix>.<ns>.<table>`, and the
audience events keep the table's `source` block. Invariants, on generated names:
- the default selection (and any --pattern) takes base change topics only, never an audience topic,
  the schema-change, transaction or dead-letter topic;
- `--audience U` takes exactly U's topics;
- whatever the topics, `checked` lets an event through only to the consumer of its own audience, and an
  audience event is aimed at a table in namespace `sec_<user>__<ns>`, never at the base table.
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.base import Consumed
from connectors.consumer import ConsumeOptions, select_topics
from connectors.topics import AudienceMismatch, check_user, checked, event_audience, topic_audience
from icetide.errors import ConfigError
from icetide.events import ChangeEvent, Source, topic_for
from icetide.settings import load_settings
from streaming.audiences import audience_topic

pytestmark = pytest.mark.unit

names = st.from_regex(r"[a-z][a-z0-9_]{0,7}", fullmatch=True)
users = st.from_regex(r"[a-z][a-z0-9_]{0,5}", fullmatch=True)
tables = st.lists(st.tuples(names, names), min_size=1, max_size=5, unique=True)


def _change(topic: str, db: str, table: str, name: str = "icetide") -> Consumed:
    source = Source(catalog="lake", db=db, table=table, snapshot_id=1, sequence_number=1, commit_ts_ms=1,
                    ordinal=0, name=name)
    return Consumed(topic, 0, 5, ChangeEvent("c", None, {"id": 1}, source), ("id",))


@given(prefix=names, tables=tables, audience_users=st.lists(users, max_size=4, unique=True))
def test_default_selection_is_base_change_topics_only(prefix: str, tables: list[tuple[str, str]],
                                                      audience_users: list[str]) -> None:
    settings = load_settings(None, environ={"ICETIDE__CDC__TOPIC_PREFIX": prefix})
    base = {topic_for(prefix, ns, t) for ns, t in tables}
    audience = {u: {audience_topic(prefix, u, f"{ns}.{t}") for ns, t in tables} for u in audience_users}
    special = {f"{prefix}.schema-changes", f"{prefix}.transaction", f"{prefix}.dead-letter", "__consumer_offsets"}
    available = sorted(base | special | {t for ts in audience.values() for t in ts})
    assert set(select_topics(available, settings, ConsumeOptions())) == base
    # the old default pattern given by hand still leaves the audiences out
    assert set(select_topics(available, settings, ConsumeOptions(pattern=f"^{prefix}\\."))) == base
    assert set(select_topics(available, settings, ConsumeOptions(pattern="."))) == base
    for user, theirs in audience.items():
        assert set(select_topics(available, settings, ConsumeOptions(audience=user))) == theirs
        assert set(select_topics(available, settings, ConsumeOptions(audience=user, pattern="."))) == theirs


@given(prefix=names, user=users, ns=names, table=names)
def test_every_event_goes_only_to_its_own_audience_and_never_into_a_base_table(prefix: str, user: str, ns: str,
                                                                               table: str) -> None:
    base_topic, aud_topic = topic_for(prefix, ns, table), audience_topic(prefix, user, f"{ns}.{table}")
    assert topic_audience(base_topic, prefix) is None and topic_audience(aud_topic, prefix) == user
    base, aud = _change(base_topic, ns, table, prefix), _change(aud_topic, ns, table, prefix)
    assert event_audience(base, prefix) is None and event_audience(aud, prefix) == user
    assert checked(base, None, prefix).table == (ns, table)
    target = checked(aud, user, prefix).table
    assert target == (f"sec_{user}__{ns}", table) and target != (ns, table)
    for wrong in (None, user + "x"):
        with pytest.raises(AudienceMismatch):
            checked(aud, wrong, prefix)
    with pytest.raises(AudienceMismatch):
        checked(base, user, prefix)
    # a mirrored audience topic (another prefix) is still recognised from the event's own table
    mirrored = _change(f"dc1.{aud_topic}", ns, table, prefix)
    with pytest.raises(AudienceMismatch):
        checked(mirrored, None, "other")


def test_base_table_in_a_namespace_that_looks_like_an_audience_is_a_base_table() -> None:
    # namespace "sec_x", table "t": topic icetide.sec_x.t has no <ns>.<table> after the sec_ segment
    change = _change("icetide.sec_x.t", "sec_x", "t")
    assert event_audience(change, "icetide") is None
    assert checked(change, None, "icetide").table == ("sec_x", "t")


def test_explicit_topics_of_another_audience_are_refused_with_the_fix() -> None:
    settings = load_settings(None, environ={})
    with pytest.raises(ConfigError, match="--audience ana"):
        select_topics([], settings, ConsumeOptions(topics=["icetide.sec_ana.sales.vendas"]))
    with pytest.raises(ConfigError, match="leave out --audience"):
        select_topics([], settings, ConsumeOptions(topics=["icetide.sales.vendas"], audience="ana"))
    assert select_topics([], settings, ConsumeOptions(topics=["icetide.sec_ana.sales.vendas"], audience="ana")) \
        == ["icetide.sec_ana.sales.vendas"]


@pytest.mark.parametrize("user", ["Ana", "1a", "a.b", "a-b", ""])
def test_audience_must_be_a_policy_user_name(user: str) -> None:
    with pytest.raises(ConfigError, match="--audience"):
        check_user(user)
