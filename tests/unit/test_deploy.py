"""Dockerfile, docker-compose.yml and k8s/ stay true to the code (nothing here can be run: no engine, no cluster).

Each check reads the deployment files and asks the code: command lines resolve to real click commands and
options, ICETIDE__ variables name real settings, files they mount exist, the scraped ports are the ports the
commands serve, each service holds its own S3 role's key and no other, the REST catalog server's properties
are what the embedded stack gives the same server. The readers shared with the k8s tests (test_deploy_k8s.py)
are in deploy_files.py.
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
from icetide.storage import key_file, roles
from streaming.checkpoints import checkpoint_root
from tests.unit.deploy_files import (
    COMPOSE,
    DOCKERFILE,
    ROLE_OF_COMMAND,
    ROOT,
    assert_no_secret_literals,
    assert_rest_properties_match,
    assert_settings_keys,
    compose_services,
    env_file_values,
    read_properties,
    resolve_command,
    tool,
)

pytestmark = pytest.mark.unit
METRICS_COMMANDS = {("cdc", "run"): "metrics_port", ("cdc", "apply"): "metrics_port", ("maint", "exporter"): "port",
                    ("stack", "lag-exporter"): "port"}
IDENTITIES_VOLUME = "s3-identities"  # <role>/credentials, written by s3-init
AUDIT_VOLUME = "audit-log"  # <state_dir>/audit: the policy audit log, written by `policy`, read by lag-exporter


def _icetide_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose_services().items() if str(s.get("image", "")).startswith("icetide:")}


def _volumes(service: dict[str, Any]) -> list[dict[str, Any]]:
    """The service's volumes in the long syntax (`./src:/dst[:ro]` → type bind, `name:/dst` → type volume)."""
    found = []
    for volume in service.get("volumes", []):
        if isinstance(volume, dict):
            found.append(volume)
            continue
        source, target, *mode = volume.split(":")
        found.append({"type": "bind" if source.startswith("./") else "volume", "source": source, "target": target,
                      "read_only": mode == ["ro"]})
    return found


def _compose_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """Container path → repo path for the service's bind mounts."""
    return {v["target"]: ROOT / v["source"] for v in _volumes(service) if v["type"] == "bind"}


def _role_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path → role, for the s3-identities subpaths the service mounts."""
    return {v["target"]: v.get("volume", {}).get("subpath", "*") for v in _volumes(service)
            if v["type"] == "volume" and v["source"] == IDENTITIES_VOLUME}


def _read_only(service: dict[str, Any], target: str) -> bool:
    return any(v["target"] == target and v.get("read_only") for v in _volumes(service))


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
    assert {"kafka", "postgres", "seaweedfs", "s3-init", "iceberg-rest", "cdc-run", "cdc-apply", "maint-exporter",
            "prometheus", "grafana"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, one node
    one_shot = {n for n, s in services.items() if s.get("restart") == "no"}
    for name, service in services.items():
        if "profiles" not in service and name not in one_shot:
            assert "healthcheck" in service, f"{name} has no healthcheck"
        for dep, condition in service.get("depends_on", {}).items():
            assert dep in services, (name, dep)
            if dep in one_shot:  # an init job: waited for until it has succeeded
                assert condition["condition"] == "service_completed_successfully", (name, dep)
            else:
                assert condition["condition"] == "service_healthy", (name, dep)
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
    assert sorted(commands.values()) == [("cdc", "apply"), ("cdc", "run"), ("maint", "exporter"),
                                         ("stack", "lag-exporter"), ("stack", "provision")]
    apply = _icetide_services()["cdc-apply"]["command"]
    assert apply[apply.index("--sink") + 1] == "postgres"
    assert "--once" not in _icetide_services()["cdc-run"]["command"]  # continuous


def _service_settings(name: str) -> Any:
    service = _icetide_services()[name]
    env = _compose_env(service)
    assert_settings_keys(env, f"docker-compose.yml:{name}")
    config = _compose_mounts(service)[env["ICETIDE_CONFIG"]]
    return load_settings(config, {**env, **_dockerfile_env()})


@pytest.mark.parametrize("name", sorted(_icetide_services()))
def test_compose_settings_load_on_s3_and_rest(name: str) -> None:
    settings = _service_settings(name)
    services = compose_services()
    assert settings.kafka.bootstrap_servers == "kafka:9092"
    assert settings.catalog.type == "rest" and settings.storage.kind == "s3"
    rest, endpoint = urlparse(settings.catalog_uri), urlparse(settings.storage.endpoint)
    assert rest.hostname == "iceberg-rest" and f"http://127.0.0.1:{rest.port}/v1/config" in " ".join(
        services["iceberg-rest"]["healthcheck"]["test"])
    assert endpoint.hostname == "seaweedfs" and f"-s3.port={endpoint.port}" in services["seaweedfs"]["command"]
    assert settings.warehouse == f"s3://{settings.storage.bucket}/warehouse"
    assert settings.storage.sse == "s3"  # every writer sends SSE-S3
    assert checkpoint_root(settings).startswith(f"s3://{settings.storage.bucket}/"
                                                f"{settings.storage.checkpoint_prefix}/")  # the CDC job's, on S3
    assert str(settings.state_dir) == "/var/lib/icetide"
    assert settings.sink.kind == "postgres" and settings.metrics.host == "0.0.0.0"
    assert all(v["type"] == "bind" or v["source"] in (IDENTITIES_VOLUME, "maint-log", AUDIT_VOLUME)
               for v in _volumes(_icetide_services()[name])), f"{name} mounts a shared data volume"


def test_compose_audit_log_is_one_volume_shared_by_its_writer_and_the_exporter() -> None:
    """The security dashboard's metrics come from the lag-exporter reading the audit log that the policy
    commands append to: in compose they are different containers, so the log's folder (`log_path` under each
    service's own state dir) is the audit-log volume in both — writable where the commands run, read-only in
    the exporter — and the image creates that folder owned by icetide (a fresh named volume takes its owner)."""
    from icetide.audit import log_path

    services = _icetide_services()
    mounted = {name: found for name, service in services.items()
               if (found := [v for v in _volumes(service) if v["source"] == AUDIT_VOLUME])}
    assert set(mounted) == {"policy", "lag-exporter"}
    for name, [volume] in mounted.items():
        settings = _service_settings(name)
        assert volume["type"] == "volume" and volume["target"] == str(log_path(settings.state_dir).parent), name
    assert _read_only(services["lag-exporter"], "/var/lib/icetide/audit")
    assert not _read_only(services["policy"], "/var/lib/icetide/audit")
    path, _ = resolve_command(services["lag-exporter"]["command"], _compose_mounts(services["lag-exporter"]))
    assert path == ["stack", "lag-exporter"]  # the process that registers AuditMetrics(log_path(state_dir))
    assert services["policy"]["profiles"] == ["policy"] and services["policy"]["restart"] == "no"
    assert AUDIT_VOLUME in yaml.safe_load(COMPOSE.read_text())["volumes"]
    created = [d for m in re.findall(r"mkdir -p ([^\\&\n]+)", DOCKERFILE.read_text()) for d in m.split()]
    assert "/var/lib/icetide/audit" in created and "chown -R icetide:icetide /var/lib/icetide" in DOCKERFILE.read_text()


@pytest.mark.parametrize("name", sorted(n for n, s in compose_services().items() if n != "s3-init"
                                        and (n in _icetide_services() or n == "iceberg-rest")))
def test_compose_each_service_holds_its_own_roles_key_only(name: str) -> None:
    """The key a service can read is the one of the role its command acts as, mounted from the identities volume
    at the file its settings name; no other role's key, and no shared fallback key, is reachable."""
    service = compose_services()[name]
    mounts = _role_mounts(service)
    if name == "iceberg-rest":  # the reference server: the AWS SDK's default chain reads the file
        assert list(mounts.values()) == ["catalog"]
        [target] = mounts
        assert service["environment"]["AWS_SHARED_CREDENTIALS_FILE"] == f"{target}/credentials"
        return
    path, _ = resolve_command(service["command"], _compose_mounts(service))
    role = ROLE_OF_COMMAND[tuple(path)]
    settings = _service_settings(name)
    assert set(settings.storage.identities) == ({role} if role else set()), name
    assert not (settings.storage.credentials.file or settings.storage.credentials.access_key_env), name
    assert list(mounts.values()) == ([role] if role else []), name
    if role:
        [target] = mounts
        assert _read_only(service, target), f"{name}: the key is mounted writable"
        assert key_file(settings, role) == Path(f"{target}/credentials").resolve()
        assert all(key_file(settings, other) is None for other in roles() if other != role)


def test_compose_init_service_provisions_with_the_admin_key() -> None:
    services = compose_services()
    init = services["s3-init"]
    env = _compose_env(init)
    settings = load_settings(_compose_mounts(init)[env["ICETIDE_CONFIG"]], {**env, **_dockerfile_env()})
    admin = settings.storage.identities["admin"]
    assert (admin.access_key_env, admin.secret_key_env) == ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    assert set(env_file_values(ROOT / "deploy/secrets/s3-admin.env.example")) == {"AWS_ACCESS_KEY_ID",
                                                                                  "AWS_SECRET_ACCESS_KEY"}
    out = init["command"][init["command"].index("--out") + 1]
    assert _role_mounts(init) == {out: "*"}  # the whole volume, writable: it writes <role>/credentials
    # the store takes the same admin key from its environment, and the KEK; no other service sees either
    store = services["seaweedfs"]
    assert store["env_file"] == ["deploy/secrets/s3-admin.env", "deploy/secrets/s3-kek.env"]
    assert set(env_file_values(ROOT / "deploy/secrets/s3-kek.env.example")) == {"WEED_S3_SSE_KEK"}
    for name, service in services.items():
        if name not in ("seaweedfs", "s3-init"):
            assert not {"deploy/secrets/s3-admin.env", "deploy/secrets/s3-kek.env"} & set(service.get("env_file", []))
    assert "-master.telemetry=false" in store["command"] and "-s3.iam.readOnly=false" in store["command"]
    assert "ports" not in store  # nothing published: the filer's gRPC port is unauthenticated


def test_compose_rest_catalog_is_the_embedded_servers_configuration(tmp_path: Path) -> None:
    service = compose_services()["iceberg-rest"]
    mounts = _compose_mounts(service)
    props = read_properties(mounts["/etc/iceberg-rest/catalog.properties"])
    settings = _service_settings("cdc-run")
    env = _compose_env(service)
    assert props["jdbc.password-env"] in env  # from deploy/secrets/postgres.env
    assert urlparse(props["uri"].removeprefix("jdbc:")).hostname in compose_services()
    assert_rest_properties_match(props, settings, tmp_path)
    build = service["build"]
    assert re.search(rf"^FROM \S+ AS {build['target']}$", DOCKERFILE.read_text(), re.M)


def test_compose_keeps_secrets_out_of_the_file() -> None:
    for name, service in compose_services().items():
        for key, value in service.get("environment", {}).items():
            if key.endswith(("_ENV", "_FILE")):  # the NAME of a variable or the path of a file holding a secret
                assert re.fullmatch(r"[A-Z_][A-Z0-9_]*|/[\w./-]+", str(value)), f"{name}: {key}={value!r}"
                continue
            assert not re.search(r"PASSWORD|SECRET|TOKEN|KEK", key), f"{name}: {key} is inline; use an env file"
            if "://" in str(value):
                assert urlparse(str(value).removeprefix("jdbc:")).password is None, f"{name}: {key} has a password"
        for env_file in service.get("env_file", []):
            example = ROOT / f"{env_file}.example"
            assert example.is_file(), f"{name}: {env_file} has no template {example.name}"
            ignored = subprocess.run(["git", "check-ignore", "-q", env_file], cwd=ROOT).returncode == 0
            assert ignored, f"{env_file} is not git-ignored"


def test_no_secret_literal_in_any_deployment_file() -> None:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "Dockerfile",
                             "docker-compose.yml", "deploy", "k8s"],
                            cwd=ROOT, capture_output=True, text=True, check=True)
    files = [ROOT / f for f in listed.stdout.split()]
    assert COMPOSE in files and len(files) > 20
    assert_no_secret_literals(files)


def test_images_are_pinned() -> None:
    for name, service in compose_services().items():
        image = service["image"]
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image) and not image.endswith(":latest"), f"{name}: {image}"
    for arg in re.findall(r"^ARG \w+_IMAGE=(\S+)$", DOCKERFILE.read_text(), re.M):
        assert ":" in arg and not arg.endswith(":latest"), arg


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


def _seaweedfs_commands() -> dict[str, list[str]]:
    """The `weed` argument lists of compose's seaweedfs service and k8s's StatefulSet."""
    [store] = [d for d in yaml.safe_load_all((ROOT / "k8s/lake/seaweedfs.yaml").read_text())
               if d["kind"] == "StatefulSet"]
    return {"docker-compose.yml": compose_services()["seaweedfs"]["command"],
            "k8s/lake/seaweedfs.yaml": store["spec"]["template"]["spec"]["containers"][0]["args"]}


def test_deployed_seaweedfs_is_the_embedded_stacks_version_and_takes_its_flags() -> None:
    """The image tag is the version `make setup` builds (scripts/build-weed.sh), and every flag the
    deployments pass is one that binary's `weed server` knows (read from its help; nothing is started)."""
    from icetide.services.object_store import weed_binary

    weed = weed_binary()
    if not weed.is_file():
        pytest.fail(f"{weed} is missing: run `make setup` (scripts/build-weed.sh builds it)")
    version = re.search(r" (\d+\.\d+) ", subprocess.run([str(weed), "version"], capture_output=True, text=True,
                                                       timeout=30).stdout)  # "version 30GB 4.53  linux amd64"
    assert version
    help_text = subprocess.run([str(weed), "server", "-h"], capture_output=True, text=True, timeout=30)
    known = set(re.findall(r"^\s+-([\w.]+)", help_text.stdout + help_text.stderr, re.M))
    images = {compose_services()["seaweedfs"]["image"]}
    images |= set(re.findall(r"image: (chrislusf/seaweedfs:\S+)", (ROOT / "k8s/lake/seaweedfs.yaml").read_text()))
    assert images == {f"chrislusf/seaweedfs:{version.group(1)}"}
    for where, args in _seaweedfs_commands().items():
        assert args[0] == "server", where  # the image's entrypoint adds -dir=/data
        flags = [a.lstrip("-").split("=")[0] for a in args[1:]]
        assert set(flags) <= known, (where, set(flags) - known)
        assert "-master.telemetry=false" in args and "-s3" in args, where
