"""The audit of BI access: every query the embedded Trino completes, allowed or denied, in icetide's audit log.

Trino's `http-event-listener` plugin (in the full server tarball) POSTs each `QueryCompletedEvent` as JSON to
this receiver, a small loopback HTTP server started before Trino; each event becomes one record of the state
dir's hash-chained audit log (`icetide.audit`, the log the query gateway and `policy apply` write and
`icetide policy audit-verify` checks): user, the query's end time, tables and columns read, the row filters and
column masks Trino applied (from the event itself, so they are what ran), query id and text, and the result —
`allowed`, `denied` (Trino's PERMISSION_DENIED) or `error`.

Why HTTP rather than the Kafka event listener: the audit needs no broker (Trino runs without Kafka), and a
record is in the chain when Trino's POST returns 200 — a failed write answers 500, and a refused connection
(the receiver down) fails the POST: Trino retries both (`TrinoServer.listener_properties`: for about 18 min).
Each query is recorded once: a retry of an event already in the chain (its 200 lost) answers 200 and writes
nothing — the receiver keeps the Trino query ids of the log, read back from it when it starts.
Trino does not wait for its listeners, so an event still failing after its retries (or pending in a Trino
that dies) is not audited; the listener logs that in `trino.out`. The audit guard
(`icetide.services.trino_audit_guard`) keeps the receiver up and Trino's rules deny-all while it is not.

Only Trino may write: each POST carries a bearer token (`audit-token`, mode 0600, in Trino's 0600 listener
config). An engine error's message is not kept (it can echo values a mask hides), only its error name.
`GET /v1/audit/health` (with the token) answers 200 when the log can be opened for appending, 503 when not.
Everything lives under `<state_dir>/trino/audit/`: `port`, `audit-token`, `receiver.pid`, `receiver.out`.
"""

from __future__ import annotations

import hmac
import json
import secrets
import sys
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from icetide.audit import AuditLog, log_path
from icetide.errors import StackError
from icetide.process import (
    free_port,
    live_pid,
    log_tail,
    port_is_free,
    runs_with,
    start_module,
    stop_recorded,
)

HOST = "127.0.0.1"
PATH = "/v1/audit/trino"
HEALTH_PATH = "/v1/audit/health"
LINEAGE_PATH = "/v1/lineage/trino"
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
MAX_EVENT_BYTES = 32 * 2**20
DENIED = "PERMISSION_DENIED"


def _name(item: Any) -> str:
    """A column as the event names it: a plain string, or an object with `column` or `name`."""
    if isinstance(item, dict):
        return str(item.get("column") or item.get("name") or "")
    return str(item)


def _masks(column: dict[str, Any]) -> list[str]:
    found = column.get("masks", column.get("mask"))
    if isinstance(found, list):
        return [str(m) for m in found if m]
    return [str(found)] if found else []


def to_record(event: dict[str, Any], policy: dict[str, Any] | None = None) -> dict[str, Any]:
    """The audit-log fields of one `QueryCompletedEvent` (the keyword arguments of `AuditLog.append`).
    `policy`: the identity of the rules in force (`policy.json` beside `rules.json`), when known."""
    meta, context = event.get("metadata") or {}, event.get("context") or {}
    failure = event.get("failureInfo") or {}
    error = (failure.get("errorCode") or {}).get("name")
    result = "allowed" if not failure else "denied" if error == DENIED else "error"
    reason = None
    if result == "denied":  # Access Denied names tables and columns, never values
        reason = str(failure.get("failureMessage") or DENIED)
    elif result == "error":
        reason = str(error or failure.get("failureType") or "error")
    columns: dict[str, list[str]] = {}
    for read in (event.get("ioMetadata") or {}).get("inputs") or []:
        name = f"{read.get('catalogName')}.{read.get('schema')}.{read.get('table')}"
        columns.setdefault(name, [])
        columns[name] += [c for c in map(_name, read.get("columns") or []) if c and c not in columns[name]]
    filters: dict[str, str] = {}
    masks: dict[str, dict[str, str]] = {}
    for table in meta.get("tables") or []:
        name = f"{table.get('catalog')}.{table.get('schema')}.{table.get('table')}"
        if table.get("filters"):
            filters[name] = " AND ".join(f"({f})" for f in table["filters"])
        applied = {_name(c): " ".join(_masks(c)) for c in table.get("columns") or [] if _masks(c)}
        if applied:
            masks[name] = applied
    ended = event.get("endTime") or event.get("createTime")
    query_type = context.get("queryType")
    policy = policy or {}
    return {
        "user": str(context.get("user") or ""), "groups": [str(g) for g in context.get("groups") or []],
        "action": str(query_type).lower() if query_type else "query", "resource": sorted(columns),
        "result": result, "reason": reason, "policy_id": policy.get("policy_id"),
        "policy_version": policy.get("version"), "policy_hash": policy.get("content_hash"),
        "filters": filters, "masks": masks, "query_id": meta.get("queryId"), "query": meta.get("query"),
        "columns": columns, "when": _time(ended), "engine": "trino",
    }


def rename_datasets(event: dict[str, Any], warehouse: str, catalog: str) -> dict[str, Any]:
    """Trino's OpenLineage event with the tables of icetide's catalog named as icetide's jobs name them
    (`namespace.table` in the warehouse's namespace, not `catalog.namespace.table` in `trino://host:port`),
    so that `icetide lineage TABLE` finds the BI queries that read it."""
    for kind in ("inputs", "outputs"):
        for dataset in event.get(kind) or []:
            parts = str(dataset.get("name", "")).split(".")
            if str(dataset.get("namespace", "")).startswith("trino://") and len(parts) == 3 and parts[0] == catalog:
                dataset["namespace"], dataset["name"] = warehouse, ".".join(parts[1:])
    return event


def _freed(port: int, timeout_s: float = 3.0) -> bool:
    """The port is free, or becomes free within `timeout_s` (a receiver just stopped may still be closing its
    socket: taking another port then would leave Trino posting to the old one)."""
    deadline = time.monotonic() + timeout_s
    while not port_is_free(HOST, port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def recorded_queries(log_file: Path) -> set[str]:
    """The query ids of the Trino records already in the log."""
    if not log_file.exists():
        return set()
    found = set()
    with log_file.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("engine") == "trino" and record.get("query_id"):
                found.add(str(record["query_id"]))
    return found


def _time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None


class _Handler(BaseHTTPRequestHandler):
    server: Any

    def _authorised(self, path: str) -> bool:
        token = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if self.path != path or not hmac.compare_digest(token.encode(), self.server.token.encode()):
            self.send_error(403)
            return False
        return True

    def do_GET(self) -> None:
        if not self._authorised(HEALTH_PATH):
            return
        self._empty(200 if self.server.writable() else 503)

    def _empty(self, code: int) -> None:
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        if not self._authorised(LINEAGE_PATH if self.path == LINEAGE_PATH else PATH):
            return
        size = int(self.headers.get("Content-Length") or 0)
        if size <= 0 or size > MAX_EVENT_BYTES:
            self.send_error(413)
            return
        if self.path == LINEAGE_PATH:  # best effort: answered before it is recorded, never retried
            body = self.rfile.read(size)
            self._empty(200)
            self.server.lineage(body)
            return
        try:
            event = json.loads(self.rfile.read(size))
            self.server.write(event)
        except ValueError:
            self.send_error(400)  # not JSON: a retry would not help
            return
        except OSError:
            self.send_error(500)  # the log could not be written: Trino retries
            return
        self._empty(200)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the records are the log."""


class AuditReceiver:
    """The receiver of one Trino's query events, under `<trino home>/audit/`."""

    def __init__(self, trino_home: Path) -> None:
        self.home = trino_home / "audit"
        self.state_dir = trino_home.parent
        self.port_file = self.home / "port"
        self.token_file = self.home / "audit-token"
        self.pid_file = self.home / "receiver.pid"
        self.out_file = self.home / "receiver.out"
        self.policy_file = trino_home / "policy.json"
        self.log_file = log_path(self.state_dir)
        self.lineage_file = self.home / "lineage.json"
        self._recorded: set[str] | None = None  # the Trino query ids in the log (read on the first write)
        self._lock = threading.Lock()

    def port(self) -> int | None:
        try:
            return int(self.port_file.read_text())
        except (OSError, ValueError):
            return None

    def url(self) -> str:
        port = self.port()
        return f"http://{HOST}:{port}{PATH}" if port else ""

    def token(self) -> str:
        return self.token_file.read_text().strip()

    def write(self, event: dict[str, Any]) -> bool:
        """Append one event's record to the audit log; False (nothing written) when its query is already there
        (Trino retried a POST whose answer it did not get)."""
        try:
            policy = json.loads(self.policy_file.read_text())
        except (OSError, ValueError):
            policy = None
        record = to_record(event, policy)
        with self._lock:
            if self._recorded is None:
                self._recorded = recorded_queries(self.log_file)
            if record["query_id"] and record["query_id"] in self._recorded:
                return False
            AuditLog(self.log_file).append(**record)
            if record["query_id"]:
                self._recorded.add(record["query_id"])
        return True

    def configure_lineage(self, settings: Any) -> None:
        """What the lineage path needs (mode 0600: the forward endpoint's key): the warehouse and catalog to
        name Trino's tables as icetide's jobs do, and `lineage.*`."""
        from icetide.services.trino import write_private

        config = settings.lineage.model_dump()
        config["api_key"] = config["api_key"].get_secret_value() if config["api_key"] is not None else None
        write_private(self.lineage_file, json.dumps({"warehouse": settings.warehouse,
                                                     "catalog": settings.catalog.name, "lineage": config}))

    def lineage(self, body: bytes) -> None:
        """Append one of Trino's OpenLineage events to the lineage log (and forward it); never raises."""
        from icetide.lineage import record
        from icetide.settings import LineageSettings

        try:
            config = json.loads(self.lineage_file.read_text())
            event = rename_datasets(json.loads(body), config["warehouse"], config["catalog"])
            record(self.state_dir, LineageSettings(**config["lineage"]), json.dumps(event), event,
                   str((event.get("job") or {}).get("name")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"trino lineage event not recorded: {type(exc).__name__}", flush=True)

    def writable(self) -> bool:
        """The log can be opened for appending (what a write needs first)."""
        try:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            with self.log_file.open("a", encoding="utf-8"):
                return True
        except OSError:
            return False

    def _is_ours(self, pid: int) -> bool:
        return runs_with(pid, __name__.encode(), str(self.home).encode())

    def live_pid(self) -> int | None:
        return live_pid(self.pid_file, self._is_ours)

    def start(self, same_port: bool = False) -> str:
        """Start the receiver (or reuse the running one); its URL once it listens. A restarted receiver takes
        its previous port when free; `same_port` (a running Trino posts there) when it is not free raises
        StackError rather than move."""
        if self.live_pid() is not None and self.ready():
            return self.url()
        from icetide.services.trino import write_private

        self.home.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o700)
        if not self.token_file.exists():
            write_private(self.token_file, secrets.token_urlsafe(32) + "\n")
        previous = self.port()
        if previous and _freed(previous):
            port = previous
        elif same_port and previous:
            raise StackError(f"the Trino audit receiver's port {HOST}:{previous} is taken (Trino posts there)")
        else:
            port = free_port(HOST)
        self.port_file.write_text(f"{port}\n")
        start_module(__name__, [str(self.home)], home=self.home, out_file=self.out_file, pid_file=self.pid_file,
                     ready=self.ready, timeout_s=START_TIMEOUT_S,
                     failed=lambda: "the Trino audit receiver did not start\n" + self.output())
        return self.url()

    def ready(self) -> bool:
        """The receiver answers a POST without the token with 403 (and writes nothing)."""
        import urllib.error
        import urllib.request

        url = self.url()
        if not url:
            return False
        try:
            urllib.request.urlopen(urllib.request.Request(url, data=b"{}", method="POST"), timeout=1.0)
        except urllib.error.HTTPError as exc:
            return exc.code == 403
        except OSError:
            return False
        return False

    def healthy(self, timeout_s: float = 1.0) -> bool:
        """The receiver answers the authenticated health check with 200: it listens and can write the log."""
        import urllib.request

        url = self.url()
        if not url or not self.token_file.exists():
            return False
        request = urllib.request.Request(url.removesuffix(PATH) + HEALTH_PATH,
                                         headers={"Authorization": f"Bearer {self.token()}"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> bool:
        return stop_recorded(self.pid_file, self._is_ours, STOP_TIMEOUT_S)

    def status(self) -> dict[str, Any]:
        pid = self.live_pid()
        return {"running": pid is not None, "pid": pid, "url": self.url() or None, "log_file": str(self.log_file)}

    def output(self) -> str:
        return log_tail(self.out_file, lines=20, empty="(no audit receiver output)")


def serve(home: Path) -> None:
    """Run the receiver from `home` (`<trino home>/audit`) until SIGTERM (the receiver process's main)."""
    receiver = AuditReceiver(home.parent)
    server = ThreadingHTTPServer((HOST, int(receiver.port_file.read_text())), _Handler)
    server.daemon_threads = True
    server.token = receiver.token()  # type: ignore[attr-defined]  # what _Handler checks
    server.write = receiver.write  # type: ignore[attr-defined]  # what _Handler writes through
    server.writable = receiver.writable  # type: ignore[attr-defined]  # what the health check answers
    server.lineage = receiver.lineage  # type: ignore[attr-defined]  # where Trino's lineage events go
    print(f"trino audit receiver: writing {receiver.log_file}", flush=True)
    server.serve_forever(poll_interval=0.5)


if __name__ == "__main__":
    serve(Path(sys.argv[1]))
