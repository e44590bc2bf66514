"""Kafka Connect in standalone mode: the stock consumer that checks icetide's topics (tests, CI).

The worker is `org.apache.kafka.connect.cli.ConnectStandalone` of the broker's Kafka version, from the
jars `make setup` fetches (`jars/connect/pom.xml`); its `plugin.path` is `.cache/jars/connect-plugins/`,
one folder per plugin (`jars/connect-plugins/<name>/pom.xml`: the Debezium JDBC sink with the
PostgreSQL driver, Apicurio's AvroConverter). Everything lives under `<state_dir>/connect/`:
`worker.properties` (rendered from `ConnectSettings`), the offsets file, `connect.log`, the pid file.
The REST API listens on loopback at a free port; connectors are submitted over it
(`PUT /connectors/<name>/config`) and are ready once the connector and every task are RUNNING —
a FAILED task is a `StackError` carrying the worker's stack trace (the sink's own error message).

Sink connectors read with `isolation.level=read_committed` (icetide's job writes transactionally; the
worker's default would also deliver aborted records).
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from icetide import jvm
from icetide.broker_config import log4j2_config
from icetide.errors import ConfigError, StackError
from icetide.process import free_port
from icetide.services.shape import JvmProcess, Need, StateHome, require

MAIN_CLASS = "org.apache.kafka.connect.cli.ConnectStandalone"
WORKER_GROUP = "connect"
PLUGIN_GROUPS = ("connect-plugins/debezium-jdbc", "connect-plugins/apicurio-avro")
STOP_TIMEOUT_S = 30.0
JSON_CONVERTER = "org.apache.kafka.connect.json.JsonConverter"
# the worker logs warnings, plus its own start line and each task's state changes
LOGGERS = {"org.apache.kafka.connect.cli.ConnectStandalone": "info",
           "org.apache.kafka.connect.runtime.WorkerTask": "info",
           "org.apache.kafka.connect.runtime.WorkerSinkTask": "info"}


def plugin_path() -> Path:
    """The worker's `plugin.path`: the folder holding one folder per plugin."""
    return jvm.jar_cache() / "connect-plugins"


@dataclass(frozen=True)
class ConnectSettings:
    """What a worker is started with. `worker` adds or overrides worker properties."""

    bootstrap: str
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port
    heap: str = "512m"
    start_timeout_s: float = 180.0
    jvm_opts: tuple[str, ...] = ()
    worker: Mapping[str, str] = field(default_factory=dict)


def worker_properties(settings: ConnectSettings, port: int, home: Path) -> dict[str, str]:
    """The standalone worker's configuration: JSON with schemas by default (connectors set their own
    converters), REST on loopback, offsets under `home`, read-committed sink consumers."""
    props = {
        "bootstrap.servers": settings.bootstrap,
        "key.converter": JSON_CONVERTER,
        "value.converter": JSON_CONVERTER,
        "key.converter.schemas.enable": "true",
        "value.converter.schemas.enable": "true",
        "offset.storage.file.filename": str(home / "offsets"),
        "offset.flush.interval.ms": "1000",
        "listeners": f"http://{settings.host}:{port}",
        "rest.advertised.host.name": settings.host,
        "rest.advertised.port": str(port),
        "plugin.path": str(plugin_path()),
        # Apicurio's converter jars have no ServiceLoader manifests: scan only (and no warning about it)
        "plugin.discovery": "only_scan",
        "consumer.isolation.level": "read_committed",
        "consumer.auto.offset.reset": "earliest",
        "connector.client.config.override.policy": "All",
    }
    props.update(settings.worker)
    return props


def render_properties(props: Mapping[str, str]) -> str:
    """A Java properties file (backslashes, and `=`/`:` in keys, escaped)."""
    def esc(text: str, key: bool) -> str:
        text = text.replace("\\", "\\\\").replace("\n", "\\n")
        return text.replace("=", "\\=").replace(":", "\\:").replace(" ", "\\ ") if key else text

    return "".join(f"{esc(k, True)}={esc(v, False)}\n" for k, v in props.items())


class KafkaConnect(StateHome):
    """One standalone Connect worker per state dir, and the connectors on it."""

    name = "connect"
    label = "Kafka Connect"

    def _files(self, home: Path) -> None:
        self.config_file = home / "worker.properties"
        self.port_file = home / "port"
        self.log_file = home / "connect.log"
        self.log4j_file = home / "log4j2.properties"
        self.process = JvmProcess(self.name, home, MAIN_CLASS, self.config_file)

    # -- the service shape -----------------------------------------------------------------
    def needs(self) -> list[Need]:
        cache = jvm.jar_cache()
        return [Need("the Kafka Connect worker's jars", cache / WORKER_GROUP),
                *(Need(f"the Connect plugin {group.rsplit('/', 1)[1]}", cache / group) for group in PLUGIN_GROUPS)]

    def start(self, settings: ConnectSettings, state_dir: Path) -> dict[str, str]:
        """Start the worker (or reuse the one running from this state dir); its endpoints once it answers."""
        self._bind(state_dir)
        running = self.process.live_pid()
        if running is not None:
            if self.ready():
                return self.endpoints()
            raise StackError(f"a Kafka Connect worker (pid {running}) runs from {self.home} but does not answer: "
                             "stop it and start again\n" + self.process.output(self.log_file))
        require(self.needs())
        self.home.mkdir(parents=True, exist_ok=True)
        port = settings.port or free_port(settings.host)
        self.config_file.touch(mode=0o600)
        self.config_file.chmod(0o600)  # it may hold the worker's Kafka password (`kafka_client.worker_properties`)
        self.config_file.write_text(render_properties(worker_properties(settings, port, self.home)))
        self.port_file.write_text(f"{port}\n")
        self.log4j_file.write_text(log4j2_config(self.log_file, LOGGERS))
        cmd = self.process.command(jvm.jars(WORKER_GROUP), [str(self.config_file)], heap=settings.heap,
                                   opts=settings.jvm_opts,
                                   properties={"log4j2.configurationFile": str(self.log4j_file)})
        self.process.launch(cmd, self.ready, timeout_s=settings.start_timeout_s, logs=[self.log_file])
        return self.endpoints()

    def ready(self) -> bool:
        """The worker's REST API answers (`GET /` gives its version)."""
        url = self.url()
        if not url:
            return False
        try:
            return "version" in self._request("GET", "/", timeout_s=2.0, url=url)
        except (StackError, OSError, ValueError):
            return False

    def stop(self) -> bool:
        return self.process.stop(STOP_TIMEOUT_S) if self._home is not None else False

    def status(self) -> dict[str, Any]:
        pid = self.process.live_pid() if self._home is not None else None
        running = pid is not None and self.ready()
        connectors: dict[str, Any] = {}
        if running:
            for name in self._request("GET", "/connectors"):
                connectors[name] = self.connector_status(name)
        return {"name": self.name, "running": running, "pid": pid, "rest": self.url() or None,
                "rss_bytes": self.process.rss_bytes() if pid else None,
                "log_file": str(self.log_file) if self._home else None, "connectors": connectors}

    def endpoints(self) -> dict[str, str]:
        return {"rest": self.url()}

    def url(self) -> str:
        if self._home is None:
            return ""
        try:
            port = int(self.port_file.read_text().strip())
        except (OSError, ValueError):
            return ""
        props = self.config_file.read_text() if self.config_file.is_file() else ""
        host = next((line.split("=", 1)[1] for line in props.splitlines()
                     if line.startswith("rest.advertised.host.name=")), "127.0.0.1")
        return f"http://{host}:{port}"

    # -- connectors --------------------------------------------------------------------------
    def put_connector(self, name: str, config: Mapping[str, str]) -> dict[str, Any]:
        """Create or update connector `name`; ConfigError with the worker's message if it refuses it."""
        path = f"/connectors/{urllib.parse.quote(name, safe='')}/config"
        try:
            return self._request("PUT", path, {k: str(v) for k, v in config.items()})  # type: ignore[no-any-return]
        except _HttpError as exc:
            raise ConfigError(f"Kafka Connect refused connector {name!r} (HTTP {exc.code}): {exc.message}") from None

    def delete_connector(self, name: str) -> None:
        self._request("DELETE", f"/connectors/{urllib.parse.quote(name, safe='')}")

    def connector_status(self, name: str) -> dict[str, Any]:
        """`GET /connectors/<name>/status`: the connector's and each task's state (and trace if FAILED)."""
        return self._request("GET", f"/connectors/{urllib.parse.quote(name, safe='')}/status")  # type: ignore[no-any-return]

    def wait_running(self, name: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """Wait until the connector and all its tasks (at least one) are RUNNING; StackError with the
        worker's trace as soon as one has FAILED, or with the last status on time-out."""
        deadline = time.monotonic() + timeout_s
        last: dict[str, Any] = {}
        while time.monotonic() < deadline:
            try:
                last = self.connector_status(name)
            except _HttpError:  # not created yet
                time.sleep(0.3)
                continue
            raise_if_failed(name, last)
            tasks = last.get("tasks", [])
            if last.get("connector", {}).get("state") == "RUNNING" and tasks and all(
                    t.get("state") == "RUNNING" for t in tasks):
                return last
            time.sleep(0.3)
        raise StackError(f"connector {name!r} not RUNNING within {timeout_s:.0f}s: {json.dumps(last)}")

    def _request(self, method: str, path: str, body: Any = None, *, timeout_s: float = 30.0,
                 url: str | None = None) -> Any:
        base = url or self.url()
        if not base:
            raise StackError(f"Kafka Connect is not running from {self.home}")
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{base}{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            with contextlib.suppress(ValueError, AttributeError):
                detail = str(json.loads(detail).get("message", detail))
            raise _HttpError(exc.code, detail) from None
        return json.loads(raw) if raw else None


class _HttpError(StackError):
    def __init__(self, code: int, message: str) -> None:
        self.code, self.message = code, message
        super().__init__(f"HTTP {code}: {message}")


def raise_if_failed(name: str, status: Mapping[str, Any]) -> None:
    """StackError with the trace of the connector or the first task that has FAILED."""
    parts = [("connector", status.get("connector", {}))] + [
        (f"task {t.get('id')}", t) for t in status.get("tasks", [])]
    for what, part in parts:
        if part.get("state") == "FAILED":
            raise StackError(f"connector {name!r}: {what} FAILED on {part.get('worker_id')}:\n{part.get('trace', '')}")
