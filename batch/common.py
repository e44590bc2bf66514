"""What every batch command shares: the Spark session, table names, result tables, CALL statements.

Table names given by users (`sales.vendas`, or `lake.sales.vendas`) are parsed with sqlglot and
rendered back with quoted identifiers, so nothing a user types is pasted into SQL unquoted.
Iceberg procedure calls (`CALL lake.system.*`) are not sqlglot syntax; `call_sql` renders their
arguments as sqlglot literals.
"""

from __future__ import annotations

import datetime as dt
import decimal
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from icetide.console import table_text
from icetide.errors import ConfigError, IcetideError
from sqlglot import exp

if TYPE_CHECKING:
    from icetide.settings import Role, Settings
    from pyspark.sql import SparkSession

DIALECT = "spark"


def spark_for(settings: Settings, role: Role = "writer") -> SparkSession:
    """The process's Spark session on the configured catalog (started on first use, ~6 s), as `role`."""
    from icetide.spark import spark_session

    return spark_session(settings, role)


def table_ref(settings: Settings, name: str) -> exp.Table:
    """`ns.table` or `catalog.ns.table` → a fully qualified sqlglot table in the configured catalog."""
    try:
        table = exp.to_table(name, dialect=DIALECT)
    except Exception as exc:  # sqlglot raises several kinds of parse errors
        raise ConfigError(f"not a table name: {name!r} ({exc})") from None
    if not table.args.get("db"):
        raise ConfigError(f"table name must include its namespace, e.g. sales.vendas (got {name!r})")
    catalog = table.args.get("catalog")
    if catalog is None:
        table.set("catalog", exp.to_identifier(settings.catalog.name))
    elif catalog.name != settings.catalog.name:
        raise ConfigError(f"table {name!r} is not in the configured catalog {settings.catalog.name!r}")
    return table


def render(node: exp.Expr) -> str:
    """Spark SQL for a sqlglot node, identifiers always quoted."""
    return node.sql(dialect=DIALECT, identify=True)


def short_name(table: exp.Table) -> str:
    """`ns.table` (no catalog): how Iceberg procedures name a table of their own catalog."""
    return f"{table.db}.{table.name}"


def metadata_table(table: exp.Table, kind: str) -> str:
    """`lake`.`ns`.`t`.`snapshots` — Iceberg's metadata tables are a fourth name part."""
    return f"{render(table)}.{render(exp.to_identifier(kind))}"


def _literal(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | decimal.Decimal):
        return render(exp.Literal.number(value))
    if isinstance(value, Mapping):
        parts = [f"{_literal(str(k))}, {_literal(str(v))}" for k, v in value.items()]
        return f"map({', '.join(parts)})"
    if isinstance(value, dt.datetime):
        return f"TIMESTAMP {render(exp.Literal.string(value.isoformat(sep=' ')))}"
    return render(exp.Literal.string(str(value)))


def call_sql(catalog: str, procedure: str, args: Mapping[str, Any]) -> str:
    """`CALL <catalog>.system.<procedure>(name => literal, ...)`; None arguments are left out."""
    rendered = ", ".join(f"{key} => {_literal(value)}" for key, value in args.items() if value is not None)
    name = ".".join(render(exp.to_identifier(p)) for p in (catalog, "system", procedure))
    return f"CALL {name}({rendered})"


def to_jsonable(value: Any) -> Any:
    """Spark row values → JSON-friendly values (Decimal → str keeps exact cents)."""
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "asDict"):  # a Spark Row (struct): keep field names
        return {str(k): to_jsonable(v) for k, v in value.asDict().items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    return value


def format_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Spark rows as a text table (icetide.console: numbers right-aligned, NULL shown as `NULL`)."""
    return table_text(columns, rows, show=lambda v: str(to_jsonable(v)))


@contextmanager
def progress(spark: SparkSession, label: str, quiet: bool) -> Iterator[None]:
    """A long Spark step on a progress bar of its tasks (stderr; nothing with --json, one line on a pipe)."""
    from icetide.console import progress as bar_for
    from icetide.spark import task_progress

    with bar_for(label, unit="tasks", quiet=quiet) as bar, task_progress(spark, bar):
        yield


class SqlError(IcetideError):
    """Spark rejected a statement (syntax, missing table, conflict, ...): a user-facing error, exit 1."""


@contextmanager
def spark_errors(what: str) -> Iterator[None]:
    """Turn Spark's exceptions into one-line SqlErrors (the traceback stays on `__cause__`)."""
    try:
        yield
    except IcetideError:
        raise
    except Exception as exc:
        if type(exc).__module__.split(".")[0] not in {"pyspark", "py4j"}:
            raise
        text = str(exc).strip()
        first_line = text.splitlines()[0] if text else type(exc).__name__
        raise SqlError(f"{what}: {first_line}") from exc
