"""The embedded stack: a real Kafka cluster of `kafka.brokers` KRaft nodes (each broker + controller, one
by default) and the catalog's home.

Everything lives under `<state_dir>/`: the nodes' data, logs, config and pid files in `kafka/`
(`icetide.kafka_nodes`: node 1 in `kafka/`, node k in `kafka/node-k/`, one cluster id, every node a voter),
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
import logging
import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from icetide import jvm, kafka_client, kafka_nodes, kafka_security
from icetide.broker_config import cluster_id, log4j2_config, server_properties
from icetide.errors import StackError
from icetide.jvm import FAST_START_OPTS
from icetide.kafka_nodes import Node
from icetide.process import abandon_start, live_pid, log_tail, runs_with, stop_recorded
from icetide.services import lake
from icetide.services.monitoring import Monitoring
from icetide.services.trino import TrinoServer
from icetide.settings import Settings

log = logging.getLogger(__name__)

MAIN_CLASS = "kafka.Kafka"
STORAGE_TOOL = "kafka.tools.StorageTool"
STOP_TIMEOUT_S = 30.0


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
    nodes: list[dict[str, Any]] = field(default_factory=list)  # embedded: each node's id, pid, ports, running

    def to_dict(self) -> dict[str, Any]:
        """Flat fields plus `kafka` / `catalog` / `storage` groups (what `stack status --json` prints)."""
        flat = {k: v for k, v in asdict(self).items() if k not in ("lake", "monitoring", "trino", "nodes")}
        return {
            **flat,
            "kafka": {"bootstrap": self.bootstrap, "running": self.running, "embedded": self.embedded,
                      "port": self.kafka_port, "controller_port": self.controller_port, "pid": self.pid,
                      "log_file": self.log_file, "security": self.security, "ca_file": self.ca_file,
                      "nodes": self.nodes},
            "catalog": {"name": self.catalog_name, "uri": self.catalog_uri, "warehouse": self.warehouse,
                        **self.lake.get("catalog", {})},
            "storage": self.lake.get("storage", {}),
            "monitoring": self.monitoring,
            "trino": self.trino,
        }


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
    """Start, stop and inspect the embedded cluster (`kafka.brokers` nodes); prepare the catalog's folders."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.home = settings.state_dir / "kafka"
        self.nodes = kafka_nodes.cluster_nodes(self.home, settings.kafka.brokers)
        self.ports_file = self.home / "ports.json"
        first = self.nodes[0]  # the one-node names, kept: the first node's files
        self.data_dir, self.logs_dir, self.pid_file = first.data_dir, first.logs_dir, first.pid_file
        self.config_file, self.server_log = first.config_file, first.server_log

    # -- public API ------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One `up`/`down` at a time per state dir (two concurrent `up`s would start two clusters)."""
        self.home.mkdir(parents=True, exist_ok=True)
        with (self.home / "stack.lock").open("w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def up(self) -> StackStatus:
        """Prepare the catalog and start the cluster, or reuse the nodes already running (and restart the
        ones that are not: a node killed while the others ran comes back on its ports)."""
        with self._locked():
            return self._up()

    def down(self) -> bool:
        """Stop every node this state dir started; True if one was running."""
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
        self._check_size()
        live = {node.node_id: pid for node in self.nodes if (pid := self._live_pid(node)) is not None}
        ports = self._read_ports()
        if live and ports and self.secure and "internal_port" not in ports[0]:
            raise StackError(f"the broker running from {self.home} was started with kafka.security=plaintext: "
                             "run `icetide stack down` and `icetide stack up` again")
        if live and not ports:
            raise StackError(f"Kafka nodes run from {self.home} but {self.ports_file} does not list "
                             f"{len(self.nodes)}: run `icetide stack down` and `icetide stack up` again")
        if len(live) == len(self.nodes) and ports:
            if self._wait_ready(ports):
                return self.status()
            raise StackError(
                f"the Kafka nodes (pids {', '.join(map(str, live.values()))}) run from {self.home} but do not "
                "answer: run `icetide stack down` and `icetide stack up` again"
            )
        if live and ports:  # some nodes died: bring them back on their own ports
            missing = [node for node in self.nodes if node.node_id not in live]
            for node in missing:
                kafka_nodes.reclaim_ports(self.settings.kafka.host, ports[node.node_id - 1], node.node_id)
            self._start(missing, ports)
            return self.status()
        ports = kafka_nodes.choose_ports(self.settings, ports, self.secure)
        self._write_config(ports)
        self._format_storage()
        self._start(self.nodes, ports)
        if self.secure:
            kafka_security.bootstrap(self.settings, self._internal_bootstrap(ports))
        return self.status()

    def _check_size(self) -> None:
        """A formatted cluster keeps its size: its quorum's voters are fixed at the first start."""
        formatted = kafka_nodes.formatted_count(self.home)
        wanted = self.settings.kafka.brokers
        if formatted and formatted != wanted:
            raise StackError(
                f"the Kafka data in {self.home} is of a {formatted}-node cluster but kafka.brokers is {wanted}: "
                f"set kafka.brokers back to {formatted}, or run `icetide stack down` and remove {self.home} "
                "to start an empty cluster"
            )

    def _down(self) -> bool:
        monitored = Monitoring(self.settings.state_dir).stop()
        trino = TrinoServer(self.settings.state_dir).stop()
        broker = self._stop_nodes()
        return bool(lake.stop_all(self.settings.state_dir)) or broker or monitored or trino

    def _stop_nodes(self) -> bool:
        """Stop all nodes at once: one by one, the last ones would wait out their controlled shutdown
        for a quorum that is already gone."""
        nodes = kafka_nodes.cluster_nodes(self.home, max(len(self.nodes), kafka_nodes.formatted_count(self.home)))
        with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            stopped = list(pool.map(lambda n: stop_recorded(n.pid_file, self._is_node(n), STOP_TIMEOUT_S), nodes))
        return any(stopped)

    def status(self) -> StackStatus:
        """What runs now (never starts or stops anything, apart from removing stale pid files)."""
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
        # the nodes the last start recorded: a cluster started with another `kafka.brokers` is still shown whole
        ports = kafka_nodes.read_ports(self.ports_file) or []
        known = kafka_nodes.cluster_nodes(self.home, len(ports)) if ports else self.nodes
        nodes = [self._node_status(node, ports[i] if i < len(ports) else {}) for i, node in enumerate(known)]
        first = nodes[0]
        return StackStatus(
            running=any(n["running"] for n in nodes), embedded=True,
            bootstrap=",".join(self._bootstrap(n["port"]) for n in nodes if n["port"]),
            kafka_port=first["port"], controller_port=first["controller_port"], pid=first["pid"],
            log_file=str(self.server_log), nodes=nodes, **common,
        )

    def _node_status(self, node: Node, ports: dict[str, int]) -> dict[str, Any]:
        pid = self._live_pid(node)
        return {"node_id": node.node_id, "pid": pid, "port": ports.get("port"),
                "controller_port": ports.get("controller_port"),
                "running": pid is not None and bool(ports) and self._answers(ports),
                "log_file": str(node.server_log)}

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

    def active_controller(self) -> int | None:
        """The node id of the active controller (the KRaft quorum's leader), or None."""
        return kafka_nodes.active_controller(self.nodes)

    def node_pid(self, node_id: int) -> int | None:
        """The running pid of node `node_id` (1-based), or None."""
        return self._live_pid(self.nodes[node_id - 1])

    # -- pid and ports ---------------------------------------------------------------------
    @property
    def secure(self) -> bool:
        return kafka_client.secure(self.settings)

    def _bootstrap(self, port: int) -> str:
        return f"{self.settings.kafka.host}:{port}"

    def _internal_bootstrap(self, ports: list[dict[str, int]]) -> str:
        return ",".join(self._bootstrap(p["internal_port"]) for p in ports)

    def _admin_conf(self, ports: dict[str, int]) -> tuple[str, dict[str, Any] | None]:
        """Where and how the stack itself asks a node: plaintext on the client port; with sasl_ssl on the
        INTERNAL listener with the broker's certificate (the SCRAM users may not exist yet)."""
        if not self.secure:
            return self._bootstrap(ports["port"]), None
        internal = self._bootstrap(ports["internal_port"])
        return internal, kafka_security.internal_admin_config(self.settings, internal)

    def _answers(self, ports: dict[str, int], timeout_s: float = 2.0) -> bool:
        """The node answers on its own listener (module docstring of `_admin_conf`)."""
        if self.secure and "internal_port" not in ports:
            return False
        bootstrap, conf = self._admin_conf(ports)
        return broker_answers(bootstrap, timeout_s, conf)

    def _is_node(self, node: Node) -> Callable[[int], bool]:
        def is_ours(pid: int) -> bool:
            """The pid is alive and is this node (not a recycled pid, not a zombie)."""
            return runs_with(pid, MAIN_CLASS.encode(), str(node.config_file).encode())

        return is_ours

    def _pid_is_broker(self, pid: int) -> bool:
        """The pid is alive and is the first node (the one-node stack's broker)."""
        return self._is_node(self.nodes[0])(pid)

    def _output(self, node: Node) -> str:
        return log_tail(node.stdout_file, node.server_log, empty="(no broker output)")

    def _live_pid(self, node: Node) -> int | None:
        """The node's running pid, or None; a stale pid file is removed."""
        return live_pid(node.pid_file, self._is_node(node))

    def _read_ports(self) -> list[dict[str, int]] | None:
        ports = kafka_nodes.read_ports(self.ports_file)
        return ports if ports and len(ports) == len(self.nodes) else None

    # -- files -----------------------------------------------------------------------------
    def _write_config(self, ports: list[dict[str, int]]) -> None:
        host, cfg = self.settings.kafka.host, self.settings.kafka
        if self.secure:
            kafka_security.ensure_tls(self.settings)
            kafka_security.ensure_passwords(self.settings)
        controller_ports = [p["controller_port"] for p in ports]
        for node, own in zip(self.nodes, ports, strict=True):
            for folder in (node.home, node.data_dir, node.logs_dir):
                folder.mkdir(parents=True, exist_ok=True)
            security = None
            if self.secure:
                security = kafka_security.listener_properties(self.settings, own["port"], own["internal_port"],
                                                              own["controller_port"])
            props = server_properties(host, own["port"], own["controller_port"], node.data_dir, cfg.num_partitions,
                                      security, node_id=node.node_id, controller_ports=controller_ports)
            node.config_file.touch(mode=0o600)
            node.config_file.chmod(0o600)  # with sasl_ssl it holds the key store's password
            node.config_file.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
            node.log4j_file.write_text(log4j2_config(node.server_log))
        kafka_nodes.write_ports(self.ports_file, ports)

    def _java(self, node: Node, main_class: str, *args: str, heap: str) -> list[str]:
        classpath = os.pathsep.join(str(jar) for jar in jvm.jars("kafka"))
        return [
            str(jvm.java_home() / "bin" / "java"),
            f"-Xmx{heap}", "-Xms64m", *FAST_START_OPTS, *self.settings.kafka.jvm_opts,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={node.log4j_file}",
            f"-Dkafka.logs.dir={node.logs_dir}",
            "-cp", classpath, main_class, *args,
        ]

    def _format_storage(self) -> None:
        """Format each node's KRaft log dir once, all with one cluster id (a formatted dir keeps it)."""
        ids = {cid for node in self.nodes if (cid := node.cluster_id())}
        shared = ids.pop() if ids else cluster_id()
        for node in self.nodes:
            if node.formatted:
                continue
            cmd = self._java(node, STORAGE_TOOL, "format", "--cluster-id", shared, "--config", str(node.config_file),
                             heap="256m")
            done = subprocess.run(cmd, env=jvm.java_env(), capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                detail = (done.stderr or done.stdout).strip().splitlines()[-5:]
                raise StackError("formatting the Kafka storage failed:\n" + "\n".join(detail))

    # -- process ---------------------------------------------------------------------------
    def _start(self, nodes: list[Node], ports: list[dict[str, int]]) -> None:
        """Start `nodes` together (a quorum elects its leader only once a majority runs) and wait until
        every node of the cluster answers and sees all the others."""
        started: list[tuple[Node, subprocess.Popen[bytes]]] = []
        try:
            for node in nodes:
                started.append((node, self._spawn(node)))
            if not self._wait_ready(ports, started):
                raise StackError(
                    f"the Kafka cluster did not answer on {','.join(self._bootstrap(p['port']) for p in ports)} "
                    f"within {self.settings.kafka.start_timeout_s:.0f}s\n" + self._output(nodes[0])
                )
        except BaseException:
            for node, proc in started:
                abandon_start(proc, node.pid_file)
            raise

    def _spawn(self, node: Node) -> subprocess.Popen[bytes]:
        cmd = self._java(node, MAIN_CLASS, str(node.config_file), heap=self.settings.kafka.heap)
        if self.settings.monitoring.enabled:  # the JMX exporter agent: the broker's metrics for Prometheus
            cmd[1:1] = Monitoring().broker_agent(self.settings.state_dir, node.node_id)
        with node.stdout_file.open("ab") as out:
            proc = subprocess.Popen(
                cmd, env=jvm.java_env(), stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, cwd=node.home,
            )
        node.pid_file.write_text(f"{proc.pid}\n")
        return proc

    def _wait_ready(self, ports: list[dict[str, int]],
                    started: list[tuple[Node, subprocess.Popen[bytes]]] | None = None) -> bool:
        """Every node answers and the cluster's metadata lists all of them (a replication-3 topic cannot be
        created before). A node started here that exits is a StackError with its output; a running node
        that disappears, False."""
        deadline = time.monotonic() + self.settings.kafka.start_timeout_s
        while time.monotonic() < deadline:
            for node, proc in started or []:
                if proc.poll() is not None:
                    raise StackError(f"Kafka node {node.node_id} exited during start-up\n" + self._output(node))
            if not started and any(self._live_pid(node) is None for node in self.nodes):
                return False
            if all(self._answers(p) for p in ports) and self._brokers_seen(ports[0]) == len(self.nodes):
                return True
            time.sleep(0.3)
        return False

    def _brokers_seen(self, ports: dict[str, int], timeout_s: float = 2.0) -> int:
        """How many brokers the cluster's metadata lists, asked of one node (0 if it does not answer)."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        bootstrap, conf = self._admin_conf(ports)
        settings: dict[str, Any] = {"bootstrap.servers": bootstrap, **(conf or {}),
                                    "logger": logging.getLogger("icetide.kafka.admin")}
        admin = AdminClient(settings)
        try:
            return len(admin.list_topics(timeout=timeout_s).brokers)
        except KafkaException:
            return 0


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
