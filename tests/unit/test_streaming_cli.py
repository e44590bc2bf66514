"""`icetide cdc run` option handling (no JVM: errors are raised before the job is built)."""

from __future__ import annotations

import re
import time

import pytest
from click.testing import CliRunner

from icetide.cli import main, root
from icetide.errors import ConfigError
from icetide.settings import load_settings
from streaming.checkpoints import checkpoint_root, completed_checkpoints, flink_s3_config, latest_checkpoint, tables_dir
from streaming.cli import _check_start, _parse_keys, _with_overrides
from streaming.job import flink_config, sink_ddl

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
    for option in ("--tables", "--start", "--once", "--metrics-port", "--json", "--delivery", "--reset",
                   "--format", "--tombstones / --no-tombstones", "--schema-registry"):
        assert option in result.output
    assert "stay JSON" in result.output


def test_format_flags_override_settings_and_avro_needs_a_registry(tmp_path) -> None:  # type: ignore[no-untyped-def]
    config = tmp_path / "icetide.yaml"
    config.write_text("cdc:\n  format: avro\n  tombstones: true\n")
    from_file = load_settings(config, environ={})
    with pytest.raises(ConfigError, match="^" + re.escape(f"{config}: setting 'cdc.schema_registry_url' is required")):
        _with_overrides(from_file, None, None, None, None)
    with pytest.raises(ConfigError, match=r"^setting 'cdc\.schema_registry_url' is required"):  # no file to name
        _with_overrides(load_settings(None, environ={}), "avro", None, None, None)
    chosen = _with_overrides(from_file, None, False, "exactly-once", "http://r:8081").cdc
    assert (chosen.format, chosen.tombstones, chosen.delivery, chosen.schema_registry_url) == (
        "avro", False, "exactly-once", "http://r:8081")
    assert _with_overrides(from_file, "json", None, None, None).cdc.format == "json"  # JSON needs no registry


def test_avro_without_registry_is_one_error_line_before_flink(tmp_path, monkeypatch, capsys) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ICETIDE__STACK__STATE_DIR", str(tmp_path))
    assert main(["cdc", "run", "--once", "--format", "avro"]) != 0
    err = capsys.readouterr().err
    assert err.startswith("error: setting 'cdc.schema_registry_url' is required") and err.count("\n") == 1
    assert not (tmp_path / "cdc").exists()  # nothing started, no run folder


def test_sink_ddl_quotes_values_and_sets_transactions(base_settings) -> None:  # type: ignore[no-untyped-def]
    cdc = base_settings.cdc.model_copy(update={"delivery": "exactly-once"})
    exactly = base_settings.model_copy(update={"cdc": cdc})
    ddl = sink_ddl(exactly, "h:1", "cdc_sink_0", "icetide.sales.it's", "run1")
    assert "'icetide.sales.it''s'" in ddl
    assert "'sink.delivery-guarantee' = 'exactly-once'" in ddl and "sink.transactional-id-prefix" in ddl


def test_flink_config_restores_only_given_checkpoint(tmp_path, base_settings) -> None:  # type: ignore[no-untyped-def]
    assert latest_checkpoint(base_settings, tmp_path.as_uri()) is None
    for n in (1, 2):
        (tmp_path / "job" / f"chk-{n}").mkdir(parents=True)
        (tmp_path / "job" / f"chk-{n}" / "_metadata").write_text("x")
    (tmp_path / "job" / "chk-3").mkdir()  # incomplete: no _metadata
    done = completed_checkpoints(base_settings, tmp_path.as_uri())
    assert sorted(uri.rsplit("/", 1)[-1] for uri, _ in done) == ["chk-1", "chk-2"]
    assert all(abs(written - time.time()) < 60 for _, written in done)
    chosen = latest_checkpoint(base_settings, tmp_path.as_uri())
    assert chosen is not None and chosen.rsplit("/", 1)[-1] in ("chk-1", "chk-2")
    conf = flink_config(base_settings, tmp_path.as_uri(), chosen)
    assert conf["execution.state-recovery.path"] == chosen
    assert conf["execution.checkpointing.dir"] == tmp_path.as_uri()
    assert "execution.state-recovery.path" not in flink_config(base_settings, tmp_path, None)
    assert not any(key.startswith("s3.") for key in conf)  # local storage: no S3 file system


def test_checkpoints_go_to_the_bucket_with_s3_storage(tmp_path, base_settings) -> None:  # type: ignore[no-untyped-def]
    assert checkpoint_root(base_settings) == (base_settings.state_dir / "cdc" / "checkpoints").as_uri()
    creds = tmp_path / "creds"
    creds.write_text("[default]\naws_access_key_id = AKID\naws_secret_access_key = s3cr3t-value\n")
    s3 = load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(tmp_path), "ICETIDE__STORAGE__KIND": "s3",
                                      "ICETIDE__STORAGE__ENDPOINT": "http://127.0.0.1:9",
                                      "ICETIDE__STORAGE__BUCKET": "lake",
                                      "ICETIDE__STORAGE__CREDENTIALS__FILE": str(creds)})
    assert tables_dir(s3, ["b.t", "a.t"]) == tables_dir(s3, ["a.t", "b.t"])
    assert tables_dir(s3, ["a.t"]).startswith("s3://lake/checkpoints/cdc/")
    conf = flink_config(s3, tables_dir(s3, ["a.t"]), None)
    assert conf["execution.checkpointing.dir"].startswith("s3://lake/checkpoints/cdc/")
    assert conf["s3.endpoint"] == "http://127.0.0.1:9" and conf["s3.path.style.access"] == "true"
    assert conf["s3.connection.ssl.enabled"] == "false" and conf["s3.encryption.algorithm"] == "AES256"
    # the plugin's s3a gets icetide's provider and the key's file (it re-reads it after a rotation), not the key
    assert conf["s3.aws.credentials.provider"] == "io.icetide.s3a.FileCredentialsProvider"
    assert (conf["s3.icetide.credentials.file"], conf["s3.icetide.credentials.profile"]) == (
        str(creds.resolve()), "default")
    assert "s3cr3t-value" not in conf.values() and "s3.secret-key" not in conf
    assert flink_s3_config(base_settings) == {}
    own = s3.model_copy(update={"flink": s3.flink.model_copy(update={"checkpoint_dir": "s3://other/ck/"})})
    assert checkpoint_root(own) == "s3://other/ck"
