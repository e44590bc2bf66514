"""A real Confluent-compatible schema registry as a local process: Apicurio Registry, in memory.

Why Apicurio: it is the one Confluent-compatible registry this project can get from Maven Central
alone. Apicurio publishes the registry only as a Quarkus application's main jar, so `make setup`
re-runs the Quarkus build over it (`jars/registry/pom.xml`) and leaves a runnable jar in
`.cache/registry/build/`. It is 2.4.2.Final: the newest release whose artifacts are all on Central
and that runs on JDK 17 (see the pom for why not 2.5/2.6/3.x).

The process keeps its pid, port and log under `<state_dir>/registry/`, listens on a free loopback
port, stores schemas in memory (H2), and serves the Confluent API under `/apis/ccompat/v7`, which is
what `icetide.schema_registry.SchemaRegistryClient` talks to. `start()` is idempotent: a registry
already running from the same state dir is reused.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from icetide import jvm
from icetide.errors import SetupError, StackError
from icetide.process import abandon_start, free_port, live_pid, log_tail, rss_bytes, stop_recorded

RUNNER_NAME = "apicurio-registry-runner.jar"
CCOMPAT_PATH = "/apis/ccompat/v7"
STOP_TIMEOUT_S = 20.0


def runner_jar() -> Path:
    """The registry jar built by `make setup` (`$ICETIDE_REGISTRY_JAR` overrides the location)."""
    explicit = os.environ.get("ICETIDE_REGISTRY_JAR")
    jar = Path(explicit) if explicit else jvm.PROJECT_ROOT / ".cache" / "registry" / "build" / RUNNER_NAME
    if not jar.is_file() or not (jar.parent / "lib").is_dir():
        raise SetupError(
            f"no schema registry at {jar}: run `make setup` (it builds Apicurio Registry from "
            "jars/registry/pom.xml with Maven)"
        )
    return jar


@dataclass(frozen=True)
class RegistryStatus:
    """What runs and where; `url` is the base of the Confluent-compatible API."""

    running: bool
    pid: int | None
    port: int | None
    url: str
    log_file: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def answers(url: str, timeout_s: float = 2.0) -> bool:
    """True if a Confluent-compatible registry at `url` lists its subjects."""
    try:
        with urllib.request.urlopen(f"{url}/subjects", timeout=timeout_s) as response:
            return response.status == 200 and isinstance(json.loads(response.read()), list)
    except (OSError, ValueError, urllib.error.URLError):
        return False




class Registry:
    """Start, stop and inspect the registry process of one state dir."""

    def __init__(self, state_dir: Path, *, host: str = "127.0.0.1", heap: str = "256m",
                 start_timeout_s: float = 180.0) -> None:
        self.host = host
        self.heap = heap
        self.start_timeout_s = start_timeout_s
        self.home = Path(state_dir).expanduser().resolve() / "registry"
        self.pid_file = self.home / "registry.pid"
        self.port_file = self.home / "port"
        self.log_file = self.home / "registry.log"

    # -- public API ------------------------------------------------------------------------
    def start(self) -> RegistryStatus:
        """Start the registry (or reuse the one running from this state dir) and wait until it answers."""
        pid = self._live_pid()
        if pid is not None:
            port = self._read_port()
            if port and self._wait_ready(self._url(port), lambda: not self._pid_is_ours(pid)):
                return self.status()
            raise StackError(f"a schema registry (pid {pid}) runs from {self.home} but does not answer: "
                             "stop it and start again\n" + self._output())
        jar = runner_jar()
        self.home.mkdir(parents=True, exist_ok=True)
        port = free_port(self.host)
        cmd = [
            str(jvm.java_home() / "bin" / "java"), f"-Xmx{self.heap}", "-Xms64m", *jvm.FAST_START_OPTS,
            "-Djava.awt.headless=true",
            f"-Dquarkus.http.host={self.host}", f"-Dquarkus.http.port={port}",
            "-Dquarkus.log.console.color=false",
            "-jar", str(jar),
        ]
        with self.log_file.open("ab") as out:
            proc = subprocess.Popen(cmd, env=jvm.java_env(), stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.home)
        self.pid_file.write_text(f"{proc.pid}\n")
        self.port_file.write_text(f"{port}\n")
        try:
            if not self._wait_ready(self._url(port), lambda: proc.poll() is not None):
                raise StackError(f"the schema registry did not answer on {self._url(port)} within "
                                 f"{self.start_timeout_s:.0f}s\n" + self._output())
        except BaseException:
            abandon_start(proc, self.pid_file)
            raise
        return self.status()

    def stop(self) -> bool:
        """Stop the registry this state dir started; True if one was running."""
        return stop_recorded(self.pid_file, self._pid_is_ours, STOP_TIMEOUT_S)

    def status(self) -> RegistryStatus:
        """What runs now (never starts or stops anything, apart from removing a stale pid file)."""
        pid = self._live_pid()
        port = self._read_port()
        url = self._url(port) if port else ""
        running = pid is not None and bool(port) and answers(url)
        return RegistryStatus(running=running, pid=pid, port=port, url=url, log_file=str(self.log_file))

    def rss_bytes(self) -> int | None:
        """Resident memory of the running registry (from /proc), for the figures in docs and bench."""
        pid = self._live_pid()
        return None if pid is None else rss_bytes(pid)

    # -- internals -------------------------------------------------------------------------
    def _url(self, port: int) -> str:
        return f"http://{self.host}:{port}{CCOMPAT_PATH}"

    def _pid_is_ours(self, pid: int) -> bool:
        """The pid is alive, runs the registry jar, and was started from this state dir."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            cwd = os.readlink(f"/proc/{pid}/cwd")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            return False
        return state != "Z" and any(arg.endswith(RUNNER_NAME.encode()) for arg in cmdline) and cwd == str(self.home)

    def _output(self) -> str:
        return log_tail(self.log_file, lines=30, empty="(no registry output)")

    def _live_pid(self) -> int | None:
        return live_pid(self.pid_file, self._pid_is_ours)

    def _read_port(self) -> int | None:
        try:
            return int(self.port_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def _wait_ready(self, url: str, exited: Callable[[], bool]) -> bool:
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if exited():
                raise StackError("the schema registry exited during start-up\n" + self._output())
            if answers(url):
                return True
            time.sleep(0.3)
        return False
