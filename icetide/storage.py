"""The object store the tables live on (`storage.kind: s3`): its key, its endpoint, and its properties
for each engine — Iceberg's S3FileIO in the JVMs (Spark, Flink, the REST catalog server) and PyIceberg's
pyarrow S3 file IO.

The key is never a setting: `storage.credentials` names where it is read from, an AWS shared-credentials
file or two environment variables; with neither, the embedded store's own key under the state dir,
written by `icetide stack up`. Errors name the setting and the file, never the secret.
"""

from __future__ import annotations

import configparser
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from icetide.errors import ConfigError, StackError

if TYPE_CHECKING:
    from icetide.settings import Settings

S3_FILE_IO = "org.apache.iceberg.aws.s3.S3FileIO"
STORE_DIR = "object-store"  # <state_dir>/object-store/: the embedded store's data, key and credentials


@dataclass(frozen=True)
class S3Key:
    """An access key: the id is an identifier, the secret a SecretStr (never in a repr or a log)."""

    access_key_id: str
    secret_access_key: SecretStr

    @classmethod
    def generate(cls, prefix: str = "icetide") -> S3Key:
        return cls(f"{prefix}-{secrets.token_hex(6)}", SecretStr(secrets.token_urlsafe(30)))


def embedded_credentials_file(settings: Settings) -> Path:
    """The embedded object store's own key, an AWS shared-credentials file (mode 0600)."""
    return settings.state_dir / STORE_DIR / "credentials"


def uses_embedded_store(settings: Settings) -> bool:
    return settings.storage.kind == "s3" and not settings.storage.endpoint


def write_credentials_file(path: Path, key: S3Key, profile: str = "default") -> None:
    """Write `key` as an AWS shared-credentials file readable by its owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (f"[{profile}]\naws_access_key_id = {key.access_key_id}\n"
            f"aws_secret_access_key = {key.secret_access_key.get_secret_value()}\n")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    path.chmod(0o600)


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


def s3_key(settings: Settings, environ: dict[str, str] | None = None) -> S3Key:
    """The access key the engines use, read from where `storage.credentials` points."""
    env = os.environ if environ is None else environ
    creds, origin = settings.storage.credentials, settings.source
    by_env = creds.access_key_env or creds.secret_key_env
    if creds.file and by_env:
        raise ConfigError(f"{origin}: settings 'storage.credentials.file' and 'storage.credentials.*_env' "
                          "are both set: the key is read from one place")
    if by_env:
        values = []
        for field in ("access_key_env", "secret_key_env"):
            name = getattr(creds, field)
            if not name:
                raise ConfigError(f"{origin}: setting 'storage.credentials.{field}' is not set "
                                  "(the key id and the secret are read from two environment variables)")
            value = env.get(name, "").strip()
            if not value:
                raise ConfigError(f"{origin}: setting 'storage.credentials.{field}': "
                                  f"environment variable {name} is not set")
            values.append(value)
        return S3Key(values[0], SecretStr(values[1]))
    if creds.file:
        return read_credentials_file(creds.file.expanduser(), creds.profile, "storage.credentials.file", origin)
    if not uses_embedded_store(settings):
        raise ConfigError(f"{origin}: setting 'storage.credentials': the S3 endpoint {settings.storage.endpoint} "
                          "needs a key: set storage.credentials.file or storage.credentials.access_key_env "
                          "and .secret_key_env")
    path = embedded_credentials_file(settings)
    if not path.is_file():
        raise StackError(f"the embedded object store of {settings.state_dir} has no key yet ({path}): "
                         "start it with `icetide stack up`")
    return read_credentials_file(path, "default", "storage.credentials", origin)


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


def iceberg_io_properties(settings: Settings) -> dict[str, str]:
    """Iceberg catalog properties for S3FileIO (empty for local storage). They carry the secret key:
    hand them to an engine, never to a log."""
    storage = settings.storage
    if storage.kind != "s3":
        return {}
    key = s3_key(settings)
    props = {
        "io-impl": S3_FILE_IO,
        "s3.endpoint": s3_endpoint(settings),
        "s3.path-style-access": "true" if storage.path_style else "false",
        "client.region": storage.region,
        "s3.access-key-id": key.access_key_id,
        "s3.secret-access-key": key.secret_access_key.get_secret_value(),
    }
    if storage.sse == "s3":
        props["s3.sse.type"] = "s3"
    return props


def pyiceberg_io_properties(settings: Settings) -> dict[str, str]:
    """PyIceberg's S3 properties (pyarrow's S3FileSystem; path-style is its default with an endpoint)."""
    storage = settings.storage
    if storage.kind != "s3":
        return {}
    key = s3_key(settings)
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
