"""A throwaway PostgreSQL server from Debian's binaries (tests, benchmarks, the chaos campaign).

`initdb` refuses to run as root, so when we run as root the cluster belongs to the `postgres`
system user (created by Debian's package; created here if missing) and every server command runs
through `runuser -u postgres --`. The server listens on 127.0.0.1 on a free port with its unix
socket in its own directory, trust authentication and no fsync (a scratch server, never a
production one). `PgServer.dsn` is the superuser DSN; `create_database` makes a fresh database.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from icetide.errors import StackError
from icetide.process import free_port

SERVER_USER = "postgres"
BIN_ROOT = Path("/usr/lib/postgresql")
START_TIMEOUT_S = 120


def bin_dir(root: Path = BIN_ROOT) -> Path:
    """The newest installed server's bin folder; StackError if there is none."""
    found = sorted(root.glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise StackError(f"PostgreSQL server binaries not found under {root}: apt-get install postgresql")
    return found[-1].parent


def as_server_user() -> list[str]:
    """The prefix that runs a command as the cluster's owner (nothing if we are not root)."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(SERVER_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", SERVER_USER], check=True)
    return ["runuser", "-u", SERVER_USER, "--"]


@dataclass
class PgServer:
    """A running scratch server; `stop()` stops it and removes its folder."""

    base: Path
    port: int
    bindir: Path
    runas: list[str] = field(default_factory=list)
    host: str = "127.0.0.1"
    options: str = ""  # the postgres command-line options it was started with

    @property
    def data(self) -> Path:
        return self.base / "data"

    @property
    def log_file(self) -> Path:
        return self.base / "server.log"

    @property
    def dsn(self) -> str:
        """Superuser DSN (database `postgres`)."""
        return f"host={self.host} port={self.port} user=postgres dbname=postgres"

    def _ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.runas, str(self.bindir / "pg_ctl"), "-D", str(self.data), *args],
                              capture_output=True, text=True, env=_env(), cwd=self.base)

    def stop(self) -> None:
        self._ctl("-m", "fast", "-w", "stop")
        shutil.rmtree(self.base, ignore_errors=True)

    def halt(self) -> None:
        """Stop the server but keep its cluster (a fault for tests: `resume()` starts it again)."""
        self._ctl("-m", "fast", "-w", "stop")

    def resume(self) -> None:
        """Start the (halted) server again, same port and options; StackError if it does not start."""
        started = self._ctl("-l", str(self.log_file), "-o", self.options, "-w", "-t", str(START_TIMEOUT_S), "start")
        if started.returncode != 0:
            tail = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else started.stderr
            raise StackError(f"PostgreSQL did not start:\n{tail}")


def _env() -> dict[str, str]:
    return {**os.environ, "LC_ALL": "C.UTF-8"}


def start(base: Path | None = None, port: int = 0) -> PgServer:
    """initdb a new cluster in `base` (default: a new temp folder) and start it; StackError on failure.

    `base` must be empty or absent, and reachable by the `postgres` user when running as root
    (a temp folder is)."""
    bindir = bin_dir()
    if base is None:
        base = Path(tempfile.mkdtemp(prefix="icetide-pg-"))
    base.mkdir(parents=True, exist_ok=True)
    base.chmod(0o755)
    runas = as_server_user()
    if runas:
        shutil.chown(base, SERVER_USER)
    server = PgServer(base=base, port=port or free_port(), bindir=bindir, runas=runas)
    made = subprocess.run([*runas, str(bindir / "initdb"), "-D", str(server.data), "-A", "trust", "-U", "postgres",
                           "-E", "UTF8", "--no-sync"], capture_output=True, text=True, env=_env(), cwd=base)
    if made.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        raise StackError(f"initdb failed in {base}:\n{(made.stderr or made.stdout)[-2000:]}")
    server.options = (f"-p {server.port} -k {base} -c listen_addresses={server.host} -c fsync=off "
                      "-c full_page_writes=off -c shared_buffers=64MB -c max_connections=50")
    try:
        server.resume()
    except StackError:
        shutil.rmtree(base, ignore_errors=True)
        raise
    return server


def create_database(server_dsn: str, prefix: str = "t") -> str:
    """Create a fresh database (`<prefix>_<random>`) on the server of `server_dsn`; return its DSN."""
    import psycopg
    from psycopg import sql

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return server_dsn.replace("dbname=postgres", f"dbname={name}")
