"""The query gateway's static check: a statement may read nothing but the user's secure views.

Denied: anything that is not a single query (DDL, DML, SET, SHOW, EXPLAIN, CALL, ...); base
tables; other users' views; metadata tables (`t.files`, `t.snapshots`, any 4-part name);
time travel (`VERSION AS OF`, `TIMESTAMP AS OF`); path reads (``parquet.`/p` ``) and
table-valued functions; script transforms; `SELECT INTO`; functions that reach outside the
query (reflect, java_method, input_file_name, ...) or raise errors on demand; `${...}`
variable substitution. Unqualified view names are qualified to the user's namespace. What
runs is the checked tree rendered again, never the text the user sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlglot
from icetide.audit import AuditLog, new_query_id
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from policies.compiler import CompiledPolicy, audience

DENIED_FUNCTIONS = frozenset({
    "reflect", "java_method", "try_reflect", "raise_error", "assert_true", "input_file_name",
    "input_file_block_start", "input_file_block_length", "identifier", "getenv", "current_setting", "query",
    "query_table", "read_text", "read_blob", "read_csv", "read_parquet", "read_json", "glob", "sqlite_scan",
    "read_files", "java_call", "url_decode_to_file",
})
PATH_FORMATS = frozenset({"parquet", "csv", "json", "orc", "avro", "text", "binaryfile", "delta", "file", "jdbc",
                          "iceberg", "hive", "xml"})


@dataclass(frozen=True)
class Decision:
    """The gateway's verdict on one statement."""

    allowed: bool
    reason: str
    user: str
    tables: tuple[str, ...] = ()  # policy tables read (through their views)
    statement: exp.Expression | None = field(default=None, repr=False)

    def sql(self, dialect: str = "spark") -> str:
        if self.statement is None:
            raise ValueError("a denied statement has no SQL to run")
        return self.statement.sql(dialect=dialect)


def _deny(user: str, reason: str) -> Decision:
    return Decision(False, reason, user)


def _cte_names(tree: exp.Expression) -> set[str]:
    return {cte.alias_or_name.lower() for cte in tree.find_all(exp.CTE)}


def check_query(sql: str, user: str, compiled: CompiledPolicy, catalog: str = "lake") -> Decision:
    """Decide whether `user` may run `sql`; when allowed, the statement reads only their views."""
    if "${" in sql:
        return _deny(user, "variable substitution (${...}) is not allowed")
    try:
        statements = [s for s in sqlglot.parse(sql, read="spark") if s is not None]
    except (ParseError, TokenError):
        return _deny(user, "not valid SQL")
    if len(statements) != 1:
        return _deny(user, "exactly one statement per request")
    tree: exp.Expression = statements[0]  # type: ignore[assignment]
    if not isinstance(tree, exp.Query):
        return _deny(user, f"only queries are allowed, not {tree.key.upper()}")
    views = {t.split(".")[-1]: t for (u, t), a in compiled.access.items() if u == user and a.visible}
    own = audience(user)
    ctes = _cte_names(tree)
    read: list[str] = []
    for node in list(tree.walk()):
        if isinstance(node, exp.Into | exp.QueryTransform):
            return _deny(user, "SELECT INTO and script transforms are not allowed")
        if isinstance(node, exp.Func):
            name = (node.name if isinstance(node, exp.Anonymous) else node.sql_name()).lower()
            if name in DENIED_FUNCTIONS:
                return _deny(user, f"function {name}() is not allowed")
        if not isinstance(node, exp.Table) or node.find_ancestor(exp.Hint) is not None:
            continue
        if node.args.get("version") is not None or node.args.get("when") is not None:
            return _deny(user, "time travel is not allowed (read the current secure view)")
        if isinstance(node.this, exp.Dot):
            return _deny(user, "metadata tables are not allowed")
        if not isinstance(node.this, exp.Identifier):
            return _deny(user, "table functions are not allowed")
        parts = [p.name.lower() for p in node.parts]
        name = parts[-1]
        if (node.args.get("db") is not None and node.db.lower() in PATH_FORMATS) or "/" in name or ":" in name:
            return _deny(user, "path reads are not allowed")
        if len(parts) == 1 and name in ctes:
            continue
        if len(parts) > 3:
            return _deny(user, "metadata tables are not allowed")
        if len(parts) == 3 and parts[0] != catalog.lower():
            return _deny(user, f"only catalog {catalog} is readable (metadata tables are not allowed)")
        if len(parts) >= 2 and parts[-2] != own:
            return _deny(user, f"{'.'.join(parts)} is not one of your secure views (read {own}.<table>)")
        if name not in views:
            return _deny(user, f"no secure view {own}.{name} for {user}")
        read.append(views[name])
        alias = node.args.get("alias")
        replacement = exp.table_(name, db=own, catalog=catalog, quoted=True)
        if alias is not None:
            replacement.set("alias", alias)
        for key in ("joins", "laterals", "pivots", "sample", "hints"):
            if node.args.get(key):
                replacement.set(key, node.args[key])
        node.replace(replacement)
    if not read and not views:
        return _deny(user, f"{user} has no secure views")
    return Decision(True, "allowed", user, tuple(dict.fromkeys(read)), tree)


def audit_fields(compiled: CompiledPolicy, decision: Decision) -> dict[str, object]:
    """Filters and masks applied to the tables a decision reads (for the audit record)."""
    filters: dict[str, str] = {}
    masks: dict[str, dict[str, str]] = {}
    for table in decision.tables:
        access = compiled.get(decision.user, table)
        if access is None:
            continue
        filters[table] = access.filter.sql(dialect="spark")
        masks[table] = {c.name: c.mask.label() for c in access.columns if c.mask.kind != "none"}
    return {"filters": filters, "masks": masks}


@dataclass(frozen=True)
class Outcome:
    """What the gateway answers: rows when allowed and run, a reason otherwise."""

    decision: Decision
    query_id: str
    columns: tuple[str, ...] = ()
    rows: tuple[tuple[object, ...], ...] = ()
    error: str | None = None  # the engine's error class only: messages can echo hidden values


Executor = Callable[[str], tuple[list[str], list[tuple[object, ...]]]]


def run_query(sql: str, user: str, compiled: CompiledPolicy, execute: Executor, audit: AuditLog,
              dialect: str = "spark", catalog: str = "lake") -> Outcome:
    """Check, audit and (when allowed) run one statement; every attempt is audited."""
    decision = check_query(sql, user, compiled, catalog)
    query_id = new_query_id()
    person = compiled.checked.policy.users.get(user)
    common: dict[str, Any] = {
        "user": user, "groups": list(person.groups) if person else [], "action": "select",
        "policy_id": compiled.policy_id, "policy_version": compiled.version, "policy_hash": compiled.content_hash,
        "query_id": query_id, "query": sql,
    }
    if not decision.allowed:
        audit.append(resource=[], result="denied", reason=decision.reason, **common)
        return Outcome(decision, query_id)
    resource = [f"{catalog}.{audience(user)}.{t.split('.')[-1]}" for t in decision.tables]
    fields = audit_fields(compiled, decision)
    try:
        columns, rows = execute(decision.sql(dialect))
    except Exception as exc:  # the engine's message may contain hidden values: keep only its class
        error = getattr(exc, "getErrorClass", lambda: None)() or type(exc).__name__
        audit.append(resource=resource, result="error", reason=str(error), **common, **fields)  # type: ignore[arg-type]
        return Outcome(decision, query_id, error=str(error))
    audit.append(resource=resource, result="allowed", **common, **fields)  # type: ignore[arg-type]
    return Outcome(decision, query_id, tuple(columns), tuple(tuple(r) for r in rows))
