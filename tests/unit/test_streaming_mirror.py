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


def test_connect_json_columns_arrive_in_their_physical_types_and_are_converted() -> None:
    import base64
    import datetime as dt
    from decimal import Decimal

    from pyiceberg import types as t

    from icetide.connect_json import _unscaled
    from streaming.mirror_wire import converter, wire

    assert wire(t.DateType(), "connect-json", flink_type) == ("INT", ("date",))
    assert wire(t.TimestampType(), "connect-json", flink_type) == ("BIGINT", ("timestamp",))
    assert wire(t.TimestamptzType(), "connect-json", flink_type) == ("TIMESTAMP_LTZ(6)", ("id",))  # ISO with Z
    assert wire(t.DecimalType(12, 2), "connect-json", flink_type) == ("BYTES", ("decimal", 2))
    assert wire(t.DecimalType(12, 2), "json", flink_type) == ("DECIMAL(12, 2)", ("id",))
    assert wire(t.TimestamptzType(), "avro", flink_type) == ("STRING", ("zoned",))
    assert wire(t.TimestampType(), "avro", flink_type) == ("BIGINT", ("timestamp",))
    assert wire(t.DateType(), "avro", flink_type) == ("DATE", ("id",))
    nested = t.StructType(t.NestedField(1, "tags", t.ListType(2, t.StringType())),
                          t.NestedField(3, "peso", t.DecimalType(6, 3), required=True))
    wire_type, spec = wire(nested, "connect-json", flink_type)
    assert wire_type == "ROW<`tags` ARRAY<STRING NOT NULL>, `peso` BYTES NOT NULL>"
    row = converter(spec)([["a"], _unscaled("-1.250", 3)])
    assert list(row) == [["a"], Decimal("-1.250")]
    assert converter(("decimal", 2))(_unscaled("-12.50", 2)) == Decimal("-12.50")
    assert converter(("decimal", 0))(base64.b64decode("tMSzV6V5O4X2dd3AAAAAAQ==")) == -(10**38 - 1)
    assert converter(("date",))(-1) == dt.date(1969, 12, 31)
    assert converter(("timestamp",))(1_704_070_800_123_456) == dt.datetime(2024, 1, 1, 1, 0, 0, 123456)
    assert converter(("time",))(86_399_999_999) == dt.time(23, 59, 59, 999999)
    assert converter(("zoned",))("2024-01-01T01:00:00.000001Z") == dt.datetime(2024, 1, 1, 1, 0, 0, 1, dt.UTC)
    assert converter(("date",))(None) is None


def test_connect_json_plan_includes_the_schema_and_converts_in_the_select() -> None:
    settings = load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": "/tmp/icetide-unit"})
    plan = MirrorPlan("sales.vendas", "sales.vendas_mirror", "icetide.sales.vendas",
                      [Column("id", "BIGINT NOT NULL"), Column("dia", "DATE", "INT", ("date",))], ["id"],
                      format="connect-json")
    source = source_ddl(plan, "localhost:9092", bounded=True, group_id="g")
    assert "'debezium-json.schema-include' = 'true'" in source
    assert "'debezium-json.timestamp-format.standard' = 'ISO-8601'" in source
    assert "`dia` INT" in source
    assert "`dia` DATE" in mirror_ddl(settings, plan)
    assert insert_sql(settings, plan).endswith("SELECT `id`, icetide_wire_1(`dia`) AS `dia` FROM icetide_source")
    avro = MirrorPlan("sales.vendas", "sales.vendas_mirror", "icetide.sales.vendas", [Column("id", "BIGINT")], ["id"],
                      format="avro", registry="http://127.0.0.1:1/apis/ccompat/v7")
    avro_source = source_ddl(avro, "localhost:9092", bounded=True, group_id="g")
    assert "'format' = 'debezium-avro-confluent'" in avro_source
    assert "'debezium-avro-confluent.url' = 'http://127.0.0.1:1/apis/ccompat/v7'" in avro_source
