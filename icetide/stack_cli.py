"""`icetide stack up | down | status | access-log | rotate | lag-exporter`: the embedded Kafka broker, the
catalog, and the lake services the settings ask for (object store, REST catalog); the object store's access log;
credential rotation (`rotate KIND`, one entry of `ROTATORS` per kind); the consumer-group lag exporter a
deployment runs as a service. `store-secrets` and `provision` set up an object store a deployment runs
(docker-compose.yml, k8s/) the way `up` sets up the embedded one."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from icetide.cli import App, emit
from icetide.console import table_text
from icetide.errors import ConfigError
from icetide.settings import Settings
from icetide.stack import Stack, StackStatus
from icetide.storage import roles


def _describe(status: StackStatus) -> str:
    kafka = "running" if status.running else "stopped"
    where = "external" if not status.embedded else f"pid {status.pid}" if status.pid else "embedded"
    if len(status.nodes) > 1:
        up = sum(1 for node in status.nodes if node["running"])
        where = f"{up} of {len(status.nodes)} nodes: " + ", ".join(
            f"{node['node_id']} pid {node['pid'] or '-'}" for node in status.nodes)
    catalog, storage = status.lake.get("catalog", {}), status.lake.get("storage", {})
    lines = [
        f"kafka      {kafka} ({where}) {status.bootstrap or '-'}",
        f"catalog    {status.catalog_name}  {catalog.get('type', 'jdbc')}  {status.catalog_uri or '(not running)'}",
        f"warehouse  {status.warehouse}",
    ]
    if storage.get("kind") == "s3":
        data = f"  data {storage['data_dir']}" if storage.get("data_dir") else ""
        lines.append(f"storage    s3  {storage.get('endpoint') or '(not running)'}  bucket {storage.get('bucket')}"
                     f"  sse {storage.get('sse')}{data}")
        if storage.get("access_log"):
            lines.append(f"access log {storage['access_log']}")
    mon = status.monitoring
    if mon.get("prometheus"):
        for key in ("prometheus", "alertmanager"):
            part = mon[key]
            lines.append(f"{key:<10} {'running' if part['running'] else 'stopped'}  {part['url'] or '-'}")
    if status.trino:
        trino = status.trino
        lines.append(f"trino      {'running' if trino['running'] else 'stopped'}  {trino.get('jdbc_url') or '-'}")
    lines.append(f"state dir  {status.state_dir}")
    if status.log_file:
        lines.append(f"broker log {status.log_file}")
    return "\n".join(lines)


@click.group()
def stack() -> None:
    """Start, stop and inspect the embedded Kafka broker (KRaft), the Iceberg catalog and the object store;
    read the object store's access log; rotate credentials."""


@stack.command()
@click.option("--monitoring", is_flag=True,
              help="Also start Prometheus (icetide's alert rules) and Alertmanager on loopback "
                   "(same as monitoring.enabled: true).")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_obj
def up(app: App, monitoring: bool, as_json: bool) -> None:
    """Start the broker (or reuse the running one) and prepare the catalog and warehouse; with
    `storage.kind: s3` and `catalog.type: rest` also the object store and the REST catalog server; with
    --monitoring Prometheus, Alertmanager and the consumer-group lag exporter, scraping every icetide process
    that serves /metrics from this state dir (and the broker's JMX exporter agent); with `trino.enabled: true`
    the embedded Trino for BI tools (as `icetide trino up`)."""
    if monitoring:
        app.settings.monitoring.enabled = True
    started = time.monotonic()
    status = Stack(app.settings).up()
    data = {**status.to_dict(), "seconds": round(time.monotonic() - started, 2)}
    emit(data, as_json, _describe(status))


@stack.command()
@click.option("--json", "as_json", is_flag=True, help="Print what was stopped as JSON.")
@click.pass_obj
def down(app: App, as_json: bool) -> None:
    """Stop the broker, lake services, Trino and monitoring started from this state directory (data is kept)."""
    stopped = Stack(app.settings).down()
    emit({"stopped": stopped}, as_json, "kafka stopped" if stopped else "kafka was not running")


@stack.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_obj
def status(app: App, as_json: bool) -> None:
    """Show what runs: Kafka bootstrap address, catalog name, type and URI, warehouse, storage, and the
    Prometheus and Alertmanager URLs when monitoring runs."""
    current = Stack(app.settings).status()
    emit(current.to_dict(), as_json, _describe(current))


@stack.command("store-secrets")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for s3-admin.env and s3-kek.env (mode 0600; existing ones are never replaced).")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON (no secrets).")
def store_secrets(out: Path, as_json: bool) -> None:
    """Make a deployed object store's own secrets, once: its admin key and its SSE-S3 key-encryption key
    (back the latter up apart from the data: without it the data is lost)."""
    from icetide.services.provision import store_secrets as write

    done = write(out)
    emit(done, as_json, f"wrote {done['admin_env']} (admin key {done['admin_access_key_id']}) and {done['kek_env']}")


@stack.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for each role's key: <out>/<role>/credentials (mode 0600).")
@click.option("--known", type=click.Path(file_okay=False, path_type=Path),
              help="Folder of the keys handed out before (<known>/<role>/credentials): kept while the store "
                   "lists them (default: --out).")
@click.option("--k8s-secrets", is_flag=True,
              help="Also create or update one Kubernetes Secret per role (icetide-s3-<role>) in this pod's "
                   "namespace, as its service account (the k8s/ init Job).")
@click.option("--noncurrent-days", type=click.IntRange(min=1), default=7, show_default=True,
              help="Days a replaced or deleted object's old version is kept (bucket versioning).")
@click.option("--wait", "wait_s", type=float, default=120.0, show_default=True,
              help="Seconds to wait for the store to accept the admin key.")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON (no secrets).")
@click.pass_obj
def provision(app: App, out: Path, known: Path | None, k8s_secrets: bool, noncurrent_days: int,
              wait_s: float, as_json: bool) -> None:
    """Set up an external object store (storage.endpoint) as `stack up` sets up the embedded one: the bucket
    with SSE-S3 default encryption and versioning, one IAM user per role (writer, cdc, maint, bi, catalog, backup)
    with its least-privilege policy, and its key. The deployment's init job (docs/deploy.md)."""
    from icetide.services.provision import provision as run

    done = run(app.settings, out, known, k8s_secrets=k8s_secrets, noncurrent_days=noncurrent_days, wait_s=wait_s)
    lines = [f"bucket {done['bucket']} at {done['endpoint']}: sse {done['sse']}, versioning on "
             f"(old versions kept {noncurrent_days} days)"]
    lines += [f"{role:<8} {i['user']:<16} key {i['access_key_id']} → {i['credentials_file']}"
              for role, i in done["identities"].items()]
    if done["k8s_secrets"]:
        lines.append(f"Kubernetes Secrets applied: {', '.join(done['k8s_secrets'])}")
    emit(done, as_json, "\n".join(lines))


@stack.command("lag-exporter")
@click.option("--port", type=click.IntRange(min=0, max=65535), default=0, show_default=True,
              help="HTTP port for /metrics (0 → a free one).")
@click.pass_obj
def lag_exporter(app: App, port: int) -> None:
    """Serve consumer-group lag read from the broker and the policy audit metrics, for Prometheus (Ctrl-C stops).

    The serving loop `stack up --monitoring` runs beside its Prometheus; a deployment runs this as a service."""
    from icetide.lag_exporter import serve_until_stopped
    from icetide.stack import kafka_bootstrap

    settings = app.settings
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    serve_until_stopped(kafka_bootstrap(settings), settings.metrics.host, port, settings.state_dir)


@stack.command("access-log")
@click.option("--json", "as_json", is_flag=True, help="Print the records as JSON (a list).")
@click.option("--since", help="Only records since a duration ago (90s, 15m, 2h, 1d) or an ISO-8601 time.")
@click.option("--identity", help="Only requests signed by this identity: a role (writer) or a user (icetide-bi).")
@click.option("--limit", type=int, default=0, help="Only the last N records (0: all).")
@click.pass_obj
def access_log(app: App, as_json: bool, since: str | None, identity: str | None, limit: int) -> None:
    """Show the object store's access log: who did what, when, and the result — one record per S3 request."""
    from icetide.services.access_log import AccessLogCollector, parse_since, read_records

    log = AccessLogCollector(app.settings.state_dir).log_file
    records = list(read_records(log, since=parse_since(since) if since else None, identity=identity,
                                keep=app.settings.storage.access_log_keep))
    records = records[-limit:] if limit > 0 else records
    rows = [[r["time"], r["identity"] or "(unauthenticated)", r["operation"] or "-", r["status"],
             r["error_code"] or "", f"{r['bucket'] or ''}/{r['key'] or ''}"] for r in records]
    text = (table_text(["time", "identity", "operation", "status", "error", "object"], rows) if rows
            else f"no access records ({log})")
    emit(records, as_json, text)


def _rotate_s3(settings: Settings, role: str | None, grace: float) -> tuple[Any, str]:
    from icetide.services.identities import rotate_s3

    if role is not None and role not in roles():
        raise ConfigError(f"--role: one of {', '.join(roles())}, got {role!r}")
    results = rotate_s3(settings, role, grace)
    text = "\n".join(f"s3 {r['role']}: new key {r['access_key_id']}, deleted {', '.join(r['deleted']) or '-'}"
                     f" (old key refused: {r['old_key_refused']}) → {r['credentials_file']}"
                     for r in results)
    return results, text


def _rotate_catalog(settings: Settings, whom: str | None, grace: float) -> tuple[Any, str]:
    """The embedded REST catalog server's own object-store key (role `catalog`), which it follows without a
    restart. The reference server has no client authentication of its own (its adapter hands a token to
    whoever asks and checks none), so there is no catalog token to rotate: that needs a catalog with OAuth2."""
    if settings.catalog.type != "rest":
        raise ConfigError("`stack rotate catalog` rotates the REST catalog server's object-store key: "
                          "catalog.type is not rest")
    results, text = _rotate_s3(settings, "catalog", grace)
    return results, text.replace("s3 catalog:", "catalog (its s3 key):", 1)


def _rotate_kafka(settings: Settings, principal: str | None, grace: float) -> tuple[Any, str]:
    """SCRAM passwords of one principal (or all): `kafka_security.rotate` (the change is at once: no grace)."""
    from icetide import kafka_client, kafka_security
    from icetide.stack import kafka_bootstrap

    chosen = kafka_client.ROLES if principal is None else (principal,)
    for role in chosen:
        kafka_client.username(settings, role)  # ConfigError for an unknown principal
    users = kafka_security.rotate(settings, kafka_bootstrap(settings), chosen)
    done = {"kind": "kafka", "users": users, "secrets_dir": str(kafka_client.secrets_dir(settings)),
            "reauth_ms": settings.kafka.reauth_ms}
    return done, (f"kafka: rotated {', '.join(users) or 'nothing'}; running clients take the new password at "
                  f"their next re-authentication (within {settings.kafka.reauth_ms / 1000:g} s)")


# what `stack rotate KIND` rotates: kind → function(settings, whom or None for all, grace seconds) returning
# what it changed (no secrets) and its text form
ROTATORS: dict[str, Callable[[Settings, str | None, float], tuple[Any, str]]] = {
    "s3": _rotate_s3, "kafka": _rotate_kafka, "catalog": _rotate_catalog,
}


@stack.command()
@click.argument("kind", type=click.Choice(sorted(ROTATORS)))
@click.option("--role", help="s3: the role whose key is rotated (writer, cdc, maint, bi, catalog, backup); "
              "default all.")
@click.option("--principal", help="kafka: the principal rotated (admin, cdc, apply, mirror, connect); default all.")
@click.option("--grace", type=float, default=5.0, show_default=True,
              help="s3, catalog: seconds between writing the new key and deleting the old one (clients re-read it).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (no secrets).")
@click.pass_obj
def rotate(app: App, kind: str, role: str | None, principal: str | None, grace: float, as_json: bool) -> None:
    """Rotate a credential while the pipeline runs, restarting nothing: a new one is made and written where
    the processes read it (a 0600 file), the old one is refused afterwards.

    s3: a role's key on the embedded object store. PyIceberg readers take the new file before their next
    table load; Spark, the Flink job (its tables and checkpoints) and the REST catalog server within about
    a second, through icetide's credentials providers; the embedded Trino (bi) through its credential
    process, so with Trino running a bi rotation waits at least 17 s before deleting the old key. kafka: a
    principal's SCRAM password; Python clients take it within a second, Java clients (Flink, Kafka Connect)
    at the next re-authentication the broker demands (kafka.reauth_ms). catalog: the REST catalog server's
    own S3 key (the embedded server has no client authentication, so no token to rotate; docs/security.md)."""
    if role is not None and kind != "s3":
        raise ConfigError("--role applies to `rotate s3`; use --principal for kafka")
    if principal is not None and kind != "kafka":
        raise ConfigError("--principal applies to `rotate kafka`; use --role for s3")
    data, text = ROTATORS[kind](app.settings, role if kind == "s3" else principal, grace)
    emit(data, as_json, text)
