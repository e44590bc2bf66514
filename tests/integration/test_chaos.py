"""bench/chaos.py end to end with one SIGKILL of each kind (the full campaign: docs/results/chaos.md).

The script starts its own broker, writer (Spark), CDC job (Flink) and consumer in a temp state dir,
SIGKILLs the job, the consumer and the broker once each while changes flow, restarts them, and
checks that every event reached Kafka, that no change was applied twice downstream, that
`cdc verify` finds both tables equal, and that nothing it started still runs afterwards. Once on
the local default into a real PostgreSQL server; once on REST + S3 (the script's own REST catalog
server and object store, the job's checkpoints in the bucket) into SQLite, which needs no server
of its own: the lake is what that case is about, and the campaign's SQLite audit is the one its
long runs used (docs/results/chaos.md).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from icetide import pgserver
from icetide.errors import StackError

pytestmark = pytest.mark.integration
CHAOS = Path(__file__).resolve().parents[2] / "bench" / "chaos.py"


@pytest.mark.parametrize(("shape", "sink"), [("local", "postgres"), ("lake", "sqlite")])
def test_one_kill_of_each_kind_then_downstream_equals_source(tmp_path: Path, shape: str, sink: str) -> None:
    if sink == "postgres":
        try:
            pgserver.bin_dir()
        except StackError as exc:
            pytest.skip(str(exc))
    done = subprocess.run([sys.executable, str(CHAOS), "--kills", "1", "--min-gap", "1", "--max-gap", "3",
                           "--shape", shape, "--sink", sink, "--seed", "3", "--state-dir", str(tmp_path / "chaos")],
                          capture_output=True, text=True, timeout=900)
    try:
        report = json.loads(done.stdout)
    except ValueError:
        pytest.fail(f"no JSON report (exit {done.returncode}):\n{done.stderr[-4000:]}")
    context = json.dumps({k: report.get(k) for k in ("error", "unexpected_exits", "kafka", "audit", "row_diff",
                                                      "verify", "kills_not_back_in_time", "left_behind")},
                         indent=1)[-6000:]
    assert done.returncode == 0, context
    assert report["ok"] is True, context
    assert report["left_behind"] == [], context
    assert report["kills"] == {"flink": 1, "consumer": 1, "broker": 1}
    assert report["tables_equal"] == {"chaos.keyed": True, "chaos.log": True}, context
    assert report["changes_applied_twice"] == 0, context
    for census in report["kafka"].values():
        assert census["missing"] == 0 and census["unexpected"] == 0, context
        assert census["content_differs_from_changelog"] == 0, context
        assert census["distinct_positions"] == census["expected_events"] > 0
    lake = {"catalog": "rest", "storage": "s3"} if shape == "lake" else {"catalog": "jdbc", "storage": "local"}
    assert {k: report["shape"][k] for k in lake} == lake
    assert report["shape"]["checkpoints"].startswith("s3://" if shape == "lake" else "file:")
