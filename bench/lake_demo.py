"""The demo on the local default beside the demo on REST + S3, in the same run; and the object store's set-up.

Runs `icetide demo --json` twice in fresh state directories — the local default (JDBC catalog on SQLite, a
warehouse folder) and `ICETIDE__CATALOG__TYPE=rest ICETIDE__STORAGE__KIND=s3` (Iceberg's reference REST
server, SeaweedFS with SSE-S3) — and reports each one's step times, the ratios, and that both ended EQUAL.
The set-up cost the object store adds: the warm reuse of `scripts/build-weed.sh` is timed here; the cold
build's time is read from a build log (`--cold-log`, the "weed: built in N s" line of a first build).

    .venv/bin/python bench/lake_demo.py --rows 50000 --out docs/results/lake-demo.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from report import emit

ROOT = Path(__file__).resolve().parent.parent
LAKE = {"ICETIDE__CATALOG__TYPE": "rest", "ICETIDE__STORAGE__KIND": "s3"}
WEED_VERSION = "v0.0.0-20261109003541-7506e5f91cd6"


def run_demo(rows: int, state: Path, extra: dict[str, str]) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ICETIDE__CATALOG__", "ICETIDE__STORAGE__"))}
    env |= {"ICETIDE__STACK__STATE_DIR": str(state), "PYTHONPATH": str(ROOT), **extra}
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "icetide.cli", "demo", "--rows", str(rows), "--json"],
                          env=env, capture_output=True, text=True, cwd=ROOT, timeout=1800)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"demo failed ({extra or 'local'}): {proc.stderr[-2000:]}")
    summary = json.loads(proc.stdout)
    return {"equal": summary["equal"], "rows": summary["source"]["rows"], "checksum": summary["source"]["checksum"],
            "step_seconds": summary["step_seconds"], "total_seconds": summary["total_seconds"],
            "wall_seconds": round(wall, 2)}


def weed_setup(cold_log: Path | None) -> dict[str, Any]:
    started = time.perf_counter()
    subprocess.run(["bash", str(ROOT / "scripts" / "build-weed.sh"), WEED_VERSION, str(ROOT / ".cache" / "weed")],
                   check=True, capture_output=True, text=True)
    out: dict[str, Any] = {"warm_reuse_seconds": round(time.perf_counter() - started, 3)}
    if cold_log and cold_log.is_file():
        found = re.search(r"built in (\d+) s", cold_log.read_text(errors="replace"))
        out["cold_build_seconds"] = int(found.group(1)) if found else None
        out["cold_build_log"] = str(cold_log)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--cold-log", type=Path, default=None, help="log of a first (cold) weed build")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="icetide-lake-bench-") as tmp:
        local = run_demo(args.rows, Path(tmp) / "local", {})
        lake = run_demo(args.rows, Path(tmp) / "lake", LAKE)
    steps = sorted(set(local["step_seconds"]) & set(lake["step_seconds"]))
    emit({
        "benchmark": "demo: local default vs REST catalog + S3 (SSE-S3), same run",
        "rows": args.rows,
        "local": local,
        "rest_s3": lake,
        "ratio_total": round(lake["total_seconds"] / local["total_seconds"], 2),
        "ratio_steps": {s: round(lake["step_seconds"][s] / local["step_seconds"][s], 2) for s in steps},
        "same_checksum": local["checksum"] == lake["checksum"],
        "object_store_setup": weed_setup(args.cold_log),
    }, args.out)


if __name__ == "__main__":
    main()
