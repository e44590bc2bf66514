"""`icetide trino up | down | status | passwd`: the embedded Trino, the SQL endpoint for BI tools."""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from icetide.cli import App, emit


def _describe(status: dict[str, Any]) -> str:
    users = ", ".join(status.get("users") or []) or "(none: icetide trino passwd USER)"
    state = f"running (pid {status['pid']})" if status["running"] else "stopped"
    return "\n".join([f"trino      {state}  {status.get('url') or '-'}",
                      f"jdbc       {status.get('jdbc_url') or '-'}",
                      f"ca         {status.get('ca_file') or '-'}",
                      f"rules      {status.get('rules_file') or '-'}",
                      f"users      {users}",
                      f"audit      {_audit(status.get('audit'))}",
                      f"log        {status.get('log_file') or '-'}"])

def _audit(audit: dict[str, Any] | None) -> str:
    """The receiver and the guard's gate in one line (`closed`: Trino denies every query until the receiver
    can write the audit log again)."""
    if not audit:
        return "-"
    guard = audit.get("guard") or {}
    gate = f"gate {guard.get('gate')}" + (f" since {guard['since']}" if guard.get("since") else "")
    return (f"receiver {'running' if audit.get('running') else 'stopped'}, "
            f"guard {'running' if guard.get('running') else 'STOPPED'}, {gate}")


@click.group()
def trino() -> None:
    """The embedded Trino: loopback, TLS from a local CA, password users, the policy's rules.json."""

@trino.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_obj
def up(app: App, as_json: bool) -> None:
    """Start Trino over the configured Iceberg catalog (or reuse the running one)."""
    from icetide.services.trino import TrinoServer

    started = time.monotonic()
    server = TrinoServer()
    server.start(app.settings, app.settings.state_dir)
    data = {**server.status(), "seconds": round(time.monotonic() - started, 2)}
    emit(data, as_json, _describe(data))

@trino.command()
@click.option("--json", "as_json", is_flag=True, help="Print what was stopped as JSON.")
@click.pass_obj
def down(app: App, as_json: bool) -> None:
    """Stop the Trino started from this state directory (its files are kept)."""
    from icetide.services.trino import TrinoServer

    stopped = TrinoServer(app.settings.state_dir).stop()
    emit({"stopped": stopped}, as_json, "trino stopped" if stopped else "trino was not running")

@trino.command()
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_obj
def status(app: App, as_json: bool) -> None:
    """Show whether Trino runs, its HTTPS and JDBC URLs, CA file, rules file and users (never secrets)."""
    from icetide.services.trino import TrinoServer

    data = TrinoServer(app.settings.state_dir).status()
    emit(data, as_json, _describe(data))

@trino.command()
@click.argument("user")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input (one line).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def passwd(app: App, user: str, password_stdin: bool, as_json: bool) -> None:
    """Set USER's Trino password (PBKDF2 in <state_dir>/trino/password.db; Trino rereads it in seconds)."""
    from icetide.services.trino import TrinoServer

    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = click.prompt(f"password for {user}", hide_input=True, confirmation_prompt=True)
    server = TrinoServer(app.settings.state_dir)
    server.home.mkdir(parents=True, exist_ok=True)
    server.set_password(user, password)
    emit({"user": user, "password_file": str(server.password_file)}, as_json, f"password set for {user}")
