"""Smoke check of the shared Spark fixture (the changelog tests build on it)."""

from __future__ import annotations

import pytest

from tests.fixtures.spark import fresh_table_name

pytestmark = pytest.mark.integration


def test_spark_fixture_writes_iceberg_table(spark) -> None:  # type: ignore[no-untyped-def]
    name = fresh_table_name("smoke")
    spark.sql(f"CREATE TABLE {name} (id BIGINT, v STRING) USING iceberg")
    spark.sql(f"INSERT INTO {name} VALUES (1, 'a'), (2, 'b')")
    assert spark.table(name).count() == 2
