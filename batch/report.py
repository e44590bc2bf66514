"""Benchmark reports: a results JSON, a Markdown page and an SVG bar chart (no plotting library needed).

matplotlib is not a dependency of icetide, so the chart is a small hand-written SVG that any
browser or Markdown viewer renders.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape


def svg_chart(results: list[dict[str, Any]], width: int = 760) -> str:
    """Horizontal bars: warm median seconds per query, one colour per table size."""
    names = [q["name"] for q in results[0]["queries"]] if results else []
    colours = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2"]
    bar, gap, label_w = 10, 8, 190
    group_h = bar * len(results) + gap
    height = 40 + group_h * len(names) + 20 * len(results)
    peak = max((q["median_s"] for r in results for q in r["queries"]), default=1.0) or 1.0
    scale = (width - label_w - 70) / peak
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           'font-family="sans-serif" font-size="11">',
           '<text x="10" y="18" font-size="13">Warm median query time (s) by table size</text>']
    for i, name in enumerate(names):
        y0 = 30 + i * group_h
        out.append(f'<text x="{label_w - 6}" y="{y0 + bar * len(results) / 2 + 4}" '
                   f'text-anchor="end">{escape(name)}</text>')
        for j, result in enumerate(results):
            seconds = result["queries"][i]["median_s"]
            y = y0 + j * bar
            w = max(1.0, seconds * scale)
            out.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar - 1}" '
                       f'fill="{colours[j % len(colours)]}"/>')
            out.append(f'<text x="{label_w + w + 4:.1f}" y="{y + bar - 2}">{seconds:.3f}</text>')
    legend_y = 30 + group_h * len(names) + 10
    for j, result in enumerate(results):
        y = legend_y + j * 18
        out.append(f'<rect x="{label_w}" y="{y}" width="12" height="12" fill="{colours[j % len(colours)]}"/>')
        out.append(f'<text x="{label_w + 18}" y="{y + 10}">{result["records"]:,} rows, '
                   f'{result["data_files"]} files</text>')
    out.append("</svg>")
    return "\n".join(out)


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
    """Write <stem>.json, <stem>.md and <stem>.svg into out_dir; return their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / f"{stem}.json", "markdown": out_dir / f"{stem}.md",
             "chart": out_dir / f"{stem}.svg"}
    paths["json"].write_text(json.dumps(payload, indent=2, default=str) + "\n")
    paths["chart"].write_text(svg_chart(payload["results"]) + "\n")
    paths["markdown"].write_text(markdown(payload, paths["chart"].name))
    return {k: str(v) for k, v in paths.items()}
