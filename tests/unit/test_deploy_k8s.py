"""k8s/ stays true to the code: commands, settings, secrets and S3 roles, Kafka users and topics, the REST
catalog's and Flink's S3 configuration, scrape ports and alert rules.

No cluster here: the manifests are checked statically, built with kustomize (which needs no cluster), and the
built-in kinds' field names are checked against the Kubernetes Python client's models.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import yaml
from pydantic import SecretStr

from batch.maint_policy import load_policy
from connectors.consumer import ConsumeOptions, select_topics
from icetide import kafka_client
from icetide.events import topic_for
from icetide.services.provision import CREDENTIALS_KEY, SECRET_PREFIX
from icetide.settings import StorageCredentials, load_settings
from icetide.storage import S3Key, key_file, roles, write_credentials_file
from streaming.checkpoints import checkpoint_root, flink_s3_config
from tests.unit.deploy_files import (
    DOCKERFILE,
    K8S,
    KAFKA_USERS,
    OPS_RULES,
    PROMETHEUS_RULE,
    ROLE_OF_COMMAND,
    ROOT,
    assert_rest_properties_match,
    assert_settings_keys,
    config_mounts,
    k8s_docs,
    kustomization,
    of_kind,
    pod_specs,
    read_properties,
    render_kafka_users,
    render_prometheus_rule,
    resolve_command,
    tool,
)

pytestmark = pytest.mark.unit
NOT_RESOURCES = {"kustomization.yaml", "kustomizeconfig.yaml", "secret.template.yaml"}
PLACEHOLDER = "placeholder-password"
STRIMZI_CA = "icetide-cluster-ca-cert"  # Strimzi's Secret of the cluster CA of Kafka `icetide`


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


def _template() -> dict[str, dict[str, Any]]:
    """The Secrets of secret.template.yaml by name."""
    return {d["metadata"]["name"]: d for d in yaml.safe_load_all((K8S / "secret.template.yaml").read_text()) if d}


def _secret_volumes(spec: dict[str, Any]) -> dict[str, list[str]]:
    """Volume name → the Secrets it projects."""
    found: dict[str, list[str]] = {}
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            found[volume["name"]] = [volume["secret"]["secretName"]]
        elif "projected" in volume:
            found[volume["name"]] = [s["secret"]["name"] for s in volume["projected"]["sources"] if "secret" in s]
    return found


def _mounted_secrets(spec: dict[str, Any], container: dict[str, Any]) -> dict[str, list[str]]:
    """Mount path → the Secrets behind it, for `container`."""
    volumes = _secret_volumes(spec)
    return {m["mountPath"]: volumes[m["name"]] for m in container.get("volumeMounts", []) if m["name"] in volumes}


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
    rest = by_kind[("ConfigMap", "icetide-rest-catalog")]["data"]
    assert rest["catalog.properties"] == (K8S / "config" / "rest-catalog.properties").read_text()
    images = {c["image"] for d in built for spec in pod_specs(d) for c in spec["containers"] if "image" in c}
    assert images == {"icetide:0.1.0", "icetide-rest:0.1.0", "chrislusf/seaweedfs:4.53"}  # pinned, no :latest
    for doc in built:  # every pod carries part-of: the store's and the catalog's NetworkPolicies admit only those
        for spec_holder in _templates(doc):
            assert spec_holder["metadata"]["labels"]["app.kubernetes.io/part-of"] == "icetide", doc["metadata"]


def _templates(node: Any) -> list[dict[str, Any]]:
    """Every pod template (a mapping with metadata and a spec holding containers) in a manifest."""
    if isinstance(node, dict):
        if isinstance(node.get("spec"), dict) and "containers" in node["spec"] and "metadata" in node:
            return [node]
        return [t for v in node.values() for t in _templates(v)]
    if isinstance(node, list):
        return [t for v in node for t in _templates(v)]
    return []


# -- commands and settings ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("index", range(len(_commands())), ids=[c[0] for c in _commands()])
def test_command_resolves_and_settings_load(index: int) -> None:
    name, spec, container, argv = _commands()[index]
    path, _ctx = resolve_command(argv, config_mounts(spec, container))
    settings = _settings(container, spec)
    [kafka] = of_kind("Kafka")
    [listener] = kafka["spec"]["kafka"]["listeners"]
    assert listener["tls"] and listener["authentication"]["type"] == "scram-sha-512"
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"  # deny by default
    assert settings.kafka.bootstrap_servers == f"{kafka['metadata']['name']}-kafka-bootstrap:{listener['port']}"
    assert settings.kafka.security == "sasl_ssl"
    services = {s["metadata"]["name"]: s for s in of_kind("Service")}
    for url in (settings.catalog_uri, settings.storage.endpoint or ""):  # the REST catalog and the store
        parsed = urlparse(url)
        assert parsed.hostname in services, url
        assert parsed.port in [p["port"] for p in services[parsed.hostname]["spec"]["ports"]], url
    assert settings.catalog.type == "rest" and settings.storage.kind == "s3" and settings.storage.sse == "s3"
    assert settings.warehouse == f"s3://{settings.storage.bucket}/warehouse"
    assert checkpoint_root(settings).startswith(f"s3://{settings.storage.bucket}/{settings.storage.checkpoint_prefix}/")
    assert settings.metrics.host == "0.0.0.0"
    assert not any("persistentVolumeClaim" in v for v in spec.get("volumes", [])), f"{name} mounts a shared volume"
    assert tuple(path) in ROLE_OF_COMMAND, path


def test_the_workloads_are_the_ones_the_code_supports() -> None:
    paths = sorted(tuple(resolve_command(argv, config_mounts(s, c))[0]) for _, s, c, argv in _commands())
    assert paths == [("cdc", "apply"), ("cdc", "run"), ("maint", "exporter"), ("maint", "run"), ("stack", "provision")]
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


# -- secrets and S3 roles -------------------------------------------------------------------------------------------
def test_secrets_come_from_the_template_the_init_job_and_strimzi_only() -> None:
    template = _template()
    assert set(template) == {"icetide-secrets", "icetide-s3-admin", "icetide-s3-kek"}
    assert all(v == "" for t in template.values() for v in t["stringData"].values()), "the template holds values"
    made_by_job = {f"{SECRET_PREFIX}{r}" for r in roles()}
    made_by_strimzi = {u["metadata"]["name"] for u in of_kind("KafkaUser")} | {STRIMZI_CA}
    for doc, spec, container in _workloads():
        for entry in container.get("env", []):
            if "valueFrom" in entry:
                ref = entry["valueFrom"]["secretKeyRef"]
                assert ref["name"] in template and ref["key"] in template[ref["name"]]["stringData"], entry
            else:
                assert not re.search(r"PASSWORD|SECRET|KEK|TOKEN", entry["name"]) or entry["name"].endswith("_ENV"), (
                    f"{doc['metadata']['name']}: {entry['name']} is a value")
        for source in container.get("envFrom", []):
            assert source["secretRef"]["name"] in template, source
        for secrets in _secret_volumes(spec).values():
            assert set(secrets) <= made_by_job | made_by_strimzi, secrets
    config = yaml.safe_load((K8S / "config" / "icetide.yaml").read_text())
    assert "password" not in config["catalog"] and "passwords" not in config["kafka"]
    assert urlparse(config["sink"]["postgres_dsn"]).password is None
    assert "credentials" not in config["storage"] and "identities" not in config["storage"]  # each pod names its own


def _holders(secret: str) -> set[str]:
    """The workloads (manifest names) whose pods can read `secret`, by env, envFrom or volume."""
    found = set()
    for doc, spec, container in _workloads():
        refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in container.get("env", []) if "valueFrom" in e}
        refs |= {s["secretRef"]["name"] for s in container.get("envFrom", [])}
        refs |= {n for names in _mounted_secrets(spec, container).values() for n in names}
        if secret in refs:
            found.add(doc["metadata"]["name"])
    return found


def test_the_store_admin_key_and_kek_stay_with_the_store() -> None:
    assert _holders("icetide-s3-admin") == {"icetide-seaweedfs", "icetide-s3-init"}
    assert _holders("icetide-s3-kek") == {"icetide-seaweedfs"}
    [store] = [d for d in of_kind("StatefulSet") if d["metadata"]["name"] == "icetide-seaweedfs"]
    [container] = store["spec"]["template"]["spec"]["containers"]
    assert "-master.telemetry=false" in container["args"] and "-s3.iam.readOnly=false" in container["args"]
    [service] = [s for s in of_kind("Service") if s["metadata"]["name"] == "icetide-seaweedfs"]
    assert [p["port"] for p in service["spec"]["ports"]] == [8333]  # the filer's gRPC port is not a Service port
    policies = {p["metadata"]["name"]: p for p in of_kind("NetworkPolicy")}
    for name, port in (("icetide-seaweedfs", 8333), ("icetide-rest-catalog", 8181)):
        [rule] = policies[name]["spec"]["ingress"]
        assert rule["ports"] == [{"port": port, "protocol": "TCP"}], name


@pytest.mark.parametrize("index", range(len(_commands())), ids=[c[0] for c in _commands()])
def test_each_workload_holds_its_own_roles_key_only(index: int) -> None:
    name, spec, container, argv = _commands()[index]
    path, _ = resolve_command(argv, config_mounts(spec, container))
    role = ROLE_OF_COMMAND[tuple(path)]
    settings = _settings(container, spec)
    mounted = {p: names for p, names in _mounted_secrets(spec, container).items()
               if any(n.startswith(SECRET_PREFIX) for n in names)}
    if tuple(path) == ("stack", "provision"):  # the init job: the roles' current keys, read-only, to keep them
        [(_, names)] = mounted.items()
        assert set(names) == {f"{SECRET_PREFIX}{r}" for r in roles()}
        assert set(settings.storage.identities) == {"admin"}
        return
    assert set(settings.storage.identities) == ({role} if role else set()), name
    assert [n for names in mounted.values() for n in names] == ([f"{SECRET_PREFIX}{role}"] if role else []), name
    if role:
        [(target, _)] = mounted.items()
        assert key_file(settings, role) == Path(f"{target}/{CREDENTIALS_KEY}").resolve()
        assert all(key_file(settings, other) is None for other in roles() if other != role)


def test_rest_catalog_is_the_embedded_servers_configuration(tmp_path: Path) -> None:
    [deployment] = [d for d in of_kind("Deployment") if d["metadata"]["name"] == "icetide-rest-catalog"]
    spec = deployment["spec"]["template"]["spec"]
    [container] = spec["containers"]
    assert container["image"] == "icetide-rest"
    [(target, secrets)] = _mounted_secrets(spec, container).items()
    assert secrets == [f"{SECRET_PREFIX}catalog"]
    env = {e["name"]: e for e in container["env"]}
    assert env["AWS_SHARED_CREDENTIALS_FILE"]["value"] == f"{target}/{CREDENTIALS_KEY}"
    [config] = [v for v in spec["volumes"] if "configMap" in v]
    [generated] = [g for g in kustomization()["configMapGenerator"] if g["name"] == config["configMap"]["name"]]
    key, _, source = generated["files"][0].partition("=")
    [mount] = [m for m in container["volumeMounts"] if m["name"] == config["name"]]
    assert container["args"] == [f"{mount['mountPath']}/{key}"]
    props = read_properties(K8S / source)
    assert "secretKeyRef" in env[props["jdbc.password-env"]]["valueFrom"]
    _, pod, icetide, _ = _commands()[0]
    assert_rest_properties_match(props, _settings(icetide, pod), tmp_path)
    assert int(props["rest.port"]) == container["ports"][0]["containerPort"]


def test_flink_checkpoints_go_to_s3_as_the_cdc_role(tmp_path: Path) -> None:
    """The cluster's S3 file system is configured as the job's own (`flink_s3_config`), but its key comes from the
    cdc role's file through the AWS SDK's profile provider instead of two values in the configuration."""
    spec = _flink()["spec"]
    pod = spec["podTemplate"]["spec"]
    [container] = pod["containers"]
    settings = _settings(container, pod)
    key = tmp_path / "cdc-key"
    write_credentials_file(key, S3Key("probe-id", SecretStr("probe-secret")))
    keyed = settings.model_copy(deep=True)
    keyed.storage.identities = {"cdc": StorageCredentials(file=key)}
    expected = flink_s3_config(keyed)  # the job's: its key by reference to the file (icetide's provider)
    for credential in [k for k in expected if k.startswith(("s3.icetide.credentials.", "s3.access-key", "s3.secret"))]:
        assert expected.pop(credential) and credential not in spec["flinkConfiguration"]
    expected["s3.aws.credentials.provider"] = "com.amazonaws.auth.profile.ProfileCredentialsProvider"
    assert {k: v for k, v in spec["flinkConfiguration"].items() if k.startswith("s3.")} == expected
    env = _env(container)
    assert Path(env["AWS_CREDENTIAL_PROFILES_FILE"]).resolve() == key_file(settings, "cdc")
    plugin = re.search(r"/opt/flink/opt/flink-s3-fs-hadoop-(\S+)\.jar /opt/flink/plugins/s3-fs-hadoop/",
                       DOCKERFILE.read_text())
    pins = dict(d.split("==") for d in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    assert plugin and plugin.group(1) == pins["apache-flink"]  # the distribution's own plugin


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


def test_kafka_users_are_the_codes_acls() -> None:
    assert KAFKA_USERS.read_text() == render_kafka_users(), (
        "k8s/kafka/users.yaml is stale: run .venv/bin/python tests/unit/deploy_files.py")
    assert all(u["metadata"]["labels"]["strimzi.io/cluster"] == "icetide" for u in of_kind("KafkaUser"))


# the Kafka principal each workload logs in as (icetide/kafka_client.py: the job's producer is `cdc`, the
# consumer `apply`); the others speak no Kafka
KAFKA_ROLE = {("cdc", "run"): "cdc", ("cdc", "apply"): "apply"}


@pytest.mark.parametrize("index", range(len(_commands())), ids=[c[0] for c in _commands()])
def test_each_kafka_client_logs_in_as_its_user_over_tls(index: int) -> None:
    name, spec, container, argv = _commands()[index]
    path, _ = resolve_command(argv, config_mounts(spec, container))
    settings = _settings(container, spec)
    mounted = _mounted_secrets(spec, container)
    users = {u["metadata"]["name"] for u in of_kind("KafkaUser")}
    role = KAFKA_ROLE.get(tuple(path))
    logins = {n for names in mounted.values() for n in names if n in users}
    assert logins == ({kafka_client.username(settings, role)} if role else set()), name
    if role:
        user = kafka_client.username(settings, role)
        [folder] = [p for p, names in mounted.items() if user in names]
        # (the code resolves paths: /var/run is /run on Debian, here and in the image)
        assert kafka_client.password_file(settings, role) == (Path(folder) / f"{user}.password").resolve()
        volume = next(v for v in spec["volumes"] if v.get("secret", {}).get("secretName") == user)
        assert volume["secret"]["items"] == [{"key": "password", "path": f"{user}.password"}]
        [ca_folder] = [p for p, names in mounted.items() if names == [STRIMZI_CA]]
        assert kafka_client.ca_file(settings) == (Path(ca_folder) / "ca.crt").resolve()


# -- metrics --------------------------------------------------------------------------------------------------------
def _ports(container: dict[str, Any]) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for p in container.get("ports", [])}


def _icetide_deployments() -> list[dict[str, Any]]:
    """The Deployments running the icetide CLI (the REST catalog server has no /metrics)."""
    return [d for d in of_kind("Deployment") if d["spec"]["template"]["spec"]["containers"][0]["image"] == "icetide"]


def test_deployments_serve_metrics_where_they_are_probed() -> None:
    for deployment in _icetide_deployments():
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
    for deployment in _icetide_deployments():
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


def test_apply_has_a_disruption_budget_and_nothing_shares_a_volume() -> None:
    [budget] = of_kind("PodDisruptionBudget")
    [apply] = [d for d in of_kind("Deployment") if d["metadata"]["name"] == "icetide-cdc-apply"]
    assert budget["spec"]["selector"] == apply["spec"]["selector"]
    assert not of_kind("PersistentVolumeClaim")  # tables on S3: no ReadWriteMany volume any more
    for _, spec, _ in _workloads():
        assert not any("persistentVolumeClaim" in v for v in spec.get("volumes", []))


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
             "ServiceAccount": "V1ServiceAccount", "Role": "V1Role", "RoleBinding": "V1RoleBinding",
             "StatefulSet": "V1StatefulSet", "Service": "V1Service", "Job": "V1Job",
             "NetworkPolicy": "V1NetworkPolicy"}
    errors: list[str] = []
    for _, doc in k8s_docs():
        if doc["kind"] in kinds:
            errors += _unknown_fields(doc, kinds[doc["kind"]], f"{doc['kind']}/{doc['metadata']['name']}", models)
    spec = _flink()["spec"]
    for where, template in (("podTemplate", spec["podTemplate"]), ("taskManager", spec["taskManager"]["podTemplate"])):
        errors += _unknown_fields(template, "V1PodTemplateSpec", f"FlinkDeployment.{where}", models)
    for name, secret in _template().items():
        errors += _unknown_fields(secret, "V1Secret", f"Secret/{name}", models)
    assert not errors, "\n".join(errors)
