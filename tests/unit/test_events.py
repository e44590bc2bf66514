"""The change-event contract: envelope shape, validation, JSON round trip, value encoding."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from icetide.errors import EventError
from icetide.events import ChangeEvent, Source, encode_row, from_json, key_to_json, to_json, topic_for

pytestmark = pytest.mark.unit

SOURCE = Source(catalog="lake", db="sales", table="vendas", snapshot_id=42, sequence_number=3,
                commit_ts_ms=1_700_000_000_000, ordinal=7, schema_id=1)

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**62), 2**62), st.text(max_size=20),
                         st.floats(allow_nan=False, allow_infinity=False))
images = st.dictionaries(st.text(min_size=1, max_size=10), json_scalars, min_size=1, max_size=6)


@given(op=st.sampled_from(["c", "u", "d", "r"]), before=images, after=images,
       ordinal=st.integers(0, 10**9), ts=st.integers(0, 2**50))
def test_json_round_trip(op: str, before: dict, after: dict, ordinal: int, ts: int) -> None:
    b = before if op in ("u", "d") else None
    a = after if op in ("c", "u", "r") else None
    src = Source(**{**SOURCE.__dict__, "ordinal": ordinal, "snapshot": op == "r"})
    event = ChangeEvent(op=op, before=b, after=a, source=src, ts_ms=ts)  # type: ignore[arg-type]
    assert from_json(to_json(event)) == event


def test_envelope_is_debezium_shaped() -> None:
    event = ChangeEvent(op="c", before=None, after={"sale_id": 1}, source=SOURCE, ts_ms=5)
    raw = json.loads(to_json(event))
    assert set(raw) == {"before", "after", "op", "ts_ms", "source"}
    assert raw["source"]["connector"] == "icetide"
    assert raw["source"]["ts_ms"] == SOURCE.commit_ts_ms  # Debezium: source.ts_ms = commit time
    assert raw["source"]["snapshot"] == "false"


@pytest.mark.parametrize(("op", "before", "after"), [
    ("c", {"a": 1}, {"a": 1}), ("c", None, None), ("d", None, {"a": 1}), ("u", None, {"a": 1}),
    ("r", {"a": 1}, None), ("x", None, {"a": 1}),
])
def test_inconsistent_images_are_rejected(op: str, before: dict | None, after: dict | None) -> None:
    with pytest.raises(EventError):
        ChangeEvent(op=op, before=before, after=after, source=SOURCE)  # type: ignore[arg-type]


@pytest.mark.parametrize("payload", [
    b"", b"not json", b"[1,2]", b'{"op":"c"}', b'{"op":"c","source":{},"after":{"a":1}}',
    b'{"op":"c","source":"x","after":{"a":1}}', b'{"op":"c","after":[1],"source":{}}', None,
    b"\xff\xfe",
])
def test_malformed_payloads_raise_event_error(payload: bytes | None) -> None:
    with pytest.raises(EventError):
        from_json(payload)


def test_value_encoding_is_debezium_iso_8601() -> None:
    row = encode_row({
        "d": dt.date(2024, 2, 29),
        "ts": dt.datetime(2024, 2, 29, 13, 1, 2, 345000),
        "tstz": dt.datetime(2024, 2, 29, 13, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=2))),
        "price": Decimal("12.50"),
        "blob": b"\x00\x01",
        "n": None,
    })
    assert row == {"d": "2024-02-29", "ts": "2024-02-29T13:01:02.345000",  # ISO-8601, as Debezium writes
                   "tstz": "2024-02-29T11:01:02.000000Z", "price": "12.50", "blob": "AAE=", "n": None}


@given(st.dictionaries(st.text(min_size=1, max_size=5), st.integers(), min_size=1, max_size=4))
def test_key_encoding_is_canonical(key: dict) -> None:
    reordered = dict(reversed(list(key.items())))
    assert key_to_json(key) == key_to_json(reordered)
    assert json.loads(key_to_json(key)) == key


def test_topic_naming() -> None:
    assert topic_for("icetide", "sales", "vendas") == "icetide.sales.vendas"


def test_raw_and_encoded_images_serialise_identically() -> None:
    raw = {"d": dt.date(2024, 1, 2), "p": Decimal("1.10"), "k": 3}
    a = ChangeEvent(op="c", before=None, after=raw, source=SOURCE, ts_ms=1)
    b = ChangeEvent(op="c", before=None, after=encode_row(raw), source=SOURCE, ts_ms=1)
    assert to_json(a) == to_json(b)
    assert json.loads(to_json(a))["after"] == {"d": "2024-01-02", "p": "1.10", "k": 3}
    assert key_to_json({"d": dt.date(2024, 1, 2)}) == b'{"d":"2024-01-02"}'


def test_source_names_the_schema_and_reads_events_without_it() -> None:
    raw = SOURCE.to_dict()
    assert raw["schema"] == raw["db"] == SOURCE.db  # Debezium's ${source.schema}: the namespace
    del raw["schema"]  # events written before source.schema existed
    assert Source.from_dict(raw) == SOURCE
