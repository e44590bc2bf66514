"""A Spark standalone cluster on loopback, from pyspark's own jars: one Master and N Workers, each its own
JVM (the deploy code a multi-machine cluster runs), under `<state_dir>/spark-cluster/`.

`icetide spark up` starts it. A command runs on it when `spark.master` is its `spark://` URL: the driver
stays in the command's process (client mode) and the executors run in the Workers; or through
`icetide spark submit ICETIDE-ARGS…`, which hands icetide/spark_main.py to `spark-submit` — the entry
point the Spark Operator's ScheduledSparkApplication runs (k8s/maint/scheduled-spark-application.yaml).
Executors write table files straight to the warehouse: on one machine the local warehouse works; across
machines the warehouse must be the object store (storage.kind: s3).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icetide import jvm
from icetide.errors import StackError
from icetide.process import choose_port, free_port
from icetide.services.shape import JvmProcess, Need, StateHome, require

if TYPE_CHECKING:
    from icetide.settings import Settings

HOST = "127.0.0.1"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
SCALA_VERSION = "2.13"  # pyspark 4's jars (spark-core_2.13)
DAEMON_HEAP = "512m"  # the Master's and each Worker's own JVM; executors get spark.executor_memory
START_TIMEOUT_S = 120.0
STOP_TIMEOUT_S = 20.0


def spark_home() -> Path:
    """pyspark's folder: a Spark distribution (jars/, bin/spark-submit, bin/spark-class)."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def daemon_env() -> dict[str, str]:
    """What the Master, the Workers and the executors the Workers launch need besides JAVA_HOME: SPARK_HOME
    (a Worker builds its executors' class path from SPARK_HOME/jars; without a RELEASE file its launcher
    library needs SPARK_SCALA_VERSION, which bin/spark-class would set), loopback, the venv's Python for
    PySpark's workers and the source tree on their path."""
    return {"SPARK_HOME": str(spark_home()), "SPARK_SCALA_VERSION": SCALA_VERSION,
            "SPARK_LOCAL_IP": HOST, "PYSPARK_PYTHON": sys.executable,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(jvm.PROJECT_ROOT), os.environ.get("PYTHONPATH")]))}


def executor_conf(settings: Settings) -> dict[str, str]:
    """A driver's settings for executors in a standalone cluster (spark.master spark://…); empty for local."""
    if not settings.spark.master.startswith("spark://"):
        return {}
    return {"spark.executor.memory": settings.spark.executor_memory,
            "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
            "spark.pyspark.python": sys.executable,
            "spark.executorEnv.PYTHONPATH": daemon_env()["PYTHONPATH"]}


class SparkCluster(StateHome):
    """One standalone Master and its Workers per state dir."""

    name = "spark-cluster"
    label = "the Spark cluster"

    def _files(self, home: Path) -> None:
        self.conf_file = home / "spark-defaults.conf"  # also the mark of this state dir's JVMs (JvmProcess)
        self.ports_file = home / "ports.json"
        self.master = JvmProcess("master", home, MASTER_CLASS, self.conf_file)

    def worker(self, n: int) -> JvmProcess:
        return JvmProcess(f"worker-{n}", self.home / f"worker-{n}", WORKER_CLASS, self.conf_file)

    def worker_processes(self) -> list[JvmProcess]:
        """Every Worker this state dir has started (running or not), in order."""
        if self._home is None or not self.home.exists():
            return []
        numbers = sorted(int(p.name.removeprefix("worker-")) for p in self.home.glob("worker-*")
                         if p.name.removeprefix("worker-").isdigit())
        return [self.worker(n) for n in numbers]

    # -- the service shape -----------------------------------------------------------------
    def needs(self) -> list[Need]:
        return [Need("pyspark's jars (a Spark distribution)", spark_home() / "jars",
                     hint="run `make setup` (pyspark is a pinned dependency)")]

    def start(self, settings: Settings, state_dir: Path, workers: int | None = None) -> dict[str, str]:
        """Start the Master (or reuse the running one) and Workers 0…N-1 that do not run (N: `workers`, else
        spark.workers); the endpoints once every Worker has registered."""
        self._bind(state_dir)
        count = workers or settings.spark.workers
        require(self.needs())
        env = daemon_env()
        if self.master.live_pid() is None:
            ports = {"master": choose_port(HOST, settings.spark.cluster_port, "spark.cluster_port",
                                                self.ports().get("master")), "web": free_port(HOST)}
            self.home.mkdir(parents=True, exist_ok=True)
            self.ports_file.write_text(json.dumps(ports) + "\n")
            self.conf_file.write_text(f"# icetide's standalone Spark cluster of {self.home}\n"
                                      "spark.master.rest.enabled false\nspark.ui.reverseProxy false\n"
                                      "spark.worker.cleanup.enabled true\n")
            cmd = self.master.command(self._classpath(), ["--host", HOST, "--port", str(ports["master"]),
                                                          "--webui-port", str(ports["web"]),
                                                          "--properties-file", str(self.conf_file)],
                                      heap=DAEMON_HEAP)
            self.master.launch(cmd, lambda: self.overview() is not None, timeout_s=START_TIMEOUT_S, env=env)
        elif self.overview() is None:
            raise StackError(f"a Spark Master (pid {self.master.live_pid()}) runs from {self.home} but does not "
                             "answer: run `icetide spark down` and `icetide spark up` again\n" + self.master.output())
        for n in range(count):
            process = self.worker(n)
            if process.live_pid() is not None:
                continue
            work = process.home / "work"
            work.mkdir(parents=True, exist_ok=True)
            cmd = process.command(self._classpath(), [
                "--host", HOST, "--port", "0", "--webui-port", "0", "--cores", str(settings.spark.worker_cores),
                "--memory", settings.spark.worker_memory, "--work-dir", str(work),
                "--properties-file", str(self.conf_file), self.master_url()], heap=DAEMON_HEAP)
            process.launch(cmd, self._registered({w["id"] for w in self.alive_workers()}),
                           timeout_s=START_TIMEOUT_S, env=env)
        return self.endpoints()

    def _registered(self, before: set[str]) -> Callable[[], bool]:
        """True once a Worker not in `before` is alive in the Master's view."""
        return lambda: bool({w["id"] for w in self.alive_workers()} - before)

    def ready(self) -> bool:
        """The Master answers and every running Worker process has registered with it."""
        running = sum(1 for w in self.worker_processes() if w.live_pid() is not None)
        return self.overview() is not None and len(self.alive_workers()) >= running

    def stop(self) -> bool:
        """Stop the Workers (their executors with them), then the Master; True if any ran."""
        if self._home is None:
            return False
        stopped = [w.stop(STOP_TIMEOUT_S) for w in self.worker_processes()]
        return self.master.stop(STOP_TIMEOUT_S) or any(stopped)

    def status(self) -> dict[str, Any]:
        overview = self.overview() if self._home is not None else None
        master_pid = self.master.live_pid() if self._home is not None else None
        data: dict[str, Any] = {"name": self.name, "running": master_pid is not None and overview is not None,
                                "master_pid": master_pid, "master_url": self.master_url() or None,
                                "web_url": self.web_url() or None,
                                "worker_pids": [w.live_pid() for w in self.worker_processes()]}
        if overview is not None:
            data["workers"] = [{k: w.get(k) for k in ("id", "host", "port", "state", "cores", "coresused", "memory")}
                               for w in overview.get("workers", [])]
            data["alive_workers"] = int(overview.get("aliveworkers", 0))
            data["cores"] = int(overview.get("cores", 0))
            for key in ("activeapps", "completedapps"):
                data[key] = [{k: a.get(k) for k in ("id", "name", "cores", "state", "duration")}
                             for a in overview.get(key, [])]
        return data

    def endpoints(self) -> dict[str, str]:
        return {"spark_master": self.master_url(), "spark_web": self.web_url()}

    # -- the Master's view -----------------------------------------------------------------
    def overview(self) -> dict[str, Any] | None:
        """The Master's JSON status (`/json/` of its web UI), or None when it does not answer."""
        base = self.web_url()
        if not base:
            return None
        try:
            with urllib.request.urlopen(f"{base}/json/", timeout=2.0) as response:
                data = json.loads(response.read())
        except (OSError, ValueError, urllib.error.URLError):
            return None
        return data if isinstance(data, dict) and data.get("status") == "ALIVE" else None

    def alive_workers(self) -> list[dict[str, Any]]:
        overview = self.overview() or {}
        return [w for w in overview.get("workers", []) if w.get("state") == "ALIVE"]

    # -- addresses ---------------------------------------------------------------------------
    def ports(self) -> dict[str, int]:
        if self._home is None:
            return {}
        try:
            return {k: int(v) for k, v in json.loads(self.ports_file.read_text()).items()}
        except (OSError, ValueError, AttributeError):
            return {}

    def master_url(self) -> str:
        port = self.ports().get("master")
        return f"spark://{HOST}:{port}" if port else ""

    def web_url(self) -> str:
        port = self.ports().get("web")
        return f"http://{HOST}:{port}" if port else ""

    def _classpath(self) -> list[Path]:
        return sorted((spark_home() / "jars").glob("*.jar"))
