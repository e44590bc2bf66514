"""The results report's picture: Prometheus' own graph page showing CDC commit→apply latency during a run.

A demo-sized pipeline with monitoring on (`monitoring.enabled`, 1 s scrapes): this process's Spark commits to
a keyed table at `--rate` changes/s for `--seconds` (bench/cdc_latency.py's writer), the continuous CDC job
(`cdc run`, PyFlink, with Flink's Prometheus reporter) and a continuous consumer (`cdc apply` into SQLite)
run as the real CLI subprocesses. At the end it

- checks every scrape job that ran serves the names `EXTERNAL_METRICS` lists (Flink, Spark, the broker);
- saves headless Chromium's screenshot of Prometheus' /graph page with the p50 and p99 of
  `icetide_cdc_commit_to_apply_seconds` over the run's writes (`--png`; the writes begin once the warm-up
  rows, which waited for the job to start, are applied and out of the graph's 30 s rate window);
- saves `icetide status` as it printed during the run (`--status-out`);

and prints a JSON document (scrape jobs up, metrics missing, the latency series' points). Chromium is Debian's
(`apt-get install chromium`, done here when it is missing), run with a fresh empty profile and no network of
its own beyond the loopback page.

    .venv/bin/python bench/prometheus_screenshot.py --png docs/results/prometheus-cdc-latency.png \\
        --status-out docs/results/prometheus-cdc-status.txt --out docs/results/prometheus-cdc-latency.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from cdc_latency import TABLE, Writer, create_table, start, stop
from report import emit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ICETIDE = str(Path(sys.executable).with_name("icetide"))
HIST = "sum by (le) (rate(icetide_cdc_commit_to_apply_seconds_bucket[30s]))"
QUERY = (f'label_replace(histogram_quantile(0.5, {HIST}), "quantile", "p50", "", "") or '
         f'label_replace(histogram_quantile(0.99, {HIST}), "quantile", "p99", "", "")')


def chromium() -> str:
    """Debian's chromium, installed on demand (the tests do not need it, so setup-system.sh does not)."""
    found = shutil.which("chromium")
    if found is None:
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "chromium"], check=True,
                       env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        found = shutil.which("chromium")
    assert found, "chromium is not on PATH after apt-get install chromium"
    return found


def screenshot(url: str, png: Path, size: str = "1400,900") -> None:
    """Headless Chromium's screenshot of `url`, after the page's scripts had 15 s of virtual time to draw."""
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="icetide-chromium-") as profile:
        subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={profile}", "--hide-scrollbars", "--virtual-time-budget=15000",
                        f"--window-size={size}", f"--screenshot={png.resolve()}", url],
                       check=True, capture_output=True, timeout=180)


def prom(base: str, path: str, **params: Any) -> Any:
    with urllib.request.urlopen(f"{base}{path}?{urllib.parse.urlencode(params)}", timeout=30) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=500, help="Changes/s the writer commits.")
    parser.add_argument("--seconds", type=float, default=150.0)
    parser.add_argument("--state-dir", type=Path, default=ROOT / ".state" / "bench-screenshot")
    parser.add_argument("--png", type=Path, default=ROOT / "docs" / "results" / "prometheus-cdc-latency.png")
    parser.add_argument("--status-out", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from icetide.services.monitoring_config import EXTERNAL_METRICS
    from icetide.settings import load_settings
    from icetide.spark import spark_session
    from icetide.stack import Stack

    shutil.rmtree(args.state_dir, ignore_errors=True)
    args.state_dir.mkdir(parents=True)
    env = {**os.environ, "ICETIDE__STACK__STATE_DIR": str(args.state_dir), "ICETIDE__MONITORING__ENABLED": "true",
           "ICETIDE__MONITORING__SCRAPE_INTERVAL_S": "1", "ICETIDE__MONITORING__EVALUATION_INTERVAL_S": "1",
           "ICETIDE__CDC__POLL_INTERVAL_S": "0.5"}
    settings = load_settings(None, environ={k: v for k, v in env.items() if k.startswith("ICETIDE__")})
    stack = Stack(settings)
    status = stack.up().to_dict()
    base = status["monitoring"]["prometheus"]["url"]
    logs = args.state_dir / "logs"
    logs.mkdir()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        spark = spark_session(settings)
        create_table(spark)
        writer = Writer(spark)
        writer.insert(100)
        procs.append(start([ICETIDE, "cdc", "run", "--tables", TABLE, "--metrics-port", "0"], env, logs / "job.log"))
        procs.append(start([ICETIDE, "cdc", "apply", "--sink", "sqlite", "--metrics-port", "0"], env,
                           logs / "apply.log"))
        # the warm-up rows waited for the job to start (their latency is its start-up): once they are applied
        # and out of the 30 s rate window, the graph shows the pipeline's steady state only
        deadline = time.monotonic() + 600
        while not prom(base, "api/v1/query", query="sum(icetide_cdc_events_applied_total) >= 100")["result"]:
            assert time.monotonic() < deadline, "the warm-up rows were not applied within 10 min"
            time.sleep(2)
        time.sleep(35)
        began = time.time()
        written = writer.run(args.rate, args.seconds, 1.0)
        time.sleep(10)  # the last commits applied and scraped
        status_text = subprocess.run([ICETIDE, "status"], env=env, capture_output=True, text=True, timeout=120).stdout
        if args.status_out:
            args.status_out.parent.mkdir(parents=True, exist_ok=True)
            args.status_out.write_text(status_text)
        jobs_up = prom(base, "api/v1/query", query="max by (job) (max_over_time(up[1m]))")["result"]
        up = {r["metric"]["job"]: int(float(r["value"][1])) for r in jobs_up}
        missing = {job: [m for m in names  # over a minute: a busy JVM's scrape may time out and mark it stale
                         if not prom(base, "api/v1/query", query=f'last_over_time({m}{{job="{job}"}}[1m])')["result"]]
                   for job, (_source, names) in EXTERNAL_METRICS.items() if up.get(job) == 1}
        end = time.time()
        series = prom(base, "api/v1/query_range", query=QUERY, start=began, end=end, step=5)["result"]
        window = math.ceil(end - began)  # the run's seconds: the graph ends now and starts with the writes
        graph = base + "graph?" + urllib.parse.urlencode({"g0.expr": QUERY, "g0.tab": "0", "g0.stacked": "0",
                                                          "g0.range_input": f"{window}s", "g0.show_exemplars": "0"})
        screenshot(graph, args.png)
    finally:
        for proc in reversed(procs):
            stop(proc)
        stack.down()
    print(status_text, file=sys.stderr)
    emit({"table": TABLE, "written": written, "scrape_jobs_up": up, "external_metrics_missing": missing,
          "latency_series": {s["metric"].get("quantile", "?"): [[round(t - began), None if v == "NaN" else float(v)]
                                                                for t, v in s["values"]] for s in series},
          "png": str(args.png), "graph_url_path": graph.removeprefix(base)}, args.out)


if __name__ == "__main__":
    main()
