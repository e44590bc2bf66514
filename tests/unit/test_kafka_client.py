"""`icetide.kafka_client` and `icetide.kafka_security` without a broker: what each client is configured
with, the ACL table (least privilege), the TLS files, and a client following its rotated secret file."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from icetide import kafka_client, kafka_security
from icetide.errors import ConfigError
from icetide.settings import Settings, load_settings

pytestmark = pytest.mark.unit
SYSTEM_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def _secure(tmp_path: Path, **env: str) -> Settings:
    return load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(tmp_path),
                                        "ICETIDE__KAFKA__SECURITY": "sasl_ssl", **env})


def test_plaintext_is_only_the_bootstrap_address(tmp_path: Path) -> None:
    plain = load_settings(None, environ={"ICETIDE__STACK__STATE_DIR": str(tmp_path)})
    assert kafka_client.client_config(plain, "apply", "h:1") == {"bootstrap.servers": "h:1"}
    assert kafka_client.java_properties(plain, "cdc", "h:1") == {"bootstrap.servers": "h:1"}
    assert kafka_client.flink_options(plain, "cdc", "h:1") == {"properties.bootstrap.servers": "h:1"}


def test_sasl_ssl_reads_the_secret_file_and_names_the_ca(tmp_path: Path) -> None:
    s = _secure(tmp_path)
    with pytest.raises(ConfigError, match=r"apply\.password is missing"):
        kafka_client.client_config(s, "apply", "h:1")
    kafka_client.write_secret(kafka_client.password_file(s, "apply"), "pw-1")
    assert kafka_client.password_file(s, "apply").stat().st_mode & 0o777 == 0o600
    conf = kafka_client.client_config(s, "apply", "h:1")
    assert conf["security.protocol"] == "SASL_SSL" and conf["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (conf["sasl.username"], conf["sasl.password"]) == ("apply", "pw-1")
    assert conf["ssl.ca.location"] == str(tmp_path.resolve() / "kafka" / "tls" / "ca.pem")
    with pytest.raises(ConfigError, match="unknown Kafka principal"):
        kafka_client.client_config(s, "root", "h:1")


def test_a_password_from_the_settings_is_a_secret(tmp_path: Path) -> None:
    s = _secure(tmp_path, ICETIDE__KAFKA__PASSWORDS__CDC="s3cr3t-value", ICETIDE__KAFKA__USERS__CDC="job")
    assert "s3cr3t-value" not in repr(s) and "s3cr3t-value" not in str(s.model_dump())
    assert kafka_client.client_config(s, "cdc", "h:1")["sasl.username"] == "job"


@settings(max_examples=40)
@given(secret=st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=30))
def test_the_jaas_line_quotes_any_password(secret: str) -> None:
    s = Settings.model_validate({"kafka": {"security": "sasl_ssl", "passwords": {"cdc": secret}}})
    jaas = kafka_client.java_properties(s, "cdc", "h:1")["sasl.jaas.config"]
    quoted = jaas.split("password=", 1)[1].removesuffix(";")
    assert quoted.startswith('"') and quoted.endswith('"')
    body = quoted[1:-1]
    unescaped, i = [], 0
    while i < len(body):  # a quote inside is always escaped, so the value cannot end early
        if body[i] == "\\":
            unescaped.append(body[i + 1])
            i += 2
            continue
        assert body[i] != '"'
        unescaped.append(body[i])
        i += 1
    assert "".join(unescaped) == secret


def test_java_clients_name_the_password_file_and_icetides_handler_never_the_password(tmp_path: Path) -> None:
    s = _secure(tmp_path)
    path = kafka_client.password_file(s, "cdc")
    kafka_client.write_secret(path, "file-s3cr3t")
    props = kafka_client.java_properties(s, "cdc", "h:1")
    assert props["sasl.jaas.config"] == (f'{kafka_client.SCRAM_LOGIN} required username="cdc" '
                                         f'passwordFile="{path}";')
    assert props["sasl.client.callback.handler.class"] == "io.icetide.jvm.FileScramCallbackHandler"
    flink = kafka_client.flink_options(s, "cdc", "h:1")
    assert flink["properties.sasl.client.callback.handler.class"] == "io.icetide.jvm.flink.FileScramCallbackHandler"
    assert not any("file-s3cr3t" in v for v in [*props.values(), *flink.values()])
    given = _secure(tmp_path, ICETIDE__KAFKA__PASSWORDS__CDC="pw")  # no file to follow: the password itself
    assert "sasl.client.callback.handler.class" not in kafka_client.java_properties(given, "cdc", "h:1")


def test_connect_worker_gets_the_security_for_its_own_clients_too(tmp_path: Path) -> None:
    s = _secure(tmp_path, ICETIDE__KAFKA__PASSWORDS__CONNECT="pw")
    props = kafka_client.worker_properties(s, "connect", "h:1")
    for prefix in ("", "producer.", "consumer.", "admin."):
        assert props[f"{prefix}security.protocol"] == "SASL_SSL"
        assert 'username="connect"' in props[f"{prefix}sasl.jaas.config"]


def test_acls_are_least_privilege() -> None:
    from confluent_kafka.admin._acl import AclOperation, AclPermissionType

    s = Settings()
    allowed: dict[str, set[tuple[str, str, str]]] = {}
    denied: set[tuple[str, str, str]] = set()
    for b in kafka_security.acl_bindings(s):
        entry = (b.restype.name, b.name, b.operation.name)
        if b.permission_type == AclPermissionType.DENY:
            denied.add((b.principal, b.name, b.operation.name))
        else:
            allowed.setdefault(b.principal, set()).add(entry)
        assert b.operation != AclOperation.ALL and b.name != "*", "no wildcard grants"
    assert not any(op == "READ" for _, _, op in allowed["User:cdc"]), "the producer reads nothing"
    writes = {(kind, name) for kind, name, op in allowed["User:apply"] if op == "WRITE"}
    assert writes == {("TOPIC", s.dead_letter_topic)}, "the consumer writes only the dead-letter topic"
    assert ("GROUP", s.sink.group_id, "READ") in allowed["User:apply"]
    assert ("User:cdc", s.dead_letter_topic, "WRITE") in denied
    assert "User:admin" not in allowed  # a super user, by the broker's super.users


def test_tls_files_are_private_and_the_broker_cert_is_signed_by_the_ca(tmp_path: Path) -> None:
    import subprocess

    s = _secure(tmp_path)
    tls = kafka_security.ensure_tls(s)
    for key in (tls.ca_key, tls.key, tls.store, tls.store_password):
        assert key.stat().st_mode & 0o077 == 0
    verified = subprocess.run(["openssl", "verify", "-CAfile", str(tls.ca), str(tls.cert)],
                              capture_output=True, text=True)
    assert verified.returncode == 0, verified.stderr
    text = subprocess.run(["openssl", "x509", "-in", str(tls.cert), "-noout", "-text"], capture_output=True,
                          text=True, check=True).stdout
    assert "IP Address:127.0.0.1" in text and "TLS Web Client Authentication" in text
    before = tls.cert.read_bytes()
    assert kafka_security.ensure_tls(s).cert.read_bytes() == before  # made once


@pytest.mark.skipif(not SYSTEM_CA.is_file(), reason="needs a PEM CA bundle for librdkafka to load")
def test_a_client_follows_its_rotated_secret_file(tmp_path: Path) -> None:
    s = _secure(tmp_path, ICETIDE__KAFKA__CA_FILE=str(SYSTEM_CA))
    path = kafka_client.password_file(s, "apply")
    kafka_client.write_secret(path, "old")
    consumer = kafka_client.consumer(s, "apply", "127.0.0.1:1", {"group.id": "g", "log_level": 0})
    try:
        calls: list[tuple[str, str]] = []
        original = consumer.set_sasl_credentials
        consumer.set_sasl_credentials = lambda u, p: (calls.append((u, p)), original(u, p))
        consumer.poll(0)
        assert calls == []  # unchanged file: nothing handed over
        kafka_client.write_secret(path, "new")
        os.utime(path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
        consumer._icetide_checked -= kafka_client.REFRESH_S
        consumer.poll(0)
        assert calls == [("apply", "new")]
        consumer.poll(0)
        assert calls == [("apply", "new")]  # once
    finally:
        consumer.close()


def test_flink_names_the_login_module_of_its_relocated_kafka_clients(tmp_path: Path) -> None:
    from icetide import jvm

    s = _secure(tmp_path, ICETIDE__KAFKA__PASSWORDS__CDC="pw")
    jaas = kafka_client.flink_options(s, "cdc", "h:1")["properties.sasl.jaas.config"]
    module = jaas.split(" ", 1)[0]
    assert module == "org.apache.flink.kafka.shaded.org.apache.kafka.common.security.scram.ScramLoginModule"
    jars = [j for j in jvm.jar_cache().joinpath("flink").glob("flink-sql-connector-kafka-*.jar")]
    if jars:  # the class is in the connector jar the job runs with
        import zipfile

        assert module.replace(".", "/") + ".class" in zipfile.ZipFile(jars[0]).namelist()
    own = jvm.jar_cache() / jvm.OWN_GROUP / "icetide-jvm.jar"
    if own.is_file():  # both builds of icetide's handler are in its jar
        import zipfile

        names = zipfile.ZipFile(own).namelist()
        for handler in (kafka_client.FILE_HANDLER, kafka_client.FLINK_FILE_HANDLER):
            assert handler.replace(".", "/") + ".class" in names
