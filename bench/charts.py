"""The results report's charts, drawn with matplotlib from the benchmarks' JSON under docs/results/.

    .venv/bin/python bench/charts.py [--results docs/results] [--out docs/results]

One PNG per chart, each from the JSON the benchmark wrote (the command that made it is in the JSON or in
docs/results.md), so a chart never shows a number the JSON lacks:

    cdc-latency.png     commit→apply and commit→publish p50 / p99 / max per rate (bench/cdc_latency.py)
    cdc-throughput.png  applied events/s per consumer count beside Kafka's own rates (bench/cdc_throughput.py)
    batch-scaling.png   query time and write speed as the table grows (batch bench --sizes, bench/write_speed.py)
    batch-compaction.png  each query before and after compacting 1,200 small files (bench/compaction.py)
    batch-bench.png     warm median per query per table size (the chart `icetide batch bench` writes)

A JSON that is missing is skipped with a note; the script prints the PNGs it wrote.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batch.report import COLOURS, query_chart

ROOT = Path(__file__).resolve().parent.parent
DPI = 110


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only: no display
    import matplotlib.pyplot as plt

    return plt


def _count(value: float) -> str:
    """100K, 1M, 2.5M — axis labels for counts and rates."""
    return f"{value / 1e6:g}M" if value >= 1e6 else f"{value / 1e3:g}K" if value >= 1e3 else f"{value:g}"


def _log_ticks(axis: Any, ticks: list[float], show: Callable[[float], str]) -> None:
    """A log axis labelled at `ticks` only, as plain numbers (no 10^x, no minor labels)."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    axis.set_major_locator(FixedLocator(ticks))
    axis.set_major_formatter(FuncFormatter(lambda value, _pos: show(value)))
    axis.set_minor_formatter(NullFormatter())


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI, metadata={"Software": None})  # no version stamp: same data, same file
    _pyplot().close(fig)


def latency_chart(doc: dict[str, Any], path: Path) -> None:
    """Grouped bars per target rate: p50, p99 and max of commit→apply (left) and commit→publish (right)."""
    plt = _pyplot()
    runs = doc["runs"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), sharey=True)
    labels = [f"{r['target_changes_per_s']:,}/s\n({r['achieved_changes_per_s']:,.0f} achieved)" for r in runs]
    width = 0.26
    for ax, key, title in ((axes[0], "commit_to_apply", "commit → applied downstream"),
                           (axes[1], "commit_to_publish", "commit → published to Kafka")):
        for j, stat in enumerate(("p50_s", "p99_s", "max_s")):
            xs = [i + (j - 1) * width for i in range(len(runs))]
            values = [r[key][stat] for r in runs]
            bars = ax.bar(xs, values, width * 0.95, color=COLOURS[j], label=stat.removesuffix("_s"))
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
        ax.set_xticks(range(len(runs)), labels, fontsize=8)
        ax.set_title(title, loc="left", fontsize=10)
        ax.grid(axis="y", alpha=0.3)
    goal = runs[0].get("goal_p99_s")
    if goal:
        axes[0].axhline(goal, color="#555555", linestyle="--", linewidth=1, label=f"goal: p99 ≤ {goal:g} s")
    axes[0].set_ylabel("seconds")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle(f"CDC latency: Spark commits → cdc run → Kafka → cdc apply ({doc['partitions']} partitions, "
                 f"{doc['delivery']}, {doc['cpus']} CPUs)", fontsize=11, x=0.01, ha="left")
    _save(fig, path)


def throughput_chart(doc: dict[str, Any], path: Path) -> None:
    """Per consumer count: applied events/s (active time and including start-up) beside what Kafka alone
    does with the same messages; the goal as a line."""
    plt = _pyplot()
    runs = doc["runs"]
    series = [("cdc apply (active)", lambda r: r["apply"]["events_per_s"]),
              ("cdc apply (incl. start-up)", lambda r: r["apply"]["events_per_s_incl_startup"]),
              ("Kafka ProducerPerformance", lambda r: r["kafka_produce_events_per_s"]),
              ("bare consumer", lambda r: r["raw_consume_events_per_s"])]
    fig, ax = plt.subplots(figsize=(8, 4.6))
    width = 0.8 / len(series)
    for j, (label, value) in enumerate(series):
        xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(runs))]
        bars = ax.bar(xs, [value(r) for r in runs], width * 0.95, color=COLOURS[j], label=label)
        ax.bar_label(bars, labels=[f"{value(r) / 1000:.1f}K" for r in runs], fontsize=7, padding=1)
    goal = doc.get("best", {}).get("goal_events_per_s")
    if goal:
        ax.axhline(goal, color="#555555", linestyle="--", linewidth=1, label=f"goal: {goal / 1000:,.0f}K events/s")
    ax.set_ylabel("events/s")
    ax.yaxis.set_major_formatter(lambda value, _pos: f"{value / 1000:,.0f}K")
    ax.set_xticks(range(len(runs)), [f"{r['consumers']} consumer{'s' if r['consumers'] > 1 else ''}" for r in runs])
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.09), fontsize=8, ncols=3, frameon=False)
    ax.set_title(f"Throughput: {doc['events']:,} events, Kafka → cdc apply → PostgreSQL, "
                 f"{doc['partitions']} partitions", loc="left", fontsize=10)
    ax.margins(y=0.15)
    _save(fig, path)


def scaling_chart(bench: dict[str, Any], write: dict[str, Any] | None, path: Path) -> None:
    """Left: warm median per query (thin) and their average (bold) against table rows; right: write speed
    against rows written, icetide beside Spark's plain Parquet and pyarrow. Log-log axes."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2 if write else 1, figsize=(11 if write else 6, 4.8), squeeze=False)
    ax = axes[0][0]
    results = sorted(bench["results"], key=lambda r: r["records"])
    rows = [r["records"] for r in results]
    for name in [q["name"] for q in results[0]["queries"]]:
        medians = [next(q["median_s"] for q in r["queries"] if q["name"] == name) for r in results]
        ax.plot(rows, medians, color="#bbbbbb", linewidth=0.9)
    ax.plot(rows, [r["avg_median_s"] for r in results], color=COLOURS[0], linewidth=2.5, marker="o",
            label="average of the ten queries")
    for x, r in zip(rows, results, strict=True):
        ax.annotate(f"{r['avg_median_s']:.2f} s", (x, r["avg_median_s"]), xytext=(-8, -14),
                    textcoords="offset points", fontsize=8, color=COLOURS[0],
                    bbox={"boxstyle": "round,pad=0.1", "facecolor": "white", "edgecolor": "none"})
    ax.plot([], [], color="#bbbbbb", linewidth=0.9, label="each query")
    ax.scatter([1_000_000], [0.5], marker="*", s=120, color="#e15759", zorder=3, label="goal: ≤ 0.5 s at 1M rows")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _log_ticks(ax.xaxis, rows, _count)
    _log_ticks(ax.yaxis, [0.1, 0.2, 0.5, 1, 2, 5, 10], lambda v: f"{v:g}")
    ax.set_xlabel("table rows")
    ax.set_ylabel("warm median (s)")
    ax.set_title("Analyst queries as the table grows", loc="left", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8, loc="upper left")
    if write:
        ax = axes[0][1]
        runs = sorted(write["runs"], key=lambda r: r["rows"])
        xs = [r["rows"] for r in runs]
        for j, (key, label) in enumerate((("icetide", "icetide (generate + Iceberg append)"),
                                          ("spark_parquet", "Spark, plain Parquet"),
                                          ("pyarrow_parquet", "pyarrow write only"))):
            ys = [r[key]["rows_per_s"] for r in runs]
            ax.plot(xs, ys, marker="o", color=COLOURS[j], linewidth=2 if key == "icetide" else 1.2, label=label)
            for x, y in zip(xs, ys, strict=True):
                ax.annotate(_count(round(y, -3)), (x, y), xytext=(6, -3), textcoords="offset points", fontsize=7)
        goal = write.get("goal", {}).get("rows_per_s")
        if goal:
            ax.axhline(goal, color="#555555", linestyle="--", linewidth=1, label=f"goal: {goal / 1000:,.0f}K rows/s")
        ax.set_xscale("log")
        ax.set_yscale("log")
        _log_ticks(ax.xaxis, xs, _count)
        _log_ticks(ax.yaxis, [1e5, 2e5, 5e5, 1e6, 2e6, 5e6], _count)
        ax.set_xlabel("rows written")
        ax.set_ylabel("rows/s")
        ax.set_title("Write speed", loc="left", fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize=8, ncols=2, frameon=False)
    _save(fig, path)


def compaction_chart(doc: dict[str, Any], path: Path) -> None:
    """Each query's warm time before and after compaction, with the files it read."""
    plt = _pyplot()
    per_query = doc["queries"]["per_query"]
    fig, ax = plt.subplots(figsize=(8, 5))
    ys = list(range(len(per_query)))
    ax.barh([y - 0.2 for y in ys], [q["before_s"] for q in per_query], 0.38, color=COLOURS[1],
            label=f"before: {doc['compaction']['files_before']:,} files")
    ax.barh([y + 0.2 for y in ys], [q["after_s"] for q in per_query], 0.38, color=COLOURS[0],
            label=f"after: {doc['compaction']['files_after']:,} files")
    ax.set_yticks(ys, [q["name"] for q in per_query])
    ax.invert_yaxis()
    ax.set_xlabel("warm time (s)")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), fontsize=8, ncols=2, frameon=False)
    ax.set_title(f"Compaction of {doc['rows']:,} rows: average {doc['queries']['avg_before_s']:.2f} s → "
                 f"{doc['queries']['avg_after_s']:.2f} s", loc="left", fontsize=10)
    _save(fig, path)


def _load(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / name
    return json.loads(path.read_text()) if path.is_file() else None


def draw_all(results: Path, out: Path) -> list[Path]:
    """Every chart whose JSON is in `results`, written to `out`; returns the PNGs written."""
    out.mkdir(parents=True, exist_ok=True)
    write_speed = _load(results, "batch-write-speed.json")
    charts: list[tuple[str, str, Callable[[dict[str, Any], Path], None]]] = [
        ("cdc-latency.png", "cdc-latency.json", latency_chart),
        ("cdc-throughput.png", "cdc-throughput.json", throughput_chart),
        ("batch-scaling.png", "batch-bench.json", lambda doc, path: scaling_chart(doc, write_speed, path)),
        ("batch-compaction.png", "batch-compaction.json", compaction_chart),
        ("batch-bench.png", "batch-bench.json", lambda doc, path: query_chart(doc["results"], path)),
    ]
    written = []
    for name, source, draw in charts:
        doc = _load(results, source)
        if doc is None:
            print(f"skipped {name}: no {source} in {results}", file=sys.stderr)
            continue
        draw(doc, out / name)
        written.append(out / name)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, default=ROOT / "docs" / "results", help="Where the JSON is.")
    parser.add_argument("--out", type=Path, default=None, help="Where the PNGs go (default: --results).")
    args = parser.parse_args(argv)
    for path in draw_all(args.results, args.out or args.results):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
