"""Decoding records, choosing topics, and the consumer's metric names (no broker needed)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from connectors.base import Consumed
from connectors.consumer import ConsumeOptions, Summary, select_topics
from connectors.metrics import ConsumerMetrics
from connectors.records import decode, key_fields_of
from icetide.errors import EventError
from icetide.events import ChangeEvent, Source, key_to_json, net_effect, to_json
from icetide.settings import load_settings

pytestmark = pytest.mark.unit


@dataclass
class FakeMessage:
    """Just the accessors decode() reads (a real confluent_kafka.Message cannot be built by hand)."""

    _value: bytes | None
    _key: bytes | None = None

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def topic(self) -> str:
        return "icetide.sales.t"

    def partition(self) -> int:
        return 2

    def offset(self) -> int:
        return 41


SOURCE = Source(catalog="lake", db="sales", table="t", snapshot_id=7, sequence_number=3, commit_ts_ms=1, ordinal=0)


def test_decode_reads_envelope_key_fields_and_position() -> None:
    event = ChangeEvent("c", None, {"b": 1, "a": "x", "v": None}, SOURCE)
    change = decode(FakeMessage(to_json(event), key_to_json({"b": 1, "a": "x"})))
    assert change is not None
    assert (change.topic, change.partition, change.offset) == ("icetide.sales.t", 2, 41)
    assert change.key_fields == ("a", "b") and change.table == ("sales", "t")
    assert change.event.after == {"b": 1, "a": "x", "v": None}


@pytest.mark.parametrize("op,before,after", [("c", None, {"a": "x", "n": None}), ("d", {"a": "x", "n": None}, None),
                                             ("u", {"a": "x", "n": 1}, {"a": "y", "n": 1})])
def test_a_key_naming_the_whole_row_means_a_keyless_table(op: str, before: dict | None, after: dict | None) -> None:
    """The job keys a keyless table's records by the whole row; applying them as keyed would fold
    identical rows into one (and never match a NULL)."""
    event = ChangeEvent(op, before, after, SOURCE)  # type: ignore[arg-type]
    change = decode(FakeMessage(to_json(event), key_to_json(event.row)))
    assert change is not None and change.key_fields == ()


def test_tombstones_are_skipped_and_keyless_records_have_no_key_fields() -> None:
    assert decode(FakeMessage(None, b'{"a":1}')) is None
    assert key_fields_of(None) == () and key_fields_of(b"null") == ()


@pytest.mark.parametrize("value,key", [(b"{", None), (b'{"op":"c"}', None), (b"[]", None),
                                       (to_json(ChangeEvent("c", None, {"a": 1}, SOURCE)), b"[1]"),
                                       (to_json(ChangeEvent("c", None, {"a": 1}, SOURCE)), b"\xff")])
def test_malformed_records_raise_event_error(value: bytes, key: bytes | None) -> None:
    with pytest.raises(EventError):
        decode(FakeMessage(value, key))


def test_topic_selection_excludes_dead_letters_schema_changes_and_internal_topics() -> None:
    settings = load_settings(None, environ={})
    available = ["icetide.sales.a", "icetide.dead-letter", "icetide.schema-changes", "__consumer_offsets",
                 "other.sales.b", "icetidex.c", "icetide.hr.b"]
    assert select_topics(available, settings, ConsumeOptions()) == ["icetide.hr.b", "icetide.sales.a"]
    assert select_topics(available, settings, ConsumeOptions(pattern=r"^icetide\.sales\.")) == ["icetide.sales.a"]
    assert select_topics(available, settings, ConsumeOptions(topics=["x"])) == ["x"]


def test_update_that_changes_the_key_deletes_the_old_key() -> None:
    def ch(op: str, before: dict | None, after: dict | None) -> Consumed:
        return Consumed("t", 0, 0, ChangeEvent(op, before, after, SOURCE), ("id",))  # type: ignore[arg-type]

    changes = [ch("c", None, {"id": 1, "v": 1}), ch("u", {"id": 1, "v": 1}, {"id": 2, "v": 1}),
               ch("c", None, {"id": 3, "v": 0}), ch("d", {"id": 3, "v": 0}, None)]
    final = net_effect([c.event for c in changes], ["id"]).after
    assert final == {(1,): None, (2,): {"id": 2, "v": 1}, (3,): None}


def test_metric_names_match_the_alert_rules() -> None:
    metrics = ConsumerMetrics()
    metrics.applied.labels(table="sales.t", op="c").inc()
    metrics.commit_to_apply.observe(0.3)
    metrics.lag.labels(topic="t", partition="0").set(5)
    metrics.last_snapshot.labels(table="sales.t").set(7)
    metrics.dead_letters.labels(reason="decode").inc()
    names = {s.name for family in metrics.registry.collect() for s in family.samples}
    assert {"icetide_cdc_events_applied_total", "icetide_cdc_commit_to_apply_seconds_bucket",
            "icetide_cdc_consumer_lag", "icetide_cdc_last_applied_snapshot",
            "icetide_cdc_dead_letters_total"} <= names


def test_summary_quantiles() -> None:
    summary = Summary(applied=100, seconds=2.0)
    for i in range(100):
        summary.observe(i / 100)
    data = summary.to_dict({("t", 0): 99})
    assert data["commit_to_apply_p50_s"] == 0.5 and data["commit_to_apply_max_s"] == 0.99
    assert data["events_per_s"] == 50.0 and data["positions"] == {"t/0": 99}


def test_avro_records_decode_to_the_same_images_as_json() -> None:
    import datetime as dt
    from decimal import Decimal

    from pyiceberg.schema import Schema
    from pyiceberg.types import DateType, DecimalType, LongType, NestedField, StringType, TimestampType

    from connectors.records import AvroDecoder
    from icetide.avro import AvroCodec, key_schema, value_schema

    schema = Schema(NestedField(1, "id", LongType(), required=True), NestedField(2, "name", StringType()),
                    NestedField(3, "day", DateType()), NestedField(4, "price", DecimalType(10, 2)),
                    NestedField(5, "at", TimestampType()), identifier_field_ids=[1])
    key_s, value_s = key_schema(schema, ["id"], "sales", "t"), value_schema(schema, "sales", "t")
    codec = AvroCodec(key_s, value_s, key_id=11, value_id=12)
    row = {"id": 5, "name": "ana", "day": dt.date(2025, 1, 2), "price": Decimal("12.30"),
           "at": dt.datetime(2025, 1, 2, 3, 4, 5, 600000)}
    event = ChangeEvent("c", None, row, SOURCE)
    msg = FakeMessage(codec.encode_value(event), codec.encode_key({"id": 5}))

    with pytest.raises(EventError, match="schema registry"):
        decode(msg)
    change = decode(msg, AvroDecoder({11: key_s, 12: value_s}.__getitem__))
    via_json = decode(FakeMessage(to_json(event), key_to_json({"id": 5})))
    assert change is not None and via_json is not None
    assert change.key_fields == ("id",)
    assert change.event.after == via_json.event.after == {
        "id": 5, "name": "ana", "day": "2025-01-02", "price": "12.30", "at": "2025-01-02T03:04:05.600000"}
    assert change.event.source == SOURCE


def test_keyless_records_keep_identical_rows_and_delete_rows_with_nulls(tmp_path: Any) -> None:
    from connectors.sqlite import SqliteConfig, SqliteSink

    twin, holey = {"a": "x", "n": 1}, {"a": "y", "n": None}
    plan = [("c", None, twin), ("c", None, twin), ("c", None, holey), ("d", twin, None), ("d", holey, None)]
    changes = []
    for ordinal, (op, before, after) in enumerate(plan):
        event = ChangeEvent(op, before, after, Source(catalog="lake", db="sales", table="t", snapshot_id=7,  # type: ignore[arg-type]
                                                      sequence_number=3, commit_ts_ms=1, ordinal=ordinal))
        change = decode(FakeMessage(to_json(event), key_to_json(event.row)))  # keyed by the whole row, as the job does
        assert change is not None
        changes.append(Consumed(change.topic, change.partition, ordinal, change.event, change.key_fields))
    with SqliteSink(SqliteConfig(tmp_path / "d.db")) as sink:
        sink.apply(changes, {("icetide.sales.t", 2): len(changes) - 1})
        assert sink.read_rows(("sales", "t")) == [twin]  # one of the twins is left; the NULL row is gone
