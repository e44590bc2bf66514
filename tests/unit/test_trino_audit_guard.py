"""The audit guard: Trino's rules are deny-all while the audit receiver cannot write, the policy's rules back
when it can; the receiver it watches is the real process on loopback (no Trino: the rules file is what Trino
would reread). tests/integration/test_trino_audit_outage.py checks it against a real Trino."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

import pytest

from icetide.process import port_is_free
from icetide.services.trino_audit_guard import AuditGuard, deny_all_text

pytestmark = pytest.mark.unit

POLICY_RULES = json.dumps({"catalogs": [{"user": "^ana$", "allow": "read-only"}]})
NEWER_RULES = json.dumps({"catalogs": [{"user": "^bruno$", "allow": "read-only"}]})


@pytest.fixture
def guard(tmp_path: Path) -> AuditGuard:
    home = tmp_path / "state" / "trino"
    home.mkdir(parents=True)
    keeper = AuditGuard(home)
    keeper.rules_file.write_text(POLICY_RULES)
    yield keeper
    keeper.stop()
    keeper.receiver.stop()


def test_a_killed_receiver_closes_the_gate_and_its_restart_opens_it(guard: AuditGuard) -> None:
    url = guard.receiver.start()
    assert guard.tick() and guard.rules_file.read_text() == POLICY_RULES and not guard.closed()
    os.kill(guard.receiver.live_pid() or 0, signal.SIGKILL)
    assert not guard.tick()  # deny-all written first, then the receiver restarted on its port
    assert guard.rules_file.read_text() == deny_all_text() and guard.held_file.read_text() == POLICY_RULES
    assert guard.receiver.url() == url and guard.receiver.healthy()
    assert guard.tick() and guard.rules_file.read_text() == POLICY_RULES and not guard.held_file.exists()
    assert guard.status()["gate"] == "open" and guard.status()["closures"] == 1


def test_the_gate_stays_closed_while_the_receivers_port_is_taken(guard: AuditGuard) -> None:
    """A receiver that cannot come back on the port Trino posts to keeps Trino deny-all, even over a
    `policy apply` made meanwhile (whose rules are in force once the receiver is back)."""
    guard.receiver.start()
    port = guard.receiver.port() or 0
    guard.receiver.stop()
    while not port_is_free("127.0.0.1", port):  # the stopped process may still be closing its socket
        time.sleep(0.05)
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        assert not guard.tick() and not guard.tick()
        guard.rules_file.write_text(NEWER_RULES)  # what `policy apply --target trino` does
        assert not guard.tick() and guard.rules_file.read_text() == deny_all_text()
        assert guard.receiver.port() == port
    assert not guard.tick()  # the port is free: restarted, open at the next tick
    assert guard.tick() and guard.rules_file.read_text() == NEWER_RULES


def test_the_guard_process_starts_and_reports(guard: AuditGuard) -> None:
    guard.receiver.start()
    pid = guard.start()
    assert guard.start() == pid and guard.status() | {"since": None} == {
        "running": True, "pid": pid, "gate": "open", "since": None, "closures": 0}
    assert guard.stop() and guard.live_pid() is None
