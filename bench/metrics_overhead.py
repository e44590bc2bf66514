"""The cost of the consumer's /metrics endpoint on its throughput, measured in one run.

One embedded broker; `--events` change events per round, every round's topic produced before the first
round (so producing never overlaps a measurement); the consumer (in process, `--once`, SQLite sink) applies
one topic per round. After one discarded warm-up round, rounds go in ABBA blocks — WITHOUT an endpoint, WITH
the endpoint served and scraped every `--scrape-s` seconds (default 0.1 s: 150× Prometheus' 15 s default, a
worst case), WITH, WITHOUT — so a drift of the shared machine's load hits both modes alike. The metrics objects
are updated either way (they are the consumer's own counters); what differs is serving and rendering them.

Prints JSON (and writes `--out`): events/s of each round in order, per mode the median, min, max and
interquartile range, and the ratio with/without of the medians and, per block, of the block's two pairs
(their median and range: a ratio whose range spans 1.0 is no measurable cost).

    PYTHONPATH=$PWD .venv/bin/python bench/metrics_overhead.py --events 20000 --blocks 4 \\
        --out docs/results/metrics-overhead.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any


def _produce(bootstrap: str, topic: str, n: int) -> None:
    from confluent_kafka import Producer

    from icetide.events import ChangeEvent, Source, key_to_json, to_json

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    now = int(time.time() * 1000)
    for i in range(n):
        source = Source(catalog="lake", db="bench", table=topic.rsplit(".", 1)[1], snapshot_id=1 + i // 1000,
                        sequence_number=1 + i // 1000, commit_ts_ms=now, ordinal=i % 1000)
        row = {"id": i % 5000, "qty": i, "label": f"x{i % 10}"}
        producer.produce(topic, to_json(ChangeEvent("c", None, row, source)), key=key_to_json({"id": row["id"]}))
        if i % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(120) == 0


def _round(settings: Any, bootstrap: str, topic: str, sink_path: Path, served: bool, scrape_s: float) -> float:
    from connectors.consumer import ChangeConsumer, ConsumeOptions
    from connectors.metrics import ConsumerMetrics
    from connectors.sqlite import SqliteConfig, SqliteSink
    from icetide.metrics import serve

    metrics = ConsumerMetrics()
    stop = threading.Event()
    server = None
    if served:
        server, port = serve(metrics.registry, "127.0.0.1", 0)

        def scrape() -> None:
            while not stop.is_set():
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
                stop.wait(scrape_s)

        threading.Thread(target=scrape, daemon=True).start()
    settings.sink.group_id = f"bench-{uuid.uuid4().hex[:8]}"
    with SqliteSink(SqliteConfig(sink_path)) as sink:
        started = time.perf_counter()
        summary = ChangeConsumer(settings, sink, bootstrap, ConsumeOptions(topics=[topic], once=True),
                                 metrics).run()
        seconds = time.perf_counter() - started
    stop.set()
    if server is not None:
        server.shutdown()
    return summary.applied / seconds


def _spread(values: list[float]) -> dict[str, float]:
    q1, _q2, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else (values[0],) * 3
    return {"median": round(statistics.median(values)), "min": round(min(values)), "max": round(max(values)),
            "iqr": round(q3 - q1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--blocks", type=int, default=4, help="ABBA blocks (each: 2 rounds per mode)")
    parser.add_argument("--scrape-s", type=float, default=0.1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from report import emit

    from icetide.settings import load_settings
    from icetide.stack import Stack

    state = Path(tempfile.mkdtemp(prefix="icetide-metrics-bench-"))
    settings = load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(state)})
    stack = Stack(settings)
    order = ["warm-up"] + ["without", "with", "with", "without"] * args.blocks
    rounds: list[dict[str, Any]] = []
    load = []
    try:
        bootstrap = stack.up().bootstrap
        topics = [f"icetide.bench.t{i}{uuid.uuid4().hex[:4]}" for i in range(len(order))]
        for topic in topics:
            _produce(bootstrap, topic, args.events)
        for i, (mode, topic) in enumerate(zip(order, topics, strict=True)):
            load.append(os.getloadavg()[0])
            rate = _round(settings, bootstrap, topic, state / f"sink-{i}.db", mode == "with", args.scrape_s)
            rounds.append({"mode": mode, "events_per_s": round(rate)})
    finally:
        stack.down()
    rates = {m: [r["events_per_s"] for r in rounds if r["mode"] == m] for m in ("without", "with")}
    pairs = []  # per block: (with1 + with2) / (without1 + without2), the two pairs the block's order balances
    for b in range(args.blocks):
        block = rounds[1 + 4 * b: 5 + 4 * b]
        pairs.append((block[1]["events_per_s"] + block[2]["events_per_s"])
                     / (block[0]["events_per_s"] + block[3]["events_per_s"]))
    medians = {m: statistics.median(v) for m, v in rates.items()}
    emit({"events_per_round": args.events, "scrape_interval_s": args.scrape_s, "blocks": args.blocks,
          "cpus": os.cpu_count(), "load_avg_1m": {"min": round(min(load), 2), "max": round(max(load), 2)},
          "rounds": rounds, "events_per_s": {m: _spread(v) for m, v in rates.items()},
          "ratio_with_to_without": {"of_medians": round(medians["with"] / medians["without"], 3),
                                    "per_block": [round(p, 3) for p in pairs],
                                    "per_block_median": round(statistics.median(pairs), 3),
                                    "per_block_range": [round(min(pairs), 3), round(max(pairs), 3)]}}, args.out)


if __name__ == "__main__":
    main()
