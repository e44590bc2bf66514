"""One catalog configuration rendered for each engine: Spark conf, Flink DDL, PyIceberg.

All three see the same Iceberg catalog — JDBC (by default one SQLite file) or REST (`catalog.type: rest`,
by default the embedded reference server) — and the same warehouse, under the same catalog name. With
`storage.kind: s3` every engine reads and writes the warehouse through S3 (`icetide.storage`) with the key
of its role: the JVM engines default to `writer`, PyIceberg to the read-only `bi`; the CDC job and
`cdc verify` ask for `cdc`, maintenance for `maint`. A PyIceberg catalog re-reads its role's key file when
it changed (a rotation, `icetide stack rotate s3`) before loading a table, and once more after a refused
load, so a long-running reader keeps working across a rotation.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from icetide.errors import ConfigError, StackError
from icetide.flink_sql import with_options
from icetide.storage import KeyWatch, iceberg_io_properties, pyiceberg_io_properties

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

    from icetide.settings import Role, Settings

JDBC_CATALOG_IMPL = "org.apache.iceberg.jdbc.JdbcCatalog"
REST_CATALOG_IMPL = "org.apache.iceberg.rest.RESTCatalog"


def catalog_uri(settings: Settings) -> str:
    """The catalog's URI: the configured one, the JDBC default, or the running embedded REST server's."""
    if settings.catalog_uri:
        return settings.catalog_uri
    from icetide.services.rest_catalog import RestCatalogServer

    uri = RestCatalogServer(settings.state_dir).recorded_uri()
    if not uri:
        raise StackError(f"the embedded REST catalog of {settings.state_dir} is not running: start it with "
                         "`icetide stack up` (or set catalog.uri)")
    return uri


def _rest_auth(settings: Settings) -> dict[str, str]:
    props = {}
    if settings.catalog.token is not None:
        props["token"] = settings.catalog.token.get_secret_value()
    if settings.catalog.credential is not None:
        props["credential"] = settings.catalog.credential.get_secret_value()
    return props


def catalog_properties(settings: Settings, role: Role = "writer") -> dict[str, str]:
    """The Iceberg catalog properties shared by the JVM engines, with `role`'s S3 key (secrets included:
    never log them)."""
    if settings.catalog.type == "rest":
        rest = {"catalog-impl": REST_CATALOG_IMPL, "uri": catalog_uri(settings), "warehouse": settings.warehouse,
                **_rest_auth(settings)}
        return {**rest, **iceberg_io_properties(settings, role)}
    props = {
        "catalog-impl": JDBC_CATALOG_IMPL,
        "uri": settings.catalog_uri,
        "warehouse": settings.warehouse,
        "jdbc.schema-version": "V1",
    }
    if settings.catalog.user:
        props["jdbc.user"] = settings.catalog.user
    if settings.catalog.password is not None:
        props["jdbc.password"] = settings.catalog.password.get_secret_value()
    props.update(iceberg_io_properties(settings, role))
    return props


def spark_conf(settings: Settings, role: Role = "writer") -> dict[str, str]:
    """Spark configuration that registers the catalog (and the Iceberg SQL extensions), as `role`."""
    name = settings.catalog.name
    conf = {
        "spark.sql.extensions": "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions",
        f"spark.sql.catalog.{name}": "org.apache.iceberg.spark.SparkCatalog",
        "spark.sql.defaultCatalog": name,
    }
    for key, value in catalog_properties(settings, role).items():
        conf[f"spark.sql.catalog.{name}.{key}"] = value
    return conf


def flink_catalog_ddl(settings: Settings, role: Role = "writer") -> str:
    """`CREATE CATALOG` for Flink SQL, as `role`; values are quoted as SQL string literals."""
    name = settings.catalog.name
    if not name.replace("_", "").isalnum():
        raise ConfigError(f"{settings.source}: setting 'catalog.name': must be alphanumeric, got {name!r}")
    props = {"type": "iceberg", **catalog_properties(settings, role)}
    return f"CREATE CATALOG `{name}` WITH (\n  {with_options(props)}\n)"


def sqlalchemy_uri(jdbc_uri: str) -> str:
    """jdbc:sqlite:/p → sqlite:////p ; jdbc:postgresql://h/db → postgresql+psycopg://h/db."""
    if jdbc_uri.startswith("jdbc:sqlite:"):
        path = jdbc_uri[len("jdbc:sqlite:") :]
        if path.startswith("file:"):
            path = path[len("file:") :]
        return f"sqlite:///{path}"
    if jdbc_uri.startswith("jdbc:postgresql:"):
        return "postgresql+psycopg:" + jdbc_uri[len("jdbc:postgresql:") :]
    raise ConfigError(f"unsupported catalog uri (setting 'catalog.uri'): {jdbc_uri.split('?')[0]}")


def pyiceberg_properties(settings: Settings, role: Role = "bi") -> dict[str, str]:
    """SqlCatalog properties: the SQLAlchemy URI (with the catalog login, URL-quoted) and warehouse;
    RestCatalog properties: the URI, warehouse and token. Plus the S3 file IO's (`role`'s key) when storage is S3."""
    if settings.catalog.type == "rest":
        return {"uri": catalog_uri(settings), "warehouse": settings.warehouse, **_rest_auth(settings),
                **pyiceberg_io_properties(settings, role)}
    uri = sqlalchemy_uri(settings.catalog_uri)
    if settings.catalog.user and not uri.startswith("sqlite"):
        scheme, rest = uri.split("://", 1)
        secret = settings.catalog.password.get_secret_value() if settings.catalog.password else None
        login = quote(settings.catalog.user, safe="") + (f":{quote(secret, safe='')}" if secret else "")
        uri = f"{scheme}://{login}@{rest}"
    return {"uri": uri, "warehouse": settings.warehouse, **pyiceberg_io_properties(settings, role)}


@functools.cache
def _key_refreshing(base: type) -> type:
    """`base` (a PyIceberg catalog class) whose `load_table` first re-reads its role's S3 key when the key
    file changed, and retries once with a re-read key after a failed load (the key may have just rotated)."""

    class KeyRefreshing(base):  # type: ignore[misc]
        icetide_settings: Settings
        icetide_role: Role
        icetide_watch: KeyWatch

        def icetide_refresh_key(self) -> bool:
            """Take the key file's current key into the properties; True if it differed."""
            fresh = pyiceberg_io_properties(self.icetide_settings, self.icetide_role)
            if fresh.get("s3.access-key-id") == self.properties.get("s3.access-key-id"):
                return False
            self.properties.update(fresh)
            return True

        def load_table(self, identifier: Any) -> Any:
            if self.icetide_watch.changed():
                self.icetide_refresh_key()
            try:
                return super().load_table(identifier)
            except Exception:
                if not self.icetide_refresh_key():
                    raise
                return super().load_table(identifier)

    KeyRefreshing.__name__ = KeyRefreshing.__qualname__ = f"KeyRefreshing{base.__name__}"
    return KeyRefreshing


def pyiceberg_catalog(settings: Settings, role: Role = "bi") -> Catalog:
    """A read-only PyIceberg view of the same catalog (writes go through Spark or Flink), reading the
    object store as `role` (default the read-only `bi`)."""
    if settings.catalog.type == "rest":
        from pyiceberg.catalog.rest import RestCatalog as base
    else:
        from pyiceberg.catalog.sql import SqlCatalog as base  # type: ignore[assignment]
    if settings.storage.kind != "s3":
        return base(settings.catalog.name, **pyiceberg_properties(settings, role))
    watch = KeyWatch.of(settings, role)  # before reading the key: a change in between is seen next time
    catalog = _key_refreshing(base)(settings.catalog.name, **pyiceberg_properties(settings, role))
    catalog.icetide_settings, catalog.icetide_role, catalog.icetide_watch = settings, role, watch
    return catalog  # type: ignore[no-any-return]
