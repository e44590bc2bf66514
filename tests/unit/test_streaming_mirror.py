"""The mirror job's Flink SQL, built without a JVM: types, quoting, and the options that matter."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from icetide.errors import ConfigError
from icetide.settings import load_settings
from streaming.mirror import Column, MirrorPlan, flink_type, insert_sql, mirror_ddl, quote_ident, source_ddl

pytestmark = pytest.mark.unit


def test_flink_types_follow_the_iceberg_flink_connector() -> None:
    from pyiceberg import types as t

    assert flink_type(t.LongType()) == "BIGINT"
    assert flink_type(t.DecimalType(12, 2)) == "DECIMAL(12, 2)"
    assert flink_type(t.TimestampType()) == "TIMESTAMP(6)"
    assert flink_type(t.TimestamptzType()) == "TIMESTAMP_LTZ(6)"
    assert flink_type(t.FixedType(8)) == "BINARY(8)"
    nested = t.StructType(t.NestedField(1, "a`b", t.ListType(2, t.StringType(), element_required=True),
                                        required=True))
    assert flink_type(nested) == "ROW<`a``b` ARRAY<STRING NOT NULL> NOT NULL>"
    assert flink_type(t.MapType(3, t.StringType(), 4, t.DateType(), value_required=False)) == \
        "MAP<STRING NOT NULL, DATE>"
    with pytest.raises(ConfigError, match="uuid"):
        flink_type(t.UUIDType())


@given(st.text(min_size=1, max_size=20))
def test_identifiers_are_quoted_so_they_cannot_escape(name: str) -> None:
    quoted = quote_ident(name)
    inner = quoted[1:-1]
    assert quoted[0] == quoted[-1] == "`"
    assert inner.replace("``", "") == name.replace("`", "")  # every backtick inside is doubled


def test_statements_read_debezium_json_and_upsert_into_a_v2_mirror() -> None:
    settings = load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": "/tmp/icetide-unit"})
    plan = MirrorPlan("sales.vendas", "sales.vendas_mirror", "icetide.sales.vendas",
                      [Column("id", "BIGINT NOT NULL"), Column("valor", "DECIMAL(12, 2)")], ["id"])
    source = source_ddl(plan, "localhost:9092", bounded=True, group_id="g'1")
    assert "'format' = 'debezium-json'" in source
    assert "'scan.startup.mode' = 'earliest-offset'" in source
    assert "'scan.bounded.mode' = 'latest-offset'" in source
    assert "'properties.group.id' = 'g''1'" in source
    assert "PRIMARY KEY (`id`) NOT ENFORCED" in source
    assert "scan.bounded.mode" not in source_ddl(plan, "localhost:9092", bounded=False, group_id="g")
    sink = mirror_ddl(settings, plan)
    assert sink.startswith("CREATE TABLE IF NOT EXISTS `lake`.`sales`.`vendas_mirror`")
    assert "'write.upsert.enabled' = 'true'" in sink and "'format-version' = '2'" in sink
    assert insert_sql(settings, plan) == \
        "INSERT INTO `lake`.`sales`.`vendas_mirror` SELECT `id`, `valor` FROM icetide_source"
