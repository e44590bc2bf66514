"""The object store the tables live on (`storage.kind: s3`): its key, its endpoint, and its properties
for each engine — Iceberg's S3FileIO in the JVMs (Spark, Flink, the REST catalog server) and PyIceberg's
pyarrow S3 file IO.

The key is never a setting: `storage.credentials` names where it is read from, an AWS shared-credentials
file or two environment variables; with neither, the embedded store's keys under the state dir, written
by `icetide stack up`. Every engine asks for the key of its *role* (docs/security.md): `writer` (Spark
jobs, the Flink mirror), `cdc` (the CDC job, `cdc verify`), `maint` (maintenance: the one that deletes),
`bi` (read-only readers), `catalog` (the embedded REST catalog server); `admin` is the stack's own. The
embedded store makes one least-privilege identity per role (`icetide.services.identities`);
`storage.identities.<role>` names a role's key on an external store. Errors name the setting and the
file, never the secret.
"""

from __future__ import annotations

import configparser
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, get_args
from urllib.parse import urlparse

from pydantic import SecretStr

from icetide.errors import ConfigError, StackError

if TYPE_CHECKING:
    from icetide.settings import Role, Settings, StorageCredentials

S3_FILE_IO = "org.apache.iceberg.aws.s3.S3FileIO"
# Iceberg's AwsClientProperties: a provider class built by its static create(Map) from the `<property>.*` keys
CREDENTIALS_PROVIDER_PROPERTY = "client.credentials-provider"
FILE_CREDENTIALS_PROVIDER = "io.icetide.jvm.FileCredentialsProvider"  # jvm/src/main/java/io/icetide/jvm/
STORE_DIR = "object-store"  # <state_dir>/object-store/: the embedded store's data, key and credentials
IDENTITIES_DIR = "identities"  # <state_dir>/object-store/identities/<role>: each role's key (mode 0600)


def roles() -> tuple[Role, ...]:
    """The engines' roles, each one identity on the embedded store (`admin` is not one of them)."""
    from icetide.settings import Role

    return tuple(r for r in get_args(Role) if r != "admin")


@dataclass(frozen=True)
class S3Key:
    """An access key: the id is an identifier, the secret a SecretStr (never in a repr or a log)."""

    access_key_id: str
    secret_access_key: SecretStr

    @classmethod
    def generate(cls, prefix: str = "icetide") -> S3Key:
        return cls(f"{prefix}-{secrets.token_hex(6)}", SecretStr(secrets.token_urlsafe(30)))


def embedded_credentials_file(settings: Settings, role: Role = "admin") -> Path:
    """The embedded object store's key for `role`, an AWS shared-credentials file (mode 0600): the store's
    admin key in `credentials`, each role's in `identities/<role>`."""
    home = settings.state_dir / STORE_DIR
    return home / "credentials" if role == "admin" else home / IDENTITIES_DIR / role


def uses_embedded_store(settings: Settings) -> bool:
    return settings.storage.kind == "s3" and not settings.storage.endpoint


def write_credentials_file(path: Path, key: S3Key, profile: str = "default") -> None:
    """Write `key` as an AWS shared-credentials file readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.parent.name == IDENTITIES_DIR:
        path.parent.chmod(0o700)
    text = (f"[{profile}]\naws_access_key_id = {key.access_key_id}\n"
            f"aws_secret_access_key = {key.secret_access_key.get_secret_value()}\n")
    # written beside and renamed over: a reader (or a JVM watching the file) never sees half a key
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_credentials_file(path: Path, profile: str, setting: str, origin: str) -> S3Key:
    """The key in section `profile` of an AWS shared-credentials file; ConfigError names `setting` and the file."""
    if not path.is_file():
        raise ConfigError(f"{origin}: setting '{setting}': file not found: {path}")
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(path)
    except configparser.Error:
        raise ConfigError(f"{origin}: setting '{setting}': {path} is not an INI credentials file") from None
    if not parser.has_section(profile):
        raise ConfigError(f"{origin}: setting 'storage.credentials.profile': no section [{profile}] in {path}")
    section = parser[profile]
    missing = [k for k in ("aws_access_key_id", "aws_secret_access_key") if not section.get(k, "").strip()]
    if missing:
        raise ConfigError(f"{origin}: setting '{setting}': {path} [{profile}] has no {' or '.join(missing)}")
    return S3Key(section["aws_access_key_id"].strip(), SecretStr(section["aws_secret_access_key"].strip()))


def _configured(creds: StorageCredentials) -> bool:
    return bool(creds.file or creds.access_key_env or creds.secret_key_env)


def key_source(settings: Settings, role: Role) -> tuple[StorageCredentials | None, str]:
    """Where `role`'s key is read from: configured credentials and their setting's name, or (None, "") for
    the embedded store's file of that role."""
    storage = settings.storage
    if role in storage.identities:
        return storage.identities[role], f"storage.identities.{role}"
    if _configured(storage.credentials):
        return storage.credentials, "storage.credentials"
    return None, ""


def key_reference(settings: Settings, role: Role) -> tuple[Path, str] | None:
    """The credentials file and profile `role`'s key is read from (None when it comes from environment
    variables): what the JVMs are handed instead of the key, so they follow a rotation."""
    creds, _ = key_source(settings, role)
    if creds is None:
        return (embedded_credentials_file(settings, role), "default") if uses_embedded_store(settings) else None
    return (creds.file.expanduser().resolve(), creds.profile) if creds.file else None


def key_file(settings: Settings, role: Role) -> Path | None:
    """The file `role`'s key is read from (None when it comes from environment variables)."""
    ref = key_reference(settings, role)
    return ref[0] if ref else None


def s3_key(settings: Settings, role: Role, environ: dict[str, str] | None = None) -> S3Key:
    """The access key of `role`, read from where the settings point (docs/security.md)."""
    env = os.environ if environ is None else environ
    creds, setting = key_source(settings, role)
    origin = settings.source
    if creds is None:
        if not uses_embedded_store(settings):
            raise ConfigError(f"{origin}: setting 'storage.credentials': the S3 endpoint {settings.storage.endpoint} "
                              "needs a key: set storage.credentials.file or storage.credentials.access_key_env "
                              f"and .secret_key_env (or storage.identities.{role})")
        path = embedded_credentials_file(settings, role)
        if not path.is_file():
            raise StackError(f"the embedded object store of {settings.state_dir} has no {role} key yet ({path}): "
                             "start it with `icetide stack up`")
        return read_credentials_file(path, "default", "storage.credentials", origin)
    by_env = creds.access_key_env or creds.secret_key_env
    if creds.file and by_env:
        raise ConfigError(f"{origin}: settings '{setting}.file' and '{setting}.*_env' "
                          "are both set: the key is read from one place")
    if by_env:
        values = []
        for field in ("access_key_env", "secret_key_env"):
            name = getattr(creds, field)
            if not name:
                raise ConfigError(f"{origin}: setting '{setting}.{field}' is not set "
                                  "(the key id and the secret are read from two environment variables)")
            value = env.get(name, "").strip()
            if not value:
                raise ConfigError(f"{origin}: setting '{setting}.{field}': environment variable {name} is not set")
            values.append(value)
        return S3Key(values[0], SecretStr(values[1]))
    assert creds.file is not None
    return read_credentials_file(creds.file.expanduser(), creds.profile, f"{setting}.file", origin)


class KeyWatch:
    """Whether a role's key file changed since the last look (its mtime, inode or size): a rotation rewrites it."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._seen = self._stamp()

    @classmethod
    def of(cls, settings: Settings, role: Role) -> KeyWatch:
        return cls(key_file(settings, role))

    def _stamp(self) -> tuple[int, int, int] | None:
        if self.path is None:
            return None
        try:
            st = self.path.stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_ino, st.st_size)

    def changed(self) -> bool:
        now = self._stamp()
        if now == self._seen:
            return False
        self._seen = now
        return True


def warehouse_location(settings: Settings) -> tuple[str, str]:
    """The warehouse's bucket and key prefix (`s3://warehouse/warehouse` → ("warehouse", "warehouse"))."""
    parsed = urlparse(settings.warehouse)
    if parsed.scheme not in ("s3", "s3a"):
        raise ConfigError(f"{settings.source}: setting 'catalog.warehouse': with storage.kind s3 it must be an "
                          f"s3:// location, got {settings.warehouse!r}")
    return parsed.netloc, parsed.path.strip("/")


def checkpoint_uri(settings: Settings) -> str:
    """Where the CDC job's checkpoints go on the object store: `s3://<bucket>/<storage.checkpoint_prefix>`."""
    bucket, _ = warehouse_location(settings)
    return f"s3://{bucket}/{settings.storage.checkpoint_prefix.strip('/')}"


def s3_endpoint(settings: Settings) -> str:
    """`storage.endpoint`, or the embedded store's S3 address (which must be running: `icetide stack up`)."""
    if settings.storage.endpoint:
        return settings.storage.endpoint
    from icetide.services.object_store import ObjectStore

    endpoint = ObjectStore(settings.state_dir).recorded_endpoint()
    if not endpoint:
        raise StackError(f"the embedded object store of {settings.state_dir} is not running: "
                         "start it with `icetide stack up` (or set storage.endpoint)")
    return endpoint


def iceberg_io_properties(settings: Settings, role: Role) -> dict[str, str]:
    """Iceberg catalog properties for S3FileIO as `role` (empty for local storage).

    When the role's key is in a file (the embedded store's identity files, `storage.credentials.file`,
    `storage.identities.<role>.file`) they name the file, not the key: S3FileIO asks icetide's
    `FileCredentialsProvider` (jvm/, on every engine's classpath) for the key on each request, and it re-reads
    the file once it changed, so Spark, the Flink job and the REST catalog server follow `stack rotate s3`
    without a restart. A key from environment variables is passed as it is (it carries the secret: hand
    such properties to an engine, never to a log) and is not followed."""
    storage = settings.storage
    if storage.kind != "s3":
        return {}
    key = s3_key(settings, role)  # read here too: a missing or malformed file fails now, naming the setting
    props = {
        "io-impl": S3_FILE_IO,
        "s3.endpoint": s3_endpoint(settings),
        "s3.path-style-access": "true" if storage.path_style else "false",
        "client.region": storage.region,
    }
    ref = key_reference(settings, role)
    if ref is None:
        props["s3.access-key-id"] = key.access_key_id
        props["s3.secret-access-key"] = key.secret_access_key.get_secret_value()
    else:
        props[CREDENTIALS_PROVIDER_PROPERTY] = FILE_CREDENTIALS_PROVIDER
        props[f"{CREDENTIALS_PROVIDER_PROPERTY}.file"] = str(ref[0])
        props[f"{CREDENTIALS_PROVIDER_PROPERTY}.profile"] = ref[1]
    if storage.sse == "s3":
        props["s3.sse.type"] = "s3"
    return props


def pyiceberg_io_properties(settings: Settings, role: Role) -> dict[str, str]:
    """PyIceberg's S3 properties with `role`'s key (pyarrow's S3FileSystem; path-style is its default with
    an endpoint)."""
    storage = settings.storage
    if storage.kind != "s3":
        return {}
    key = s3_key(settings, role)
    props = {
        "s3.endpoint": s3_endpoint(settings),
        "s3.region": storage.region,
        "s3.access-key-id": key.access_key_id,
        "s3.secret-access-key": key.secret_access_key.get_secret_value(),
    }
    if not storage.path_style:
        props["s3.force-virtual-addressing"] = "true"
    return props


def secret_values(props: dict[str, str]) -> set[str]:
    """The values of `props` that are secrets (for tests and log scrubbing)."""
    return {v for k, v in props.items() if any(w in k for w in ("secret", "password", "token", "credential"))}
