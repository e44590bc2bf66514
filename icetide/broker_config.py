"""The embedded cluster's files: server.properties of each combined broker + controller KRaft node,
log4j2 config, cluster id.

Kept apart from `stack.py` (the process lifecycle) because these are plain data: what N nodes
(`kafka.brokers`) need so that consumer groups and Kafka transactions work and start quickly (few
internal partitions, no initial rebalance delay). Replication follows the cluster's size
(`replication`): one node keeps everything at replication 1, min ISR 1; three or more nodes give
every topic — icetide's, auto-created ones, the offsets, transaction and share-state logs —
replication 3 and min ISR 2, so an `acks=all` write survives the loss of any one node and a
partition stays writable while one replica is down. Two nodes: replication 2, min ISR 1 (min ISR 2
would stop every write while either node is away).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

NODE_ID = 1  # the first node's id (node k of `kafka.brokers` has id k)
MAX_REPLICATION = 3


def replication(brokers: int) -> dict[str, str]:
    """Replication factor and min ISR of every topic for a cluster of `brokers` nodes (module docstring)."""
    factor = str(min(brokers, MAX_REPLICATION))
    min_isr = "2" if brokers >= MAX_REPLICATION else "1"
    return {
        "default.replication.factor": factor,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": factor,
        "transaction.state.log.replication.factor": factor,
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": factor,
        "share.coordinator.state.topic.min.isr": min_isr,
        "unclean.leader.election.enable": "false",  # never elect a replica that lacks acknowledged writes
    }


def quorum_voters(host: str, controller_ports: Sequence[int]) -> str:
    """`controller.quorum.voters`: every node is a voter, node k at the k-th controller port."""
    return ",".join(f"{node_id}@{host}:{port}" for node_id, port in enumerate(controller_ports, start=NODE_ID))


def server_properties(host: str, port: int, controller_port: int, data_dir: Path,
                      num_partitions: int, security: Mapping[str, str] | None = None, *,
                      node_id: int = NODE_ID, controller_ports: Sequence[int] = ()) -> dict[str, str]:
    """Node `node_id`'s properties in a cluster whose nodes have `controller_ports` (default: this node
    alone); `security` (`kafka_security.listener_properties`) replaces the plaintext listeners."""
    voters = controller_ports or [controller_port]
    return {
        "process.roles": "broker,controller",
        "node.id": str(node_id),
        "controller.quorum.voters": quorum_voters(host, voters),
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": str(num_partitions),
        "auto.create.topics.enable": "true",
        **replication(len(voters)),
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.num.partitions": "4",
        "group.initial.rebalance.delay.ms": "0",
        "num.network.threads": "2",
        "num.io.threads": "4",
        "log.retention.hours": "168",
        **(security or {}),
    }


def cluster_id() -> str:
    """A Kafka cluster id: 16 random bytes, URL-safe base64 without padding (like `random-uuid`).

    Like Kafka's own Uuid.randomUuid, never one starting with '-' (the tool would read it as an option).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id



BROKER_LOGGERS = {"kafka.server.KafkaRaftServer": "info"}  # the broker's start/stop lines


def log4j2_config(server_log: Path, loggers: Mapping[str, str] = BROKER_LOGGERS) -> str:
    """A JVM service's logs go to a size-capped file, warnings only, plus `loggers` (name → level):
    by default the broker's start/stop lines."""
    extra = "".join(f"logger.l{i}.name = {name}\nlogger.l{i}.level = {level}\n"
                    for i, (name, level) in enumerate(loggers.items()))
    return f"""\
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = {server_log}
appender.file.filePattern = {server_log}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 10MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 2
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
""" + extra

