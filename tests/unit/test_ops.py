"""Alert rules: promtool accepts them and their unit tests pass; every icetide metric they use exists."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
RULES = sorted((ROOT / "ops" / "prometheus").glob("*rules*.yml"))
RULE_TESTS = sorted((ROOT / "ops" / "prometheus" / "tests").glob("*.yml"))
ROOMS = ("icetide", "streaming", "connectors", "batch", "policies")


def _promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is installed by make setup (Debian package prometheus)"
    return found


def test_rules_are_valid() -> None:
    proc = subprocess.run([_promtool(), "check", "rules", *map(str, RULES)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("test_file", RULE_TESTS, ids=lambda p: p.name)
def test_rule_unit_tests_pass(test_file: Path) -> None:
    proc = subprocess.run([_promtool(), "test", "rules", test_file.name], cwd=test_file.parent,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _defined_metric_names() -> set[str]:
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    import metrics_catalogue

    names = {row["name"] for _p, _j, rows in metrics_catalogue.catalogue() for row in rows}
    for room in ROOMS:
        for source in (ROOT / room).rglob("*.py"):
            names.update(re.findall(r"[\"'](icetide_[a-z0-9_]+)[\"']", source.read_text()))
    return names


def _base(name: str) -> str:
    return re.sub(r"_(total|bucket|sum|count|created)$", "", name)


def test_every_icetide_metric_used_by_ops_is_defined_in_code() -> None:
    used: set[str] = set()
    for path in [*RULES, *(ROOT / "ops" / "grafana").rglob("*.json")]:
        used.update(re.findall(r"\b(icetide_[a-z0-9_]+)", path.read_text()))
    defined = {_base(n) for n in _defined_metric_names()}
    missing = sorted(n for n in used if _base(n) not in defined)
    assert not missing, f"ops reference metrics no code defines: {missing}"
