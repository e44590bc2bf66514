"""A standalone Flink session cluster on loopback: one JobManager and N TaskManagers (`icetide flink up`).

PyFlink's wheel carries the whole Flink distribution (`pyflink/bin`, `pyflink/lib`, `pyflink/opt`); each
process is started with its `jobmanager.sh` / `taskmanager.sh start-foreground`, which `exec` the JVM, so
the pid we record is the JVM's (BashJavaUtils sizes its memory from the rendered config). Everything lives
under `<state_dir>/flink/`:

- `conf/config.yaml` — the rendered configuration (`render_config`), with PyFlink's log4j files beside it;
- `ports.json` — the JobManager's RPC and REST ports (the previous run's when still free, else free ones;
  TaskManagers take ports the OS picks);
- `jobmanager.pid`, `taskmanager-<i>.pid`, `<name>.out` and `log/<name>/` — each process's pid, console
  output and Flink log.

The TaskManagers get the job's jars (`jvm.jars("flink")`, with `flink-python` from `pyflink/opt`) on their
classpath, the JDK of `icetide.jvm`, and `PYTHONPATH` = the source tree so PyFlink's Python workers (the
venv's python, `python.executable`) import icetide and streaming. `icetide cdc run` submits to the cluster
when `flink.address` is set (`streaming/job.py`, `remote_config`).

With `storage.kind: s3` the config carries Flink's S3 file system keys as the job's own
(`icetide.flink_s3.flink_s3_config`: the `cdc` identity's key file, for icetide's credentials provider, so
a `stack rotate s3` is followed) and every process loads the S3 plugin (`FLINK_PLUGINS_DIR` =
`icetide.flink_s3.plugins_dir()`): the JobManager writes the checkpoints' metadata and the TaskManagers
their state to the bucket. A key from environment variables is written into config.yaml itself, which is then
mode 0600 (Flink masks `*secret*` keys in its logs and REST API).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icetide import jvm
from icetide.errors import StackError
from icetide.process import choose_port
from icetide.services.shape import JvmProcess, Need, StateHome, require

if TYPE_CHECKING:
    from icetide.settings import Settings

HOST = "127.0.0.1"
STOP_TIMEOUT_S = 30.0
JOBMANAGER_CLASS = "org.apache.flink.runtime.entrypoint.StandaloneSessionClusterEntrypoint"
TASKMANAGER_CLASS = "org.apache.flink.runtime.taskexecutor.TaskManagerRunner"
LOG_FILES = ("log4j-console.properties", "logback-console.xml")


def flink_home() -> Path:
    """The Flink distribution inside PyFlink's wheel (found without importing pyflink)."""
    import importlib.util

    spec = importlib.util.find_spec("pyflink")
    if spec is None or spec.origin is None:
        raise StackError("pyflink is not installed: run `make setup`")
    return Path(spec.origin).parent


def java_opts(home: Path) -> str:
    """`env.java.opts.all` of PyFlink's own config.yaml (the --add-opens Flink needs on JDK 17)."""
    import yaml

    shipped = yaml.safe_load((home / "conf" / "config.yaml").read_text()) or {}
    return str(shipped.get("env", {}).get("java", {}).get("opts", {}).get("all", ""))


def render_config(settings: Settings, *, rpc_port: int, rest_port: int, slots: int, checkpoints: str,
                  java_options: str = "") -> dict[str, str]:
    """The cluster's config.yaml (flattened keys): every listener on loopback, the JobManager's ports fixed,
    the TaskManagers' and the blob server's left to the OS, checkpoints on `checkpoints` (shared storage);
    with `storage.kind: s3` the S3 file system's keys (`flink_s3_config`: may hold a secret, see `write_config`)."""
    from icetide.flink_s3 import flink_s3_config

    flink = settings.flink
    conf = {
        "jobmanager.rpc.address": HOST,
        "jobmanager.rpc.port": str(rpc_port),
        "jobmanager.bind-host": HOST,
        "jobmanager.memory.process.size": flink.jobmanager_memory,
        "jobmanager.execution.failover-strategy": "region",
        "rest.address": HOST,
        "rest.bind-address": HOST,
        "rest.port": str(rest_port),
        "blob.server.port": "0",
        "taskmanager.host": HOST,
        "taskmanager.bind-host": HOST,
        "taskmanager.rpc.port": "0",
        "taskmanager.data.port": "0",
        "taskmanager.numberOfTaskSlots": str(slots),
        "taskmanager.memory.process.size": flink.taskmanager_memory,
        "taskmanager.memory.managed.size": "128m",
        "parallelism.default": str(flink.parallelism),
        "python.executable": sys.executable,
        "execution.checkpointing.dir": checkpoints,
        "state.backend.type": "hashmap",
        "restart-strategy.type": "fixed-delay",
        "restart-strategy.fixed-delay.attempts": "20",
        "restart-strategy.fixed-delay.delay": "2s",
        "heartbeat.timeout": "15000",  # a killed TaskManager is noticed in seconds, not the default 50
        "resourcemanager.taskmanager-timeout": "10000",
        # an error no task catches (an OutOfMemoryError in Beam's data-plane thread) ends the process, so the
        # job restarts on the others; the default only logs it, and the job hung until its checkpoint expired
        "cluster.uncaught-exception-handling": "FAIL",
    }
    if java_options:
        conf["env.java.opts.all"] = java_options
    conf.update(flink_s3_config(settings))
    return conf


SECRET_KEYS = ("s3.secret-key",)


def write_config(path: Path, conf: dict[str, str]) -> None:
    """Write config.yaml atomically: mode 0600 when it holds a secret (an S3 key from environment variables),
    else 0644."""
    mode = 0o600 if any(key in conf for key in SECRET_KEYS) else 0o644
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), mode)  # whatever the umask
        out.write(config_yaml(conf))
    tmp.replace(path)


def configures_s3(config_file: Path) -> bool:
    """Whether a rendered config.yaml configures the S3 file system."""
    return config_file.is_file() and any(line.startswith("s3.endpoint:")
                                         for line in config_file.read_text().splitlines())


def config_yaml(conf: dict[str, str]) -> str:
    """Flattened `key: value` lines (Flink's YAML parser reads flattened keys); values quoted as JSON."""
    return "".join(f"{key}: {json.dumps(value)}\n" for key, value in sorted(conf.items()))


def parse_address(address: str) -> tuple[str, int]:
    """`host:port` of `flink.address` → (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        from icetide.errors import ConfigError

        raise ConfigError(f"flink.address {address!r}: expected host:port (the JobManager's REST address)")
    return host, int(port)


def rest_call(address: str, path: str, method: str = "GET", body: dict[str, Any] | None = None,
              timeout_s: float = 10.0) -> Any:
    """One call to a JobManager's REST API at `address` (host:port); its JSON answer."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://{address}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout_s) as response:
        raw = response.read()
    return json.loads(raw) if raw else {}


def running_jobs(address: str, name: str) -> list[str]:
    """The ids of the RUNNING (or restarting) jobs called `name` on the cluster at `address`."""
    jobs = rest_call(address, "/jobs/overview")["jobs"]
    return [j["jid"] for j in jobs if j["name"] == name and j["state"] in ("RUNNING", "RESTARTING", "CREATED")]


def stop_job(address: str, jid: str, savepoint_dir: str | None, timeout_s: float = 300.0) -> str | None:
    """Cancel job `jid`, or with `savepoint_dir` stop it with a savepoint there (Flink's stop-with-savepoint:
    the sources stop, a last savepoint is taken and the Kafka transactions of it committed). The savepoint's
    location, or None after a cancel."""
    if savepoint_dir is None:
        rest_call(address, f"/jobs/{jid}?mode=cancel", method="PATCH")
        return None
    trigger = rest_call(address, f"/jobs/{jid}/stop", method="POST",
                        body={"targetDirectory": savepoint_dir, "drain": False})["request-id"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        answer = rest_call(address, f"/jobs/{jid}/savepoints/{trigger}")
        if answer["status"]["id"] == "COMPLETED":
            operation = answer.get("operation") or {}
            if "failure-cause" in operation:
                cause = operation["failure-cause"].get("stack-trace", "").splitlines()[:3]
                raise StackError(f"the savepoint of job {jid} failed: " + " / ".join(cause))
            return str(operation["location"])
        time.sleep(0.5)
    raise StackError(f"the savepoint of job {jid} did not complete within {timeout_s:.0f}s")


class FlinkCluster(StateHome):
    """One session cluster per state dir."""

    name = "flink"
    label = "Flink cluster"

    def _files(self, home: Path) -> None:
        self.conf_dir = home / "conf"
        self.config_file = self.conf_dir / "config.yaml"
        self.ports_file = home / "ports.json"
        self.log_dir = home / "log"
        self.checkpoint_dir = home / "checkpoints"

    def _process(self, name: str) -> JvmProcess:
        main = JOBMANAGER_CLASS if name == "jobmanager" else TASKMANAGER_CLASS
        # the marker: the config dir on the command line (`--configDir <conf>`), unique per state dir
        return JvmProcess(name, self.home, main, self.conf_dir)

    def _taskmanager_names(self) -> list[str]:
        return sorted((p.stem for p in self.home.glob("taskmanager-*.pid")), key=lambda n: int(n.split("-")[1]))

    def needs(self) -> list[Need]:
        home = flink_home()
        return [Need("Flink's distribution jars (PyFlink's lib)", home / "lib", hint="run `make setup`"),
                Need("flink-python (PyFlink's opt)", home / "opt", hint="run `make setup`")]

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, settings: Settings, state_dir: Path, taskmanagers: int | None = None) -> dict[str, str]:
        """Start the JobManager and `taskmanagers` TaskManagers (or reuse the running cluster); wait until
        every TaskManager is registered. Its REST address."""
        self._bind(state_dir)
        count = settings.flink.taskmanagers if taskmanagers is None else taskmanagers
        require(self.needs())
        if self._process("jobmanager").live_pid() is None:
            self.stop()  # stray TaskManagers of a dead JobManager
            self._render(settings)
            self._launch("jobmanager", settings, lambda: self._rest_ok())
        running = [n for n in self._taskmanager_names() if self._process(n).live_pid() is not None]
        index = max((int(n.split("-")[1]) for n in running), default=0)
        for _ in range(max(0, count - len(running))):
            index += 1
            self._launch(f"taskmanager-{index}", settings, lambda: True)  # registration: below
        want = max(count, len(running))
        deadline = time.monotonic() + settings.flink.start_timeout_s
        while len(self.taskmanagers()) < want:
            if time.monotonic() > deadline:
                raise StackError(f"only {len(self.taskmanagers())} of {want} TaskManagers registered within "
                                 f"{settings.flink.start_timeout_s:.0f}s\n" + self._tails())
            time.sleep(0.5)
        return {"flink.address": self.address()}

    def _render(self, settings: Settings) -> None:
        home = flink_home()
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        for name in LOG_FILES:
            shutil.copyfile(home / "conf" / name, self.conf_dir / name)
        before = json.loads(self.ports_file.read_text()) if self.ports_file.is_file() else {}
        # the ports of the previous run when still free: a `flink.address` written down stays right
        ports = {name: choose_port(HOST, 0, f"flink.{name}_port", before.get(name)) for name in ("rpc", "rest")}
        self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
        conf = render_config(settings, rpc_port=ports["rpc"], rest_port=ports["rest"],
                             slots=settings.flink.taskmanager_slots, checkpoints=self.checkpoint_dir.as_uri(),
                             java_options=java_opts(home))
        write_config(self.config_file, conf)
        self.ports_file.write_text(json.dumps(ports))

    def _env(self, name: str) -> dict[str, str]:
        home = flink_home()
        extra = [*sorted((home / "opt").glob("flink-python-*.jar")), *jvm.jars("flink")]
        log_dir = self.log_dir / name
        log_dir.mkdir(parents=True, exist_ok=True)
        env = jvm.java_env()
        env.update({
            "FLINK_HOME": str(home), "FLINK_CONF_DIR": str(self.conf_dir), "FLINK_LOG_DIR": str(log_dir),
            "FLINK_PID_DIR": str(log_dir), "FLINK_IDENT_STRING": name,
            "HADOOP_CLASSPATH": os.pathsep.join(str(p) for p in extra),  # added by flink-console.sh
            "PYTHONPATH": os.pathsep.join(filter(None, [str(jvm.PROJECT_ROOT), env.get("PYTHONPATH")])),
        })
        if configures_s3(self.config_file):  # checkpoints on the object store: Flink's S3 file system plugin
            from icetide.flink_s3 import plugins_dir

            env["FLINK_PLUGINS_DIR"] = str(plugins_dir())  # (a SetupError naming `make setup` when missing)
        else:
            plugins = jvm.jar_cache() / "flink-plugins"
            if plugins.is_dir():
                env["FLINK_PLUGINS_DIR"] = str(plugins)
        return env

    def _launch(self, name: str, settings: Settings, ready: Any) -> int:
        script = "jobmanager.sh" if name == "jobmanager" else "taskmanager.sh"
        process = self._process(name)
        cmd = ["bash", str(flink_home() / "bin" / script), "start-foreground"]
        if name != "jobmanager":  # the JobManager's REST API then names each TaskManager as we do
            cmd += ["-D", f"taskmanager.resource-id={name}"]
        import subprocess

        self.home.mkdir(parents=True, exist_ok=True)
        with process.out_file.open("ab") as out:
            proc = subprocess.Popen(cmd, env=self._env(name), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.home)
        process.pid_file.write_text(f"{proc.pid}\n")
        from icetide.process import abandon_start

        deadline = time.monotonic() + settings.flink.start_timeout_s
        try:
            while not ready():  # (the pid is bash's until it execs the JVM: not checked as ours yet)
                if proc.poll() is not None:
                    raise StackError(f"{name} exited during start-up (code {proc.returncode})\n" + self._tails())
                if time.monotonic() > deadline:
                    raise StackError(f"{name} was not ready within {settings.flink.start_timeout_s:.0f}s\n"
                                     + self._tails())
                time.sleep(0.3)
        except BaseException:
            abandon_start(proc, process.pid_file)
            raise
        return proc.pid

    def stop(self) -> bool:
        """Stop every TaskManager, then the JobManager; True if anything was running."""
        if self._home is None or not self.home.is_dir():
            return False
        stopped = False
        for name in self._taskmanager_names():
            stopped = self._process(name).stop(STOP_TIMEOUT_S) or stopped
        stopped = self._process("jobmanager").stop(STOP_TIMEOUT_S) or stopped
        return stopped

    def kill_taskmanager(self, name: str) -> int:
        """SIGKILL one TaskManager (a crash, for fault tests); its pid."""
        import signal

        pid = self._process(name).live_pid()
        if pid is None:
            raise StackError(f"{name} is not running")
        os.kill(pid, signal.SIGKILL)
        return pid

    # -- inspection ------------------------------------------------------------------------
    def pids(self) -> dict[str, int]:
        found = {}
        for name in ["jobmanager", *self._taskmanager_names()]:
            pid = self._process(name).live_pid()
            if pid is not None:
                found[name] = pid
        return found

    def address(self) -> str:
        ports = json.loads(self.ports_file.read_text())
        return f"{HOST}:{ports['rest']}"

    def rest(self, path: str, timeout_s: float = 5.0) -> Any:
        return rest_call(self.address(), path, timeout_s=timeout_s)

    def _rest_ok(self) -> bool:
        try:
            self.rest("/overview", timeout_s=2.0)
        except (OSError, urllib.error.URLError, ValueError):
            return False
        return True

    def ready(self) -> bool:
        return self._process("jobmanager").live_pid() is not None and self._rest_ok()

    def taskmanagers(self) -> list[dict[str, Any]]:
        """The TaskManagers registered with the JobManager (its REST API's /taskmanagers)."""
        try:
            body = self.rest("/taskmanagers")
        except (OSError, urllib.error.URLError, ValueError):
            return []
        return [{"id": tm["id"], "path": tm.get("path"), "slots": tm.get("slotsNumber"),
                 "free_slots": tm.get("freeSlots")} for tm in body.get("taskmanagers", [])]

    def status(self) -> dict[str, Any]:
        pids = self.pids()
        running = "jobmanager" in pids and self._rest_ok()
        return {"running": running, "address": self.address() if running else None, "pids": pids,
                "taskmanagers": self.taskmanagers() if running else [], "home": str(self.home)}

    def _tails(self) -> str:
        from icetide.process import log_tail

        logs = [p for p in self.log_dir.glob("*/*.log")] if self.log_dir.is_dir() else []
        return log_tail(*sorted(self.home.glob("*.out")), *sorted(logs), lines=20)
