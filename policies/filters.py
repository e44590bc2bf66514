"""Row-filter expressions: parsed with sqlglot, checked by a visitor, bound per user.

The checker walks the syntax tree with one method per node type (pyiceberg's visitor
style); any node type it has no method for is rejected, so the allow-list is the set of
methods. Identity functions (`user_attr('x')`, `user_name()`, `user_in_group('g')`) are
replaced by escaped literals when a filter is bound to a user; a user without the attribute
makes the rule deny.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokenizer_core import TokenType

from policies.model import FilterText, Policy
from policies.schemas import TableSchema, family
from policies.yamlpos import Pos

READ_DIALECT = "spark"
IDENTITY_FUNCTIONS = ("user_attr", "user_name", "user_in_group")
CASTABLE = ("string", "long", "int", "double", "date", "timestamp", "boolean")
ATTR_FAMILY = {"string": "string", "long": "number", "double": "number", "boolean": "boolean"}


def parse_filter(text: FilterText) -> exp.Expression:
    """One SQL expression (not a statement), without comments; PolicyError at the bad token."""
    try:
        parsed = sqlglot.parse(text.text, read=READ_DIALECT)
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        raise _at_line_col(text, int(first.get("line") or 1), int(first.get("col") or 1)).error(
            f"filter is not valid SQL: {first.get('description', 'syntax error')}") from None
    except TokenError as exc:
        raise text.pos.error(f"filter is not valid SQL: {exc}") from None
    semicolons = [t for t in sqlglot.tokenize(text.text, read=READ_DIALECT) if t.token_type == TokenType.SEMICOLON]
    if len(parsed) != 1 or parsed[0] is None or semicolons:
        raise text.pos.error("filter must be exactly one SQL expression (no ';')")
    tree: exp.Expression = parsed[0]  # type: ignore[assignment]
    for node in tree.walk():
        if node.comments:
            raise text.pos.error("comments are not allowed in filters")
    return tree


def _at_line_col(text: FilterText, line: int, col: int) -> Pos:
    lines = text.text.split("\n")
    offset = sum(len(x) + 1 for x in lines[: max(0, line - 1)]) + max(0, col - 1)
    return text.at(offset)


def node_offset(node: exp.Expression) -> int | None:
    """Character offset of a node inside its expression text, when sqlglot recorded it."""
    for candidate in node.walk():
        start = candidate.meta.get("start") if candidate.meta else None
        if isinstance(start, int):
            return start
    return None


@dataclass
class FilterChecker:
    """Type-checks a filter against one table; `check` returns the type family of a node."""

    text: FilterText
    table: TableSchema
    policy: Policy
    lookups: Callable[[str], TableSchema | None] | None = None

    def fail(self, node: exp.Expression, message: str) -> Exception:
        offset = node_offset(node)
        pos = self.text.pos if offset is None else self.text.at(offset)
        return pos.error(message)

    def check_filter(self, tree: exp.Expression) -> None:
        if self.check(tree) not in ("boolean", "null"):
            raise self.fail(tree, "filter must be a boolean condition")

    def check(self, node: exp.Expression) -> str:
        method = getattr(self, f"visit_{type(node).__name__.lower()}", None)
        if method is None:
            raise self.fail(node, f"{_describe(node)} is not allowed in filters")
        result: str = method(node)
        return result

    # -- leaves ------------------------------------------------------------------------------
    def visit_column(self, node: exp.Column) -> str:
        if node.table and node.table.lower() != self.table.name.split(".")[-1]:
            raise self.fail(node, f"column {node.sql()!r} refers to another table")
        if node.args.get("db") or node.args.get("catalog"):
            raise self.fail(node, f"column {node.sql()!r} must not be qualified")
        col_type = self.table.type_of(node.name.lower())
        if col_type is None:
            raise self.fail(node, f"unknown column {node.name!r} in table {self.table.name}")
        fam = family(col_type)
        if fam in ("other", "binary"):
            raise self.fail(node, f"column {node.name!r} of type {col_type} cannot be used in filters")
        return fam

    def visit_literal(self, node: exp.Literal) -> str:
        return "string" if node.is_string else "number"

    def visit_boolean(self, node: exp.Boolean) -> str:
        return "boolean"

    def visit_null(self, node: exp.Null) -> str:
        return "null"

    def visit_paren(self, node: exp.Paren) -> str:
        return self.check(node.this)

    # -- logic and comparisons -----------------------------------------------------------------
    def _boolean_args(self, node: exp.Expression) -> str:
        for child in node.iter_expressions():
            if self.check(child) not in ("boolean", "null"):
                raise self.fail(child, f"operand of {node.key.upper()} must be a boolean condition")
        return "boolean"

    visit_and = visit_or = visit_not = _boolean_args

    def _compare(self, node: exp.Expression) -> str:
        left, right = node.this, node.expression
        self._compatible(node, left, self.check(left), right, self.check(right))
        return "boolean"

    visit_eq = visit_neq = visit_gt = visit_gte = visit_lt = visit_lte = visit_nullsafeeq = _compare

    def _compatible(self, node: exp.Expression, left: exp.Expression, lf: str, right: exp.Expression,
                    rf: str) -> str:
        if lf == rf or "null" in (lf, rf):
            return lf if lf != "null" else rf
        temporal = {"date", "timestamp"}
        if {lf, rf} <= temporal:
            return "timestamp"
        for fam, other in ((lf, right), (rf, left)):
            if fam in temporal and isinstance(other, exp.Literal) and other.is_string and _is_temporal(other.this):
                return fam
        raise self.fail(node, f"type mismatch: cannot compare {lf} with {rf}")

    def visit_is(self, node: exp.Is) -> str:
        self.check(node.this)
        if not isinstance(node.expression, exp.Null | exp.Boolean):
            raise self.fail(node, "IS must be followed by NULL, TRUE or FALSE")
        return "boolean"

    def visit_between(self, node: exp.Between) -> str:
        fam = self.check(node.this)
        for bound in (node.args["low"], node.args["high"]):
            self._compatible(node, node.this, fam, bound, self.check(bound))
        return "boolean"

    def visit_in(self, node: exp.In) -> str:
        fam = self.check(node.this)
        query = node.args.get("query")
        if query is not None:
            inner = self._subquery(query)
            self._compatible(node, node.this, fam, query, inner)
        if node.args.get("unnest") or node.args.get("field"):
            raise self.fail(node, "IN UNNEST is not allowed in filters")
        for item in node.expressions:
            self._compatible(node, node.this, fam, item, self.check(item))
        return "boolean"

    def _like(self, node: exp.Expression) -> str:
        if self.check(node.this) != "string":
            raise self.fail(node, "LIKE needs a string operand")
        pattern = node.expression
        if not (isinstance(pattern, exp.Literal) and pattern.is_string):
            raise self.fail(node, "LIKE pattern must be a string literal")
        if node.args.get("escape") is not None:
            raise self.fail(node, "LIKE ... ESCAPE is not allowed in filters")
        return "boolean"

    visit_like = visit_ilike = _like

    # -- arithmetic -----------------------------------------------------------------------------
    def _arith(self, node: exp.Expression) -> str:
        for child in (node.this, node.expression):
            if self.check(child) not in ("number", "null"):
                raise self.fail(child, f"operand of {node.key.upper()} must be a number")
        if isinstance(node, exp.Div | exp.Mod) and not (
                isinstance(node.expression, exp.Literal) and not node.expression.is_string
                and float(node.expression.this) != 0):
            raise self.fail(node.expression, "divisor must be a non-zero number literal")
        return "number"

    visit_add = visit_sub = visit_mul = visit_div = visit_mod = _arith

    def visit_neg(self, node: exp.Neg) -> str:
        if self.check(node.this) not in ("number", "null"):
            raise self.fail(node, "operand of '-' must be a number")
        return "number"

    def _cast(self, node: exp.Cast) -> str:
        target = node.to.sql(dialect=READ_DIALECT).lower()
        target = {"bigint": "long", "integer": "int", "timestamp_ntz": "timestamp"}.get(target, target)
        if target not in CASTABLE:
            raise self.fail(node, f"cast to {target} is not allowed in filters")
        if not isinstance(node.this, exp.Literal):
            raise self.fail(node, "only literals may be cast in filters (casts of columns can fail on hidden rows)")
        if target in ("date", "timestamp") and not _is_temporal(node.this.this):
            raise self.fail(node, f"{node.this.this!r} is not a valid {target} literal")
        return family(target)

    visit_cast = visit_trycast = _cast

    # -- conditionals and functions -----------------------------------------------------------
    def visit_case(self, node: exp.Case) -> str:
        if node.this is not None:
            raise self.fail(node, "use CASE WHEN <condition> (simple CASE is not allowed)")
        result = "null"
        for branch in node.args.get("ifs") or []:
            if self.check(branch.this) not in ("boolean", "null"):
                raise self.fail(branch.this, "CASE WHEN needs a boolean condition")
            value = branch.args["true"]
            result = self._compatible(node, value, self.check(value), value, result)
        default = node.args.get("default")
        if default is not None:
            result = self._compatible(node, default, self.check(default), default, result)
        return result

    def visit_if(self, node: exp.If) -> str:
        if self.check(node.this) not in ("boolean", "null"):
            raise self.fail(node.this, "IF needs a boolean condition")
        true, false = node.args["true"], node.args.get("false")
        fam = self.check(true)
        return self._compatible(node, true, fam, false, self.check(false)) if false is not None else fam

    def _fn(self, node: exp.Expression, args: tuple[str, ...], result: str) -> str:
        children = list(node.iter_expressions())
        for child, want in zip(children, args, strict=False):
            got = self.check(child)
            if got not in (want, "null"):
                raise self.fail(child, f"{node.key.upper()} expects a {want} here, got {got}")
        if len(children) > len(args):
            raise self.fail(node, f"too many arguments to {node.key.upper()}")
        return result

    def visit_lower(self, node: exp.Expression) -> str:
        return self._fn(node, ("string",), "string")

    visit_upper = visit_trim = visit_lower

    def visit_length(self, node: exp.Expression) -> str:
        return self._fn(node, ("string",), "number")

    def visit_substring(self, node: exp.Expression) -> str:
        return self._fn(node, ("string", "number", "number"), "string")

    def visit_abs(self, node: exp.Expression) -> str:
        return self._fn(node, ("number",), "number")

    def visit_round(self, node: exp.Expression) -> str:
        return self._fn(node, ("number", "number"), "number")

    def _date_part(self, node: exp.Expression) -> str:
        inner = node.this.this if isinstance(node.this, exp.TsOrDsToDate) else node.this
        if self.check(inner) not in ("date", "timestamp", "null"):
            raise self.fail(node, f"{node.key.upper()} needs a date or timestamp")
        return "number"

    visit_year = visit_month = visit_day = _date_part

    def visit_currentdate(self, node: exp.Expression) -> str:
        return "date"

    def visit_concat(self, node: exp.Concat) -> str:
        for child in node.expressions:
            if self.check(child) not in ("string", "null"):
                raise self.fail(child, "CONCAT expects strings")
        return "string"

    def visit_coalesce(self, node: exp.Coalesce) -> str:
        fam = self.check(node.this)
        for child in node.expressions:
            fam = self._compatible(node, node.this, fam, child, self.check(child))
        return fam

    def visit_anonymous(self, node: exp.Anonymous) -> str:
        name = str(node.this).lower()
        args = node.expressions
        if name not in IDENTITY_FUNCTIONS:
            raise self.fail(node, f"function {node.this}() is not in the allow-list")
        if name == "user_name":
            if args:
                raise self.fail(node, "user_name() takes no arguments")
            return "string"
        if len(args) != 1 or not (isinstance(args[0], exp.Literal) and args[0].is_string):
            raise self.fail(node, f"{name}() takes one string literal")
        arg = str(args[0].this)
        if name == "user_in_group":
            if arg not in self.policy.groups:
                raise self.fail(node, f"unknown group {arg!r} in user_in_group()")
            return "boolean"
        if arg not in self.policy.attributes:
            raise self.fail(node, f"unknown attribute {arg!r} (declare it in principals.attributes)")
        return ATTR_FAMILY[self.policy.attributes[arg]]

    # -- declared subqueries ------------------------------------------------------------------
    def _subquery(self, query: exp.Expression) -> str:
        select = query.this if isinstance(query, exp.Subquery) else query
        if self.lookups is None:
            raise self.fail(query, "subqueries are allowed only from tables declared in lookup_tables")
        if not isinstance(select, exp.Select) or len(select.expressions) != 1:
            raise self.fail(query, "a lookup subquery must be a SELECT of one column")
        allowed = {"expressions", "from_", "where"}
        extra = [k for k, v in select.args.items() if v and k not in allowed]
        if extra or not select.args.get("from_"):
            raise self.fail(query, "a lookup subquery may only have SELECT <column> FROM <table> [WHERE ...]")
        source = select.args["from_"].this
        if not isinstance(source, exp.Table) or not source.db or source.args.get("catalog"):
            raise self.fail(query, "a lookup subquery must read one table named as namespace.table")
        name = f"{source.db}.{source.name}".lower()
        schema = self.lookups(name)
        if schema is None:
            raise self.fail(source, f"table {name!r} is not declared in lookup_tables or does not exist")
        inner = FilterChecker(self.text, schema, self.policy, None)
        column = select.expressions[0]
        if not isinstance(column, exp.Column):
            raise self.fail(column, "a lookup subquery must select a plain column")
        fam = inner.check(column)
        where = select.args.get("where")
        if where is not None:
            inner.check_filter(where.this)
        return fam


def _describe(node: exp.Expression) -> str:
    if isinstance(node, exp.Func):
        return f"function {node.sql_name()}()"
    return {"select": "a subquery", "subquery": "a subquery", "exists": "EXISTS"}.get(
        node.key, f"{re.sub(r'(?<!^)(?=[A-Z])', ' ', type(node).__name__).lower()} '{node.sql()[:40]}'")


def _is_temporal(value: str) -> bool:
    try:
        date.fromisoformat(value)
        return True
    except ValueError:
        pass
    try:
        datetime.fromisoformat(value)
        return True
    except ValueError:
        return False
