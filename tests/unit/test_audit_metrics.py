"""Denied accesses and the policy version in force, read from a real audit log (icetide/audit.py writes it)."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from icetide.audit import AuditLog, log_path
from icetide.audit_metrics import AuditMetrics
from icetide.metrics import new_registry

pytestmark = pytest.mark.unit


def scrape(collector: AuditMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = new_registry()
    registry.register(collector)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for f in text_string_to_metric_families(generate_latest(registry).decode()) for s in f.samples}


def test_denials_count_by_action_and_the_last_applied_version_is_in_force(tmp_path: Path) -> None:
    path = log_path(tmp_path)
    collector = AuditMetrics(path)
    assert scrape(collector) == {}  # no log yet: empty families, not an error
    log = AuditLog(path)
    log.append(user="ops", action="apply", resource=["v"], result="applied", policy_id="p", policy_version=1)
    log.append(user="eve", action="select", resource=[], result="denied", reason="no rule")
    log.append(user="ana", action="select", resource=["v"], result="allowed", policy_id="p", policy_version=1)
    log.append(user="ops", action="apply", resource=[], result="error", policy_id="p", policy_version=2)
    assert scrape(collector) == {("icetide_policy_denied_accesses_total", (("action", "select"),)): 1.0,
                                 ("icetide_policy_version", (("policy_id", "p"),)): 1.0}
    log.append(user="ops", action="apply", resource=["v"], result="applied", policy_id="p", policy_version=2)
    log.append(user="eve", action="select", resource=[], result="denied", reason="no rule")
    assert scrape(collector) == {("icetide_policy_denied_accesses_total", (("action", "select"),)): 2.0,
                                 ("icetide_policy_version", (("policy_id", "p"),)): 2.0}


def test_a_replaced_log_is_read_from_its_start(tmp_path: Path) -> None:
    path = log_path(tmp_path)
    collector = AuditMetrics(path)
    for _ in range(3):
        AuditLog(path).append(user="eve", action="select", resource=[], result="denied")
    assert scrape(collector)[("icetide_policy_denied_accesses_total", (("action", "select"),))] == 3.0
    path.unlink()
    AuditLog(path).append(user="eve", action="select", resource=[], result="denied")
    assert scrape(collector)[("icetide_policy_denied_accesses_total", (("action", "select"),))] == 1.0


def test_the_trino_audit_gate_is_a_gauge_while_trino_is_there(tmp_path: Path) -> None:
    from icetide.services.trino_audit_guard import AuditGuard

    guard = AuditGuard(tmp_path / "trino")
    collector = AuditMetrics(log_path(tmp_path), guard.held_file)
    assert scrape(collector) == {}  # no Trino in this state dir
    guard.rules_file.parent.mkdir()
    guard.rules_file.write_text('{"catalogs": []}')
    assert scrape(collector) == {("icetide_trino_audit_gate_closed", ()): 0.0}
    guard.close()
    assert scrape(collector) == {("icetide_trino_audit_gate_closed", ()): 1.0}
