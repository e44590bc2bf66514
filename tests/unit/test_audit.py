"""The pinned Python environment has no known vulnerability, or each one is listed with why it does not apply.

pip-audit (a dev pin) checks every pin of requirements.lock against PyPI's advisory data (its JSON API, which
carries the OSV advisories); a finding not in security/audit-exceptions.txt fails, and so does a listed one
without a reason. Without the network to PyPI the test fails with that message (it does not skip).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]
LOCK = ROOT / "requirements.lock"
EXCEPTIONS = ROOT / "security" / "audit-exceptions.txt"


def read_exceptions(path: Path) -> dict[str, str]:
    """Advisory id → reason; a line without a reason is an error naming file:line."""
    listed: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        ident, _, reason = text.partition(" ")
        if not reason.strip():
            raise ValueError(f"{path}:{number}:1: {ident}: no reason why it does not apply")
        listed[ident] = reason.strip()
    return listed


def findings(report: dict[str, object]) -> list[tuple[str, str, str, set[str]]]:
    """(package, version, id, aliases) of each vulnerability in a pip-audit JSON report."""
    out = []
    for dep in report["dependencies"]:  # type: ignore[attr-defined]
        for vuln in dep.get("vulns", []):
            out.append((dep["name"], dep["version"], vuln["id"], set(vuln.get("aliases", []))))
    return out


def unlisted(found: list[tuple[str, str, str, set[str]]], listed: dict[str, str]) -> list[str]:
    return [f"{name}=={ver}: {ident} {sorted(aliases)}" for name, ver, ident, aliases in found
            if ident not in listed and not aliases & listed.keys()]


def test_the_exceptions_file_needs_a_reason_per_line(tmp_path: Path) -> None:
    good = tmp_path / "ok.txt"
    good.write_text("# comment\nPYSEC-2099-1  only reachable through the CLI's --foo, which icetide never passes\n")
    assert read_exceptions(good) == {
        "PYSEC-2099-1": "only reachable through the CLI's --foo, which icetide never passes"}
    bad = tmp_path / "bad.txt"
    bad.write_text("\nGHSA-xxxx-yyyy-zzzz\n")
    with pytest.raises(ValueError, match=r"bad.txt:2:1: GHSA-xxxx-yyyy-zzzz: no reason"):
        read_exceptions(bad)
    found = [("pkg", "1.0", "PYSEC-2099-1", set()), ("other", "2.0", "GHSA-a", {"CVE-2099-2"})]
    assert unlisted(found, {"PYSEC-2099-1": "r"}) == ["other==2.0: GHSA-a ['CVE-2099-2']"]
    assert unlisted(found, {"PYSEC-2099-1": "r", "CVE-2099-2": "r"}) == []


def test_no_unlisted_vulnerability_in_the_pinned_environment() -> None:
    listed = read_exceptions(EXCEPTIONS)
    audit = Path(sys.executable).with_name("pip-audit")
    if not audit.is_file():
        pytest.fail(f"pip-audit is not installed in {audit.parent}: run `make setup` (it is a dev pin)")
    done = subprocess.run([str(audit), "-r", str(LOCK), "--no-deps", "--disable-pip", "--vulnerability-service",
                           "pypi", "--progress-spinner", "off", "--format", "json"],
                          capture_output=True, text=True, timeout=300)
    if done.returncode not in (0, 1) or not done.stdout.strip():
        pytest.fail("pip-audit could not audit requirements.lock (it needs the network to PyPI's advisory data, "
                    f"https://pypi.org/pypi/<name>/<version>/json): exit {done.returncode}\n{done.stderr[-2000:]}")
    report = json.loads(done.stdout)
    assert len(report["dependencies"]) == sum(1 for line in LOCK.read_text().splitlines() if "==" in line)
    missing = unlisted(findings(report), listed)
    assert not missing, ("known vulnerabilities in requirements.lock: upgrade the pin, or list the id with why it "
                         f"does not apply in {EXCEPTIONS}:\n  " + "\n  ".join(missing))
