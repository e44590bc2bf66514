"""The access-log collector's decoding of the fluent forward protocol, its JSON lines and their filters.

The integration tier checks real SeaweedFS records end to end (tests/integration/test_lake_security.py);
here the three forward-protocol modes and EventTime are built with msgpack itself.
"""

from __future__ import annotations

import datetime as dt
import json
import struct
from pathlib import Path

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from icetide.errors import ConfigError
from icetide.services.access_log import entries, parse_since, read_records, to_line

pytestmark = pytest.mark.unit

RECORD = {"requester": "icetide-bi", "access_key_id": "AKIA1", "operation": "REST.PUT.OBJECT", "bucket": "warehouse",
          "key": "warehouse/x", "status": 403, "error_code": "AccessDenied", "time": 1_800_000_000}


def _event_time(seconds: int, nanos: int) -> msgpack.ExtType:
    return msgpack.ExtType(0, struct.pack(">II", seconds, nanos))


def test_message_forward_and_packed_forward_modes_give_the_same_records() -> None:
    message = msgpack.unpackb(msgpack.packb(["s3.access", 1_800_000_000, RECORD, {"chunk": "c1"}]))
    forward = msgpack.unpackb(msgpack.packb(["s3.access", [[1_800_000_000, RECORD], [1_800_000_000, RECORD]]]))
    packed_body = msgpack.packb([_event_time(1_800_000_000, 5), RECORD]) * 2
    packed = msgpack.unpackb(msgpack.packb(["s3.access", packed_body, {}]), strict_map_key=False)
    got_message, option = entries(message)
    assert option == {"chunk": "c1"} and [r for _, r in got_message] == [RECORD]
    assert [r for _, r in entries(forward)[0]] == [RECORD, RECORD]
    got_packed = entries(packed)[0]
    assert [r for _, r in got_packed] == [RECORD, RECORD] and got_packed[0][0] == pytest.approx(1_800_000_000)
    assert entries(["tag"]) == ([], {}) and entries("garbage") == ([], {})
    # Message mode with an EventTime (the store's `sub_second_precision`): msgpack's ExtType is a tuple too
    timed = msgpack.unpackb(msgpack.packb(["s3.access", _event_time(1_800_000_000, 250_000_000), RECORD]))
    [(when, record)] = entries(timed)[0]
    assert record == RECORD and when == pytest.approx(1_800_000_000.25)
    assert entries(["s3.access", [1, [2, RECORD]]])[0] == [(2.0, RECORD)]  # a stray item is skipped


def test_a_line_names_who_what_when_and_the_result() -> None:
    line = to_line(RECORD, when=0)
    assert line == {"time": "2027-01-15T08:00:00.000Z", "identity": "icetide-bi", "access_key_id": "AKIA1",
                    "operation": "REST.PUT.OBJECT", "bucket": "warehouse", "key": "warehouse/x", "status": 403,
                    "error_code": "AccessDenied", "remote_ip": None, "request_id": None}
    # the forward protocol's sub-second event time refines the store's whole second, never replaces another
    assert to_line(RECORD, when=1_800_000_000.25)["time"] == "2027-01-15T08:00:00.250Z"
    assert to_line(RECORD, when=1_800_000_003.5)["time"] == "2027-01-15T08:00:00.000Z"
    assert to_line({k: v for k, v in RECORD.items() if k != "time"}, when=1_800_000_000.5)["time"] \
        == "2027-01-15T08:00:00.500Z"


@given(st.lists(st.tuples(st.sampled_from(["icetide-bi", "icetide-writer", ""]), st.integers(0, 10_000)),
                max_size=30), st.integers(0, 10_000))
def test_filters_keep_exactly_the_matching_records(tmp_path_factory: pytest.TempPathFactory,
                                                   rows: list[tuple[str, int]], since: int) -> None:
    path = tmp_path_factory.mktemp("log") / "access.jsonl"
    base = 1_800_000_000
    path.write_text("".join(json.dumps(to_line({**RECORD, "requester": who, "time": base + t}, 0)) + "\n"
                            for who, t in rows) + '{"cut in half')
    got = list(read_records(path, since=base + since, identity="bi"))
    assert len(got) == sum(1 for who, t in rows if who == "icetide-bi" and t >= since)
    assert len(list(read_records(path))) == len(rows)  # the cut line is skipped, nothing else


def test_since_takes_durations_and_iso_times() -> None:
    now = 1_800_000_000.0
    assert parse_since("90s", now) == now - 90 and parse_since("2h", now) == now - 7200
    assert parse_since("2027-01-15T08:00:00Z", now) == dt.datetime(2027, 1, 15, 8, tzinfo=dt.UTC).timestamp()
    with pytest.raises(ConfigError, match="--since"):
        parse_since("yesterday", now)
    assert list(read_records(Path("/nonexistent/access.jsonl"))) == []


@given(sizes=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=60),
       keep=st.integers(min_value=0, max_value=3))
def test_rotation_bounds_the_files_and_keeps_the_newest_records_in_order(
        tmp_path_factory: pytest.TempPathFactory, sizes: list[int], keep: int) -> None:
    from icetide.services.access_log import _Sink, rotated

    path = tmp_path_factory.mktemp("log") / "access.jsonl"
    max_bytes = 600
    sink = _Sink(path, max_bytes, keep)
    written = []
    for n, size in enumerate(sizes):  # one message of `size` bytes of key, as the collector writes them
        line = to_line(RECORD | {"key": "k" * size, "request_id": str(n)}, 1_800_000_000)
        sink.write([line])
        written.append(str(n))
    sink.out.close()
    files = rotated(path, keep)
    assert len(files) <= keep + 1 and not path.with_name(f"{path.name}.{keep + 1}").exists()
    assert all(f.stat().st_size <= max_bytes for f in files)  # no single line here exceeds the limit
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in files)
    kept = [r["request_id"] for r in read_records(path, keep=keep)]
    assert kept == written[len(written) - len(kept):]  # a suffix of what was written, in order
    assert kept and kept[-1] == written[-1]
