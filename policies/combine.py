"""Combination rules: what one user may see of one table, and the reports about the policy.

- Rows: a user sees the rows some matching allow rule admits and no matching deny rule
  covers. No matching allow rule → no rows (the table is not visible at all). A rule whose
  filter needs an attribute the user lacks denies (allow → FALSE, deny → TRUE).
  NULL never lets a row through: `(a1 OR a2) AND NOT COALESCE(d1 OR d2, TRUE)`.
- Columns: every matching mask rule that selects the column (by name or tag) is a
  candidate; the strictest wins (`masks.strictest`). With no candidate the column's tags'
  default masks apply; a column no classification names — including columns added to the
  table later — is masked with null.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import reduce

from sqlglot import exp

from policies.binding import MissingAttribute
from policies.masks import strictest
from policies.model import MaskRule, MaskSpec, RowRule, TablePolicy, User
from policies.validate import CheckedPolicy
from policies.yamlpos import Pos

UNCLASSIFIED = "unclassified"


@dataclass(frozen=True)
class ColumnAccess:
    name: str
    type: str
    mask: MaskSpec
    rule_ids: tuple[str, ...]  # the mask rules that applied (empty: a default)
    source: str  # "rule" | "tag:<t>" | "default" | "unclassified"
    note: str | None = None


@dataclass(frozen=True)
class Access:
    """The effective access of one user to one table."""

    user: str
    table: str
    visible: bool
    filter: exp.Expression  # bound to the user (literals only), in the policy dialect
    columns: tuple[ColumnAccess, ...]
    row_rule_ids: tuple[str, ...]
    notes: tuple[str, ...] = ()
    lookups: bool = False  # the filter reads lookup tables (subqueries)

    @property
    def rule_ids(self) -> tuple[str, ...]:
        ids = list(self.row_rule_ids)
        for c in self.columns:
            ids += [r for r in c.rule_ids if r not in ids]
        return tuple(ids)

    def mask_of(self, column: str) -> MaskSpec:
        return next(c.mask for c in self.columns if c.name == column)


def _or(parts: list[exp.Expression]) -> exp.Expression:
    wrapped: list[exp.Expression] = [exp.Paren(this=p) for p in parts]
    return reduce(lambda a, b: exp.Or(this=a, expression=b), wrapped)


def row_filter(checked: CheckedPolicy, table: TablePolicy, user: User) -> tuple[bool, exp.Expression,
                                                                                   tuple[str, ...], list[str]]:
    """(visible, bound filter, matching row rule ids, notes) for one user and table."""
    allows: list[exp.Expression] = []
    denies: list[exp.Expression] = []
    ids: list[str] = []
    notes: list[str] = []
    for rule in table.row_rules:
        if not rule.to.matches(user):
            continue
        ids.append(rule.id)
        tree = checked.filters.get(rule.id)
        try:
            bound: exp.Expression = exp.true() if tree is None else checked.binder.bind(tree, user)
        except MissingAttribute as missing:
            notes.append(f"rule {rule.id}: user {user.name} has no attribute {missing}; the rule denies")
            bound = exp.false() if rule.effect == "allow" else exp.true()
        (allows if rule.effect == "allow" else denies).append(bound)
    if not allows:
        return False, exp.false(), tuple(ids), notes
    if any(isinstance(d, exp.Boolean) and d.this is True for d in denies):
        return False, exp.false(), tuple(ids), notes
    condition = _or(allows) if len(allows) > 1 else allows[0]
    if all(isinstance(a, exp.Boolean) and a.this is False for a in allows):
        return False, exp.false(), tuple(ids), notes
    if denies:
        coalesced = exp.Coalesce(this=_or(denies) if len(denies) > 1 else denies[0], expressions=[exp.true()])
        condition = exp.And(this=exp.Paren(this=condition), expression=exp.Not(this=exp.Paren(this=coalesced)))
    return True, condition, tuple(ids), notes


def _rules_for(checked: CheckedPolicy, table: TablePolicy, column: str, tags: tuple[str, ...]) -> list[MaskRule]:
    """Mask rules selecting a column by name or tag (computed once per column)."""
    key = ("mask-rules", table.name, column)
    found = checked.cache.get(key)
    if found is None:
        found = [r for r in table.mask_rules
                 if any(c.name == column for c in r.columns) or any(t.name in tags for t in r.tags)]
        checked.cache[key] = found
    return found  # type: ignore[return-value]


def column_access(checked: CheckedPolicy, table: TablePolicy, user: User, column: str,
                  col_type: str) -> ColumnAccess:
    """The mask one user gets on one column."""
    tags = table.tags_of(column)
    if tags is None:
        return ColumnAccess(column, col_type, MaskSpec("null", table.pos), (), UNCLASSIFIED)
    candidates = [(r.id, r.mask) for r in _rules_for(checked, table, column, tags) if r.to.matches(user)]
    key = ("column-access", table.name, column, tuple(r for r, _ in candidates))
    cached = checked.cache.get(key)
    if cached is None:
        cached = checked.cache[key] = _combine(checked, table, column, col_type, tags, candidates)
    return cached  # type: ignore[return-value]


def _combine(checked: CheckedPolicy, table: TablePolicy, column: str, col_type: str, tags: tuple[str, ...],
             candidates: list[tuple[str, MaskSpec]]) -> ColumnAccess:
    """Strictest candidate mask, else the tags' default masks, else null."""
    policy = checked.policy
    if candidates:
        mask, note = strictest([m for _, m in candidates], col_type)
        return ColumnAccess(column, col_type, mask, tuple(r for r, _ in candidates), "rule", note)
    if not tags:
        return ColumnAccess(column, col_type, MaskSpec("null", table.pos), (), "default")
    defaults = [policy.tags[t].default_mask for t in tags]
    mask, note = strictest(defaults, col_type)
    return ColumnAccess(column, col_type, mask, (), "tag:" + ",".join(tags), note)


def resolve(checked: CheckedPolicy, user_name: str, table_name: str) -> Access:
    """Effective access of a user (unknown users see nothing) to a table (unknown: nothing)."""
    policy = checked.policy
    table = policy.tables.get(table_name)
    schema = checked.schemas.get(table_name)
    user = policy.users.get(user_name)
    if table is None or schema is None or user is None:
        return Access(user_name, table_name, False, exp.false(), (), (), ("no policy covers this",))
    visible, condition, ids, notes = row_filter(checked, table, user)
    columns = tuple(column_access(checked, table, user, n, t) for n, t in schema.columns)
    notes += [f"column {c.name}: {c.note}" for c in columns if c.note]
    lookups = any(r.lookup_tables for r in table.row_rules if r.id in ids)
    return Access(user_name, table_name, visible, condition, columns, ids, tuple(notes), lookups)


def all_access(checked: CheckedPolicy) -> list[Access]:
    """Access of every declared user to every table of the policy (the compiler's input)."""
    return [resolve(checked, u, t) for t in checked.policy.tables for u in checked.policy.users]


@dataclass(frozen=True)
class Finding:
    kind: str  # "never-matches" | "overlapping-masks" | "uncovered-column" | "escalated-mask"
    message: str
    pos: Pos

    def as_dict(self) -> dict[str, object]:
        return {"kind": self.kind, "message": self.message, "where": f"{self.pos.file}:{self.pos.line}:{self.pos.col}"}


def findings(checked: CheckedPolicy) -> list[Finding]:
    """Rules that never match, overlapping masks, columns no rule covers."""
    policy = checked.policy
    out: list[Finding] = []
    users = list(policy.users.values())
    for table in policy.tables.values():
        schema = checked.schemas[table.name]
        rules: list[RowRule | MaskRule] = [*table.row_rules, *table.mask_rules]
        for rule in rules:
            if not any(rule.to.matches(u) for u in users):
                out.append(Finding("never-matches", f"rule {rule.id} matches no declared user", rule.pos))
        for name, col_type in schema.columns:
            if table.tags_of(name) is None:
                out.append(Finding("uncovered-column", f"column {table.name}.{name} is not classified: "
                                   "masked with null for everyone", table.pos))
                continue
            for user in users:
                access = column_access(checked, table, user, name, col_type)
                if len(access.rule_ids) > 1:
                    overlapping = [r for r in table.mask_rules if r.id in access.rule_ids]
                    if len({r.mask.label() for r in overlapping}) > 1:
                        out.append(Finding("overlapping-masks", f"{table.name}.{name} for {user.name}: rules "
                                           f"{', '.join(access.rule_ids)} overlap; {access.mask.label()} wins",
                                           overlapping[0].pos))
                if access.note:
                    out.append(Finding("escalated-mask", f"{table.name}.{name} for {user.name}: {access.note}",
                                       table.pos))
    return out
