"""The cost of the consumer's /metrics endpoint on its throughput, measured in one run.

One embedded broker; `--events` change events per round in a fresh topic; the consumer (in process,
`--once`, SQLite sink) applies each topic twice-interleaved: rounds alternate between WITHOUT an endpoint
and WITH the endpoint served and scraped every `--scrape-s` seconds (default 0.1 s: 150× Prometheus'
15 s default, a worst case). The metrics objects are updated either way (they are the consumer's own
counters); what differs is serving and rendering them. Prints JSON: events/s of each round, the median per
mode, and the ratio with/without.

    PYTHONPATH=$PWD .venv/bin/python bench/metrics_overhead.py --events 20000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import statistics
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per mode (alternating)")
    parser.add_argument("--scrape-s", type=float, default=0.1)
    args = parser.parse_args()

    from icetide.settings import load_settings
    from icetide.stack import Stack

    state = Path(tempfile.mkdtemp(prefix="icetide-metrics-bench-"))
    settings = load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(state)})
    stack = Stack(settings)
    rates: dict[str, list[float]] = {"without": [], "with": []}
    try:
        bootstrap = stack.up().bootstrap
        for i in range(args.rounds * 2):
            mode = "without" if i % 2 == 0 else "with"
            topic = f"icetide.bench.t{i}{uuid.uuid4().hex[:4]}"
            _produce(bootstrap, topic, args.events)
            rates[mode].append(_round(settings, bootstrap, topic, state / f"sink-{i}.db", mode == "with",
                                      args.scrape_s))
    finally:
        stack.down()
    medians = {k: statistics.median(v) for k, v in rates.items()}
    print(json.dumps({"events_per_round": args.events, "scrape_interval_s": args.scrape_s,
                      "events_per_s": {k: [round(r) for r in v] for k, v in rates.items()},
                      "median_events_per_s": {k: round(v) for k, v in medians.items()},
                      "ratio_with_to_without": round(medians["with"] / medians["without"], 3)}, indent=2))


if __name__ == "__main__":
    main()
