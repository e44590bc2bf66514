"""An object store icetide does not run itself, set up the way the embedded stack sets up its own: the init job
of docker-compose.yml and k8s/ (`icetide stack store-secrets`, `icetide stack provision`; docs/deploy.md).

`store_secrets` makes, once, what the store itself needs before it starts: its admin key (SeaweedFS takes
`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` from its environment as its one static admin identity) and the
SSE-S3 key-encryption key (`WEED_S3_SSE_KEK`), as two env files the operator turns into secrets.

`provision` then does, at `storage.endpoint` and signed with the admin key (`storage.identities.admin`), what
`ObjectStore.start` does for the embedded store, with the same code: the warehouse bucket with SSE-S3 as its
default encryption (`ensure_bucket`; the backup bucket of an `s3://` `dr.location` the same way), and one IAM
user per role with the policy `identities.policy()` generates and one key (`Identities.ensure`) — no policy
document exists anywhere but there. It also turns on versioning (an overwritten or deleted object stays
recoverable) with a lifecycle rule that expires noncurrent versions after `noncurrent_days`, so maintenance's
deletes still free space.

Each role's key goes to `<out>/<role>/credentials` (an AWS shared-credentials file, 0600) and, in a Kubernetes
Job, to one Secret per role (`icetide-s3-<role>`, key `credentials`), applied through the API server as the
Job's service account. A key read
from `<known>/<role>/credentials` that the store still lists is kept, so a second run of the init job leaves
the running pods' keys alone. Nothing returned or printed holds a secret.
"""

from __future__ import annotations

import json
import os
import secrets
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icetide.errors import ConfigError, StackError
from icetide.services.identities import Identities, user_name
from icetide.services.object_store import ensure_versioned_bucket, s3_client
from icetide.storage import S3Key, s3_key, uses_embedded_store, warehouse_location

if TYPE_CHECKING:
    from icetide.settings import Role, Settings

ADMIN_ENV = "s3-admin.env"  # AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY: the store's admin (and the init job's)
KEK_ENV = "s3-kek.env"  # WEED_S3_SSE_KEK: the store's only; losing it loses every SSE-S3 object
SECRET_PREFIX = "icetide-s3-"  # the Kubernetes Secret of role R is icetide-s3-R
CREDENTIALS_KEY = "credentials"  # the file name under <out>/<role>/ and the Secret's key


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def store_secrets(out: Path) -> dict[str, Any]:
    """Write `<out>/s3-admin.env` (a new admin key) and `<out>/s3-kek.env` (a new key-encryption key), mode
    0600. Refused when either exists: a second KEK would not read the data the first one encrypted."""
    out.mkdir(parents=True, exist_ok=True)
    admin, kek = out / ADMIN_ENV, out / KEK_ENV
    present = [p.name for p in (admin, kek) if p.exists()]
    if present:
        raise StackError(f"{', '.join(present)} already in {out}: kept (a new key-encryption key cannot read the "
                         "data the old one encrypted); remove them yourself to start a new, empty store")
    key = S3Key.generate("icetide-admin")
    _write_private(admin, f"AWS_ACCESS_KEY_ID={key.access_key_id}\n"
                          f"AWS_SECRET_ACCESS_KEY={key.secret_access_key.get_secret_value()}\n")
    _write_private(kek, f"WEED_S3_SSE_KEK={secrets.token_hex(32)}\n")
    return {"admin_env": str(admin), "kek_env": str(kek), "admin_access_key_id": key.access_key_id}


def _wait_for_store(client: Any, endpoint: str, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            client.list_buckets()
            return
        except Exception as exc:  # not up yet, or the admin key is refused: retry, then say which
            if time.monotonic() > deadline:
                raise StackError(f"the object store at {endpoint} did not accept the admin key within {wait_s:.0f}s "
                                 f"({type(exc).__name__}): is it running, and does it hold the same admin key?"
                                 ) from None
            time.sleep(2.0)


SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
API_SERVER = "https://kubernetes.default.svc"
FIELD_MANAGER = "icetide-s3-init"


def secret_manifest(role: Role, key: S3Key) -> dict[str, Any]:
    """The Secret `icetide-s3-<role>` holding the role's credentials file (the secret inside)."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": f"{SECRET_PREFIX}{role}",
                         "labels": {"app.kubernetes.io/part-of": "icetide", "icetide.io/s3-role": role}},
            "stringData": {CREDENTIALS_KEY: f"[default]\naws_access_key_id = {key.access_key_id}\n"
                                            f"aws_secret_access_key = {key.secret_access_key.get_secret_value()}\n"}}


def apply_k8s_secrets(keys: dict[Role, S3Key], api: str = API_SERVER,
                      account: Path = SERVICE_ACCOUNT) -> list[str]:
    """Create or update each role's Secret in the pod's own namespace by server-side apply, as the pod's
    service account (k8s/lake/s3-init.yaml grants it these Secrets only); the Secrets' names."""
    import ssl
    import urllib.error
    import urllib.request

    token = (account / "token").read_text().strip()
    namespace = (account / "namespace").read_text().strip()
    context = ssl.create_default_context(cafile=str(account / "ca.crt")) if api.startswith("https:") else None
    names = []
    for role, key in keys.items():
        body = secret_manifest(role, key)
        name = body["metadata"]["name"]
        request = urllib.request.Request(
            f"{api}/api/v1/namespaces/{namespace}/secrets/{name}?fieldManager={FIELD_MANAGER}&force=true",
            data=json.dumps(body).encode(), method="PATCH",
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/apply-patch+yaml",
                     "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=30, context=context):
                pass
        except urllib.error.HTTPError as exc:  # the body may echo the request: never shown
            raise StackError(f"the Kubernetes API refused Secret {namespace}/{name}: HTTP {exc.code} {exc.reason} "
                             "(does the Job's service account have the Role of k8s/lake/s3-init.yaml?)") from None
        names.append(name)
    return names


def provision(settings: Settings, out: Path, known: Path | None = None, *, k8s_secrets: bool = False,
              noncurrent_days: int = 7, wait_s: float = 120.0) -> dict[str, Any]:
    """Bucket, versioning, identities, policies and keys on the store at `storage.endpoint` (see the module
    docstring); what was done, without secrets."""
    if settings.storage.kind != "s3" or uses_embedded_store(settings):
        raise ConfigError(f"{settings.source}: `stack provision` sets up an external object store: set "
                          "storage.kind s3 and storage.endpoint (the embedded store is set up by `stack up`)")
    endpoint, region = settings.storage.endpoint or "", settings.storage.region
    bucket, _ = warehouse_location(settings)
    client = s3_client(endpoint, s3_key(settings, "admin"), region, path_style=settings.storage.path_style)
    _wait_for_store(client, endpoint, wait_s)
    ensure_versioned_bucket(client, bucket, encrypted=settings.storage.sse == "s3", noncurrent_days=noncurrent_days)
    backup = settings.backup_bucket  # `dr.location: s3://…`: the same protection, encrypted whatever storage.sse
    if backup is not None:
        ensure_versioned_bucket(client, backup[0], encrypted=True, noncurrent_days=noncurrent_days)
    known = known or out
    keys = Identities(settings, endpoint, s3_key(settings, "admin")).ensure(
        key_file=lambda r: out / r / CREDENTIALS_KEY, known_file=lambda r: known / r / CREDENTIALS_KEY)
    secrets_made = apply_k8s_secrets(keys) if k8s_secrets else []
    return {"endpoint": endpoint, "bucket": bucket, "backup_bucket": backup[0] if backup else None,
            "sse": settings.storage.sse, "versioning": "Enabled",
            "noncurrent_days": noncurrent_days,
            "identities": {role: {"user": user_name(role), "access_key_id": key.access_key_id,
                                  "credentials_file": str(out / role / CREDENTIALS_KEY)}
                           for role, key in keys.items()},
            "k8s_secrets": secrets_made}
