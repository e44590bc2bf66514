"""The main job end to end on a real lake's shape: `ICETIDE__CATALOG__TYPE=rest ICETIDE__STORAGE__KIND=s3 icetide demo`.

The demo's stack then also runs the object store and the REST catalog server; the check from outside is
that source == downstream, that `stack status` reports both, that the table's files are objects in the
bucket (no local warehouse), and that `stack down` stops everything it started.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from icetide.services.object_store import s3_client
from icetide.settings import load_settings
from icetide.storage import s3_endpoint, s3_key

pytestmark = pytest.mark.e2e
ROWS = 3000
LAKE = {"ICETIDE__CATALOG__TYPE": "rest", "ICETIDE__STORAGE__KIND": "s3"}


def _icetide(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "icetide.cli", *args], env=env, capture_output=True,
                          text=True, timeout=1200)


def test_demo_on_a_rest_catalog_and_s3(tmp_path: Path) -> None:
    state = tmp_path / "demo"
    env = {**os.environ, "ICETIDE__STACK__STATE_DIR": str(tmp_path), **LAKE}
    in_state = {**env, "ICETIDE__STACK__STATE_DIR": str(state)}
    proc = _icetide(["demo", "--rows", str(ROWS), "--state-dir", str(state), "--keep", "--json"], env)
    try:
        assert proc.returncode == 0, proc.stderr[-3000:]
        summary = json.loads(proc.stdout)
        assert summary["equal"] is True and summary["source"] == summary["downstream"]
        assert summary["source"]["rows"] == ROWS == summary["events_applied"]

        status = json.loads(_icetide(["stack", "status", "--json"], in_state).stdout)
        assert status["catalog"]["type"] == "rest" and status["catalog"]["running"] is True
        assert status["catalog"]["uri"].startswith("http://127.0.0.1:")
        storage = status["storage"]
        assert (storage["kind"], storage["bucket"], storage["running"]) == ("s3", "warehouse", True)
        assert storage["endpoint"].startswith("http://127.0.0.1:") and Path(storage["data_dir"]).is_dir()

        settings = load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(state), **LAKE})
        client = s3_client(s3_endpoint(settings), s3_key(settings, "admin"), settings.storage.region)
        keys = [o["Key"] for o in client.list_objects_v2(Bucket="warehouse", Prefix="warehouse/")["Contents"]]
        assert any(k.endswith(".parquet") for k in keys) and any(k.endswith(".metadata.json") for k in keys)
        assert not (state / "warehouse").exists() and not (state / "catalog.db").exists()
    finally:
        _icetide(["stack", "down"], in_state)
    after = json.loads(_icetide(["stack", "status", "--json"], in_state).stdout)
    assert after["running"] is False
    assert after["catalog"]["running"] is False and after["storage"]["running"] is False
