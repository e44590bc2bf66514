"""`results_only_on_stdout`: what a JVM or child process writes to fd 1 meanwhile goes to stderr, so a
command's `--json` result is the only thing on stdout (the REST + S3 demo broke on Hadoop's output)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.unit

SCRIPT = """
import json, os, subprocess, sys
from icetide.process import results_only_on_stdout
with results_only_on_stdout():
    print("python noise")
    os.write(1, b"fd noise\\n")
    subprocess.run([sys.executable, "-c", "print('child noise')"], check=True)
print(json.dumps({"ok": True}))
"""


def test_only_the_result_reaches_stdout() -> None:
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True)
    assert json.loads(proc.stdout) == {"ok": True}
    for noise in ("python noise", "fd noise", "child noise"):
        assert noise in proc.stderr
