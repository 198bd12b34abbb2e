"""Progress display (rich) for downloads and unpacking, and the one-line summaries.

Progress bars go to stderr and only when it is a terminal; summaries go through logging.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

log = logging.getLogger("wheelmatrix")


class Task(Protocol):
    def advance(self, amount: int) -> None: ...


class _NullTask:
    def advance(self, amount: int) -> None:
        pass


class Reporter:
    """Shows progress for long steps; ``enabled=False`` (tests, pipes, --quiet) shows nothing."""

    def __init__(self, *, enabled: bool | None = None) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled

    def info(self, message: str) -> None:
        log.info(message)

    def warn(self, message: str) -> None:
        log.warning("warning: %s", message)

    @contextmanager
    def task(self, description: str, total: int | None, *, unit: str = "bytes") -> Iterator[Task]:
        if not self.enabled:
            yield _NullTask()
            return
        columns: list[ProgressColumn] = [TextColumn("{task.description}"), BarColumn()]
        if total is None:  # a step of unknown length: a spinner and the time it has taken
            columns = [SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn()]
        elif unit == "bytes":
            columns += [DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn()]
        else:
            columns += [TextColumn("{task.completed}/{task.total} " + unit)]
        with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
            tid = progress.add_task(description, total=total)

            class _Task:
                def advance(self, amount: int) -> None:
                    progress.advance(tid, amount)

            yield _Task()


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
