"""`icetide stack up | down | status | access-log | rotate`: the embedded Kafka broker, the catalog, and the
lake services the settings ask for (object store, REST catalog); the object store's access log; credential
rotation (`rotate KIND`, one entry of `ROTATORS` per kind)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import click

from icetide.cli import App, emit
from icetide.errors import ConfigError
from icetide.stack import Stack, StackStatus
from icetide.storage import roles


def _describe(status: StackStatus) -> str:
    kafka = "running" if status.running else "stopped"
    where = "external" if not status.embedded else f"pid {status.pid}" if status.pid else "embedded"
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
    that serves /metrics from this state dir (and the broker's JMX exporter agent)."""
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
    """Stop the broker, lake services and monitoring started from this state directory (data is kept)."""
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
    records = list(read_records(log, since=parse_since(since) if since else None, identity=identity))
    records = records[-limit:] if limit > 0 else records
    lines = [f"{r['time']}  {r['identity'] or '(unauthenticated)':<16} {r['operation'] or '-':<24} "
             f"{r['status'] or '-':>3} {r['error_code'] or '':<16} {r['bucket'] or ''}/{r['key'] or ''}"
             for r in records]
    emit(records, as_json, "\n".join(lines) if lines else f"no access records ({log})")


def _rotate_s3(app: App, role: str | None, grace: float) -> list[dict[str, Any]]:
    from icetide.services.identities import rotate_s3

    if role is not None and role not in roles():
        raise ConfigError(f"--role: one of {', '.join(roles())}, got {role!r}")
    return rotate_s3(app.settings, role, grace)


# what `stack rotate KIND` rotates: each kind's function returns one result per credential rotated
ROTATORS: dict[str, Callable[[App, str | None, float], list[dict[str, Any]]]] = {"s3": _rotate_s3}


@stack.command()
@click.argument("kind", type=click.Choice(sorted(ROTATORS)))
@click.option("--role", help="s3: the role whose key is rotated (writer, cdc, maint, bi, catalog); default all.")
@click.option("--grace", type=float, default=5.0, show_default=True,
              help="Seconds between writing the new credential and deleting the old one (clients re-read it).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (no secrets).")
@click.pass_obj
def rotate(app: App, kind: str, role: str | None, grace: float, as_json: bool) -> None:
    """Rotate a credential while the pipeline runs: a new one is made and written where the processes read
    it, the old one is deleted after --grace seconds and refused from then on (docs/security.md)."""
    results = ROTATORS[kind](app, role, grace)
    text = "\n".join(f"{kind} {r['role']}: new key {r['access_key_id']}, deleted {', '.join(r['deleted']) or '-'}"
                     f" (old key refused: {r['old_key_refused']}) → {r['credentials_file']}"
                     + (f"\n  restart to take the new key: {r['restart_needed']}" if r["restart_needed"] else "")
                     for r in results)
    emit(results, as_json, text)
