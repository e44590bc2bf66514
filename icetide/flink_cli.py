"""`icetide flink up | down | status`: a standalone Flink session cluster on loopback for `cdc run`."""

from __future__ import annotations

import time
from typing import Any

import click

from icetide.cli import App, emit


def _describe(status: dict[str, Any]) -> str:
    state = "running" if status["running"] else "stopped"
    lines = [f"flink         {state}  {status.get('address') or '-'}",
             f"jobmanager    pid {status['pids'].get('jobmanager', '-')}"]
    for tm in status["taskmanagers"]:
        lines.append(f"taskmanager   {tm['id']}  slots {tm['slots']} (free {tm['free_slots']})")
    if status["running"]:
        lines.append(f"submit with   ICETIDE__FLINK__ADDRESS={status['address']} (or flink.address)")
    lines.append(f"files         {status['home']}")
    return "\n".join(lines)


@click.group()
def flink() -> None:
    """A standalone Flink session cluster (one JobManager, N TaskManagers) on loopback, from PyFlink's
    distribution; `cdc run` submits to it when flink.address is set."""


@flink.command()
@click.option("--taskmanagers", type=click.IntRange(min=1), default=None,
              help="TaskManagers to run (started until this many run). Default: flink.taskmanagers.")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_obj
def up(app: App, taskmanagers: int | None, as_json: bool) -> None:
    """Start the cluster (or reuse the running one) and wait until every TaskManager is registered."""
    from icetide.services.flink_cluster import FlinkCluster

    started = time.monotonic()
    cluster = FlinkCluster()
    cluster.start(app.settings, app.settings.state_dir, taskmanagers)
    data = {**cluster.status(), "seconds": round(time.monotonic() - started, 2)}
    emit(data, as_json, _describe(data))


@flink.command()
@click.option("--json", "as_json", is_flag=True, help="Print what was stopped as JSON.")
@click.pass_obj
def down(app: App, as_json: bool) -> None:
    """Stop every TaskManager and the JobManager started from this state directory (files are kept)."""
    from icetide.services.flink_cluster import FlinkCluster

    stopped = FlinkCluster(app.settings.state_dir).stop()
    emit({"stopped": stopped}, as_json, "flink stopped" if stopped else "flink was not running")


@flink.command()
@click.option("--json", "as_json", is_flag=True,
              help="Print the status as JSON: running, address (REST host:port), pids, taskmanagers.")
@click.pass_obj
def status(app: App, as_json: bool) -> None:
    """Show whether the cluster runs, its REST address and the TaskManagers registered with it."""
    from icetide.services.flink_cluster import FlinkCluster

    data = FlinkCluster(app.settings.state_dir).status()
    emit(data, as_json, _describe(data))
