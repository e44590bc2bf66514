"""docs/metrics.md is generated from the code and current; every alert links a runbook that exists."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import metrics_catalogue  # noqa: E402


def test_metrics_doc_is_current() -> None:
    assert metrics_catalogue.main(["--check"]) == 0, "run: python scripts/metrics_catalogue.py"


def test_catalogue_names_follow_prometheus_conventions() -> None:
    for _process, _job, rows in metrics_catalogue.catalogue():
        for row in rows:
            assert row["name"].startswith("icetide_") and row["name"] == row["name"].lower()
            assert (row["type"] == "counter") == row["name"].endswith("_total"), row["name"]
            assert row["help"], row["name"]


def _alerts() -> list[dict[str, object]]:
    rules = []
    for path in sorted((ROOT / "ops" / "prometheus").glob("*rules*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            rules += [r for r in group["rules"] if "alert" in r]
    return rules


@pytest.mark.parametrize("rule", _alerts(), ids=lambda r: str(r["alert"]))
def test_every_alert_links_its_runbook(rule: dict[str, object]) -> None:
    annotations = rule.get("annotations")
    assert isinstance(annotations, dict) and "runbook_url" in annotations, f"{rule['alert']} has no runbook_url"
    url = str(annotations["runbook_url"])
    assert url == f"docs/runbooks/{rule['alert']}.md"
    page = ROOT / url
    assert page.is_file(), f"{page} is missing"
    text = page.read_text()
    for heading in ("## What it means", "## How to confirm", "## What to do"):
        assert heading in text, f"{page}: no '{heading}' section"
