"""The publishing loop without Flink: positions, budgets (chunks of a large snapshot), resumes, tombstones.

The Avro encoder is tested against the real schema registry in tests/integration/test_streaming_avro.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from icetide.errors import ConfigError
from icetide.events import ChangeEvent, Source, from_json
from icetide.settings import CdcSettings
from streaming.metrics import CdcMetrics
from streaming.poller import (
    SCHEMA_OP,
    TOMBSTONE_OP,
    AvroEncoder,
    JsonEncoder,
    Position,
    Record,
    TablePoller,
    make_encoder,
    with_tombstones,
)

pytestmark = pytest.mark.unit


@dataclass
class Snap:
    snapshot_id: int
    parent_snapshot_id: int | None
    size: int


@dataclass
class Field:
    name: str
    field_type: str
    required: bool
    field_id: int


@dataclass
class Schema:
    schema_id: int
    fields: list[Field]


class FakeChangelog:
    """Snapshots 1..n in a chain; snapshot s has `sizes[s-1]` insert events; from snapshot
    `evolve_at` on, events use schema 1 (a column added), before it schema 0."""

    namespace, name, key_fields = "sales", "vendas", ["id"]

    def __init__(self, sizes: list[int], evolve_at: int = 10**9) -> None:
        self.snaps = [Snap(i + 1, i or None, n) for i, n in enumerate(sizes)]
        self.evolve_at = evolve_at

    def schema_by_id(self, schema_id: int) -> Schema:
        fields = [Field("id", "long", True, 1), Field("v", "string", False, 2)]
        return Schema(schema_id, fields[: 1 + schema_id])

    def refresh(self) -> None:
        pass

    @property
    def current_snapshot_id(self) -> int | None:
        return self.snaps[-1].snapshot_id if self.snaps else None

    def snapshots_between(self, after: int | None, upto: int | None) -> list[Snap]:
        return [s for s in self.snaps if (after or 0) < s.snapshot_id <= (upto or 0)]

    def snapshot(self, snapshot_id: int) -> Snap:
        return self.snaps[snapshot_id - 1]

    def snapshot_events(self, snap: Snap, skip: int = 0) -> Iterator[ChangeEvent]:
        for ordinal in range(skip, snap.size):
            schema = int(snap.snapshot_id >= self.evolve_at)
            source = Source("lake", "sales", "vendas", snap.snapshot_id, snap.snapshot_id, 1000, ordinal, schema)
            yield ChangeEvent("c", None, {"id": snap.snapshot_id * 100 + ordinal}, source)

    def initial_events(self, snapshot_id: int, skip: int = 0) -> Iterator[ChangeEvent]:
        for ordinal in range(skip, 3):
            source = Source("lake", "sales", "vendas", snapshot_id, snapshot_id, 1000, ordinal, snapshot=True)
            yield ChangeEvent("r", None, {"id": ordinal}, source)


def drain(poller: TablePoller, position: Position, budget: int | None) -> tuple[list[Record], Position]:
    records: list[Record] = []
    for item in poller.poll(position, budget):
        if isinstance(item, Record):
            records.append(item)
        else:
            position = item
    return records, position


def positions_of(records: list[Record]) -> list[tuple[int, int]]:
    return [from_json(r.value).source.position for r in records if r.op != SCHEMA_OP]


@given(st.lists(st.integers(0, 7), max_size=5), st.integers(1, 5), st.integers(0, 3), st.integers(1, 6))
def test_chunked_polls_and_restarts_publish_every_event_once(sizes: list[int], budget: int, restarts: int,
                                                             evolve_at: int) -> None:
    """Polling with a budget, and restarting from the stored position with a fresh poller (as after
    a Flink restore), yields the same records, once each, in order, as one unbounded poll."""
    changelog: Any = FakeChangelog(sizes, evolve_at)
    everything, final = drain(TablePoller(changelog, "icetide"), Position(None), None)
    poller = TablePoller(changelog, "icetide")
    position, got = Position(None), []
    for step in range(100):
        if step < restarts:
            poller = TablePoller(changelog, "icetide")  # state restored, caches lost
        records, position = drain(poller, position, budget)
        got += records
        if not records:
            break
    assert positions_of(got) == positions_of(everything)
    assert [r.op for r in got] == [r.op for r in everything]
    assert position == final and position.after == changelog.current_snapshot_id


def test_a_schema_change_precedes_the_first_record_in_a_new_schema() -> None:
    changelog: Any = FakeChangelog([1, 1, 1], evolve_at=2)
    records, position = drain(TablePoller(changelog, "pfx"), Position(None), None)
    assert [r.op for r in records] == [SCHEMA_OP, "c", SCHEMA_OP, "c", "c"]
    first, second = (json.loads(r.value) for r in records if r.op == SCHEMA_OP)
    assert records[0].topic == "pfx.schema-changes" and records[0].key == b'{"db":"sales","table":"vendas"}'
    assert (first["tableChanges"][0]["type"], second["tableChanges"][0]["type"]) == ("CREATE", "ALTER")
    assert [c["name"] for c in second["tableChanges"][0]["table"]["columns"]] == ["id", "v"]
    assert (second["previous_schema_id"], second["schema_id"], position.schema_id) == (0, 1, 1)
    assert second["source"]["snapshot_id"] == 2


def test_records_are_keyed_by_the_row_key_and_go_to_the_table_topic() -> None:
    changelog: Any = FakeChangelog([2])
    records, position = drain(TablePoller(changelog, "pfx", schema_changes=False), Position(None), None)
    assert [(r.topic, r.key) for r in records] == [("pfx.sales.vendas", b'{"id":100}'),
                                                   ("pfx.sales.vendas", b'{"id":101}')]
    assert position == Position(after=1, schema_id=None)


def test_initial_snapshot_then_stream() -> None:
    changelog: Any = FakeChangelog([1, 2])
    start = Position(after=1, snapshot_id=1, initial=True)
    records, position = drain(TablePoller(changelog, "i", schema_changes=False), start, 2)
    assert [r.op for r in records] == ["r", "r"] and position == Position(1, 1, 2, True)
    records, position = drain(TablePoller(changelog, "i", schema_changes=False), position, None)
    assert [r.op for r in records] == ["r", "c", "c"] and position == Position(after=2)


def test_position_json_round_trip() -> None:
    position = Position(after=7, snapshot_id=9, emitted=3)
    assert Position.from_json(position.to_json()) == position


def test_metrics_keep_one_last_snapshot_series_per_table() -> None:
    metrics = CdcMetrics()
    metrics.published("sales.vendas", "c", 0.2)
    metrics.snapshot_done("sales.vendas", 1, 1_000)
    metrics.snapshot_done("sales.vendas", 2, 2_000)
    text = metrics.registry.get_sample_value
    assert text("icetide_cdc_events_published_total", {"table": "sales.vendas", "op": "c"}) == 1
    assert text("icetide_cdc_last_published_snapshot", {"table": "sales.vendas", "snapshot_id": "2"}) == 1
    assert text("icetide_cdc_last_published_snapshot", {"table": "sales.vendas", "snapshot_id": "1"}) is None
    assert text("icetide_cdc_last_published_commit_timestamp_seconds", {"table": "sales.vendas"}) == 2


class DeletingChangelog(FakeChangelog):
    """Like FakeChangelog, but every odd ordinal of a snapshot deletes the row the ordinal before inserted."""

    def __init__(self, sizes: list[int], key_fields: list[str]) -> None:
        super().__init__(sizes)
        self.key_fields = key_fields

    def snapshot_events(self, snap: Snap, skip: int = 0) -> Iterator[ChangeEvent]:
        for ordinal in range(skip, snap.size):
            source = Source("lake", "sales", "vendas", snap.snapshot_id, snap.snapshot_id, 1000, ordinal)
            row = {"id": snap.snapshot_id * 100 + ordinal // 2, "v": f"r{ordinal // 2}"}
            yield (ChangeEvent("d", row, None, source) if ordinal % 2 else ChangeEvent("c", None, row, source))


@given(st.lists(st.integers(0, 7), max_size=4), st.integers(1, 4), st.integers(0, 2))
def test_a_tombstone_follows_each_delete_with_the_same_key(sizes: list[int], budget: int, restarts: int) -> None:
    """With tombstones, each delete record is directly followed by a record with identical topic and key
    bytes and a null value, also across chunked polls and restarts; tombstones take no place in the
    positions (the same events are published as without them)."""
    changelog: Any = DeletingChangelog(sizes, ["id"])
    plain, _ = drain(TablePoller(changelog, "icetide", schema_changes=False), Position(None), None)
    poller = TablePoller(changelog, "icetide", schema_changes=False, tombstones=True)
    position, got = Position(None), []
    for step in range(100):
        if step < restarts:
            poller = TablePoller(changelog, "icetide", schema_changes=False, tombstones=True)
        records, position = drain(poller, position, budget)
        got += records
        if not records:
            break
    events = [r for r in got if r.op != TOMBSTONE_OP]
    assert [(r.op, r.key) for r in events] == [(r.op, r.key) for r in plain]
    assert positions_of(events) == positions_of(plain)
    deletes = [i for i, r in enumerate(got) if r.op == "d"]
    assert [i for i, r in enumerate(got) if r.op == TOMBSTONE_OP] == [i + 1 for i in deletes]
    for i in deletes:
        delete, dead = got[i], got[i + 1]
        assert (dead.topic, dead.key, dead.value) == (delete.topic, delete.key, None)
        before = from_json(delete.value).before
        assert before is not None and dead.key == f'{{"id":{before["id"]}}}'.encode()
    assert position.after == changelog.current_snapshot_id


def test_no_tombstones_for_keyless_tables_or_when_disabled() -> None:
    keyless: Any = DeletingChangelog([4], [])
    records, _ = drain(TablePoller(keyless, "p", schema_changes=False, tombstones=True), Position(None), None)
    assert [r.op for r in records] == ["c", "d", "c", "d"]
    assert records[1].key == b'{"id":100,"v":"r0"}'  # the whole row
    keyed: Any = DeletingChangelog([4], ["id"])
    records, _ = drain(TablePoller(keyed, "p", schema_changes=False), Position(None), None)
    assert [r.op for r in records] == ["c", "d", "c", "d"]
    records, _ = drain(TablePoller(keyed, "p", schema_changes=False, tombstones=True), Position(None), None)
    assert [r.op for r in records] == ["c", "d", TOMBSTONE_OP, "c", "d", TOMBSTONE_OP]


def test_tombstones_helper_and_encoder_choice() -> None:
    changelog: Any = DeletingChangelog([2], ["id"])
    records, _ = drain(TablePoller(changelog, "p", schema_changes=False), Position(None), None)
    assert [r.op for r in with_tombstones(records, ["id"])] == ["c", "d", TOMBSTONE_OP]
    assert with_tombstones(records, []) == records
    assert records[1].event is not None and records[1].event.op == "d"  # audiences derive from it
    assert isinstance(make_encoder(CdcSettings()), JsonEncoder)
    avro = make_encoder(CdcSettings(format="avro", schema_registry_url="http://127.0.0.1:1"))
    assert isinstance(avro, AvroEncoder) and avro.registry.url == "http://127.0.0.1:1"
    with pytest.raises(ConfigError, match=r"cdc\.schema_registry_url"):
        make_encoder(CdcSettings(format="avro"))


class IcebergSchemaChangelog(DeletingChangelog):
    """DeletingChangelog with real PyIceberg schemas (the connect-json encoder derives Connect schemas)."""

    def schema_by_id(self, schema_id: int) -> Any:
        from pyiceberg.schema import Schema as IcebergSchema
        from pyiceberg.types import LongType, NestedField, StringType

        return IcebergSchema(NestedField(1, "id", LongType(), required=True), NestedField(2, "v", StringType()),
                             schema_id=schema_id, identifier_field_ids=[1])


def test_connect_json_encoder_records_tombstones_and_decoding() -> None:
    import orjson

    from connectors.records import decode
    from streaming.poller import ConnectJsonEncoder

    encoder = make_encoder(CdcSettings(format="connect-json"))
    assert isinstance(encoder, ConnectJsonEncoder) and encoder.format == "connect-json"
    changelog: Any = IcebergSchemaChangelog([4], ["id"])
    poller = TablePoller(changelog, "p", schema_changes=False, encoder=encoder, tombstones=True)
    records, _ = drain(poller, Position(None), None)
    assert [r.op for r in records] == ["c", "d", TOMBSTONE_OP, "c", "d", TOMBSTONE_OP]
    assert records[2].value is None and records[2].key == records[1].key  # same key bytes
    value = orjson.loads(records[1].value or b"")
    assert value["schema"]["name"] == "p.sales.vendas.Envelope" and value["payload"]["op"] == "d"
    assert orjson.loads(records[1].key)["payload"] == {"id": 100}

    class Message:
        def __init__(self, record: Record) -> None:
            self.record = record

        def value(self) -> bytes | None:
            return self.record.value

        def key(self) -> bytes:
            return self.record.key

        def topic(self) -> str:
            return self.record.topic

        def partition(self) -> int:
            return 0

        def offset(self) -> int:
            return 0

    change = decode(Message(records[1]))
    assert change is not None and change.key_fields == ("id",) and change.event == records[1].event
    assert change.schema is not None and change.schema.names == ["id", "v"]
    assert decode(Message(records[2])) is None  # a tombstone
