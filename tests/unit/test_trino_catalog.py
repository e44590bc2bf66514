"""The embedded Trino's catalog file in both lake shapes, and the key its S3 client is handed.

The JDBC/SQLite default renders exactly as before; the REST + S3 shape names the REST catalog, the native S3
file system and no key when the `bi` key is in a file (Trino's own profile runs `trino_key.py`, which reads
that file on each refresh), the key itself only when it comes from environment variables. No secret is in
Trino's environment or its profile file.
"""

from __future__ import annotations

import datetime as dt
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from icetide.errors import StackError
from icetide.services import trino_catalog, trino_key
from icetide.services.connect import render_properties
from icetide.settings import Settings, load_settings
from icetide.storage import S3Key, write_credentials_file

pytestmark = pytest.mark.unit

ENDPOINT = "http://127.0.0.1:9"
REST_URI = "http://127.0.0.1:8/"
SECRET = "s3cr3t/Value+x"


def _rest_s3(tmp_path: Path, **env: str) -> Settings:
    key_file = tmp_path / "bi.ini"
    write_credentials_file(key_file, S3Key("AKIDBI", SecretStr(SECRET)), profile="reader")
    return load_settings(None, environ={
        "ICETIDE__STACK__STATE_DIR": str(tmp_path), "ICETIDE__CATALOG__TYPE": "rest",
        "ICETIDE__CATALOG__URI": REST_URI, "ICETIDE__STORAGE__KIND": "s3", "ICETIDE__STORAGE__ENDPOINT": ENDPOINT,
        "ICETIDE__STORAGE__IDENTITIES__BI__FILE": str(key_file),
        "ICETIDE__STORAGE__IDENTITIES__BI__PROFILE": "reader", **env})


def test_the_jdbc_default_renders_as_before(tmp_path: Path) -> None:
    s = load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(tmp_path)})
    assert trino_catalog.catalog_properties(s) == {
        "connector.name": "iceberg", "iceberg.catalog.type": "jdbc",
        "iceberg.jdbc-catalog.driver-class": "org.sqlite.JDBC",
        "iceberg.jdbc-catalog.connection-url": f"jdbc:sqlite:{tmp_path.resolve() / 'catalog.db'}",
        "iceberg.jdbc-catalog.catalog-name": "lake",
        "iceberg.jdbc-catalog.default-warehouse-dir": (tmp_path.resolve() / "warehouse").as_uri(),
        "iceberg.jdbc-catalog.schema-version": "V1", "fs.native-local.enabled": "true", "local.location": "/",
        "iceberg.table-statistics-enabled": "false"}
    assert trino_catalog.process_environment(s, tmp_path / "aws") == {}


def test_jdbc_elsewhere_than_sqlite_or_over_s3_is_refused(tmp_path: Path) -> None:
    base = {"ICETIDE__STACK__STATE_DIR": str(tmp_path)}
    pg = load_settings(None, environ={**base, "ICETIDE__CATALOG__URI": "jdbc:postgresql://h/db"})
    with pytest.raises(StackError, match="SQLite or a REST catalog"):
        trino_catalog.catalog_properties(pg)
    s3 = load_settings(None, environ={**base, "ICETIDE__STORAGE__KIND": "s3", "ICETIDE__STORAGE__ENDPOINT": ENDPOINT})
    with pytest.raises(StackError, match="REST catalog"):
        trino_catalog.catalog_properties(s3)


def test_rest_and_s3_name_the_catalog_and_the_store_but_no_key(tmp_path: Path) -> None:
    s = _rest_s3(tmp_path)
    props = trino_catalog.catalog_properties(s)
    assert props == {
        "connector.name": "iceberg", "iceberg.catalog.type": "rest", "iceberg.rest-catalog.uri": REST_URI,
        "iceberg.rest-catalog.warehouse": "s3://warehouse/warehouse", "fs.native-s3.enabled": "true",
        "s3.endpoint": ENDPOINT, "s3.region": "us-east-1", "s3.path-style-access": "true", "s3.sse.type": "S3",
        "iceberg.table-statistics-enabled": "false"}
    unencrypted = _rest_s3(tmp_path, ICETIDE__STORAGE__SSE="none", ICETIDE__STORAGE__PATH_STYLE="false")
    assert {k: v for k, v in trino_catalog.catalog_properties(unencrypted).items() if k.startswith("s3.")} == {
        "s3.endpoint": ENDPOINT, "s3.region": "us-east-1", "s3.path-style-access": "false", "s3.sse.type": "NONE"}


def test_the_key_is_a_credential_process_reading_the_role_file(tmp_path: Path) -> None:
    s = _rest_s3(tmp_path)
    env = trino_catalog.process_environment(s, tmp_path / "aws")
    profile_file = tmp_path / "aws" / "credentials"
    assert env == {"AWS_SHARED_CREDENTIALS_FILE": str(profile_file), "AWS_PROFILE": trino_catalog.PROFILE,
                   "AWS_CONFIG_FILE": "/dev/null", "AWS_EC2_METADATA_DISABLED": "true"}
    text = profile_file.read_text()
    assert profile_file.stat().st_mode & 0o777 == 0o600
    assert SECRET not in text and "AKIDBI" not in text
    [header, line] = text.splitlines()
    assert header == f"[{trino_catalog.PROFILE}]" and line.startswith("credential_process = ")
    # what the SDK runs (sh -c): the role's key, now, and the new key once a rotation rewrote the file
    command = line.removeprefix("credential_process = ")
    assert shlex.split(command)[:3] == [sys.executable, "-I", "-S"]
    first = json.loads(subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout)
    assert (first["Version"], first["AccessKeyId"], first["SecretAccessKey"]) == (1, "AKIDBI", SECRET)
    write_credentials_file(tmp_path / "bi.ini", S3Key("AKIDNEW", SecretStr("n3w")), profile="reader")
    second = json.loads(subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True).stdout)
    assert (second["AccessKeyId"], second["SecretAccessKey"]) == ("AKIDNEW", "n3w")


def test_a_key_from_environment_variables_is_rendered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BI_KEY_ID", "AKIDENV")
    monkeypatch.setenv("BI_SECRET", SECRET)
    s = load_settings(None, environ={
        "ICETIDE__STACK__STATE_DIR": str(tmp_path), "ICETIDE__CATALOG__TYPE": "rest", "ICETIDE__CATALOG__URI": REST_URI,
        "ICETIDE__STORAGE__KIND": "s3", "ICETIDE__STORAGE__ENDPOINT": ENDPOINT,
        "ICETIDE__STORAGE__CREDENTIALS__ACCESS_KEY_ENV": "BI_KEY_ID",
        "ICETIDE__STORAGE__CREDENTIALS__SECRET_KEY_ENV": "BI_SECRET"})
    props = trino_catalog.catalog_properties(s)
    assert (props["s3.aws-access-key"], props["s3.aws-secret-key"]) == ("AKIDENV", SECRET)
    assert trino_catalog.process_environment(s, tmp_path / "aws") == {}


def test_oauth2_token_and_credential(tmp_path: Path) -> None:
    token = _rest_s3(tmp_path, ICETIDE__CATALOG__TOKEN="tok-123")
    props = trino_catalog.rest_properties(token)
    assert (props["iceberg.rest-catalog.security"], props["iceberg.rest-catalog.oauth2.token"]) == ("OAUTH2", "tok-123")
    assert "iceberg.rest-catalog.oauth2.credential" not in props
    credential = _rest_s3(tmp_path, ICETIDE__CATALOG__CREDENTIAL="client:s3cr3t")
    props = trino_catalog.rest_properties(credential)
    assert props["iceberg.rest-catalog.oauth2.credential"] == "client:s3cr3t"
    assert "iceberg.rest-catalog.security" not in trino_catalog.rest_properties(_rest_s3(tmp_path))


def test_the_embedded_rest_server_must_run(tmp_path: Path) -> None:
    s = load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(tmp_path), "ICETIDE__CATALOG__TYPE": "rest"})
    with pytest.raises(StackError, match=r"REST catalog .* is not running"):
        trino_catalog.catalog_properties(s)


def test_the_key_document_expires_soon_and_errors_hide_the_key(tmp_path: Path) -> None:
    path = tmp_path / "k.ini"
    write_credentials_file(path, S3Key("AKID", SecretStr(SECRET)))
    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    assert trino_key.credentials(str(path), "default", now) == {
        "Version": 1, "AccessKeyId": "AKID", "SecretAccessKey": SECRET, "Expiration": "2026-01-02T03:04:21Z"}
    # a line without `=` makes configparser quote it in its message: the script says only which file
    path.write_text(f"[default]\naws_access_key_id = AKID\n{SECRET}\n")
    done = subprocess.run([sys.executable, "-I", "-S", trino_key.__file__, str(path), "default"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 1 and done.stdout == "" and SECRET not in done.stderr
    assert "not an INI credentials file" in done.stderr
    write_credentials_file(path, S3Key("AKID", SecretStr(SECRET)))
    with pytest.raises(ValueError, match=r"no section \[other\]"):
        trino_key.credentials(str(path), "other")
    with pytest.raises(ValueError, match="no credentials file"):
        trino_key.credentials(str(path.with_name("missing.ini")), "default")


def test_the_bi_grace_is_stretched_only_while_a_trino_runs(tmp_path: Path) -> None:
    from icetide.services.identities import _grace

    s = _rest_s3(tmp_path)
    assert _grace(s, "bi", 5.0) == 5.0 and _grace(s, "writer", 5.0) == 5.0  # no Trino runs from tmp_path


def test_secrets_stay_in_the_catalog_file_only(tmp_path: Path) -> None:
    s = _rest_s3(tmp_path, ICETIDE__CATALOG__TOKEN="tok-secret-9")
    rendered = render_properties(trino_catalog.catalog_properties(s))
    assert "tok-secret-9" in rendered and SECRET not in rendered
    assert "tok-secret-9" not in json.dumps(trino_catalog.process_environment(s, tmp_path / "aws"))
