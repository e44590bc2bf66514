"""Settings: defaults, YAML file, ICETIDE__ environment overrides, errors that name key and file."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from icetide.errors import ConfigError
from icetide.settings import load_settings

pytestmark = pytest.mark.unit


def test_defaults_derive_locations_from_state_dir(tmp_path: Path) -> None:
    s = load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(tmp_path)})
    assert s.state_dir == tmp_path.resolve()
    assert s.catalog_uri == f"jdbc:sqlite:{tmp_path.resolve() / 'catalog.db'}"
    assert s.warehouse == (tmp_path.resolve() / "warehouse").as_uri()
    assert s.sqlite_path == tmp_path.resolve() / "downstream.db"
    assert s.dead_letter_topic == "icetide.dead-letter"


def test_file_then_environment_override(tmp_path: Path) -> None:
    cfg = tmp_path / "icetide.yaml"
    cfg.write_text("kafka:\n  port: 19092\n  heap: 256m\ncdc:\n  topic_prefix: shop\n")
    s = load_settings(cfg, environ={"ICETIDE__KAFKA__PORT": "29092"})
    assert s.kafka.port == 29092  # environment wins
    assert s.kafka.heap == "256m"  # file kept where not overridden
    assert s.cdc.topic_prefix == "shop"
    assert s.dead_letter_topic == "shop.dead-letter"
    assert s.source == str(cfg)


def test_unknown_key_names_key_and_file(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("kafka:\n  prot: 1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown setting 'kafka\.prot'"):
        load_settings(cfg, environ={})


def test_wrong_type_names_key_and_file(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("kafka:\n  port: not-a-number\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: setting 'kafka\.port'"):
        load_settings(cfg, environ={})


def test_bad_environment_override_is_named() -> None:
    with pytest.raises(ConfigError, match=r"environment .*'sink\.kind'"):
        load_settings(None, environ={"ICETIDE__SINK__KIND": "oracle"})


def test_invalid_yaml_points_to_line_and_column(tmp_path: Path) -> None:
    cfg = tmp_path / "broken.yaml"
    cfg.write_text("kafka:\n  port: [1, 2\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml:\d+:\d+: invalid YAML"):
        load_settings(cfg, environ={})


def test_missing_file() -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_settings("/nonexistent/icetide.yaml", environ={})


def test_secret_never_printed(tmp_path: Path) -> None:
    s = load_settings(None, environ={"ICETIDE__SINK__POSTGRES_DSN": "postgresql://u:hunter2@h/db"})
    assert "hunter2" not in repr(s)
    assert "hunter2" not in str(s.model_dump())
    assert s.sink.postgres_dsn is not None
    assert s.sink.postgres_dsn.get_secret_value().endswith("@h/db")


@given(port=st.integers(min_value=1, max_value=65535), batch=st.integers(min_value=1, max_value=10**6))
def test_environment_values_are_parsed_as_typed_scalars(port: int, batch: int) -> None:
    s = load_settings(None, environ={"ICETIDE__KAFKA__PORT": str(port), "ICETIDE__SINK__BATCH_SIZE": str(batch)})
    assert (s.kafka.port, s.sink.batch_size) == (port, batch)
