"""What a command shows people besides its result: text tables and progress bars, both drawn by rich.

Every room prints through here, so the rules hold everywhere: a result goes to stdout (text, or only the
JSON with `--json`); progress goes to stderr and is drawn as a live bar only on an interactive terminal.
With `--json` progress says nothing at all; on a pipe or a CI log it prints one plain line when the work
ends (what was done, how much, how long) — no bar, no cursor movement, no colour codes.

rich is imported inside the functions: `icetide --help` and the commands that never draw stay light.
"""

from __future__ import annotations

import decimal
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

NULL = "NULL"
# A pipe or file has no width: a wide result is not wrapped or cut to rich's default 80 columns.
UNBOUNDED_WIDTH = 10_000


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | decimal.Decimal) and not isinstance(value, bool)


def table_text(columns: Sequence[str], rows: Sequence[Sequence[Any]], show: Callable[[Any], str] = str,
               title: str | None = None, width: int | None = None, count: bool = True) -> str:
    """`rows` as an aligned text table (rich, no colour): a header and its rule, numeric columns right-aligned,
    None shown as NULL, cells written by `show`; `(N rows)` under it when `count`. No columns → `OK` (a
    statement without a result set). `width`: the terminal's when stdout is one, else unbounded."""
    if not columns:
        return "OK"
    from rich import box
    from rich.console import Console
    from rich.table import Table

    numeric = [bool(rows) and all(_is_number(r[i]) or r[i] is None for r in rows) for i in range(len(columns))]
    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", show_edge=False, pad_edge=False,
                  expand=False, highlight=False)
    for name, num in zip(columns, numeric, strict=True):
        table.add_column(str(name), justify="right" if num else "left", overflow="fold")
    for row in rows:
        table.add_row(*(NULL if v is None else show(v) for v in row))
    if width is None:
        width = shutil.get_terminal_size().columns if sys.stdout.isatty() else UNBOUNDED_WIDTH
    console = Console(width=width, color_system=None, force_terminal=False, no_color=True, highlight=False,
                      emoji=False, markup=False)
    with console.capture() as captured:
        console.print(table)
    lines = [line.rstrip() for line in captured.get().splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    if count:
        lines.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(lines)


class Bar(Protocol):
    """What long work reports to: how far it is (`completed` of `total`, in the bar's unit)."""

    def advance(self, amount: float = 1) -> None: ...

    def update(self, completed: float | None = None, total: float | None = None, label: str | None = None) -> None:
        """Set the count and/or total; `label` replaces the description (the step now running)."""


class _Counter:
    """The bar of a pipe or --json: keeps the count for the closing line, draws nothing."""

    def __init__(self, total: float | None) -> None:
        self.completed = 0.0
        self.total = total

    def advance(self, amount: float = 1) -> None:
        self.completed += amount

    def update(self, completed: float | None = None, total: float | None = None, label: str | None = None) -> None:
        if completed is not None:
            self.completed = completed
        if total is not None:
            self.total = total


class _RichBar:
    """A rich Progress task (rich's own lock makes it safe to update from a polling thread)."""

    def __init__(self, progress: Any, task: Any) -> None:
        self.progress, self.task = progress, task

    def advance(self, amount: float = 1) -> None:
        self.progress.advance(self.task, amount)

    def update(self, completed: float | None = None, total: float | None = None, label: str | None = None) -> None:
        self.progress.update(self.task, completed=completed, total=total, description=label)


def amount_text(completed: float, total: float | None, unit: str) -> str:
    """`1,234 events`, `8/24 tasks` (a total that differs from the count), `12.3 MB` for unit "bytes"."""
    if unit == "bytes":
        from rich.filesize import decimal as size

        return size(int(completed)) + (f" of {size(int(total))}" if total and total != completed else "")
    of = f"/{total:,.0f}" if total and total != completed else ""
    return f"{completed:,.0f}{of} {unit}".rstrip()


def stderr_is_interactive() -> bool:
    """Whether stderr is a terminal a live bar can redraw (rich's test: a tty, not TERM=dumb)."""
    from rich.console import Console

    return bool(Console(stderr=True).is_interactive)


@contextmanager
def progress(label: str, total: float | None = None, unit: str = "", quiet: bool = False,
             interactive: bool | None = None) -> Iterator[Bar]:
    """A progress bar on stderr for the work inside the block: the count, the time elapsed and — when `total` is
    known — the estimate of the time left. `unit` "bytes" shows sizes and transfer speed (backup, restore:
    boto3's `upload_fileobj(..., Callback=bar.advance)` reports each chunk's bytes as it goes).

    `quiet` (the command's --json): nothing is printed. Not on a terminal (`interactive` defaults to
    asking stderr): no bar; one line at the end. The yielded Bar is always safe to update."""
    if quiet:
        yield _Counter(total)
        return
    if interactive is None:
        interactive = stderr_is_interactive()
    if not interactive:
        counter = _Counter(total)
        started = time.monotonic()
        yield counter
        shown = f"{amount_text(counter.completed, counter.total, unit)}, " if unit else ""
        print(f"{label}: {shown}{time.monotonic() - started:.1f} s", file=sys.stderr, flush=True)
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    amount: list[ProgressColumn] = [DownloadColumn(), TransferSpeedColumn()]
    if unit != "bytes":
        amount = [MofNCompleteColumn(), TextColumn(unit)]
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), *amount,
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn()]
    with Progress(*columns, console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task(label, total=total)
        yield _RichBar(bar, task)
        if bar.tasks[0].total is None:  # unknown total: show the work as finished, not as a spinner
            bar.update(task, total=bar.tasks[0].completed or 1, completed=bar.tasks[0].completed or 1)


@contextmanager
def polling(poll: Callable[[], None], name: str, interval_s: float = 0.5) -> Iterator[None]:
    """Call `poll` every `interval_s` on a daemon thread while the block runs, and once more at its end —
    how a bar follows work it cannot count itself (Spark's tasks, the Flink worker's files). A bar is
    cosmetic: an error in `poll` ends the polling, never the work."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.wait(interval_s):
            try:
                poll()
            except Exception:  # e.g. a Spark session going down: no thread traceback over the command's output
                return

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()

