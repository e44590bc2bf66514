"""`icetide query --as USER "SQL"`: run a statement through USER's secure views, or refuse it.

The policy in force is the one `policy apply` last applied (its file is recorded in the
applied state); if that file changed since, every query is denied until it is applied
again. Every attempt — allowed, denied or failed — is written to the audit log.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from icetide.cli import emit
from icetide.errors import AccessDenied, PolicyError


def _compiled(ctx: click.Context, policy_file: str | None, schema_file: str | None) -> Any:
    from policies.apply import AppliedState
    from policies.cli import provider_for, state_paths
    from policies.compiler import compile_policy
    from policies.validate import check_file

    state = AppliedState.read(state_paths(ctx)[0])
    file = policy_file or state.policy_file
    if not file:
        raise PolicyError("no policy has been applied (run `icetide policy apply FILE`)", file="<state>")
    compiled = compile_policy(check_file(file, provider_for(ctx, schema_file or state.schema_file or None)),
                              load_keys=False)
    if policy_file is None and compiled.content_hash != state.policy_hash:
        raise AccessDenied(f"{file} changed since it was applied: apply it again (all queries denied)")
    return compiled


def spark_executor(settings: Any) -> Any:
    """Run SQL on the Spark session with ANSI errors off (casts yield NULL, not value-revealing errors)."""
    from icetide.spark import spark_session

    def execute(sql: str) -> tuple[list[str], list[tuple[object, ...]]]:
        spark = spark_session(settings, "bi")  # queries only read
        overrides = {"spark.sql.ansi.enabled": "false", "spark.sql.variable.substitute": "false"}
        before = {k: spark.conf.get(k, None) for k in overrides}
        for key, value in overrides.items():
            spark.conf.set(key, value)
        try:
            df = spark.sql(sql)
            return list(df.columns), [tuple(r) for r in df.collect()]
        finally:
            for key, old in before.items():
                if old is None:
                    spark.conf.unset(key)
                else:
                    spark.conf.set(key, old)

    return execute


@click.command()
@click.option("--as", "user", required=True, help="The user the query runs as.")
@click.option("--policy", "policy_file", type=click.Path(exists=True, dir_okay=False),
              help="Policy file (default: the one last applied).")
@click.option("--schema", "schema_file", type=click.Path(exists=True, dir_okay=False),
              help="Table schemas (YAML) instead of the Iceberg catalog.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.argument("sql")
@click.pass_context
def query(ctx: click.Context, user: str, policy_file: str | None, schema_file: str | None, as_json: bool,
          sql: str) -> None:
    """Run SQL as USER: only reads of USER's secure views are allowed; every attempt is audited."""
    from icetide.audit import AuditLog

    from policies.cli import state_paths
    from policies.gateway import run_query

    _, log = state_paths(ctx)
    settings = ctx.obj.settings
    try:
        compiled = _compiled(ctx, policy_file, schema_file)
    except (PolicyError, AccessDenied) as exc:
        AuditLog(log).append(user=user, action="select", resource=[], result="denied", reason=str(exc), query=sql)
        raise AccessDenied(f"denied: {exc}") from None
    outcome = run_query(sql, user, compiled, spark_executor(settings), AuditLog(Path(log)),
                        catalog=settings.catalog.name)
    if not outcome.decision.allowed:
        raise AccessDenied(f"denied (query {outcome.query_id}): {outcome.decision.reason}")
    if outcome.error is not None:
        raise AccessDenied(f"query {outcome.query_id} failed: {outcome.error}")
    data = {"query_id": outcome.query_id, "columns": list(outcome.columns), "rows": [list(r) for r in outcome.rows]}
    text = "\n".join(["\t".join(outcome.columns)] + ["\t".join("NULL" if v is None else str(v) for v in r)
                                                     for r in outcome.rows])
    emit(data, as_json, text)
