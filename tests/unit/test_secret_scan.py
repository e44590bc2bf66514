"""The end-of-session secret scan (tests/secret_scan.py) finds a deliberately logged secret, and only then."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.secret_scan import collect_secrets, scan

pytestmark = pytest.mark.unit


@pytest.fixture
def state() -> Iterator[Path]:
    """A state dir OUTSIDE pytest's base temp: the session's own scan must not see these planted leaks."""
    with tempfile.TemporaryDirectory(prefix="secret-scan-") as folder:
        yield Path(folder)


def owner_only(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, 0o600)
    return path


def plant(state: Path) -> dict[str, str]:
    values = {"kek": "9f" * 32, "s3": "wJalrXUtnFEMI-K7MDENG-bPxRfiCY", "scram": "scram-pass-Q1w2e3r4",
              "token": "rest-token-0123456789", "jaas": "jaas-inline-pw-5678"}
    owner_only(state / "object-store" / "kek", values["kek"] + "\n")
    owner_only(state / "object-store" / "credentials",
               f"[default]\naws_access_key_id = icetide-abc\naws_secret_access_key = {values['s3']}\n")
    owner_only(state / "kafka" / "secrets" / "cdc.password", values["scram"])
    owner_only(state / "rest" / "config.json", json.dumps({"port": 1234, "catalog": {"token": values["token"]}}))
    owner_only(state / "kafka" / "server.properties",
               "listeners=SASL_SSL://127.0.0.1:9093\nlistener.name.x.scram-sha-512.sasl.jaas.config=org.Login "
               f'required username="admin" password="{values["jaas"]}";\n')
    (state / "kafka" / "broker.log").write_text("started on 127.0.0.1:9093 as icetide-abc\n")
    return values


def test_every_kind_of_secret_file_is_read(state: Path) -> None:
    values = plant(state)
    found = collect_secrets([state])
    assert set(values.values()) <= found.keys()
    assert "icetide-abc" not in found and "SASL_SSL://127.0.0.1:9093" not in found  # identifiers, addresses


def test_a_path_to_a_secret_file_is_not_a_secret(state: Path) -> None:
    """Trino logs `file.password-file=/…/password.db` at start: the path is no leak (its file is scanned itself)."""
    db = owner_only(state / "trino" / "password.db", "ana:100000:00ff:abcdef0123456789\n")
    owner_only(state / "trino" / "etc" / "password-authenticator.properties",
               f"password-authenticator.name=file\nfile.password-file={db}\n")
    (state / "trino" / "trino.out").write_text(f"Bootstrap file.password-file {db}\n")
    assert str(db) not in collect_secrets([state])
    assert scan([state], [state]) == []


def test_a_clean_run_has_no_leak(state: Path) -> None:
    plant(state)
    (state / "object-store" / "weed.log").write_text("s3 listening on 127.0.0.1\n")
    assert scan([state], [state]) == []


@pytest.mark.parametrize("which", ["kek", "s3", "scram", "token", "jaas"])
def test_a_deliberately_logged_secret_is_found(state: Path, which: str) -> None:
    values = plant(state)
    log = state / "rest" / "rest-catalog.out"
    log.write_text(f"INFO connecting with {values[which]}\n")
    leaks = scan([state], [state])
    assert [leak.log for leak in leaks] == [log]
    assert values[which] not in str(leaks[0])  # the report names the file, never the secret


def test_captured_output_and_data_files(state: Path) -> None:
    values = plant(state)
    captured = state.parent / f"{state.name}-captured.txt"
    try:
        captured.write_text(f"Traceback ... {values['s3']}\n")
        data = state / "warehouse" / "t" / "data" / "x.log"  # table data is not a log
        data.parent.mkdir(parents=True)
        data.write_text(values["s3"])
        assert [leak.log for leak in scan([state], [state], [captured])] == [captured]
    finally:
        captured.unlink()
