"""`icetide status [--json] [--watch]`: one screen for the whole deployment (rich), data from icetide.status."""

from __future__ import annotations

import time
from typing import Any

import click

from icetide.cli import App, emit


def _fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}{unit}"
    return f"{value}{unit}"


def render(data: dict[str, Any]) -> Any:
    """The screen as a rich renderable (a Group of a header and two tables)."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    broker = data["broker"]
    head = Text()
    head.append("broker ", style="bold")
    head.append("up" if broker["running"] else "DOWN", style="green" if broker["running"] else "bold red")
    head.append(f" {broker.get('bootstrap') or '-'}   source {data['source']}   ")
    head.append("commit→apply ", style="bold")
    head.append(f"p50 {_fmt(data['commit_to_apply_p50_s'], ' s')}  p99 {_fmt(data['commit_to_apply_p99_s'], ' s')}   ")
    dead = sum(data["dead_letters"].values())
    head.append("dead letters ", style="bold")
    head.append(str(dead), style="red" if dead else "")
    policy = data.get("policy")
    head.append("   policy " + (f"{policy['policy_id']} v{policy['version']}" if policy else "-"))
    jobs = Table(title="processes", title_justify="left")
    for col in ("job", "up", "down"):
        jobs.add_column(col)
    for job, count in sorted(data["jobs"].items()):
        jobs.add_row(job, str(count["up"]), Text(str(count["down"]), style="red" if count["down"] else ""))
    tables = Table(title="tables", title_justify="left")
    cols = ("table", "source snapshot", "published", "applied", "lag events", "lag s", "snapshots", "small files")
    for col in cols:
        tables.add_column(col, justify="left" if col == "table" else "right")
    for name, row in data["tables"].items():
        lag = row["lag_events"]
        tables.add_row(name, _fmt(row["last_source_snapshot"]), _fmt(row["last_published_snapshot"]),
                       _fmt(row["last_applied_snapshot"]), Text(_fmt(lag), style="yellow" if lag else ""),
                       _fmt(row["lag_seconds"]), _fmt(row["snapshots"]),
                       _fmt(None if row["small_file_ratio"] is None else row["small_file_ratio"] * 100, " %"))
    alerts = Text("alerts firing: " + (", ".join(data["alerts_firing"]) or "none"),
                  style="bold red" if data["alerts_firing"] else "green")
    return Group(head, jobs, tables, alerts)


def render_text(data: dict[str, Any], width: int = 120) -> str:
    """The screen as plain text (what a pipe or a test sees)."""
    from rich.console import Console

    console = Console(width=width, record=True, color_system=None, force_terminal=False)
    with console.capture() as capture:
        console.print(render(data))
    return capture.get()


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the data as JSON (once).")
@click.option("--watch", is_flag=True, help="Refresh the screen every --interval seconds until Ctrl-C.")
@click.option("--interval", default=2.0, show_default=True, help="Seconds between refreshes with --watch.")
@click.pass_obj
def status(app: App, as_json: bool, watch: bool, interval: float) -> None:
    """One screen for the deployment: per table the last source snapshot, last published and applied
    snapshot, lag in events and seconds, table health; commit→apply p50/p99, dead letters, broker and
    process health, policy version, alerts firing. From the embedded Prometheus when monitoring runs,
    else straight from the processes' /metrics endpoints."""
    from icetide.status import gather

    if as_json or not watch:
        data = gather(app.settings)
        emit(data, as_json, render_text(data).rstrip())
        return
    from rich.live import Live

    with Live(render(gather(app.settings)), refresh_per_second=4, screen=False) as live:
        try:
            while True:
                time.sleep(interval)
                live.update(render(gather(app.settings)))
        except KeyboardInterrupt:
            pass
