"""The main job end to end, exactly as `make demo` runs it, checked from outside.

Runs `icetide demo --keep --json` in its own state directory, then checks with an independent Kafka
client (Debian's kcat) that the topic holds one event per generated row, and stops the stack.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e
ROWS = 3000


def _icetide(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "icetide.cli", *args], env=env, capture_output=True,
                          text=True, timeout=900)


def test_demo_end_to_end_and_kcat_sees_the_events(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    env = {**os.environ, "ICETIDE__STACK__STATE_DIR": str(tmp_path)}
    proc = _icetide(["demo", "--rows", str(ROWS), "--state-dir", str(state), "--keep", "--json"], env)
    try:
        assert proc.returncode == 0, proc.stderr[-3000:]
        summary = json.loads(proc.stdout)
        assert summary["equal"] is True
        assert summary["source"] == summary["downstream"]
        assert summary["source"]["rows"] == ROWS
        assert summary["events_published"] == ROWS
        assert summary["events_applied"] == ROWS

        status = json.loads(_icetide(["stack", "status", "--json"],
                                     {**env, "ICETIDE__STACK__STATE_DIR": str(state)}).stdout)
        kcat = shutil.which("kcat")
        assert kcat, "kcat is installed by make setup (scripts/setup-system.sh)"
        out = subprocess.run([kcat, "-b", status["bootstrap"], "-C", "-t", "icetide.sales.vendas",
                              "-e", "-q", "-f", "%k\t%s\n"], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
        assert len(lines) == ROWS
        keys = {json.loads(ln.split("\t", 1)[0])["sale_id"] for ln in lines}
        assert len(keys) == ROWS
        first = json.loads(lines[0].split("\t", 1)[1])
        assert first["op"] == "c" and first["source"]["table"] == "vendas"

        # the demo's jobs recorded their lineage: the table feeds its topic, the topic the SQLite copy
        seen = _icetide(["lineage", "sales.vendas", "--json"], {**env, "ICETIDE__STACK__STATE_DIR": str(state)})
        assert seen.returncode == 0, seen.stderr[-2000:]
        view = json.loads(seen.stdout)
        assert f"kafka://{status['bootstrap'].split(',')[0]}/icetide.sales.vendas" in view["downstream"]
        assert any(d.startswith("sqlite://") and d.endswith("/sales.vendas") for d in view["downstream"]), view
        jobs = {e["job"] for e in view["edges"]}
        assert {"cdc.run", "cdc.apply"} <= jobs, jobs
    finally:
        _icetide(["stack", "down"], {**env, "ICETIDE__STACK__STATE_DIR": str(state)})
