"""`icetide cdc mirror`: mirror a table's icetide topic into an Iceberg table with stock Flink SQL
(`debezium-json` or `debezium-avro-confluent`, per `cdc.format`, + the Iceberg Flink connector; see
`streaming/mirror.py`).

Also runnable on its own (`python -m streaming.mirror_cli TABLE`), with settings from the
environment / `$ICETIDE_CONFIG`, until the command is registered under `icetide cdc`.
"""

from __future__ import annotations

import os
import sys

import click
from icetide.cli import App, emit


@click.command()
@click.argument("table")
@click.option("--mirror", default=None, help="Target table (namespace.table). Default: <table>_mirror.")
@click.option("--key", default=None, metavar="COL[,COL]",
              help="Primary key columns when the table has no identifier fields.")
@click.option("--follow", is_flag=True, help="Keep running on new events (default: stop at the topic's end).")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
@click.pass_obj
def mirror(app: App, table: str, mirror: str | None, key: str | None, follow: bool, as_json: bool) -> None:
    """Mirror TABLE's change topic into an Iceberg table with Flink SQL's debezium-json format
    (schema-include for cdc.format connect-json) or debezium-avro-confluent (avro)."""
    from icetide.stack import kafka_bootstrap

    from streaming.mirror import run_mirror

    settings = app.settings
    columns = [c.strip() for c in key.split(",") if c.strip()] if key else None
    summary = run_mirror(settings, table, kafka_bootstrap(settings), mirror, columns, bounded=not follow)
    emit(summary, as_json, f"{summary['topic']} → {summary['mirror']} in {summary['job_s']} s "
                           f"(snapshot {summary['mirror_snapshot']})")


if __name__ == "__main__":  # pragma: no cover
    from icetide.errors import IcetideError

    try:
        mirror.main(obj=App(config_path=os.environ.get("ICETIDE_CONFIG")), standalone_mode=False)
    except IcetideError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)
