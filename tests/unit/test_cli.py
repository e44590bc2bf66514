"""The CLI root: help without heavy imports, one-line errors, exit codes, import boundaries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from icetide.cli import CDC_COMMANDS, COMMANDS, main

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("pyspark", "pyflink", "duckdb", "psycopg", "confluent_kafka", "pyiceberg", "pyarrow")


def test_help_imports_no_engine() -> None:
    code = (
        "import sys; from icetide.cli import main; rc = main(['--help']);"
        f"heavy = [m for m in {HEAVY!r} if m in sys.modules]; print(heavy); sys.exit(rc)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "Commands:" in out
    assert out.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_registered_command_resolves_and_has_help(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([name, "--help"]) == 0
    assert "Usage:" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(CDC_COMMANDS))
def test_every_cdc_command_resolves(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["cdc", name, "--help"]) == 0
    assert "Usage:" in capsys.readouterr().out


def test_user_error_is_one_line_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("nope: 1\n")
    proc = subprocess.run([sys.executable, "-m", "icetide.cli", "--config", str(bad), "stack", "status"],
                          capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {bad}: unknown setting 'nope'"


def test_unknown_command_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["no-such-command"]) == 2


def test_import_boundaries_hold() -> None:
    """ruff enforces rooms → kernel only, and no module-level engine imports (see */ruff.toml)."""
    ruff = Path(sys.executable).parent / "ruff"
    proc = subprocess.run([str(ruff), "check", "--output-format=concise", "."], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_version_json_free_output(capsys: pytest.CaptureFixture[str]) -> None:
    from icetide.cli import emit

    emit({"b": 1, "a": [2]}, as_json=True)
    assert json.loads(capsys.readouterr().out) == {"a": [2], "b": 1}


def test_kernel_policies_and_connectors_type_check_strictly() -> None:
    """mypy --strict on the packages pyproject.toml lists (the kernel, policies, connectors)."""
    mypy = Path(sys.executable).parent / "mypy"
    proc = subprocess.run([str(mypy)], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:]


def test_rotate_catalog_needs_a_rest_catalog_and_takes_no_role(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("ICETIDE__STACK__STATE_DIR", str(tmp_path))
    assert main(["stack", "rotate", "catalog"]) == 2
    assert "catalog.type is not rest" in capsys.readouterr().err
    assert main(["stack", "rotate", "catalog", "--role", "bi"]) == 2
    assert "--role applies to `rotate s3`" in capsys.readouterr().err
    assert main(["stack", "rotate", "--help"]) == 0
    assert "catalog" in capsys.readouterr().out
