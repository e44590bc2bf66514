"""The embedded object store's least-privilege identities: one IAM user per role, its policy and its key.

`ensure` (at `icetide stack up`, signed with the store's admin key) creates, through SeaweedFS's IAM API on
the S3 port, a user `icetide-<role>` per role with one inline policy (`POLICY_NAME`) and one access key,
written to `<state_dir>/object-store/identities/<role>` (an AWS shared-credentials file, mode 0600; never
printed). On a later `stack up` the policy is put again (the settings may have moved the warehouse) and a
role's key is kept while the store still lists it. `rotate` gives a role a new key, rewrites its file,
waits `grace_s` for the processes that use it to re-read the file (PyIceberg before its next table load; the
JVMs' S3 credentials providers, icetide's `FileCredentialsProvider`s, within about a second; the embedded
Trino's `credential_process`, for `bi` at least its key's lifetime while Trino runs), then deletes the old key.
No process is restarted.

The policies, on the warehouse bucket B, the warehouse prefix W and the checkpoint prefix C
(`storage.checkpoint_prefix`) — nothing else, deny by default:

| role    | get + list W | put W | delete W | get/put/delete + list C |
|---------|--------------|-------|----------|-------------------------|
| writer  | yes          | yes   | no       | no                      |
| cdc     | yes          | no    | no       | yes                     |
| maint   | yes          | yes   | yes      | no                      |
| bi      | yes          | no    | no       | no                      |
| catalog | yes          | yes   | yes      | no                      |
| backup  | yes          | no    | no       | no                      |

`backup` (`icetide dr backup` to an `s3://` `dr.location` bucket D, prefix P) also gets get/put/delete + list
on P, nothing else on D (whether D is encrypted and versioned is read from a probe object it puts, not from D's
settings: SeaweedFS makes reading those an admin action).

The writer cannot delete: Iceberg's commits only add files (a failed commit's clean-up of its own new files
is best effort and logged; what it leaves is an orphan for `maint`). docs/security.md has the rationale.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from icetide.errors import StackError
from icetide.storage import (
    S3Key,
    embedded_credentials_file,
    read_credentials_file,
    roles,
    warehouse_location,
    write_credentials_file,
)

if TYPE_CHECKING:
    from icetide.settings import Role, Settings

POLICY_NAME = "icetide-role"
USER_PREFIX = "icetide-"
READ = ("s3:GetObject",)
WRITE = ("s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts")
DELETE = ("s3:DeleteObject",)
# which grants each role gets on the warehouse prefix (W) and the checkpoint prefix (C)
GRANTS: dict[str, tuple[tuple[str, ...], bool]] = {
    "writer": (READ + WRITE, False),
    "cdc": (READ, True),
    "maint": (READ + WRITE + DELETE, False),
    "bi": (READ, False),
    "catalog": (READ + WRITE + DELETE, False),
    "backup": (READ, False),
}


def user_name(role: Role) -> str:
    return f"{USER_PREFIX}{role}"


def _prefix_grant(bucket: str, prefix: str, actions: tuple[str, ...]) -> list[dict[str, Any]]:
    """`actions` on the objects under `prefix/`, and listing the bucket under that prefix only."""
    return [
        {"Effect": "Allow", "Action": list(actions), "Resource": [f"arn:aws:s3:::{bucket}/{prefix}/*"]},
        {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [f"arn:aws:s3:::{bucket}"],
         "Condition": {"StringLike": {"s3:prefix": [prefix, f"{prefix}/*"]}}},
    ]


def policy(settings: Settings, role: Role) -> dict[str, Any]:
    """The IAM policy document of `role` (see the module docstring's table)."""
    bucket, warehouse = warehouse_location(settings)
    actions, checkpoints = GRANTS[role]
    statements = _prefix_grant(bucket, warehouse, actions)
    if checkpoints:
        statements += _prefix_grant(bucket, settings.storage.checkpoint_prefix.strip("/"), READ + WRITE + DELETE)
    backup = settings.backup_bucket
    if role == "backup" and backup is not None:
        statements += _prefix_grant(backup[0], backup[1], READ + WRITE + DELETE)
    return {"Version": "2012-10-17", "Statement": statements}


def iam_client(endpoint: str, admin: S3Key, region: str) -> Any:
    """A boto3 IAM client for the store's IAM API (on its S3 port), signed with the admin key."""
    import boto3
    from botocore.config import Config

    return boto3.client("iam", endpoint_url=endpoint, region_name=region,
                        config=Config(retries={"max_attempts": 1, "mode": "standard"},
                                      connect_timeout=5, read_timeout=10),
                        aws_access_key_id=admin.access_key_id,
                        aws_secret_access_key=admin.secret_access_key.get_secret_value())


@dataclass
class Identities:
    """The roles' users on one running embedded store."""

    settings: Settings
    endpoint: str
    admin: S3Key

    def __post_init__(self) -> None:
        self.iam = iam_client(self.endpoint, self.admin, self.settings.storage.region)

    def _keys(self, role: Role) -> list[str]:
        found = self.iam.list_access_keys(UserName=user_name(role))["AccessKeyMetadata"]
        return [k["AccessKeyId"] for k in found]

    def _create_key(self, role: Role) -> S3Key:
        made = self.iam.create_access_key(UserName=user_name(role))["AccessKey"]
        return S3Key(made["AccessKeyId"], SecretStr(made["SecretAccessKey"]))

    def ensure(self, key_file: Callable[[Role], Path] | None = None,
               known_file: Callable[[Role], Path] | None = None) -> dict[Role, S3Key]:
        """Every role's user, policy and key (made or kept); the roles' keys.

        A role's key is written to `key_file(role)` (default: the embedded store's file of the role). The
        key in `known_file(role)` (default: that same file) is kept while the store still lists it, so a
        deployment's init job, which writes to a fresh folder, keeps the keys its earlier run handed out."""
        key_file = key_file or (lambda r: embedded_credentials_file(self.settings, r))
        known_file = known_file or key_file
        users = {u["UserName"] for u in self.iam.list_users()["Users"]}
        out: dict[Role, S3Key] = {}
        for role in roles():
            name = user_name(role)
            if name not in users:
                self.iam.create_user(UserName=name)
            self.iam.put_user_policy(UserName=name, PolicyName=POLICY_NAME,
                                     PolicyDocument=json.dumps(policy(self.settings, role)))
            known, path = known_file(role), key_file(role)
            listed = self._keys(role)
            current = read_credentials_file(known, "default", "storage.credentials", str(known)) \
                if known.is_file() else None
            if current is None or current.access_key_id not in listed:
                current = self._create_key(role)
            held = read_credentials_file(path, "default", "storage.credentials", str(path)) \
                if path.is_file() else None
            if held is None or held.access_key_id != current.access_key_id:
                write_credentials_file(path, current)
            for stale in set(listed) - {current.access_key_id}:  # a rotation interrupted before its delete
                self.iam.delete_access_key(UserName=name, AccessKeyId=stale)
            out[role] = current
        return out

    def rotate(self, role: Role, *, grace_s: float, check: Any = None) -> dict[str, Any]:
        """A new key for `role`: made, written to the role's file, checked, and after `grace_s` the old keys
        deleted. `check(key)` (optional) must succeed with the new key before anything is deleted."""
        name = user_name(role)
        path = embedded_credentials_file(self.settings, role)
        old = self._keys(role)
        new = self._create_key(role)
        started = time.monotonic()
        if check is not None:
            deadline = started + 10.0
            while True:
                try:
                    check(new)
                    break
                except Exception as exc:  # not yet known to the S3 gateway, or refused: retry, then give up
                    if time.monotonic() > deadline:
                        self.iam.delete_access_key(UserName=name, AccessKeyId=new.access_key_id)
                        raise StackError(f"the new {role} key was not accepted within 10 s "
                                         f"({type(exc).__name__}); the old key stays in use") from None
                    time.sleep(0.2)
        previous = read_credentials_file(path, "default", "storage.credentials", str(path)) if path.is_file() else None
        write_credentials_file(path, new)
        time.sleep(grace_s)
        for key_id in old:
            self.iam.delete_access_key(UserName=name, AccessKeyId=key_id)
        refused = None
        if check is not None and previous is not None and previous.access_key_id in old:
            refused = _refused_soon(check, previous)
        return {"role": role, "user": name, "access_key_id": new.access_key_id, "deleted": old,
                "old_key_refused": refused, "credentials_file": str(path), "grace_s": grace_s,
                "seconds": round(time.monotonic() - started, 2)}


def _refused_soon(check: Any, key: S3Key, within_s: float = 5.0) -> bool:
    """True once `check(key)` fails (a deleted key is refused within milliseconds), False if it still works."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            check(key)
        except Exception:  # refused: what a deleted key must be
            return True
        time.sleep(0.1)
    return False


def rotate_s3(settings: Settings, role: Role | None, grace_s: float) -> list[dict[str, Any]]:
    """`icetide stack rotate s3`: a new key for `role` (every role when None) on the running embedded store;
    the old key is deleted after `grace_s` and checked to be refused."""
    from icetide.services.object_store import ObjectStore, s3_client
    from icetide.storage import s3_endpoint, uses_embedded_store

    if not uses_embedded_store(settings):
        raise StackError("`stack rotate s3` rotates the embedded object store's keys (storage.kind s3 without "
                         "storage.endpoint); for an external store make the new key there, rewrite the file "
                         "storage.identities.<role>.file names, then delete the old key (docs/security.md)")
    endpoint = s3_endpoint(settings)
    bucket, warehouse = warehouse_location(settings)

    def check(key: S3Key) -> None:  # every role may list the warehouse prefix
        s3_client(endpoint, key, settings.storage.region, timeout_s=3.0).list_objects_v2(
            Bucket=bucket, Prefix=f"{warehouse}/", MaxKeys=1)

    manager = ObjectStore(settings.state_dir).identities(settings)
    return [manager.rotate(r, grace_s=_grace(settings, r, grace_s), check=check) for r in ([role] if role else roles())]


def _grace(settings: Settings, role: Role, grace_s: float) -> float:
    """`grace_s`, but for `bi` while the embedded Trino runs from this state dir at least the lifetime of the key
    its S3 client holds (`trino_key.LIFETIME_S`): by the time the old key is deleted, Trino's copy has expired
    and its next request asks for the file's new key (icetide/services/trino_catalog.py)."""
    if role != "bi":
        return grace_s
    from icetide.services import trino_key
    from icetide.services.trino import TrinoServer

    if TrinoServer(settings.state_dir).process.live_pid() is None:
        return grace_s
    return max(grace_s, float(trino_key.LIFETIME_S + 1))
