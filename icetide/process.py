"""Background service processes (the Kafka broker, the schema registry, Kafka Connect): pid files,
free ports, stopping, memory, logs — the helpers every service shares, kept here once.

A service runs in its own process group, its pid in a file under its state directory. Whether a
pid is still *ours* (not a recycled pid, not a zombie) is the caller's test, passed as `is_ours`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from icetide.errors import StackError

log = logging.getLogger(__name__)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def choose_port(host: str, wanted: int, setting: str, previous: int | None = None) -> int:
    """A service's port: `wanted` (the value of `setting`, e.g. "trino.port") if free, else a StackError that
    names the setting and its environment override; with `wanted` 0, the port it had before if still free,
    else one the OS picks."""
    if wanted:
        if not port_is_free(host, wanted):
            override = "ICETIDE__" + setting.upper().replace(".", "__")
            raise StackError(f"port {host}:{wanted} (setting {setting}) is in use: stop what listens there or set "
                             f"{override}=0 to pick a free port")
        return wanted
    if previous and port_is_free(host, previous):
        return previous
    return free_port(host)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def rss_bytes(pid: int) -> int | None:
    """Resident memory of a running process (from /proc), or None if it is gone."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return None


def runs_with(pid: int, *marks: bytes) -> bool:
    """Whether `pid` is a live (not zombie) process whose command line has each of `marks` as an argument —
    how a service tells its own process from a recycled pid."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z" and all(mark in cmdline for mark in marks)


def live_pid(pid_file: Path, is_ours: Callable[[int], bool]) -> int | None:
    """The pid in `pid_file` if that process is still ours; otherwise None, and a stale file is removed."""
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        pid_file.unlink(missing_ok=True)
        return None
    if is_ours(pid):
        return pid
    log.info("removing stale pid file %s (pid %s is not running)", pid_file, pid)
    pid_file.unlink(missing_ok=True)
    return None


def stop_group(pid: int, is_ours: Callable[[int], bool], timeout_s: float) -> None:
    """SIGTERM the process group of `pid`, wait up to `timeout_s`, then SIGKILL it and wait."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while is_ours(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if is_ours(pid):
        log.warning("pid %s ignored SIGTERM for %ss; killing it", pid, timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        while is_ours(pid):
            time.sleep(0.1)


def stop_recorded(pid_file: Path, is_ours: Callable[[int], bool], timeout_s: float) -> bool:
    """Stop the process group whose pid `pid_file` records (if it is still ours) and forget the file; True if
    one was running. Every service's `stop` is this."""
    pid = live_pid(pid_file, is_ours)
    if pid is None:
        return False
    stop_group(pid, is_ours, timeout_s)
    pid_file.unlink(missing_ok=True)
    return True


def abandon_start(proc: subprocess.Popen[bytes], pid_file: Path) -> None:
    """Undo a start that failed or was interrupted: kill the new process group, forget its pid file."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    pid_file.unlink(missing_ok=True)


def start_module(module: str, args: list[str], *, home: Path, out_file: Path, pid_file: Path,
                 ready: Callable[[], bool], timeout_s: float, failed: Callable[[], str]) -> int:
    """Run `python -m module args…` from `home` in its own session (output appended to `out_file`, pid in
    `pid_file`) and wait until `ready()`; on exit, timeout or interrupt nothing is left running and
    StackError carries `failed()` (the message and the output's tail). The icetide-side collectors
    (access log, Trino audit) start this way."""

    with out_file.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", module, *args], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=home)
    pid_file.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + timeout_s
    try:
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise StackError(failed())
            time.sleep(0.1)
    except BaseException:
        abandon_start(proc, pid_file)
        raise
    return proc.pid


def log_tail(*paths: Path, lines: int = 25, empty: str = "(no output)") -> str:
    """The last `lines` lines of each non-empty file, headed by its path (for error messages)."""
    chunks = []
    for path in paths:
        if path.is_file() and path.stat().st_size:
            text = path.read_text(errors="replace").splitlines()[-lines:]
            chunks.append(f"--- {path} (last {len(text)} lines)\n" + "\n".join(text))
    return "\n".join(chunks) or empty


@contextlib.contextmanager
def results_only_on_stdout() -> Iterator[None]:
    """Send everything written to stdout meanwhile to stderr — Python's prints and, at the file-descriptor level,
    what child processes and JVMs started now write (PyFlink's gateway, Hadoop's S3 file system) — so that a
    command's `--json` result, emitted afterwards, is the only thing on stdout."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
