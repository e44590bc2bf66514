"""`icetide stack provision` against a real SeaweedFS, as the deployments' init job runs it.

The store is one of its own (not the session's lake: provisioning re-keys every role's user), started by the
stack's ObjectStore from a fresh state dir and then addressed only by endpoint and admin key, as a deployed
store is. Checked: the bucket's default encryption, versioning and lifecycle; each role's key does what its
policy allows and is refused what it does not; a second run keeps the keys.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from icetide.services.object_store import ObjectStore, s3_client
from icetide.services.provision import provision
from icetide.settings import Settings, load_settings
from icetide.storage import embedded_credentials_file, read_credentials_file, roles

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def deployed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """Settings for an 'external' store at a running SeaweedFS, signed with its admin key."""
    state = tmp_path_factory.mktemp("deployed-store")
    embedded = load_settings(None, {"ICETIDE__STACK__STATE_DIR": str(state), "ICETIDE__STORAGE__KIND": "s3"})
    store = ObjectStore()
    try:
        endpoint = store.start(embedded, embedded.state_dir)["s3"]
        yield load_settings(None, {
            "ICETIDE__STACK__STATE_DIR": str(state / "client"), "ICETIDE__STORAGE__KIND": "s3",
            "ICETIDE__STORAGE__ENDPOINT": endpoint,
            "ICETIDE__STORAGE__IDENTITIES__ADMIN__FILE": str(embedded_credentials_file(embedded, "admin")),
        })
    finally:
        store.stop()


def _client(settings: Settings, out: Path, role: str) -> object:
    key = read_credentials_file(out / role / "credentials", "default", "test", "test")
    return s3_client(settings.storage.endpoint or "", key, settings.storage.region, timeout_s=5.0)


def _eventually(call: object, **kwargs: object) -> object:
    """`call(**kwargs)` once the store knows the new key (it may take a moment to reach the S3 gateway)."""
    deadline = time.monotonic() + 10.0
    while True:
        try:
            return call(**kwargs)  # type: ignore[operator]
        except ClientError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def _refused(call: object, **kwargs: object) -> bool:
    try:
        call(**kwargs)  # type: ignore[operator]
    except ClientError as exc:
        return exc.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    return False


def test_provision_sets_up_bucket_and_least_privilege_keys(deployed: Settings, tmp_path: Path) -> None:
    out = tmp_path / "identities"
    done = provision(deployed, out, wait_s=30)
    bucket = deployed.storage.bucket
    assert set(done["identities"]) == set(roles())
    for role in roles():
        assert stat.S_IMODE((out / role / "credentials").stat().st_mode) == 0o600

    admin = s3_client(deployed.storage.endpoint or "", read_credentials_file(
        Path(str(deployed.storage.identities["admin"].file)), "default", "test", "test"), deployed.storage.region)
    rule = admin.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"][0]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert admin.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    [lifecycle] = admin.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    assert lifecycle["NoncurrentVersionExpiration"]["NoncurrentDays"] == 7

    data, checkpoint = "warehouse/probe/data.bin", "checkpoints/cdc/probe/_metadata"
    writer, cdc, bi, maint = (_client(deployed, out, r) for r in ("writer", "cdc", "bi", "maint"))
    # each key first does something its policy allows (so a refusal below is the policy, not an unknown key)
    _eventually(writer.put_object, Bucket=bucket, Key=data, Body=b"row")  # type: ignore[attr-defined]
    got = _eventually(bi.get_object, Bucket=bucket, Key=data)  # type: ignore[attr-defined]
    assert got["Body"].read() == b"row"  # type: ignore[index]
    _eventually(cdc.put_object, Bucket=bucket, Key=checkpoint, Body=b"chk")  # type: ignore[attr-defined]
    assert _refused(writer.delete_object, Bucket=bucket, Key=data)  # type: ignore[attr-defined]
    assert _refused(bi.put_object, Bucket=bucket, Key="warehouse/probe/x", Body=b"x")  # type: ignore[attr-defined]
    assert _refused(bi.get_object, Bucket=bucket, Key=checkpoint)  # type: ignore[attr-defined]
    assert _refused(writer.put_object, Bucket=bucket, Key=checkpoint, Body=b"x")  # type: ignore[attr-defined]
    _eventually(maint.delete_object, Bucket=bucket, Key=data)  # type: ignore[attr-defined]

    again = provision(deployed, tmp_path / "second-run", known=out, wait_s=30)  # a re-run of the init job
    assert {r: i["access_key_id"] for r, i in again["identities"].items()} == \
        {r: i["access_key_id"] for r, i in done["identities"].items()}
    # the first run's keys still work (bi may list the warehouse prefix, not the bucket: no HeadBucket)
    bi.list_objects_v2(Bucket=bucket, Prefix="warehouse/", MaxKeys=1)  # type: ignore[attr-defined]
