"""`icetide cdc run` option handling (no JVM: errors are raised before the job is built)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from icetide.cli import root
from icetide.errors import ConfigError
from streaming.cli import _check_start, _parse_keys
from streaming.job import flink_config, latest_checkpoint, sink_ddl

pytestmark = pytest.mark.unit


def test_start_positions() -> None:
    for good in ("earliest", "latest", "initial", "snapshot:42", "timestamp:1700000000000"):
        assert _check_start(good) == good
    for bad in ("first", "snapshot:", "snapshot:x", "time:1"):
        with pytest.raises(ConfigError):
            _check_start(bad)


def test_key_option() -> None:
    assert _parse_keys(("sales.vendas=id, regiao", "a.b=k")) == {"sales.vendas": ["id", "regiao"], "a.b": ["k"]}
    with pytest.raises(ConfigError):
        _parse_keys(("sales.vendas",))


def test_help_lists_the_options() -> None:
    result = CliRunner().invoke(root, ["cdc", "run", "--help"])
    assert result.exit_code == 0
    for option in ("--tables", "--start", "--once", "--metrics-port", "--json", "--delivery", "--reset"):
        assert option in result.output


def test_sink_ddl_quotes_values_and_sets_transactions(base_settings) -> None:  # type: ignore[no-untyped-def]
    cdc = base_settings.cdc.model_copy(update={"delivery": "exactly-once"})
    exactly = base_settings.model_copy(update={"cdc": cdc})
    ddl = sink_ddl(exactly, "h:1", "cdc_sink_0", "icetide.sales.it's", "run1")
    assert "'icetide.sales.it''s'" in ddl
    assert "'sink.delivery-guarantee' = 'exactly-once'" in ddl and "sink.transactional-id-prefix" in ddl


def test_flink_config_restores_only_given_checkpoint(tmp_path, base_settings) -> None:  # type: ignore[no-untyped-def]
    assert latest_checkpoint(tmp_path) is None
    for n in (1, 2):
        (tmp_path / "job" / f"chk-{n}").mkdir(parents=True)
        (tmp_path / "job" / f"chk-{n}" / "_metadata").write_text("x")
    (tmp_path / "job" / "chk-3").mkdir()  # incomplete: no _metadata
    chosen = latest_checkpoint(tmp_path)
    assert chosen is not None and chosen.name in ("chk-1", "chk-2")
    conf = flink_config(base_settings, tmp_path, chosen)
    assert conf["execution.state-recovery.path"] == chosen.as_uri()
    assert "execution.state-recovery.path" not in flink_config(base_settings, tmp_path, None)
