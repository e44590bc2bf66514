"""Check a parsed policy against the real table schemas; collect every error with file:line:col.

Nothing is compiled or applied from a policy with any error: `check_policy` returns a
`CheckedPolicy` only when the list of errors is empty, else raises the first (with a count).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from icetide.errors import PolicyError
from sqlglot import exp

from policies.binding import Binder
from policies.filters import FilterChecker, parse_filter
from policies.keys import default_key_id
from policies.loader import load_policy
from policies.masks import applicable
from policies.model import MaskRule, MaskSpec, Policy, RowRule, Selector
from policies.schemas import SchemaProvider, TableSchema


@dataclass(frozen=True)
class CheckedPolicy:
    """A policy that passed validation, with its table schemas and parsed filters."""

    policy: Policy
    schemas: dict[str, TableSchema]
    filters: dict[str, exp.Expression] = field(default_factory=dict)  # rule id → filter tree
    lookups: dict[str, TableSchema] = field(default_factory=dict)
    binder: Binder = field(default_factory=Binder, compare=False, repr=False)
    cache: dict[object, object] = field(default_factory=dict, compare=False, repr=False)


class PolicyErrors(PolicyError):
    """Several errors in one file; the message shows the first, `errors` holds them all."""

    def __init__(self, errors: list[PolicyError]) -> None:
        first = errors[0]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(first.reason + more, file=first.file, line=first.line, col=first.col)
        self.errors = errors


def _selector_errors(policy: Policy, sel: Selector) -> list[PolicyError]:
    errors = []
    for user in sel.users:
        if user not in policy.users:
            errors.append(sel.pos.error(f"unknown user {user!r} (declare it in principals.users)"))
    for group in sel.groups:
        if group not in policy.groups:
            errors.append(sel.pos.error(f"unknown group {group!r} (declare it in principals.groups)"))
    return errors


def _key_errors(policy: Policy, mask: MaskSpec) -> list[PolicyError]:
    if mask.kind != "hash":
        return []
    key = mask.key or default_key_id(policy)
    if key is None:
        return [mask.pos.error("hash masks need a key: declare one under 'keys'")]
    if key not in policy.keys:
        return [mask.pos.error(f"unknown key {key!r} (declare it under 'keys')")]
    return []


def validate(policy: Policy, provider: SchemaProvider) -> tuple[CheckedPolicy, list[PolicyError]]:
    """Every semantic error of `policy` (empty list → safe to compile)."""
    errors: list[PolicyError] = []
    schemas: dict[str, TableSchema] = {}
    filters: dict[str, exp.Expression] = {}
    lookups: dict[str, TableSchema] = {}
    rule_ids: dict[str, str] = {}
    for tag in policy.tags.values():
        errors += _key_errors(policy, tag.default_mask)
    for table in policy.tables.values():
        schema = provider.table(table.name)
        if schema is None:
            errors.append(table.pos.error(f"unknown table {table.name!r} (not in the catalog/schema)"))
            continue
        schemas[table.name] = schema
        for c in table.columns:
            if schema.type_of(c.column) is None:
                errors.append(c.pos.error(f"unknown column {c.column!r} in table {table.name}"))
            for t in c.tags:
                if t.name not in policy.tags:
                    errors.append(t.pos.error(f"unknown tag {t.name!r} (declare it under 'tags')"))
        rules: list[RowRule | MaskRule] = [*table.row_rules, *table.mask_rules]
        for rule in rules:
            if rule.id in rule_ids:
                errors.append(rule.pos.error(f"duplicate rule id {rule.id!r} (first used in {rule_ids[rule.id]})"))
            rule_ids[rule.id] = table.name
            errors += _selector_errors(policy, rule.to)
        for row in table.row_rules:
            declared: dict[str, TableSchema] = {}
            for name in row.lookup_tables:
                found = provider.table(name)
                if found is None:
                    errors.append(row.pos.error(f"unknown lookup table {name!r}"))
                else:
                    declared[name] = lookups[name] = found
            if row.filter is None:
                continue
            try:
                tree = parse_filter(row.filter)
                checker = FilterChecker(row.filter, schema, policy, declared.get if row.lookup_tables else None)
                checker.check_filter(tree)
                filters[row.id] = tree
            except PolicyError as exc:
                errors.append(exc)
        for mrule in table.mask_rules:
            errors += _key_errors(policy, mrule.mask)
            for col in mrule.columns:
                col_type = schema.type_of(col.name)
                if col_type is None:
                    errors.append(col.pos.error(f"unknown column {col.name!r} in table {table.name}"))
                elif not applicable(mrule.mask.kind, col_type):
                    errors.append(mrule.mask.pos.error(
                        f"type error: mask {mrule.mask.label()} does not apply to column {col.name!r} ({col_type})"))
            for t in mrule.tags:
                if t.name not in policy.tags:
                    errors.append(t.pos.error(f"unknown tag {t.name!r} (declare it under 'tags')"))
    errors.sort(key=lambda e: (e.file, e.line, e.col))
    return CheckedPolicy(policy, schemas, filters, lookups), errors


def check_policy(policy: Policy, provider: SchemaProvider) -> CheckedPolicy:
    """Validate or raise `PolicyErrors` (all of them, first one in the message)."""
    checked, errors = validate(policy, provider)
    if errors:
        raise PolicyErrors(errors)
    return checked


def check_file(path: str, provider: SchemaProvider) -> CheckedPolicy:
    """Load and validate one policy file."""
    return check_policy(load_policy(path), provider)
