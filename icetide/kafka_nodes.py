"""The embedded Kafka cluster's nodes (`kafka.brokers`): where each keeps its files, its ports, who leads.

Node 1 keeps the one-node layout under `<state_dir>/kafka/` (data/, logs/, server.properties, kafka.pid),
so the state dir of an earlier one-node stack is still that cluster; node k ≥ 2 has the same files in
`kafka/node-k/`. `kafka/ports.json` records every node's ports under `nodes` (and the first node's flat, as
one-node stacks wrote them): a node restarted after a crash must come back on its own ports, which the
other nodes' quorum configuration and the clients' bootstrap list name.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from icetide.errors import StackError
from icetide.process import free_port, port_is_free
from icetide.settings import Settings

log = logging.getLogger(__name__)

PORT_NAMES = ("port", "controller_port", "internal_port")
NodePorts = dict[str, int]
REUSE_WAIT_S = 15.0  # a restarted node waits this long for its previous ports (clients know them)
QUORUM_STATE = "__cluster_metadata-0/quorum-state"


@dataclass(frozen=True)
class Node:
    """One combined broker + controller node's files."""

    node_id: int
    home: Path

    @property
    def data_dir(self) -> Path:
        return self.home / "data"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def pid_file(self) -> Path:
        return self.home / "kafka.pid"

    @property
    def config_file(self) -> Path:
        return self.home / "server.properties"

    @property
    def log4j_file(self) -> Path:
        return self.home / "log4j2.properties"

    @property
    def stdout_file(self) -> Path:
        return self.logs_dir / "stdout.log"

    @property
    def server_log(self) -> Path:
        return self.logs_dir / "server.log"

    @property
    def formatted(self) -> bool:
        return (self.data_dir / "meta.properties").is_file()

    def cluster_id(self) -> str | None:
        """The cluster id its storage was formatted with, or None."""
        try:
            lines = (self.data_dir / "meta.properties").read_text().splitlines()
        except OSError:
            return None
        found = [line.partition("=")[2].strip() for line in lines if line.startswith("cluster.id=")]
        return found[0] if found else None


def cluster_nodes(kafka_home: Path, count: int) -> list[Node]:
    """The `count` nodes of the cluster whose home is `kafka_home` (module docstring)."""
    return [Node(k, kafka_home if k == 1 else kafka_home / f"node-{k}") for k in range(1, count + 1)]


def formatted_count(kafka_home: Path) -> int:
    """How many nodes the state dir holds formatted storage for (0: none yet)."""
    count = 1 if (kafka_home / "data" / "meta.properties").is_file() else 0
    return count + sum(1 for d in kafka_home.glob("node-*/data/meta.properties"))


def read_ports(path: Path) -> list[NodePorts] | None:
    """Every node's ports as recorded at the last start, or None."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    entries = data.get("nodes") or [data]
    return [{name: int(entry[name]) for name in PORT_NAMES if name in entry} for entry in entries]


def write_ports(path: Path, ports: list[NodePorts]) -> None:
    path.write_text(json.dumps({**ports[0], "nodes": ports}))


def _wait_free(host: str, port: int, seconds: float) -> bool:
    """True once `port` can be bound (a killed node's port can stay busy for a moment)."""
    deadline = time.monotonic() + seconds
    while not port_is_free(host, port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def choose_ports(settings: Settings, previous: list[NodePorts] | None, secure: bool) -> list[NodePorts]:
    """Ports for every node: configured ones (node k: `kafka.port` + k - 1, must be free) or free ones,
    preferring the previous run's."""
    host, cfg = settings.kafka.host, settings.kafka
    names = PORT_NAMES if secure else PORT_NAMES[:2]
    wanted_base = {"port": cfg.port, "controller_port": cfg.controller_port, "internal_port": 0}
    taken: set[int] = set()
    out: list[NodePorts] = []
    for index in range(cfg.brokers):
        old = previous[index] if previous and index < len(previous) else {}
        chosen: NodePorts = {}
        for name in names:
            wanted = wanted_base[name] + index if wanted_base[name] else 0
            chosen[name] = _one_port(host, name, wanted, old.get(name), taken)
            taken.add(chosen[name])
        out.append(chosen)
    return out


def _one_port(host: str, name: str, wanted: int, old: int | None, taken: set[int]) -> int:
    if wanted:
        if not port_is_free(host, wanted):
            raise StackError(
                f"port {host}:{wanted} (setting kafka.{name}) is in use: stop what listens there "
                f"or set ICETIDE__KAFKA__{name.upper()}=0 to pick a free port"
            )
        return wanted
    if old and old not in taken and _wait_free(host, old, REUSE_WAIT_S):
        return old
    if old:
        log.warning("previous %s %s is still busy; clients must use the new bootstrap address", name, old)
    port = free_port(host)
    while port in taken:
        port = free_port(host)
    return port


def reclaim_ports(host: str, ports: NodePorts, node_id: int) -> None:
    """A node restarted beside running ones must get its recorded ports back (the others' quorum
    configuration names its controller port): wait for them, or a StackError."""
    for name, port in ports.items():
        if not _wait_free(host, port, REUSE_WAIT_S):
            raise StackError(f"Kafka node {node_id} cannot restart: its {name} {host}:{port} is taken by "
                             "another process; run `icetide stack down` and `icetide stack up` again")


def active_controller(nodes: list[Node]) -> int | None:
    """The id of the KRaft quorum's leader (the active controller) as the nodes' `quorum-state` files
    record it: the entry of the highest epoch wins. None before any election. Read from disk because
    Kafka's Admin API reports a random broker as "controller" in KRaft mode (KIP-919)."""
    best: tuple[int, int] | None = None
    for node in nodes:
        try:
            state = json.loads((node.data_dir / QUORUM_STATE).read_text())
        except (OSError, ValueError):
            continue
        leader, epoch = int(state.get("leaderId", -1)), int(state.get("leaderEpoch", -1))
        if leader >= 0 and (best is None or epoch > best[1]):
            best = (leader, epoch)
    return best[0] if best else None
