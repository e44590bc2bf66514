"""Disaster recovery figures: RTO of a 1M-row merge-on-read table, RPO under `dr backup --every`, beside a plain copy.

In a fresh state directory: N generated vendas rows, then a merge-on-read DELETE (position deletes). Measured:
a full backup, a plain `shutil.copyfile` of the same files (the baseline, same run, same disk), an incremental
backup after one more commit, and the drill (destroy, restore, verify: RTO = detection → readable). Then the
RPO: `icetide dr backup --every E` runs as its own process while a writer commits every W seconds; just before
each commit the newest published backup's watermark is compared with the newest commit (RPO at that moment =
the span of commits the newest backup lacks). Prints one JSON document (`--out` writes it).

    .venv/bin/python bench/dr.py --rows 1000000 --out docs/results/dr.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from report import emit

TABLE = "bench.vendas"


def plain_copy_s(store: Any, manifest: dict[str, Any], scratch: Path) -> float:
    """Copy the backup's table files with shutil (no hashing, no manifest): what any copy costs here."""
    start = time.perf_counter()
    for i, item in enumerate(manifest["tables"][TABLE]["files"]):
        shutil.copyfile(store.file_path(item["path"]), scratch / str(i))
    return time.perf_counter() - start


def rpo_run(workdir: Path, env: dict[str, str], spark: Any, every_s: float, write_every_s: float,
            seconds: float) -> dict[str, Any]:
    from batch.common import render, table_ref
    from batch.dr_store import BackupStore
    from batch.generate import generate
    from icetide.settings import load_settings

    settings = load_settings(None, environ=env)
    store = BackupStore(settings.backup_dir)
    table = table_ref(settings, TABLE)
    backups = subprocess.Popen([sys.executable, "-m", "icetide.cli", "dr", "backup", "--every", str(every_s),
                                "--table", TABLE, "--json"], env={**os.environ, **env},
                               stdout=subprocess.DEVNULL, stderr=(workdir / "every.log").open("w"))
    samples: list[float] = []
    commits: list[float] = []
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            ids = store.ids()
            newest = store.load(ids[-1])["tables"][TABLE] if ids else None
            if commits and newest is not None:
                behind = [c for c in commits if c * 1000 > (newest["committed_at_ms"] or 0)]
                samples.append(behind[-1] - newest["committed_at_ms"] / 1000 if behind else 0.0)
            generate(spark, table, 1000)
            row = spark.sql(f"SELECT max(committed_at) FROM {render(table)}.snapshots").first()
            commits.append(row[0].timestamp())
            time.sleep(write_every_s)
    finally:
        backups.terminate()
        backups.wait(timeout=30)
    return {"backup_every_s": every_s, "commit_every_s": write_every_s, "seconds": seconds,
            "commits": len(commits), "backups": len(store.ids()),
            "rpo_max_s": round(max(samples), 2) if samples else None,
            "rpo_p50_s": round(statistics.median(samples), 2) if samples else None}


def measure(rows: int, workdir: Path, every_s: float, write_every_s: float, rpo_seconds: float) -> dict[str, Any]:
    from batch.bench import environment
    from batch.common import render, table_ref
    from batch.dr_backup import run_backup
    from batch.dr_drill import drill
    from batch.dr_store import BackupStore
    from batch.generate import generate
    from icetide.catalog import pyiceberg_catalog
    from icetide.settings import load_settings
    from icetide.spark import spark_session

    env = {"ICETIDE__STACK__STATE_DIR": str(workdir / "state"),
           **{k: v for k, v in os.environ.items() if k.startswith("ICETIDE__SPARK__")}}
    settings = load_settings(None, environ=env)
    spark = spark_session(settings)
    table = table_ref(settings, TABLE)
    generate(spark, table, rows)
    spark.sql(f"ALTER TABLE {render(table)} SET TBLPROPERTIES ('write.delete.mode'='merge-on-read')")
    spark.sql(f"DELETE FROM {render(table)} WHERE sale_id % 100 = 0")
    store = BackupStore(settings.backup_dir)

    full = run_backup(settings, pyiceberg_catalog(settings, "maint"), store, [TABLE])
    scratch = workdir / "plain-copy"
    scratch.mkdir()
    plain = plain_copy_s(store, store.load(), scratch)
    shutil.rmtree(scratch)
    generate(spark, table, 10_000)
    incremental = run_backup(settings, pyiceberg_catalog(settings, "maint"), store, [TABLE])
    report = drill(settings, spark, lambda: pyiceberg_catalog(settings, "writer"), store, TABLE)
    rpo = rpo_run(workdir, env, spark, every_s, write_every_s, rpo_seconds)
    return {
        "rows": report["rows"], "files": full["files"], "bytes": full["bytes"],
        "full_backup_s": full["seconds"], "plain_copy_s": round(plain, 3),
        "incremental_backup": {"seconds": incremental["seconds"], "copied_files": incremental["copied_files"],
                               "copied_bytes": incremental["copied_bytes"]},
        "drill": {k: report[k] for k in ("equal", "rto_s", "restore_seconds", "rpo_s", "files", "bytes")},
        "rpo_under_backup_every": rpo,
        "environment": environment(spark),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--every", type=float, default=15.0, help="dr backup --every (seconds)")
    parser.add_argument("--write-every", type=float, default=3.0, help="a commit every … seconds")
    parser.add_argument("--rpo-seconds", type=float, default=60.0, help="how long the RPO run lasts")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="icetide-dr-"))
    try:
        payload = {"benchmark": "dr", "command": "python bench/dr.py " + " ".join(sys.argv[1:]),
                   **measure(args.rows, workdir, args.every, args.write_every, args.rpo_seconds)}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    emit(payload, args.out)


if __name__ == "__main__":
    main()
