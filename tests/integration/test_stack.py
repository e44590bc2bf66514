"""The embedded stack is a real Kafka broker: lifecycle, reuse, stale pids, busy ports, kcat."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from icetide import jvm
from icetide.errors import SetupError, StackError
from icetide.settings import Settings, load_settings
from icetide.stack import Stack, StackStatus
from tests.fixtures.kafka import consume_all

pytestmark = pytest.mark.integration

ICETIDE = str(Path(sys.executable).parent / "icetide")


def _settings(state_dir: Path, **env: str) -> Settings:
    return load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(state_dir), **env})


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[Stack]:
    """A second broker in its own state dir, for lifecycle tests that stop and kill it."""
    stack = Stack(_settings(tmp_path / "state"))
    try:
        yield stack
    finally:
        stack.down()


def _cli(state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ICETIDE__STACK__STATE_DIR": str(state_dir)}
    return subprocess.run([ICETIDE, "stack", *args], env=env, capture_output=True, text=True, timeout=180)


def test_kcat_sees_topic_and_messages(kafka_stack: StackStatus, unique_topic: str) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": kafka_stack.bootstrap})
    sent = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(5)]
    for key, value in sent:
        producer.produce(unique_topic, value, key=key)
    assert producer.flush(30) == 0

    listing = subprocess.run(["kcat", "-L", "-b", kafka_stack.bootstrap, "-t", unique_topic],
                             capture_output=True, text=True, timeout=60, check=True).stdout
    assert f'topic "{unique_topic}" with 1 partitions' in listing
    read = subprocess.run(["kcat", "-C", "-e", "-q", "-b", kafka_stack.bootstrap, "-t", unique_topic,
                           "-f", "%k=%s\\n"], capture_output=True, text=True, timeout=60, check=True).stdout
    assert read.splitlines() == [f"{k.decode()}={v.decode()}" for k, v in sent]
    assert [m.value() for m in consume_all(kafka_stack.bootstrap, unique_topic)] == [v for _, v in sent]


def test_transactions_work_on_one_node(kafka_stack: StackStatus, unique_topic: str) -> None:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": kafka_stack.bootstrap, "transactional.id": unique_topic})
    producer.init_transactions(120)
    producer.begin_transaction()
    producer.produce(unique_topic, b"aborted")
    producer.abort_transaction(60)
    producer.begin_transaction()
    producer.produce(unique_topic, b"committed")
    producer.commit_transaction(60)
    assert [m.value() for m in consume_all(kafka_stack.bootstrap, unique_topic)] == [b"committed"]


def test_up_reuse_status_stale_pid_and_down(own_stack: Stack, tmp_path: Path) -> None:
    """One broker's whole life: up, reused by a second up, killed -9 (stale pid), up again, down."""
    first = own_stack.up()
    assert first.running and first.pid and first.kafka_port
    again = own_stack.up()
    assert again.pid == first.pid and again.bootstrap == first.bootstrap

    reported = json.loads(_cli(tmp_path / "state", "status", "--json").stdout)
    assert reported["running"] is True
    assert reported["bootstrap"] == reported["kafka"]["bootstrap"] == first.bootstrap
    assert reported["catalog_name"] == "lake"
    assert reported["catalog_uri"] == f"jdbc:sqlite:{tmp_path / 'state' / 'catalog.db'}"
    assert reported["warehouse"] == (tmp_path / "state" / "warehouse").as_uri()
    assert (tmp_path / "state" / "warehouse").is_dir()

    assert first.pid is not None
    os.killpg(first.pid, signal.SIGKILL)
    while Path(f"/proc/{first.pid}/cmdline").exists() and Path(f"/proc/{first.pid}/cmdline").read_bytes():
        time.sleep(0.1)
    assert own_stack.status().pid is None
    assert not own_stack.pid_file.exists(), "the stale pid file is removed"
    own_stack.pid_file.write_text(f"{os.getpid()}\n")  # a live pid that is not a broker
    second = own_stack.up()  # same data dir (formatted once), same ports if still free
    assert second.running and second.pid not in (first.pid, os.getpid())

    down = json.loads(_cli(tmp_path / "state", "down", "--json").stdout)
    assert down == {"stopped": True}
    assert not own_stack.status().running
    assert own_stack.down() is False


def test_busy_port_is_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(StackError, match=f"port 127.0.0.1:{port} .* is in use"):
            Stack(_settings(tmp_path, ICETIDE__KAFKA__PORT=str(port))).up()
        env = {**os.environ, "ICETIDE__STACK__STATE_DIR": str(tmp_path), "ICETIDE__KAFKA__PORT": str(port)}
        done = subprocess.run([ICETIDE, "stack", "up"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("error: port")


def test_missing_jdk_is_setup_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICETIDE_JAVA_HOME", str(tmp_path / "no-jdk"))
    jvm.java_home.cache_clear()
    try:
        with pytest.raises(SetupError, match="JDK 17 not found"):
            Stack(_settings(tmp_path / "state")).up()
    finally:
        jvm.java_home.cache_clear()
