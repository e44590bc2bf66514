"""`icetide sql`: run Spark SQL statements against the configured Iceberg catalog in one session.

Statements are split on `;` with sqlglot's Spark tokenizer, so semicolons inside strings and
comments are not split points, and statements sqlglot cannot parse (Iceberg's `CALL`,
`ALTER TABLE … SET IDENTIFIER FIELDS`) still pass through to Spark verbatim.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from icetide.errors import ConfigError

from batch.common import SqlError, format_table, spark_for, to_jsonable

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


@dataclass
class StatementResult:
    """One statement's outcome: its text, columns, rows (possibly cut at max_rows), seconds."""

    statement: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    truncated: bool = False
    seconds: float = 0.0

    def as_dicts(self) -> list[dict[str, Any]]:
        return [{c: to_jsonable(v) for c, v in zip(self.columns, r, strict=True)} for r in self.rows]


def split_statements(text: str) -> list[str]:
    """Split a script on top-level `;` (not inside strings or comments); drop empty statements."""
    from sqlglot import TokenType
    from sqlglot.dialects.dialect import Dialect
    from sqlglot.errors import TokenError

    try:
        tokens = Dialect.get_or_raise("spark").tokenize(text)
    except TokenError as exc:
        raise ConfigError(f"cannot split SQL script: {exc}") from None
    statements: list[str] = []
    first: int | None = None
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            if first is not None:
                statements.append(text[first : token.start].strip())
            first = None
        elif first is None:
            first = token.start
    if first is not None:
        statements.append(text[first:].strip())
    return [s for s in statements if s]


def run_statements(spark: SparkSession, statements: list[str], max_rows: int) -> list[StatementResult]:
    """Run each statement in order in one session; stop at the first failure with its index."""
    import time

    results = []
    for index, statement in enumerate(statements, start=1):
        start = time.perf_counter()
        try:
            frame = spark.sql(statement)
            columns = list(frame.columns)
            rows = frame.take(max_rows + 1) if columns else []
        except Exception as exc:  # pyspark raises AnalysisException, ParseException, Py4JJavaError...
            first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise SqlError(f"statement {index} failed: {first_line}") from exc
        truncated = len(rows) > max_rows
        results.append(
            StatementResult(
                statement=statement,
                columns=columns,
                rows=[list(r) for r in rows[:max_rows]],
                truncated=truncated,
                seconds=round(time.perf_counter() - start, 3),
            )
        )
    return results


@click.command()
@click.argument("statement", required=False)
@click.option("-f", "--file", "script", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Run the statements in FILE (separated by ';') instead of STATEMENT.")
@click.option("--max-rows", default=1000, show_default=True, type=click.IntRange(min=0),
              help="Print at most this many rows per statement.")
@click.option("--json", "as_json", is_flag=True,
              help="JSON: one statement → its rows; several → [{statement, columns, rows, ...}].")
@click.pass_obj
def sql(app: Any, statement: str | None, script: Path | None, max_rows: int, as_json: bool) -> None:
    """Run Spark SQL against the configured Iceberg catalog (CALL lake.system.* works).

    Examples: icetide sql "SELECT count(*) FROM sales.vendas" · icetide sql -f maintenance.sql
    """
    if (statement is None) == (script is None):
        raise click.UsageError("give exactly one of STATEMENT or -f FILE")
    text = script.read_text() if script is not None else str(statement)
    statements = split_statements(text)
    if not statements:
        raise ConfigError("no SQL statement to run")
    results = run_statements(spark_for(app.settings), statements, max_rows)
    if as_json:
        if len(results) == 1 and script is None:
            payload: Any = results[0].as_dicts()
        else:
            payload = [
                {"statement": r.statement, "columns": r.columns, "rows": r.as_dicts(),
                 "truncated": r.truncated, "seconds": r.seconds}
                for r in results
            ]
        click.echo(json.dumps(payload, indent=2, default=str))
        return
    for result in results:
        if len(results) > 1:
            click.echo(f"-- {result.statement.splitlines()[0][:100]}")
        click.echo(format_table(result.columns, result.rows))
        if result.truncated:
            click.echo(f"(output cut at {max_rows} rows; use --max-rows)")
        if len(results) > 1:
            click.echo("")
