"""`icetide stack up | down | status | rotate`: the embedded Kafka broker, the catalog, and the lake services
the settings ask for (object store, REST catalog); `rotate KIND` replaces credentials while clients run."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import click

from icetide.cli import App, emit
from icetide.errors import ConfigError
from icetide.settings import Settings
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
    lines.append(f"state dir  {status.state_dir}")
    if status.log_file:
        lines.append(f"broker log {status.log_file}")
    return "\n".join(lines)


@click.group()
def stack() -> None:
    """Start, stop and inspect the embedded Kafka broker (KRaft), the Iceberg catalog and the object store."""


@stack.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_obj
def up(app: App, as_json: bool) -> None:
    """Start the broker (or reuse the running one) and prepare the catalog and warehouse; with
    `storage.kind: s3` and `catalog.type: rest` also the object store and the REST catalog server."""
    started = time.monotonic()
    status = Stack(app.settings).up()
    data = {**status.to_dict(), "seconds": round(time.monotonic() - started, 2)}
    emit(data, as_json, _describe(status))


@stack.command()
@click.option("--json", "as_json", is_flag=True, help="Print what was stopped as JSON.")
@click.pass_obj
def down(app: App, as_json: bool) -> None:
    """Stop the broker and lake services started from this state directory (data is kept)."""
    stopped = Stack(app.settings).down()
    emit({"stopped": stopped}, as_json, "kafka stopped" if stopped else "kafka was not running")


@stack.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_obj
def status(app: App, as_json: bool) -> None:
    """Show what runs: Kafka bootstrap address, catalog name, type and URI, warehouse, storage."""
    current = Stack(app.settings).status()
    emit(current.to_dict(), as_json, _describe(current))


def _rotate_kafka(settings: Settings, principal: str | None) -> dict[str, Any]:
    """SCRAM passwords of one principal (or all): `kafka_security.rotate`."""
    from icetide import kafka_client, kafka_security
    from icetide.stack import kafka_bootstrap

    roles = kafka_client.ROLES if principal is None else (principal,)
    for role in roles:
        kafka_client.username(settings, role)  # ConfigError for an unknown principal
    users = kafka_security.rotate(settings, kafka_bootstrap(settings), roles)
    # Java clients (the Flink job and mirror, Kafka Connect) read their password once, at start
    restart = [kafka_client.username(settings, r) for r in roles if r in kafka_client.JAVA_ROLES]
    return {"users": users, "secrets_dir": str(kafka_client.secrets_dir(settings)), "restart": restart}


# kind → rotation: each takes the settings and an optional principal, and returns what it changed (no secrets)
ROTATIONS: dict[str, Callable[[Settings, str | None], dict[str, Any]]] = {"kafka": _rotate_kafka}


@stack.command()
@click.argument("kind", type=click.Choice(sorted(ROTATIONS)))
@click.option("--principal", default=None,
              help="Only this principal (kafka: admin, cdc, apply, mirror, connect); default all of them.")
@click.option("--json", "as_json", is_flag=True, help="Print what was rotated as JSON.")
@click.pass_obj
def rotate(app: App, kind: str, principal: str | None, as_json: bool) -> None:
    """Replace credentials of KIND while the pipeline runs: no restart; the old credential is refused
    afterwards and running icetide clients pick up the new one from its 0600 file (docs/security.md)."""
    if kind not in ROTATIONS:
        raise ConfigError(f"unknown credential kind {kind}")
    started = time.monotonic()
    done = {"kind": kind, **ROTATIONS[kind](app.settings, principal), "seconds": round(time.monotonic() - started, 2)}
    restart = f"; restart the running clients of {', '.join(done['restart'])}" if done.get("restart") else ""
    emit(done, as_json, f"{kind}: rotated {', '.join(done.get('users', [])) or 'nothing'}{restart}")
