"""Background service processes (the Kafka broker, the schema registry): pid files, stopping, logs.

A service runs in its own process group, its pid in a file under its state directory. Whether a
pid is still *ours* (not a recycled pid, not a zombie) is the caller's test, passed as `is_ours`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)


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


def log_tail(*paths: Path, lines: int = 25, empty: str = "(no output)") -> str:
    """The last `lines` lines of each non-empty file, headed by its path (for error messages)."""
    chunks = []
    for path in paths:
        if path.is_file() and path.stat().st_size:
            text = path.read_text(errors="replace").splitlines()[-lines:]
            chunks.append(f"--- {path} (last {len(text)} lines)\n" + "\n".join(text))
    return "\n".join(chunks) or empty
