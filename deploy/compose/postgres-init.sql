-- Runs once, when the postgres volume is empty: POSTGRES_DB (iceberg) holds the Iceberg JDBC catalog,
-- `downstream` receives the applied change events (sink.postgres_dsn).
CREATE DATABASE downstream;
