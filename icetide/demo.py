"""`icetide demo`: the main job end to end, run the way a user would run it.

Each step is the same `icetide` command a user types, run as a child process with its JSON
output parsed, in a demo state directory that is wiped first (so the demo can be rerun):

  stack up → batch generate (Spark) → cdc run --once (Flink → Kafka)
  → cdc apply --once (Kafka → SQLite) → cdc verify (source == downstream) → stack down
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from icetide.cli import App, emit
from icetide.console import progress, table_text
from icetide.errors import IcetideError

TABLE = "sales.vendas"


class DemoStepFailed(IcetideError):
    """A demo step exited non-zero; the message carries its last error line."""


def _run(step: str, args: list[str], env: dict[str, str], config: str | None) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "icetide.cli"]
    if config:
        cmd += ["--config", config]
    cmd += [*args, "--json"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
        tail = lines[-1] if lines else f"exit code {proc.returncode}"
        raise DemoStepFailed(f"{step} failed: {tail} (command: icetide {' '.join(args)})")
    try:
        result: dict[str, Any] = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise DemoStepFailed(f"{step}: expected JSON output, got: {proc.stdout[-200:]!r}") from None
    return result


@click.command()
@click.option("--rows", default=50_000, show_default=True, help="Rows generated into sales.vendas.")
@click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where the demo keeps its stack (wiped first). Default: <stack.state_dir>/demo.")
@click.option("--keep", is_flag=True, help="Leave the stack running at the end.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_obj
def demo(app: App, rows: int, state_dir: Path | None, keep: bool, as_json: bool) -> None:
    """Run the main job on the embedded stack and prove downstream == source."""
    state = (state_dir or app.settings.state_dir / "demo").resolve()
    if state.exists():
        shutil.rmtree(state)
    state.mkdir(parents=True)
    env = {**os.environ, "ICETIDE__STACK__STATE_DIR": str(state), "PYTHONUNBUFFERED": "1"}
    steps: list[tuple[str, list[str]]] = [
        ("stack up", ["stack", "up"]),
        ("generate", ["batch", "generate", "--table", TABLE, "--rows", str(rows), "--seed", "7"]),
        ("cdc run", ["cdc", "run", "--once", "--tables", TABLE]),
        ("cdc apply", ["cdc", "apply", "--once", "--sink", "sqlite"]),
        ("verify", ["cdc", "verify", "--table", TABLE, "--sink", "sqlite"]),
    ]
    results: dict[str, Any] = {}
    timings: dict[str, float] = {}
    started = time.monotonic()
    try:
        with progress("demo", total=len(steps), unit="steps", quiet=as_json) as bar:
            for i, (name, args) in enumerate(steps):
                bar.update(completed=i, label=f"demo: {name}")
                t0 = time.monotonic()
                results[name] = _run(name, args, env, app.config_path)
                timings[name] = round(time.monotonic() - t0, 2)
            bar.update(completed=len(steps), label="demo")
    finally:
        if not keep:
            subprocess.run([sys.executable, "-m", "icetide.cli", "stack", "down"], env=env,
                           capture_output=True, text=True)
    verify = results["verify"]
    summary = {
        "table": TABLE,
        "rows_generated": rows,
        "source": verify["source"],
        "downstream": verify["downstream"],
        "equal": verify["equal"],
        "events_published": results["cdc run"].get("events"),
        "events_applied": results["cdc apply"].get("applied"),
        "commit_to_apply_p50_s": results["cdc apply"].get("commit_to_apply_p50_s"),
        "step_seconds": timings,
        "total_seconds": round(time.monotonic() - started, 2),
        "state_dir": str(state),
    }
    src, dst = summary["source"], summary["downstream"]
    text = "\n".join([
        table_text(["side", "rows", "checksum"], [[f"source {TABLE}", src["rows"], src["checksum"]],
                                                 ["downstream sqlite", dst["rows"], dst["checksum"]]], count=False),
        "",
        table_text(["step", "seconds"], [[name, seconds] for name, seconds in timings.items()], count=False),
        "",
        f"{'EQUAL' if summary['equal'] else 'DIFFERENT'} — {summary['events_published']} events published, "
        f"{summary['events_applied']} applied, total {summary['total_seconds']} s",
    ])
    emit(summary, as_json, text)
    if not summary["equal"]:
        raise DemoStepFailed("downstream differs from source")
