"""Benchmark reports: a results JSON, a Markdown page and a PNG bar chart (matplotlib).

matplotlib is a dev dependency (the results report's charts, bench/charts.py, draw with it too); it is
imported only when a chart is drawn, and an install without it still gets the JSON and the Markdown.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

COLOURS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2"]


def query_chart(results: list[dict[str, Any]], path: Path) -> None:
    """Horizontal bars: warm median seconds per query, one colour per table size (a PNG at `path`)."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display, no GUI toolkit
    import matplotlib.pyplot as plt

    names = [q["name"] for q in results[0]["queries"]] if results else []
    bar = 0.8 / max(1, len(results))
    fig, ax = plt.subplots(figsize=(8, 1.8 + 0.15 * len(names) * max(1, len(results))), dpi=110)
    for j, result in enumerate(results):
        seconds = [q["median_s"] for q in result["queries"]]
        ys = [i + (j - (len(results) - 1) / 2) * bar for i in range(len(names))]
        ax.barh(ys, seconds, height=bar * 0.95, color=COLOURS[j % len(COLOURS)],
                label=f"{result['records']:,} rows, {result['data_files']} files")
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()  # the first query on top, as in the Markdown tables
    ax.set_xlabel("warm median (s)")
    ax.set_title("Warm median query time by table size", loc="left")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.08), fontsize="small", ncols=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})  # no version stamp: same data, same file
    plt.close(fig)


def markdown(payload: dict[str, Any], chart_name: str | None) -> str:
    """The human report: environment, then one table per table size."""
    env = payload["environment"]
    lines = [
        "# Analyst query benchmark",
        "",
        f"Measured {env['measured_at']} on Spark {env['spark']} `{env['master']}`, driver memory "
        f"{env['driver_memory']}, {env['cpus']} CPUs, 1-minute load average {env['load_avg_1m']} "
        "(other jobs shared the machine). Warm runs: one warm-up, then the median of "
        f"{payload['runs']} runs. *Files* = data files the Iceberg scans read / live data files of the table.",
        "",
    ]
    if chart_name:
        lines += [f"![warm median query time]({chart_name})", ""]
    for result in payload["results"]:
        lines += [
            f"## {result['table']}: {result['records']:,} rows, {result['data_files']} data files, "
            f"{result['bytes'] / 2**20:.1f} MiB",
            "",
            f"Average of the warm medians: **{result['avg_median_s']:.3f} s** "
            f"(fastest {result['fastest']}, slowest {result['slowest']}).",
            "",
            "| query | median s | min s | max s | rows | files read / total | pruned |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for q in result["queries"]:
            pruned = "–" if q["pruning"] is None else f"{q['pruning']:.0%}"
            lines.append(f"| {q['name']} | {q['median_s']:.3f} | {q['min_s']:.3f} | {q['max_s']:.3f} | "
                         f"{q['rows']} | {q['files_scanned']} / {q['files_total']} | {pruned} |")
        lines.append("")
    lines += ["Reproduce: `" + payload["command"] + "`", ""]
    return "\n".join(lines)


def write_report(payload: dict[str, Any], out_dir: Path, stem: str = "batch-bench") -> dict[str, str]:
    """Write <stem>.json, <stem>.md and <stem>.png into out_dir; return their paths (no chart when matplotlib
    is not installed: said on stderr, the Markdown then links none)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{stem}.json", "markdown": out_dir / f"{stem}.md", "chart": out_dir / f"{stem}.png"}
    paths["json"].write_text(json.dumps(payload, indent=2, default=str) + "\n")
    try:
        query_chart(payload["results"], paths["chart"])
    except ModuleNotFoundError as exc:
        if exc.name != "matplotlib":
            raise
        print("no chart: matplotlib is not installed (pip install matplotlib)", file=sys.stderr)
        del paths["chart"]
    paths["markdown"].write_text(markdown(payload, paths["chart"].name if "chart" in paths else None))
    return {k: str(v) for k, v in paths.items()}
