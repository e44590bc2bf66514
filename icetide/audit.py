"""The audit log: one JSON line per access attempt, each chained to the previous by hash.

One log per state dir (`log_path`), written by every way in: the query gateway and `policy apply`
(policies/) and the embedded Trino's query events (`icetide.services.trino_audit`) — so it lives in the kernel.
Fields follow what Ranger records (user, groups, time, action, resource, result, policy id
and version) plus the row filter and masks applied, the columns read and a query id. Each record carries
`prev_hash` and `hash = sha256(prev_hash + canonical JSON of the record without hash)`, so
editing, deleting, inserting or reordering records breaks the chain; a sidecar `<log>.head`
holds the last sequence number and hash so truncating the tail is detected too.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

GENESIS = "0" * 64


def _digest(prev_hash: str, record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256((prev_hash + "\n" + canonical).encode()).hexdigest()


def log_path(state_dir: Path) -> Path:
    """The state dir's audit log (what `icetide policy audit-verify` checks by default)."""
    return Path(state_dir) / "audit" / "policy-audit.jsonl"


def new_query_id() -> str:
    return uuid.uuid4().hex


class AuditLog:
    """Append-only, hash-chained JSON lines; appends are serialised with a file lock."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.head_path = self.path.with_name(self.path.name + ".head")

    def _last(self) -> tuple[int, str]:
        if not self.path.exists() or self.path.stat().st_size == 0:
            return 0, GENESIS
        with self.path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            end = fh.tell()
            size = min(end, 1 << 20)
            fh.seek(end - size)
            tail = fh.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
        last = json.loads(tail)
        return int(last["seq"]), str(last["hash"])

    def append(self, *, user: str, action: str, resource: list[str], result: str, groups: list[str] | None = None,
               policy_id: str | None = None, policy_version: int | None = None, policy_hash: str | None = None,
               filters: dict[str, str] | None = None, masks: dict[str, dict[str, str]] | None = None,
               query_id: str | None = None, query: str | None = None, reason: str | None = None,
               columns: dict[str, list[str]] | None = None, when: datetime | None = None,
               engine: str | None = None) -> dict[str, Any]:
        """Write one record and return it (with its seq and hash). `when` is the access's own time (a Trino
        query's end) when it is not now; `columns` the columns read per table; `engine` who enforced it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                seq, prev = self._last()
                record: dict[str, Any] = {
                    "seq": seq + 1, "time": (when or datetime.now(UTC)).isoformat(timespec="milliseconds"),
                    "query_id": query_id or new_query_id(), "user": user, "groups": sorted(groups or []),
                    "action": action, "resource": resource, "result": result, "reason": reason,
                    "policy_id": policy_id, "policy_version": policy_version, "policy_hash": policy_hash,
                    "filters": filters or {}, "masks": masks or {}, "query": query, "prev_hash": prev,
                }
                if columns is not None:
                    record["columns"] = columns
                if engine is not None:
                    record["engine"] = engine
                record["hash"] = _digest(prev, record)
                fh.write(json.dumps(record, sort_keys=True, default=str) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
                self.head_path.write_text(json.dumps({"seq": record["seq"], "hash": record["hash"]}) + "\n")
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return record


@dataclass(frozen=True)
class Verdict:
    ok: bool
    records: int
    line: int | None = None  # first bad line (1-based)
    reason: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "records": self.records, "line": self.line, "reason": self.reason}


def _missing(log: AuditLog, use_head: bool) -> Verdict:
    """No log file: a fresh deployment (nothing recorded yet) unless its head sidecar says records were
    written — then the log was removed."""
    if use_head and log.head_path.exists():
        try:
            seq = json.loads(log.head_path.read_text()).get("seq")
        except ValueError:
            seq = "?"
        return Verdict(False, 0, None, f"no audit log at {log.path}, but its head says {seq} records were written: "
                                       "the log was removed")
    return Verdict(True, 0, None, f"no audit log yet at {log.path}: no events recorded")


def verify(path: str | Path, use_head: bool = True) -> Verdict:
    """Recompute the chain; the first record that does not fit is reported."""
    log = AuditLog(path)
    if not log.path.exists():
        return _missing(log, use_head)
    prev, seq, count = GENESIS, 0, 0
    with log.path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                return Verdict(False, count, number, "not valid JSON")
            if not isinstance(record, dict):
                return Verdict(False, count, number, "not a JSON object")
            if record.get("prev_hash") != prev:
                return Verdict(False, count, number, "prev_hash does not match the previous record")
            if record.get("seq") != seq + 1:
                return Verdict(False, count, number, f"sequence gap: expected {seq + 1}, got {record.get('seq')}")
            if record.get("hash") != _digest(prev, record):
                return Verdict(False, count, number, "record was modified (hash mismatch)")
            prev, seq, count = str(record["hash"]), seq + 1, count + 1
    if use_head and log.head_path.exists():
        head = json.loads(log.head_path.read_text())
        if head.get("seq") != seq or head.get("hash") != prev:
            return Verdict(False, count, None, f"log ends at seq {seq} but the head says {head.get('seq')}: "
                                               "records were removed from the end")
    return Verdict(True, count)
