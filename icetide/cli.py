"""The `icetide` command: a root group that finds each room's commands lazily.

Rooms register their click commands here by "module:attr" name, so `icetide --help`
imports no room (and never starts a JVM). Every command receives the settings through
`click.Context.obj` (an `App`), built once from `--config` and the environment.
"""

from __future__ import annotations

import importlib
import json
import sys
from dataclasses import dataclass, field
from typing import Any

import click

from icetide import __version__
from icetide.errors import IcetideError

# command name → ("module:attr", one-line help shown without importing the module)
COMMANDS: dict[str, tuple[str, str]] = {
    "stack": ("icetide.stack_cli:stack", "Start, stop and inspect the embedded Kafka broker and catalog."),
    "sql": ("batch.sql_cli:sql", "Run Spark SQL against the configured Iceberg catalog."),
    "batch": ("batch.cli:batch", "Lakehouse batch jobs: generate, bench, merge, time travel."),
    "maint": ("batch.maint_cli:maint", "Table maintenance: compact, expire, orphans, stats."),
    "dr": ("batch.dr_cli:dr", "Disaster recovery: backup, restore, verify, drill (RTO and RPO)."),
    "policy": ("policies.cli:policy", "Access policies: check, compile, apply, test, explain."),
    "query": ("policies.gateway_cli:query", "Run a query as a user, through that user's secure views."),
    "flink": ("icetide.flink_cli:flink", "A standalone Flink session cluster for cdc run: up, down, status."),
    "spark": ("icetide.spark_cli:spark", "A standalone Spark cluster on loopback: up, down, status, submit."),
    "trino": ("icetide.trino_cli:trino", "The embedded Trino for BI tools: up, down, status, passwd."),
    "catalog": ("policies.catalog_cli:catalog", "Table and column descriptions in the catalog: describe, annotate."),
    "demo": ("icetide.demo:demo", "The main job end to end on the embedded stack."),
    "lineage": ("icetide.lineage_cli:lineage", "Upstream and downstream of a table or topic (OpenLineage events)."),
    "status": ("icetide.status_cli:status", "One screen for the deployment: tables, lag, latency, health."),
}


@dataclass
class App:
    """What every command gets: the settings, output mode and debug flag."""

    config_path: str | None
    debug: bool = False
    _settings: Any = field(default=None, repr=False)

    @property
    def settings(self) -> Any:
        if self._settings is None:
            from icetide.settings import load_settings

            self._settings = load_settings(self.config_path)
        return self._settings


class LazyGroup(click.Group):
    """A group whose subcommands are imported only when invoked (or asked for help)."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            target, _ = self.lazy[cmd_name]
            module_name, attr = target.split(":")
            command = getattr(importlib.import_module(module_name), attr)
            if not isinstance(command, click.Command):
                raise TypeError(f"{target} is not a click command")
            return command
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, self.lazy[name][1]) for name in sorted(self.lazy)]
        rows += [(n, c.get_short_help_str()) for n, c in self.commands.items() if n not in self.lazy]
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows))


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_path", type=click.Path(dir_okay=False), envvar="ICETIDE_CONFIG",
              help="Settings file (YAML). Default: ./icetide.yaml if present.")
@click.option("--debug", is_flag=True, help="Show tracebacks for errors.")
@click.version_option(__version__, prog_name="icetide")
@click.pass_context
def root(ctx: click.Context, config_path: str | None, debug: bool) -> None:
    """icetide — stream row-level changes out of Apache Iceberg and govern who sees what."""
    ctx.obj = App(config_path=config_path, debug=debug)


# `cdc` spans two rooms: the Flink job (streaming) and the downstream consumer (connectors).
CDC_COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("streaming.cli:run", "Run the Flink job: Iceberg changelogs → Kafka change events."),
    "stop": ("streaming.cli:stop", "Stop the CDC jobs on the Flink cluster (cancel, or with a savepoint)."),
    "apply": ("connectors.cli:apply", "Consume change events and apply them downstream."),
    "status": ("connectors.cli:status", "Show the applied position per table and partition."),
    "verify": ("connectors.cli:verify", "Compare the downstream copy with the Iceberg table (rows, checksum)."),
    "mirror": ("streaming.mirror_cli:mirror",
               "Mirror a change topic into an Iceberg table with stock Flink SQL (debezium-json or -avro-confluent)."),
}


@click.group(cls=LazyGroup, lazy=CDC_COMMANDS)
def cdc() -> None:
    """Change data capture: run the Flink job, apply events downstream."""


root.add_command(cdc)


def emit(data: Any, as_json: bool, text: str | None = None) -> None:
    """Print a command's result: JSON for machines, text for people."""
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        click.echo(text if text is not None else data)


def main(argv: list[str] | None = None) -> int:
    """Entry point: user mistakes print one line, bugs print a traceback."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        code = root.main(args=argv, prog_name="icetide", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except IcetideError as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    return code if isinstance(code, int) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
