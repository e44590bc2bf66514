"""`icetide lineage TABLE [--json] [--png FILE]`: what feeds a dataset and what it feeds, from the lineage log."""

from __future__ import annotations

from pathlib import Path

import click

from icetide.cli import App, emit
from icetide.errors import ConfigError


@click.command()
@click.argument("name")
@click.option("--png", "png", type=click.Path(dir_okay=False, path_type=Path), help="Also draw the graph here (PNG).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def lineage(app: App, name: str, png: Path | None, as_json: bool) -> None:
    """Upstream and downstream of NAME (a table `namespace.table`, a topic, or `namespace/name`), transitively,
    from the OpenLineage events icetide's jobs wrote to <state_dir>/lineage/events.jsonl; and the last runs that
    read it without writing (BI queries through Trino) or maintained it in place (`icetide maint`)."""
    from icetide.lineage import datasets, draw, edges, events_path, neighbourhood, read_events, resolve, runs_on

    path = events_path(app.settings.state_dir)
    events = read_events(path)
    graph = edges(events)
    start = resolve(datasets(events), name, app.settings.warehouse)
    if not start:
        raise ConfigError(f"no lineage recorded for {name!r} in {path} (runs of batch generate/merge, cdc run, "
                          "cdc apply, policy apply, maint and Trino queries record it)")
    view = {**neighbourhood(graph, start), **runs_on(events, start)}
    if png is not None:
        view["png"] = str(draw(view, png))
    lines = [f"{name}:"]
    lines += [f"  upstream   {n}" for n in view["upstream"]] or ["  upstream   (none recorded)"]
    lines += [f"  downstream {n}" for n in view["downstream"]] or ["  downstream (none recorded)"]
    lines += ["edges:"] + [f"  {e['from']} --[{e['job']}]--> {e['to']}" for e in view["edges"]]
    lines += [f"  read by       {r['job']} at {r['time']}" for r in view["read_by"]]
    lines += [f"  maintained by {r['job']} at {r['time']}" for r in view["maintained_by"]]
    if png is not None:
        lines.append(f"graph drawn to {png}")
    emit(view, as_json, "\n".join(lines))
