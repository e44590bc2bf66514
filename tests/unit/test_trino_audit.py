"""Trino's query events as audit records, and the receiver that chains them into icetide's audit log.

The events here have the shape Trino 476's http-event-listener posts (`QueryCompletedEvent` as JSON, trimmed
to the fields read); tests/integration/test_trino_bi.py checks the real ones end to end. The receiver is the
real process on loopback.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from icetide.audit import verify
from icetide.services.trino_audit import AuditReceiver, to_record

pytestmark = pytest.mark.unit

TABLE = {"catalog": "lake", "schema": "sales", "table": "vendas", "authorization": "carla",
         "filters": ["region = 'North'"], "directlyReferenced": True,
         "columns": [{"column": "region", "masks": []}, {"column": "price", "masks": ["floor(price / 100) * 100"]}]}
ALLOWED: dict[str, Any] = {
    "metadata": {"queryId": "20261202_020000_00001_abcde", "query": "SELECT region, price FROM vendas",
                 "queryState": "FINISHED", "tables": [TABLE]},
    "context": {"user": "ana", "principal": "ana", "groups": [], "queryType": "SELECT"},
    "ioMetadata": {"inputs": [{"catalogName": "lake", "schema": "sales", "table": "vendas",
                               "columns": ["region", "price"]}]},
    "createTime": "2026-12-02T02:00:00.000Z", "endTime": "2026-12-02T02:00:01.250Z",
}
DENIED: dict[str, Any] = {
    "metadata": {"queryId": "q2", "query": "SELECT * FROM vendas", "queryState": "FAILED", "tables": []},
    "context": {"user": "dave", "queryType": "SELECT"}, "ioMetadata": {"inputs": []},
    "failureInfo": {"errorCode": {"code": 4, "name": "PERMISSION_DENIED", "type": "USER_ERROR"},
                    "failureMessage": "Access Denied: Cannot select from table lake.sales.vendas"},
    "endTime": "2026-12-02T02:00:02Z",
}
FAILED: dict[str, Any] = {
    "metadata": {"queryId": "q3", "query": "SELECT CAST(customer_email AS integer) FROM vendas"},
    "context": {"user": "carla"},
    "failureInfo": {"errorCode": {"name": "INVALID_CAST_ARGUMENT"},
                    "failureMessage": "Cannot cast 'secret1@mail.example' to INT"},
}


def test_an_allowed_query_names_user_time_tables_columns_filters_and_masks() -> None:
    record = to_record(ALLOWED, {"policy_id": "sales-access", "version": 1, "content_hash": "h"})
    assert record["user"] == "ana" and record["result"] == "allowed" and record["reason"] is None
    assert record["action"] == "select" and record["engine"] == "trino"
    assert record["resource"] == ["lake.sales.vendas"]
    assert record["columns"] == {"lake.sales.vendas": ["region", "price"]}
    assert record["filters"] == {"lake.sales.vendas": "(region = 'North')"}
    assert record["masks"] == {"lake.sales.vendas": {"price": "floor(price / 100) * 100"}}
    assert record["query_id"] == ALLOWED["metadata"]["queryId"] and record["when"].isoformat().startswith(
        "2026-12-02T02:00:01.250")
    assert (record["policy_id"], record["policy_version"], record["policy_hash"]) == ("sales-access", 1, "h")


def test_denied_keeps_the_access_message_and_an_error_only_its_name() -> None:
    denied = to_record(DENIED)
    assert denied["result"] == "denied" and denied["reason"].startswith("Access Denied: Cannot select")
    failed = to_record(FAILED)
    assert failed["result"] == "error" and failed["reason"] == "INVALID_CAST_ARGUMENT"
    assert "secret1" not in json.dumps(failed, default=str)  # an engine message can echo a masked value


def _post(url: str, body: bytes, token: str | None) -> int:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers, method="POST"),
                                    timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_the_receiver_chains_trino_events_and_refuses_others(tmp_path: Path) -> None:
    home = tmp_path / "state" / "trino"
    receiver = AuditReceiver(home)
    home.mkdir(parents=True)
    (home / "policy.json").write_text(json.dumps({"policy_id": "sales-access", "version": 2, "content_hash": "h"}))
    try:
        url = receiver.start()
        assert receiver.token_file.stat().st_mode & 0o077 == 0
        assert _post(url, json.dumps(ALLOWED).encode(), None) == 403
        assert _post(url, json.dumps(ALLOWED).encode(), "wrong") == 403
        assert _post(url, b"not json", receiver.token()) == 400
        for event in (ALLOWED, DENIED):
            assert _post(url, json.dumps(event).encode(), receiver.token()) == 200
        assert receiver.start() == url  # reused while it runs
    finally:
        assert receiver.stop()
    assert not receiver.stop() and receiver.live_pid() is None
    records = [json.loads(line) for line in receiver.log_file.read_text().splitlines()]
    assert [(r["user"], r["result"], r["policy_version"]) for r in records] == [("ana", "allowed", 2),
                                                                                  ("dave", "denied", 2)]
    assert records[0]["time"] == "2026-12-02T02:00:01.250+00:00" and verify(receiver.log_file).ok
    assert receiver.log_file == tmp_path / "state" / "audit" / "policy-audit.jsonl"


def _health(receiver: AuditReceiver, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = receiver.url().replace("/v1/audit/trino", "/v1/audit/health")
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def test_a_retried_event_is_recorded_once_even_by_a_restarted_receiver(tmp_path: Path) -> None:
    """Trino retries a POST whose answer it did not get: the query is already in the chain, so nothing is added
    (and the receiver answers 200, or Trino would retry again) — also after a restart, from the log itself."""
    receiver = AuditReceiver(tmp_path / "state" / "trino")
    try:
        url = receiver.start()
        for _ in range(2):
            assert _post(url, json.dumps(ALLOWED).encode(), receiver.token()) == 200
        receiver.stop()
        assert receiver.start() == url  # back on its port
        for event in (ALLOWED, DENIED, ALLOWED):
            assert _post(url, json.dumps(event).encode(), receiver.token()) == 200
    finally:
        receiver.stop()
    ids = [json.loads(line)["query_id"] for line in receiver.log_file.read_text().splitlines()]
    assert ids == [ALLOWED["metadata"]["queryId"], "q2"] and verify(receiver.log_file).ok


def test_the_health_check_needs_the_token_and_a_writable_log(tmp_path: Path) -> None:
    receiver = AuditReceiver(tmp_path / "state" / "trino")
    try:
        receiver.start()
        assert _health(receiver, None) == 403 and _health(receiver, "wrong") == 403
        assert _health(receiver, receiver.token()) == 200 and receiver.healthy()
        receiver.log_file.unlink()
        receiver.log_file.mkdir()  # a log that cannot be opened for appending (whoever the tests run as)
        assert _health(receiver, receiver.token()) == 503 and not receiver.healthy()
    finally:
        receiver.stop()
    assert not receiver.healthy()  # nothing listens


def test_trino_lineage_events_are_appended_renamed_and_never_refused(tmp_path: Path) -> None:
    """The lineage path: with the token, Trino's OpenLineage event lands in the state dir's lineage log with
    icetide's names; a body that is not an event is answered 200 too (lineage never makes Trino retry)."""
    from icetide import lineage
    from icetide.settings import load_settings
    from tests.unit.test_lineage import TRINO_EVENT

    settings = load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(tmp_path / "state")})
    receiver = AuditReceiver(settings.state_dir / "trino")
    try:
        url = receiver.start().replace("/v1/audit/trino", "/v1/lineage/trino")
        receiver.configure_lineage(settings)
        assert receiver.lineage_file.stat().st_mode & 0o077 == 0
        assert _post(url, json.dumps(TRINO_EVENT).encode(), None) == 403
        assert _post(url, json.dumps(TRINO_EVENT).encode(), receiver.token()) == 200
        assert _post(url, b"not json", receiver.token()) == 200
        deadline = time.monotonic() + 10  # recorded after the answer
        while not lineage.read_events(lineage.events_path(settings.state_dir)) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        receiver.stop()
    [event] = lineage.read_events(lineage.events_path(settings.state_dir))
    assert event["inputs"] == [{"namespace": settings.warehouse, "name": "sales.vendas"}]
    assert event["job"] == TRINO_EVENT["job"] and not receiver.log_file.exists()  # not an audit record
