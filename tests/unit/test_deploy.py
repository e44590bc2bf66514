"""Dockerfile, docker-compose.yml and k8s/ stay true to the code (nothing here can be run: no engine, no cluster).

Each check reads the deployment files and asks the code: command lines resolve to real click commands and
options, ICETIDE__ variables name real settings, files they mount exist, the scraped ports are the ports the
commands serve. The readers shared with the k8s tests (test_deploy_k8s.py) are in deploy_files.py.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import click
import pytest
import yaml

from icetide import jvm
from icetide.cli import root
from icetide.settings import load_settings
from tests.unit.deploy_files import (
    COMPOSE,
    DOCKERFILE,
    ROOT,
    assert_settings_keys,
    compose_services,
    env_file_values,
    resolve_command,
    tool,
)

pytestmark = pytest.mark.unit
METRICS_COMMANDS = {("cdc", "run"): "metrics_port", ("cdc", "apply"): "metrics_port", ("maint", "exporter"): "port"}


def _icetide_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose_services().items() if str(s.get("image", "")).startswith("icetide:")}


def _compose_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path → repo path for the service's bind mounts (`./src:/dst[:ro]`)."""
    mounts: dict[str, Path] = {}
    for volume in service.get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("./"):
            mounts[target] = ROOT / source
    return mounts


def _compose_env(service: dict[str, Any]) -> dict[str, str]:
    env = {k: str(v) for k, v in service.get("environment", {}).items()}
    for env_file in service.get("env_file", []):
        env.update(env_file_values(ROOT / f"{env_file}.example"))
    return env


# -- compose ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", [COMPOSE, *sorted((ROOT / "deploy").rglob("*.y*ml"))], ids=lambda p: p.name)
def test_yaml_parses(path: Path) -> None:
    assert isinstance(yaml.safe_load(path.read_text()), dict), path


def test_compose_parses_and_has_the_system() -> None:
    services = compose_services()
    assert {"kafka", "postgres", "cdc-run", "cdc-apply", "maint-exporter", "prometheus", "grafana"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, one node
    for name, service in services.items():
        if "profiles" not in service:
            assert "healthcheck" in service, f"{name} has no healthcheck"
        for dep, condition in service.get("depends_on", {}).items():
            assert dep in services and condition["condition"] == "service_healthy", (name, dep)
            assert "healthcheck" in services[dep], f"{name} waits for {dep}, which has no healthcheck"


@pytest.mark.parametrize("name", sorted(_icetide_services()))
def test_compose_command_resolves_to_a_real_command(name: str) -> None:
    service = _icetide_services()[name]
    path, ctx = resolve_command(service["command"], _compose_mounts(service))
    assert ctx.command.name == path[-1]
    if tuple(path) in METRICS_COMMANDS:
        port = ctx.params[METRICS_COMMANDS[tuple(path)]]
        assert port and port > 0, f"{name}: give the metrics port explicitly"
        assert f"127.0.0.1:{port}/metrics" in " ".join(service["healthcheck"]["test"]), name


def test_compose_services_run_what_the_brief_asks() -> None:
    commands = {n: tuple(s["command"][:2]) for n, s in _icetide_services().items() if "profiles" not in s}
    assert sorted(commands.values()) == [("cdc", "apply"), ("cdc", "run"), ("maint", "exporter")]
    apply = _icetide_services()["cdc-apply"]["command"]
    assert apply[apply.index("--sink") + 1] == "postgres"
    assert "--once" not in _icetide_services()["cdc-run"]["command"]  # continuous


@pytest.mark.parametrize("name", sorted(_icetide_services()))
def test_compose_settings_load(name: str) -> None:
    service = _icetide_services()[name]
    env = _compose_env(service)
    assert_settings_keys(env, f"docker-compose.yml:{name}")
    config = _compose_mounts(service)[env["ICETIDE_CONFIG"]]
    settings = load_settings(config, {**env, **_dockerfile_env()})
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.catalog_uri.startswith("jdbc:postgresql://postgres:5432/")
    assert settings.warehouse == "file:///var/lib/icetide/warehouse"
    assert str(settings.state_dir) == "/var/lib/icetide"
    assert settings.sink.kind == "postgres" and settings.metrics.host == "0.0.0.0"
    named = set(yaml.safe_load(COMPOSE.read_text())["volumes"])
    state = [v.split(":")[0] for v in service["volumes"] if v.split(":")[1] == str(settings.state_dir)]
    assert len(state) == 1 and state[0] in named, f"{name} does not mount the shared state volume"


def test_compose_keeps_secrets_out_of_the_file() -> None:
    for name, service in compose_services().items():
        for key, value in service.get("environment", {}).items():
            assert not re.search(r"PASSWORD|SECRET|TOKEN", key), f"{name}: {key} is inline; use an env file"
            if "://" in str(value):
                assert urlparse(str(value).removeprefix("jdbc:")).password is None, f"{name}: {key} has a password"
        for env_file in service.get("env_file", []):
            example = ROOT / f"{env_file}.example"
            assert example.is_file(), f"{name}: {env_file} has no template {example.name}"
            ignored = subprocess.run(["git", "check-ignore", "-q", env_file], cwd=ROOT).returncode == 0
            assert ignored, f"{env_file} is not git-ignored"


def test_compose_files_exist() -> None:
    data = yaml.safe_load(COMPOSE.read_text())
    for name, service in data["services"].items():
        for target, source in _compose_mounts(service).items():
            assert source.exists(), f"{name}: mounts missing {source} at {target}"
        build = service.get("build")
        if build:
            assert (ROOT / build["context"] / "Dockerfile").is_file()
            assert re.search(rf"^FROM \S+ AS {build['target']}$", DOCKERFILE.read_text(), re.M), build


def test_prometheus_scrapes_every_metrics_port_and_loads_the_rules() -> None:
    prometheus = compose_services()["prometheus"]
    mounts = _compose_mounts(prometheus)
    config = yaml.safe_load(mounts["/etc/prometheus/prometheus.yml"].read_text())
    assert config["rule_files"] == ["/etc/prometheus/rules/icetide-rules.yml"]
    assert mounts["/etc/prometheus/rules/icetide-rules.yml"] == ROOT / "./ops/prometheus/icetide-rules.yml"
    scraped = {(job["job_name"], t) for job in config["scrape_configs"] for s in job["static_configs"]
               for t in s["targets"]}
    served = set()
    for name, service in _icetide_services().items():
        path, ctx = resolve_command(service["command"], _compose_mounts(service))
        if tuple(path) in METRICS_COMMANDS and "profiles" not in service:
            served.add(f"{name}:{ctx.params[METRICS_COMMANDS[tuple(path)]]}")
    assert {t for _, t in scraped} == served
    assert all(job.startswith("icetide") for job, _ in scraped)  # the IcetideProcessDown alert's job=~"icetide.*"


def test_prometheus_config_is_valid() -> None:
    promtool = tool("promtool")
    mounts = _compose_mounts(compose_services()["prometheus"])
    config = yaml.safe_load(mounts["/etc/prometheus/prometheus.yml"].read_text())
    config["rule_files"] = [str(mounts[f]) for f in config["rule_files"]]
    proc = subprocess.run([promtool, "check", "config", "/dev/stdin"], input=yaml.safe_dump(config),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_grafana_is_provisioned_from_ops() -> None:
    grafana = compose_services()["grafana"]
    mounts = _compose_mounts(grafana)
    assert mounts["/etc/grafana/provisioning"] == ROOT / "./ops/grafana/provisioning"
    providers = yaml.safe_load((ROOT / "ops/grafana/provisioning/dashboards/icetide.yml").read_text())
    assert mounts[providers["providers"][0]["options"]["path"]] == ROOT / "./ops/grafana/dashboards"
    datasource = yaml.safe_load((ROOT / "ops/grafana/provisioning/datasources/prometheus.yml").read_text())
    assert urlparse(datasource["datasources"][0]["url"]).hostname in compose_services()


# -- Dockerfile ---------------------------------------------------------------------------------------------------
def _dockerfile_env() -> dict[str, str]:
    """ENV of the `base` stage (KEY=VALUE pairs, continuation lines joined)."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    base = text.split(" AS base\n", 1)[1].split("\nFROM ", 1)[0]
    env: dict[str, str] = {}
    for line in base.splitlines():
        if line.startswith("ENV "):
            for pair in shlex.split(line[4:]):
                key, _, value = pair.partition("=")
                env[key] = value
    return env


def test_dockerfile_matches_the_code() -> None:
    text = DOCKERFILE.read_text()
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim-bookworm$", text, re.M)
    assert "openjdk-17-jre-headless" in text
    assert "pip install -c requirements.lock ." in text
    groups = re.search(r"for group in ([a-z ]+); do", text)
    assert groups and tuple(groups.group(1).split()) == jvm.JAR_GROUPS
    assert "-DoutputDirectory=\"/opt/icetide/jars/$group\"" in text
    assert "dependency:copy-dependencies -DincludeScope=runtime" in (ROOT / "Makefile").read_text()  # = make setup
    assert "dependency:copy-dependencies -DincludeScope=runtime" in text
    env = _dockerfile_env()
    assert env["ICETIDE_JAR_CACHE"] == "/opt/icetide/jars"
    assert_settings_keys(env, "Dockerfile")
    last = text.rsplit("\nFROM ", 1)[1]
    assert last.startswith("base AS icetide") and 'ENTRYPOINT ["icetide"]' in last
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users == ["10001:10001"]  # set once in `base`, inherited by both targets


def test_dockerfile_flink_matches_the_pinned_wheel() -> None:
    pins = dict(d.split("==") for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    flink = re.search(r"^ARG FLINK_IMAGE=flink:(\S+)-java17$", DOCKERFILE.read_text(), re.M)
    assert flink and flink.group(1) == pins["apache-flink"]


def test_kafka_everywhere_is_the_tested_broker_version() -> None:
    pom = (ROOT / "jars" / "kafka" / "pom.xml").read_text()
    version = re.search(r"<artifactId>kafka_2\.13</artifactId><version>([^<]+)</version>", pom)
    assert version
    assert compose_services()["kafka"]["image"] == f"apache/kafka:{version.group(1)}"
    strimzi = [d for d in yaml.safe_load_all((ROOT / "k8s/kafka/kafka.yaml").read_text()) if d["kind"] == "Kafka"]
    assert str(strimzi[0]["spec"]["kafka"]["version"]) == version.group(1)


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_dockerfile_copies_files_that_exist_and_are_not_ignored() -> None:
    ignored = _dockerignore()
    for line in DOCKERFILE.read_text().splitlines():
        if not line.startswith("COPY ") or "--from=" in line:
            continue
        *sources, _dest = shlex.split(line)[1:]
        for source in sources:
            assert (ROOT / source).exists(), f"Dockerfile copies missing {source}"
            assert not any(Path(source).match(p) or source.split("/")[0] == p for p in ignored), source
    for required in ("README.md", "pyproject.toml", "requirements.lock"):  # pip install . reads them
        assert re.search(rf"^COPY .*{re.escape(required)}", DOCKERFILE.read_text(), re.M), required
    assert {".git", ".venv", ".cache", ".state", "deploy/secrets"} <= set(ignored)


def test_pythondriver_module_is_the_cli() -> None:
    """The FlinkDeployment runs `-pym icetide.cli`: the module must work as __main__."""
    proc = subprocess.run([sys.executable, "-m", "icetide.cli", "cdc", "run", "--help"], capture_output=True,
                          text=True, cwd=ROOT)
    assert proc.returncode == 0 and "--metrics-port" in proc.stdout, proc.stderr


def test_click_walk_rejects_unknown_options() -> None:
    """The resolver used above is strict (a typo in a deployment file fails here, not in production)."""
    with pytest.raises(click.NoSuchOption):
        resolve_command(["cdc", "apply", "--metric-port", "1"], {})
    with pytest.raises(click.UsageError):
        resolve_command(["cdc", "aply"], {})
    assert isinstance(root, click.Group)


def test_dockerfile_passes_hadolint() -> None:
    hadolint = tool("hadolint")
    proc = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
