"""The embedded stack: one real Kafka broker (KRaft, broker + controller) and the catalog's home.

Everything lives under `<state_dir>/`: the broker's data, logs, config and pid file in `kafka/`,
the Iceberg JDBC catalog file and the warehouse beside it. The lake services the settings ask for
(the object store for `storage.kind: s3`, the REST catalog for `catalog.type: rest`) are composed from
`icetide.services.lake` and started before the broker; the embedded Trino (`trino.enabled: true`,
`icetide.services.trino`) after it, then monitoring. `Stack(settings).up()` is idempotent:
a running broker that answers is reused, a stale pid file is removed, and a busy configured port
is a one-line `StackError` instead of a broker that dies in its log. When
`kafka.bootstrap_servers` is set, no broker is started and that cluster is used instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from icetide import jvm, kafka_client, kafka_security
from icetide.broker_config import cluster_id, log4j2_config, server_properties
from icetide.errors import StackError
from icetide.jvm import FAST_START_OPTS
from icetide.process import abandon_start, free_port, live_pid, log_tail, port_is_free, stop_recorded
from icetide.services import lake
from icetide.services.monitoring import Monitoring
from icetide.services.trino import TrinoServer
from icetide.settings import Settings

log = logging.getLogger(__name__)

MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
STOP_TIMEOUT_S = 30.0
REUSE_WAIT_S = 15.0  # a restarted broker waits this long for its previous ports (clients know them)


@dataclass(frozen=True)
class StackStatus:
    """What runs and where: what `icetide stack status --json` prints and tests connect to."""

    running: bool
    embedded: bool
    bootstrap: str
    kafka_port: int | None
    controller_port: int | None
    pid: int | None
    catalog_name: str
    catalog_uri: str
    warehouse: str
    state_dir: str
    log_file: str | None
    lake: dict[str, dict[str, Any]] = field(default_factory=dict)  # `catalog` and `storage` (services.lake)
    monitoring: dict[str, Any] = field(default_factory=dict)  # services.monitoring's status
    trino: dict[str, Any] = field(default_factory=dict)  # services.trino's status (when enabled or running)
    security: str = "plaintext"  # kafka.security
    ca_file: str | None = None  # sasl_ssl: the CA certificate clients trust

    def to_dict(self) -> dict[str, Any]:
        """Flat fields plus `kafka` / `catalog` / `storage` groups (what `stack status --json` prints)."""
        flat = {k: v for k, v in asdict(self).items() if k not in ("lake", "monitoring", "trino")}
        return {
            **flat,
            "kafka": {"bootstrap": self.bootstrap, "running": self.running, "embedded": self.embedded,
                      "port": self.kafka_port, "controller_port": self.controller_port, "pid": self.pid,
                      "log_file": self.log_file, "security": self.security, "ca_file": self.ca_file},
            "catalog": {"name": self.catalog_name, "uri": self.catalog_uri, "warehouse": self.warehouse,
                        **self.lake.get("catalog", {})},
            "storage": self.lake.get("storage", {}),
            "monitoring": self.monitoring,
            "trino": self.trino,
        }


def _wait_free(host: str, port: int, seconds: float) -> bool:
    """True once `port` can be bound (a killed broker's port can stay busy for a moment)."""
    deadline = time.monotonic() + seconds
    while not port_is_free(host, port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def broker_answers(bootstrap: str, timeout_s: float = 2.0, conf: dict[str, Any] | None = None) -> bool:
    """True if a Kafka cluster at `bootstrap` returns metadata within the timeout (`conf`: the admin
    client's configuration, with its security settings; default plaintext at `bootstrap`)."""
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError):
        return False
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    settings: dict[str, Any] = {"bootstrap.servers": bootstrap, **(conf or {}),
                                "logger": logging.getLogger("icetide.kafka.admin")}
    admin = AdminClient(settings)
    try:
        admin.list_topics(timeout=timeout_s)
    except KafkaException:
        return False
    return True




class Stack:
    """Start, stop and inspect the embedded broker; prepare the catalog's folders."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.state_dir / "kafka"
        self.data_dir = self.home / "data"
        self.logs_dir = self.home / "logs"
        self.pid_file = self.home / "kafka.pid"
        self.ports_file = self.home / "ports.json"
        self.config_file = self.home / "server.properties"
        self.log4j_file = self.home / "log4j2.properties"
        self.stdout_file = self.logs_dir / "stdout.log"
        self.server_log = self.logs_dir / "server.log"

    # -- public API ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One `up`/`down` at a time per state dir (two concurrent `up`s would start two brokers)."""
        self.home.mkdir(parents=True, exist_ok=True)
        with (self.home / "stack.lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def up(self) -> StackStatus:
        """Prepare the catalog and start the broker, or reuse the one already running."""
        with self._locked():
            return self._up()

    def down(self) -> bool:
        """Stop the broker this state dir started; True if one was running."""
        with self._locked():
            return self._down()

    def _up(self) -> StackStatus:
        status = self._up_broker()
        if self.settings.trino.enabled:
            TrinoServer().start(self.settings, self.settings.state_dir)
            status = self.status()
        if self.settings.monitoring.enabled:
            Monitoring().start(self.settings, self.settings.state_dir, status.bootstrap if status.running else None)
            return self.status()
        return status

    def _up_broker(self) -> StackStatus:
        self.prepare_catalog()
        lake.start(self.settings)
        external = self.settings.kafka.bootstrap_servers
        if external:
            if not broker_answers(external, 10, kafka_client.client_config(self.settings, "admin", external)):
                raise StackError(f"Kafka at {external} (setting kafka.bootstrap_servers) does not answer")
            return self.status()
        pid = self._live_pid()
        if pid is not None:
            ports = self._read_ports()
            if ports and self.secure and "internal_port" not in ports:
                raise StackError(f"the broker running from {self.home} was started with kafka.security=plaintext: "
                                 "run `icetide stack down` and `icetide stack up` again")
            if ports and self._wait_ready(pid, ports, allow_exit=False):
                return self.status()
            raise StackError(
                f"a broker (pid {pid}) runs from {self.home} but does not answer: "
                "run `icetide stack down` and `icetide stack up` again"
            )
        ports = self._choose_ports()
        self._write_config(ports)
        self._format_storage()
        self._start(ports)
        if self.secure:
            kafka_security.bootstrap(self.settings, self._bootstrap(ports["internal_port"]))
        return self.status()

    def _down(self) -> bool:
        monitored = Monitoring(self.settings.state_dir).stop()
        trino = TrinoServer(self.settings.state_dir).stop()
        broker = stop_recorded(self.pid_file, self._pid_is_broker, STOP_TIMEOUT_S)
        return bool(lake.stop_all(self.settings.state_dir)) or broker or monitored or trino

    def status(self) -> StackStatus:
        """What runs now (never starts or stops anything, apart from removing a stale pid file)."""
        s = self.settings
        described = lake.describe(s)
        common: dict[str, Any] = {
            "catalog_name": s.catalog.name,
            "catalog_uri": described["catalog"]["uri"] or "",
            "warehouse": s.warehouse,
            "state_dir": str(s.state_dir),
            "lake": described,
            "monitoring": Monitoring(s.state_dir).status(),
            "trino": self._trino_status(),
        }
        if self.secure:
            common |= {"security": s.kafka.security, "ca_file": str(kafka_client.ca_file(s))}
        external = s.kafka.bootstrap_servers
        if external:
            return StackStatus(
                running=broker_answers(external, 2.0, kafka_client.client_config(s, "admin", external)),
                embedded=False, bootstrap=external, kafka_port=None, controller_port=None, pid=None,
                log_file=None, **common,
            )
        pid = self._live_pid()
        ports = self._read_ports() or {}
        port = ports.get("port")
        bootstrap = self._bootstrap(port) if port else ""
        running = pid is not None and bool(port) and self._answers(ports)
        return StackStatus(
            running=running, embedded=True, bootstrap=bootstrap, kafka_port=port,
            controller_port=ports.get("controller_port"), pid=pid, log_file=str(self.server_log), **common,
        )

    def _trino_status(self) -> dict[str, Any]:
        """Trino's status when it is enabled or runs from this state dir anyway (`icetide trino up`), else {}."""
        trino = TrinoServer(self.settings.state_dir)
        if not self.settings.trino.enabled and trino.process.live_pid() is None:
            return {}
        return {"enabled": self.settings.trino.enabled, **trino.status()}

    def prepare_catalog(self) -> None:
        """Create the warehouse folder and the SQLite catalog file's parent (the file is the engines')."""
        warehouse = urlparse(self.settings.warehouse)
        if warehouse.scheme in ("", "file"):
            Path(warehouse.path).mkdir(parents=True, exist_ok=True)
        uri = self.settings.catalog_uri
        if uri.startswith("jdbc:sqlite:"):
            path = uri[len("jdbc:sqlite:") :].split("?")[0]
            path = path.removeprefix("file:")
            Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)

    # -- pid and ports ---------------------------------------------------------------------
    @property
    def secure(self) -> bool:
        return kafka_client.secure(self.settings)

    def _bootstrap(self, port: int) -> str:
        return f"{self.settings.kafka.host}:{port}"

    def _answers(self, ports: dict[str, int], timeout_s: float = 2.0) -> bool:
        """The broker answers: plaintext on the client port; with sasl_ssl on the INTERNAL listener with the
        broker's certificate (the SCRAM users may not exist yet)."""
        if not self.secure:
            return broker_answers(self._bootstrap(ports["port"]), timeout_s)
        if "internal_port" not in ports:
            return False
        internal = self._bootstrap(ports["internal_port"])
        return broker_answers(internal, timeout_s, kafka_security.internal_admin_config(self.settings, internal))

    def _pid_is_broker(self, pid: int) -> bool:
        """The pid is alive and is OUR broker (not a recycled pid, not a zombie)."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return False
        return MAIN_CLASS.encode() in cmdline and str(self.config_file).encode() in cmdline

    def _output(self) -> str:
        return log_tail(self.stdout_file, self.server_log, empty="(no broker output)")

    def _live_pid(self) -> int | None:
        """The running broker's pid, or None; a stale pid file is removed."""
        return live_pid(self.pid_file, self._pid_is_broker)

    def _read_ports(self) -> dict[str, int] | None:
        try:
            data = json.loads(self.ports_file.read_text())
        except (OSError, ValueError):
            return None
        return {name: int(data[name]) for name in ("port", "controller_port", "internal_port") if name in data}

    def _choose_ports(self) -> dict[str, int]:
        """Configured ports (must be free) or free ones, preferring the previous run's."""
        host, cfg = self.settings.kafka.host, self.settings.kafka
        previous = self._read_ports() or {}
        chosen: list[int] = []
        wanted_ports = [("port", cfg.port), ("controller_port", cfg.controller_port)]
        if self.secure:
            wanted_ports.append(("internal_port", 0))
        for name, wanted in wanted_ports:
            if wanted:
                if not port_is_free(host, wanted):
                    raise StackError(
                        f"port {host}:{wanted} (setting kafka.{name}) is in use: stop what listens there "
                        f"or set ICETIDE__KAFKA__{name.upper()}=0 to pick a free port"
                    )
                chosen.append(wanted)
                continue
            old = previous.get(name)
            if old and old not in chosen and _wait_free(host, old, REUSE_WAIT_S):
                chosen.append(old)
                continue
            if old:
                log.warning("previous %s %s is still busy; clients must use the new bootstrap address", name, old)
            port = free_port(host)
            while port in chosen:
                port = free_port(host)
            chosen.append(port)
        return {name: port for (name, _), port in zip(wanted_ports, chosen, strict=True)}

    # -- files -----------------------------------------------------------------------------
    def _write_config(self, ports: dict[str, int]) -> None:
        host, cfg = self.settings.kafka.host, self.settings.kafka
        for folder in (self.home, self.data_dir, self.logs_dir):
            folder.mkdir(parents=True, exist_ok=True)
        security = None
        if self.secure:
            kafka_security.ensure_tls(self.settings)
            kafka_security.ensure_passwords(self.settings)
            security = kafka_security.listener_properties(self.settings, ports["port"], ports["internal_port"],
                                                          ports["controller_port"])
        props = server_properties(host, ports["port"], ports["controller_port"], self.data_dir, cfg.num_partitions,
                                  security)
        self.config_file.touch(mode=0o600)
        self.config_file.chmod(0o600)  # with sasl_ssl it holds the key store's password
        self.config_file.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        self.ports_file.write_text(json.dumps(ports))
        self.log4j_file.write_text(log4j2_config(self.server_log))

    def _java(self, main_class: str, *args: str, heap: str) -> list[str]:
        classpath = os.pathsep.join(str(jar) for jar in jvm.jars("kafka"))
        return [
            str(jvm.java_home() / "bin" / "java"),
            f"-Xmx{heap}", "-Xms64m", *FAST_START_OPTS, *self.settings.kafka.jvm_opts,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j_file}",
            f"-Dkafka.logs.dir={self.logs_dir}",
            "-cp", classpath, main_class, *args,
        ]

    def _format_storage(self) -> None:
        """Format the KRaft log dir once (a formatted dir keeps its cluster id across restarts)."""
        if (self.data_dir / "meta.properties").is_file():
            return
        cmd = self._java(STORAGE_TOOL, "format", "--cluster-id", cluster_id(), "--config", str(self.config_file),
                         heap="256m")
        done = subprocess.run(cmd, env=jvm.java_env(), capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()[-5:]
            raise StackError("formatting the Kafka storage failed:\n" + "\n".join(detail))

    # -- process ---------------------------------------------------------------------------
    def _start(self, ports: dict[str, int]) -> None:
        port = ports["port"]
        cmd = self._java(MAIN_CLASS, str(self.config_file), heap=self.settings.kafka.heap)
        if self.settings.monitoring.enabled:  # the JMX exporter agent: the broker's metrics for Prometheus
            cmd[1:1] = Monitoring().broker_agent(self.settings.state_dir)
        with self.stdout_file.open("ab") as out:
            proc = subprocess.Popen(
                cmd, env=jvm.java_env(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=self.home,
            )
        self.pid_file.write_text(f"{proc.pid}\n")
        try:
            if not self._wait_ready(proc.pid, ports, allow_exit=True, proc=proc):
                raise StackError(
                    f"the Kafka broker did not answer on {self._bootstrap(port)} within "
                    f"{self.settings.kafka.start_timeout_s:.0f}s\n" + self._output()
                )
        except BaseException:
            abandon_start(proc, self.pid_file)
            raise

    def _wait_ready(self, pid: int, ports: dict[str, int], *, allow_exit: bool,
                    proc: subprocess.Popen[bytes] | None = None) -> bool:
        deadline = time.monotonic() + self.settings.kafka.start_timeout_s
        while time.monotonic() < deadline:
            exited = proc.poll() is not None if proc is not None else not self._pid_is_broker(pid)
            if exited:
                if allow_exit:
                    raise StackError(
                        "the Kafka broker exited during start-up\n" + self._output()
                    )
                return False
            if self._answers(ports):
                return True
            time.sleep(0.3)
        return False


def kafka_bootstrap(settings: Settings) -> str:
    """The bootstrap address every Kafka client uses: `kafka.bootstrap_servers` if set, else the
    embedded broker of `settings.state_dir`, which must be running (`icetide stack up`)."""
    if settings.kafka.bootstrap_servers:
        return settings.kafka.bootstrap_servers
    current = Stack(settings).status()
    if not current.running:
        raise StackError(
            f"the embedded Kafka broker of {settings.state_dir} is not running: start it with `icetide stack up` "
            "(or set kafka.bootstrap_servers to use another cluster)"
        )
    return current.bootstrap
