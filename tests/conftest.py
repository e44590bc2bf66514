"""Fixtures live in their own modules (one per real component), listed here."""

pytest_plugins = [
    "tests.fixtures.common",
    "tests.fixtures.kafka",
    "tests.fixtures.spark",
    "tests.fixtures.flink",
    "tests.fixtures.postgres",
    "tests.fixtures.registry",
    "tests.fixtures.connect",
    "tests.fixtures.lake",
]
