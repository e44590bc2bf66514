"""Attack suite (unit tier): gateway static checks + secure views in DuckDB, 0 leaks.

Every attack is either denied by the gateway, or allowed and then returns exactly what the
same query returns on a plain copy of the user's view (so nothing beyond the view's masked,
filtered rows can be inferred), and no result or error ever contains a hidden value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlglot import exp

from icetide.audit import AuditLog, verify
from policies.gateway import check_query, run_query
from policies.local import lake
from tests.unit.policy_engine.attack_cases import ALLOWED, DENIED, data, secrets
from tests.unit.policy_engine.support import VENDAS, example

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def world() -> Any:
    compiled = example()
    con = lake(compiled, {VENDAS: data()})
    for user in ("ana", "bruno", "erin"):  # oracle: a plain table holding exactly the view's rows
        con.execute(f"CREATE SCHEMA lake.oracle_{user}")
        con.execute(f"CREATE TABLE lake.oracle_{user}.vendas AS SELECT * FROM lake.sec_{user}.vendas")
    yield compiled, con
    con.close()


def run(con: Any, sql: str) -> tuple[list[Any] | None, str | None]:
    try:
        return con.sql(sql).fetchall(), None
    except Exception as exc:
        return None, str(exc)


def to_oracle(tree: exp.Expression, user: str) -> str:
    def swap(node: exp.Expression) -> exp.Expression:
        if isinstance(node, exp.Table) and node.db == f"sec_{user}":
            out = exp.table_(node.name, db=f"oracle_{user}", catalog="lake")
            if node.args.get("alias"):
                out.set("alias", node.args["alias"])
            return out
        return node

    return tree.copy().transform(swap).sql(dialect="duckdb")


def test_suite_is_large() -> None:
    assert len(ALLOWED) + len(DENIED) >= 90


@pytest.mark.parametrize("sql", DENIED)
def test_denied(world: Any, sql: str, tmp_path: Path) -> None:
    compiled, _con = world
    decision = check_query(sql, "ana", compiled)
    assert not decision.allowed, decision.sql()
    audit = AuditLog(tmp_path / "audit.jsonl")
    outcome = run_query(sql, "ana", compiled, lambda q: ([], []), audit, dialect="duckdb")
    assert outcome.error is None and not outcome.rows
    assert verify(audit.path).ok and audit.path.read_text().count('"result": "denied"') == 1


@pytest.mark.parametrize("sql", ALLOWED)
def test_allowed_reveals_nothing_beyond_the_view(world: Any, sql: str) -> None:
    compiled, con = world
    decision = check_query(sql, "ana", compiled)
    assert decision.allowed, decision.reason
    got, got_error = run(con, decision.sql("duckdb"))
    want, want_error = run(con, to_oracle(decision.statement, "ana"))  # type: ignore[arg-type]
    if "ORDER BY" in sql.upper():
        assert got == want
    else:
        assert sorted(map(repr, got or [])) == sorted(map(repr, want or []))
    assert (got_error is None) == (want_error is None)
    text = repr(got) + str(got_error)
    leaked = [s for s in secrets() if s in text]
    assert not leaked


def test_other_users_and_unknown_users(world: Any) -> None:
    compiled, _ = world
    assert check_query("SELECT * FROM sec_bruno.vendas", "bruno", compiled).allowed
    assert not check_query("SELECT * FROM sec_dave.vendas", "dave", compiled).allowed
    assert not check_query("SELECT * FROM sec_mallory.vendas", "mallory", compiled).allowed
    assert not check_query("SELECT * FROM sec_ana.vendas", "mallory", compiled).allowed


def test_engine_errors_are_reported_by_class_only(world: Any, tmp_path: Path) -> None:
    compiled, _con = world

    def execute(sql: str) -> tuple[list[str], list[tuple[object, ...]]]:
        raise ValueError("Could not convert string 'secret1@mail.example' to INT32")

    audit = AuditLog(tmp_path / "audit.jsonl")
    outcome = run_query("SELECT * FROM sec_ana.vendas", "ana", compiled, execute, audit, dialect="duckdb")
    assert outcome.error == "ValueError"
    assert "secret1" not in audit.path.read_text()
