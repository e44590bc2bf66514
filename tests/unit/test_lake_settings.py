"""REST catalog and S3 storage settings, and how each engine is told about them.

The key is read by reference (a credentials file or two environment variables) and must never show in a
repr or a settings dump; errors name the setting and the file. The local default renders exactly as before.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from icetide.catalog import catalog_properties, flink_catalog_ddl, pyiceberg_properties, spark_conf
from icetide.errors import ConfigError, StackError
from icetide.services.object_store import ObjectStore
from icetide.services.rest_catalog import RestCatalogServer
from icetide.settings import Settings, load_settings
from icetide.storage import S3Key, read_credentials_file, s3_key, secret_values, write_credentials_file

pytestmark = pytest.mark.unit

ENDPOINT = "http://127.0.0.1:9"
REST_URI = "http://127.0.0.1:8/"


def _creds_file(folder: Path, key_id: str = "AKIDEXAMPLE", secret: str = "s3cr3t/Value+x") -> Path:
    path = folder / "creds.ini"
    write_credentials_file(path, S3Key(key_id, SecretStr(secret)))
    return path


def _rest_s3(tmp_path: Path, **env: str) -> Settings:
    return load_settings(None, environ={
        "ICETIDE__STACK__STATE_DIR": str(tmp_path), "ICETIDE__CATALOG__TYPE": "rest",
        "ICETIDE__CATALOG__URI": REST_URI, "ICETIDE__STORAGE__KIND": "s3", "ICETIDE__STORAGE__ENDPOINT": ENDPOINT,
        "ICETIDE__STORAGE__CREDENTIALS__FILE": str(_creds_file(tmp_path)), **env})


def test_local_default_renders_exactly_the_jdbc_catalog(tmp_path: Path) -> None:
    s = load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(tmp_path)})
    assert (s.catalog.type, s.storage.kind) == ("jdbc", "local")
    assert catalog_properties(s) == {
        "catalog-impl": "org.apache.iceberg.jdbc.JdbcCatalog",
        "uri": f"jdbc:sqlite:{tmp_path.resolve() / 'catalog.db'}",
        "warehouse": (tmp_path.resolve() / "warehouse").as_uri(), "jdbc.schema-version": "V1"}
    assert set(pyiceberg_properties(s)) == {"uri", "warehouse"}


def test_rest_and_s3_render_for_spark_flink_and_pyiceberg(tmp_path: Path) -> None:
    s = _rest_s3(tmp_path)
    assert s.warehouse == "s3://warehouse/warehouse"
    conf = spark_conf(s)
    # the JVMs get the key's file and icetide's provider, which re-reads it after a rotation — not the key
    expected = {"catalog-impl": "org.apache.iceberg.rest.RESTCatalog", "uri": REST_URI,
                "warehouse": "s3://warehouse/warehouse", "io-impl": "org.apache.iceberg.aws.s3.S3FileIO",
                "s3.endpoint": ENDPOINT, "s3.path-style-access": "true", "client.region": "us-east-1",
                "s3.sse.type": "s3", "client.credentials-provider": "io.icetide.jvm.FileCredentialsProvider",
                "client.credentials-provider.file": str((tmp_path / "creds.ini").resolve()),
                "client.credentials-provider.profile": "default"}
    assert {k.removeprefix("spark.sql.catalog.lake."): v for k, v in conf.items()
            if k.startswith("spark.sql.catalog.lake.")} == expected
    ddl = flink_catalog_ddl(s)
    for key, value in expected.items():
        assert f"'{key}' = '{value}'" in ddl
    assert pyiceberg_properties(s) == {
        "uri": REST_URI, "warehouse": "s3://warehouse/warehouse", "s3.endpoint": ENDPOINT,
        "s3.region": "us-east-1", "s3.access-key-id": "AKIDEXAMPLE", "s3.secret-access-key": "s3cr3t/Value+x"}


def test_jdbc_catalog_on_s3_and_options(tmp_path: Path) -> None:
    s = _rest_s3(tmp_path, ICETIDE__CATALOG__TYPE="jdbc", ICETIDE__CATALOG__URI="", ICETIDE__STORAGE__SSE="none",
                 ICETIDE__STORAGE__PATH_STYLE="false", ICETIDE__STORAGE__REGION="eu-west-3",
                 ICETIDE__STORAGE__BUCKET="lakehouse")
    props = catalog_properties(s)
    assert props["catalog-impl"] == "org.apache.iceberg.jdbc.JdbcCatalog"
    assert props["warehouse"] == "s3://lakehouse/warehouse"
    assert (props["s3.path-style-access"], props["client.region"]) == ("false", "eu-west-3")
    assert "s3.sse.type" not in props
    assert pyiceberg_properties(s)["s3.force-virtual-addressing"] == "true"


def test_rest_token_and_credential_are_sent_and_never_printed(tmp_path: Path) -> None:
    s = _rest_s3(tmp_path, ICETIDE__CATALOG__TOKEN="tok-9f8e7d", ICETIDE__CATALOG__CREDENTIAL="client:cl-s3cr3t")
    for shown in (repr(s), str(s.model_dump()), s.model_dump_json()):
        assert "tok-9f8e7d" not in shown and "cl-s3cr3t" not in shown and "s3cr3t/Value" not in shown
    props = catalog_properties(s)
    assert (props["token"], props["credential"]) == ("tok-9f8e7d", "client:cl-s3cr3t")
    assert pyiceberg_properties(s)["token"] == "tok-9f8e7d"
    assert {"tok-9f8e7d", "client:cl-s3cr3t"} <= secret_values(props)
    assert not any("s3cr3t/Value" in v for v in props.values())  # the S3 key stays in its file


def test_the_jvms_get_the_key_itself_only_when_it_comes_from_the_environment(tmp_path: Path) -> None:
    s = load_settings(None, environ={"ICETIDE__STORAGE__KIND": "s3", "ICETIDE__STORAGE__ENDPOINT": ENDPOINT,
                                     "ICETIDE__STACK__STATE_DIR": str(tmp_path),
                                     "ICETIDE__STORAGE__CREDENTIALS__ACCESS_KEY_ENV": "ICETIDE_TEST_KEY_ID",
                                     "ICETIDE__STORAGE__CREDENTIALS__SECRET_KEY_ENV": "ICETIDE_TEST_SECRET"})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ICETIDE_TEST_KEY_ID", "AKIDENV")
        mp.setenv("ICETIDE_TEST_SECRET", "env-s3cr3t")
        props = catalog_properties(s)
    assert (props["s3.access-key-id"], props["s3.secret-access-key"]) == ("AKIDENV", "env-s3cr3t")
    assert "client.credentials-provider" not in props
    role_file = _creds_file(tmp_path / "maint")
    own = load_settings(None, environ={"ICETIDE__STORAGE__KIND": "s3", "ICETIDE__STORAGE__ENDPOINT": ENDPOINT,
                                       "ICETIDE__STACK__STATE_DIR": str(tmp_path),
                                       "ICETIDE__STORAGE__IDENTITIES__MAINT__FILE": str(role_file),
                                       "ICETIDE__STORAGE__IDENTITIES__MAINT__PROFILE": "default"})
    props = catalog_properties(own, "maint")
    assert props["client.credentials-provider.file"] == str(role_file.resolve())
    assert not {"s3.access-key-id", "s3.secret-access-key"} & set(props)


@settings(max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(secret=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=8, max_size=40))
def test_a_key_read_from_the_environment_is_never_in_a_repr(tmp_path: Path, secret: str) -> None:
    s = load_settings(None, environ={"ICETIDE__STORAGE__KIND": "s3", "ICETIDE__STORAGE__ENDPOINT": ENDPOINT,
                                     "ICETIDE__STORAGE__CREDENTIALS__ACCESS_KEY_ENV": "MY_KEY_ID",
                                     "ICETIDE__STORAGE__CREDENTIALS__SECRET_KEY_ENV": "MY_SECRET"})
    key = s3_key(s, "writer", environ={"MY_KEY_ID": "AKID", "MY_SECRET": secret})
    assert key.secret_access_key.get_secret_value() == secret.strip()
    # a secret that is a word of the reprs anyway ("password", "********") proves nothing
    control = s3_key(s, "writer", environ={"MY_KEY_ID": "AKID", "MY_SECRET": "x" * 8})
    assume(secret not in repr(control) + repr(s) + str(s.model_dump()))
    assert secret not in repr(key) and secret not in repr(s) and secret not in str(s.model_dump())


def test_credentials_file_is_owner_only_and_round_trips(tmp_path: Path) -> None:
    path = _creds_file(tmp_path, "AKID2", "x=y%z")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = read_credentials_file(path, "default", "storage.credentials.file", "cfg.yaml")
    assert (key.access_key_id, key.secret_access_key.get_secret_value()) == ("AKID2", "x=y%z")


def test_missing_credentials_file_names_the_setting_and_the_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "lake.yaml"
    cfg.write_text(f"storage:\n  kind: s3\n  endpoint: {ENDPOINT}\n  credentials:\n    file: {tmp_path / 'nope.ini'}\n")
    s = load_settings(cfg, environ={})
    with pytest.raises(ConfigError,
                       match=r"lake\.yaml: setting 'storage\.credentials\.file': file not found: .*nope\.ini"):
        catalog_properties(s)


def test_missing_profile_and_missing_key_are_named(tmp_path: Path) -> None:
    path = _creds_file(tmp_path)
    s = _rest_s3(tmp_path, ICETIDE__STORAGE__CREDENTIALS__PROFILE="prod")
    with pytest.raises(ConfigError, match=r"'storage\.credentials\.profile': no section \[prod\] in .*creds\.ini"):
        s3_key(s, "writer")
    s = _rest_s3(tmp_path)
    path.write_text("[default]\naws_access_key_id = AKID\n")
    with pytest.raises(ConfigError, match=r"'storage\.credentials\.file': .*creds\.ini \[default\] has no aws_secret"):
        s3_key(s, "writer")


def test_environment_references_must_be_complete_and_set(tmp_path: Path) -> None:
    env = {"ICETIDE__STORAGE__KIND": "s3", "ICETIDE__STORAGE__ENDPOINT": ENDPOINT}
    half = load_settings(None, environ={**env, "ICETIDE__STORAGE__CREDENTIALS__ACCESS_KEY_ENV": "K"})
    with pytest.raises(ConfigError, match=r"'storage\.credentials\.secret_key_env' is not set"):
        s3_key(half, "writer", environ={"K": "v"})
    full = load_settings(None, environ={**env, "ICETIDE__STORAGE__CREDENTIALS__ACCESS_KEY_ENV": "K",
                                        "ICETIDE__STORAGE__CREDENTIALS__SECRET_KEY_ENV": "S"})
    with pytest.raises(ConfigError, match=r"'storage\.credentials\.secret_key_env': environment variable S is not set"):
        s3_key(full, "writer", environ={"K": "v"})
    both = load_settings(None, environ={**env, "ICETIDE__STORAGE__CREDENTIALS__ACCESS_KEY_ENV": "K",
                                        "ICETIDE__STORAGE__CREDENTIALS__FILE": str(tmp_path / "c.ini")})
    with pytest.raises(ConfigError, match="both set"):
        s3_key(both, "writer", environ={})


def test_an_external_endpoint_needs_a_key(tmp_path: Path) -> None:
    s = load_settings(None, environ={"ICETIDE__STORAGE__KIND": "s3", "ICETIDE__STORAGE__ENDPOINT": ENDPOINT})
    with pytest.raises(ConfigError, match=r"setting 'storage\.credentials': .* needs a key"):
        s3_key(s, "writer")


def test_unknown_storage_key_and_bad_kind_name_key_and_file(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("storage:\n  kind: s3\n  credentials:\n    secret: plain\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: unknown setting 'storage\.credentials\.secret'"):
        load_settings(cfg, environ={})
    with pytest.raises(ConfigError, match=r"environment .*'storage\.kind'"):
        load_settings(None, environ={"ICETIDE__STORAGE__KIND": "gcs"})
    with pytest.raises(ConfigError, match=r"environment .*'catalog\.type'"):
        load_settings(None, environ={"ICETIDE__CATALOG__TYPE": "hive"})


def test_embedded_services_not_running_tell_to_start_the_stack(tmp_path: Path) -> None:
    s = load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(tmp_path), "ICETIDE__CATALOG__TYPE": "rest",
                                     "ICETIDE__STORAGE__KIND": "s3"})
    assert s.catalog_uri == ""
    with pytest.raises(StackError, match=r"embedded REST catalog .* `icetide stack up`"):
        catalog_properties(s)
    local_rest = load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(tmp_path),
                                              "ICETIDE__CATALOG__URI": REST_URI, "ICETIDE__CATALOG__TYPE": "rest",
                                              "ICETIDE__STORAGE__KIND": "s3"})
    with pytest.raises(StackError, match=r"object store .* has no writer key yet"):
        catalog_properties(local_rest)
    write_credentials_file(tmp_path / "object-store" / "identities" / "writer", S3Key.generate())
    with pytest.raises(StackError, match=r"object store .* is not running"):
        catalog_properties(local_rest)


def test_object_store_command_binds_loopback_with_telemetry_off(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path)
    ports = {name: 40000 + n for n, name in enumerate(("s3", "s3.grpc", "master", "master.grpc", "filer"))}
    cmd = store.command(ports)
    for flag in ("-ip=127.0.0.1", "-ip.bind=127.0.0.1", "-master.telemetry=false", "-webdav=false",
                 "-admin.ui=false", "-s3.port.iceberg=0", "-s3.port.lance=0", f"-dir={store.data_dir}",
                 "-s3.port=40000", "-s3.port.grpc=40001", "-master.port=40002", "-master.port.grpc=40003",
                 "-filer.port=40004", f"-s3.config={store.identities_file}"):
        assert flag in cmd


def test_the_kek_is_made_once_owner_only_and_never_replaced_under_data(tmp_path: Path) -> None:
    store = ObjectStore(tmp_path)
    kek = store._kek()
    assert len(kek) == 64 and store._kek() == kek
    assert stat.S_IMODE(store.kek_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.kek_file.parent.stat().st_mode) == 0o700
    store.data_dir.mkdir(parents=True)
    (store.data_dir / "1.dat").write_bytes(b"x")
    store.kek_file.unlink()
    with pytest.raises(StackError, match=r"key-encryption key .* is missing .* restore"):
        store._kek()
    assert not store.kek_file.exists()


def test_rest_server_binds_loopback_over_its_own_sqlite_catalog(tmp_path: Path) -> None:
    s = _rest_s3(tmp_path, ICETIDE__CATALOG__URI="")
    props = RestCatalogServer(tmp_path).server_properties(s, 18181)
    assert (props["rest.host"], props["rest.port"]) == ("127.0.0.1", "18181")
    assert props["uri"] == f"jdbc:sqlite:{tmp_path.resolve() / 'rest-catalog' / 'catalog.db'}"
    assert props["catalog-impl"] == "org.apache.iceberg.jdbc.JdbcCatalog"
    assert (props["warehouse"], props["io-impl"], props["s3.sse.type"]) == (
        "s3://warehouse/warehouse", "org.apache.iceberg.aws.s3.S3FileIO", "s3")


def test_environment_is_not_leaked_by_reading_a_key(tmp_path: Path) -> None:
    before = dict(os.environ)
    s3_key(_rest_s3(tmp_path), "writer")
    assert dict(os.environ) == before


def test_a_missing_weed_binary_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from icetide.errors import SetupError

    monkeypatch.setenv("ICETIDE_WEED", str(tmp_path / "no-weed"))
    s = load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(tmp_path), "ICETIDE__STORAGE__KIND": "s3"})
    with pytest.raises(SetupError, match=r"SeaweedFS binary .*make setup"):
        ObjectStore().start(s, s.state_dir)
