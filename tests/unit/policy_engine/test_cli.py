"""The `icetide policy` commands (no Spark): exit codes, JSON output, watch semantics."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from icetide.cli import main
from policies.apply import Watcher
from policies.compiler import CompiledPolicy
from tests.unit.policy_engine.support import EXAMPLE, KEY_ENV, SCHEMA_FILE, compile_text, trino_example_text

pytestmark = pytest.mark.unit

SCHEMA = ["--schema", str(SCHEMA_FILE)]


@pytest.fixture(autouse=True)
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key, value in KEY_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ICETIDE__STACK__STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("ICETIDE_CONFIG", raising=False)


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_check_ok_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "policy", "check", str(EXAMPLE), *SCHEMA, "--json")
    assert code == 0
    data = json.loads(out)
    assert data["ok"] and data["policy"] == "sales-access" and len(data["content_hash"]) == 64


def test_check_lists_every_error_and_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(EXAMPLE.read_text().replace("region = user_attr('region')", "regionx = 1")
                   .replace("columns: [price]", "columns: [pricey]"))
    code, out, _ = run(capsys, "policy", "check", str(bad), *SCHEMA, "--json")
    assert code == 1
    errors = json.loads(out)["errors"]
    assert len(errors) == 2 and all(e["line"] > 0 and e["col"] > 0 for e in errors)
    code, _, err = run(capsys, "policy", "check", str(bad), *SCHEMA)
    assert code == 1 and err.count(f"{bad}:") == 2


def test_compile_targets(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "policy", "compile", str(EXAMPLE), "--target", "spark", *SCHEMA)
    assert code == 0 and "CREATE OR REPLACE VIEW `lake`.`sec_ana`.`vendas`" in out and "icetide.policy_hash" in out
    bi = tmp_path / "vendas-bi.yaml"
    bi.write_text(trino_example_text())
    code, out, _ = run(capsys, "policy", "compile", str(bi), "--target", "trino", *SCHEMA)
    rules = json.loads(out)
    assert code == 0 and rules["tables"][-1] == {"privileges": []}
    code, out, _ = run(capsys, "policy", "compile", str(EXAMPLE), "--target", "duckdb", *SCHEMA, "--json")
    assert code == 0 and "ana@sales.vendas" in json.loads(out)["queries"]
    target = tmp_path / "rules.json"
    code, _, _ = run(capsys, "policy", "compile", str(bi), "--target", "trino", *SCHEMA, "--out", str(target))
    assert code == 0 and json.loads(target.read_text())["tables"]


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(capsys, "policy", "compile", str(EXAMPLE), *SCHEMA)
    assert code == 2


def test_missing_key_is_a_policy_error(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ICETIDE_POLICY_KEY_K1")
    code, _, err = run(capsys, "policy", "compile", str(EXAMPLE), "--target", "spark", *SCHEMA)
    assert code == 1 and "vendas.yaml:24:3" in err and "ICETIDE_POLICY_KEY_K1" in err


def test_explain(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "policy", "explain", str(EXAMPLE), "--user", "ana", "--table", "sales.vendas", *SCHEMA,
                       "--json")
    data = json.loads(out)
    assert code == 0 and data["visible"] and data["filter"] == "region = 'North'"
    assert {c["name"]: c["mask"] for c in data["columns"]}["price"] == "bucket(100)"
    code, out, _ = run(capsys, "policy", "explain", str(EXAMPLE), "--user", "dave", "--table", "sales.vendas",
                       *SCHEMA)
    assert code == 0 and "NO ACCESS" in out


def test_policy_test_command(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    fixtures = EXAMPLE.parent / "vendas.tests.yaml"
    code, out, _ = run(capsys, "policy", "test", str(fixtures), "--json")
    assert code == 0 and json.loads(out)["failed"] == 0
    broken = tmp_path / "t.yaml"
    broken.write_text(fixtures.read_text().replace("policy: vendas.yaml", f"policy: {EXAMPLE}")
                      .replace("schema: vendas.schema.yaml", f"schema: {SCHEMA_FILE}")
                      .replace("expect_count: 2\n    expect_columns: {region: [North]}",
                               "expect_count: 2\n    expect_columns: {region: [South]}"))
    code, out, _ = run(capsys, "policy", "test", str(broken))
    assert code == 1 and "FAIL user A" in out


def test_diff(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    new = tmp_path / "new.yaml"
    new.write_text(EXAMPLE.read_text().replace("mask: {bucket: 100}", "mask: none")
                   .replace("dave:  {}", "dave:  {groups: [admins]}"))
    code, out, _ = run(capsys, "policy", "diff", str(EXAMPLE), str(new), *SCHEMA, "--json")
    changes = json.loads(out)["changes"]
    assert code == 0
    assert {"user": "ana", "table": "sales.vendas", "what": "column:price", "direction": "gains",
            "old": "bucket(100)", "new": "none"} in changes
    assert any(c["user"] == "dave" and c["what"] == "table" and c["direction"] == "gains" for c in changes)


def test_audit_verify(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from icetide.audit import AuditLog

    log = AuditLog(tmp_path / "a.jsonl")
    for _ in range(3):
        log.append(user="ana", action="select", resource=[], result="denied")
    code, _, _ = run(capsys, "policy", "audit-verify", str(log.path))
    assert code == 0
    log.path.write_text(log.path.read_text().replace('"denied"', '"allowed"', 1))
    code, out, _ = run(capsys, "policy", "audit-verify", str(log.path), "--json")
    assert code == 1 and json.loads(out)["line"] == 1


def test_watch_reapplies_on_change_and_keeps_last_good(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(EXAMPLE.read_text())
    applied: list[CompiledPolicy] = []
    messages: list[str] = []

    def load(p: Path) -> CompiledPolicy:
        return compile_text(p.read_text(), str(p))

    watcher = Watcher(path, load, applied.append, messages.append)
    stop = threading.Event()
    thread = threading.Thread(target=watcher.run, kwargs={"interval": 0.2, "stop": stop.is_set}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while not applied and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(applied) == 1
        path.write_text(EXAMPLE.read_text().replace("version: 1", "version: 1\nbogus: 1"))  # broken
        time.sleep(1.0)
        assert len(applied) == 1 and watcher.current is applied[0]
        assert any("not applied" in m and ":10:1:" in m for m in messages)
        changed = time.monotonic()
        path.write_text(EXAMPLE.read_text().replace("bucket: 100", "bucket: 1000"))
        while len(applied) < 2 and time.monotonic() < changed + 5:
            time.sleep(0.05)
        assert len(applied) == 2 and time.monotonic() - changed < 5
    finally:
        stop.set()
        thread.join(timeout=5)


def test_query_denials_need_no_spark_and_are_audited(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from icetide.audit import verify

    code, _, err = run(capsys, "query", "--as", "ana", "SELECT 1")
    assert code == 1 and "no policy has been applied" in err
    code, _, err = run(capsys, "query", "--as", "ana", "--policy", str(EXAMPLE), *SCHEMA,
                       "SELECT * FROM lake.sales.vendas")
    assert code == 1 and "not one of your secure views" in err
    log = tmp_path / "state" / "audit" / "policy-audit.jsonl"
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["result"] for r in records] == ["denied", "denied"] and records[1]["policy_id"] == "sales-access"
    assert verify(log).ok
