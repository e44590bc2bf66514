"""`icetide policy ...`: check, compile, explain, test, diff, apply, watch, audit-verify.

Exit codes: 0 success; 1 the policy (or a test, or the audit chain) is wrong; 2 usage.
Tables' schemas come from the Iceberg catalog unless `--schema FILE` gives them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from icetide.audit import Verdict, log_path
from icetide.cli import emit
from icetide.console import table_text
from icetide.errors import PolicyError

from policies.compiler import CompiledPolicy, compile_output, compile_policy, to_json
from policies.schemas import CatalogSchemaProvider, DictSchemaProvider, SchemaProvider
from policies.validate import CheckedPolicy, PolicyErrors, check_file, validate

TARGETS = ("spark", "trino", "duckdb")
schema_option = click.option("--schema", "schema_file", type=click.Path(exists=True, dir_okay=False),
                             help="Table schemas (YAML) instead of the Iceberg catalog.")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def provider_for(ctx: click.Context, schema_file: str | None) -> SchemaProvider:
    if schema_file:
        return DictSchemaProvider.from_file(schema_file)
    return CatalogSchemaProvider(ctx.obj.settings)


def state_paths(ctx: click.Context) -> tuple[Path, Path]:
    """(applied-state file, audit log) under the settings' state directory."""
    state = Path(ctx.obj.settings.state_dir)
    return state / "policies" / "applied.json", log_path(state)


def load_checked(ctx: click.Context, file: str, schema_file: str | None,
                 targets: tuple[str, ...] = ()) -> CheckedPolicy:
    """The checked policy, with the type rules of the engines it is compiled for (`targets`)."""
    return check_file(file, provider_for(ctx, schema_file), targets)


def _errors_data(errors: list[PolicyError]) -> list[dict[str, Any]]:
    return [{"file": e.file, "line": e.line, "col": e.col, "message": e.reason} for e in errors]


@click.group()
def policy() -> None:
    """Access policies: YAML row filters and column masks compiled into secure views."""


@policy.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--target", "targets", type=click.Choice(TARGETS), multiple=True,
              help="Check for these engines only (repeatable; default: every engine).")
@schema_option
@json_option
@click.pass_context
def check(ctx: click.Context, file: str, targets: tuple[str, ...], schema_file: str | None, as_json: bool) -> None:
    """Validate FILE against the table schemas, and its masks against each engine's type rules; list every
    error with file:line:col."""
    from policies.combine import findings
    from policies.loader import load_policy

    try:
        checked, errors = validate(load_policy(file), provider_for(ctx, schema_file), targets or TARGETS)
    except PolicyError as exc:
        checked, errors = None, [exc]
    if errors:
        if as_json:
            emit({"ok": False, "errors": _errors_data(errors)}, True)
        else:
            for e in errors:
                click.echo(str(e), err=True)
        raise click.exceptions.Exit(1)
    assert checked is not None
    found = [f.as_dict() for f in findings(checked)]
    text = "\n".join([f"{f['where']}: {f['kind']}: {f['message']}" for f in found] +
                     [f"ok: {file} (policy {checked.policy.id} v{checked.policy.version}, "
                      f"hash {checked.policy.content_hash[:12]})"])
    emit({"ok": True, "policy": checked.policy.id, "version": checked.policy.version,
          "content_hash": checked.policy.content_hash, "findings": found}, as_json, text)


@policy.command("compile")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--target", type=click.Choice(TARGETS), required=True, help="Engine to compile for.")
@click.option("--catalog", default=None, help="Catalog name in generated SQL (default: settings).")
@click.option("--out", type=click.Path(dir_okay=False), help="Write the output to this file.")
@schema_option
@json_option
@click.pass_context
def compile_cmd(ctx: click.Context, file: str, target: str, catalog: str | None, out: str | None,
                schema_file: str | None, as_json: bool) -> None:
    """Compile FILE into Spark views, Trino rules.json or DuckDB SQL."""
    catalog = catalog or (ctx.obj.settings.catalog.name if not schema_file else "lake")
    compiled = compile_policy(load_checked(ctx, file, schema_file, (target,)))
    data = compile_output(compiled, target, catalog)
    if target == "trino" and not as_json:
        text = to_json(data["rules"])
    elif target == "spark" and not as_json:
        text = ";\n".join(data["statements"]) + ";"
    elif not as_json:
        text = "\n".join(f"-- {k}\n{v};" for k, v in data["queries"].items())
    else:
        text = to_json(data)
    if out:
        Path(out).write_text(text + "\n")
        emit({"written": out, "target": target}, as_json, f"wrote {out}")
    else:
        click.echo(text)


@policy.command()
@click.argument("file", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--user", required=True, help="User name as declared in the policy.")
@click.option("--table", required=True, help="Table as namespace.table.")
@schema_option
@json_option
@click.pass_context
def explain(ctx: click.Context, file: str | None, user: str, table: str, schema_file: str | None,
            as_json: bool) -> None:
    """What USER would see of TABLE: the effective filter, masks and rule ids.

    FILE defaults to the policy last applied.
    """
    from policies.apply import AppliedState
    from policies.combine import resolve

    if file is None:
        state = AppliedState.read(state_paths(ctx)[0])
        if not state.policy_file:
            raise click.UsageError("no FILE given and no policy has been applied")
        file, schema_file = state.policy_file, schema_file or state.schema_file or None

    access = resolve(load_checked(ctx, file, schema_file), user, table)
    columns = [{"name": c.name, "type": c.type, "mask": c.mask.label(), "source": c.source,
                "rules": ",".join(c.rule_ids)} for c in access.columns]
    data = {"user": user, "table": table, "visible": access.visible, "filter": access.filter.sql(dialect="spark"),
            "rule_ids": list(access.rule_ids), "notes": list(access.notes), "columns": columns}
    lines = [f"{user} on {table}: " + ("visible" if access.visible else "NO ACCESS (deny by default)"),
             f"  rows where: {data['filter']}", f"  rules: {', '.join(access.rule_ids) or '-'}"]
    if columns:
        lines.append(table_text(["column", "mask", "from", "rules"],
                                [[c["name"], c["mask"], c["source"], c["rules"] or "-"] for c in columns], count=False))
    lines += [f"  note: {n}" for n in access.notes]
    emit(data, as_json, "\n".join(lines))


@policy.command("test")
@click.argument("fixtures", type=click.Path(exists=True, dir_okay=False))
@json_option
def test_cmd(fixtures: str, as_json: bool) -> None:
    """Run FIXTURES (YAML cases: user, table, expected rows/values) against the views in DuckDB."""
    from policies.fixtures import run_fixtures

    results = run_fixtures(fixtures)
    failed = [r for r in results if not r.passed]
    text = "\n".join(f"{'PASS' if r.passed else 'FAIL'} {r.name}" + ("" if r.passed else f": {r.message}")
                     for r in results) + f"\n{len(results) - len(failed)} passed, {len(failed)} failed"
    emit({"passed": len(results) - len(failed), "failed": len(failed), "cases": [r.as_dict() for r in results]},
         as_json, text)
    if failed:
        raise click.exceptions.Exit(1)


@policy.command("diff")
@click.argument("old", type=click.Path(exists=True, dir_okay=False))
@click.argument("new", type=click.Path(exists=True, dir_okay=False))
@schema_option
@json_option
@click.pass_context
def diff_cmd(ctx: click.Context, old: str, new: str, schema_file: str | None, as_json: bool) -> None:
    """Who gains or loses which rows and columns going from OLD to NEW."""
    from policies.diff import diff

    changes = diff(load_checked(ctx, old, schema_file), load_checked(ctx, new, schema_file))
    emit({"changes": [c.as_dict() for c in changes]}, as_json,
         "\n".join(c.text() for c in changes) or "no change in effective access")


def _trino_apply(ctx: click.Context) -> Any:
    from icetide.services.trino import TrinoServer

    from policies.trino_apply import apply_trino

    settings = ctx.obj.settings
    server = TrinoServer(settings.state_dir)

    def run(compiled: CompiledPolicy) -> dict[str, Any]:
        return apply_trino(compiled, server.rules_file, settings.catalog.name, settings.trino.bi_account,
                           server.policy_file)

    return run


def _target_apply(ctx: click.Context, target: str, schema_file: str | None) -> Any:
    return _trino_apply(ctx) if target == "trino" else _spark_apply(ctx, schema_file)


def _spark_apply(ctx: click.Context, schema_file: str | None) -> Any:
    from icetide.spark import spark_session

    from policies.apply import apply_policy

    settings = ctx.obj.settings
    state_file, _ = state_paths(ctx)

    def run(compiled: CompiledPolicy) -> dict[str, Any]:
        return apply_policy(spark_session(settings), compiled, state_file, settings.catalog.name, schema_file or "")

    return run


def _audit_apply(ctx: click.Context, compiled: CompiledPolicy, result: str, reason: str | None,
                 views: list[str]) -> None:
    import getpass

    from icetide.audit import AuditLog

    _, log = state_paths(ctx)
    AuditLog(log).append(user=getpass.getuser(), action="apply", resource=views, result=result, reason=reason,
                         policy_id=compiled.policy_id, policy_version=compiled.version,
                         policy_hash=compiled.content_hash)


def _record_lineage(ctx: click.Context, compiled: CompiledPolicy, target: str, result: dict[str, Any]) -> None:
    """One run event per governed table: the table → its secure views (Spark) or Trino's rules for it."""
    from icetide import lineage

    settings = ctx.obj.settings
    for name in sorted({table for _, table in compiled.access}):
        short = name.split(".")[-1]
        if target == "trino":
            outputs = [lineage.Dataset(f"trino-rules://{result['rules_file']}", name)]
        else:
            outputs = [lineage.Dataset(settings.warehouse, v.replace("`", "")) for v in result["views"]
                       if v.replace("`", "").split(".")[-1] == short]
        lineage.emit(settings, f"policy.apply.{target}", [lineage.table(settings, name)], outputs)


APPLY_TARGETS = ("spark", "trino")
target_option = click.option("--target", type=click.Choice(APPLY_TARGETS), default="spark", show_default=True,
                             help="spark: the secure views; trino: the embedded Trino's rules.json (atomic write).")


@policy.command("apply")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@target_option
@schema_option
@json_option
@click.pass_context
def apply_cmd(ctx: click.Context, file: str, target: str, schema_file: str | None, as_json: bool) -> None:
    """Put FILE in force: Spark's secure views, or Trino's rules (a failure keeps the previous ones)."""
    from policies.apply import ApplyError

    compiled = compile_policy(load_checked(ctx, file, schema_file, (target,)))
    try:
        result = _target_apply(ctx, target, schema_file)(compiled)
    except ApplyError as exc:
        _audit_apply(ctx, compiled, "error", str(exc), [])
        raise
    _audit_apply(ctx, compiled, "applied", None, result["views"])
    _record_lineage(ctx, compiled, target, result)
    text = (f"applied {result['policy']} v{result['version']} to Trino: {result['rules_file']}" if target == "trino"
            else f"applied {result['policy']} v{result['version']}: {len(result['views'])} views, "
                 f"{len(result['dropped'])} dropped")
    emit(result, as_json, text)


@policy.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--interval", default=1.0, show_default=True, help="Seconds between checks of FILE.")
@target_option
@schema_option
@click.pass_context
def watch(ctx: click.Context, file: str, interval: float, target: str, schema_file: str | None) -> None:
    """Re-apply FILE whenever it changes; a broken file keeps the last good policy in force."""
    from policies.apply import ApplyError, Watcher

    spark_apply = _target_apply(ctx, target, schema_file)

    def load(path: Path) -> CompiledPolicy:
        return compile_policy(load_checked(ctx, str(path), schema_file, (target,)))

    def apply(compiled: CompiledPolicy) -> None:
        try:
            result = spark_apply(compiled)
        except ApplyError as exc:
            _audit_apply(ctx, compiled, "error", str(exc), [])
            raise
        _audit_apply(ctx, compiled, "applied", None, result["views"])

    Watcher(Path(file), load, apply, lambda m: click.echo(m, err=True)).run(interval)


def _verdict_text(verdict: Verdict, where: str) -> str:
    if not verdict.ok:
        return f"TAMPERED{where}: {verdict.reason}"
    return f"ok: {verdict.reason}" if verdict.reason else f"ok: {verdict.records} records, chain intact"


@policy.command("audit-verify")
@click.argument("log", required=False, type=click.Path(dir_okay=False))
@json_option
@click.pass_context
def audit_verify(ctx: click.Context, log: str | None, as_json: bool) -> None:
    """Check the audit log's hash chain; exit 1 when a record was altered, removed or reordered."""
    from icetide.audit import verify

    path = Path(log) if log else state_paths(ctx)[1]
    verdict = verify(path)
    where = f" at line {verdict.line}" if verdict.line else ""
    emit({"log": str(path), **verdict.as_dict()}, as_json,
         _verdict_text(verdict, where))
    if not verdict.ok:
        raise click.exceptions.Exit(1)


__all__ = ["PolicyErrors", "policy"]
