"""Flink's S3 file system (the `flink-s3-fs-hadoop` plugin) for the CDC job's checkpoints, as the `cdc` role.

Used by the job for PyFlink's local mini-cluster (`streaming/job.py`, `streaming/checkpoints.py`) and by
`icetide flink up` for a session cluster's config.yaml (`services/flink_cluster.py`): a Flink file system is
configured in each process when it starts, from the same keys. When the `cdc` key is in a file, the plugin's
s3a is given icetide's `io.icetide.s3a.FileCredentialsProvider` and the file's path (the provider's jar sits
in the plugin's folder; `make setup` builds it), so checkpoints keep landing after `stack rotate s3 --role cdc`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from icetide import jvm
from icetide.errors import SetupError

if TYPE_CHECKING:
    from icetide.settings import Settings

PLUGIN_GROUP = "flink-plugins/s3-fs-hadoop"
S3A_FILE_PROVIDER = "io.icetide.s3a.FileCredentialsProvider"  # jvm/s3a/: AWS SDK v1, as the plugin bundles it


def plugins_dir() -> Path:
    """FLINK_PLUGINS_DIR with the S3 file system plugin and icetide's provider beside it (`make setup`)."""
    folder = jvm.jar_cache() / PLUGIN_GROUP
    for pattern, what in (("flink-s3-fs-hadoop-*.jar", "Flink's S3 file system plugin"),
                          ("icetide-s3a.jar", "icetide's s3a credentials provider")):
        if not any(folder.glob(pattern)):
            raise SetupError(f"{what} is not in {folder}: run `make setup`")
    return folder.parent


def flink_s3_config(settings: Settings) -> dict[str, str]:
    """Flink's `s3.*` keys (mirrored to Hadoop's fs.s3a.*) for the object store, as the `cdc` role: the key's
    file for icetide's provider, or (a key from environment variables) the key itself, a secret."""
    if settings.storage.kind != "s3":
        return {}
    from icetide.storage import key_reference, s3_endpoint, s3_key

    endpoint, key = s3_endpoint(settings), s3_key(settings, "cdc")
    conf = {
        "s3.endpoint": endpoint,
        "s3.endpoint.region": settings.storage.region,
        "s3.path.style.access": "true" if settings.storage.path_style else "false",
        "s3.connection.ssl.enabled": "false" if endpoint.startswith("http://") else "true",
    }
    ref = key_reference(settings, "cdc")
    if ref is None:
        conf |= {"s3.access-key": key.access_key_id, "s3.secret-key": key.secret_access_key.get_secret_value(),
                 "s3.aws.credentials.provider": "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider"}
    else:
        conf |= {"s3.aws.credentials.provider": S3A_FILE_PROVIDER,
                 "s3.icetide.credentials.file": str(ref[0]), "s3.icetide.credentials.profile": ref[1]}
    if settings.storage.sse == "s3":
        conf["s3.encryption.algorithm"] = "AES256"  # SSE-S3 (Hadoop s3a names it by its cipher)
    return conf
