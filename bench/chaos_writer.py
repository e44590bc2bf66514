"""The chaos campaign's writer: one Spark session committing random changes to two Iceberg tables.

Started by bench/chaos.py (the settings come from ICETIDE__* in the environment, state dir included):

  chaos.keyed  format v2, merge-on-read deletes/updates/merges, identifier field `id`;
  chaos.log    format v2, copy-on-write, no identifier fields (keyless).

Both have columns (id BIGINT, ver BIGINT, v STRING). Every image a commit writes has
ver = commit number * 10^7 + id, so no row image ever appears twice in a table's history: the
campaign's audit can tell a change applied twice downstream from a legitimate one. Ids are never
reused by INSERT (a MERGE may re-insert a deleted id, with a new ver).

The writer creates the tables, commits one INSERT to each, touches --ready, then commits a random
INSERT / UPDATE / DELETE / MERGE on a random table every --min-pause..--max-pause seconds (and now
and then `rewrite_data_files`) until SIGTERM or SIGINT; then it writes its counts to --stats.
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import Any

TABLES = {
    "keyed": ("TBLPROPERTIES ('format-version'='2', 'write.delete.mode'='merge-on-read', "
              "'write.update.mode'='merge-on-read', 'write.merge.mode'='merge-on-read')"),
    "log": ("TBLPROPERTIES ('format-version'='2', 'write.delete.mode'='copy-on-write', "
            "'write.update.mode'='copy-on-write', 'write.merge.mode'='copy-on-write')"),
}
NAMESPACE = "chaos"
VER = 10_000_000  # ver = commit * VER + id (ids stay below it)
OPS = (("insert", 0.35), ("update", 0.25), ("delete", 0.15), ("merge", 0.25))
COMPACT_EVERY = 25
MAX_FAILURES_IN_A_ROW = 5  # about one rewrite_data_files per this many commits of a table


class Writer:
    def __init__(self, spark: Any, catalog: str, rng: random.Random) -> None:
        self.spark, self.catalog, self.rng = spark, catalog, rng
        self.next_id = dict.fromkeys(TABLES, 0)
        self.commit = 0
        self.counts: Counter[str] = Counter()
        self.errors: list[str] = []
        self.failures_in_a_row = 0

    def name(self, table: str) -> str:
        return f"{self.catalog}.{NAMESPACE}.{table}"

    def create(self) -> None:
        self.spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {self.catalog}.{NAMESPACE}")
        for table, props in TABLES.items():
            self.spark.sql(f"CREATE TABLE {self.name(table)} (id BIGINT NOT NULL, ver BIGINT, v STRING) "
                           f"USING iceberg PARTITIONED BY (bucket(4, id)) {props}")
        self.spark.sql(f"ALTER TABLE {self.name('keyed')} SET IDENTIFIER FIELDS id")

    def _where(self, table: str, span_max: int) -> str:
        """A random id window among the newest ids, thinned by a random modulus."""
        top = max(1, self.next_id[table])
        lo = self.rng.randrange(max(0, top - 3000), top)
        mod = self.rng.randint(1, 4)
        return f"id BETWEEN {lo} AND {lo + self.rng.randint(10, span_max)} AND id % {mod} = {self.rng.randrange(mod)}"

    def insert(self, table: str, n: int | None = None) -> None:
        n = n or self.rng.randint(20, 300)
        lo = self.next_id[table]
        self.next_id[table] += n
        self.spark.sql(f"INSERT INTO {self.name(table)} SELECT id, {self.commit * VER} + id, 'i{self.commit}' "
                       f"FROM range({lo}, {lo + n})")

    def update(self, table: str) -> None:
        self.spark.sql(f"UPDATE {self.name(table)} SET ver = {self.commit * VER} + id, v = 'u{self.commit}' "
                       f"WHERE {self._where(table, 400)}")

    def delete(self, table: str) -> None:
        self.spark.sql(f"DELETE FROM {self.name(table)} WHERE {self._where(table, 200)}")

    def merge(self, table: str) -> None:
        top = self.next_id[table]
        n = self.rng.randint(20, 150)
        ids = sorted(set(self.rng.randrange(max(0, top - 2000), top + n // 3) for _ in range(n)))
        self.next_id[table] = max(top, ids[-1] + 1)
        values = ", ".join(f"({i}, {'true' if self.rng.random() < 0.2 else 'false'})" for i in ids)
        c = self.commit
        self.spark.sql(
            f"MERGE INTO {self.name(table)} t USING (SELECT * FROM VALUES {values} AS s(id, del)) s ON t.id = s.id "
            f"WHEN MATCHED AND s.del THEN DELETE "
            f"WHEN MATCHED THEN UPDATE SET ver = {c * VER} + t.id, v = 'm{c}' "
            f"WHEN NOT MATCHED AND NOT s.del THEN INSERT (id, ver, v) VALUES (s.id, {c * VER} + s.id, 'm{c}')")

    def compact(self, table: str) -> None:
        self.spark.sql(f"CALL {self.catalog}.system.rewrite_data_files(table => '{NAMESPACE}.{table}', "
                       "options => map('min-input-files', '2', 'delete-file-threshold', '1'))")

    def step(self) -> None:
        table = self.rng.choice(sorted(TABLES))
        if self.rng.random() < 1 / COMPACT_EVERY:
            op = "compact"
        else:
            op = self.rng.choices([o for o, _ in OPS], weights=[w for _, w in OPS])[0]
        self.commit += 1
        try:
            getattr(self, op)(table)
            self.counts[f"{table}.{op}"] += 1
            self.failures_in_a_row = 0
        except Exception as exc:  # a failed commit is a finding; many in a row end the writer (exit 3)
            self.counts[f"{table}.{op}.failed"] += 1
            self.errors.append(f"{table}.{op}: {str(exc).strip().splitlines()[0][:300]}")
            self.failures_in_a_row += 1
            traceback.print_exc()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ready", type=Path, required=True, help="File touched once both tables have rows.")
    parser.add_argument("--stats", type=Path, required=True, help="Where the counts go (JSON) at the end.")
    parser.add_argument("--min-pause", type=float, default=1.0)
    parser.add_argument("--max-pause", type=float, default=2.0)
    args = parser.parse_args()

    stop = {"now": False}

    def on_signal(*_: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    from icetide.settings import load_settings
    from icetide.spark import spark_session

    settings = load_settings()
    spark = spark_session(settings)
    writer = Writer(spark, settings.catalog.name, random.Random(args.seed))
    started = time.monotonic()
    writer.create()
    for table in TABLES:
        writer.commit += 1
        writer.insert(table, 500)
        writer.counts[f"{table}.insert"] += 1
    args.ready.touch()
    while not stop["now"]:
        writer.step()
        if writer.failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
            print(f"chaos writer: {writer.failures_in_a_row} commits failed in a row; giving up", file=sys.stderr)
            return 3
        deadline = time.monotonic() + writer.rng.uniform(args.min_pause, args.max_pause)
        while not stop["now"] and time.monotonic() < deadline:
            time.sleep(0.1)
    stats = {"commits": writer.commit, "by_table_op": dict(sorted(writer.counts.items())),
             "errors": writer.errors, "seconds": round(time.monotonic() - started, 1),
             "next_id": writer.next_id}
    args.stats.write_text(json.dumps(stats, indent=2))
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
