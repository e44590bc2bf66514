"""The common shape of an embedded service: what it needs installed, and its background JVM process."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from icetide import jvm
from icetide.errors import SetupError, StackError
from icetide.process import abandon_start, live_pid, log_tail, rss_bytes, runs_with, stop_recorded


@dataclass(frozen=True)
class Need:
    """One thing a service needs on the machine: a file, or a folder holding files matching `glob`."""

    what: str  # "the Kafka Connect worker's jars"
    path: Path
    hint: str = "run `make setup`"
    glob: str = "*.jar"

    def present(self) -> bool:
        if self.path.is_dir():
            return any(self.path.glob(self.glob))
        return self.path.is_file()


def require(needs: Sequence[Need]) -> None:
    """SetupError naming every missing need and how to get it; nothing when all are there."""
    missing = [f"{need.what} ({need.path}): {need.hint}" for need in needs if not need.present()]
    if missing:
        raise SetupError("missing " + "; ".join(missing))


class Service(Protocol):
    """What every service module's class offers (see the package docstring)."""

    name: str

    def needs(self) -> list[Need]: ...

    def start(self, settings: Any, state_dir: Path) -> Mapping[str, str]: ...

    def ready(self) -> bool: ...

    def stop(self) -> bool: ...

    def status(self) -> dict[str, Any]: ...


class StateHome:
    """A service's files live under `<state_dir>/<name>/`: bound at construction (to inspect or stop a
    running service) or by `start(settings, state_dir)`. Subclasses name their files in `_files`."""

    name = "service"
    label = "service"  # how errors name it

    def __init__(self, state_dir: Path | None = None) -> None:
        self._home: Path | None = None
        if state_dir is not None:
            self._bind(state_dir)

    def _bind(self, state_dir: Path) -> None:
        self._home = Path(state_dir).expanduser().resolve() / self.name
        self._files(self._home)

    def _files(self, home: Path) -> None:
        """Name the service's files under `home`."""

    @property
    def home(self) -> Path:
        if self._home is None:
            raise StackError(f"{self.label}: no state dir yet (call start(settings, state_dir))")
        return self._home


class JvmProcess:
    """A service's background JVM: started in its own process group from `home`, its pid in
    `<home>/<name>.pid`, stdout and stderr in `<home>/<name>.out`.

    A pid counts as ours while it runs `main_class` with `marker` (the service's config file, unique
    per state dir) on its command line and is not a zombie, so a recycled pid is never signalled.
    """

    def __init__(self, name: str, home: Path, main_class: str, marker: Path) -> None:
        self.name, self.home, self.main_class, self.marker = name, home, main_class, marker
        self.pid_file = home / f"{name}.pid"
        self.out_file = home / f"{name}.out"

    def command(self, classpath: Sequence[Path], args: Sequence[str], *, heap: str,
                opts: Sequence[str] = (), properties: Mapping[str, str] | None = None) -> list[str]:
        """`java` with the kernel's fast-start flags, then `opts` (which may override them)."""
        return [
            str(jvm.java_home() / "bin" / "java"), f"-Xmx{heap}", "-Xms64m", *jvm.FAST_START_OPTS, *opts,
            "-Djava.awt.headless=true", *(f"-D{k}={v}" for k, v in (properties or {}).items()),
            "-cp", os.pathsep.join(str(jar) for jar in classpath), self.main_class, *args,
        ]

    def is_ours(self, pid: int) -> bool:
        return runs_with(pid, self.main_class.encode(), str(self.marker).encode())

    def live_pid(self) -> int | None:
        """The running process's pid, or None; a stale pid file is removed."""
        return live_pid(self.pid_file, self.is_ours)

    def launch(self, cmd: Sequence[str], ready: Callable[[], bool], *, timeout_s: float,
               logs: Sequence[Path] = (), env: Mapping[str, str] | None = None,
               drop: Sequence[str] = ()) -> int:
        """Start `cmd` (with `env` added to the environment, after dropping the inherited variables whose
        names start with one of `drop`) and wait until `ready()`; StackError (with the log tails) if it
        exits or times out, and then nothing is left running."""
        self.home.mkdir(parents=True, exist_ok=True)
        with self.out_file.open("ab") as out:
            inherited = {k: v for k, v in jvm.java_env().items() if not (drop and k.startswith(tuple(drop)))}
            proc = subprocess.Popen(list(cmd), env={**inherited, **(env or {})},
                                    stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.home)
        self.pid_file.write_text(f"{proc.pid}\n")
        try:
            deadline = time.monotonic() + timeout_s
            while not ready():
                if proc.poll() is not None:
                    raise StackError(f"{self.name} exited during start-up (code {proc.returncode})\n"
                                     + self.output(*logs))
                if time.monotonic() > deadline:
                    raise StackError(f"{self.name} was not ready within {timeout_s:.0f}s\n" + self.output(*logs))
                time.sleep(0.3)
        except BaseException:
            abandon_start(proc, self.pid_file)
            raise
        return proc.pid

    def stop(self, timeout_s: float) -> bool:
        """SIGTERM (then SIGKILL after `timeout_s`) the process group; True if one was running."""
        return stop_recorded(self.pid_file, self.is_ours, timeout_s)

    def rss_bytes(self) -> int | None:
        pid = self.live_pid()
        return None if pid is None else rss_bytes(pid)

    def output(self, *logs: Path, lines: int = 30) -> str:
        return log_tail(self.out_file, *logs, lines=lines, empty=f"(no {self.name} output)")
