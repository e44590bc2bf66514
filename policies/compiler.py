"""Compile a checked policy into its intermediate form, then into each engine's artefacts.

Intermediate form: one `Access` per (user, table) (see `combine`). Outputs, all built as
sqlglot syntax trees and rendered per dialect (no SQL is assembled from strings):
- Spark: `CREATE OR REPLACE VIEW lake.sec_<user>.<table>` per visible table, carrying the
  rule ids and the policy's content hash in COMMENT and TBLPROPERTIES;
- Trino: a file-based access-control `rules.json` (one entry per user and table, then a
  catch-all that denies, since Trino's first match wins and a missing section allows);
- DuckDB: the SELECT that filters and masks change-stream rows (`policies.stream`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from icetide.errors import PolicyError
from sqlglot import exp

from policies.combine import Access, all_access
from policies.keys import HmacPads, default_key_id, read_key
from policies.masks import render
from policies.model import MaskSpec
from policies.validate import CheckedPolicy

AUDIENCE_PREFIX = "sec_"


@dataclass(frozen=True)
class CompiledPolicy:
    """The intermediate form every target renders from."""

    checked: CheckedPolicy
    access: dict[tuple[str, str], Access]
    pads: dict[str, HmacPads] = field(default_factory=dict, repr=False)

    @property
    def policy_id(self) -> str:
        return self.checked.policy.id

    @property
    def version(self) -> int:
        return self.checked.policy.version

    @property
    def content_hash(self) -> str:
        return self.checked.policy.content_hash

    def get(self, user: str, table: str) -> Access | None:
        return self.access.get((user, table))

    def key_for(self, mask: MaskSpec) -> HmacPads | None:
        if mask.kind != "hash":
            return None
        return self.pads[mask.key or str(default_key_id(self.checked.policy))]


def compile_policy(checked: CheckedPolicy, environ: Mapping[str, str] | None = None,
                   load_keys: bool = True) -> CompiledPolicy:
    """Resolve every user × table and load the keys the chosen masks need.

    `load_keys=False` is for callers that never render masks (the gateway, explain, diff).
    """
    access = {(a.user, a.table): a for a in all_access(checked)}
    policy = checked.policy
    pads: dict[str, HmacPads] = {}
    for a in access.values() if load_keys else ():
        for c in a.columns:
            if c.mask.kind == "hash":
                kid = c.mask.key or str(default_key_id(policy))
                if kid not in pads:
                    pads[kid] = read_key(policy.keys[kid], environ)
    return CompiledPolicy(checked, access, pads)


def audience(user: str) -> str:
    """The namespace holding a user's secure views (user names are [a-z][a-z0-9_]*)."""
    return AUDIENCE_PREFIX + user


def table_ref(name: str, catalog: str | None = None) -> exp.Table:
    db, table = name.split(".", 1)
    return exp.table_(table, db=db, catalog=catalog, quoted=True)


def _qualify_lookups(tree: exp.Expression, catalog: str | None) -> exp.Expression:
    """The filter with lookup tables qualified by the catalog (a copy only when it has any)."""
    if not catalog or not any(isinstance(n, exp.Table) for n in tree.walk()):
        return tree

    def fix(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table) and node.db and not node.catalog:
            return table_ref(f"{node.db}.{node.name}", catalog)
        return node

    return tree.copy().transform(fix)


def masked_select(compiled: CompiledPolicy, access: Access, source: exp.Expression, dialect: str,
                  catalog: str | None = None) -> exp.Select:
    """SELECT <masked columns> FROM source WHERE <filter>: the core of every target."""
    columns = []
    for c in access.columns:
        value = render(c.mask, exp.column(c.name, quoted=True), c.type, dialect, compiled.key_for(c.mask))
        columns.append(exp.Alias(this=value, alias=exp.to_identifier(c.name, quoted=True)))
    where = access.filter if not access.lookups else _qualify_lookups(access.filter, catalog)
    where = where if access.visible else exp.false()
    # built directly (builder methods deep-copy every argument, which dominates large compiles)
    return exp.Select(expressions=columns, from_=exp.From(this=source), where=exp.Where(this=where))


def _metadata(compiled: CompiledPolicy, access: Access) -> dict[str, str]:
    keys = sorted({c.mask.key or str(default_key_id(compiled.checked.policy))
                   for c in access.columns if c.mask.kind == "hash"})
    return {
        "icetide.policy": compiled.policy_id,
        "icetide.policy_version": str(compiled.version),
        "icetide.policy_hash": compiled.content_hash,
        "icetide.rule_ids": ",".join(access.rule_ids),
        "icetide.key_ids": ",".join(keys),
        "icetide.user": access.user,
        "icetide.table": access.table,
    }


def spark_view(compiled: CompiledPolicy, access: Access, catalog: str = "lake") -> exp.Create:
    """CREATE OR REPLACE VIEW for one user's view of one table."""
    meta = _metadata(compiled, access)
    comment = (f"icetide policy {meta['icetide.policy']} v{meta['icetide.policy_version']} "
               f"hash {meta['icetide.policy_hash']} rules {meta['icetide.rule_ids']}")
    properties: list[exp.Expression] = [exp.SchemaCommentProperty(this=exp.Literal.string(comment))]
    properties += [exp.Property(this=exp.Literal.string(k), value=exp.Literal.string(v)) for k, v in meta.items()]
    view = exp.table_(access.table.split(".")[-1], db=audience(access.user), catalog=catalog, quoted=True)
    select = masked_select(compiled, access, table_ref(access.table, catalog), "spark", catalog)
    return exp.Create(this=view, kind="VIEW", replace=True, expression=select,
                      properties=exp.Properties(expressions=properties))


def spark_statements(compiled: CompiledPolicy, catalog: str = "lake") -> list[exp.Expression]:
    """Namespaces then views, for every user with at least one visible table."""
    out: list[exp.Expression] = []
    for user in compiled.checked.policy.users:
        views = [a for (u, _), a in compiled.access.items() if u == user and a.visible]
        if not views:
            continue
        out.append(exp.Create(this=exp.table_(audience(user), db=catalog, quoted=True), kind="SCHEMA", exists=True))
        out += [spark_view(compiled, a, catalog) for a in views]
    return out


def spark_sql(compiled: CompiledPolicy, catalog: str = "lake") -> list[str]:
    return [s.sql(dialect="spark") for s in spark_statements(compiled, catalog)]


# BI tools list tables through these system schemas (JDBC DatabaseMetaData, Superset's table comments); their
# rows are filtered by Trino's own access checks, so granting SELECT on them shows nothing a rule hides
TRINO_METADATA_SCHEMAS = "^(jdbc|metadata)$"
# the Iceberg connector's hidden columns: the data file of a row (its path holds the partition values, a masked
# partition column's too), the file's write time, the partition tuple. No policy classifies them, so a user whose
# access is filtered or masked may not read them (deny by default); a user who sees the whole table in clear may
TRINO_HIDDEN_COLUMNS = ("$path", "$file_modified_time", "$partition")


class TrinoTargetError(PolicyError):
    """The policy cannot be put in force in Trino as written."""


def _trino_hash_error(compiled: CompiledPolicy, access: Access, column: str, mask: MaskSpec) -> TrinoTargetError:
    pos = mask.pos
    return TrinoTargetError(
        f"mask {mask.label()} on {access.table}.{column} for {access.user}: the Trino target refuses keyed hashes "
        "(Trino's column masks are SQL that EXPLAIN shows to the querying user, so the HMAC key would leak); "
        "use redact or null for the users Trino serves", file=pos.file, line=pos.line, col=pos.col)


def trino_rules(compiled: CompiledPolicy, catalog: str = "lake", bi_account: str | None = None) -> dict[str, Any]:
    """Trino file-based access control: explicit entries, BI metadata, then a catch-all that denies.

    `bi_account`: a service account (Superset, a gateway) allowed to impersonate the policy's users (and
    nobody else); it reads nothing itself. TrinoTargetError for a `hash` mask (see `_trino_hash_error`).
    """
    tables: list[dict[str, Any]] = []
    for (user, table), access in compiled.access.items():
        schema_name, table_name = table.split(".", 1)
        entry: dict[str, Any] = {"user": f"^{re.escape(user)}$", "catalog": f"^{re.escape(catalog)}$",
                                 "schema": f"^{re.escape(schema_name)}$", "table": f"^{re.escape(table_name)}$"}
        if not access.visible:
            entry["privileges"] = []
        else:
            entry["privileges"] = ["SELECT"]
            bound = _qualify_lookups(access.filter, catalog) if access.lookups else access.filter
            filter_sql = bound.sql(dialect="trino")
            if filter_sql != "TRUE":
                entry["filter"] = filter_sql
            columns: list[dict[str, str | bool]] = []
            for c in access.columns:
                if c.mask.kind == "none":
                    continue
                if c.mask.kind == "hash":
                    raise _trino_hash_error(compiled, access, c.name, c.mask)
                masked = render(c.mask, exp.column(c.name, quoted=True), c.type, "trino", None)
                columns.append({"name": c.name, "mask": masked.sql(dialect="trino")})
            if columns or "filter" in entry:
                columns += [{"name": name, "allow": False} for name in TRINO_HIDDEN_COLUMNS]
            if columns:
                entry["columns"] = columns
        tables.append(entry)
    tables.append({"catalog": "^system$", "schema": TRINO_METADATA_SCHEMAS, "privileges": ["SELECT"]})
    tables.append({"privileges": []})
    # nobody owns a schema: without schema rules Trino makes everyone an owner, and a schema is then listed
    # to a user the policy grants nothing in it; with this one a schema shows only where a table is granted
    # no session property may be set: `lake.statistics_enabled` would bring back the file statistics the
    # embedded Trino turns off (they are over rows outside a user's filter and raw values under a mask)
    rules: dict[str, Any] = {"catalogs": [{"catalog": ".*", "allow": "read-only"}], "schemas": [{"owner": False}],
                             "tables": tables, "system_session_properties": [{"allow": False}],
                             "catalog_session_properties": [{"allow": False}]}
    if bi_account:
        users = "|".join(re.escape(u) for u in compiled.checked.policy.users)
        # new_user is a Java replacement string before it is a pattern (`$` starts a group reference there),
        # and Trino matches it against the whole name: no anchors
        rules["impersonation"] = [{"original_user": f"^{re.escape(bi_account)}$", "new_user": f"({users})",
                                   "allow": True},
                                  {"original_user": ".*", "new_user": ".*", "allow": False}]
    return rules


def duckdb_sql(compiled: CompiledPolicy, user: str, table: str, source: str = "src") -> str:
    """The DuckDB SELECT that filters and masks rows of `table` for `user`, read from `source`."""
    access = compiled.get(user, table)
    if access is None:
        raise KeyError(f"no compiled access for {user} on {table}")
    return masked_select(compiled, access, exp.to_table(source), "duckdb").sql(dialect="duckdb")


def compile_output(compiled: CompiledPolicy, target: str, catalog: str = "lake") -> dict[str, Any]:
    """Everything a target produces, as JSON-able data (the CLI prints it)."""
    head: dict[str, Any] = {"policy": compiled.policy_id, "version": compiled.version,
                            "content_hash": compiled.content_hash, "target": target}
    if target == "spark":
        head["statements"] = spark_sql(compiled, catalog)
    elif target == "trino":
        head["rules"] = trino_rules(compiled, catalog)
        head["rule_ids"] = {f"{u}@{t}": list(a.rule_ids) for (u, t), a in compiled.access.items()}
    elif target == "duckdb":
        head["queries"] = {f"{u}@{t}": duckdb_sql(compiled, u, t) for (u, t) in compiled.access}
    else:
        raise ValueError(f"unknown target {target!r}")
    return head


def to_json(data: Mapping[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=True)
