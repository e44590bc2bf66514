"""The object store's access log: every S3 request it serves, one JSON line each, under the state dir.

SeaweedFS sends an S3-style access record per request (who signed it, which key, the operation, the HTTP
status) over the fluent forward protocol (`-s3.auditLogConfig`; `PutBucketLogging` is not implemented).
Debian ships neither fluent-bit nor fluentd, so this collector receives them: a small forward-protocol
server (msgpack; Message, Forward and PackedForward modes, acks when asked) on a unix socket under its
home (owner-only, so no other local user can write records), or loopback TCP when that path is too long
for a socket. Each record becomes one line of `access.jsonl` (mode 0600), which is rotated by size
(`storage.access_log_max_mb`; the newest `storage.access_log_keep` full files kept as `access.jsonl.1` …,
the oldest deleted), so a long-lived store does not fill its disk with its own log:

    {"time": "2026-12-01T22:00:00.125Z", "identity": "icetide-writer", "access_key_id": "AKIA…",
     "operation": "REST.PUT.OBJECT", "bucket": "warehouse", "key": "warehouse/…", "status": 200,
     "error_code": null, "remote_ip": "127.0.0.1", "request_id": "…"}

`identity` is the signing user (`anonymous` for an unsigned request, empty when the signature was refused);
no secret is in a record. `icetide stack access-log` reads them (`read_records`). Everything lives under
`<state_dir>/access-log/`: `access.jsonl`, `fluent.json` (the store's config), the socket or `port`,
`collector.pid`, `collector.out`; `read_records` reads the rotated files too, oldest first.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from icetide.errors import ConfigError
from icetide.process import free_port, live_pid, log_tail, rss_bytes, runs_with, start_module, stop_recorded
from icetide.services.shape import StateHome

if TYPE_CHECKING:
    from icetide.settings import Settings

HOST = "127.0.0.1"
SOCKET_PATH_MAX = 100
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
DEFAULT_MAX_MB, DEFAULT_KEEP = 64.0, 5  # StorageSettings.access_log_max_mb / access_log_keep
FIELDS = {"identity": "requester", "access_key_id": "access_key_id", "operation": "operation", "bucket": "bucket",
          "key": "key", "status": "status", "error_code": "error_code", "remote_ip": "remote_ip",
          "request_id": "request_id"}


def to_line(record: dict[str, Any], when: float) -> dict[str, Any]:
    """One access record (as the store sends it) as the log's JSON object. The store's own `time` has whole
    seconds; the forward protocol's event time (`sub_second_precision`) has nanoseconds, so the line's time
    has milliseconds and records of one second keep their order against a caller's clock."""
    stamp = float(record.get("time") or when)
    if stamp <= when < stamp + 1:  # the event time (sub-second) within the record's whole second: the finer one
        stamp = when
    moment = dt.datetime.fromtimestamp(stamp, dt.UTC)
    out: dict[str, Any] = {"time": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")}
    for name, source in FIELDS.items():
        value = record.get(source)
        out[name] = value if value not in ("", None) else None
    return out


def _event_time(value: Any) -> float:
    """A forward-protocol time: an integer, or EventTime (msgpack ext 0: seconds and nanoseconds)."""
    import msgpack

    if isinstance(value, msgpack.ExtType) and value.code == 0 and len(value.data) == 8:
        return int.from_bytes(value.data[:4], "big") + int.from_bytes(value.data[4:], "big") / 1e9
    return float(value) if isinstance(value, int | float) else time.time()


def _is_entry(item: Any) -> bool:
    """A [time, record] pair of a Forward or PackedForward message."""
    return isinstance(item, list | tuple) and len(item) >= 2 and isinstance(item[1], dict)


def entries(message: Any) -> tuple[list[tuple[float, dict[str, Any]]], dict[str, Any]]:
    """The (time, record) entries and the options of one forward-protocol message, whatever its mode."""
    import msgpack

    if not isinstance(message, list | tuple) or len(message) < 2:
        return [], {}
    body, option = message[1], {}
    if isinstance(body, list | tuple) and not isinstance(body, msgpack.ExtType):  # (an EventTime is a tuple)
        # Forward: [tag, [[time, record], ...], option?]
        option = message[2] if len(message) > 2 and isinstance(message[2], dict) else {}
        return [(_event_time(e[0]), e[1]) for e in body if _is_entry(e)], option
    if isinstance(body, bytes):  # PackedForward: [tag, <msgpack stream of [time, record]>, option?]
        option = message[2] if len(message) > 2 and isinstance(message[2], dict) else {}
        if option.get("compressed") == "gzip":
            import gzip

            body = gzip.decompress(body)
        stream = msgpack.Unpacker(raw=False, strict_map_key=False)
        stream.feed(body)
        return [(_event_time(e[0]), e[1]) for e in stream if _is_entry(e)], option
    if len(message) >= 3 and isinstance(message[2], dict):  # Message: [tag, time, record, option?]
        option = message[3] if len(message) > 3 and isinstance(message[3], dict) else {}
        return [(_event_time(body), message[2])], option
    return [], {}


class _Handler(socketserver.StreamRequestHandler):
    server: Any

    def handle(self) -> None:
        import msgpack

        unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=64 * 2**20)
        while chunk := self.request.recv(65536):
            unpacker.feed(chunk)
            for message in unpacker:
                try:
                    found, option = entries(message)
                except (ValueError, TypeError, OSError, EOFError) as error:  # a malformed message: the next counts
                    print(f"access-log collector: skipped a message it cannot read ({error})", flush=True)
                    continue
                self.server.write([to_line(record, when) for when, record in found])
                if "chunk" in option:
                    self.request.sendall(msgpack.packb({"ack": option["chunk"]}))


def rotated(path: Path, keep: int) -> list[Path]:
    """The log's files, oldest first: `access.jsonl.<keep>` … `access.jsonl.1`, then `access.jsonl`."""
    older = [path.with_name(f"{path.name}.{n}") for n in range(keep, 0, -1)]
    return [p for p in older if p.is_file()] + [path]


class _Sink:
    """Appends JSON lines to the log file, one writer at a time, flushed per message; once the file holds
    `max_bytes` it becomes `<name>.1` (older ones shift up, the one past `keep` is deleted) and a new file
    starts. A message's lines never straddle two files."""

    def __init__(self, path: Path, max_bytes: int, keep: int) -> None:
        self.path, self.max_bytes, self.keep = path, max_bytes, keep
        self.lock = threading.Lock()
        self.out = self._open()

    def _open(self) -> IO[str]:
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return os.fdopen(fd, "a", encoding="utf-8")

    def _rotate(self) -> None:
        self.out.close()
        self.path.with_name(f"{self.path.name}.{self.keep}").unlink(missing_ok=True)
        for n in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.is_file():
                older.rename(self.path.with_name(f"{self.path.name}.{n + 1}"))
        if self.keep > 0:
            self.path.rename(self.path.with_name(f"{self.path.name}.1"))
        else:
            self.path.unlink()
        self.out = self._open()

    def write(self, lines: list[dict[str, Any]]) -> None:
        if not lines:
            return
        text = "".join(json.dumps(line, separators=(",", ":")) + "\n" for line in lines)
        with self.lock:
            if self.out.tell() and self.out.tell() + len(text) > self.max_bytes:
                self._rotate()
            self.out.write(text)
            self.out.flush()


def serve(home: Path, max_bytes: int, keep: int) -> None:
    """Run the collector from `home` until SIGTERM (the collector process's main)."""
    collector = AccessLogCollector(home.parent)
    sink = _Sink(collector.log_file, max_bytes, keep)
    server: socketserver.BaseServer
    if collector.socket_file is not None:
        collector.socket_file.unlink(missing_ok=True)
        old = os.umask(0o077)  # the socket is the owner's only
        try:
            server = socketserver.ThreadingUnixStreamServer(str(collector.socket_file), _Handler)
        finally:
            os.umask(old)
    else:
        server = socketserver.ThreadingTCPServer((HOST, int(collector.port_file.read_text())), _Handler)
    server.daemon_threads = True
    server.write = sink.write  # type: ignore[union-attr]  # what _Handler writes through
    print(f"access-log collector: writing {collector.log_file}", flush=True)
    server.serve_forever(poll_interval=0.5)


class AccessLogCollector(StateHome):
    """One collector per state dir, started with (before) the embedded object store."""

    name = "access-log"
    label = "access-log collector"

    def _files(self, home: Path) -> None:
        self.log_file = home / "access.jsonl"
        self.config_file = home / "fluent.json"
        sock = home / "collector.sock"
        self.socket_file: Path | None = sock if len(str(sock)) < SOCKET_PATH_MAX else None
        self.port_file = home / "port"
        self.pid_file = home / "collector.pid"
        self.out_file = home / "collector.out"

    def needs(self) -> list[Any]:
        return []

    def _is_ours(self, pid: int) -> bool:
        return runs_with(pid, __name__.encode(), str(self.home).encode())

    def live_pid(self) -> int | None:
        return live_pid(self.pid_file, self._is_ours) if self._home is not None else None

    def start(self, settings: Settings | None, state_dir: Path) -> dict[str, str]:
        """Start the collector (or reuse the running one); the store's config file once it listens."""
        self._bind(state_dir)
        if self.live_pid() is not None and self.ready():
            return self.endpoints()
        self.home.mkdir(parents=True, exist_ok=True)
        self.home.chmod(0o700)
        fluent: dict[str, Any] = {"async_connect": False, "max_retry": 30, "retry_wait": 200, "tag_prefix": "icetide",
                                  "sub_second_precision": True}
        if self.socket_file is not None:
            fluent |= {"fluent_network": "unix", "fluent_socket_path": str(self.socket_file)}
        else:
            port = free_port(HOST)
            self.port_file.write_text(f"{port}\n")
            fluent |= {"fluent_network": "tcp", "fluent_host": HOST, "fluent_port": port}
        self.config_file.write_text(json.dumps(fluent))
        storage = settings.storage if settings is not None else None
        max_bytes = int((storage.access_log_max_mb if storage else DEFAULT_MAX_MB) * 2**20)
        keep = storage.access_log_keep if storage else DEFAULT_KEEP
        start_module(__name__, [str(self.home), str(max_bytes), str(keep)], home=self.home,
                     out_file=self.out_file, pid_file=self.pid_file, ready=self.ready, timeout_s=START_TIMEOUT_S,
                     failed=lambda: "the access-log collector did not start\n" + self.output())
        return self.endpoints()

    def ready(self) -> bool:
        if self._home is None:
            return False
        try:
            if self.socket_file is not None:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.settimeout(1.0)
                    sock.connect(str(self.socket_file))
            else:
                socket.create_connection((HOST, int(self.port_file.read_text())), timeout=1.0).close()
        except (OSError, ValueError):
            return False
        return True

    def stop(self) -> bool:
        return self._home is not None and stop_recorded(self.pid_file, self._is_ours, STOP_TIMEOUT_S)

    def status(self) -> dict[str, Any]:
        pid = self.live_pid()
        return {"name": self.name, "running": pid is not None, "pid": pid,
                "log_file": str(self.log_file) if self._home else None,
                "rss_bytes": rss_bytes(pid) if pid else None}

    def endpoints(self) -> dict[str, str]:
        return {"config": str(self.config_file), "log": str(self.log_file)}

    def output(self) -> str:
        return log_tail(self.out_file, lines=20, empty="(no collector output)")


def parse_since(text: str, now: float | None = None) -> float:
    """`--since`: seconds/minutes/hours/days ago (`90s`, `15m`, `2h`, `1d`) or an ISO-8601 time; epoch seconds."""
    now = time.time() if now is None else now
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text and text[-1] in units and text[:-1].replace(".", "", 1).isdigit():
        return now - float(text[:-1]) * units[text[-1]]
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--since: expected a duration (90s, 15m, 2h, 1d) or an ISO-8601 time, got {text!r}") \
            from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)).timestamp()


def record_time(record: dict[str, Any]) -> float:
    """A record's time in epoch seconds."""
    return dt.datetime.fromisoformat(str(record["time"]).replace("Z", "+00:00")).timestamp()


def read_records(path: Path, *, since: float | None = None, identity: str | None = None,
                 keep: int = DEFAULT_KEEP) -> Iterator[dict[str, Any]]:
    """The log's records in order (its rotated files first), those at or after `since` (epoch seconds) and of
    `identity` only if given. `identity` matches the user (`icetide-writer`) or the role (`writer`)."""
    wanted = {identity, f"icetide-{identity}"} if identity else None
    for part in rotated(path, keep):
        yield from _records(part, since, wanted)


def _records(path: Path, since: float | None, wanted: set[str] | None) -> Iterator[dict[str, Any]]:
    try:
        handle = path.open(encoding="utf-8")
    except FileNotFoundError:  # not written yet, or rotated away while reading
        return
    with handle:
        for line in handle:
            try:
                record = json.loads(line)
            except ValueError:  # a line cut by a crash mid-write: skip it
                continue
            if wanted is not None and record.get("identity") not in wanted:
                continue
            if since is not None and record_time(record) < since:
                continue
            yield record


if __name__ == "__main__":
    serve(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
