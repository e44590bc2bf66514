"""`cdc run --once` on a progress bar: events published of the events the snapshots in range hold.

The total is estimated before the job starts, from the snapshot summaries (`poller.estimated_events`). The
count comes from the job's Python worker, another process: it writes the events it has published per table
to `<run dir>/progress/<table>.json`, at most every PROGRESS_S, and the command reads those files onto its
bar while it waits for the job. Only `--once` runs write them (an unbounded job has no total to reach).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from icetide.console import polling
from icetide.errors import IcetideError

if TYPE_CHECKING:
    from icetide.console import Bar
    from icetide.settings import Settings

PROGRESS_S = 0.5


def write(run_dir: str, table: str, events: int) -> None:
    """The worker's side: `events` published so far for `table` (replaced atomically)."""
    folder = Path(run_dir) / "progress"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{table}.tmp"
    tmp.write_text(json.dumps({"events": events}))
    tmp.replace(folder / f"{table}.json")


def published(run_dir: str) -> int:
    """Events published so far over all tables of the run."""
    total = 0
    for path in (Path(run_dir) / "progress").glob("*.json"):
        try:
            total += int(json.loads(path.read_text())["events"])
        except (OSError, ValueError, KeyError):  # a file being replaced: counted on the next read
            continue
    return total


def estimate(settings: Settings, tables: list[str], seeds: dict[str, str], start: str,
             key_fields: dict[str, list[str]]) -> int | None:
    """Events the run will publish (see `poller.estimated_events`), from each table's stored position or
    `start`; None when the catalog cannot tell now (the job then reports the error, not the bar)."""
    from icetide.catalog import pyiceberg_catalog
    from pyiceberg.exceptions import NoSuchTableError

    from streaming.changelog import Changelog
    from streaming.poller import Position, estimated_events, start_position

    total = 0
    try:
        catalog = pyiceberg_catalog(settings, "cdc")
        for table in tables:
            try:
                loaded = catalog.load_table(table)
            except NoSuchTableError:
                continue  # not created yet: the job publishes nothing for it either
            changelog = Changelog(loaded, settings.catalog.name, key_fields.get(table), settings.cdc.topic_prefix)
            position = Position.from_json(seeds[table]) if table in seeds else start_position(changelog, start)
            total += estimated_events(changelog, position)
    except IcetideError:
        return None
    return total


@contextmanager
def watch(run_dir: str, bar: Bar, interval_s: float = PROGRESS_S) -> Iterator[None]:
    """Poll the worker's progress files onto `bar` while the block (the job) runs; at the end the bar's
    total becomes what was published (the estimate was only an estimate)."""
    with polling(lambda: bar.update(completed=published(run_dir)), "cdc-run-progress", interval_s):
        yield
    done = published(run_dir)
    bar.update(completed=done, total=done)
