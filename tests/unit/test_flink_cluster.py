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
    assert conf["cluster.uncaught-exception-handling"] == "FAIL"  # an OOM in a daemon thread ends the TaskManager
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


def s3_settings(tmp_path: Path, **environ: str) -> Settings:
    """S3 storage at a fixed endpoint; the `cdc` key in a credentials file unless `environ` names env vars."""
    from icetide.settings import load_settings

    creds = tmp_path / "cdc-key"
    creds.write_text("[default]\naws_access_key_id = AKID\naws_secret_access_key = s3cr3t-value\n")
    base = {"ICETIDE__STACK__STATE_DIR": str(tmp_path), "ICETIDE__STORAGE__KIND": "s3",
            "ICETIDE__STORAGE__ENDPOINT": "http://127.0.0.1:9", "ICETIDE__FLINK__ADDRESS": "127.0.0.1:8089"}
    return load_settings(None, environ={**base, **(environ or {"ICETIDE__STORAGE__CREDENTIALS__FILE": str(creds)})})


def env_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("T_AK", "AKID")
    monkeypatch.setenv("T_SK", "s3cr3t-value")
    return s3_settings(tmp_path, ICETIDE__STORAGE__CREDENTIALS__ACCESS_KEY_ENV="T_AK",
                       ICETIDE__STORAGE__CREDENTIALS__SECRET_KEY_ENV="T_SK")


def test_the_cluster_config_carries_the_s3_file_system_by_the_key_file(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from icetide.services import flink_cluster

    settings = s3_settings(tmp_path)
    conf = render_config(settings, rpc_port=6123, rest_port=8089, slots=1, checkpoints="file:///x/cp")
    assert conf["s3.endpoint"] == "http://127.0.0.1:9" and conf["s3.path.style.access"] == "true"
    assert conf["s3.aws.credentials.provider"] == "io.icetide.s3a.FileCredentialsProvider"
    assert conf["s3.icetide.credentials.file"] == str((tmp_path / "cdc-key").resolve())
    assert "s3.secret-key" not in conf and "s3cr3t-value" not in conf.values()
    assert "s3.endpoint" not in render_config(Settings(), rpc_port=1, rest_port=2, slots=1, checkpoints="file:///x")
    # `flink up`'s rendering: config.yaml (no secret: the usual mode), and each process loads the S3 plugin
    monkeypatch.setattr(flink_cluster, "java_opts", lambda home: "")
    monkeypatch.setattr(flink_cluster.jvm, "jars", lambda group: [])
    monkeypatch.setattr("icetide.flink_s3.plugins_dir", lambda: tmp_path / "plugins")
    cluster = FlinkCluster(tmp_path)
    cluster._render(settings)
    text = cluster.config_file.read_text()
    assert 's3.endpoint: "http://127.0.0.1:9"\n' in text and "s3cr3t-value" not in text
    assert cluster.config_file.stat().st_mode & 0o777 == 0o644
    assert cluster._env("taskmanager-1")["FLINK_PLUGINS_DIR"] == str(tmp_path / "plugins")


def test_a_key_from_the_environment_makes_the_cluster_config_private(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from icetide.services import flink_cluster

    settings = env_key(tmp_path, monkeypatch)
    monkeypatch.setattr(flink_cluster, "java_opts", lambda home: "")
    cluster = FlinkCluster(tmp_path)
    cluster.conf_dir.mkdir(parents=True)
    cluster.config_file.write_text("old\n")
    cluster.config_file.chmod(0o644)
    cluster._render(settings)
    assert cluster.config_file.stat().st_mode & 0o777 == 0o600
    assert 's3.secret-key: "s3cr3t-value"\n' in cluster.config_file.read_text()
    assert not list(cluster.conf_dir.glob(".*tmp"))


def test_a_cluster_job_on_s3_checks_the_clusters_s3_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from icetide.services import flink_cluster

    settings = s3_settings(tmp_path)
    answers: list[object] = [[{"key": "s3.endpoint", "value": "http://127.0.0.1:9"}]]
    def fake_rest(address: str, path: str, **_: object) -> object:
        assert (address, path) == ("127.0.0.1:8089", "/jobmanager/config")
        answer = answers[0]
        if isinstance(answer, Exception):
            raise answer
        return answer

    monkeypatch.setattr(flink_cluster, "rest_call", fake_rest)
    assert remote_config(settings)["execution.target"] == "remote"  # the cluster has the same object store
    answers[0] = OSError("connection refused")  # not judged here: the submission names the unreachable cluster
    assert remote_config(settings)["execution.target"] == "remote"
    for config, found in (([], "no S3 file system"), ([{"key": "s3.endpoint", "value": "http://other:1"}],
                                                       "s3.endpoint http://other:1")):
        answers[0] = config
        with pytest.raises(ConfigError, match=r"flink\.address") as error:
            remote_config(settings)
        message = str(error.value)
        assert found in message and str(tmp_path / "flink" / "conf" / "config.yaml") in message
        assert "flink.checkpoint_dir" in message
    local = settings.model_copy(update={"flink": settings.flink.model_copy(
        update={"checkpoint_dir": (tmp_path / "cp").as_uri()})})
    assert remote_config(local)["execution.target"] == "remote"  # a folder: nothing asked of the cluster


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
