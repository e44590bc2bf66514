"""The Flink session cluster's rendered config, `flink.address`, the job's remote target and the CLI's help."""

from __future__ import annotations

from pathlib import Path

import pytest

from icetide.cli import main
from icetide.errors import ConfigError
from icetide.services.flink_cluster import FlinkCluster, config_yaml, parse_address, render_config
from icetide.settings import Settings
from streaming.job import remote_config

pytestmark = pytest.mark.unit


def test_render_config_binds_loopback_and_fixes_only_the_jobmanager_ports(tmp_path: Path) -> None:
    settings = Settings(stack={"state_dir": str(tmp_path)},
                        flink={"taskmanager_memory": "900m", "parallelism": 2})  # type: ignore[arg-type]
    conf = render_config(settings, rpc_port=6123, rest_port=8089, slots=3, checkpoints="file:///x/cp")
    assert conf["jobmanager.rpc.port"] == "6123" and conf["rest.port"] == "8089"
    assert {conf[k] for k in ("jobmanager.rpc.address", "jobmanager.bind-host", "rest.address",
                              "rest.bind-address", "taskmanager.host", "taskmanager.bind-host")} == {"127.0.0.1"}
    assert conf["taskmanager.rpc.port"] == conf["taskmanager.data.port"] == conf["blob.server.port"] == "0"
    assert conf["taskmanager.numberOfTaskSlots"] == "3"
    assert conf["taskmanager.memory.process.size"] == "900m"
    assert conf["parallelism.default"] == "2"
    assert conf["execution.checkpointing.dir"] == "file:///x/cp"
    assert "env.java.opts.all" not in conf
    text = config_yaml({**conf, "env.java.opts.all": "--add-opens=java.base/java.lang=ALL-UNNAMED"})
    assert 'rest.port: "8089"\n' in text
    assert 'env.java.opts.all: "--add-opens=java.base/java.lang=ALL-UNNAMED"\n' in text


def test_address_parses_and_selects_the_remote_target() -> None:
    assert parse_address("127.0.0.1:8081") == ("127.0.0.1", 8081)
    for bad in ("localhost", ":8081", "host:port"):
        with pytest.raises(ConfigError, match=r"flink\.address"):
            parse_address(bad)
    assert remote_config(Settings()) == {}  # unset: the local mini-cluster, as before
    remote = Settings(flink={"address": "127.0.0.1:40123"})  # type: ignore[arg-type]
    assert remote_config(remote) == {"execution.target": "remote", "rest.address": "127.0.0.1",
                                     "rest.port": "40123"}


def test_address_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ICETIDE__FLINK__ADDRESS", "127.0.0.1:9999")
    from icetide.settings import load_settings

    assert load_settings(None).flink.address == "127.0.0.1:9999"


def test_status_of_a_cluster_never_started(tmp_path: Path) -> None:
    status = FlinkCluster(tmp_path).status()
    assert status["running"] is False and status["pids"] == {} and status["taskmanagers"] == []
    assert FlinkCluster(tmp_path).stop() is False


@pytest.mark.parametrize("command", ["up", "down", "status"])
def test_help_of_each_command(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flink", command, "--help"]) == 0
    out = capsys.readouterr().out
    assert "--json" in out
    assert ("--taskmanagers" in out) == (command == "up")


def test_a_cluster_job_refuses_checkpoints_on_s3_naming_the_keys(tmp_path: Path) -> None:
    settings = Settings(stack={"state_dir": str(tmp_path)}, storage={"kind": "s3"},  # type: ignore[arg-type]
                        flink={"address": "127.0.0.1:8089"})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"flink\.address.*flink\.checkpoint_dir"):
        remote_config(settings)
    local = settings.model_copy(update={"flink": settings.flink.model_copy(
        update={"checkpoint_dir": (tmp_path / "cp").as_uri()})})
    assert remote_config(local)["execution.target"] == "remote"


def test_savepoints_sit_beside_the_checkpoints_not_under_them(tmp_path: Path) -> None:
    from streaming.checkpoints import checkpoint_root, savepoint_root

    settings = Settings(stack={"state_dir": str(tmp_path)})  # type: ignore[arg-type]
    assert savepoint_root(settings) == (tmp_path / "cdc" / "savepoints").as_uri()
    assert not savepoint_root(settings).startswith(checkpoint_root(settings))


def test_cdc_stop_without_a_cluster_names_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ICETIDE__STACK__STATE_DIR", str(tmp_path))
    monkeypatch.delenv("ICETIDE__FLINK__ADDRESS", raising=False)
    assert main(["cdc", "stop", "--savepoint"]) != 0
    assert "flink.address" in capsys.readouterr().err
