"""The Kafka Connect / Debezium schema names and parameters icetide's encodings write and read."""

from __future__ import annotations

DATE = "io.debezium.time.Date"
MICRO_TIME = "io.debezium.time.MicroTime"
MICRO_TIMESTAMP = "io.debezium.time.MicroTimestamp"
ZONED_TIMESTAMP = "io.debezium.time.ZonedTimestamp"
UUID = "io.debezium.data.Uuid"
DECIMAL = "org.apache.kafka.connect.data.Decimal"
PRECISION = "connect.decimal.precision"
FIXED_SIZE = "connect.fixed.size"
FIELD_ID = "iceberg.field.id"
