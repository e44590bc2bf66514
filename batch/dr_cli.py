"""`icetide dr …`: backups, restore, verification and drills (docs/runbooks/dr.md).

`backup` and `restore` need no JVM (PyIceberg lists and registers, files are copied in Python); `verify` and
`drill` start Spark to read the tables' contents.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click
from icetide.cli import emit
from icetide.console import progress as bar
from icetide.errors import IcetideError

from batch.common import progress, spark_errors, spark_for, table_ref

TABLES = click.option("--table", "tables", multiple=True,
                      help="Table (namespace.table); repeat for several. Default: dr.tables, else every table.")
BACKUP = click.option("--backup", "backup_id", help="Backup id (see `dr list`). Default: the newest.")
JSON = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")


def _store(app: Any) -> Any:
    from batch.dr_store import open_store

    return open_store(app.settings)


def _catalog(app: Any, role: str) -> Any:
    from icetide.catalog import pyiceberg_catalog

    return pyiceberg_catalog(app.settings, role)  # type: ignore[arg-type]


def _mb(value: int) -> str:
    return f"{value / 2**20:,.1f} MiB"


@click.group()
def dr() -> None:
    """Disaster recovery: backup, restore, verify, drill, prune."""


@dr.command()
@TABLES
@click.option("--every", "every_s", type=click.FloatRange(min=1), help="Back up again every SECONDS (runs until "
              "stopped); an interval's failure is logged and retried at the next.")
@click.option("--digest", is_flag=True, help="Also record each table's row count and content digest (starts Spark).")
@click.option("--metrics-port", type=int, help="With --every: serve icetide_dr_* gauges on this port (0 → free).")
@JSON
@click.pass_obj
def backup(app: Any, tables: tuple[str, ...], every_s: float | None, digest: bool, metrics_port: int | None,
           as_json: bool) -> None:
    """Copy the tables' new files, the catalog database and the CDC positions to dr.location."""
    from batch.dr_backup import run_backup

    for name in tables:
        table_ref(app.settings, name)  # a name error before any copy
    store = _store(app)
    record = None
    if digest:
        from batch.dr_verify import content_digest

        spark = spark_for(app.settings, "maint")

        def record(name: str, snapshot_id: int | None) -> dict[str, Any]:
            with spark_errors(f"digest of {name}"):
                return content_digest(spark, table_ref(app.settings, name), snapshot_id)

    def once() -> dict[str, Any]:
        return run_backup(app.settings, _catalog(app, "maint"), store, list(tables) or None, record)

    def say(result: dict[str, Any]) -> None:
        text = (f"backup {result['id']}: {len(result['tables'])} table(s), copied {result['copied_files']:,} new "
                f"files ({_mb(result['copied_bytes'])}) of {result['files']:,} ({_mb(result['bytes'])}) "
                f"in {result['seconds']:.2f} s → {result['manifest']}")
        emit(result, as_json, text)

    if every_s is None:
        with bar("backing up", quiet=as_json):
            say(once())
        return
    _loop(app, once, say, every_s, metrics_port)


def _loop(app: Any, once: Any, say: Any, every_s: float, metrics_port: int | None) -> None:
    """Back up every `every_s` seconds from the start of the previous one; failures are counted, not fatal."""
    from batch.metrics import backup_metrics

    metrics = backup_metrics()
    if metrics_port is not None:
        from icetide.metrics import register_target, serve

        _server, port = serve(metrics.registry, app.settings.metrics.host, metrics_port)
        register_target(app.settings.state_dir, "icetide-dr", app.settings.metrics.host, port)
        click.echo(f"metrics on http://{app.settings.metrics.host}:{port}/metrics", err=True)
    while True:
        started = time.monotonic()
        try:
            result = once()
        except IcetideError as exc:
            metrics.failures.inc()
            click.echo(f"backup failed (retrying in {every_s:g} s): {exc}", err=True)
        else:
            metrics.update(result, time.time())
            say(result)
        time.sleep(max(0.0, every_s - (time.monotonic() - started)))


@dr.command(name="list")
@JSON
@click.pass_obj
def list_backups(app: Any, as_json: bool) -> None:
    """The backups in dr.location, oldest first, with their tables' versions."""
    store = _store(app)
    rows = []
    for backup_id in store.ids():
        manifest = store.load(backup_id)
        rows.append({"id": backup_id, "tables": {n: t["snapshot_id"] for n, t in manifest["tables"].items()},
                     "copied_bytes": sum(t["copied_bytes"] for t in manifest["tables"].values())})
    emit(rows, as_json, "\n".join(f"{r['id']}  {json.dumps(r['tables'])}" for r in rows) or "no backups")


@dr.command()
@click.option("--keep", type=click.IntRange(min=1), required=True, help="How many of the newest backups to keep.")
@click.option("--grace", "grace_s", type=click.FloatRange(min=0), default=3600.0, show_default=True,
              help="Leave unlisted files younger than SECONDS (a backup still copying has no manifest yet).")
@click.option("--dry-run", is_flag=True, help="Say what would go; delete nothing.")
@JSON
@click.pass_obj
def prune(app: Any, keep: int, grace_s: float, dry_run: bool, as_json: bool) -> None:
    """Delete the backups older than the newest KEEP, then every backed-up file no kept backup lists.

    A file no kept backup lists is left while it is newer than the oldest kept backup or the grace period: it
    may be a running backup's (its manifest is written last). On an S3 backup bucket (versioning is on) the
    deleted objects remain as noncurrent versions until a lifecycle rule expires them: set one on the bucket
    (`stack provision --noncurrent-days`) to free the space."""
    result = _store(app).prune(keep, grace_s=grace_s, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    text = (f"{result['where']}: kept {len(result['kept'])} backup(s); {verb} {len(result['manifests_removed'])} "
            f"backup(s) and {result['files_removed']:,} file(s), {_mb(result['bytes_freed'])} "
            f"({result['left_young']:,} unlisted file(s) left, younger than the oldest kept backup or --grace)")
    emit(result, as_json, text)


@dr.command()
@BACKUP
@TABLES
@click.option("--replace", is_flag=True, help="Re-point tables that exist at another version (no file is deleted).")
@click.option("--catalog-db", is_flag=True, help="First bring back a lost SQLite catalog database from the backup.")
@click.option("--downstream", is_flag=True, help="Also bring back the SQLite downstream database (stop `cdc apply`).")
@click.option("--allow-downstream-ahead", "allow_ahead", is_flag=True,
              help="Restore even though the sink applied commits past the backup (they will be skipped as replays).")
@click.option("--location", help="Restore under this warehouse root instead (file:///… or s3://…), every path "
                                 "rewritten, into the configured catalog.")
@JSON
@click.pass_obj
def restore(app: Any, backup_id: str | None, tables: tuple[str, ...], replace: bool, catalog_db: bool,
            downstream: bool, allow_ahead: bool, location: str | None, as_json: bool) -> None:
    """Check every file's sha256, copy the files back to their paths (or under --location, rewritten), register
    each table at its backed-up version."""
    from batch.dr_restore import restore as run

    with bar("restoring", quiet=as_json):
        result = run(app.settings, lambda: _catalog(app, "writer"), _store(app), backup_id, list(tables) or None,
                     replace, catalog_db, downstream, allow_ahead, location)
    lines = [f"restored backup {result['backup']} ({result['checked']['files']:,} files checked) in "
             f"{result['seconds']['total']:.2f} s"]
    lines += [f"  {n}: {t['status']} at snapshot {t['snapshot_id']} ({t['files_copied']:,} files copied back)"
              for n, t in result["tables"].items()]
    lines += [f"warning: {w}" for w in result["warnings"]]
    emit(result, as_json, "\n".join(lines))


@dr.command()
@BACKUP
@TABLES
@JSON
@click.pass_obj
def verify(app: Any, backup_id: str | None, tables: tuple[str, ...], as_json: bool) -> None:
    """Every backed-up file's sha256, and each table's rows and content digest at its backed-up version."""
    from batch.dr_verify import verify as run

    spark = spark_for(app.settings, "maint")
    with progress(spark, "verifying", as_json), spark_errors("verify"):
        result = run(app.settings, spark, _catalog(app, "maint"), _store(app), backup_id, list(tables) or None)
    lines = [f"backup {result['backup']}: {result['checked']['files']:,} files, checksums equal"]
    for name, t in result["tables"].items():
        verdict = {True: "equal", False: "DIFFERENT", None: "no recorded digest to compare"}[t["equal"]]
        lines.append(f"  {name} @ {t['snapshot_id']}: {t['rows']:,} rows, digest {t['digest']} ({verdict})")
    emit(result, as_json, "\n".join(lines))
    if result["equal"] is False:
        raise click.exceptions.Exit(1)


@dr.command()
@click.option("--table", "table_name", required=True, help="The table to destroy and restore (namespace.table).")
@BACKUP
@click.option("--yes", is_flag=True, help="Really drop the table with PURGE and delete its files.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Also write the JSON report here.")
@JSON
@click.pass_obj
def drill(app: Any, table_name: str, backup_id: str | None, yes: bool, out: Path | None, as_json: bool) -> None:
    """Destroy a table (DROP … PURGE, files deleted), restore it, verify it; report RTO and RPO."""
    from batch.dr_drill import drill as run

    if not yes:
        raise click.UsageError("a drill destroys the table: pass --yes (on a table you can afford to lose)")
    table_ref(app.settings, table_name)
    spark = spark_for(app.settings, "writer")
    with progress(spark, f"drill on {table_name}", as_json), spark_errors("drill"):
        report = run(app.settings, spark, lambda: _catalog(app, "writer"), _store(app), table_name, backup_id)
    if out is not None:
        out.write_text(json.dumps(report, indent=2, sort_keys=True))
    text = (f"{table_name}: {'EQUAL' if report['equal'] else 'DIFFERENT'} after destroy + restore of backup "
            f"{report['backup']} ({report['rows']:,} rows, {report['files']} files, {_mb(report['bytes'])}); "
            f"RTO {report['rto_s']:.2f} s, RPO {report['rpo_s']:.1f} s ({len(report['lost_commits'])} commits lost)")
    emit(report, as_json, text)
    if not report["equal"]:
        raise click.exceptions.Exit(1)
