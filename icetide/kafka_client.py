"""Every icetide Kafka client's configuration, from the settings: the one place that knows
`kafka.security`.

Each client names its *role* (the principal it acts as): `cdc` (the CDC job's producer), `apply`
(`cdc apply`: its consumer, schema reader and dead-letter producer), `mirror` (the Flink mirror's
source), `connect` (the Kafka Connect worker) and `admin` (the stack's and the operator's tools).
With `kafka.security: plaintext` a client gets only `bootstrap.servers`; with `sasl_ssl` it gets
SCRAM-SHA-512 over TLS: its user name (`kafka.users`, default the role's name), its password
(`kafka.passwords`, else the 0600 file `<secrets_dir>/<user>.password` that `stack up` made) and the
CA certificate that signed the broker's.

- `client_config(settings, role, bootstrap)` → a confluent_kafka (librdkafka) configuration;
- `java_properties(settings, role, bootstrap)` → Java client properties (Kafka Connect, Flink): the JAAS
  configuration names the user and the secret *file*, and icetide's SASL callback handler (jvm/,
  `FileScramCallbackHandler`) reads the file at every authentication, so a Java client follows a rotation
  at its next re-authentication (`kafka.reauth_ms`) with no restart;
- `flink_options(...)` → the same as Flink connector options (`properties.*`), with the handler built
  against the SQL connector jar's relocated Kafka classes;
- `producer` / `consumer` / `admin(settings, role, bootstrap, extra)` → clients that follow a
  rotated password: before a poll, consume or produce (at most once a second) they look at their
  secret file and hand a changed password to librdkafka (`set_sasl_credentials`), which uses it the
  next time it authenticates — on a new connection or the broker-demanded re-authentication
  (`kafka.reauth_ms`). No restart, no thread.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from icetide.errors import ConfigError
from icetide.settings import Settings

log = logging.getLogger(__name__)

ROLES = ("admin", "cdc", "apply", "mirror", "connect")
JAVA_ROLES = ("cdc", "mirror", "connect")  # Java clients: their password file is read by FILE_HANDLER
MECHANISM = "SCRAM-SHA-512"
SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"
FLINK_SHADE = "org.apache.flink.kafka.shaded."  # flink-sql-connector-kafka relocates kafka-clients
# icetide's SASL client callback handler (jvm/src/main/java/io/icetide/jvm/), plain and for the relocated Kafka
FILE_HANDLER = "io.icetide.jvm.FileScramCallbackHandler"
FLINK_FILE_HANDLER = "io.icetide.jvm.flink.FileScramCallbackHandler"
REFRESH_S = 1.0


def secure(settings: Settings) -> bool:
    return settings.kafka.security == "sasl_ssl"


def kafka_home(settings: Settings) -> Path:
    return settings.state_dir / "kafka"


def ca_file(settings: Settings) -> Path:
    return (settings.kafka.ca_file or kafka_home(settings) / "tls" / "ca.pem").expanduser().resolve()


def secrets_dir(settings: Settings) -> Path:
    return (settings.kafka.secrets_dir or kafka_home(settings) / "secrets").expanduser().resolve()


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ConfigError(f"unknown Kafka principal '{role}': one of {', '.join(ROLES)}")


def username(settings: Settings, role: str) -> str:
    _check_role(role)
    return settings.kafka.users.get(role, role)


def password_file(settings: Settings, role: str) -> Path:
    return secrets_dir(settings) / f"{username(settings, role)}.password"


def read_password(settings: Settings, role: str) -> SecretStr:
    """The role's password: `kafka.passwords.<role>`, else its secret file (ConfigError if neither)."""
    given = settings.kafka.passwords.get(role)
    if given is not None:
        return given
    path = password_file(settings, role)
    try:
        return SecretStr(path.read_text().strip())
    except OSError:
        raise ConfigError(f"no password for Kafka principal '{role}': {path} is missing (run `icetide stack up` "
                          f"with kafka.security=sasl_ssl, or set kafka.passwords.{role})") from None


def write_secret(path: Path, value: str) -> None:
    """Write `value` to `path`, readable by the owner only, replacing it atomically."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(value + "\n")
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def client_config(settings: Settings, role: str, bootstrap: str) -> dict[str, Any]:
    """A librdkafka configuration (confluent_kafka) for `role` at `bootstrap`."""
    conf: dict[str, Any] = {"bootstrap.servers": bootstrap}
    if not secure(settings):
        return conf
    return conf | {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": MECHANISM,
        "sasl.username": username(settings, role),
        "sasl.password": read_password(settings, role).get_secret_value(),
        "ssl.ca.location": str(ca_file(settings)),
        "ssl.endpoint.identification.algorithm": "https",
    }


def _jaas_quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def java_properties(settings: Settings, role: str, bootstrap: str, login_module: str = SCRAM_LOGIN,
                    handler: str = FILE_HANDLER) -> dict[str, str]:
    """Java Kafka client properties for `role` (Kafka Connect); `login_module` and `handler`: the SCRAM login
    module's and icetide's callback handler's class names as the client's classpath has them. A password
    from the settings (`kafka.passwords`) has no file to follow: it is put in the JAAS configuration."""
    props = {"bootstrap.servers": bootstrap}
    if not secure(settings):
        return props
    secret = read_password(settings, role).get_secret_value()  # read now: a missing file fails here, named
    user = _jaas_quote(username(settings, role))
    if role in settings.kafka.passwords:
        auth = {"sasl.jaas.config": f"{login_module} required username={user} password={_jaas_quote(secret)};"}
    else:
        path = _jaas_quote(str(password_file(settings, role)))
        auth = {"sasl.jaas.config": f"{login_module} required username={user} passwordFile={path};",
                "sasl.client.callback.handler.class": handler}
    return props | {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": MECHANISM,
        **auth,
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(ca_file(settings)),
    }


def worker_properties(settings: Settings, role: str, bootstrap: str) -> dict[str, str]:
    """A Kafka Connect worker's security: the Java properties for the worker itself and, prefixed, for the
    producers, consumers and admin clients it makes for its connectors (`ConnectSettings.worker`)."""
    props = java_properties(settings, role, bootstrap)
    out = dict(props)
    for prefix in ("producer.", "consumer.", "admin."):
        out |= {prefix + k: v for k, v in props.items() if k != "bootstrap.servers"}
    return out


def flink_options(settings: Settings, role: str, bootstrap: str) -> dict[str, str]:
    """Flink Kafka connector options: the Java properties as `properties.*` (Flink hides `jaas.config`), with
    the login module under the SQL connector jar's relocated package."""
    props = java_properties(settings, role, bootstrap, FLINK_SHADE + SCRAM_LOGIN, FLINK_FILE_HANDLER)
    return {f"properties.{k}": v for k, v in props.items()}


# -- clients that follow a rotated password ------------------------------------------------------------
class _Follower:
    """Mixed into the client classes: before each poll / consume / produce / flush, at most once a second, a
    changed secret file's password is handed to librdkafka (`set_sasl_credentials`). It must be the polling
    thread: from another thread the call waits until the poll in progress returns, and librdkafka aborts
    when it comes from inside a callback."""

    _icetide: tuple[Settings, str] | None = None
    _icetide_seen = 0.0
    _icetide_checked = 0.0

    def _icetide_follow(self, settings: Settings, role: str) -> None:
        self._icetide = (settings, role)
        self._icetide_seen = _mtime(password_file(settings, role))
        self._icetide_checked = time.monotonic()

    def _icetide_refresh(self) -> None:
        if self._icetide is None or time.monotonic() - self._icetide_checked < REFRESH_S:
            return
        settings, role = self._icetide
        self._icetide_checked = time.monotonic()
        now = _mtime(password_file(settings, role))
        if now == self._icetide_seen:
            return
        try:
            secret = read_password(settings, role).get_secret_value()
        except ConfigError:
            return  # being replaced: next time
        self.set_sasl_credentials(username(settings, role), secret)  # type: ignore[attr-defined]
        self._icetide_seen = now
        log.info("kafka principal %s: new password picked up", username(settings, role))


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime_ns / 1e9
    except OSError:
        return 0.0


def _following(base: type, methods: tuple[str, ...]) -> type:
    def wrap(name: str) -> Any:
        inner = getattr(base, name)

        def method(self: Any, *args: Any, **kwargs: Any) -> Any:
            self._icetide_refresh()
            return inner(self, *args, **kwargs)

        method.__name__ = name
        return method

    return type(f"Icetide{base.__name__}", (_Follower, base), {name: wrap(name) for name in methods})


_SUBCLASSES: dict[str, type] = {}
_METHODS = {"producer": ("poll", "produce", "flush"), "consumer": ("poll", "consume", "commit"),
            "admin": ("poll", "list_topics")}


def _build(kind: str, settings: Settings, role: str, bootstrap: str, extra: dict[str, Any] | None) -> Any:
    import confluent_kafka
    from confluent_kafka.admin import AdminClient

    if kind not in _SUBCLASSES:
        base = {"producer": confluent_kafka.Producer, "consumer": confluent_kafka.Consumer, "admin": AdminClient}[kind]
        _SUBCLASSES[kind] = _following(base, _METHODS[kind])
    client = _SUBCLASSES[kind](client_config(settings, role, bootstrap) | (extra or {}))
    if secure(settings) and role not in settings.kafka.passwords:  # a password from the settings has no file
        client._icetide_follow(settings, role)
    return client


# every icetide producer: a write counts once all in-sync replicas have it (with min.insync.replicas 2 on a
# replicated cluster it survives the loss of a node), and a retry after a leader change is no duplicate
DURABLE_PRODUCER = {"acks": "all", "enable.idempotence": True}


def producer(settings: Settings, role: str, bootstrap: str, extra: dict[str, Any] | None = None) -> Any:
    """A confluent_kafka Producer for `role`, configured by `client_config`, `DURABLE_PRODUCER`, then `extra`."""
    return _build("producer", settings, role, bootstrap, DURABLE_PRODUCER | (extra or {}))


def consumer(settings: Settings, role: str, bootstrap: str, extra: dict[str, Any] | None = None) -> Any:
    """A confluent_kafka Consumer for `role`, configured by `client_config` plus `extra`."""
    return _build("consumer", settings, role, bootstrap, extra)


def admin(settings: Settings, role: str, bootstrap: str, extra: dict[str, Any] | None = None) -> Any:
    """A confluent_kafka AdminClient for `role`, configured by `client_config` plus `extra`."""
    return _build("admin", settings, role, bootstrap, extra)
