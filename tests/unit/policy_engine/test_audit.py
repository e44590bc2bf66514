"""The hash-chained audit log: appends verify; any tampering is detected."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from icetide.audit import AuditLog, verify

pytestmark = pytest.mark.unit


def write(path: Path, n: int) -> AuditLog:
    log = AuditLog(path)
    for i in range(n):
        log.append(user=f"u{i % 3}", groups=["analysts"], action="select", resource=["lake.sec_u.vendas"],
                   result="allowed" if i % 2 else "denied", policy_id="p", policy_version=1, policy_hash="h",
                   filters={"sales.vendas": "region = 'North'"}, masks={"sales.vendas": {"price": "bucket(100)"}},
                   query=f"SELECT {i}")
    return log


def test_records_carry_ranger_fields(tmp_path: Path) -> None:
    log = write(tmp_path / "a.jsonl", 2)
    record = json.loads(log.path.read_text().splitlines()[0])
    for key in ("user", "groups", "time", "action", "resource", "result", "policy_id", "policy_version",
                "filters", "masks", "query_id", "prev_hash", "hash", "seq"):
        assert key in record
    assert verify(log.path).as_dict() == {"ok": True, "records": 2, "line": None, "reason": ""}


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 12), data=st.data())
def test_any_edit_delete_or_reorder_is_detected(tmp_path_factory: pytest.TempPathFactory, n: int,
                                                data: st.DataObject) -> None:
    path = tmp_path_factory.mktemp("audit") / "a.jsonl"
    write(path, n)
    lines = path.read_text().splitlines()
    kind = data.draw(st.sampled_from(["edit", "delete", "swap", "truncate", "insert"]))
    i = data.draw(st.integers(0, n - 2))
    if kind == "edit":
        record = json.loads(lines[i])
        record["result"] = "allowed" if record["result"] == "denied" else "denied"
        lines[i] = json.dumps(record, sort_keys=True)
    elif kind == "delete":
        del lines[i]
    elif kind == "swap":
        lines[i], lines[i + 1] = lines[i + 1], lines[i]
    elif kind == "truncate":
        lines = lines[: i + 1]
    else:
        lines.insert(i, lines[i])
    path.write_text("\n".join(lines) + "\n")
    verdict = verify(path)
    assert not verdict.ok and verdict.reason


def test_edit_with_recomputed_hash_still_breaks_the_next_link(tmp_path: Path) -> None:
    from icetide.audit import _digest

    log = write(tmp_path / "a.jsonl", 4)
    lines = log.path.read_text().splitlines()
    record = json.loads(lines[1])
    record["user"] = "someone-else"
    record["hash"] = _digest(record["prev_hash"], record)
    lines[1] = json.dumps(record, sort_keys=True)
    log.path.write_text("\n".join(lines) + "\n")
    assert verify(log.path).line == 3


def test_a_fresh_deployment_has_no_log_yet_and_that_is_not_tampering(tmp_path: Path) -> None:
    fresh = verify(tmp_path / "audit" / "policy-audit.jsonl")
    assert fresh.ok and fresh.records == 0 and "no events recorded" in fresh.reason
    log = write(tmp_path / "a.jsonl", 2)
    log.path.unlink()  # the head says records were written: a removed log is tampering
    gone = verify(log.path)
    assert not gone.ok and "the log was removed" in gone.reason
