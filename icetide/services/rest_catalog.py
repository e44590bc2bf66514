"""The embedded Iceberg REST catalog: Iceberg's own reference server, for `catalog.type: rest` without a URI.

The server is the one `apache/iceberg-rest-fixture` runs — iceberg-open-api's `RESTServerCatalogAdapter`
over iceberg-core's `RESTCatalogAdapter` and `RESTCatalogServlet`, on Jetty 11 — from the jars `make setup`
fetches (`jars/rest/pom.xml`). Its own `main` binds every interface and logs the catalog properties with
their secrets, so it is started by a small launcher (`jars/rest/src/`) that binds loopback only and reads the
properties from a file. Behind it is an Iceberg JDBC catalog in its own SQLite file; table files go through
the same FileIO as the engines' (S3FileIO to the object store when `storage.kind: s3`).

Everything lives under `<state_dir>/rest-catalog/`: `catalog.properties` (mode 0600: it names the
`catalog` role's key file, or holds the key when it comes from environment variables),
`catalog.db`, `port`, the pid file and `rest-catalog.out` (the server's log).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icetide import jvm
from icetide.catalog import JDBC_CATALOG_IMPL
from icetide.errors import StackError
from icetide.process import choose_port
from icetide.services.connect import render_properties
from icetide.services.shape import JvmProcess, Need, StateHome, require
from icetide.storage import iceberg_io_properties

if TYPE_CHECKING:
    from icetide.settings import Settings

MAIN_CLASS = "org.apache.iceberg.rest.IcetideRestLauncher"
JAR_GROUP = "rest"
HOST = "127.0.0.1"
HEAP = "384m"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 20.0
# slf4j-simple: the server's own start line and warnings; Jetty's chatter off
LOGGING = {
    "org.slf4j.simpleLogger.defaultLogLevel": "warn",
    "org.slf4j.simpleLogger.log.org.apache.iceberg.rest.IcetideRestLauncher": "info",
    "org.slf4j.simpleLogger.showDateTime": "true",
    "org.slf4j.simpleLogger.dateTimeFormat": "yyyy-MM-dd'T'HH:mm:ss.SSS",
}


class RestCatalogServer(StateHome):
    """One reference REST catalog server per state dir."""

    name = "rest-catalog"
    label = "REST catalog"

    def _files(self, home: Path) -> None:
        self.config_file = home / "catalog.properties"
        self.port_file = home / "port"
        self.backing_db = home / "catalog.db"
        self.process = JvmProcess(self.name, home, MAIN_CLASS, self.config_file)

    # -- the service shape -----------------------------------------------------------------
    def needs(self) -> list[Need]:
        return [Need("the Iceberg REST catalog server's jars", jvm.jar_cache() / JAR_GROUP)]

    def server_properties(self, settings: Settings, port: int) -> dict[str, str]:
        """The backing catalog's properties (JDBC in SQLite, the engines' warehouse and FileIO) and the address."""
        return {
            "catalog.name": settings.catalog.name,
            "catalog-impl": JDBC_CATALOG_IMPL,
            "uri": f"jdbc:sqlite:{self.backing_db}",
            "jdbc.schema-version": "V1",
            "warehouse": settings.warehouse,
            **iceberg_io_properties(settings, "catalog"),
            "rest.host": HOST,
            "rest.port": str(port),
        }

    def start(self, settings: Settings, state_dir: Path) -> dict[str, str]:
        """Start the server (or reuse the one running from this state dir); its endpoints once it answers."""
        self._bind(state_dir)
        running = self.process.live_pid()
        if running is not None:
            if self.ready():
                return self.endpoints()
            raise StackError(f"a REST catalog server (pid {running}) runs from {self.home} but does not answer: "
                             "run `icetide stack down` and `icetide stack up` again\n" + self.process.output())
        require(self.needs())
        self.home.mkdir(parents=True, exist_ok=True)
        port = choose_port(HOST, settings.catalog.rest_port, "catalog.rest_port", self._previous_port())
        fd = os.open(self.config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(render_properties(self.server_properties(settings, port)))
        self.port_file.write_text(f"{port}\n")
        cmd = self.process.command(jvm.jars(JAR_GROUP), [str(self.config_file)], heap=HEAP, properties=LOGGING)
        self.process.launch(cmd, self.ready, timeout_s=START_TIMEOUT_S)
        return self.endpoints()

    def ready(self) -> bool:
        """`GET /v1/config` answers with the catalog's configuration."""
        base = self.url()
        if not base:
            return False
        try:
            with urllib.request.urlopen(f"{base}v1/config", timeout=2.0) as response:
                return "defaults" in json.loads(response.read())
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def stop(self) -> bool:
        return self.process.stop(STOP_TIMEOUT_S) if self._home is not None else False

    def status(self) -> dict[str, Any]:
        pid = self.process.live_pid() if self._home is not None else None
        return {"name": self.name, "running": pid is not None and self.ready(), "pid": pid,
                "uri": self.recorded_uri() or None, "backing_catalog": str(self.backing_db) if self._home else None,
                "rss_bytes": self.process.rss_bytes() if pid else None,
                "log_file": str(self.process.out_file) if self._home else None}

    def endpoints(self) -> dict[str, str]:
        return {"rest": self.url()}

    # -- addresses ---------------------------------------------------------------------------
    def url(self) -> str:
        """The server's base URL from its port file ("" before the first start)."""
        if self._home is None:
            return ""
        try:
            port = int(self.port_file.read_text().strip())
        except (OSError, ValueError):
            return ""
        return f"http://{HOST}:{port}/"

    def recorded_uri(self) -> str:
        """The URI of the server running from this state dir ("" when none runs)."""
        if self._home is None or self.process.live_pid() is None:
            return ""
        return self.url()

    def _previous_port(self) -> int | None:
        previous = self.url()
        return int(previous.rsplit(":", 1)[1].strip("/")) if previous else None
