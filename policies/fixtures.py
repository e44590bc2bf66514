"""`policy test FIXTURES`: YAML cases run against the policy's views in DuckDB.

A fixtures file names the policy (and optionally a schema file), gives base rows per table,
and lists cases: as this user, on this table, expect these rows / this count / these
column values / no view at all. The views are the same compiled SELECTs Spark gets.

    policy: vendas.yaml
    schema: vendas.schema.yaml
    env: {ICETIDE_POLICY_KEY_K1: test-key-0123456789}   # keys for hash masks
    data:
      sales.vendas: [{sale_id: 1, region: North, ...}]
    cases:
      - {name: ana sees North, user: ana, table: sales.vendas, expect_count: 1,
         expect_columns: {region: [North]}, expect_rows: [{sale_id: 1, price: 1200.0}]}
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml
from icetide.errors import PolicyError
from sqlglot import exp

from policies.compiler import CompiledPolicy, audience, compile_policy
from policies.loader import load_policy
from policies.local import CATALOG, lake
from policies.schemas import DictSchemaProvider, SchemaProvider
from policies.validate import check_policy

CASE_KEYS = {"name", "user", "table", "expect_rows", "expect_count", "expect_columns", "expect_visible"}


@dataclass(frozen=True)
class CaseResult:
    name: str
    passed: bool
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "message": self.message}


def _norm(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def _row_key(row: Mapping[str, Any]) -> str:
    return repr(sorted((k, _norm(v)) for k, v in row.items()))


def _check_case(case: Mapping[str, Any], compiled: CompiledPolicy, con: Any) -> CaseResult:
    name = str(case.get("name", "?"))
    user, table = str(case["user"]), str(case["table"])
    access = compiled.get(user, table)
    visible = access is not None and access.visible
    if "expect_visible" in case and bool(case["expect_visible"]) != visible:
        return CaseResult(name, False, f"expected visible={case['expect_visible']}, got {visible}")
    if not visible:
        rows: list[dict[str, Any]] = []
    else:
        view = exp.table_(table.split(".")[-1], db=audience(user), catalog=CATALOG, quoted=True)
        rel = con.sql(exp.select("*").from_(view).sql(dialect="duckdb"))
        rows = [dict(zip(rel.columns, r, strict=True)) for r in rel.fetchall()]
    if "expect_count" in case and int(case["expect_count"]) != len(rows):
        return CaseResult(name, False, f"expected {case['expect_count']} rows, got {len(rows)}")
    for column, values in dict(case.get("expect_columns") or {}).items():
        got = sorted({repr(_norm(r.get(column))) for r in rows})
        want = sorted({repr(_norm(v)) for v in values})
        if got != want:
            return CaseResult(name, False, f"column {column}: expected values {want}, got {got}")
    if "expect_rows" in case:
        expected = list(case["expect_rows"] or [])
        columns = sorted({k for r in expected for k in r})
        got_rows = sorted(_row_key({c: r.get(c) for c in columns}) for r in rows)
        want_rows = sorted(_row_key({c: r.get(c) for c in columns}) for r in expected)
        if got_rows != want_rows:
            return CaseResult(name, False, f"rows differ on {columns}: expected {want_rows}, got {got_rows}")
    return CaseResult(name, True, "ok")


def run_fixtures(path: str | Path, provider: SchemaProvider | None = None) -> list[CaseResult]:
    """Run every case of a fixtures file; PolicyError when the file itself is wrong."""
    file = Path(path)
    try:
        spec = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise PolicyError(f"cannot read fixtures: {exc.__class__.__name__}", file=str(file), line=1, col=1) from None
    if not isinstance(spec, dict) or "policy" not in spec or not isinstance(spec.get("cases"), list):
        raise PolicyError("fixtures need 'policy' and a list of 'cases'", file=str(file), line=1, col=1)
    base = file.parent
    if provider is None:
        if "schema" not in spec:
            raise PolicyError("fixtures need 'schema' (or pass a schema provider)", file=str(file), line=1, col=1)
        provider = DictSchemaProvider.from_file(base / str(spec["schema"]))
    env = {str(k): str(v) for k, v in dict(spec.get("env") or {}).items()}
    compiled = compile_policy(check_policy(load_policy(base / str(spec["policy"])), provider), env)
    data = {str(t): list(r) for t, r in dict(spec.get("data") or {}).items()}
    try:
        con = lake(compiled, data)
    except (ValueError, TypeError, KeyError) as exc:
        raise PolicyError(f"fixture data does not fit the table schema: {exc}", file=str(file), line=1,
                          col=1) from None
    try:
        results = []
        for case in spec["cases"]:
            unknown = set(case) - CASE_KEYS if isinstance(case, dict) else {"<not a mapping>"}
            if unknown or not isinstance(case, dict) or "user" not in case or "table" not in case:
                results.append(CaseResult(str(case.get("name", "?")) if isinstance(case, dict) else "?", False,
                                          f"bad case (needs user and table; unknown keys {sorted(unknown)})"))
                continue
            results.append(_check_case(case, compiled, con))
        return results
    finally:
        con.close()
