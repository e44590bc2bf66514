"""One catalog configuration rendered for each engine: Spark conf, Flink DDL, PyIceberg.

All three see the same Iceberg catalog — JDBC (by default one SQLite file) or REST (`catalog.type: rest`,
by default the embedded reference server) — and the same warehouse, under the same catalog name. With
`storage.kind: s3` every engine reads and writes the warehouse through S3 (`icetide.storage`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from icetide.errors import ConfigError, StackError
from icetide.storage import iceberg_io_properties, pyiceberg_io_properties

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog

    from icetide.settings import Settings

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


def catalog_properties(settings: Settings) -> dict[str, str]:
    """The Iceberg catalog properties shared by the JVM engines (secrets included: never log them)."""
    if settings.catalog.type == "rest":
        rest = {"catalog-impl": REST_CATALOG_IMPL, "uri": catalog_uri(settings), "warehouse": settings.warehouse,
                **_rest_auth(settings)}
        return {**rest, **iceberg_io_properties(settings)}
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
    props.update(iceberg_io_properties(settings))
    return props


def spark_conf(settings: Settings) -> dict[str, str]:
    """Spark configuration that registers the catalog (and the Iceberg SQL extensions)."""
    name = settings.catalog.name
    conf = {
        "spark.sql.extensions": "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions",
        f"spark.sql.catalog.{name}": "org.apache.iceberg.spark.SparkCatalog",
        "spark.sql.defaultCatalog": name,
    }
    for key, value in catalog_properties(settings).items():
        conf[f"spark.sql.catalog.{name}.{key}"] = value
    return conf


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def flink_catalog_ddl(settings: Settings) -> str:
    """`CREATE CATALOG` for Flink SQL; values are quoted as SQL string literals."""
    name = settings.catalog.name
    if not name.replace("_", "").isalnum():
        raise ConfigError(f"{settings.source}: setting 'catalog.name': must be alphanumeric, got {name!r}")
    props = {"type": "iceberg", **catalog_properties(settings)}
    body = ",\n  ".join(f"{_sql_literal(k)} = {_sql_literal(v)}" for k, v in props.items())
    return f"CREATE CATALOG `{name}` WITH (\n  {body}\n)"


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


def pyiceberg_properties(settings: Settings) -> dict[str, str]:
    """SqlCatalog properties: the SQLAlchemy URI (with the catalog login, URL-quoted) and warehouse;
    RestCatalog properties: the URI, warehouse and token. Plus the S3 file IO's when storage is S3."""
    if settings.catalog.type == "rest":
        return {"uri": catalog_uri(settings), "warehouse": settings.warehouse, **_rest_auth(settings),
                **pyiceberg_io_properties(settings)}
    uri = sqlalchemy_uri(settings.catalog_uri)
    if settings.catalog.user and not uri.startswith("sqlite"):
        scheme, rest = uri.split("://", 1)
        secret = settings.catalog.password.get_secret_value() if settings.catalog.password else None
        login = quote(settings.catalog.user, safe="") + (f":{quote(secret, safe='')}" if secret else "")
        uri = f"{scheme}://{login}@{rest}"
    return {"uri": uri, "warehouse": settings.warehouse, **pyiceberg_io_properties(settings)}


def pyiceberg_catalog(settings: Settings) -> Catalog:
    """A read-only PyIceberg view of the same catalog (writes go through Spark or Flink)."""
    if settings.catalog.type == "rest":
        from pyiceberg.catalog.rest import RestCatalog

        return RestCatalog(settings.catalog.name, **pyiceberg_properties(settings))
    from pyiceberg.catalog.sql import SqlCatalog

    return SqlCatalog(settings.catalog.name, **pyiceberg_properties(settings))
