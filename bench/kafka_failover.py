"""Failover time of the embedded replicated cluster: SIGKILL a partition leader or the active controller while
a steady stream flows, and time how long writes and reads stop.

In its own state directory (wiped at start): `icetide stack up` with `kafka.brokers: 3` (replication 3,
min ISR 2), one topic of one partition, icetide's producer (`kafka_client.producer`: acks=all, idempotent)
sending a numbered record every 1/--rate s from a thread, and a consumer reading it back. First a baseline
(--baseline-s of undisturbed flow): produce→acknowledgement and produce→consume latency. Then --kills times,
alternating the partition's leader and the active controller (--target to pick one): wait until the
partition's in-sync replicas are all three, SIGKILL the node's process group, and measure

  producer failover  kill → the first acknowledgement of a record that was not acknowledged at the kill;
  consumer failover  kill → the first of those records read by the consumer;

then restart the node with `stack up` (timed) and go on. At the end the producer flushes and the consumer
catches up: every acknowledged record must have been read exactly once (idempotence: no duplicate from a
retry across the leader change). Prints one JSON document (`--out` writes it too); exit 1 if a record was
lost, duplicated or failed.

    .venv/bin/python bench/kafka_failover.py --kills 6 --out docs/results/kafka-failover.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from icetide import kafka_client
from icetide.settings import load_settings
from icetide.stack import Stack

TOPIC = "icetide.bench.failover"


class Stream:
    """Numbered records produced at a steady rate; per number: send, acknowledgement and read times."""

    def __init__(self, stack: Stack, bootstrap: str, rate: float) -> None:
        s = stack.settings
        self.producer = kafka_client.producer(s, "cdc", bootstrap, {"linger.ms": 0})
        self.consumer = kafka_client.consumer(s, "apply", bootstrap, {
            "group.id": f"failover-{os.getpid()}", "auto.offset.reset": "earliest", "enable.auto.commit": False,
            "fetch.wait.max.ms": 10})
        self.interval = 1.0 / rate
        self.sent: dict[int, float] = {}
        self.acked: dict[int, float] = {}
        self.read: dict[int, float] = {}
        self.duplicates = 0
        self.failed: list[str] = []
        self.stop = threading.Event()
        self.drain_deadline = float("inf")
        self.flushed = threading.Event()
        self.threads = [threading.Thread(target=self._produce, daemon=True),
                        threading.Thread(target=self._consume, daemon=True)]

    def start(self) -> None:
        self.consumer.subscribe([TOPIC])
        for thread in self.threads:
            thread.start()

    def _delivered(self, err: Any, msg: Any) -> None:
        seq = int(msg.key())
        if err is not None:
            self.failed.append(f"{seq}: {err}")
        else:
            self.acked[seq] = time.monotonic()

    def _produce(self) -> None:
        seq, next_at = 0, time.monotonic()
        while not self.stop.is_set():
            self.sent[seq] = time.monotonic()
            self.producer.produce(TOPIC, b"x" * 100, key=str(seq).encode(), on_delivery=self._delivered)
            seq += 1
            next_at += self.interval
            while time.monotonic() < next_at:
                self.producer.poll(max(0.0, next_at - time.monotonic()))
        self.producer.flush(120)
        self.flushed.set()  # only now is the acknowledged set final: the consumer drains up to it

    def _consume(self) -> None:
        while not self.flushed.is_set() or len(self.read) < len(self.acked):
            msg = self.consumer.poll(0.1)
            if msg is None or msg.error():
                continue
            seq = int(msg.key())
            if seq in self.read:
                self.duplicates += 1
            else:
                self.read[seq] = time.monotonic()
            if self.stop.is_set() and time.monotonic() > self.drain_deadline:
                break

    def finish(self, drain_s: float = 120.0) -> None:
        self.drain_deadline = time.monotonic() + drain_s
        self.stop.set()
        for thread in self.threads:  # the producer flushes first, then the consumer reads what was acknowledged
            thread.join(timeout=drain_s + 10)
        self.consumer.close()

    def first_after(self, times: dict[int, float], after_seq: int, moment: float, wait_s: float) -> float | None:
        """Seconds from `moment` to the first time in `times` of a record numbered above `after_seq`."""
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            later = [t for seq, t in list(times.items()) if seq > after_seq]
            if later:
                return round(min(later) - moment, 3)
            time.sleep(0.01)
        return None


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {"p50_ms": round(statistics.median(ordered) * 1000, 1),
            "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 1), "n": len(ordered)}


def _partition(bootstrap: str) -> Any:
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap}).list_topics(TOPIC, timeout=30).topics[TOPIC].partitions[0]


def _wait_in_sync(bootstrap: str, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(_partition(bootstrap).isrs) < 3:
        if time.monotonic() > deadline:
            raise SystemExit("the partition did not get its three in-sync replicas back")
        time.sleep(0.5)


def _kill(stack: Stack, stream: Stream, bootstrap: str, target: str, settle_s: float) -> dict[str, Any]:
    _wait_in_sync(bootstrap)
    leader = int(_partition(bootstrap).leader)
    controller = stack.active_controller()
    victim = leader if target == "leader" else controller
    assert victim is not None
    pid = stack.node_pid(victim)
    assert pid is not None
    acked_before = max(stream.acked, default=-1)
    killed = time.monotonic()
    os.killpg(pid, signal.SIGKILL)
    producer = stream.first_after(stream.acked, acked_before, killed, 120)
    consumer = stream.first_after(stream.read, acked_before, killed, 120)
    time.sleep(settle_s)
    new_leader = int(_partition(bootstrap).leader)
    restarted = time.monotonic()
    stack.up()
    return {"target": target, "node": victim, "was_partition_leader": victim == leader,
            "was_controller": victim == controller, "new_partition_leader": new_leader,
            "new_controller": stack.active_controller(), "producer_failover_s": producer,
            "consumer_failover_s": consumer, "restart_s": round(time.monotonic() - restarted, 2)}


def _summary(kills: list[dict[str, Any]], key: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for target in ("leader", "controller"):
        values = [k[key] for k in kills if k["target"] == target and k[key] is not None]
        if values:
            out[target] = {"median_s": round(statistics.median(values), 3), "max_s": max(values), "n": len(values)}
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    state = Path(args.state_dir or tempfile.mkdtemp(prefix="kafka-failover-"))
    shutil.rmtree(state, ignore_errors=True)
    stack = Stack(load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(state),
                                               "ICETIDE__KAFKA__BROKERS": "3"}))
    began = time.monotonic()
    status = stack.up()
    try:
        from confluent_kafka.admin import AdminClient, NewTopic

        admin = AdminClient({"bootstrap.servers": status.bootstrap})
        admin.create_topics([NewTopic(TOPIC, 1)])[TOPIC].result(30)
        stream = Stream(stack, status.bootstrap, args.rate)
        stream.start()
        time.sleep(args.baseline_s)
        seqs = [s for s in list(stream.read) if s in stream.acked]
        baseline = {"produce_to_ack": _ms([stream.acked[s] - stream.sent[s] for s in seqs]),
                    "produce_to_consume": _ms([stream.read[s] - stream.sent[s] for s in seqs])}
        targets = ["leader", "controller"] if args.target == "both" else [args.target]
        kills = [_kill(stack, stream, status.bootstrap, targets[i % len(targets)], args.settle_s)
                 for i in range(args.kills)]
        stream.finish()
        lost = sorted(set(stream.acked) - set(stream.read))
        census = {"sent": len(stream.sent), "acknowledged": len(stream.acked), "failed": len(stream.failed),
                  "read": len(stream.read), "lost": len(lost), "duplicates": stream.duplicates,
                  "failed_examples": stream.failed[:3]}
    finally:
        stack.down()
    return {"cluster": {"brokers": 3, "replication_factor": 3, "min_insync_replicas": 2,
                        "broker_session_timeout_ms": 9000, "controller_quorum_election_timeout_ms": 1000},
            "rate_per_s": args.rate, "baseline": baseline, "kills": kills,
            "producer_failover": _summary(kills, "producer_failover_s"),
            "consumer_failover": _summary(kills, "consumer_failover_s"), "census": census,
            "ok": census["lost"] == 0 and census["duplicates"] == 0 and census["failed"] == 0,
            "wall_s": round(time.monotonic() - began, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=6)
    parser.add_argument("--target", choices=("both", "leader", "controller"), default="both")
    parser.add_argument("--rate", type=float, default=200.0, help="records per second")
    parser.add_argument("--baseline-s", type=float, default=10.0)
    parser.add_argument("--settle-s", type=float, default=2.0, help="pause after a failover before the restart")
    parser.add_argument("--state-dir")
    parser.add_argument("--out")
    args = parser.parse_args()
    report = run(args)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    sys.exit(0 if report["ok"] else 1)


if __name__ == "__main__":
    main()
