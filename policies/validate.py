"""Check a parsed policy against the real table schemas; collect every error with file:line:col.

Nothing is compiled or applied from a policy with any error: `check_policy` returns a
`CheckedPolicy` only when the list of errors is empty, else raises the first (with a count).

Masks are also checked per target engine (`mask_type_errors`): every mask a column can get must be
writable in each engine's SQL, and for a target that types column masks (Trino) its value must have the
column's type.
Trino otherwise fails only when the query runs ("Expected column mask for … to be of type decimal(10,2),
but was varchar(6)", trino#15819). A Spark secure view and the DuckDB stream filter give the view's column
the mask's type (`hash` turns a number into its hex digest), so they require only that it renders.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import lru_cache

from icetide.errors import PolicyError
from sqlglot import exp
from sqlglot.errors import SqlglotError

from policies.binding import Binder
from policies.filters import FilterChecker, parse_filter
from policies.keys import HmacPads, default_key_id
from policies.loader import load_policy
from policies.masks import DIALECTS, applicable, render
from policies.model import MaskRule, MaskSpec, Policy, RowRule, Selector
from policies.schemas import SchemaProvider, TableSchema
from policies.yamlpos import Pos

# engines whose column masks must yield the column's own type (see the module docstring)
SAME_TYPE_ENGINES = frozenset({"trino"})
# the masks whose value is text whatever the column's type (policies/masks.py `render`): the rest cast back to it
TEXT_MASKS = frozenset({"redact", "show_first", "show_last", "hash"})
_PROBE_PADS = HmacPads("type-check", b"\0" * 32)  # renders `hash` for its type; no key is read or shown


def mask_result_type(kind: str, col_type: str) -> str:
    """The canonical type of a mask's value on a column of `col_type` (equal in every engine by design)."""
    return "string" if kind in TEXT_MASKS else col_type


@lru_cache(maxsize=256)
def null_writable(col_type: str) -> bool:
    """Whether the null mask — every column's fallback (unclassified, denied, or a mask that does not fit) —
    can be written for `col_type` in every engine's SQL (not yet for nested types)."""
    return not mask_type_errors(MaskSpec("null", Pos("", 1, 1)), "c", col_type)


def mask_type_errors(mask: MaskSpec, column: str, col_type: str, targets: Iterable[str] = (),
                     pos: Pos | None = None) -> list[PolicyError]:
    """Why `mask` cannot be the mask of `column`: it cannot be written in some engine's SQL (checked for every
    engine), or its value is not of the column's type in one of `targets` that requires that (Trino). A mask
    that does not fit the type is checked as the null mask that replaces it when masks are combined
    (`masks.strictest`). Errors point at `pos` (default: the mask's)."""
    where = pos or mask.pos
    effective = mask if applicable(mask.kind, col_type) else replace(mask, kind="null")
    unwritable = []
    for dialect in DIALECTS:
        try:
            render(effective, exp.column(column), col_type, dialect, _PROBE_PADS).sql(dialect=dialect)
        except (SqlglotError, ValueError):
            unwritable.append(dialect)
    if unwritable:
        return [where.error(f"type error: mask {effective.label()} on column {column!r} ({col_type}) cannot be "
                            f"written in {', '.join(unwritable)} SQL")]
    result = mask_result_type(effective.kind, col_type)
    return [where.error(f"type error for {engine}: mask {effective.label()} on column {column!r} yields {result}, "
                        f"but {engine} requires a column mask of the column's type ({col_type}); it would fail when "
                        "the query runs")
            for engine in sorted(SAME_TYPE_ENGINES & set(targets)) if result != col_type]


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


def validate(policy: Policy, provider: SchemaProvider,
             targets: Iterable[str] = ()) -> tuple[CheckedPolicy, list[PolicyError]]:
    """Every semantic error of `policy`, including those only the engines `targets` have (empty list → safe
    to compile for them)."""
    targets = tuple(targets)
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
        listed = {c.column: c for c in table.columns}
        for name, its_type in schema.columns:  # every column falls back to the null mask
            if not null_writable(its_type):
                errors.append((listed[name].pos if name in listed else table.pos).error(
                    f"type error: column {name!r} ({its_type}) of {table.name} would be masked with null, which "
                    "cannot be written in spark, trino, duckdb SQL: icetide cannot protect nested columns yet"))
        for c in table.columns:
            tagged_type = schema.type_of(c.column)
            if tagged_type is None:
                errors.append(c.pos.error(f"unknown column {c.column!r} in table {table.name}"))
            for t in c.tags:
                if t.name not in policy.tags:
                    errors.append(t.pos.error(f"unknown tag {t.name!r} (declare it under 'tags')"))
                elif tagged_type is not None and null_writable(tagged_type):  # the tag's default mask lands here
                    errors += mask_type_errors(policy.tags[t.name].default_mask, c.column, tagged_type, targets,
                                               pos=t.pos)
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
                elif null_writable(col_type):
                    errors += mask_type_errors(mrule.mask, col.name, col_type, targets)
            for t in mrule.tags:
                if t.name not in policy.tags:
                    errors.append(t.pos.error(f"unknown tag {t.name!r} (declare it under 'tags')"))
    errors.sort(key=lambda e: (e.file, e.line, e.col))
    return CheckedPolicy(policy, schemas, filters, lookups), errors


def check_policy(policy: Policy, provider: SchemaProvider, targets: Iterable[str] = ()) -> CheckedPolicy:
    """Validate or raise `PolicyErrors` (all of them, first one in the message)."""
    checked, errors = validate(policy, provider, targets)
    if errors:
        raise PolicyErrors(errors)
    return checked


def check_file(path: str, provider: SchemaProvider, targets: Iterable[str] = ()) -> CheckedPolicy:
    """Load and validate one policy file."""
    return check_policy(load_policy(path), provider, targets)
