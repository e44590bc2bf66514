"""Trino's rules.json (issue 12's defects): BI metadata, no HMAC key, atomic writes, impersonation."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from icetide.cli import main
from policies.compiler import TrinoTargetError, trino_rules
from policies.trino_apply import apply_trino
from tests.unit.policy_engine.support import EXAMPLE, KEY_ENV, SCHEMA_FILE, compile_text, trino_example_text

pytestmark = pytest.mark.unit


def bi_policy():  # type: ignore[no-untyped-def]
    return compile_text(trino_example_text(), "vendas-bi.yaml")


def test_metadata_schemas_are_granted_before_the_catch_all() -> None:
    tables = trino_rules(bi_policy())["tables"]
    meta = [i for i, e in enumerate(tables) if e.get("catalog") == "^system$"]
    assert meta and meta[0] == len(tables) - 2 and tables[-1] == {"privileges": []}
    entry = tables[meta[0]]
    assert entry["privileges"] == ["SELECT"] and "user" not in entry
    pattern = re.compile(entry["schema"])
    assert pattern.fullmatch("jdbc") and pattern.fullmatch("metadata") and not pattern.fullmatch("runtime")



def test_no_session_property_may_be_set() -> None:
    """`lake.statistics_enabled` would bring back the file statistics (rows outside a filter, raw values)."""
    rules = trino_rules(bi_policy())
    assert rules["catalog_session_properties"] == [{"allow": False}]
    assert rules["system_session_properties"] == [{"allow": False}]

def test_the_hmac_key_never_reaches_rules_json() -> None:
    compiled = compile_text(EXAMPLE.read_text(), str(EXAMPLE))
    with pytest.raises(TrinoTargetError) as caught:
        trino_rules(compiled)
    err = caught.value
    assert err.file == str(EXAMPLE) and err.line > 0 and err.col > 0
    assert "customer_email" in str(err) and "erin" in str(err)
    key = KEY_ENV["ICETIDE_POLICY_KEY_K1"]
    assert key not in str(err) and key.encode().hex() not in str(err)
    # and with the hash replaced, nothing key-like is in the output
    text = json.dumps(trino_rules(bi_policy()))
    assert "HMAC" not in text.upper() and key.encode().hex() not in text


def test_impersonation_only_for_the_configured_account() -> None:
    assert "impersonation" not in trino_rules(bi_policy())
    rules = trino_rules(bi_policy(), bi_account="superset")["impersonation"]
    allow = rules[0]
    assert allow["allow"] is True and re.fullmatch(allow["original_user"], "superset")
    assert re.fullmatch(allow["new_user"], "ana") and not re.fullmatch(allow["new_user"], "superset2")
    assert not re.fullmatch(allow["original_user"], "ana") and rules[-1]["allow"] is False


def test_apply_writes_atomically_with_mode_0600(tmp_path: Path) -> None:
    target = tmp_path / "rules.json"
    apply_trino(bi_policy(), target)
    assert oct(target.stat().st_mode & 0o777) == "0o600"
    assert json.loads(target.read_text())["tables"][-1] == {"privileges": []}
    assert [p.name for p in tmp_path.iterdir()] == ["rules.json"]


def test_a_failed_write_leaves_the_previous_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "rules.json"
    target.write_text('{"previous": true}')

    # a fake fault: the disk fills up halfway through the write (fsync fails), which a test cannot cause for real
    def full(_fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        apply_trino(bi_policy(), target)
    assert target.read_text() == '{"previous": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["rules.json"]


def test_a_policy_trino_cannot_enforce_never_reaches_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    for key, value in KEY_ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("ICETIDE__STACK__STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("ICETIDE_CONFIG", raising=False)
    rules = tmp_path / "state" / "trino" / "rules.json"
    bi = tmp_path / "vendas-bi.yaml"
    bi.write_text(trino_example_text())
    assert main(["policy", "apply", str(bi), "--target", "trino", "--schema", str(SCHEMA_FILE)]) == 0
    good = rules.read_text()
    assert main(["policy", "apply", str(EXAMPLE), "--target", "trino", "--schema", str(SCHEMA_FILE)]) != 0
    assert "refuses keyed hashes" in capsys.readouterr().err
    assert rules.read_text() == good


def test_no_user_owns_a_schema() -> None:
    """Trino's default without schema rules is that everyone owns every schema, which lists a schema to a user
    the policy grants nothing in it (dave in the example)."""
    assert trino_rules(bi_policy())["schemas"] == [{"owner": False}]


def test_apply_keeps_the_monitoring_principal_to_system_information(tmp_path: Path) -> None:
    """Every applied rules.json (and the deny-all one) lets the monitoring principal read system information
    (Prometheus' scrape of /metrics) and nothing else; nobody else gets system information."""
    from icetide.services.trino import DENY_ALL, MONITOR_USER, with_monitor

    target = tmp_path / "rules.json"
    apply_trino(bi_policy(), target, bi_account="superset")
    applied = json.loads(target.read_text())
    for rules in (applied, with_monitor(DENY_ALL)):
        first = {key: rules[key][0] for key in ("catalogs", "tables", "system_information")}
        assert all(re.fullmatch(entry["user"], MONITOR_USER) for entry in first.values())
        assert first["catalogs"]["allow"] == "none" and first["tables"]["privileges"] == []
        assert rules["system_information"] == [first["system_information"]]
        assert first["system_information"]["allow"] == ["read"]
        assert not re.fullmatch(first["system_information"]["user"], "superset")
    assert not any(re.fullmatch(r["new_user"], MONITOR_USER) for r in applied["impersonation"] if r["allow"])


def test_hidden_columns_are_denied_to_filtered_or_masked_users_only() -> None:
    """`$path` holds partition values (a masked partition column's too) and `$file_modified_time` write times: no
    policy classifies them, so only a user who sees the whole table in clear may read them."""
    entries = {e["user"].strip("^$"): e for e in trino_rules(bi_policy())["tables"] if "user" in e}
    for user in ("ana", "bruno", "erin"):  # filtered and/or masked
        denied = {c["name"] for c in entries[user]["columns"] if c.get("allow") is False}
        assert denied == {"$path", "$file_modified_time", "$partition"}, user
    assert "columns" not in entries["carla"]  # the admin: no filter, no mask
