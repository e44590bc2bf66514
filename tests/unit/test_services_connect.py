"""The Kafka Connect service's parts that need no JVM: worker properties, needs, failure reports, pid files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from icetide.errors import SetupError, StackError
from icetide.services import Need, require
from icetide.services.connect import (
    ConnectSettings,
    KafkaConnect,
    plugin_path,
    raise_if_failed,
    render_properties,
    worker_properties,
)

pytestmark = pytest.mark.unit


def parse_properties(text: str) -> dict[str, str]:
    """A reader for what `render_properties` writes (key and value separated by the first unescaped `=`)."""
    out = {}
    for line in text.splitlines():
        i = 0
        while line[i] != "=" or line[i - 1] == "\\":
            i += 1
        unescape = {"\\=": "=", "\\:": ":", "\\ ": " ", "\\n": "\n"}
        key, value = line[:i], line[i + 1 :]
        for esc, plain in unescape.items():
            key, value = key.replace(esc, plain), value.replace(esc, plain)
        out[key.replace("\\\\", "\\")] = value.replace("\\\\", "\\")
    return out


def test_worker_listens_on_loopback_keeps_offsets_in_its_home_and_reads_committed(tmp_path: Path) -> None:
    props = worker_properties(ConnectSettings(bootstrap="127.0.0.1:9092"), 18083, tmp_path)
    assert props["listeners"] == "http://127.0.0.1:18083"
    assert props["offset.storage.file.filename"] == str(tmp_path / "offsets")
    assert props["plugin.path"] == str(plugin_path())
    assert props["consumer.isolation.level"] == "read_committed"
    assert props["value.converter.schemas.enable"] == "true"


def test_worker_settings_override_the_defaults(tmp_path: Path) -> None:
    settings = ConnectSettings(bootstrap="b:1", worker={"offset.flush.interval.ms": "50", "a.b": "c"})
    props = worker_properties(settings, 1, tmp_path)
    assert (props["offset.flush.interval.ms"], props["a.b"]) == ("50", "c")


def test_properties_file_keeps_every_key_and_value() -> None:
    props = {"plain": "v", "path": "C:\\dir\\x", "with=eq:colon key": "a=b: c", "multi": "one\ntwo"}
    assert parse_properties(render_properties(props)) == props


def test_missing_jars_are_one_setup_error_naming_each_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICETIDE_JAR_CACHE", str(tmp_path / "jars"))
    (tmp_path / "jars" / "connect").mkdir(parents=True)
    (tmp_path / "jars" / "connect" / "connect-runtime.jar").write_bytes(b"")
    worker = KafkaConnect()
    with pytest.raises(SetupError) as caught:
        worker.start(ConnectSettings(bootstrap="127.0.0.1:1"), tmp_path / "state")
    message = str(caught.value)
    assert "debezium-jdbc" in message and "apicurio-avro" in message and "make setup" in message
    assert "worker's jars" not in message  # that one is there
    assert not worker.process.pid_file.exists()
    assert worker.status()["running"] is False


def test_require_passes_when_everything_is_there(tmp_path: Path) -> None:
    (tmp_path / "a.jar").write_bytes(b"")
    require([Need("jars", tmp_path), Need("a file", tmp_path / "a.jar")])
    with pytest.raises(SetupError, match="nothing here"):
        require([Need("nothing here", tmp_path, glob="*.zip")])


def test_a_failed_task_raises_with_the_workers_trace() -> None:
    running = {"connector": {"state": "RUNNING"}, "tasks": [{"id": 0, "state": "RUNNING"}]}
    raise_if_failed("sink", running)
    failed = {"connector": {"state": "RUNNING"},
              "tasks": [{"id": 0, "state": "FAILED", "worker_id": "127.0.0.1:1",
                         "trace": "org.apache.kafka.connect.errors.ConnectException: boom"}]}
    with pytest.raises(StackError, match=r"task 0 FAILED(.|\n)*ConnectException: boom"):
        raise_if_failed("sink", failed)


def test_a_stale_pid_file_is_not_ours_and_is_removed(tmp_path: Path) -> None:
    worker = KafkaConnect(tmp_path)
    worker.home.mkdir(parents=True)
    worker.process.pid_file.write_text(f"{os.getpid()}\n")  # alive, but not a Connect worker
    assert worker.process.live_pid() is None
    assert not worker.process.pid_file.exists()
    assert worker.stop() is False
    status = worker.status()
    assert (status["running"], status["pid"], status["rest"]) == (False, None, None)


def test_an_unbound_service_says_so() -> None:
    with pytest.raises(StackError, match="no state dir"):
        _ = KafkaConnect().home
