"""`kafka.security: sasl_ssl` against a real broker: TLS + SCRAM-SHA-512, ACLs per principal, the
pipeline end to end, password rotation while `cdc apply` runs, and no password in any log.

One secured broker for the module, in its own state dir; the catalog is the session's (so the Spark
fixture's tables are the ones `cdc run` reads).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.sqlite import SqliteConfig, SqliteSink
from icetide import kafka_client
from icetide.catalog import pyiceberg_catalog
from icetide.events import from_json, topic_for
from icetide.process import stop_group
from icetide.settings import Settings, load_settings
from icetide.stack import Stack, StackStatus
from streaming.changelog import Changelog
from tests.fixtures.kafka import consume_all, create_topic, new_topic_name
from tests.fixtures.spark import fresh_table_name
from tests.integration.test_connectors_consumer import Generator

pytestmark = pytest.mark.integration
ICETIDE = str(Path(sys.executable).parent / "icetide")
REAUTH_MS = 3000
SEEN_PASSWORDS: set[str] = set()  # every password this module used (for the log scan at the end)


@pytest.fixture(scope="module")
def secure_env(tmp_path_factory: pytest.TempPathFactory, base_settings: Settings) -> dict[str, str]:
    state = tmp_path_factory.mktemp("kafka-sasl")
    return {"ICETIDE__STACK__STATE_DIR": str(state), "ICETIDE__KAFKA__SECURITY": "sasl_ssl",
            "ICETIDE__KAFKA__REAUTH_MS": str(REAUTH_MS), "ICETIDE__CATALOG__URI": base_settings.catalog_uri,
            "ICETIDE__CATALOG__WAREHOUSE": base_settings.warehouse}


@pytest.fixture(scope="module")
def secure(secure_env: dict[str, str]) -> Iterator[tuple[Settings, StackStatus]]:
    settings = load_settings(None, environ=secure_env)
    stack = Stack(settings)
    status = stack.up()
    try:
        yield settings, status
    finally:
        stack.down()


def _remember(settings: Settings) -> None:
    for role in kafka_client.ROLES:
        SEEN_PASSWORDS.add(kafka_client.read_password(settings, role).get_secret_value())


def _errors(conf: dict[str, Any], action: str, seconds: float = 8.0) -> set[str]:
    """The error names a client with `conf` meets while doing `action` for a few seconds."""
    from confluent_kafka import Consumer, KafkaException, Producer
    from confluent_kafka.admin import AdminClient

    seen: set[str] = set()
    conf = {**conf, "error_cb": lambda err: seen.add(err.name())}
    if action == "metadata":
        admin = AdminClient(conf)
        try:
            admin.list_topics(timeout=seconds)
        except KafkaException as exc:
            seen.add(exc.args[0].name())
        admin.poll(1)  # serves error_cb (the authentication failures)
    elif action.startswith("produce:"):
        producer = Producer(conf)
        producer.produce(action.split(":", 1)[1], b"x", on_delivery=lambda err, _m: err and seen.add(err.name()))
        producer.flush(seconds)
    elif action.startswith("consume:"):
        _, topic, group = action.split(":")
        consumer = Consumer({**conf, "group.id": group, "auto.offset.reset": "earliest"})
        consumer.subscribe([topic])
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error():
                seen.add(msg.error().name())
            if seen:
                break
        consumer.close()
    return seen


def test_stack_up_makes_private_files_and_reports_the_security(secure: tuple[Settings, StackStatus]) -> None:
    settings, status = secure
    assert status.running and status.to_dict()["kafka"]["security"] == "sasl_ssl"
    home = kafka_client.kafka_home(settings)
    for path in [*(home / "secrets").iterdir(), home / "tls" / "broker.key", home / "tls" / "ca.key",
                 home / "server.properties"]:
        assert path.stat().st_mode & 0o077 == 0, f"{path} is readable by others"
    _remember(settings)


def test_plaintext_tls_only_and_a_wrong_password_are_refused(secure: tuple[Settings, StackStatus]) -> None:
    settings, status = secure
    assert _errors({"bootstrap.servers": status.bootstrap}, "metadata")  # plaintext on the TLS listener
    right = kafka_client.client_config(settings, "apply", status.bootstrap)
    tls_only = {k: v for k, v in right.items() if not k.startswith("sasl.")} | {"security.protocol": "SSL"}
    assert _errors(tls_only, "metadata")
    wrong = _errors(right | {"sasl.password": "not-the-password"}, "metadata")
    assert "_AUTHENTICATION" in wrong
    assert not _errors(right, "metadata")  # the control: the right password gets through


def test_each_principal_may_do_only_its_part(secure: tuple[Settings, StackStatus]) -> None:
    settings, status = secure
    topic = create_topic(status.bootstrap, new_topic_name("icetide.sales.acl"),
                         client=kafka_client.client_config(settings, "admin", status.bootstrap))
    apply = kafka_client.client_config(settings, "apply", status.bootstrap)
    cdc = kafka_client.client_config(settings, "cdc", status.bootstrap)
    assert not _errors(cdc, f"produce:{topic}")  # the job's producer writes its topics
    assert "TOPIC_AUTHORIZATION_FAILED" in _errors(apply, f"produce:{topic}")  # the consumer cannot write them
    assert "TOPIC_AUTHORIZATION_FAILED" in _errors(cdc, f"produce:{settings.dead_letter_topic}")
    assert not _errors(apply, f"produce:{settings.dead_letter_topic}")  # but the consumer writes dead letters
    assert "GROUP_AUTHORIZATION_FAILED" in _errors(apply, f"consume:{topic}:someone-elses-group")
    assert not _errors(apply, f"consume:{topic}:{settings.sink.group_id}")
    assert _errors(cdc, f"consume:{topic}:{settings.sink.group_id}") & {"TOPIC_AUTHORIZATION_FAILED",
                                                                        "GROUP_AUTHORIZATION_FAILED"}
    outside = f"other.{uuid.uuid4().hex[:6]}"  # not under the topic prefix: nobody but admin
    assert "TOPIC_AUTHORIZATION_FAILED" in _errors(cdc, f"produce:{outside}")


def test_a_deleted_credential_ends_a_connected_client(secure: tuple[Settings, StackStatus]) -> None:
    """connections.max.reauth.ms: without it the connected client would keep working."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.admin._scram import ScramMechanism, UserScramCredentialDeletion

    from icetide.kafka_security import upsert_users

    settings, status = secure
    connected = kafka_client.admin(settings, "mirror", status.bootstrap)
    connected.list_topics(timeout=10)  # authenticated and connected
    root = AdminClient(kafka_client.client_config(settings, "admin", status.bootstrap))
    deletion = UserScramCredentialDeletion(kafka_client.username(settings, "mirror"), ScramMechanism.SCRAM_SHA_512)
    for future in root.alter_user_scram_credentials([deletion]).values():
        future.result(timeout=30)
    try:
        deadline, refused = time.monotonic() + 4 * REAUTH_MS / 1000, False
        while time.monotonic() < deadline and not refused:
            try:
                connected.list_topics(timeout=2)
            except KafkaException:
                refused = True
            time.sleep(0.5)
        assert refused, f"still connected {4 * REAUTH_MS} ms after its credential was deleted"
    finally:
        upsert_users(root, settings, ("mirror",))


def _icetide(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([ICETIDE, *args], env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=timeout)
    (Path(env["ICETIDE__STACK__STATE_DIR"]) / "cli-output.log").open("a").write(done.stdout + done.stderr)
    return done


def test_cdc_run_and_apply_on_sasl_ssl_end_equal(spark: Any, secure: tuple[Settings, StackStatus],
                                                 secure_env: dict[str, str]) -> None:
    table = fresh_table_name("secured")
    spark.sql(f"CREATE TABLE {table} (id BIGINT NOT NULL, produto STRING) USING iceberg "
              "TBLPROPERTIES ('format-version'='2', 'write.delete.mode'='merge-on-read')")
    spark.sql(f"ALTER TABLE {table} SET IDENTIFIER FIELDS id")
    spark.sql(f"INSERT INTO {table} SELECT id, concat('p', id) FROM range(40)")
    spark.sql(f"DELETE FROM {table} WHERE id < 5")
    ran = _icetide(secure_env, "cdc", "run", "--once", "--json", "--tables", table)
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert json.loads(ran.stdout)["tables"][table]["by_op"] == {"c": 40, "d": 5}
    topic = topic_for("icetide", *table.split("."))
    applied = _icetide(secure_env, "cdc", "apply", "--once", "--json", "--sink", "sqlite", "--topics", topic)
    assert applied.returncode == 0, applied.stderr[-3000:]
    assert json.loads(applied.stdout)["applied"] == 45
    verified = _icetide(secure_env, "cdc", "verify", "--table", table, "--sink", "sqlite", "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr[-3000:]
    assert json.loads(verified.stdout)["equal"] is True


def _produce(settings: Settings, bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes]]) -> None:
    producer = kafka_client.producer(settings, "cdc", bootstrap, {"linger.ms": 20})
    for key, value in records:
        producer.produce(topic, value, key=key)
        producer.poll(0)
    assert producer.flush(60) == 0


def test_rotation_while_apply_runs_loses_nothing_and_refuses_the_old_password(
        secure: tuple[Settings, StackStatus], secure_env: dict[str, str]) -> None:
    settings, status = secure
    admin = kafka_client.client_config(settings, "admin", status.bootstrap)
    topic = create_topic(status.bootstrap, new_topic_name("icetide.sales.rotlog"), client=admin)
    gen = Generator("sales", "rotlog", keyed=False, seed=11)
    state = Path(secure_env["ICETIDE__STACK__STATE_DIR"])
    sqlite = state / "rotation.db"
    env = {**os.environ, **secure_env, "ICETIDE__SINK__SQLITE_PATH": str(sqlite)}
    log_file = (state / "apply-rotation.log").open("w")
    proc = subprocess.Popen([ICETIDE, "cdc", "apply", "--sink", "sqlite", "--topics", topic, "--batch-size", "50"],
                            env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    old = kafka_client.client_config(settings, "apply", status.bootstrap)
    try:
        _produce(settings, status.bootstrap, topic, gen.events(300))
        time.sleep(2)
        rotated = _icetide(secure_env, "stack", "rotate", "kafka", "--principal", "apply", "--json", timeout=60)
        assert rotated.returncode == 0, rotated.stderr[-2000:]
        assert json.loads(rotated.stdout)["users"] == ["apply"]
        _remember(settings)
        assert kafka_client.read_password(settings, "apply").get_secret_value() != old["sasl.password"]
        for _ in range(3):  # keep producing across several re-authentications of the running consumer
            _produce(settings, status.bootstrap, topic, gen.events(200))
            time.sleep(REAUTH_MS / 1000 * 1.5)
        assert "_AUTHENTICATION" in _errors(old, "metadata")  # the old password is refused
        assert proc.poll() is None, "cdc apply kept running"
        deadline = time.monotonic() + 90
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            if sqlite.is_file():
                with SqliteSink(SqliteConfig(sqlite)) as sink, contextlib.suppress(Exception):  # not created yet
                    rows = sink.read_rows(("sales", gen.table))
            if len(rows) >= len(gen.rows):
                break
            time.sleep(1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log_file.close()

    def norm(items: list[dict[str, Any]]) -> Counter[tuple[tuple[str, Any], ...]]:
        return Counter(tuple(sorted((k, v) for k, v in r.items() if v is not None)) for r in items)

    assert norm(rows) == norm(gen.rows), "keyless rows: none lost, none applied twice"


def test_a_running_cdc_job_follows_a_rotated_password_and_the_old_one_is_refused(
        spark: Any, secure: tuple[Settings, StackStatus], secure_env: dict[str, str]) -> None:
    """The Flink job's Java producer answers SCRAM from the secret file at every (re-)authentication
    (icetide's FileScramCallbackHandler): after `rotate kafka --principal cdc` it keeps publishing across
    several re-authentications, no restart, nothing lost."""
    settings, status = secure
    table = fresh_table_name("secured_rot")
    spark.sql(f"CREATE TABLE {table} (id BIGINT NOT NULL, v STRING) USING iceberg "
              "TBLPROPERTIES ('format-version'='2', 'write.update.mode'='merge-on-read')")
    spark.sql(f"ALTER TABLE {table} SET IDENTIFIER FIELDS id")
    spark.sql(f"INSERT INTO {table} SELECT id, 'a' FROM range(30)")
    topic = topic_for("icetide", *table.split("."))
    state = Path(secure_env["ICETIDE__STACK__STATE_DIR"])
    reader = kafka_client.client_config(settings, "admin", status.bootstrap)
    log_path = state / "cdc-rotation.log"
    with log_path.open("ab") as out:
        job = subprocess.Popen([ICETIDE, "cdc", "run", "--tables", table],
                               env={**os.environ, **secure_env, "ICETIDE__FLINK__CHECKPOINT_INTERVAL_MS": "1000"},
                               stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def positions(count: int) -> set[Any]:
        deadline = time.monotonic() + 240
        seen: set[Any] = set()
        while time.monotonic() < deadline:
            assert job.poll() is None, log_path.read_text()[-3000:]
            seen = {from_json(m.value()).source.position for m in consume_all(status.bootstrap, topic, 10, reader)}
            if len(seen) >= count:
                return seen
            time.sleep(2)
        raise AssertionError(f"only {len(seen)} of {count} events\n{log_path.read_text()[-3000:]}")

    old = kafka_client.client_config(settings, "cdc", status.bootstrap)
    try:
        positions(30)
        rotated = _icetide(secure_env, "stack", "rotate", "kafka", "--principal", "cdc", "--json", timeout=60)
        assert rotated.returncode == 0, rotated.stderr[-2000:]
        _remember(settings)
        for step in range(3):  # a snapshot in each of several re-authentication periods
            spark.sql(f"UPDATE {table} SET v = 'u{step}' WHERE id < {5 * (step + 1)}")
            time.sleep(REAUTH_MS / 1000 * 1.5)
        expected = list(Changelog(pyiceberg_catalog(settings).load_table(table), settings.catalog.name).events(None))
        seen = positions(len(expected))
        assert seen == {e.source.position for e in expected}, "nothing lost"
        assert "_AUTHENTICATION" in _errors(old, "metadata")  # the old password is refused
        assert job.poll() is None, "the job kept running"
    finally:
        stop_group(job.pid, lambda _: job.poll() is None, 60.0)  # SIGTERM, then SIGKILL: it must not outlive the test


def test_no_password_in_any_log(secure: tuple[Settings, StackStatus], secure_env: dict[str, str]) -> None:
    settings, _ = secure
    _remember(settings)
    assert SEEN_PASSWORDS
    state = Path(secure_env["ICETIDE__STACK__STATE_DIR"])
    secret_files = {p.resolve() for p in (state / "kafka" / "secrets").iterdir()}
    tls = state / "kafka" / "tls"
    scanned = 0
    for path in state.rglob("*"):  # broker logs and data, CLI output, the apply log, Flink's run folders
        if not path.is_file() or path.resolve() in secret_files or path.parent == tls:
            continue
        text = path.read_bytes()[:50_000_000].decode(errors="replace")
        scanned += 1
        leaked = [p[:4] + "…" for p in SEEN_PASSWORDS if p in text]
        assert not leaked, f"{path} holds a Kafka password"
    assert scanned >= 3
