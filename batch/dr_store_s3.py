"""A backup bucket on the object store (`dr.location: s3://<bucket>/<prefix>`), written with the `backup` role.

The bucket must have versioning Enabled and a default encryption: a backup is refused otherwise, naming the
bucket and what it lacks (a server-side copy into a bucket without default encryption stores plaintext).
`icetide stack up` (the embedded store) and `icetide stack provision` make it that way, with the same function
as the warehouse bucket. Files are streamed in and out (multipart for large ones), never held whole in memory;
S3 puts are atomic, so a key is a whole file or absent. With versioning, what `dr prune` deletes stays as
noncurrent versions until a lifecycle rule expires them (`stack provision` adds one; the embedded store keeps
them).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, Any

from icetide.errors import ConfigError

from batch.dr_store import CHUNK, BackupStore, Stored

if TYPE_CHECKING:
    from icetide.settings import Settings


class _Hashing:
    """A read-only stream that hashes and counts what is read through it."""

    def __init__(self, source: IO[bytes]) -> None:
        self.source, self.digest, self.size = source, hashlib.sha256(), 0

    def read(self, n: int | None = -1) -> bytes:
        # s3transfer reads a small file (below its multipart size) at once; pyarrow's streams want a size
        chunk = b"".join(iter(lambda: self.source.read(CHUNK), b"")) if n is None or n < 0 else self.source.read(n)
        self.digest.update(chunk)
        self.size += len(chunk)
        return chunk


class S3Store(BackupStore):
    """Backups under `s3://bucket/prefix/`."""

    def __init__(self, client: Any, bucket: str, prefix: str) -> None:
        self.client, self.bucket, self.prefix = client, bucket, prefix.strip("/")
        self.where = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._checked = False

    @classmethod
    def of(cls, settings: Settings) -> S3Store:
        from icetide.services.object_store import s3_client
        from icetide.storage import s3_endpoint, s3_key

        bucket, prefix = settings.backup_bucket or ("", "")
        client = s3_client(s3_endpoint(settings), s3_key(settings, "backup"), settings.storage.region,
                           path_style=settings.storage.path_style, timeout_s=60.0)
        return cls(client, bucket, prefix)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def ready_to_write(self) -> None:
        """Refuse a bucket without default encryption or versioning, named. Checked by what the bucket does, not
        its settings (reading those is an admin action on SeaweedFS, not the backup role's): a probe object
        (`<prefix>/probe`, put without an encryption header, once per store) must come back encrypted and with a
        version id."""
        if self._checked:
            return
        from botocore.exceptions import ClientError

        probe = self._key("probe")
        try:
            put = self.client.put_object(Bucket=self.bucket, Key=probe, Body=b"icetide backup bucket probe\n")
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            hint = " (`icetide stack up` or `stack provision` makes it)" if code == "NoSuchBucket" else ""
            raise ConfigError(f"setting 'dr.location': cannot write to bucket {self.bucket!r} as the backup "
                              f"role ({code}){hint}") from None
        encryption = put.get("ServerSideEncryption") or self.client.head_object(
            Bucket=self.bucket, Key=probe).get("ServerSideEncryption")
        missing = [] if encryption else ["default encryption"]
        if put.get("VersionId") in (None, "", "null"):
            missing.append("versioning")
        if missing:
            raise ConfigError(f"refusing to back up into bucket {self.bucket!r}: it has no "
                              f"{' and no '.join(missing)} (a backup bucket needs SSE-S3 default encryption and "
                              "versioning Enabled; `icetide stack up` / `stack provision` set both)")
        self._checked = True

    def _exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    @contextmanager
    def _open(self, key: str) -> Iterator[IO[bytes]]:
        from botocore.exceptions import ClientError

        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise FileNotFoundError(f"{self.where}/{key}") from None
            raise
        try:
            yield body
        finally:
            body.close()

    def _put(self, key: str, source: IO[bytes]) -> tuple[int, str]:
        from boto3.s3.transfer import TransferConfig

        reader = _Hashing(source)
        self.client.upload_fileobj(reader, self.bucket, self._key(key),
                                   Config=TransferConfig(use_threads=False, multipart_chunksize=CHUNK * 2))
        return reader.size, reader.digest.hexdigest()

    def _list(self, prefix: str) -> Iterator[Stored]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self._key(prefix))
        strip = f"{self.prefix}/" if self.prefix else ""
        for page in pages:
            for item in page.get("Contents", []):
                yield Stored(item["Key"].removeprefix(strip), int(item["Size"]), item["LastModified"])

    def _delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
