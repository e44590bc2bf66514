"""The embedded monitoring stack's files: durations scale exactly, the rendered Prometheus and Alertmanager
configs pass promtool / amtool, the scaled rules still pass `promtool check rules`, and targets register."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from icetide.metrics import register_target, targets_dir, unregister_target
from icetide.services import monitoring_config as cfg

pytestmark = pytest.mark.unit


def _tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"{name} is installed by make setup (Debian packages prometheus, prometheus-alertmanager)"
    return found


@given(st.lists(st.tuples(st.integers(1, 59), st.sampled_from(["s", "m", "h"])), min_size=1, max_size=3,
                unique_by=lambda t: t[1]))
def test_durations_round_trip(parts: list[tuple[int, str]]) -> None:
    order = {"h": 0, "m": 1, "s": 2}
    text = "".join(f"{n}{u}" for n, u in sorted(parts, key=lambda p: order[p[1]]))
    secs = cfg.seconds(text)
    assert cfg.seconds(cfg.duration(secs)) == secs
    assert cfg.seconds(cfg.scale_duration(text, 1 / 60)) == pytest.approx(secs / 60, abs=0.001)


def test_bad_duration_is_an_error() -> None:
    with pytest.raises(ValueError, match="not a Prometheus duration"):
        cfg.seconds("5 minutes")


def test_scale_expr_scales_every_window_and_nothing_else() -> None:
    expr = 'sum(rate(x_total{le="5m"}[10m])) > 5 and deriv(y[5m:30s]) > 0'
    assert cfg.scale_expr(expr, 0.1) == 'sum(rate(x_total{le="5m"}[60s])) > 5 and deriv(y[30s:3s]) > 0'
    assert cfg.scale_expr(expr, 1) == expr


def test_scaled_rules_pass_promtool(tmp_path: Path) -> None:
    for source in sorted(cfg.RULES_DIR.glob("*rules*.yml")):
        rules = yaml.safe_load(source.read_text())
        scaled = cfg.scaled_rules(rules, 1 / 60)
        pairs = [(a, b) for g, h in zip(rules["groups"], scaled["groups"], strict=True)
                 for a, b in zip(g["rules"], h["rules"], strict=True) if "for" in a]
        assert pairs and all(cfg.seconds(b["for"]) * 60 == pytest.approx(cfg.seconds(a["for"])) for a, b in pairs)
        assert rules == yaml.safe_load(source.read_text())  # the shipped document is untouched
        out = tmp_path / source.name
        out.write_text(yaml.safe_dump(scaled, allow_unicode=True))
        proc = subprocess.run([_tool("promtool"), "check", "rules", str(out)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr


def test_prometheus_config_passes_promtool(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "r.yml").write_text("groups: []\n")
    trino = cfg.TrinoScrape("icetide-monitor", tmp_path / "monitor-password", tmp_path / "ca.pem")
    config = cfg.prometheus_config(host="127.0.0.1", port=9090, alertmanager_port=9093, targets=tmp_path / "t",
                                   rules=tmp_path / "rules", scrape_s=0.5, evaluation_s=1, trino=trino)
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert list(jobs) == ["prometheus", "alertmanager", *cfg.JOBS]
    assert jobs["trino"]["scheme"] == "https" and jobs["trino"]["tls_config"] == {"ca_file": str(trino.ca_file)}
    assert jobs["trino"]["basic_auth"] == {"username": "icetide-monitor", "password_file": str(trino.password_file)}
    assert all("basic_auth" not in job for name, job in jobs.items() if name != "trino")
    # without Trino's CA (Trino never started here) the job is left out: Prometheus would drop it anyway
    bare = cfg.prometheus_config(host="127.0.0.1", port=9090, alertmanager_port=9093, targets=tmp_path / "t",
                                 rules=tmp_path / "rules", scrape_s=0.5, evaluation_s=1)
    assert "trino" not in [job["job_name"] for job in bare["scrape_configs"]]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run([_tool("promtool"), "check", "config", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert config["global"]["scrape_interval"] == "500ms"


@pytest.mark.parametrize("webhook", [None, "http://127.0.0.1:1/hook"])
def test_alertmanager_config_passes_amtool(tmp_path: Path, webhook: str | None) -> None:
    config = cfg.alertmanager_config(webhook, 1 / 60)
    assert config["route"]["group_interval"] == "5s"
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run([_tool("amtool"), "check-config", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_register_target_writes_file_sd_and_unregisters(tmp_path: Path) -> None:
    path = register_target(tmp_path, "icetide-consumer", "127.0.0.1", 1234, labels={"group": "g"},
                           remove_at_exit=False)
    assert path.parent == targets_dir(tmp_path, "icetide-consumer")
    entry = json.loads(path.read_text())
    assert entry[0]["targets"] == ["127.0.0.1:1234"] and entry[0]["labels"]["group"] == "g"
    unregister_target(path)
    assert not path.exists()
    with pytest.raises(ValueError, match="unknown scrape job"):
        targets_dir(tmp_path, "nope")


def test_dead_letter_counters_are_served_from_zero() -> None:
    """Without a 0 sample before the first letter, increase() never sees it and IcetideCdcDeadLetters stays
    silent (found by tests/integration/test_monitoring.py)."""
    from prometheus_client import generate_latest

    from connectors.metrics import DEAD_LETTER_REASONS, ConsumerMetrics

    text = generate_latest(ConsumerMetrics().registry).decode()
    for reason in DEAD_LETTER_REASONS:
        assert f'icetide_cdc_dead_letters_total{{reason="{reason}"}} 0.0' in text
