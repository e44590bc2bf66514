"""Text tables and progress bars (icetide/console.py): the same data in the same layout, bars only on a terminal,
nothing with --json, no control codes in a pipe."""

from __future__ import annotations

import decimal
import os
import pty
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from icetide.console import amount_text, progress, table_text

pytestmark = pytest.mark.unit
ROOT = Path(__file__).resolve().parents[2]

# the same work as a command does it: a bar of 40 tasks, advanced from the main thread
SCRIPT = """
import sys, time
from icetide.console import progress
with progress("generating 1,000 rows", total=40, unit="tasks", quiet=sys.argv[1] == "quiet") as bar:
    for _ in range(40):
        bar.advance()
        time.sleep(0.01)
print("RESULT")
"""


def run_script(mode: str, stderr_on_terminal: bool) -> tuple[str, bytes]:
    """(stdout, stderr bytes) of SCRIPT with stderr on a pipe or on a pseudo-terminal."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm-256color", "COLUMNS": "100"}
    env.pop("NO_COLOR", None)
    if not stderr_on_terminal:
        done = subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, env=env, timeout=60)
        return done.stdout.decode(), done.stderr
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, mode], stdout=subprocess.PIPE, stderr=follower, env=env)
    os.close(follower)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(leader, 4096)
            except OSError:  # the terminal closed with the process
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    out, _ = proc.communicate(timeout=60)
    reader.join(timeout=10)
    os.close(leader)
    return out.decode(), b"".join(chunks)


def test_a_table_aligns_numbers_right_and_shows_null() -> None:
    text = table_text(["name", "n", "amount"], [["a", 1, decimal.Decimal("10.50")], ["bbb", 22, None],
                                                [None, None, decimal.Decimal("3")]])
    assert text.splitlines() == [
        "name      n   amount",
        "────────────────────",
        "a         1    10.50",
        "bbb      22     NULL",
        "NULL   NULL        3",
        "(3 rows)",
    ]


def test_a_wide_table_in_a_pipe_is_neither_wrapped_nor_cut() -> None:
    long = "x" * 300
    text = table_text(["id", "payload"], [[1, long]], count=False)
    assert long in text.splitlines()[2]
    assert all(line == line.rstrip() for line in text.splitlines())


def test_a_table_without_columns_is_ok_and_the_count_is_singular_for_one_row() -> None:
    assert table_text([], []) == "OK"
    assert table_text(["x"], [["only"]]).splitlines()[-1] == "(1 row)"
    assert table_text(["x"], []).splitlines()[-1] == "(0 rows)"


def test_quiet_progress_prints_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    with progress("work", total=3, unit="tasks", quiet=True) as bar:
        bar.advance(3)
    assert capsys.readouterr() == ("", "")


def test_progress_off_a_terminal_is_one_plain_line_on_stderr(capsys: pytest.CaptureFixture[str]) -> None:
    with progress("restoring", total=5_000_000, unit="bytes") as bar:  # pytest's stderr is no terminal
        bar.update(completed=2_500_000)
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("restoring: 2.5 MB of 5.0 MB, ") and err.endswith(" s\n") and err.count("\n") == 1


def test_amounts_read_as_counts_or_sizes() -> None:
    assert amount_text(8, 24, "tasks") == "8/24 tasks"
    assert amount_text(1234, 1234, "events") == "1,234 events"
    assert amount_text(1234, None, "records") == "1,234 records"
    assert amount_text(3_000_000, None, "bytes") == "3.0 MB"


def test_a_pipe_gets_no_control_codes_and_json_mode_nothing() -> None:
    out, err = run_script("text", stderr_on_terminal=False)
    assert out == "RESULT\n"
    assert err.decode().startswith("generating 1,000 rows: 40 tasks, ")
    assert b"\x1b" not in err and b"\r" not in err
    out, err = run_script("quiet", stderr_on_terminal=False)
    assert (out, err) == ("RESULT\n", b"")


def test_a_terminal_gets_a_live_bar_with_counts_and_json_mode_nothing() -> None:
    out, err = run_script("text", stderr_on_terminal=True)
    assert out == "RESULT\n"  # the bar never touches stdout
    assert b"\x1b[" in err and b"40/40" in err and b"generating 1,000 rows" in err
    out, err = run_script("quiet", stderr_on_terminal=True)
    assert out == "RESULT\n" and b"generating" not in err
