"""icetide.example.yaml stays true to the settings: it loads, and lists every key with its default."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from icetide.settings import Settings, load_settings

pytestmark = pytest.mark.unit
EXAMPLE = Path(__file__).resolve().parents[2] / "icetide.example.yaml"


def test_example_loads_and_equals_defaults() -> None:
    loaded = load_settings(EXAMPLE, environ={})
    assert loaded.model_dump() == Settings().model_dump()


def test_example_lists_every_key() -> None:
    example = yaml.safe_load(EXAMPLE.read_text())
    defaults = Settings().model_dump(mode="json")
    assert {s: sorted(v) for s, v in example.items()} == {s: sorted(v) for s, v in defaults.items()}
