"""Where the CDC job's retained checkpoints live: a local folder, or the object store (`storage.kind: s3`).

`flink.checkpoint_dir` sets the root; by default `<state_dir>/cdc/checkpoints` on local storage and
`s3://<storage.bucket>/checkpoints/cdc` on S3, so the positions survive the machine the job ran on. Under the
root, one folder per set of tables (a job restores only a checkpoint of the same job), then Flink's own
`<job id>/chk-N/_metadata`.

Flink reaches S3 through its `flink-s3-fs-hadoop` plugin (a plugin has its own class loader: it is found in
`FLINK_PLUGINS_DIR`, not on pipeline.jars), configured with `s3.*` keys from the same settings and key as
Iceberg's S3FileIO (`icetide/flink_s3.py`, shared with the cluster of `icetide flink up`). When the `cdc`
key is in a file, the plugin's s3a is given icetide's `io.icetide.s3a.FileCredentialsProvider` and the file's
path (the provider's jar sits in the plugin's folder; `make setup` builds it), so checkpoints keep landing
after `stack rotate s3 --role cdc`. Listing and dropping checkpoints on S3 use boto3 with that key, read each
time.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

# the S3 file system's settings are the kernel's (`icetide flink up` renders them for its cluster too)
from icetide.flink_s3 import PLUGIN_GROUP as PLUGIN_GROUP
from icetide.flink_s3 import S3A_FILE_PROVIDER as S3A_FILE_PROVIDER
from icetide.flink_s3 import flink_s3_config as flink_s3_config
from icetide.flink_s3 import plugins_dir as plugins_dir

if TYPE_CHECKING:
    from icetide.settings import Settings


def checkpoint_root(settings: Settings) -> str:
    """The URI under which every CDC job keeps its checkpoints."""
    if settings.flink.checkpoint_dir:
        return settings.flink.checkpoint_dir.rstrip("/")
    if settings.storage.kind == "s3":  # under the prefix only the `cdc` identity may write (services.identities)
        from icetide.storage import checkpoint_uri

        return f"{checkpoint_uri(settings)}/cdc"
    return (settings.state_dir / "cdc" / "checkpoints").as_uri()


def savepoint_root(settings: Settings) -> str:
    """Where `cdc stop --savepoint` puts savepoints: `savepoints` beside the checkpoint root (so `cdc run
    --reset`, which drops the checkpoints, keeps them)."""
    parent = checkpoint_root(settings).rsplit("/", 1)[0]
    return f"{parent}/savepoints"


def tables_dir(settings: Settings, tables: list[str]) -> str:
    """The checkpoint folder of one set of tables."""
    tables_id = hashlib.sha1(",".join(sorted(tables)).encode()).hexdigest()[:12]
    return f"{checkpoint_root(settings)}/{tables_id}"


def on_s3(uri: str) -> bool:
    return urlparse(uri).scheme in ("s3", "s3a")


def _client(settings: Settings) -> Any:
    from icetide.services.object_store import s3_client
    from icetide.storage import s3_endpoint, s3_key

    return s3_client(s3_endpoint(settings), s3_key(settings, "cdc"), settings.storage.region,
                     path_style=settings.storage.path_style, timeout_s=30.0)


def _objects(settings: Settings, uri: str) -> list[dict[str, Any]]:
    parsed = urlparse(uri)
    prefix = parsed.path.lstrip("/").rstrip("/") + "/"
    pages = _client(settings).get_paginator("list_objects_v2").paginate(Bucket=parsed.netloc, Prefix=prefix)
    return [obj for page in pages for obj in page.get("Contents", [])]


def completed_checkpoints(settings: Settings, uri: str) -> list[tuple[str, float]]:
    """Every completed checkpoint (`chk-N` with `_metadata`) under `uri`: its URI and when its `_metadata` was
    written (seconds since the epoch; the object's LastModified on S3, whole seconds there)."""
    if not on_s3(uri):
        root = Path(urlparse(uri).path)
        found = list(root.glob("*/chk-*/_metadata")) if root.is_dir() else []
        return [(p.parent.as_uri(), p.stat().st_mtime) for p in found]
    bucket = urlparse(uri).netloc
    return [(f"s3://{bucket}/{o['Key'].rsplit('/', 1)[0]}", o["LastModified"].timestamp())
            for o in _objects(settings, uri)
            if o["Key"].endswith("/_metadata") and o["Key"].rsplit("/", 2)[-2].startswith("chk-")]


def latest_checkpoint(settings: Settings, uri: str) -> str | None:
    """The URI of the newest completed checkpoint under `uri`, if any."""
    done = completed_checkpoints(settings, uri)
    return max(done, key=lambda c: c[1])[0] if done else None


def drop_checkpoints(settings: Settings) -> int:
    """Delete every CDC checkpoint (`cdc run --reset`); the number of files removed."""
    uri = checkpoint_root(settings)
    if not on_s3(uri):
        import shutil

        root = Path(urlparse(uri).path)
        count = sum(1 for p in root.rglob("*") if p.is_file()) if root.is_dir() else 0
        if root.is_dir():
            shutil.rmtree(root)
        return count
    keys = [o["Key"] for o in _objects(settings, uri)]
    client = _client(settings)
    for start in range(0, len(keys), 1000):
        chunk = keys[start:start + 1000]
        client.delete_objects(Bucket=urlparse(uri).netloc,
                              Delete={"Objects": [{"Key": k} for k in chunk], "Quiet": True})
    return len(keys)
