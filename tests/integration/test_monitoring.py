"""The live monitoring stack: a real Prometheus and Alertmanager (`stack up --monitoring`) scrape a real broker
(JMX exporter agent), a real `icetide cdc apply` and the lag exporter; alerts fire and resolve for real.

One stack per module, the shipped rules rendered with `monitoring.time_scale` 1/60 (minutes become
seconds) and 0.5 s scrape/evaluation intervals. The webhook receiver behind Alertmanager is a tiny HTTP
server in the test that collects the notifications (it is the receiver, not an imitation of an engine).
Events are built with icetide.events and produced with confluent_kafka, as in test_connectors_consumer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from icetide.events import ChangeEvent, Source, key_to_json, to_json
from icetide.settings import load_settings
from icetide.stack import Stack
from tests.fixtures.kafka import create_topic, new_topic_name

pytestmark = pytest.mark.integration
ICETIDE = str(Path(sys.executable).parent / "icetide")
ROOT = Path(__file__).resolve().parents[2]
SCALE = 1 / 60


class Receiver:
    """Alertmanager's webhook receiver: every notification POSTed, in order."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        received = self.notifications

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def seen(self, alertname: str, status: str, **labels: str) -> bool:
        return any(a["status"] == status and a["labels"].get("alertname") == alertname
                   and all(a["labels"].get(k) == v for k, v in labels.items())
                   for n in self.notifications for a in n["alerts"])


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for: {what}")
        time.sleep(0.25)


class Live:
    """The running stack, its environment for `icetide` commands, and PromQL against it."""

    def __init__(self, state_dir: Path, receiver: Receiver) -> None:
        self.receiver = receiver
        self.env = {**os.environ, "ICETIDE__STACK__STATE_DIR": str(state_dir),
                    "ICETIDE__MONITORING__ENABLED": "true", "ICETIDE__MONITORING__TIME_SCALE": str(SCALE),
                    "ICETIDE__MONITORING__SCRAPE_INTERVAL_S": "0.5",
                    "ICETIDE__MONITORING__EVALUATION_INTERVAL_S": "0.5",
                    "ICETIDE__MONITORING__WEBHOOK_URL": receiver.url,
                    "ICETIDE__SINK__GROUP_ID": f"mon-{uuid.uuid4().hex[:6]}",
                    "ICETIDE__SINK__DEAD_LETTER_TOPIC": new_topic_name("dead")}
        self.stack = Stack(load_settings(None, environ={k: v for k, v in self.env.items()
                                                        if k.startswith("ICETIDE__")}))
        status = self.stack.up().to_dict()
        self.status = status
        self.bootstrap: str = status["bootstrap"]
        self.prometheus: str = status["monitoring"]["prometheus"]["url"]
        self.consumer: subprocess.Popen[bytes] | None = None
        self.topic = ""

    def query(self, promql: str) -> list[dict[str, Any]]:
        url = f"{self.prometheus}api/v1/query?" + urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def value(self, promql: str) -> float | None:
        result = self.query(promql)
        return float(result[0]["value"][1]) if result else None

    def start_consumer(self, topic: str) -> None:
        self.consumer = subprocess.Popen(
            [ICETIDE, "cdc", "apply", "--sink", "sqlite", "--topics", topic, "--metrics-port", "0",
             "--batch-size", "50"], env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)

    def stop_consumer(self) -> None:
        if self.consumer is not None and self.consumer.poll() is None:
            self.consumer.send_signal(signal.SIGTERM)
            try:
                self.consumer.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.consumer.pid, signal.SIGKILL)
                self.consumer.wait()
        self.consumer = None


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    receiver = Receiver()
    stack = Live(tmp_path_factory.mktemp("monitoring"), receiver)
    try:
        yield stack
    finally:
        stack.stop_consumer()
        stack.stack.down()
        receiver.server.shutdown()


_seq = iter(range(1, 10**6))
PRODUCED: Counter[str] = Counter()  # decodable events produced per topic by `produce`


TABLE = f"live{uuid.uuid4().hex[:6]}"  # topic icetide.sales.<TABLE>, as `cdc run` names it


def produce(bootstrap: str, topic: str, n: int, table: str = TABLE, poison: int = 0,
            committed_s_ago: float = 0.0) -> None:
    """`n` insert events (and `poison` undecodable records); `committed_s_ago` dates their source commit back,
    so the consumer measures that much commit→apply latency — a pipeline running late, as the SLA sees it."""
    from confluent_kafka import Producer

    seq = next(_seq)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    now = int((time.time() - committed_s_ago) * 1000)
    for i in range(n):
        source = Source(catalog="lake", db="sales", table=table, snapshot_id=1000 + seq, sequence_number=seq,
                        commit_ts_ms=now, ordinal=i)
        row = {"id": seq * 10_000 + i, "qty": i}
        producer.produce(topic, to_json(ChangeEvent("c", None, row, source)), key=key_to_json({"id": row["id"]}))
    for _ in range(poison):
        producer.produce(topic, b"{not json", key=b'{"id":0}')
    assert producer.flush(30) == 0
    PRODUCED[topic] += n


def test_status_reports_urls_and_every_process_is_scraped(live: Live) -> None:
    topic = create_topic(live.bootstrap, f"icetide.sales.{TABLE}")
    live.topic = topic
    produce(live.bootstrap, topic, 200)
    live.start_consumer(topic)
    mon = live.status["monitoring"]
    assert mon["running"] and mon["alertmanager"]["url"].startswith("http://127.0.0.1:")
    assert mon["targets"]["kafka"] == ["broker"] and mon["targets"]["icetide-kafka-lag"] == ["lag-exporter"]
    jobs = ("kafka", "icetide-consumer", "icetide-kafka-lag", "prometheus", "alertmanager")
    wait_for("every job up", lambda: all(live.value(f'max(up{{job="{j}"}})') == 1 for j in jobs))
    wait_for("200 events applied", lambda: live.value("sum(icetide_cdc_events_applied_total)") == 200)
    group = live.env["ICETIDE__SINK__GROUP_ID"]
    wait_for("broker-side lag 0", lambda: live.value(
        f'sum(icetide_kafka_consumergroup_lag{{group="{group}"}})') == 0)
    assert (live.value('max(kafka_server_brokertopicmetrics_messagesin_total)') or 0) >= 200
    assert live.value('max(jvm_memory_used_bytes{job="kafka",area="heap"})')


def test_dead_letter_alert_fires_and_resolves(live: Live) -> None:
    produce(live.bootstrap, live.topic, 10, poison=2)
    wait_for("IcetideCdcDeadLetters firing at the webhook",
             lambda: live.receiver.seen("IcetideCdcDeadLetters", "firing", reason="decode"))
    wait_for("IcetideCdcDeadLetters resolved", lambda: live.receiver.seen("IcetideCdcDeadLetters", "resolved"),
             timeout_s=90)


def test_commit_to_apply_over_its_sla_fires_and_resolves(live: Live) -> None:
    # Changes committed 20 s before the consumer applies them: the p99 over the (scaled) window is far
    # above the rule's 2 s; once no late change arrives the window empties and the alert resolves.
    for _ in range(3):  # across more than the rule's scaled `for:`, so the condition holds throughout
        produce(live.bootstrap, live.topic, 50, committed_s_ago=20.0)
        time.sleep(2.0)
    wait_for("IcetideCdcLatencyOverSLA firing at the webhook",
             lambda: live.receiver.seen("IcetideCdcLatencyOverSLA", "firing"), timeout_s=90)
    wait_for("IcetideCdcLatencyOverSLA resolved", lambda: live.receiver.seen("IcetideCdcLatencyOverSLA", "resolved"),
             timeout_s=90)


def _dashboard_targets() -> list[tuple[str, str, str]]:
    out = []
    for path in sorted((ROOT / "ops" / "grafana" / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            out += [(path.name, panel["title"], t["expr"]) for t in panel.get("targets", []) if t.get("expr")]
    return out


# A policy small enough to apply to the Trino target without a catalog or a key (the version is what the
# security dashboard shows in force)
POLICY = """
policy: monitoring-demo
version: 3
principals:
  groups: [readers]
  users:
    ana: {groups: [readers]}
tags:
  public: {default_mask: none}
tables:
  sales.vendas:
    columns: {sale_id: [public]}
    row_filters:
      - id: rf-readers
        to: {groups: [readers]}
"""


def test_no_dashboard_panel_is_dead(live: Live, health: str, tmp_path: Path) -> None:
    """Every panel's PromQL, of every dashboard, runs without error and returns data during the run (a dead
    panel fails): the consumer and the lag exporter feed the CDC board, the table-health exporter (probe
    query included) the lake-health and query-trends boards, and a policy apply plus a query the gateway
    denies (both audited; the lag exporter reads the audit log) the security board."""
    policy, schema = tmp_path / "policy.yaml", tmp_path / "schema.yaml"
    policy.write_text(POLICY)
    schema.write_text("tables:\n  sales.vendas:\n    sale_id: long\n")
    applied = subprocess.run([ICETIDE, "policy", "apply", "--target", "trino", "--schema", str(schema), str(policy)],
                             env=live.env, capture_output=True, text=True, timeout=60)
    assert applied.returncode == 0, applied.stderr[-2000:]
    # the gateway reads through the Spark views, which no apply here created: refused (and audited)
    denied = subprocess.run([ICETIDE, "query", "--as", "mallory", "SELECT 1"], env=live.env, capture_output=True,
                            text=True, timeout=60)
    assert denied.returncode != 0 and "denied" in denied.stderr
    targets = _dashboard_targets()
    assert {f for f, _t, _e in targets} == {"icetide-cdc.json", "icetide-lake-health.json",
                                            "icetide-query-trends.json", "icetide-security.json"}
    dead = targets
    deadline = time.monotonic() + 120  # the exporter's Spark answers its first probe; rate() needs two scrapes
    while dead and time.monotonic() < deadline:
        time.sleep(1)
        dead = [(f, title, expr) for f, title, expr in dead if not live.query(expr)]
    assert not dead, f"panels whose query returns nothing: {dead}"
    assert live.value('icetide_policy_version{policy_id="monitoring-demo"}') == 3
    assert (live.value('sum(icetide_policy_denied_accesses_total{action="select"})') or 0) >= 1


def test_status_json_from_the_live_run(live: Live) -> None:
    """`icetide status --json` reads the live Prometheus; the endpoints path gives the same table row."""
    from icetide.status import from_endpoints

    done = subprocess.run([ICETIDE, "status", "--json"], env=live.env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    data = json.loads(done.stdout)
    assert data["source"] == "prometheus" and data["broker"]["running"] is True
    assert data["jobs"]["icetide-consumer"] == {"up": 1, "down": 0}
    row = data["tables"][f"sales.{TABLE}"]
    assert row["applied_events"] == PRODUCED[live.topic] and row["lag_events"] == 0
    assert row["last_applied_snapshot"] > 1000
    assert data["dead_letters"]["decode"] == 2 and data["commit_to_apply_p99_s"] is not None
    samples, jobs, _alerts = from_endpoints(live.stack.settings)
    assert jobs["icetide-consumer"] == {"up": 1, "down": 0}
    assert {s.name for s in samples} >= {"icetide_cdc_events_applied_total", "icetide_kafka_consumergroup_lag"}


def test_stopped_consumer_fires_consumer_behind_then_resolves_on_restart(live: Live) -> None:
    group = live.env["ICETIDE__SINK__GROUP_ID"]
    live.stop_consumer()
    produce(live.bootstrap, live.topic, 30)
    wait_for("IcetideCdcConsumerBehind firing at the webhook",
             lambda: live.receiver.seen("IcetideCdcConsumerBehind", "firing", group=group), timeout_s=90)
    assert not live.receiver.seen("IcetideCdcConsumerBehind", "resolved", group=group)
    live.start_consumer(live.topic)
    wait_for("IcetideCdcConsumerBehind resolved after the restart",
             lambda: live.receiver.seen("IcetideCdcConsumerBehind", "resolved", group=group), timeout_s=90)
    assert live.value(f'sum(icetide_kafka_consumergroup_lag{{group="{group}"}})') == 0


# A JVM that keeps `target` of its heap live (checked after a GC, so garbage does not count; topped up each
# second, as the start-up's own data is collected later) and otherwise waits.
HEAP_FILLER = """
import java.lang.management.ManagementFactory;
import java.util.ArrayList;
import java.util.List;

public class FillHeap {
    public static void main(String[] args) throws Exception {
        double target = Double.parseDouble(args[0]);
        List<byte[]> kept = new ArrayList<>();
        var memory = ManagementFactory.getMemoryMXBean();
        while (true) {
            var heap = memory.getHeapMemoryUsage();
            if ((double) heap.getUsed() / heap.getMax() < target) {
                kept.add(new byte[16 * 1024]);
                continue;
            }
            System.gc();
            heap = memory.getHeapMemoryUsage();
            if ((double) heap.getUsed() / heap.getMax() >= target) {
                Thread.sleep(1000);
            }
        }
    }
}
"""


def test_jvm_near_its_heap_limit_fires(live: Live, tmp_path: Path) -> None:
    """The OOM alert, from the JMX exporter agent's heap gauges. The JVM is a 128 MiB one of the test's that
    fills 93 % of its heap in a second (filling a real driver's 1 GiB takes a minute of both cores); it is
    started with the very agent option, rules and target folder a Spark driver gets (`Monitoring.jmx_agent`)."""
    from icetide import jvm
    from icetide.metrics import targets_dir
    from icetide.services import monitoring_config
    from icetide.services.monitoring import Monitoring

    state_dir = live.stack.settings.state_dir
    agent = Monitoring().jmx_agent(state_dir, "spark", "heap-filler", monitoring_config.JMX_SPARK,
                                   labels={"role": "test"})
    source = tmp_path / "FillHeap.java"
    source.write_text(HEAP_FILLER)
    java = str(jvm.java_home() / "bin" / "java")
    # 128 MiB with a 4 MiB young generation: the 93 % kept live fits the old one, so the JVM does not spend
    # itself in full GCs and answers its scrapes (0.5 s timeout here) while it sits near its limit
    proc = subprocess.Popen([java, "-Xmx128m", "-Xmn4m", "-XX:+UseSerialGC", *agent, str(source), "0.93"],
                            env=jvm.java_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    ratio = 'jvm_memory_used_bytes{job="spark",area="heap"} / jvm_memory_max_bytes{job="spark",area="heap"}'
    up = 'up{job="spark"}'
    try:
        try:
            wait_for("IcetideJvmHeapNearLimit firing at the webhook",
                     lambda: live.receiver.seen("IcetideJvmHeapNearLimit", "firing", job="spark"), timeout_s=90)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; up: {live.query(up)}; heap used/max: "
                                 f"{live.query(ratio)}; the JVM: {proc.poll()=}") from None
        assert (live.value(f"max({ratio})") or 0) > 0.9
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        (targets_dir(state_dir, "spark") / "heap-filler.json").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def health(live: Live, spark: Any, base_settings: Any) -> Iterator[str]:
    """A real `maint exporter` (its own Spark, with the JMX agent: job `spark`) on a real table, for the whole
    module: 120 tiny files in one commit, then 500 empty appends in one transaction — the snapshots a streaming
    writer's checkpoints leave when nothing expires them. The probe query is held to a 1 ms SLA, which no
    Spark query meets. Yields the table's name."""
    from tests.fixtures.spark import fresh_table_name

    name = fresh_table_name("health")
    spark.sql(f"CREATE TABLE lake.{name} (id BIGINT) USING iceberg")
    spark.range(0, 120, 1, 120).writeTo(f"lake.{name}").append()
    table = spark._jvm.org.apache.iceberg.spark.Spark3Util.loadIcebergTable(spark._jsparkSession, f"lake.{name}")
    txn = table.newTransaction()
    for _ in range(500):
        txn.newFastAppend().commit()
    txn.commitTransaction()
    env = {**live.env, "ICETIDE__CATALOG__URI": base_settings.catalog_uri,
           "ICETIDE__CATALOG__WAREHOUSE": base_settings.warehouse}
    exporter = subprocess.Popen([ICETIDE, "maint", "exporter", "--table", name, "--interval", "1",
                                 "--probe-sla-s", "0.001"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        yield name
    finally:
        exporter.send_signal(signal.SIGINT)  # KeyboardInterrupt: the exporter removes its target files
        try:
            exporter.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(exporter.pid, signal.SIGKILL)
            exporter.wait()


def test_table_health_and_probe_query_alerts_fire(live: Live, health: str) -> None:
    """Snapshot growth, small files and query time over SLA, from the table-health exporter (`health`)."""
    from icetide.services.monitoring_config import EXTERNAL_METRICS

    for alert in ("IcetideTableSnapshotGrowth", "IcetideTableSmallFiles", "IcetideQueryOverSLA"):
        wait_for(f"{alert} firing at the webhook", lambda a=alert: live.receiver.seen(a, "firing", table=health),
                 timeout_s=150)
    assert live.value(f'icetide_table_snapshots{{table="{health}"}}') == 501
    # over the last 30 s: one scrape of a busy driver may miss its 0.5 s timeout (and mark its series stale)
    assert live.value('max(max_over_time(up{job="spark"}[30s]))') == 1
    missing = [m for m in EXTERNAL_METRICS["spark"][1]
               if not live.query(f'last_over_time({m}{{job="spark"}}[30s])')]
    assert not missing, f"the Spark driver does not serve {missing}"


def test_broker_down_fires(live: Live) -> None:
    live.stop_consumer()
    pid = live.stack.status().pid
    assert pid
    os.killpg(pid, signal.SIGTERM)
    wait_for("IcetideKafkaBrokerDown firing at the webhook",
             lambda: live.receiver.seen("IcetideKafkaBrokerDown", "firing"), timeout_s=90)
