"""The embedded S3-compatible object store: SeaweedFS (`weed mini`), for `storage.kind: s3` without an endpoint.

The binary is built from the Go module by `make setup` (scripts/build-weed.sh) into `.cache/weed/weed`.
Everything lives under `<state_dir>/object-store/`:

- `data/` — the store's volumes and metadata (`weed mini -dir`);
- `keys/sse_kek` — the key-encryption key of SSE-S3 (`WEED_S3_SSE_KEK`, 32 random bytes, hex, mode 0600).
  Every SSE-S3 object's data key is wrapped with it: losing it loses the data, so back it up apart from
  `data/`. It is made once; a data folder without its key is refused rather than given a new one;
- `credentials` — the store's admin key (AWS shared-credentials file, mode 0600), unless
  `storage.credentials` points elsewhere; `s3.json` (0600) makes it the store's one static (admin) identity,
  so anonymous and wrongly signed requests are refused. Only the stack signs with it;
- `identities/<role>` — each engine role's own key (0600): `start` creates the roles' least-privilege IAM
  users through the store's IAM API (`icetide.services.identities`). Self-service key management needs a
  grant (none is given), so a role cannot make itself keys;
- `ports.json`, `weed.pid`, `weed.log`.

Every request's access record goes to the access-log collector (`icetide.services.access_log`, in
`<state_dir>/access-log/`), started before the store and stopped after it.

Every listener binds 127.0.0.1 (the filer's gRPC port is unauthenticated), telemetry is off, WebDAV, the
admin UI and the store's own Iceberg and Lance catalogs are off. `start` creates `storage.bucket` and, with
`storage.sse: s3`, makes SSE-S3 its default encryption, so an object stored without the header is
encrypted too.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from icetide.errors import SetupError, StackError
from icetide.jvm import PROJECT_ROOT
from icetide.metrics import register_target, targets_dir
from icetide.process import free_port, live_pid, log_tail, port_is_free, rss_bytes, runs_with, stop_group, stop_recorded
from icetide.services.access_log import AccessLogCollector
from icetide.services.identities import Identities
from icetide.services.shape import Need, StateHome, require
from icetide.storage import STORE_DIR, S3Key, read_credentials_file, s3_key, write_credentials_file

if TYPE_CHECKING:
    from icetide.settings import Settings

HOST = "127.0.0.1"
STOP_TIMEOUT_S = 20.0
# weed mini's listeners; each gets a free loopback port (gRPC ports too: the default +10000 may be taken)
PORTS = ("s3", "s3.grpc", "master", "master.grpc", "volume", "volume.grpc", "filer", "filer.grpc",
         "admin", "admin.grpc", "metrics")  # metrics: its Prometheus /metrics (job `object-store`)
SOCKET_PATH_MAX = 100  # unix socket paths longer than ~108 bytes cannot be bound


def weed_binary() -> Path:
    """`$ICETIDE_WEED`, else the binary `make setup` links into `.cache/weed/`."""
    return Path(os.environ.get("ICETIDE_WEED", PROJECT_ROOT / ".cache" / "weed" / "weed"))


def s3_client(endpoint: str, key: S3Key, region: str, *, path_style: bool = True, timeout_s: float = 10.0) -> Any:
    """A boto3 S3 client for `endpoint` signed with `key` (no retries: callers decide)."""
    import boto3
    from botocore.config import Config

    config = Config(s3={"addressing_style": "path" if path_style else "virtual"},
                    retries={"max_attempts": 1, "mode": "standard"},
                    connect_timeout=timeout_s, read_timeout=timeout_s)
    return boto3.client("s3", endpoint_url=endpoint, region_name=region, config=config,
                        aws_access_key_id=key.access_key_id,
                        aws_secret_access_key=key.secret_access_key.get_secret_value())


def ensure_bucket(client: Any, bucket: str, *, encrypted: bool) -> None:
    """Create `bucket` if missing; with `encrypted`, SSE-S3 (AES256) is its default encryption, so an object
    stored without the header is encrypted too."""
    from botocore.exceptions import ClientError

    try:
        client.head_bucket(Bucket=bucket)
    except ClientError:
        client.create_bucket(Bucket=bucket)
    if encrypted:
        client.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]})


def ensure_versioned_bucket(client: Any, bucket: str, *, encrypted: bool, noncurrent_days: int | None = None) -> None:
    """`ensure_bucket`, then versioning Enabled; with `noncurrent_days`, a lifecycle rule expiring noncurrent
    versions after that many days (so deletes free space in the end)."""
    ensure_bucket(client, bucket, encrypted=encrypted)
    client.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    if noncurrent_days is not None:
        client.put_bucket_lifecycle_configuration(Bucket=bucket, LifecycleConfiguration={"Rules": [{
            "ID": "icetide-noncurrent", "Status": "Enabled", "Filter": {"Prefix": ""},
            "NoncurrentVersionExpiration": {"NoncurrentDays": noncurrent_days},
            "Expiration": {"ExpiredObjectDeleteMarker": True}}]})


class ObjectStore(StateHome):
    """One `weed mini` per state dir, its buckets and its key."""

    name = STORE_DIR
    label = "object store"

    def __init__(self, state_dir: Path | None = None) -> None:
        self._client: Any = None
        self._key: S3Key | None = None
        self._region = "us-east-1"
        super().__init__(state_dir)

    def _files(self, home: Path) -> None:
        self.data_dir = home / "data"
        self.kek_file = home / "keys" / "sse_kek"
        self.credentials_file = home / "credentials"
        self.identities_file = home / "s3.json"
        self.ports_file = home / "ports.json"
        self.pid_file = home / "weed.pid"
        self.log_file = home / "weed.log"

    # -- the service shape -----------------------------------------------------------------
    def needs(self) -> list[Need]:
        return [Need("the SeaweedFS binary (weed)", weed_binary(),
                     hint="run `make setup` (scripts/build-weed.sh builds it from its Go module)")]

    def start(self, settings: Settings, state_dir: Path) -> dict[str, str]:
        """Start the store (or reuse the one running from this state dir), create the bucket with its
        default encryption; its endpoints once it answers."""
        self._bind(state_dir)
        self._region = settings.storage.region
        self._key = self._load_or_make_key(settings)
        pid = self.live_pid()
        if pid is None:
            require(self.needs())
        collector = AccessLogCollector()
        collector.start(settings, state_dir)  # before the store: its first records must land
        if pid is None:
            self.home.mkdir(parents=True, exist_ok=True)
            self._write_identities(self._key)
            ports = self._choose_ports(settings.storage.port)
            try:
                self._launch(ports, settings.storage.start_timeout_s)
            except BaseException:
                collector.stop()
                raise
        elif not self.ready():
            raise StackError(f"an object store (pid {pid}) runs from {self.home} but does not answer: "
                             "run `icetide stack down` and `icetide stack up` again\n" + self.output())
        self.ensure_bucket(settings.storage.bucket, encrypted=settings.storage.sse == "s3")
        if settings.backup_bucket is not None:  # `dr.location: s3://…`: versioned, SSE-S3 (batch/dr_store_s3.py)
            ensure_versioned_bucket(self.client(), settings.backup_bucket[0], encrypted=True)
        self.identities(settings).ensure()
        port = self._ports().get("metrics")
        if settings.monitoring.enabled and port:  # `stop` removes it: the store outlives `stack up`
            register_target(self.home.parent, "object-store", HOST, port, name="seaweedfs", remove_at_exit=False)
        return self.endpoints()

    def identities(self, settings: Settings) -> Identities:
        """The roles' IAM users on this (running) store, managed with its admin key."""
        return Identities(settings, self.recorded_endpoint(check_pid=False), self._admin_key())

    def ready(self) -> bool:
        """The S3 API answers a request signed with the store's key."""
        if self._home is None or not self.recorded_endpoint(check_pid=False):
            return False
        try:
            self.client().list_buckets()
        except Exception:  # any failure (refused, not yet serving, 5xx) means not ready
            return False
        return True

    def stop(self) -> bool:
        """Stop the store, then its access-log collector (which receives the store's last records)."""
        if self._home is None:
            return False
        stopped = stop_recorded(self.pid_file, self._is_ours, STOP_TIMEOUT_S)
        (targets_dir(self.home.parent, "object-store") / "seaweedfs.json").unlink(missing_ok=True)
        AccessLogCollector(self.home.parent).stop()
        return stopped

    def status(self) -> dict[str, Any]:
        pid = self.live_pid() if self._home is not None else None
        return {"name": self.name, "running": pid is not None and self.ready(), "pid": pid,
                "endpoint": self.recorded_endpoint() or None,
                "data_dir": str(self.data_dir) if self._home else None,
                "kek_file": str(self.kek_file) if self._home else None,
                "rss_bytes": rss_bytes(pid) if pid else None,
                "log_file": str(self.log_file) if self._home else None,
                "access_log": AccessLogCollector(self.home.parent).status() if self._home else None}

    def endpoints(self) -> dict[str, str]:
        return {"s3": self.recorded_endpoint()}

    # -- addresses ---------------------------------------------------------------------------
    def _ports(self) -> dict[str, int]:
        try:
            return {k: int(v) for k, v in json.loads(self.ports_file.read_text()).items()}
        except (OSError, ValueError, AttributeError):
            return {}

    def recorded_endpoint(self, check_pid: bool = True) -> str:
        """The S3 endpoint of the store running from this state dir ("" when none runs)."""
        if self._home is None or (check_pid and self.live_pid() is None):
            return ""
        port = self._ports().get("s3")
        return f"http://{HOST}:{port}" if port else ""

    def _admin_key(self) -> S3Key:
        if self._key is None:
            self._key = read_credentials_file(self.credentials_file, "default", "storage.credentials",
                                              str(self.credentials_file))
        return self._key

    def client(self) -> Any:
        """An S3 client signed with the admin key (the stack's own requests)."""
        if self._client is None:
            self._client = s3_client(self.recorded_endpoint(check_pid=False), self._admin_key(), self._region,
                                     timeout_s=3.0)
        return self._client

    # -- buckets -------------------------------------------------------------------------------
    def ensure_bucket(self, bucket: str, *, encrypted: bool) -> None:
        """Create `bucket` if missing; with `encrypted`, SSE-S3 (AES256) is its default encryption."""
        ensure_bucket(self.client(), bucket, encrypted=encrypted)

    # -- keys ----------------------------------------------------------------------------------
    def _load_or_make_key(self, settings: Settings) -> S3Key:
        """The configured key (`storage.credentials`), else the store's own, made once."""
        creds = settings.storage.credentials
        if creds.file or creds.access_key_env or creds.secret_key_env or "admin" in settings.storage.identities:
            return s3_key(settings, "admin")
        if self.credentials_file.is_file():
            return read_credentials_file(self.credentials_file, "default", "storage.credentials",
                                         str(self.credentials_file))
        key = S3Key.generate()
        write_credentials_file(self.credentials_file, key)
        return key

    def _kek(self) -> str:
        """The SSE-S3 key-encryption key, made on the first start; refused if data exists without it."""
        if self.kek_file.is_file():
            kek = self.kek_file.read_text().strip()
            if len(kek) != 64:
                raise StackError(f"{self.kek_file}: expected 64 hex characters (the SSE-S3 key-encryption key)")
            return kek
        if self.data_dir.is_dir() and any(self.data_dir.iterdir()):
            raise StackError(f"the object store's key-encryption key {self.kek_file} is missing but {self.data_dir} "
                             "holds data: restore the key from its backup (a new key cannot read that data)")
        self.kek_file.parent.mkdir(parents=True, exist_ok=True)
        self.kek_file.parent.chmod(0o700)
        kek = secrets.token_hex(32)
        fd = os.open(self.kek_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(kek + "\n")
        return kek

    def _write_identities(self, key: S3Key) -> None:
        identities = {"identities": [{
            "name": "icetide-admin",
            "credentials": [{"accessKey": key.access_key_id, "secretKey": key.secret_access_key.get_secret_value()}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }]}
        fd = os.open(self.identities_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(identities, handle)

    # -- process -------------------------------------------------------------------------------
    def _is_ours(self, pid: int) -> bool:
        return runs_with(pid, b"mini", f"-dir={self.data_dir}".encode())

    def live_pid(self) -> int | None:
        return live_pid(self.pid_file, self._is_ours)

    def output(self) -> str:
        return log_tail(self.log_file, lines=30, empty="(no object store output)")

    def _choose_ports(self, s3_port: int) -> dict[str, int]:
        """`storage.port` (must be free) for S3, the previous run's ports where still free, else free ones."""
        if s3_port and not port_is_free(HOST, s3_port):
            raise StackError(f"port {HOST}:{s3_port} (setting storage.port) is in use: stop what listens there "
                             "or set ICETIDE__STORAGE__PORT=0 to pick a free port")
        previous = self._ports()
        chosen: dict[str, int] = {}
        for name in PORTS:
            wanted = s3_port if (name == "s3" and s3_port) else previous.get(name, 0)
            if not wanted or wanted in chosen.values() or not port_is_free(HOST, wanted):
                wanted = free_port(HOST)
                while wanted in chosen.values():
                    wanted = free_port(HOST)
            chosen[name] = wanted
        self.ports_file.write_text(json.dumps(chosen))
        return chosen

    def command(self, ports: dict[str, int]) -> list[str]:
        args = [str(weed_binary()), "mini", f"-dir={self.data_dir}", f"-ip={HOST}", f"-ip.bind={HOST}",
                "-master.telemetry=false", "-webdav=false", "-admin.ui=false", "-admin.port.legacy=0",
                "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={self.identities_file}",
                # the IAM API on the S3 port may change users (admin only: self-service needs a grant)
                "-s3.iam.readOnly=false", "-s3.iam.selfServiceRequiresGrant=true",
                f"-s3.auditLogConfig={AccessLogCollector(self.home.parent).config_file}"]
        args += [f"-{name}.port={port}" if "." not in name else f"-{name.split('.')[0]}.port.grpc={port}"
                 for name, port in ports.items() if name != "metrics"]
        if "metrics" in ports:
            args += [f"-metricsPort={ports['metrics']}", f"-metricsIp={HOST}"]
        for name in ("filer", "s3"):
            sock = self.home / f"{name}.sock"
            if len(str(sock)) < SOCKET_PATH_MAX:
                args.append(f"-{name}.localSocket={sock}")
        return args

    def _launch(self, ports: dict[str, int], timeout_s: float) -> None:
        kek = self._kek()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WEED_", "S3_"))}
        env["WEED_S3_SSE_KEK"] = kek
        try:
            with self.log_file.open("ab") as out:
                proc = subprocess.Popen(self.command(ports), env=env, stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.home)
        except OSError as exc:
            raise SetupError(f"cannot run {weed_binary()}: {exc.strerror}: run `make setup`") from None
        self.pid_file.write_text(f"{proc.pid}\n")
        self._client = None
        deadline = time.monotonic() + timeout_s
        try:
            while not self.ready():
                if proc.poll() is not None:
                    raise StackError(f"the object store exited during start-up (code {proc.returncode})\n"
                                     + self.output())
                if time.monotonic() > deadline:
                    raise StackError(f"the object store did not answer within {timeout_s:.0f}s\n" + self.output())
                time.sleep(0.3)
        except BaseException:
            if proc.poll() is None:
                stop_group(proc.pid, lambda pid: proc.poll() is None, 5.0)
            self.pid_file.unlink(missing_ok=True)
            raise
