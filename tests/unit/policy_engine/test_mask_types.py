"""`policy check` type-checks masks per target engine (issue 12, defect 4).

Trino refuses a column mask whose type is not the column's, but only when a query runs ("Expected column
mask for … to be of type decimal(10,2), but was varchar(6)", trino#15819); a mask that cannot be written in an
engine's SQL at all failed in the compiler with a bare parse error. Generated cases: every mask kind on every
column type, as an explicit mask rule and as a tag's default mask; the checker's result type is held to
what sqlglot infers for the rendered mask in Spark and DuckDB SQL.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import sqlglot
from click.testing import CliRunner
from sqlglot import exp
from sqlglot.optimizer.annotate_types import annotate_types

from icetide.cli import root
from icetide.errors import PolicyError
from policies.keys import HmacPads
from policies.loader import parse_policy
from policies.masks import applicable, render, sql_type
from policies.model import MASK_KINDS, MaskSpec
from policies.schemas import TableSchema
from policies.validate import mask_result_type, validate

pytestmark = pytest.mark.unit

TYPES = ("string", "long", "int", "float", "double", "decimal(10,2)", "boolean", "date", "timestamp",
         "timestamptz", "binary")
NESTED = ("other:struct<a:int>", "other:array<string>", "other:map<string,int>")
MASK_YAML = {"none": "none", "null": '"null"', "redact": "redact", "show_first": "{show_first: 2}",
             "show_last": "{show_last: 2}", "hash": "{hash: k1}", "year_only": "year_only", "bucket": "{bucket: 10}"}
PADS = HmacPads("k1", b"k" * 32)


def _policy(col_type: str, mask: str, *, as_tag: bool) -> str:
    """A policy masking column `c` of table t.x (type `col_type`) with `mask`, by a rule or by a tag."""
    column = "      c: [masked]" if as_tag else "      c: []"
    rule = ("    masks: []" if as_tag else
            f"    masks:\n      - {{id: m, to: everyone, columns: [c], mask: {mask}}}")
    return f"""policy: p
version: 1
principals:
  users:
    ana: {{}}
keys:
  k1: {{env: K1}}
tags:
  masked: {{default_mask: {mask}}}
tables:
  t.x:
    columns:
{column}
    row_filters:
      - {{id: all, to: everyone}}
{rule}
"""


class _OneTable:
    """The schema of t.x: one column `c` (nested types come only from the catalog, as `other:<type>`)."""

    def __init__(self, col_type: str) -> None:
        self.schema = TableSchema("t.x", (("c", col_type),))

    def table(self, name: str) -> TableSchema | None:
        return self.schema if name == "t.x" else None


def _errors(col_type: str, kind: str, targets: tuple[str, ...], *, as_tag: bool) -> list[PolicyError]:
    text = _policy(col_type, MASK_YAML[kind], as_tag=as_tag)
    _, errors = validate(parse_policy(text, "gen.yaml"), _OneTable(col_type), targets)
    return [e for e in errors if "type error" in e.reason]


CASES = [(t, k) for t in TYPES for k in MASK_KINDS]


@pytest.mark.parametrize(("col_type", "kind"), CASES, ids=[f"{k}-{t}" for t, k in CASES])
def test_trino_requires_the_columns_type_and_spark_does_not(col_type: str, kind: str) -> None:
    for as_tag in (False, True):
        if not as_tag and not applicable(kind, col_type):
            continue  # an explicit rule with a mask that does not fit is its own error ("does not apply")
        effective = kind if applicable(kind, col_type) else "null"  # a tag's unfitting mask becomes null
        trino = _errors(col_type, kind, ("trino",), as_tag=as_tag)
        assert bool(trino) == (mask_result_type(effective, col_type) != col_type), (kind, col_type, as_tag)
        assert _errors(col_type, kind, ("spark", "duckdb"), as_tag=as_tag) == []
        for error in trino:
            text = _policy(col_type, MASK_YAML[kind], as_tag=as_tag).split("\n")
            # the rule's mask, or the tag on the column: file:line:col of what to change
            assert error.file == "gen.yaml" and ("mask:" in text[error.line - 1] or "[masked]" in text[error.line - 1])
            assert re.search(r"type error for trino: mask \S+ on column 'c' yields string, but trino requires "
                             rf"a column mask of the column's type \({re.escape(col_type)}\)", error.reason)


def test_hash_on_a_number_is_refused_for_trino_at_its_line() -> None:
    [error] = _errors("long", "hash", ("trino",), as_tag=False)
    assert str(error).startswith("gen.yaml:17:")  # the `- {id: m, … mask: {hash: k1}}` line
    assert "mask hash(k1) on column 'c' yields string" in str(error)


@pytest.mark.parametrize("col_type", NESTED)
@pytest.mark.parametrize("kind", ["null", "redact"])
def test_a_mask_no_engine_can_write_is_an_error_for_every_target(col_type: str, kind: str) -> None:
    """Nested columns take only the null mask, and a typed NULL of a nested type cannot be written yet: the
    compiler failed on it with a bare parse error. One error, at the column's entry, for any target."""
    for targets in ((), ("spark",), ("trino",)):
        [error] = _errors(col_type, kind, targets, as_tag=True)
        assert error.line == 13, error  # `      c: [masked]`
        assert "would be masked with null, which cannot be written in spark, trino, duckdb SQL" in error.reason


def test_an_unclassified_nested_column_is_reported_at_its_table() -> None:
    """A column no entry names is masked with null: a nested one cannot be, so the table is refused."""
    class TwoColumns:
        def table(self, name: str) -> TableSchema | None:
            return TableSchema("t.x", (("c", "long"), ("n", "other:array<string>"))) if name == "t.x" else None

    text = _policy("long", MASK_YAML["none"], as_tag=False)
    _, errors = validate(parse_policy(text, "gen.yaml"), TwoColumns(), ())
    [error] = [e for e in errors if "type error" in e.reason]
    assert error.line == 11 and "column 'n' (other:array<string>)" in error.reason  # `  t.x:`


@pytest.mark.parametrize(("col_type", "kind"), [c for c in CASES if applicable(c[1], c[0]) and c[1] != "none"],
                         ids=[f"{k}-{t}" for t, k in CASES if applicable(k, t) and k != "none"])
def test_the_checkers_result_type_is_the_rendered_masks(col_type: str, kind: str) -> None:
    """mask_result_type follows policies/masks.py: sqlglot's type of the rendered mask, where it infers one."""
    mask = MaskSpec(kind, None, n=2, width=10, key="k1")  # type: ignore[arg-type]
    expected = sql_type(mask_result_type(kind, col_type))
    for dialect in ("spark", "duckdb"):
        rendered = render(mask, exp.column("c", table="x"), col_type, dialect, PADS)
        query = sqlglot.parse_one(f"SELECT {rendered.sql(dialect=dialect)} AS c FROM x", read=dialect)
        inferred = annotate_types(query, schema={"x": {"c": sql_type(col_type).sql(dialect)}},
                                  dialect=dialect).selects[0].type
        assert inferred.sql(dialect) == expected.sql(dialect), (kind, col_type, dialect)


def test_policy_check_cli_checks_every_engine_unless_told(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(_policy("long", MASK_YAML["hash"], as_tag=False))
    schema = tmp_path / "schema.yaml"
    schema.write_text("tables:\n  t.x:\n    c: long\n")
    runner = CliRunner()
    failed = runner.invoke(root, ["policy", "check", str(policy), "--schema", str(schema)], env={"K1": "x" * 32})
    assert failed.exit_code == 1 and f"{policy}:17:" in failed.output and "type error for trino" in failed.output
    spark = runner.invoke(root, ["policy", "check", str(policy), "--schema", str(schema), "--target", "spark"],
                          env={"K1": "x" * 32})
    assert spark.exit_code == 0, spark.output
