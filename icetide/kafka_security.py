"""The embedded broker with `kafka.security: sasl_ssl`: its CA and certificate, its listeners, the SCRAM
users with their ACLs, and password rotation (docs/security.md).

Files under `<state_dir>/kafka/`: `tls/` (ca.pem, ca.key, broker.key, broker.pem, broker.p12 and its
store password; keys 0600) and `secrets/<user>.password` (0600). The broker listens on three ports:
CLIENT (SASL_SSL, SCRAM-SHA-512, what every client uses), INTERNAL (TLS with client certificates:
inter-broker traffic such as transaction markers, and the stack's own first login) and CONTROLLER
(TLS with client certificates). Only the broker's certificate is signed by the CA, so only the broker
(and `stack up`, which holds its key) gets through those two; it is a super user, as is `admin`.
Authorization is Kafka's StandardAuthorizer, deny by default: each principal gets `acl_bindings`.
"""

from __future__ import annotations

import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from icetide.errors import StackError
from icetide.kafka_client import ROLES, kafka_home, password_file, username, write_secret
from icetide.settings import Settings

BROKER_CN = "icetide-broker"
DAYS = 825
AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"


@dataclass(frozen=True)
class TlsFiles:
    home: Path

    @property
    def ca(self) -> Path:
        return self.home / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.home / "ca.key"

    @property
    def key(self) -> Path:
        return self.home / "broker.key"

    @property
    def cert(self) -> Path:
        return self.home / "broker.pem"

    @property
    def store(self) -> Path:
        return self.home / "broker.p12"

    @property
    def store_password(self) -> Path:
        return self.home / "broker.p12.password"


def tls_files(settings: Settings) -> TlsFiles:
    return TlsFiles(kafka_home(settings) / "tls")


def _openssl(*args: str) -> None:
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise StackError(f"openssl {args[0]} failed: {done.stderr.strip()[-500:]}")


def ensure_tls(settings: Settings) -> TlsFiles:
    """A local CA and a broker certificate for `kafka.host`, 127.0.0.1 and localhost (made once)."""
    tls = tls_files(settings)
    if tls.store.is_file() and tls.ca.is_file():
        return tls
    tls.home.mkdir(parents=True, exist_ok=True, mode=0o700)
    host = settings.kafka.host
    san = f"subjectAltName=IP:127.0.0.1,DNS:localhost,{'IP' if host.replace('.', '').isdigit() else 'DNS'}:{host}"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tls.ca_key), "-out", str(tls.ca),
             "-days", str(DAYS), "-subj", "/CN=icetide local CA", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    csr = tls.home / "broker.csr"
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tls.key), "-out", str(csr),
             "-subj", f"/CN={BROKER_CN}")
    ext = tls.home / "broker.ext"
    ext.write_text(f"{san}\nextendedKeyUsage=serverAuth,clientAuth\nkeyUsage=digitalSignature,keyEncipherment\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(tls.ca), "-CAkey", str(tls.ca_key), "-CAcreateserial",
             "-out", str(tls.cert), "-days", str(DAYS), "-extfile", str(ext))
    write_secret(tls.store_password, secrets.token_urlsafe(24))
    _openssl("pkcs12", "-export", "-in", str(tls.cert), "-inkey", str(tls.key), "-certfile", str(tls.ca),
             "-name", "broker", "-out", str(tls.store), "-passout", f"file:{tls.store_password}")
    for path in (tls.ca_key, tls.key, tls.store):
        path.chmod(0o600)
    csr.unlink(missing_ok=True)
    return tls


def ensure_passwords(settings: Settings) -> None:
    """A generated password file per principal that has none (never printed)."""
    for role in ROLES:
        path = password_file(settings, role)
        if not path.is_file() and role not in settings.kafka.passwords:
            write_secret(path, secrets.token_urlsafe(32))


def listener_properties(settings: Settings, port: int, internal_port: int, controller_port: int) -> dict[str, str]:
    """The broker's listeners, TLS, SASL and authorizer properties for `sasl_ssl`."""
    host = settings.kafka.host
    tls = tls_files(settings)
    store_password = tls.store_password.read_text().strip()
    return {
        "listeners": f"CLIENT://{host}:{port},INTERNAL://{host}:{internal_port},CONTROLLER://{host}:{controller_port}",
        "advertised.listeners": f"CLIENT://{host}:{port},INTERNAL://{host}:{internal_port}",
        "inter.broker.listener.name": "INTERNAL",
        "listener.security.protocol.map": "CLIENT:SASL_SSL,INTERNAL:SSL,CONTROLLER:SSL",
        "listener.name.client.sasl.enabled.mechanisms": "SCRAM-SHA-512",
        "listener.name.client.scram-sha-512.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "listener.name.internal.ssl.client.auth": "required",
        "listener.name.controller.ssl.client.auth": "required",
        "ssl.keystore.type": "PKCS12",
        "ssl.keystore.location": str(tls.store),
        "ssl.keystore.password": store_password,
        "ssl.key.password": store_password,
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": str(tls.ca),
        "ssl.principal.mapping.rules": "RULE:^CN=([^,]+)$/$1/,DEFAULT",
        "authorizer.class.name": AUTHORIZER,
        "allow.everyone.if.no.acl.found": "false",
        "super.users": f"User:{BROKER_CN};User:{username(settings, 'admin')}",
        "connections.max.reauth.ms": str(settings.kafka.reauth_ms),
    }


def internal_admin_config(settings: Settings, internal_bootstrap: str) -> dict[str, Any]:
    """librdkafka settings for the INTERNAL listener with the broker's own certificate (a super user):
    how `stack up` creates the users before any password exists on the broker."""
    tls = tls_files(settings)
    return {"bootstrap.servers": internal_bootstrap, "security.protocol": "SSL",
            "ssl.ca.location": str(tls.ca), "ssl.certificate.location": str(tls.cert),
            "ssl.key.location": str(tls.key), "ssl.endpoint.identification.algorithm": "https"}


# -- principals and their ACLs -----------------------------------------------------------------------
def acl_bindings(settings: Settings) -> list[Any]:
    """What each principal may do; nothing else is allowed (the authorizer denies by default).

    cdc: write and create the `<topic_prefix>.` topics, use the `icetide-cdc-` transactional ids, but
    never write the dead-letter topic. apply: read the `<topic_prefix>.` topics, use the
    `sink.group_id` group (and the schema reader's `icetide-schemas`), write the dead-letter topic.
    mirror: read the topics, use `icetide-mirror-` groups. connect: read the topics, use `connect-` groups.
    """
    from confluent_kafka.admin._acl import AclBinding, AclOperation, AclPermissionType
    from confluent_kafka.admin._resource import ResourcePatternType, ResourceType

    prefix = f"{settings.cdc.topic_prefix}."
    dead = settings.dead_letter_topic
    topic, group, txn = ResourceType.TOPIC, ResourceType.GROUP, ResourceType.TRANSACTIONAL_ID
    pre, lit = ResourcePatternType.PREFIXED, ResourcePatternType.LITERAL
    op = AclOperation
    rules: list[tuple[str, Any, str, Any, Any, Any]] = [
        *(("cdc", topic, prefix, pre, o, AclPermissionType.ALLOW) for o in (op.WRITE, op.DESCRIBE, op.CREATE)),
        ("cdc", topic, dead, lit, op.WRITE, AclPermissionType.DENY),
        *(("cdc", txn, "icetide-cdc-", pre, o, AclPermissionType.ALLOW) for o in (op.WRITE, op.DESCRIBE)),
        *(("apply", topic, prefix, pre, o, AclPermissionType.ALLOW) for o in (op.READ, op.DESCRIBE)),
        *(("apply", group, g, lit, op.READ, AclPermissionType.ALLOW)
          for g in (settings.sink.group_id, "icetide-schemas")),
        *(("apply", topic, dead, lit, o, AclPermissionType.ALLOW) for o in (op.WRITE, op.CREATE)),
        *(("mirror", topic, prefix, pre, o, AclPermissionType.ALLOW) for o in (op.READ, op.DESCRIBE)),
        ("mirror", group, "icetide-mirror-", pre, op.READ, AclPermissionType.ALLOW),
        *(("connect", topic, prefix, pre, o, AclPermissionType.ALLOW) for o in (op.READ, op.DESCRIBE)),
        ("connect", group, "connect-", pre, op.READ, AclPermissionType.ALLOW),
    ]
    return [AclBinding(kind, name, pattern, f"User:{username(settings, role)}", "*", operation, permission)
            for role, kind, name, pattern, operation, permission in rules]


def _done(futures: dict[Any, Any], what: str) -> None:
    for key, future in futures.items():
        try:
            future.result(timeout=30)
        except Exception as exc:  # confluent_kafka raises KafkaException / KafkaError
            raise StackError(f"{what} failed for {key}: {exc}") from None


def upsert_users(admin: Any, settings: Settings, roles: tuple[str, ...] = ROLES) -> None:
    """Set each role's SCRAM-SHA-512 credential on the broker to the password in its file/settings."""
    from confluent_kafka.admin._scram import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

    from icetide.kafka_client import read_password

    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
    upserts = [UserScramCredentialUpsertion(username(settings, role), info,
                                            read_password(settings, role).get_secret_value().encode())
               for role in roles]
    _done(admin.alter_user_scram_credentials(upserts), "setting a SCRAM credential")


def bootstrap(settings: Settings, internal_bootstrap: str) -> None:
    """Create the users and the ACLs on a freshly started broker (idempotent)."""
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(internal_admin_config(settings, internal_bootstrap))
    upsert_users(admin, settings)
    _done(admin.create_acls(acl_bindings(settings)), "creating an ACL")


def rotate(settings: Settings, bootstrap: str, roles: tuple[str, ...] = ROLES) -> list[str]:
    """New passwords for `roles`, without a broker restart: each SCRAM credential is replaced on the broker
    (as `admin`, Admin API AlterUserScramCredentials), then its 0600 file rewritten; running icetide clients
    pick the file up within a second (`kafka_client`). The old password is refused from then on. Returns the
    user names rotated (never the passwords)."""
    from confluent_kafka.admin import AdminClient
    from confluent_kafka.admin._scram import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion

    from icetide.kafka_client import client_config, secure

    if not secure(settings):
        raise StackError("nothing to rotate: kafka.security is plaintext (no Kafka credentials)")
    given = [role for role in roles if role in settings.kafka.passwords]
    if given:
        raise StackError(f"the password of {', '.join(given)} comes from the settings (kafka.passwords): "
                         "change it there and on the broker")
    admin = AdminClient(client_config(settings, "admin", bootstrap))
    info = ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)
    done = []
    for role in roles:
        fresh = secrets.token_urlsafe(32)
        user = username(settings, role)
        _done(admin.alter_user_scram_credentials([UserScramCredentialUpsertion(user, info, fresh.encode())]),
              "rotating a SCRAM credential")
        write_secret(password_file(settings, role), fresh)
        done.append(user)
    return done
