"""No unaudited BI query: the audit of a real Trino across a receiver outage.

`icetide trino up` starts Trino, the audit receiver and the audit guard. The receiver is killed (SIGKILL)
while queries run: the guard restarts it on its port and Trino's retried events land — every query once, the
chain intact. Then the audit log's volume goes away (the receiver answers but cannot write): the guard turns
`rules.json` deny-all, Trino refuses even the admin, and once the log is back the policy's rules return and
the refused queries are in the log too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from icetide.services.trino import TrinoServer
from icetide.services.trino_audit_guard import deny_all_text
from tests.fixtures.trino import connect, prepare, trino_environment

pytestmark = pytest.mark.integration

ICETIDE = str(Path(sys.executable).parent / "icetide")


def icetide(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ICETIDE, *args], env=os.environ.copy(), capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    state = tmp_path_factory.mktemp("trino-audit-outage")
    with trino_environment(state) as settings:
        server = TrinoServer(settings.state_dir)
        prepare(server)  # the admin carla may do anything, everyone else nothing
        try:
            up = icetide("trino", "up", "--json")
            assert up.returncode == 0, up.stderr
            yield {"server": server, "settings": settings, "log": settings.state_dir / "audit" / "policy-audit.jsonl"}
        finally:
            icetide("trino", "down")


def run(env: dict[str, Any], user: str, sql: str) -> tuple[str, str]:
    """(query id, "ok" or the error) of one query as `user`."""
    import trino

    cur = connect(env, user).cursor()
    try:
        cur.execute(sql)
        cur.fetchall()
        return cur.query_id, "ok"
    except trino.exceptions.TrinoUserError as exc:
        return str(exc.query_id), exc.message


def logged(env: dict[str, Any]) -> list[str]:
    text = env["log"].read_text() if env["log"].exists() else ""
    return [json.loads(line)["query_id"] for line in text.splitlines()]


def until(check: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Seconds until `check()` holds."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout_s, f"not within {timeout_s} s: {what}"
        time.sleep(0.2)
    return time.monotonic() - started


def each_once(env: dict[str, Any], ids: list[str], timeout_s: float = 120) -> float:
    """Seconds until every query of `ids` is in the audit log; then each is there exactly once and the chain
    verifies."""
    waited = until(lambda: set(ids) <= set(logged(env)), timeout_s, "every query audited")
    time.sleep(3)  # a late retry of one of them would show now
    found = logged(env)
    assert {q: found.count(q) for q in ids} == dict.fromkeys(ids, 1)
    done = icetide("policy", "audit-verify", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["ok"], done.stdout
    return waited


def test_a_killed_receiver_is_restarted_and_every_query_is_audited_once(env: dict[str, Any]) -> None:
    server: TrinoServer = env["server"]
    status = json.loads(icetide("trino", "status", "--json").stdout)["audit"]
    assert status["running"] and status["guard"]["running"] and status["guard"]["gate"] == "open"
    ids = [run(env, "carla", "SELECT 1")[0]]
    killed = server.audit.live_pid()
    os.kill(killed or 0, signal.SIGKILL)
    for i in range(6):
        ids.append(run(env, "carla" if i % 2 else "dave", f"SELECT count(*) FROM lake.information_schema.tables "
                                                           f"WHERE table_name = 't{i}'")[0])
    waited = each_once(env, ids)
    assert server.audit.live_pid() not in (None, killed)
    print(f"\nreceiver SIGKILLed: {len(ids)} queries, all audited once {waited:.1f} s after the last")
    assert json.loads(icetide("trino", "status", "--json").stdout)["audit"]["guard"]["gate"] == "open"


def test_trino_denies_every_query_while_the_audit_log_cannot_be_written(env: dict[str, Any]) -> None:
    server: TrinoServer = env["server"]
    policy_rules = server.rules_file.read_text()
    audit_dir = env["log"].parent
    aside = audit_dir.with_name("audit.aside")
    audit_dir.rename(aside)
    audit_dir.write_text("not a directory: the audit volume is gone\n")
    try:
        gone = time.monotonic()
        until(lambda: server.rules_file.read_text() == deny_all_text(), 10, "the guard writes deny-all")
        refused: list[str] = []

        def admin_refused() -> bool:
            query_id, outcome = run(env, "carla", "SELECT 1")
            refused.append(query_id)
            return "Access Denied" in outcome

        until(admin_refused, 15, "Trino refuses the admin")
        window = time.monotonic() - gone
        status = json.loads(icetide("trino", "status", "--json").stdout)["audit"]["guard"]
        assert status["gate"] == "closed" and status["closures"] >= 1
        assert "gate closed" in icetide("trino", "status").stdout
    finally:
        audit_dir.unlink()
        aside.rename(audit_dir)
    back = time.monotonic()
    until(lambda: server.rules_file.read_text() == policy_rules, 10, "the policy's rules back")
    allowed: list[str] = []

    def admin_allowed() -> bool:
        query_id, outcome = run(env, "carla", "SELECT 1")
        allowed.append(query_id)
        return outcome == "ok"

    until(admin_allowed, 15, "Trino lets the admin in again")
    reopened = time.monotonic() - back
    waited = each_once(env, [*refused, *allowed])
    print(f"\naudit log gone: admin refused {window:.1f} s after, {len(refused)} queries; log back: allowed "
          f"{reopened:.1f} s after; all {len(refused) + len(allowed)} audited once {waited:.1f} s later")
