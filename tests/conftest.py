"""Fixtures live in their own modules (one per real component), listed here.

At the end of the session every log and error output the suite produced is scanned for the secrets it used
(tests/secret_scan.py): the state dirs' logs under pytest's base temp dir, PyFlink's gateway logs, and the
captured output and errors of every test (written to `<base temp>/captured-output.log` as the run goes). A
leak fails the run (exit status 1) and names the log and the secret file, never the secret.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

# no per-example deadline: this suite shares 2 cores with JVMs, and speed is measured in bench/, not in tests
# (a test's own @settings still wins for what it sets)
hypothesis_settings.register_profile("icetide", deadline=None)
hypothesis_settings.load_profile("icetide")

pytest_plugins = [
    "tests.fixtures.common",
    "tests.fixtures.kafka",
    "tests.fixtures.spark",
    "tests.fixtures.flink",
    "tests.fixtures.postgres",
    "tests.fixtures.registry",
    "tests.fixtures.connect",
    "tests.fixtures.lake",
]
CAPTURED = "captured-output.log"
_started = time.time()
_session: dict[str, pytest.Config] = {}


def _base_temp(config: pytest.Config) -> Path | None:
    factory = getattr(config, "_tmp_path_factory", None)
    return factory.getbasetemp() if factory is not None else None


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    texts = [f"{name}\n{body}" for name, body in report.sections]
    if report.failed and report.longrepr is not None:
        texts.append(str(report.longrepr))
    if not texts:
        return
    base = _base_temp(_session["config"]) if "config" in _session else None
    if base is None:
        return
    with (base / CAPTURED).open("a", errors="replace") as out:
        out.write(f"== {report.nodeid} ({report.when})\n" + "\n".join(texts) + "\n")


def pytest_configure(config: pytest.Config) -> None:
    _session["config"] = config


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from tests.secret_scan import scan

    base = _base_temp(session.config)
    if base is None or not base.is_dir():
        return
    roots = [base]
    spec = importlib.util.find_spec("pyflink")
    flink_logs = [Path(p) / "log" for p in (spec.submodule_search_locations or [])] if spec else []
    leaks = scan(roots, [*roots, *flink_logs], since=_started)
    if leaks:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        lines = ["SECRET SCAN: secrets of the suite found in its logs:", *(f"  {leak}" for leak in leaks)]
        if reporter is not None:
            reporter.write_line("\n".join(lines), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
