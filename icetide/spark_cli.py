"""`icetide spark up | down | status | submit`: a standalone Spark cluster on loopback, and spark-submit."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from icetide.cli import App, emit
from icetide.errors import StackError


def _describe(status: dict[str, Any]) -> str:
    state = f"running (pid {status['master_pid']})" if status["running"] else "stopped"
    lines = [f"master     {state}  {status.get('master_url') or '-'}  web {status.get('web_url') or '-'}"]
    for worker in status.get("workers", []):
        lines.append(f"worker     {worker['id']}  {worker['state']}  {worker['cores']} cores, "
                     f"{worker['memory']} MB")
    if status["running"]:
        lines.append(f"apps       {len(status.get('activeapps', []))} running, "
                     f"{len(status.get('completedapps', []))} completed")
        lines.append(f"use it     ICETIDE__SPARK__MASTER={status['master_url']} (or spark.master in the settings)")
    return "\n".join(lines)


@click.group()
def spark() -> None:
    """A standalone Spark cluster from pyspark's jars (a Master and Workers, loopback), and spark-submit."""


@spark.command()
@click.option("--workers", type=click.IntRange(min=1), help="Workers to run (default: spark.workers).")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_obj
def up(app: App, workers: int | None, as_json: bool) -> None:
    """Start the Master and Workers (or reuse those running; a Worker that died is started again)."""
    from icetide.services.spark_cluster import SparkCluster

    started = time.monotonic()
    cluster = SparkCluster()
    cluster.start(app.settings, app.settings.state_dir, workers=workers)
    data = {**cluster.status(), "seconds": round(time.monotonic() - started, 2)}
    emit(data, as_json, _describe(data))


@spark.command()
@click.option("--json", "as_json", is_flag=True, help="Print what was stopped as JSON.")
@click.pass_obj
def down(app: App, as_json: bool) -> None:
    """Stop the Workers (and their executors), then the Master started from this state directory."""
    from icetide.services.spark_cluster import SparkCluster

    stopped = SparkCluster(app.settings.state_dir).stop()
    emit({"stopped": stopped}, as_json, "spark cluster stopped" if stopped else "spark cluster was not running")


@spark.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_obj
def status(app: App, as_json: bool) -> None:
    """Show the Master's URL, its Workers (state, cores, memory) and the applications it ran."""
    from icetide.services.spark_cluster import SparkCluster

    data = SparkCluster(app.settings.state_dir).status()
    emit(data, as_json, _describe(data))


@spark.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("args", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_obj
def submit(app: App, args: tuple[str, ...]) -> None:
    """Run an icetide command (ARGS, e.g. `maint run --policy p.yaml`) through spark-submit on spark.master.

    The driver is spark-submit's (client mode) with icetide's jars on its class path; the command's exit code
    is this command's."""
    command = submit_command(app.settings, list(args))
    from icetide import jvm
    from icetide.services.spark_cluster import daemon_env

    sys.stdout.flush()
    code = subprocess.call(command, env={**jvm.java_env(), **daemon_env()})
    if code:
        raise SystemExit(code)


def submit_command(settings: Any, args: list[str]) -> list[str]:
    """spark-submit's command line for `icetide ARGS` on settings' master."""
    from icetide import jvm
    from icetide.services.spark_cluster import spark_home

    if not args:
        raise StackError("spark submit needs an icetide command, e.g. `icetide spark submit maint run`")
    entry = Path(__file__).resolve().parent / "spark_main.py"
    return [str(spark_home() / "bin" / "spark-submit"), "--master", settings.spark.master,
            "--name", "icetide " + " ".join(a for a in args[:2] if not a.startswith("-")),
            "--driver-memory", settings.spark.driver_memory,
            "--driver-java-options", "-Duser.timezone=UTC",
            "--conf", "spark.driver.host=127.0.0.1", "--conf", "spark.driver.bindAddress=127.0.0.1",
            "--jars", ",".join(str(p) for p in jvm.jars("spark")), str(entry), *args]
