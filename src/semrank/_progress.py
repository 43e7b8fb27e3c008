"""Progress of long commands: a rich bar at a terminal, a line per tenth done elsewhere (a log
under nohup, cron or CI showed nothing for minutes, or a bar redrawn thousands of times)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


def _rate_column() -> Any:
    from rich.progress import ProgressColumn
    from rich.text import Text

    class RateColumn(ProgressColumn):
        """Items per second of the task (pairs/s while re-ranking)."""

        def render(self, task: Any) -> Text:
            return Text(f"{task.speed:.1f}/s" if task.speed else "", style="progress.data.speed")

    return RateColumn()


def tenths_said(total: int, say: Callable[[int, int, float], None]) -> Callable[[int], None]:
    """``advance(n)`` that calls ``say(done, percent, elapsed_s)`` at each tenth of ``total``
    done. The percent is the share done, not the tenth just passed: "768/5183 (10%)" read as a
    wrong count."""
    started, done, shown = time.monotonic(), 0, 0

    def advance(count: int) -> None:
        nonlocal done, shown
        done += count
        tenth = 10 * done // max(total, 1)
        if tenth > shown:
            shown = tenth
            say(done, 100 * done // max(total, 1), time.monotonic() - started)

    return advance


def _progress_lines(console: Console, label: str, total: int) -> Callable[[int], None]:
    def say(done: int, percent: int, elapsed: float) -> None:
        console.print(f"{label}: {done}/{total} ({percent}%) after {elapsed:.0f} s")

    return tenths_said(total, say)


@contextmanager
def progress(console: Console, label: str, total: int) -> Iterator[Callable[[int], None]]:
    """A rich progress bar on stderr (off a terminal, a line per tenth done: a log under nohup
    or CI showed nothing for minutes); yields ``advance(n)``."""
    if not console.is_terminal:
        yield _progress_lines(console, label, total)
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        _rate_column(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)
