"""The embedded monitoring stack: Prometheus (icetide's rules from ops/) and Alertmanager, on loopback.

`icetide stack up --monitoring` (or `monitoring.enabled: true`) starts, under `<state_dir>/monitoring/`:

- Prometheus (Debian's `prometheus`), TSDB in `prometheus/data/`, config `prometheus.yml`, the rules of
  ops/prometheus rendered into `rules/` (scaled by `monitoring.time_scale`, 1 outside tests);
- Alertmanager (Debian's `prometheus-alertmanager`), clustering off, its webhook receiver
  `monitoring.webhook_url`;
- the consumer-group lag exporter (`python -m icetide.lag_exporter`), which reads the broker's group offsets.

Scrape targets are the files in `targets/<job>/` — every icetide process serving /metrics writes its own
(`icetide.metrics.register_target`), the broker's JMX exporter agent one for the broker, the embedded Trino
one for its coordinator (scraped over HTTPS as its monitoring principal; `reload` adds that job to a running
Prometheus when Trino starts after it). The processes follow
`JvmProcess` (pid file, process group, log) although only the broker's agent is a JVM: the same lifecycle.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from icetide import jvm
from icetide.errors import StackError
from icetide.metrics import JOBS, register_target, targets_dir
from icetide.process import choose_port, free_port
from icetide.services import monitoring_config as cfg
from icetide.services.shape import JvmProcess, Need, StateHome, require

if TYPE_CHECKING:
    from icetide.settings import Settings

HOST = "127.0.0.1"
JAR_GROUP = "jmx"
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
_BINARIES = {"prometheus": ("prometheus", "prometheus"),
             "alertmanager": ("prometheus-alertmanager", "prometheus-alertmanager")}


def _binary(name: str) -> Path:
    exe, _package = _BINARIES[name]
    found = shutil.which(exe) or f"/usr/bin/{exe}"
    return Path(found)


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return bool(response.status == 200)
    except (OSError, urllib.error.URLError):
        return False


class Monitoring(StateHome):
    """Prometheus + Alertmanager + the lag exporter of one state dir."""

    name = "monitoring"
    label = "monitoring"

    def _files(self, home: Path) -> None:
        self.prom_config = home / "prometheus.yml"
        self.am_config = home / "alertmanager.yml"
        self.lag_config = home / "lag-exporter.json"
        self.rules_dir = home / "rules"
        self.ports_file = home / "ports.json"
        self.prometheus = JvmProcess("prometheus", home, str(_binary("prometheus")), self.prom_config)
        self.alertmanager = JvmProcess("alertmanager", home, str(_binary("alertmanager")), self.am_config)
        self.lag_exporter = JvmProcess("lag-exporter", home, "icetide.lag_exporter", self.lag_config)

    # -- the service shape -----------------------------------------------------------------
    def needs(self) -> list[Need]:
        return [Need("Prometheus (Debian package prometheus)", _binary("prometheus"),
                     hint="run `make setup` (apt-get install prometheus)"),
                Need("Alertmanager (Debian package prometheus-alertmanager)", _binary("alertmanager"),
                     hint="run `make setup` (apt-get install prometheus-alertmanager)")]

    def start(self, settings: Settings, state_dir: Path, bootstrap: str | None = None) -> dict[str, str]:
        """Start what is not running yet; the URLs once Prometheus and Alertmanager answer."""
        self._bind(state_dir)
        require(self.needs())
        m = settings.monitoring
        ports = self._ports()
        if self.prometheus.live_pid() is None or self.alertmanager.live_pid() is None:
            self.prometheus.stop(STOP_TIMEOUT_S)
            self.alertmanager.stop(STOP_TIMEOUT_S)
            ports = {"prometheus": choose_port(HOST, m.prometheus_port, "monitoring.prometheus_port",
                                               ports.get("prometheus")),
                     "alertmanager": choose_port(HOST, m.alertmanager_port, "monitoring.alertmanager_port",
                                                       ports.get("alertmanager"))}
            while ports["alertmanager"] == ports["prometheus"]:
                ports["alertmanager"] = free_port(HOST)
            self.home.mkdir(parents=True, exist_ok=True)
            self.ports_file.write_text(json.dumps(ports))
            self._write_configs(settings, ports)
            self._start_alertmanager(settings, ports["alertmanager"])
            self._start_prometheus(settings, ports["prometheus"])
        if bootstrap and self.lag_exporter.live_pid() is None:
            self.lag_config.write_text(json.dumps({"bootstrap": bootstrap, "host": HOST, "port": 0,
                                                   "state_dir": str(Path(state_dir).expanduser().resolve())}))
            cmd = [sys.executable, "-m", "icetide.lag_exporter", str(self.lag_config)]
            port_file = self.home / "lag-exporter.port"
            port_file.unlink(missing_ok=True)
            self.lag_exporter.launch(cmd, port_file.is_file, timeout_s=START_TIMEOUT_S)
        return self.endpoints()

    def reload(self, settings: Settings) -> bool:
        """Rewrite prometheus.yml and make the running Prometheus reread it (`/-/reload`); False when no
        Prometheus runs from this state dir (its next start writes the config anyway)."""
        ports = self._ports()
        if not ports or self.prometheus.live_pid() is None:
            return False
        self._write_prometheus_config(settings, ports)
        request = urllib.request.Request(f"http://{HOST}:{ports['prometheus']}/-/reload", method="POST")
        try:
            with urllib.request.urlopen(request, timeout=10.0) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError) as exc:
            raise StackError(f"Prometheus did not reload {self.prom_config}: {exc}") from exc

    def ready(self) -> bool:
        urls = self.endpoints()
        return bool(urls) and _answers(urls["prometheus"] + "-/ready") and _answers(urls["alertmanager"] + "-/ready")

    def stop(self) -> bool:
        if self._home is None:
            return False
        stopped = [p.stop(STOP_TIMEOUT_S) for p in (self.lag_exporter, self.prometheus, self.alertmanager)]
        (targets_dir(self.home.parent, "icetide-kafka-lag") / "lag-exporter.json").unlink(missing_ok=True)
        for target in targets_dir(self.home.parent, "kafka").glob("broker*.json"):  # `stack down` stops both
            target.unlink(missing_ok=True)
        return any(stopped)

    def status(self) -> dict[str, Any]:
        if self._home is None or not self.ports_file.is_file():
            return {"name": self.name, "running": False}
        urls = self.endpoints()
        procs = {"prometheus": self.prometheus, "alertmanager": self.alertmanager, "lag_exporter": self.lag_exporter}
        out: dict[str, Any] = {"name": self.name, "home": str(self.home)}
        for key, proc in procs.items():
            pid = proc.live_pid()
            url = urls.get(key)
            out[key] = {"running": pid is not None and (url is None or _answers(url + "-/ready")), "pid": pid,
                        "url": url if pid is not None else None, "log_file": str(proc.out_file)}
        out["running"] = out["prometheus"]["running"] and out["alertmanager"]["running"]
        out["targets"] = {job: sorted(p.stem for p in targets_dir(self.home.parent, job).glob("*.json"))
                          for job in JOBS}
        return out

    def endpoints(self) -> dict[str, str]:
        ports = self._ports()
        if not ports:
            return {}
        return {"prometheus": f"http://{HOST}:{ports['prometheus']}/",
                "alertmanager": f"http://{HOST}:{ports['alertmanager']}/"}

    # -- the JVMs' exporters ------------------------------------------------------------------------
    def broker_agent(self, state_dir: Path, node_id: int = 1) -> list[str]:
        """The `-javaagent:` option that makes Kafka node `node_id` serve its JMX metrics, and its target file
        (`broker.json` for the first node, as with one node; `broker-<id>.json` for the others)."""
        name = "broker" if node_id == 1 else f"broker-{node_id}"
        return self.jmx_agent(state_dir, "kafka", name, cfg.JMX_KAFKA, remove_at_exit=False,
                              labels={"node_id": str(node_id)})

    def jmx_agent(self, state_dir: Path, job: str, name: str, rules: dict[str, Any], *,
                  remove_at_exit: bool = True, labels: dict[str, str] | None = None) -> list[str]:
        """The `-javaagent:` option of the JMX exporter agent serving one JVM's MBeans (and heap) on a free
        loopback port under `rules`, and the target file announcing it as `name` in scrape job `job`.

        The target file goes with this process (`remove_at_exit`) when the JVM is its child (a Spark driver);
        the broker outlives `stack up`, so `stack down` removes its file."""
        self._bind(state_dir)
        require([Need("the Prometheus JMX exporter agent", jvm.jar_cache() / JAR_GROUP)])
        self.home.mkdir(parents=True, exist_ok=True)
        config = self.home / f"jmx-{job}.yml"
        tmp = config.with_name(f".{config.name}.{os.getpid()}")
        tmp.write_text(yaml.safe_dump(rules, sort_keys=False))
        tmp.replace(config)  # several drivers may start at once: none reads half a file
        port = free_port(HOST)
        register_target(self.home.parent, job, HOST, port, name=name, remove_at_exit=remove_at_exit, labels=labels)
        agent = jvm.jars(JAR_GROUP)[0]
        return [f"-javaagent:{agent}={HOST}:{port}:{config}"]

    def flink_reporter(self, state_dir: Path, name: str) -> tuple[dict[str, str], dict[str, str]]:
        """(gateway environment, Flink configuration) that make the CDC job's JVM serve Flink's metrics.

        PyFlink's local mini-cluster builds its metric registry without a plugin manager, so Flink finds
        reporter factories only on the gateway JVM's class path (not in FLINK_PLUGINS_DIR, not on
        pipeline.jars); PyFlink's launcher appends `HADOOP_CLASSPATH` to that class path. The jar is the one
        the PyFlink wheel ships in plugins/metrics-prometheus/, so its version is PyFlink's by construction.
        The reporter binds its port on every interface (it takes no host): the port is a free loopback one."""
        import pyflink

        self._bind(state_dir)
        found = sorted((Path(pyflink.__file__).parent / "plugins" / "metrics-prometheus").glob(
            "flink-metrics-prometheus-*.jar"))
        if not found:
            raise StackError("the PyFlink wheel has no plugins/metrics-prometheus/flink-metrics-prometheus-*.jar")
        path = os.pathsep.join(p for p in (os.environ.get("HADOOP_CLASSPATH", ""), str(found[-1])) if p)
        port = free_port(HOST)
        register_target(self.home.parent, "flink", HOST, port, name=name, labels={"process": "minicluster"})
        return {"HADOOP_CLASSPATH": path}, cfg.flink_reporter_conf(port)

    # -- files and processes ----------------------------------------------------------------------
    def _write_configs(self, settings: Settings, ports: dict[str, int]) -> None:
        m = settings.monitoring
        for job in JOBS:
            targets_dir(self.home.parent, job).mkdir(parents=True, exist_ok=True)
        self.rules_dir.mkdir(parents=True, exist_ok=True)
        for old in self.rules_dir.glob("*.yml"):
            old.unlink()
        for source in sorted(cfg.RULES_DIR.glob("*rules*.yml")):
            rules = cfg.scaled_rules(yaml.safe_load(source.read_text()), m.time_scale)
            (self.rules_dir / source.name).write_text(yaml.safe_dump(rules, sort_keys=False, allow_unicode=True))
        self._write_prometheus_config(settings, ports)
        self.am_config.write_text(yaml.safe_dump(cfg.alertmanager_config(m.webhook_url, m.time_scale),
                                                 sort_keys=False))

    def _write_prometheus_config(self, settings: Settings, ports: dict[str, int]) -> None:
        from icetide.services.trino import MONITOR_USER, TrinoServer

        m = settings.monitoring
        trino = TrinoServer(self.home.parent)
        scrape = (cfg.TrinoScrape(MONITOR_USER, trino.monitor_password_file, trino.ca_file)
                  if trino.ca_file.is_file() and trino.monitor_password_file.is_file() else None)
        prom = cfg.prometheus_config(host=HOST, port=ports["prometheus"], alertmanager_port=ports["alertmanager"],
                                     targets=self.home / "targets", rules=self.rules_dir,
                                     scrape_s=m.scrape_interval_s, evaluation_s=m.evaluation_interval_s, trino=scrape)
        tmp = self.prom_config.with_name(f".{self.prom_config.name}.{os.getpid()}")
        tmp.write_text(yaml.safe_dump(prom, sort_keys=False))
        tmp.replace(self.prom_config)  # a reload never reads half a file

    def _start_prometheus(self, settings: Settings, port: int) -> None:
        m = settings.monitoring
        data = self.home / "prometheus" / "data"
        data.mkdir(parents=True, exist_ok=True)
        cmd = [self.prometheus.main_class, "--config.file", str(self.prom_config),
               f"--storage.tsdb.path={data}", f"--storage.tsdb.retention.time={m.retention}",
               f"--web.listen-address={HOST}:{port}", "--web.enable-lifecycle",
               f"--rules.alert.resend-delay={cfg.scale_duration('1m', m.time_scale)}",
               "--log.level=warn"]
        self.prometheus.launch(cmd, lambda: _answers(f"http://{HOST}:{port}/-/ready"), timeout_s=START_TIMEOUT_S)

    def _start_alertmanager(self, settings: Settings, port: int) -> None:
        data = self.home / "alertmanager" / "data"
        data.mkdir(parents=True, exist_ok=True)
        cmd = [self.alertmanager.main_class, "--config.file", str(self.am_config), f"--storage.path={data}",
               f"--web.listen-address={HOST}:{port}", "--cluster.listen-address=", "--log.level=warn"]
        self.alertmanager.launch(cmd, lambda: _answers(f"http://{HOST}:{port}/-/ready"), timeout_s=START_TIMEOUT_S)

    def _ports(self) -> dict[str, int]:
        if self._home is None:
            return {}
        try:
            data = json.loads(self.ports_file.read_text())
            return {"prometheus": int(data["prometheus"]), "alertmanager": int(data["alertmanager"])}
        except (OSError, ValueError, KeyError):
            return {}
