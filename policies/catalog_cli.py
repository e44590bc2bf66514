"""`icetide catalog describe | annotate`: the metadata catalog — table and column descriptions, with each
column's classification, kept in Iceberg (policies/descriptions.py)."""

from __future__ import annotations

import click
from icetide.cli import App, emit


@click.group()
def catalog() -> None:
    """Table and column descriptions in the Iceberg catalog, visible through Trino, Spark and JDBC metadata."""


@catalog.command()
@click.argument("table")
@click.option("--json", "as_json", is_flag=True, help="Print the description as JSON.")
@click.pass_obj
def describe(app: App, table: str, as_json: bool) -> None:
    """Show TABLE's comment and each column's type and description."""
    from icetide.catalog import pyiceberg_catalog

    from policies.descriptions import describe as read

    data = read(pyiceberg_catalog(app.settings), table)
    width = max((len(c["name"]) for c in data["columns"]), default=0)
    lines = [f"{data['table']}: {data['comment'] or '(no comment)'}",
             *(f"  {c['name']:<{width}}  {c['type']:<14} {c['doc'] or ''}" for c in data["columns"])]
    emit(data, as_json, "\n".join(lines))


@catalog.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--policy", "policy_file", type=click.Path(exists=True, dir_okay=False),
              help="The policy whose classification (tags and their meaning) is added to the column docs.")
@click.option("--json", "as_json", is_flag=True, help="Print what changed as JSON.")
@click.pass_obj
def annotate(app: App, file: str, policy_file: str | None, as_json: bool) -> None:
    """Write FILE's table and column descriptions (and POLICY's classification) into the catalog; only what
    differs is committed (metadata only)."""
    from icetide.catalog import pyiceberg_catalog

    from policies.descriptions import annotate as write
    from policies.descriptions import comments, load_descriptions
    from policies.loader import load_policy

    docs = load_descriptions(file)
    policy = load_policy(policy_file) if policy_file else None
    changed = write(pyiceberg_catalog(app.settings, "writer"), comments(docs, policy), docs)
    text = "\n".join(f"{t}: comment {'set' if c['comment'] else 'unchanged'}, {len(c['columns'])} column docs"
                     for t, c in changed.items()) or "nothing to change"
    emit({"changed": changed}, as_json, text)
