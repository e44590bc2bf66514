"""Typed settings, read once in `main()` and passed down.

Sources, later ones win:
1. defaults below;
2. a YAML file (`--config FILE`, else `$ICETIDE_CONFIG`, else `./icetide.yaml` if present);
3. environment variables `ICETIDE__SECTION__KEY` (e.g. `ICETIDE__KAFKA__PORT=19092`).

Unknown keys are errors that name the key and the file. Secrets are `SecretStr`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from icetide.errors import ConfigError

ENV_PREFIX = "ICETIDE__"
# the S3 identities of the embedded store, one per role (docs/security.md); `admin` is the stack's own
Role = Literal["writer", "cdc", "maint", "bi", "catalog", "backup", "admin"]
DEFAULT_FILE = "icetide.yaml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class StackSettings(_Section):
    """Where embedded services keep their state (pid files, logs, data)."""

    state_dir: Path = Path(".state")


class KafkaSettings(_Section):
    """The Kafka cluster; by default the embedded KRaft cluster of `brokers` combined broker + controller
    nodes (one unless set)."""

    bootstrap_servers: str | None = None  # set → use that cluster, embedded broker not started
    # embedded nodes; ≥ 3 → every topic has replication 3 and min.insync.replicas 2 (icetide/broker_config.py)
    brokers: int = Field(default=1, ge=1)
    host: str = "127.0.0.1"
    port: int = 0  # the first node's client port (node k: port + k - 1); 0 → free ports chosen at `stack up`
    controller_port: int = 0  # likewise, the first node's controller port
    heap: str = "512m"
    num_partitions: int = 1  # default partitions of auto-created topics
    start_timeout_s: float = 90.0  # how long `stack up` waits for the broker to answer
    jvm_opts: list[str] = Field(default_factory=list)  # extra broker JVM options (after icetide's own)
    # plaintext: no auth (the local default). sasl_ssl: SCRAM-SHA-512 over TLS, ACLs per principal
    # (docs/security.md); the embedded broker makes its CA, certificate and passwords at `stack up`
    security: Literal["plaintext", "sasl_ssl"] = "plaintext"
    ca_file: Path | None = None  # sasl_ssl: the CA certificate (PEM); default <state_dir>/kafka/tls/ca.pem
    secrets_dir: Path | None = None  # sasl_ssl: <user>.password files; default <state_dir>/kafka/secrets
    users: dict[str, str] = Field(default_factory=dict)  # role → SCRAM user name (default: the role's name)
    passwords: dict[str, SecretStr] = Field(default_factory=dict)  # role → password (else the secret file)
    reauth_ms: int = 60000  # sasl_ssl: connections.max.reauth.ms (a deleted credential ends connections)


class CatalogSettings(_Section):
    """The Iceberg catalog shared by Spark, Flink and PyIceberg under one name.

    `type: jdbc` is an Iceberg JDBC catalog (by default one SQLite file); `type: rest` an Iceberg REST
    catalog at `uri` — without `uri`, `icetide stack up` starts Iceberg's reference REST server.
    """

    name: str = "lake"
    type: Literal["jdbc", "rest"] = "jdbc"
    uri: str | None = None  # jdbc default: jdbc:sqlite:<state_dir>/catalog.db; rest default: the embedded server
    warehouse: str | None = None  # default: file://<state_dir>/warehouse, or s3://<storage.bucket>/warehouse
    user: str | None = None
    password: SecretStr | None = None
    token: SecretStr | None = None  # rest: a bearer token sent to the catalog
    credential: SecretStr | None = None  # rest: OAuth2 client credentials "<client id>:<secret>"
    rest_port: int = 0  # the embedded REST server's port; 0 → a free port chosen at `stack up`


class StorageCredentials(_Section):
    """Where the S3 access key is read from: a file or two environment variables, never the settings.

    Neither set: the embedded object store's own key (`<state_dir>/object-store/credentials`).
    """

    file: Path | None = None  # an AWS shared-credentials file (INI: aws_access_key_id, aws_secret_access_key)
    profile: str = "default"  # the file's section
    access_key_env: str | None = None  # name of the environment variable holding the access key id
    secret_key_env: str | None = None  # name of the environment variable holding the secret access key


class StorageSettings(_Section):
    """Where table files live: the local warehouse folder, or an S3-compatible object store."""

    kind: Literal["local", "s3"] = "local"
    endpoint: str | None = None  # s3: default the embedded store (SeaweedFS) that `stack up` starts
    region: str = "us-east-1"
    bucket: str = "warehouse"
    path_style: bool = True  # path-style URLs (http://host/bucket/key), as most S3-compatible stores need
    sse: Literal["s3", "none"] = "s3"  # server-side encryption: every writer sends SSE-S3, the bucket defaults to it
    credentials: StorageCredentials = Field(default_factory=StorageCredentials)
    # per-role keys for an external store (writer, cdc, maint, bi, catalog, backup); a role not named uses
    # `credentials`.
    # The embedded store makes one key per role at `stack up` (<state_dir>/object-store/identities/<role>)
    identities: dict[Role, StorageCredentials] = Field(default_factory=dict)
    checkpoint_prefix: str = "checkpoints"  # the CDC job's checkpoints: s3://<bucket>/<prefix>/ (role cdc only)
    port: int = 0  # the embedded store's S3 port; 0 → a free port chosen at `stack up`
    start_timeout_s: float = 60.0  # how long `stack up` waits for the embedded store
    access_log_max_mb: float = Field(default=64.0, gt=0)  # the embedded store's access.jsonl is rotated at this size
    access_log_keep: int = Field(default=5, ge=0)  # rotated access-log files kept (access.jsonl.1 … .N)


class SparkSettings(_Section):
    # local[N], or a standalone cluster's spark://host:port (`icetide spark up` starts one on loopback)
    master: str = "local[2]"
    driver_memory: str = "2g"
    shuffle_partitions: int = 4
    extra_conf: dict[str, str] = Field(default_factory=dict)
    executor_memory: str = "1g"  # per executor, on a cluster master
    # `icetide spark up`: the Master's port (0 → a free one; the status says which) and its Workers
    cluster_port: int = 7077
    workers: int = Field(default=2, ge=1)
    worker_cores: int = Field(default=1, ge=1)
    worker_memory: str = "1536m"


class FlinkSettings(_Section):
    parallelism: int = 1
    checkpoint_interval_ms: int = 5000
    # the CDC job's retained checkpoints (a file:// or s3:// URI); default <state_dir>/cdc/checkpoints, or
    # s3://<storage.bucket>/checkpoints/cdc with storage.kind: s3 (streaming/checkpoints.py)
    checkpoint_dir: str | None = None
    taskmanager_memory: str = "1024m"
    # `host:port` of a Flink session cluster's REST endpoint: `cdc run` submits there (`execution.target:
    # remote`); unset, the job runs in PyFlink's local mini-cluster. `icetide flink up` prints one.
    address: str | None = None
    taskmanagers: int = Field(default=1, ge=1)  # `icetide flink up` without --taskmanagers
    taskmanager_slots: int = Field(default=1, ge=1)
    jobmanager_memory: str = "768m"
    start_timeout_s: float = 120.0  # how long `flink up` waits for each process and the registrations


class CdcSettings(_Section):
    tables: list[str] = Field(default_factory=lambda: ["sales.vendas"])
    topic_prefix: str = "icetide"
    poll_interval_s: float = 1.0
    start: str = "earliest"  # earliest | latest | snapshot:<id> | timestamp:<ms>
    # json: schemaless Debezium envelope; connect-json: JsonConverter with schemas (Kafka Connect sinks);
    # avro: Confluent wire format, needs schema_registry_url (docs/encodings.md)
    format: Literal["json", "connect-json", "avro"] = "json"
    tombstones: bool = False  # a null-value record after each delete of a keyed table (log compaction)
    schema_registry_url: str | None = None  # Confluent-compatible registry (Avro); also `cdc apply`'s default
    delivery: Literal["exactly-once", "at-least-once"] = "at-least-once"
    transaction_metadata: bool = True  # BEGIN/END per snapshot on <prefix>.transaction (+ JSON transaction block)
    # with flink.parallelism > 1, one table's snapshots are derived by all subtasks (streaming/derivation.py);
    # false: one subtask per table, as before
    parallel_derivation: bool = True
    # change events one element of the job emits at most (serial), or that one planning tick takes (parallel):
    # what the TaskManager holds at once from a large snapshot, and what checkpoints fall between
    chunk_events: int = Field(default=20_000, ge=1)


class SinkSettings(_Section):
    kind: Literal["sqlite", "postgres"] = "sqlite"
    sqlite_path: Path | None = None  # default: <state_dir>/downstream.db
    postgres_dsn: SecretStr | None = None
    group_id: str = "icetide-apply"
    batch_size: int = 2000
    dead_letter_topic: str | None = None  # default: <topic_prefix>.dead-letter


class MetricsSettings(_Section):
    host: str = "127.0.0.1"
    port: int = 0  # 0 → no endpoint unless a command asks for one with --metrics-port


class MonitoringSettings(_Section):
    """The embedded Prometheus and Alertmanager (`icetide stack up --monitoring`), on loopback."""

    enabled: bool = False  # true → `stack up` starts them too
    prometheus_port: int = 0  # 0 → a free port
    alertmanager_port: int = 0
    scrape_interval_s: float = Field(default=15.0, gt=0)
    evaluation_interval_s: float = Field(default=15.0, gt=0)
    # test-only: the rules' `for:` and range windows and Alertmanager's timers are multiplied by this
    time_scale: float = Field(default=1.0, gt=0, le=1)
    webhook_url: str | None = None  # Alertmanager's receiver; none → alerts stay in Alertmanager
    retention: str = "7d"
class TrinoSettings(_Section):
    """The embedded Trino (the SQL endpoint for BI tools, `icetide trino up`): loopback, TLS, passwords."""

    enabled: bool = False  # `icetide stack up` starts it too
    port: int = 0  # the HTTPS port clients use; 0 → a free port chosen at start
    heap: str = "1G"  # the JVM's -Xmx
    bi_account: str | None = None  # a service account (Superset, a gateway) allowed to impersonate policy users


class LineageSettings(_Section):
    """OpenLineage run events (icetide/lineage.py): always to `<state_dir>/lineage/events.jsonl`, and to `url`."""

    enabled: bool = True
    url: str | None = None  # an OpenLineage HTTP endpoint's base URL (Marquez, DataHub, …); none → the file only
    endpoint: str = "api/v1/lineage"
    api_key: SecretStr | None = None  # sent as a bearer token
    timeout_s: float = 5.0


class DrSettings(_Section):
    """Disaster recovery (`icetide dr`): where backups go and which tables they hold."""

    # a directory, on another disk or machine in earnest (a backup beside the state it protects is a copy,
    # not a recovery), or `s3://<backup-bucket>/<prefix>` on the object store (a second bucket with versioning
    # and SSE-S3 default encryption, written with the `backup` role's key); default <state_dir>/backups
    location: str | None = None
    tables: list[str] = Field(default_factory=list)  # namespace.table; empty → every table of the catalog


class Settings(_Section):
    """All of icetide's settings; `source` records the file they were read from."""

    stack: StackSettings = Field(default_factory=StackSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    catalog: CatalogSettings = Field(default_factory=CatalogSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    spark: SparkSettings = Field(default_factory=SparkSettings)
    flink: FlinkSettings = Field(default_factory=FlinkSettings)
    cdc: CdcSettings = Field(default_factory=CdcSettings)
    sink: SinkSettings = Field(default_factory=SinkSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    monitoring: MonitoringSettings = Field(default_factory=MonitoringSettings)
    trino: TrinoSettings = Field(default_factory=TrinoSettings)
    dr: DrSettings = Field(default_factory=DrSettings)
    lineage: LineageSettings = Field(default_factory=LineageSettings)

    source: str = Field(default="<defaults>", exclude=True)

    # -- derived locations -------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        return self.stack.state_dir.expanduser().resolve()

    @property
    def catalog_uri(self) -> str:
        """The configured catalog URI; for a JDBC catalog, the SQLite file by default. For the embedded REST
        server (`catalog.type: rest` without `catalog.uri`) "" — its address is known once it runs
        (`icetide.catalog.catalog_uri`)."""
        if self.catalog.type == "rest":
            return self.catalog.uri or ""
        return self.catalog.uri or f"jdbc:sqlite:{self.state_dir / 'catalog.db'}"

    @property
    def warehouse(self) -> str:
        if self.catalog.warehouse:
            return self.catalog.warehouse
        if self.storage.kind == "s3":
            return f"s3://{self.storage.bucket}/warehouse"
        return (self.state_dir / "warehouse").as_uri()

    @property
    def sqlite_path(self) -> Path:
        return (self.sink.sqlite_path or self.state_dir / "downstream.db").expanduser().resolve()

    @property
    def backup_dir(self) -> Path:
        """The backup directory (`dr.location` when it is not an `s3://` URI)."""
        if self.backup_bucket is not None:
            raise ConfigError(f"{self.source}: setting 'dr.location' is {self.dr.location}, not a directory")
        return Path(self.dr.location or self.state_dir / "backups").expanduser().resolve()

    @property
    def backup_bucket(self) -> tuple[str, str] | None:
        """(bucket, prefix) of an `s3://bucket/prefix` `dr.location` (prefix `backups` when none); None for a
        directory."""
        from urllib.parse import urlparse

        location = str(self.dr.location or "")
        if "://" not in location:
            return None
        parsed = urlparse(location)
        if parsed.scheme not in ("s3", "s3a") or not parsed.netloc:
            raise ConfigError(f"{self.source}: setting 'dr.location': a directory or s3://bucket/prefix, "
                              f"got {self.dr.location}")
        return parsed.netloc, parsed.path.strip("/") or "backups"

    @property
    def dead_letter_topic(self) -> str:
        return self.sink.dead_letter_topic or f"{self.cdc.topic_prefix}.dead-letter"


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    """`ICETIDE__KAFKA__PORT=1` → {"kafka": {"port": "1"}} (values parsed as YAML scalars)."""
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__") if part]
        if not path:
            continue
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = yaml.safe_load(raw) if raw != "" else None
    return tree


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _describe(error: ValidationError, origin: str) -> str:
    first = error.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    if first["type"] == "extra_forbidden":
        return f"{origin}: unknown setting '{key}'"
    return f"{origin}: setting '{key}': {first['msg']}"


def load_settings(path: str | Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read settings from `path` (or the default file) and the environment; raise ConfigError."""
    environ = dict(os.environ if environ is None else environ)
    chosen = path or environ.get("ICETIDE_CONFIG")
    if chosen is None and Path(DEFAULT_FILE).is_file():
        chosen = DEFAULT_FILE
    data: dict[str, Any] = {}
    origin = "<defaults>"
    if chosen is not None:
        file = Path(chosen)
        origin = str(file)
        if not file.is_file():
            raise ConfigError(f"config file not found: {file}")
        try:
            loaded = yaml.safe_load(file.read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else str(file)
            raise ConfigError(f"{where}: invalid YAML") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{file}: expected a mapping of sections at the top level")
        data = loaded
    overrides = _env_overrides(environ)
    try:
        Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, origin)) from None
    try:
        settings = Settings.model_validate(_merge(data, overrides))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, "environment (ICETIDE__…)")) from None
    settings.source = origin
    return settings
