"""`icetide stack store-secrets` and the parts of `stack provision` that need no object store.

The store-facing part (bucket, versioning, identities) is `Identities.ensure` and `ensure_bucket`, which the
embedded stack's integration tests run against SeaweedFS. The Kubernetes API server cannot run here: the
Secrets' server-side apply is checked against a local HTTP endpoint that records the requests (a fake, and
only for that).
"""

from __future__ import annotations

import json
import stat
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from icetide.cli import root
from icetide.errors import ConfigError, StackError
from icetide.services.provision import (
    ADMIN_ENV,
    KEK_ENV,
    apply_k8s_secrets,
    provision,
    secret_manifest,
    store_secrets,
)
from icetide.settings import load_settings
from icetide.storage import S3Key, read_credentials_file
from tests.unit.deploy_files import env_file_values

pytestmark = pytest.mark.unit


def test_store_secrets_writes_private_files_once(tmp_path: Path) -> None:
    done = store_secrets(tmp_path)
    admin, kek = env_file_values(tmp_path / ADMIN_ENV), env_file_values(tmp_path / KEK_ENV)
    assert set(admin) == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} and len(admin["AWS_SECRET_ACCESS_KEY"]) >= 32
    assert done["admin_access_key_id"] == admin["AWS_ACCESS_KEY_ID"]
    assert len(kek["WEED_S3_SSE_KEK"]) == 64 and int(kek["WEED_S3_SSE_KEK"], 16) >= 0
    for name in (ADMIN_ENV, KEK_ENV):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o600
    assert admin["AWS_SECRET_ACCESS_KEY"] not in json.dumps(done) and kek["WEED_S3_SSE_KEK"] not in json.dumps(done)
    before = (tmp_path / KEK_ENV).read_text()
    with pytest.raises(StackError, match=r"s3-kek\.env"):  # a second KEK would not read the first one's data
        store_secrets(tmp_path)
    assert (tmp_path / KEK_ENV).read_text() == before


def test_store_secrets_cli_prints_no_secret(tmp_path: Path) -> None:
    result = CliRunner().invoke(root, ["stack", "store-secrets", "--out", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    secret = env_file_values(tmp_path / ADMIN_ENV)["AWS_SECRET_ACCESS_KEY"]
    kek = env_file_values(tmp_path / KEK_ENV)["WEED_S3_SSE_KEK"]
    assert secret not in result.output and kek not in result.output


@pytest.mark.parametrize("env", [{}, {"ICETIDE__STORAGE__KIND": "s3"}], ids=["local", "embedded-s3"])
def test_provision_is_for_an_external_store_only(tmp_path: Path, env: dict[str, str]) -> None:
    settings = load_settings(None, {"ICETIDE__STACK__STATE_DIR": str(tmp_path), **env})
    with pytest.raises(ConfigError, match=r"storage\.endpoint"):
        provision(settings, tmp_path / "out")


class _Recorder(BaseHTTPRequestHandler):
    requests: ClassVar[list[dict[str, Any]]] = []
    status = 200

    def do_PATCH(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).requests.append({"path": self.path, "headers": dict(self.headers), "body": json.loads(body)})
        self.send_response(type(self).status)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def api(tmp_path: Path) -> Any:
    _Recorder.requests, _Recorder.status = [], 200
    server = HTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text("probe-token\n")
    (account / "namespace").write_text("icetide\n")
    yield f"http://127.0.0.1:{server.server_port}", account
    server.shutdown()
    server.server_close()


def test_k8s_secrets_are_applied_server_side_one_per_role(api: Any, tmp_path: Path) -> None:
    url, account = api
    keys = {"writer": S3Key("id-writer", SecretStr("secret-w")), "cdc": S3Key("id-cdc", SecretStr("secret-c"))}
    assert apply_k8s_secrets(keys, url, account) == ["icetide-s3-writer", "icetide-s3-cdc"]
    first, second = _Recorder.requests
    assert first["path"] == ("/api/v1/namespaces/icetide/secrets/icetide-s3-writer"
                             "?fieldManager=icetide-s3-init&force=true")
    assert first["headers"]["Content-Type"] == "application/apply-patch+yaml"
    assert first["headers"]["Authorization"] == "Bearer probe-token"
    assert first["body"] == secret_manifest("writer", keys["writer"])
    written = tmp_path / "credentials"
    written.write_text(second["body"]["stringData"]["credentials"])
    key = read_credentials_file(written, "default", "storage.credentials", "test")  # the file icetide reads
    assert (key.access_key_id, key.secret_access_key.get_secret_value()) == ("id-cdc", "secret-c")


def test_a_refused_secret_names_it_but_not_its_value(api: Any) -> None:
    url, account = api
    _Recorder.status = 403
    with pytest.raises(StackError, match="icetide/icetide-s3-bi: HTTP 403") as caught:
        apply_k8s_secrets({"bi": S3Key("id-bi", SecretStr("never-shown"))}, url, account)
    assert "never-shown" not in str(caught.value)
