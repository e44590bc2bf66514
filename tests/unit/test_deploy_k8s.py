"""k8s/ stays true to the code: commands, settings, secrets, topics, scrape ports and alert rules.

No cluster here: the manifests are checked statically, built with kustomize (which needs no cluster), and the
built-in kinds' field names are checked against the Kubernetes Python client's models.
"""

from __future__ import annotations

import importlib.util
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from batch.maint_policy import load_policy
from connectors.consumer import ConsumeOptions, select_topics
from icetide.catalog import sqlalchemy_uri
from icetide.events import topic_for
from icetide.settings import load_settings
from tests.unit.deploy_files import (
    K8S,
    OPS_RULES,
    PROMETHEUS_RULE,
    ROOT,
    assert_settings_keys,
    config_mounts,
    k8s_docs,
    kustomization,
    of_kind,
    pod_specs,
    render_prometheus_rule,
    resolve_command,
    tool,
)

pytestmark = pytest.mark.unit
NOT_RESOURCES = {"kustomization.yaml", "kustomizeconfig.yaml", "secret.template.yaml"}
PLACEHOLDER = "placeholder-password"


def _workloads() -> list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]]:
    """(manifest, pod spec, container) for every container of every manifest."""
    return [(doc, spec, c) for _, doc in k8s_docs() for spec in pod_specs(doc) for c in spec["containers"]]


def _env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment, secrets replaced by a placeholder."""
    return {e["name"]: e.get("value", PLACEHOLDER) for e in container.get("env", [])}


def _flink() -> dict[str, Any]:
    [flink] = of_kind("FlinkDeployment")
    return flink


def _flink_argv() -> list[str]:
    args = _flink()["spec"]["job"]["args"]
    assert args[:2] == ["-pym", "icetide.cli"], "PythonDriver must run the icetide CLI module"
    return list(args[2:])


def _commands() -> list[tuple[str, dict[str, Any], dict[str, Any], list[str]]]:
    """(name, pod spec, container, icetide argv) of every icetide process in k8s/."""
    found = [(doc["metadata"]["name"], spec, c, list(c["args"])) for doc, spec, c in _workloads()
             if c.get("image") == "icetide"]
    spec = _flink()["spec"]["podTemplate"]["spec"]
    found.append(("icetide-cdc", spec, spec["containers"][0], _flink_argv()))
    return found


def _settings(container: dict[str, Any], spec: dict[str, Any]) -> Any:
    env = _env(container)
    assert_settings_keys(env, container["name"])
    config = config_mounts(spec, container)[env["ICETIDE_CONFIG"]]
    return load_settings(config, env)


# -- files ----------------------------------------------------------------------------------------------------------
def test_every_manifest_parses_and_is_listed() -> None:
    listed = {K8S / r for r in kustomization()["resources"]}
    for path in sorted(K8S.rglob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert docs and all(isinstance(d, dict) for d in docs), path
        if path.parent.name == "config" or path.name in NOT_RESOURCES:
            continue
        assert path in listed, f"{path.relative_to(ROOT)} is not in k8s/kustomization.yaml"
        for doc in docs:
            assert {"apiVersion", "kind", "metadata"} <= set(doc) and doc["metadata"]["name"], path
    for generator in kustomization()["configMapGenerator"]:
        for entry in generator["files"]:
            assert (K8S / entry.partition("=")[2]).is_file(), entry


def test_kustomize_builds() -> None:
    proc = subprocess.run([tool("kustomize"), "build", str(K8S)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    built = [d for d in yaml.safe_load_all(proc.stdout) if d]
    by_kind = {(d["kind"], d["metadata"]["name"]): d for d in built}
    for doc in built:
        assert doc["kind"] == "Namespace" or doc["metadata"]["namespace"] == "icetide", doc["metadata"]
    assert by_kind[("FlinkDeployment", "icetide-cdc")]["spec"]["image"] == "icetide-flink:0.1.0"
    config = by_kind[("ConfigMap", "icetide-config")]["data"]
    assert config["icetide.yaml"] == (K8S / "config" / "icetide.yaml").read_text()
    images = {c["image"] for d in built for spec in pod_specs(d) for c in spec["containers"] if "image" in c}
    assert images == {"icetide:0.1.0"}


# -- commands and settings ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("index", range(len(_commands())), ids=[c[0] for c in _commands()])
def test_command_resolves_and_settings_load(index: int) -> None:
    name, spec, container, argv = _commands()[index]
    path, _ctx = resolve_command(argv, config_mounts(spec, container))
    settings = _settings(container, spec)
    [kafka] = of_kind("Kafka")
    [plain] = [li for li in kafka["spec"]["kafka"]["listeners"] if not li["tls"]]
    assert settings.kafka.bootstrap_servers == f"{kafka['metadata']['name']}-kafka-bootstrap:{plain['port']}"
    assert settings.catalog_uri.startswith("jdbc:postgresql://")
    assert parse_qs(urlparse(sqlalchemy_uri(settings.catalog_uri)).query)["user"] == [settings.catalog.user]
    state = {m["mountPath"] for m in container.get("volumeMounts", []) if m["name"] == "state"}
    if path[:2] != ["cdc", "apply"]:  # everything but the PostgreSQL sink reads the file:// warehouse
        assert state == {str(settings.state_dir)}, f"{name} does not mount the state volume"
        assert settings.warehouse.startswith(Path(settings.state_dir).as_uri())
    assert settings.metrics.host == "0.0.0.0"


def test_the_workloads_are_the_ones_the_code_supports() -> None:
    paths = sorted(tuple(resolve_command(argv, config_mounts(s, c))[0]) for _, s, c, argv in _commands())
    assert paths == [("cdc", "apply"), ("cdc", "run"), ("maint", "exporter"), ("maint", "run")]
    job = _flink()["spec"]["job"]
    assert job["entryClass"] == "org.apache.flink.client.python.PythonDriver"
    assert job["upgradeMode"] == "stateless"  # the job restores its own checkpoints (streaming/job.py)
    assert "--once" not in job["args"]


def test_flink_python_jar_is_the_pinned_version() -> None:
    pins = dict(d.split("==") for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    jar = _flink()["spec"]["job"]["jarURI"]
    assert jar == f"local:///opt/flink/opt/flink-python-{pins['apache-flink']}.jar"
    found = importlib.util.find_spec("pyflink")  # the wheel ships the same layout: opt/flink-python-<v>.jar
    assert found and found.origin and (Path(found.origin).parent / "opt" / Path(jar).name).is_file()
    assert _flink()["spec"]["flinkVersion"] == "v" + "_".join(pins["apache-flink"].split(".")[:2])


def test_maintenance_policy_is_valid() -> None:
    assert load_policy(K8S / "config" / "maintenance-policy.yaml").tables


# -- secrets --------------------------------------------------------------------------------------------------------
def test_secrets_come_from_the_secret_template_only() -> None:
    template = yaml.safe_load((K8S / "secret.template.yaml").read_text())
    assert all(v == "" for v in template["stringData"].values()), "the template must hold no real values"
    for _doc, _spec, container in _workloads():
        for entry in container.get("env", []):
            if "PASSWORD" in entry["name"]:
                ref = entry["valueFrom"]["secretKeyRef"]
                assert ref["name"] == template["metadata"]["name"] and ref["key"] in template["stringData"]
    config = yaml.safe_load((K8S / "config" / "icetide.yaml").read_text())
    assert "password" not in config["catalog"]
    assert urlparse(config["sink"]["postgres_dsn"]).password is None
    psycopg_users = [c for _, _, c, argv in _commands() if argv[:2] in (["cdc", "apply"], ["cdc", "run"])]
    assert all("PGPASSWORD" in _env(c) for c in psycopg_users)  # the sink and PyIceberg's catalog


# -- Kafka ----------------------------------------------------------------------------------------------------------
def test_kafka_is_kraft_and_declares_every_topic_the_code_uses() -> None:
    [kafka] = of_kind("Kafka")
    name = kafka["metadata"]["name"]
    assert kafka["metadata"]["annotations"]["strimzi.io/kraft"] == "enabled"
    pools = of_kind("KafkaNodePool")
    assert {"controller", "broker"} <= {r for p in pools for r in p["spec"]["roles"]}
    assert all(p["metadata"]["labels"]["strimzi.io/cluster"] == name for p in pools)
    topics = of_kind("KafkaTopic")
    assert all(t["metadata"]["labels"]["strimzi.io/cluster"] == name for t in topics)
    _, spec, container, _ = _commands()[0]
    settings = _settings(container, spec)
    data = {topic_for(settings.cdc.topic_prefix, *t.split(".", 1)) for t in settings.cdc.tables}
    declared = {t["spec"]["topicName"] for t in topics}
    schema_changes = f"{settings.cdc.topic_prefix}.schema-changes"  # the job's schema-change records
    transactions = f"{settings.cdc.topic_prefix}.transaction"  # its snapshot boundaries (one partition)
    assert declared == data | {settings.dead_letter_topic, schema_changes, transactions}
    assert [t["spec"]["partitions"] for t in topics if t["spec"]["topicName"] == transactions] == [1]
    # ... of which `cdc apply` consumes exactly the tables' topics (connectors/consumer.py decides)
    assert set(select_topics(sorted(declared), settings, ConsumeOptions())) == data


# -- metrics --------------------------------------------------------------------------------------------------------
def _ports(container: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container.get("ports", [])}


def test_deployments_serve_metrics_where_they_are_probed() -> None:
    for deployment in of_kind("Deployment"):
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        path, ctx = resolve_command(container["args"], {})
        port = ctx.params["port" if path == ["maint", "exporter"] else "metrics_port"]
        assert _ports(container)["metrics"] == port, deployment["metadata"]["name"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            assert container[probe]["httpGet"] == {"path": "/metrics", "port": "metrics"}, probe
        assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]


def test_flink_task_managers_expose_the_job_metrics_port() -> None:
    spec = _flink()["spec"]
    [container] = spec["taskManager"]["podTemplate"]["spec"]["containers"]
    _, ctx = resolve_command(_flink_argv(), config_mounts(spec["podTemplate"]["spec"],
                                                          spec["podTemplate"]["spec"]["containers"][0]))
    ports = _ports(container)
    assert ports["cdc-metrics"] == ctx.params["metrics_port"]
    assert ports["flink-metrics"] == int(spec["flinkConfiguration"]["metrics.reporter.prom.port"])
    assert spec["job"]["parallelism"] == 1  # else the worker also serves metrics_port + subtask index


def test_pod_monitors_select_real_pods_and_ports() -> None:
    pods: list[tuple[dict[str, str], dict[str, int]]] = []
    for deployment in of_kind("Deployment"):
        template = deployment["spec"]["template"]
        pods.append((template["metadata"]["labels"], _ports(template["spec"]["containers"][0])))
    task_managers = _flink()["spec"]["taskManager"]["podTemplate"]
    pods.append((task_managers["metadata"]["labels"], _ports(task_managers["spec"]["containers"][0])))
    monitored = set()
    for monitor in of_kind("PodMonitor"):
        wanted = monitor["spec"]["selector"]["matchLabels"]
        matches = [(labels, ports) for labels, ports in pods if wanted.items() <= labels.items()]
        assert len(matches) == 1, monitor["metadata"]["name"]
        labels, ports = matches[0]
        assert labels[monitor["spec"]["jobLabel"]].startswith("icetide")  # IcetideProcessDown: job=~"icetide.*"
        for endpoint in monitor["spec"]["podMetricsEndpoints"]:
            assert endpoint["port"] in ports, (monitor["metadata"]["name"], endpoint["port"])
        monitored.add(labels["app.kubernetes.io/name"])
    assert monitored == {labels["app.kubernetes.io/name"] for labels, _ in pods}


def test_prometheus_rule_is_the_ops_rules() -> None:
    [rule] = of_kind("PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load(OPS_RULES.read_text())["groups"]
    assert PROMETHEUS_RULE.read_text() == render_prometheus_rule(), (
        "k8s/monitoring/prometheusrule.yaml is stale: run .venv/bin/python tests/unit/deploy_files.py")


def test_apply_has_a_disruption_budget_and_volumes_exist() -> None:
    [budget] = of_kind("PodDisruptionBudget")
    [apply] = [d for d in of_kind("Deployment") if d["metadata"]["name"] == "icetide-cdc-apply"]
    assert budget["spec"]["selector"] == apply["spec"]["selector"]
    claims = {c["metadata"]["name"]: c for c in of_kind("PersistentVolumeClaim")}
    for _, spec, _ in _workloads():
        for volume in spec.get("volumes", []):
            if "persistentVolumeClaim" in volume:
                claim = claims[volume["persistentVolumeClaim"]["claimName"]]
                assert "ReadWriteMany" in claim["spec"]["accessModes"]  # pods on several nodes share it


def _unknown_fields(node: Any, type_name: str, where: str, models: Any) -> list[str]:
    """Keys of `node` that the Kubernetes API type `type_name` does not have, recursively."""
    type_name = type_name.replace("List[", "list[").replace("Dict[", "dict[")
    if node is None or type_name in {"str", "int", "bool", "float", "object", "datetime", "date"}:
        return []
    if type_name.startswith("list["):
        return [e for i, x in enumerate(node) for e in _unknown_fields(x, type_name[5:-1], f"{where}[{i}]", models)]
    if type_name.startswith("dict["):
        inner = type_name[type_name.index(",") + 1 : -1].strip()
        return [e for k, x in node.items() for e in _unknown_fields(x, inner, f"{where}.{k}", models)]
    cls = getattr(models, type_name)
    fields = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    errors = [f"{where}.{key}: not a field of {type_name}" for key in node if key not in fields]
    for key, value in node.items():
        if key in fields:
            errors += _unknown_fields(value, cls.openapi_types[fields[key]], f"{where}.{key}", models)
    return errors


def test_core_manifests_use_only_real_fields() -> None:
    """Field names of the built-in kinds (and the Flink pod templates) against the Kubernetes client's models."""
    models = importlib.import_module("kubernetes.client.models")  # the dev extra's kubernetes client
    kinds = {"Deployment": "V1Deployment", "CronJob": "V1CronJob", "PodDisruptionBudget": "V1PodDisruptionBudget",
             "PersistentVolumeClaim": "V1PersistentVolumeClaim", "Namespace": "V1Namespace",
             "ServiceAccount": "V1ServiceAccount", "Role": "V1Role", "RoleBinding": "V1RoleBinding"}
    errors: list[str] = []
    for _, doc in k8s_docs():
        if doc["kind"] in kinds:
            errors += _unknown_fields(doc, kinds[doc["kind"]], f"{doc['kind']}/{doc['metadata']['name']}", models)
    spec = _flink()["spec"]
    for where, template in (("podTemplate", spec["podTemplate"]), ("taskManager", spec["taskManager"]["podTemplate"])):
        errors += _unknown_fields(template, "V1PodTemplateSpec", f"FlinkDeployment.{where}", models)
    secret = yaml.safe_load((K8S / "secret.template.yaml").read_text())
    errors += _unknown_fields(secret, "V1Secret", "Secret", models)
    assert not errors, "\n".join(errors)
