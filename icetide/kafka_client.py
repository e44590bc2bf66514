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
- `java_properties(settings, role, bootstrap)` → Java client properties (Kafka Connect, Flink);
- `flink_options(...)` → the same as Flink connector options (`properties.*`);
- `producer` / `consumer` / `admin(settings, role, bootstrap, extra)` → clients that follow a
  rotated password: a daemon thread checks their secret file once a second and hands a changed
  password to librdkafka (`set_sasl_credentials`), which uses it the next time it authenticates —
  on a new connection or the broker-demanded re-authentication (`kafka.reauth_ms`). No restart.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import weakref
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from icetide.errors import ConfigError
from icetide.settings import Settings

log = logging.getLogger(__name__)

ROLES = ("admin", "cdc", "apply", "mirror", "connect")
MECHANISM = "SCRAM-SHA-512"
SCRAM_LOGIN = "org.apache.kafka.common.security.scram.ScramLoginModule"
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


def java_properties(settings: Settings, role: str, bootstrap: str) -> dict[str, str]:
    """Java Kafka client properties for `role` (Kafka Connect, Flink's connector, the CLI tools)."""
    props = {"bootstrap.servers": bootstrap}
    if not secure(settings):
        return props
    secret = read_password(settings, role).get_secret_value()
    return props | {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": MECHANISM,
        "sasl.jaas.config": f"{SCRAM_LOGIN} required username={_jaas_quote(username(settings, role))} "
                            f"password={_jaas_quote(secret)};",
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
    """Flink Kafka connector options: the Java properties as `properties.*` (Flink hides `jaas.config`)."""
    return {f"properties.{k}": v for k, v in java_properties(settings, role, bootstrap).items()}


# -- clients that follow a rotated password ------------------------------------------------------------
class _Refresher:
    """Once a second, every live secured client whose secret file changed gets the new password."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: list[tuple[weakref.ref[Any], Settings, str, float]] = []
        self._thread: threading.Thread | None = None

    def watch(self, client: Any, settings: Settings, role: str) -> None:
        if role in settings.kafka.passwords:
            return  # a password given in the settings has no file to follow
        with self._lock:
            self._watched.append((weakref.ref(client), settings, role, _mtime(password_file(settings, role))))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="icetide-kafka-credentials", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        stop = threading.Event()
        while not stop.wait(REFRESH_S):
            self.check()

    def check(self) -> int:
        """Hand changed passwords to their clients; how many were updated."""
        updated = 0
        with self._lock:
            kept = []
            for ref, settings, role, seen in self._watched:
                client = ref()
                if client is None:
                    continue
                now = _mtime(password_file(settings, role))
                if now != seen:
                    with contextlib.suppress(Exception):  # a closed client: forget it
                        client.set_sasl_credentials(username(settings, role),
                                                    read_password(settings, role).get_secret_value())
                        updated += 1
                        log.info("kafka principal %s: new password picked up", username(settings, role))
                kept.append((ref, settings, role, now))
            self._watched = kept
        return updated


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime_ns / 1e9
    except OSError:
        return 0.0


REFRESHER = _Refresher()


def _build(kind: str, settings: Settings, role: str, bootstrap: str, extra: dict[str, Any] | None) -> Any:
    import confluent_kafka
    from confluent_kafka.admin import AdminClient

    base = {"producer": confluent_kafka.Producer, "consumer": confluent_kafka.Consumer, "admin": AdminClient}[kind]
    cls = _SUBCLASSES.setdefault(kind, type(f"Icetide{base.__name__}", (base,), {}))  # weak-referenceable
    client = cls(client_config(settings, role, bootstrap) | (extra or {}))
    if secure(settings):
        REFRESHER.watch(client, settings, role)
    return client


_SUBCLASSES: dict[str, type] = {}


def producer(settings: Settings, role: str, bootstrap: str, extra: dict[str, Any] | None = None) -> Any:
    """A confluent_kafka Producer for `role`, configured by `client_config` plus `extra`."""
    return _build("producer", settings, role, bootstrap, extra)


def consumer(settings: Settings, role: str, bootstrap: str, extra: dict[str, Any] | None = None) -> Any:
    """A confluent_kafka Consumer for `role`, configured by `client_config` plus `extra`."""
    return _build("consumer", settings, role, bootstrap, extra)


def admin(settings: Settings, role: str, bootstrap: str, extra: dict[str, Any] | None = None) -> Any:
    """A confluent_kafka AdminClient for `role`, configured by `client_config` plus `extra`."""
    return _build("admin", settings, role, bootstrap, extra)
