"""`icetide stack up | down | status`: the embedded Kafka broker, the catalog, and the lake services the
settings ask for (object store, REST catalog)."""

from __future__ import annotations

import time

import click

from icetide.cli import App, emit
from icetide.stack import Stack, StackStatus


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
    """Start, stop and inspect the embedded Kafka broker (KRaft), the Iceberg catalog and the object store."""


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
