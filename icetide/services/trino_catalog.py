"""The embedded Trino's Iceberg catalog: the engines' own catalog and warehouse, in either lake shape.

- `catalog.type: jdbc` (the default): the JDBC catalog in SQLite and the local warehouse, through Trino's
  native local file system.
- `catalog.type: rest`: the REST catalog at `catalog.uri`, or the embedded server's address while it runs
  (`icetide stack up`); `catalog.token` (a bearer token) or `catalog.credential` (OAuth2 client credentials)
  switch on Trino's OAuth2 security. With `storage.kind: s3` table files are read through Trino's native S3
  file system (`fs.native-s3.enabled`) at the store's endpoint, path-style as `storage.path_style` says,
  with the SSE-S3 setting matching `storage.sse` (it only shapes writes; Trino has no write access anyway).

Trino reads the object store as the read-only `bi` role (get + list on the warehouse prefix,
icetide/services/identities.py): an INSERT or DDL that writes files fails on S3 whatever the rules say.

Rotation without a restart: when the `bi` key is in a file (the embedded store's identity file, or
`storage.identities.bi.file` / `storage.credentials.file`), no key is put in the catalog file. Trino's S3 client
then takes the AWS SDK v2 default credentials chain, and Trino's process environment points that chain at a
shared-credentials file of Trino's own (`<state_dir>/trino/aws/credentials`, no secret in it) whose one profile
is a `credential_process`: `icetide/services/trino_key.py`, which prints the role file's current key with an
expiration 16 s ahead. The SDK holds that key until the expiration at most and runs the process again for the
next request after it, so a rewritten key file is used within 16 s, and `icetide stack rotate s3 --role bi`
waits longer than that before it deletes the old key while a Trino runs from the state dir
(`identities._grace`): by then Trino's copy has expired. Every other inherited
`AWS_*` variable is dropped, the SDK's config file and instance metadata are off: no other key is picked up.

Why not the plain profile file: SDK 2.31's `ProfileCredentialsProvider` (Trino 476's) loads the profile file
once (`ProfileFileSupplier.fixedProfileFile` unless it is given a supplier, which Trino does not); with
`AWS_SHARED_CREDENTIALS_FILE` on the `bi` file itself, Trino kept signing with the deleted key after a
rotation (403, measured in tests/integration/test_trino_lake.py before this design). Re-rendering a static key
and restarting Trino on each rotation was the other way; it drops BI sessions for the ~20 s of a start.

A `bi` key from environment variables has no file to follow: it is rendered into the catalog file (mode 0600,
like every secret here) and a rotation of it needs `icetide trino down` / `up`.

Every property with a secret (the OAuth2 token or credential, a static S3 key) is only in the 0600 catalog
file; Trino's `Bootstrap` logger, which prints every property, is kept at WARN (icetide/services/trino.py).
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from icetide.errors import StackError
from icetide.services import trino_key

if TYPE_CHECKING:
    from icetide.settings import Role, Settings

ROLE: Role = "bi"  # the object-store identity Trino reads as
PROFILE = "icetide-bi"  # the one profile of Trino's own shared-credentials file


def catalog_properties(settings: Settings) -> dict[str, str]:
    """The Iceberg connector's catalog file over the engines' own catalog (read by every engine under one name)."""
    if settings.catalog.type == "rest":
        props = {"connector.name": "iceberg", **rest_properties(settings)}
    else:
        props = jdbc_properties(settings)
    props.update(file_system_properties(settings))
    # Iceberg's file statistics are over every row and the raw values: SHOW STATS and EXPLAIN
    # showed a row-filtered user the min/max and row count of rows outside the filter (the compiled
    # rules deny the session property that would turn them back on)
    props["iceberg.table-statistics-enabled"] = "false"
    return props


def jdbc_properties(settings: Settings) -> dict[str, str]:
    """The JDBC catalog in SQLite (Iceberg's JDBC catalog tables at schema version V1)."""
    if not settings.catalog_uri.startswith("jdbc:sqlite:"):
        raise StackError("the embedded Trino reads a JDBC catalog in SQLite or a REST catalog (catalog.type: "
                         "rest); a JDBC catalog with this URI is not supported yet")
    if settings.storage.kind != "local":
        raise StackError("the embedded Trino reads the JDBC catalog over a local warehouse only (storage.kind: "
                         "local); the S3 warehouse is read through the REST catalog (catalog.type: rest)")
    return {
        "connector.name": "iceberg",
        "iceberg.catalog.type": "jdbc",
        "iceberg.jdbc-catalog.driver-class": "org.sqlite.JDBC",
        "iceberg.jdbc-catalog.connection-url": settings.catalog_uri,
        "iceberg.jdbc-catalog.catalog-name": settings.catalog.name,
        "iceberg.jdbc-catalog.default-warehouse-dir": settings.warehouse,
        "iceberg.jdbc-catalog.schema-version": "V1",
    }


def rest_properties(settings: Settings) -> dict[str, str]:
    """The REST catalog: its URI (the embedded server's while it runs), the warehouse, OAuth2 when configured."""
    from icetide.catalog import catalog_uri

    props = {
        "iceberg.catalog.type": "rest",
        "iceberg.rest-catalog.uri": catalog_uri(settings),
        "iceberg.rest-catalog.warehouse": settings.warehouse,
    }
    token, credential = settings.catalog.token, settings.catalog.credential
    if token is not None or credential is not None:
        props["iceberg.rest-catalog.security"] = "OAUTH2"
        if token is not None:
            props["iceberg.rest-catalog.oauth2.token"] = token.get_secret_value()
        if credential is not None:
            props["iceberg.rest-catalog.oauth2.credential"] = credential.get_secret_value()
    return props


def file_system_properties(settings: Settings) -> dict[str, str]:
    """Trino's native file system for the warehouse: local, or S3 as the `bi` role."""
    if settings.storage.kind != "s3":
        return {"fs.native-local.enabled": "true", "local.location": "/"}
    from icetide.storage import key_reference, s3_endpoint, s3_key

    storage = settings.storage
    key = s3_key(settings, ROLE)  # read now: a missing or malformed key fails here, naming the setting
    props = {
        "fs.native-s3.enabled": "true",
        "s3.endpoint": s3_endpoint(settings),
        "s3.region": storage.region,
        "s3.path-style-access": "true" if storage.path_style else "false",
        "s3.sse.type": "S3" if storage.sse == "s3" else "NONE",
    }
    if key_reference(settings, ROLE) is None:  # from environment variables: no file to follow
        props["s3.aws-access-key"] = key.access_key_id
        props["s3.aws-secret-key"] = key.secret_access_key.get_secret_value()
    return props


def process_environment(settings: Settings, folder: Path) -> dict[str, str]:
    """What Trino's process environment adds for the S3 key (empty for local storage or a key rendered into
    the catalog file): a shared-credentials file of its own, `<folder>/credentials`, whose one profile has
    the `bi` key read by `credential_process` (icetide/services/trino_key.py) from the role's key file.
    Inherited `AWS_*` variables are dropped by the caller (`INHERITED_DROPPED`)."""
    if settings.storage.kind != "s3":
        return {}
    from icetide.services.trino import write_private
    from icetide.storage import key_reference

    ref = key_reference(settings, ROLE)
    if ref is None:
        return {}
    path, profile = ref
    command = " ".join(shlex.quote(part) for part in
                       (sys.executable, "-I", "-S", str(Path(trino_key.__file__).resolve()), str(path), profile))
    profile_file = folder / "credentials"
    write_private(profile_file, f"[{PROFILE}]\ncredential_process = {command}\n")
    return {"AWS_SHARED_CREDENTIALS_FILE": str(profile_file), "AWS_PROFILE": PROFILE,
            "AWS_CONFIG_FILE": os.devnull, "AWS_EC2_METADATA_DISABLED": "true"}


INHERITED_DROPPED = ("AWS_",)  # no key, profile or region of the caller's shell reaches Trino's S3 client
