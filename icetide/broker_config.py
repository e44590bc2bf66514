"""The embedded broker's files: server.properties (single-node KRaft), log4j2 config, cluster id.

Kept apart from `stack.py` (the process lifecycle) because these are plain data: what a
one-node broker needs so that consumer groups and Kafka transactions work (replication 1,
min ISR 1) and start quickly (few internal partitions, no initial rebalance delay).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from pathlib import Path

NODE_ID = 1


def server_properties(host: str, port: int, controller_port: int, data_dir: Path,
                      num_partitions: int, security: Mapping[str, str] | None = None) -> dict[str, str]:
    """The properties; `security` (`kafka_security.listener_properties`) replaces the plaintext listeners."""
    return {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.voters": f"{NODE_ID}@{host}:{controller_port}",
        "listeners": f"PLAINTEXT://{host}:{port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{host}:{port}",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": str(data_dir),
        "num.partitions": str(num_partitions),
        "auto.create.topics.enable": "true",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "4",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "transaction.state.log.num.partitions": "4",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
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

