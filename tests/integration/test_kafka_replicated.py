"""A replicated embedded cluster (`kafka.brokers: 3`): three KRaft nodes, replication 3, min ISR 2, and
SIGKILLs of a partition leader or of the active controller while changes flow into `cdc apply`.

Changes are Debezium envelopes (the consumer tests' `Generator`) produced by icetide's own producer
(`kafka_client.producer`: acks=all, idempotent) — the Flink job would add minutes and nothing this test
is about. After each kill: every produce was acknowledged (none failed), the topic holds each keyless
event once (no duplicate from a retry across the leader change), the downstream tables equal the model
(nothing lost, nothing applied twice), and `stack up` brings the killed node back on its ports.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.sqlite import SqliteConfig, SqliteSink
from icetide import kafka_client
from icetide.settings import Settings, load_settings
from icetide.stack import Stack, StackStatus
from tests.fixtures.kafka import consume_all, create_topic, new_topic_name
from tests.integration.test_connectors_consumer import ICETIDE, Generator, _norm

pytestmark = pytest.mark.integration
ROUNDS, PER_ROUND, PAUSE_S = 60, 60, 0.1  # ~3,600 keyed + 1,800 keyless events over ~10 s


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, StackStatus]]:
    state = tmp_path_factory.mktemp("kafka3")
    stack = Stack(load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(state),
                                               "ICETIDE__KAFKA__BROKERS": "3", "ICETIDE__KAFKA__HEAP": "384m"}))
    try:
        yield stack, stack.up()
    finally:
        stack.down()


def test_three_nodes_with_replication_three_and_min_isr_two(cluster: tuple[Stack, StackStatus],
                                                            tmp_path: Path) -> None:
    from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

    stack, status = cluster
    assert [n["running"] for n in status.nodes] == [True, True, True]
    assert len(status.bootstrap.split(",")) == 3
    assert len({n["pid"] for n in status.nodes}) == 3
    topic = create_topic(status.bootstrap, new_topic_name("icetide.sales.rf"), partitions=2)
    admin = AdminClient({"bootstrap.servers": status.bootstrap})
    meta = admin.list_topics(topic, timeout=30)
    assert len(meta.brokers) == 3
    assert [len(p.replicas) for p in meta.topics[topic].partitions.values()] == [3, 3]
    resource = ConfigResource(ResourceType.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(30)
    assert configs["min.insync.replicas"].value == "2"
    # the consumer group's offsets and the transaction log are replicated too
    producer = kafka_client.producer(stack.settings, "cdc", status.bootstrap, {"transactional.id": topic})
    producer.init_transactions(60)
    producer.begin_transaction()
    producer.produce(topic, b"x")
    producer.commit_transaction(60)
    internal = admin.list_topics(timeout=30).topics
    # the transaction log is replicated too (the offsets topic is made by the first group: the kill cases)
    assert {len(p.replicas) for p in internal["__transaction_state"].partitions.values()} == {3}

    shown = subprocess.run([ICETIDE, "stack", "status", "--json"], capture_output=True, text=True, timeout=120,
                           env={**os.environ, "ICETIDE__STACK__STATE_DIR": str(stack.settings.state_dir),
                                "ICETIDE__KAFKA__BROKERS": "3"})
    nodes = json.loads(shown.stdout)["kafka"]["nodes"]
    assert [(n["node_id"], n["running"]) for n in nodes] == [(1, True), (2, True), (3, True)]


class Flow:
    """Changes produced in rounds from a thread, each produce's delivery counted; `acked_after(t)` is the
    first acknowledgement at or after monotonic time t."""

    def __init__(self, settings: Settings, bootstrap: str, keyed: str, keyless: str) -> None:
        self.producer = kafka_client.producer(settings, "cdc", bootstrap, {"linger.ms": 5})
        self.keyed, self.keyless = keyed, keyless
        self.gen, self.log_gen = Generator("sales", "keyed", seed=11), Generator("sales", "log", keyed=False, seed=12)
        self.failed: list[str] = []
        self.acks: list[float] = []
        self.produced = 0
        self.left = -1  # messages still unacknowledged after the final flush
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _delivered(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.failed.append(str(err))
        else:
            self.acks.append(time.monotonic())

    def _run(self) -> None:
        for _round in range(ROUNDS):
            for topic, records in ((self.keyed, self.gen.events(PER_ROUND)),
                                   (self.keyless, self.log_gen.events(PER_ROUND // 2))):
                for key, value in records:
                    self.producer.produce(topic, value, key=key, on_delivery=self._delivered)
                    self.produced += 1
            self.producer.poll(0)
            time.sleep(PAUSE_S)  # poll(timeout) returns at the first delivery: the pause is a sleep
        self.left = self.producer.flush(120)

    def acked_after(self, moment: float) -> float | None:
        later = [t for t in list(self.acks) if t >= moment]
        return min(later) if later else None


def _victim(stack: Stack, bootstrap: str, topic: str, target: str) -> int:
    if target == "controller":
        leader = stack.active_controller()
        assert leader is not None, "the quorum has a leader"
        return leader
    from confluent_kafka.admin import AdminClient

    return int(AdminClient({"bootstrap.servers": bootstrap}).list_topics(topic, timeout=30)
               .topics[topic].partitions[0].leader)


@pytest.mark.parametrize("target", ["leader", "controller"])
def test_sigkill_while_changes_flow_loses_nothing_applies_nothing_twice(
        cluster: tuple[Stack, StackStatus], tmp_path: Path, target: str) -> None:
    stack, _ = cluster
    status = stack.up()  # every node runs (an earlier case's victim is back even if that case failed)
    bootstrap = status.bootstrap
    keyed = create_topic(bootstrap, new_topic_name("icetide.sales.keyed"), partitions=2)
    keyless = create_topic(bootstrap, new_topic_name("icetide.sales.log"))
    env = {**os.environ, "ICETIDE__KAFKA__BOOTSTRAP_SERVERS": bootstrap, "ICETIDE__STACK__STATE_DIR": str(tmp_path),
           "ICETIDE__SINK__GROUP_ID": f"kill-{uuid.uuid4().hex[:8]}",
           "ICETIDE__SINK__DEAD_LETTER_TOPIC": new_topic_name("dead")}
    apply = subprocess.Popen([ICETIDE, "cdc", "apply", "--sink", "sqlite", "--topics", f"{keyed},{keyless}",
                              "--batch-size", "200"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
    flow = Flow(stack.settings, bootstrap, keyed, keyless)
    try:
        flow.thread.start()
        time.sleep(3)  # changes flow, the consumer applies them
        victim = _victim(stack, bootstrap, keyed, target)
        pid = stack.node_pid(victim)
        assert pid is not None
        killed_at = time.monotonic()
        os.killpg(pid, signal.SIGKILL)
        flow.thread.join(timeout=180)
        assert not flow.thread.is_alive(), "the producer finished within 3 minutes"
        assert flow.failed == [] and flow.left == 0, "every change acknowledged, none failed"
        acked = flow.acked_after(killed_at + 0.05)
        assert acked is not None, "writes were acknowledged after the kill: the cluster kept serving"
        if target == "controller":
            deadline = time.monotonic() + 30
            while stack.active_controller() in (victim, None) and time.monotonic() < deadline:
                time.sleep(0.5)
            assert stack.active_controller() not in (victim, None), "another node became the active controller"
        assert len(consume_all(bootstrap, keyless)) == ROUNDS * (PER_ROUND // 2), "each keyless event once in Kafka"
        back = stack.up()  # the killed node comes back on its ports beside the running two
        assert [n["running"] for n in back.nodes] == [True, True, True] and back.bootstrap == bootstrap
        apply.send_signal(signal.SIGTERM)
        apply.wait(timeout=60)
    finally:
        if apply.poll() is None:
            os.killpg(apply.pid, signal.SIGKILL)
            apply.wait()
    final = subprocess.run([ICETIDE, "cdc", "apply", "--sink", "sqlite", "--topics", f"{keyed},{keyless}",
                            "--once", "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-2000:]
    assert json.loads(final.stdout)["caught_up"] is True
    with SqliteSink(SqliteConfig(tmp_path / "downstream.db")) as sink:
        keyed_rows = sink.read_rows(("sales", "keyed"))
        log_rows = sink.read_rows(("sales", "log"))
    assert _norm(keyed_rows) == _norm(list(flow.gen.model.values()))
    assert Counter(_norm(log_rows)) == Counter(_norm(flow.log_gen.rows)), "keyless rows: none lost, none twice"


def test_three_nodes_with_sasl_ssl(tmp_path: Path) -> None:
    """Every node gets the CLIENT / INTERNAL / CONTROLLER listeners; the users and ACLs, made once, hold on
    all of them: `cdc` writes a replicated topic, `apply` reads it, over SCRAM + TLS."""
    settings = load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(tmp_path), "ICETIDE__KAFKA__BROKERS": "3",
                                            "ICETIDE__KAFKA__SECURITY": "sasl_ssl", "ICETIDE__KAFKA__HEAP": "384m"})
    stack = Stack(settings)
    try:
        status = stack.up()
        assert [n["running"] for n in status.nodes] == [True, True, True]
        bootstrap = status.bootstrap
        topic = new_topic_name("icetide.sales.secure")
        create_topic(bootstrap, topic, client=kafka_client.client_config(settings, "cdc", bootstrap))
        producer = kafka_client.producer(settings, "cdc", bootstrap)
        for i in range(20):
            producer.produce(topic, str(i).encode())
        assert producer.flush(60) == 0
        read = consume_all(bootstrap, topic, client=kafka_client.client_config(settings, "admin", bootstrap))
        assert sorted(int(m.value()) for m in read) == list(range(20))
        admin = kafka_client.admin(settings, "admin", bootstrap)
        assert {len(p.replicas) for p in admin.list_topics(topic, timeout=30).topics[topic].partitions.values()} == {3}
    finally:
        stack.down()
    assert not stack.status().running and all(n["pid"] is None for n in stack.status().nodes)
