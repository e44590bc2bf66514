"""One catalog configuration, rendered for Spark, Flink and PyIceberg."""

from __future__ import annotations

from pathlib import Path

import pytest

from icetide.catalog import flink_catalog_ddl, pyiceberg_catalog, pyiceberg_properties, spark_conf, sqlalchemy_uri
from icetide.errors import ConfigError
from icetide.settings import load_settings

pytestmark = pytest.mark.unit


def test_spark_and_flink_see_the_same_catalog(tmp_path: Path) -> None:
    s = load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(tmp_path)})
    conf = spark_conf(s)
    assert conf["spark.sql.catalog.lake.uri"] == s.catalog_uri
    assert conf["spark.sql.catalog.lake.warehouse"] == s.warehouse
    ddl = flink_catalog_ddl(s)
    assert f"'uri' = '{s.catalog_uri}'" in ddl and f"'warehouse' = '{s.warehouse}'" in ddl


def test_flink_ddl_quotes_values() -> None:
    s = load_settings(None, environ={"ICETIDE__CATALOG__WAREHOUSE": "file:///tmp/it's"})
    assert "'file:///tmp/it''s'" in flink_catalog_ddl(s)


def test_bad_catalog_name_is_a_config_error() -> None:
    s = load_settings(None, environ={"ICETIDE__CATALOG__NAME": "lake`; DROP"})
    with pytest.raises(ConfigError, match=r"catalog\.name"):
        flink_catalog_ddl(s)


@pytest.mark.parametrize(("jdbc", "sqlalchemy"), [
    ("jdbc:sqlite:/tmp/c.db", "sqlite:////tmp/c.db"),
    ("jdbc:sqlite:file:/tmp/c.db", "sqlite:////tmp/c.db"),
    ("jdbc:postgresql://db:5432/iceberg", "postgresql+psycopg://db:5432/iceberg"),
])
def test_sqlalchemy_uri(jdbc: str, sqlalchemy: str) -> None:
    assert sqlalchemy_uri(jdbc) == sqlalchemy


def test_unsupported_uri_names_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"catalog\.uri"):
        sqlalchemy_uri("jdbc:oracle:thin:@h:1521:x")


def test_pyiceberg_gets_user_and_password_quoted_and_never_printed() -> None:
    s = load_settings(None, environ={"ICETIDE__CATALOG__URI": "jdbc:postgresql://db:5432/iceberg",
                                     "ICETIDE__CATALOG__USER": "ice", "ICETIDE__CATALOG__PASSWORD": "p@ss:w/rd"})
    assert pyiceberg_properties(s)["uri"] == "postgresql+psycopg://ice:p%40ss%3Aw%2Frd@db:5432/iceberg"
    assert "p@ss" not in repr(s)


def test_pyiceberg_reads_the_catalog_spark_would_use(tmp_path: Path) -> None:
    s = load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(tmp_path)})
    catalog = pyiceberg_catalog(s)
    catalog.create_namespace("probe")
    assert ("probe",) in catalog.list_namespaces()
    assert (tmp_path / "catalog.db").is_file()
