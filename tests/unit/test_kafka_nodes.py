"""The embedded cluster's shape without a JVM: `kafka.brokers`, each node's properties, ports, files, leader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from icetide import kafka_nodes
from icetide.broker_config import server_properties
from icetide.errors import ConfigError
from icetide.kafka_client import DURABLE_PRODUCER, producer
from icetide.settings import load_settings
from icetide.stack import Stack

pytestmark = pytest.mark.unit


def _settings(tmp_path: Path, **env: str):  # type: ignore[no-untyped-def]
    return load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(tmp_path), **env})


@pytest.mark.parametrize("value", ["0", "-2"])
def test_brokers_below_one_is_an_error_naming_key_and_file(tmp_path: Path, value: str) -> None:
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(f"kafka:\n  brokers: {value}\n")
    with pytest.raises(ConfigError, match=r"cluster\.yaml: setting 'kafka\.brokers': .*greater than or equal to 1"):
        load_settings(cfg, environ={})
    with pytest.raises(ConfigError, match=r"environment .*'kafka\.brokers'"):
        load_settings(None, environ={"ICETIDE__KAFKA__BROKERS": value})


def test_one_node_keeps_replication_one() -> None:
    props = server_properties("127.0.0.1", 9092, 9093, Path("/d"), 1)
    assert props["controller.quorum.voters"] == "1@127.0.0.1:9093"
    assert props["node.id"] == "1"
    for key in ("default.replication.factor", "offsets.topic.replication.factor",
                "transaction.state.log.replication.factor", "min.insync.replicas", "transaction.state.log.min.isr"):
        assert props[key] == "1", key


@pytest.mark.parametrize(("brokers", "factor", "min_isr"), [(2, "2", "1"), (3, "3", "2"), (5, "3", "2")])
def test_replicated_cluster_topics_and_internal_logs(brokers: int, factor: str, min_isr: str) -> None:
    controllers = [9100 + k for k in range(brokers)]
    props = server_properties("127.0.0.1", 9200, controllers[1], Path("/d"), 1, node_id=2,
                              controller_ports=controllers)
    assert props["node.id"] == "2"
    assert props["controller.quorum.voters"] == ",".join(f"{k + 1}@127.0.0.1:{p}" for k, p in enumerate(controllers))
    assert props["listeners"] == f"PLAINTEXT://127.0.0.1:9200,CONTROLLER://127.0.0.1:{controllers[1]}"
    for key in ("default.replication.factor", "offsets.topic.replication.factor",
                "transaction.state.log.replication.factor", "share.coordinator.state.topic.replication.factor"):
        assert props[key] == factor, key
    for key in ("min.insync.replicas", "transaction.state.log.min.isr", "share.coordinator.state.topic.min.isr"):
        assert props[key] == min_isr, key
    assert props["unclean.leader.election.enable"] == "false"


def test_node_layout_keeps_the_one_node_files_for_node_one(tmp_path: Path) -> None:
    stack = Stack(_settings(tmp_path, ICETIDE__KAFKA__BROKERS="3"))
    home = tmp_path.resolve() / "kafka"
    assert [n.home for n in stack.nodes] == [home, home / "node-2", home / "node-3"]
    assert stack.pid_file == home / "kafka.pid" and stack.data_dir == home / "data"
    assert len({n.config_file for n in stack.nodes}) == 3


def test_configured_ports_are_consecutive_per_node(tmp_path: Path) -> None:
    from icetide.process import free_port

    base = free_port()
    settings = _settings(tmp_path, ICETIDE__KAFKA__BROKERS="3", ICETIDE__KAFKA__PORT=str(base))
    ports = kafka_nodes.choose_ports(settings, None, secure=True)
    assert [p["port"] for p in ports] == [base, base + 1, base + 2]
    every = [port for p in ports for port in p.values()]
    assert len(set(every)) == 9, "no two listeners share a port"


def test_ports_file_round_trip_and_the_one_node_format(tmp_path: Path) -> None:
    path = tmp_path / "ports.json"
    nodes = [{"port": 1, "controller_port": 2}, {"port": 3, "controller_port": 4}]
    kafka_nodes.write_ports(path, nodes)
    assert kafka_nodes.read_ports(path) == nodes
    assert json.loads(path.read_text())["port"] == 1, "the first node's ports stay flat, as one node wrote them"
    path.write_text(json.dumps({"port": 7, "controller_port": 8}))  # a one-node stack's file
    assert kafka_nodes.read_ports(path) == [{"port": 7, "controller_port": 8}]


def test_a_formatted_cluster_refuses_another_size(tmp_path: Path) -> None:
    from icetide.errors import StackError

    home = tmp_path.resolve() / "kafka"
    for node in kafka_nodes.cluster_nodes(home, 3):
        node.data_dir.mkdir(parents=True)
        (node.data_dir / "meta.properties").write_text("cluster.id=abc\nnode.id=1\n")
    assert kafka_nodes.formatted_count(home) == 3
    assert kafka_nodes.cluster_nodes(home, 3)[2].cluster_id() == "abc"
    with pytest.raises(StackError, match=r"3-node cluster but kafka.brokers is 1"):
        Stack(_settings(tmp_path)).up()


def test_active_controller_is_the_newest_epochs_leader(tmp_path: Path) -> None:
    nodes = kafka_nodes.cluster_nodes(tmp_path, 3)
    assert kafka_nodes.active_controller(nodes) is None
    for node, (leader, epoch) in zip(nodes, [(1, 4), (3, 6), (1, 5)], strict=True):
        state = node.data_dir / kafka_nodes.QUORUM_STATE
        state.parent.mkdir(parents=True)
        state.write_text(json.dumps({"leaderId": leader, "leaderEpoch": epoch, "votedId": -1, "data_version": 1}))
    assert kafka_nodes.active_controller(nodes) == 3


def test_icetide_producers_are_acks_all_and_idempotent(tmp_path: Path) -> None:
    assert DURABLE_PRODUCER == {"acks": "all", "enable.idempotence": True}
    made = producer(_settings(tmp_path), "apply", "127.0.0.1:1")
    made.flush(0)  # builds without error: librdkafka accepted the configuration
