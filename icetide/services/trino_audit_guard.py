"""The audit guard: no BI query runs while its audit record cannot be written.

A small process beside the receiver (`icetide.services.trino_audit`), started and stopped with Trino. Every
`TICK_S` it asks the receiver's authenticated health check (it listens and can open the audit log):

- healthy: the gate is open — if it was closed, the policy's rules are put back in `rules.json`;
- not healthy: the gate closes first — `rules.json` becomes deny-all (the policy's rules kept aside in
  `rules.held.json`) — then a receiver that is gone or hung is restarted on its port (one that answers but
  cannot open the log, a full or missing volume, is left: the gate stays closed until the log is writable).

Trino rereads `rules.json` every 2 s (`security.refresh-period`), so between the receiver failing and Trino
denying lie up to `TICK_S` + 1 s (the health check's timeout) + 2 s. A query that completes in that window is
not lost: its event waits in Trino's retries (about 18 min) and is recorded once the receiver is back. What
is not covered: Trino itself dying while events wait in its retries, an outage longer than the retries with
the guard down too, and the guard's own death — `trino status` shows it (`audit.guard.running`) and
`icetide trino up` starts it again. A `policy apply --target trino` while the gate is closed is taken into the
held rules (and deny-all written back) at the next tick; that is `TICK_S` + 2 s when the new rules are in
force unaudited at worst, the same window.

State under `<state_dir>/trino/audit/`: `guard.pid`, `guard.out`, `guard.json` (open/closed, since when, how
many closures); beside `rules.json`: `rules.held.json` while closed (its presence is the closed state, so a
restarted guard carries on).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from icetide.errors import StackError
from icetide.process import live_pid, log_tail, runs_with, start_module, stop_recorded
from icetide.services.trino_audit import AuditReceiver

TICK_S = 0.5
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0


def deny_all_text() -> str:
    """What `rules.json` says while the gate is closed: deny-all, and no query at all may run — not even one
    that reads no table (`SELECT 1`: Trino's file-based rules let anyone execute a query unless `queries`
    rules say otherwise). The monitoring principal keeps its scrape (/metrics is not a query)."""
    from icetide.services.trino import DENY_ALL, with_monitor

    return json.dumps({**with_monitor(DENY_ALL), "queries": [{"allow": []}]})


class AuditGuard:
    """The guard of one Trino (under `<trino home>/audit/`)."""

    def __init__(self, trino_home: Path) -> None:
        self.receiver = AuditReceiver(trino_home)
        self.home = self.receiver.home
        self.rules_file = trino_home / "rules.json"
        self.held_file = trino_home / "rules.held.json"
        self.pid_file = self.home / "guard.pid"
        self.out_file = self.home / "guard.out"
        self.state_file = self.home / "guard.json"

    # -- one tick ----------------------------------------------------------------------------
    def closed(self) -> bool:
        return self.held_file.exists()

    def close(self) -> None:
        """Deny-all in `rules.json`, the policy's rules held aside; rules written meanwhile (a `policy apply`)
        become the held ones."""
        from icetide.services.trino import write_private

        deny = deny_all_text()
        current = self.rules_file.read_text() if self.rules_file.exists() else deny
        if current != deny:
            write_private(self.held_file, current)
            write_private(self.rules_file, deny)
        elif not self.held_file.exists():
            write_private(self.held_file, deny)

    def open(self) -> None:
        """The held rules back in `rules.json` (unless rules were written meanwhile: those stay)."""
        from icetide.services.trino import write_private

        if not self.held_file.exists():
            return
        if not self.rules_file.exists() or self.rules_file.read_text() == deny_all_text():
            write_private(self.rules_file, self.held_file.read_text())
        self.held_file.unlink()

    def tick(self) -> bool:
        """Check the receiver once and set the gate; True when open."""
        if self.receiver.healthy():
            if self.closed():
                self.open()
                self._record("open")
            return True
        if not self.closed():
            self._record("closed", closure=True)
        self.close()
        self._restart_receiver()
        return False

    def _restart_receiver(self) -> None:
        """A receiver that answers but cannot write is left alone (a new one could not write either);
        one that is gone or hung is replaced on its port."""
        if self.receiver.ready():
            return
        if self.receiver.live_pid() is not None:
            self.receiver.stop()
        try:
            self.receiver.start(same_port=True)
        except StackError as exc:
            print(f"audit guard: receiver not restarted: {exc}", flush=True)

    def _record(self, state: str, closure: bool = False) -> None:
        previous = self.state()
        closures = int(previous.get("closures") or 0) + (1 if closure else 0)
        data = {"state": state, "since": datetime.now(UTC).isoformat(timespec="seconds"), "closures": closures}
        self.state_file.write_text(json.dumps(data) + "\n")
        print(f"audit guard: {state}", flush=True)

    def state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self.state_file.read_text()))
        except (OSError, ValueError):
            return {}

    # -- the process -------------------------------------------------------------------------
    def _is_ours(self, pid: int) -> bool:
        return runs_with(pid, __name__.encode(), str(self.home).encode())

    def live_pid(self) -> int | None:
        return live_pid(self.pid_file, self._is_ours)

    def start(self) -> int:
        """Start the guard (or keep the running one); its pid once it has checked the receiver once."""
        running = self.live_pid()
        if running is not None:
            return running
        self.home.mkdir(parents=True, exist_ok=True)
        self.state_file.unlink(missing_ok=True)
        return start_module(__name__, [str(self.home)], home=self.home, out_file=self.out_file,
                            pid_file=self.pid_file, ready=self.state_file.exists, timeout_s=START_TIMEOUT_S,
                            failed=lambda: "the Trino audit guard did not start\n" + self.output())

    def stop(self) -> bool:
        return stop_recorded(self.pid_file, self._is_ours, STOP_TIMEOUT_S)

    def status(self) -> dict[str, Any]:
        pid = self.live_pid()
        state = self.state()
        return {"running": pid is not None, "pid": pid, "gate": "closed" if self.closed() else "open",
                "since": state.get("since"), "closures": int(state.get("closures") or 0)}

    def output(self) -> str:
        return log_tail(self.out_file, lines=20, empty="(no audit guard output)")


def guard(home: Path) -> None:
    """Tick until SIGTERM (the guard process's main); the first tick writes the state file `start` waits for."""
    keeper = AuditGuard(home.parent)
    keeper._record("open" if keeper.tick() else "closed")
    while True:
        time.sleep(TICK_S)
        keeper.tick()


if __name__ == "__main__":
    guard(Path(sys.argv[1]))
