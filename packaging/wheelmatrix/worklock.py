"""Locks on a project's work folder and cell cache, so two runs of one project never race.

``wheelmatrix build`` holds the lock of its work folder (``<work>/.wheelmatrix.lock``) and of its
cell cache for the whole run. A second run of the same project waits, saying which process holds
it (its pid and command, written beside the lock in ``<lock>.json``), or with ``wait=False`` fails
at once with :class:`WorkFolderBusy` (exit code 5).

The lock is an OS file lock (``filelock``: ``flock`` on POSIX, ``LockFileEx`` on Windows): the
kernel releases it when its holder dies, even by SIGKILL, so a killed build never blocks the next
one. The holder's description may then be left behind; it is only ever read while the lock is
held by someone, and a description whose process has ended is reported as such, never waited on.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

from filelock import FileLock, Timeout

from wheelmatrix.errors import BuildError

LOCK_NAME = ".wheelmatrix.lock"
POLL_SECONDS = 0.2


class WorkFolderBusy(BuildError):
    """Another wheelmatrix run holds the work folder or cell cache (``--no-wait``)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has ended too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def holder(folder: Path) -> str:
    """Who holds ``folder``'s lock, as written beside it by the holder."""
    info = folder / (LOCK_NAME + ".json")
    try:
        doc = json.loads(info.read_text())
        pid = int(doc["pid"])
        command = str(doc.get("command", "?"))
    except (OSError, ValueError, KeyError, TypeError):
        return "another wheelmatrix process (it has not said which yet)"
    host = str(doc.get("host", ""))
    if host == socket.gethostname() and not _alive(pid):
        return f"pid {pid} (`{command}`), which has ended; its lock is being released"
    since = doc.get("started")
    when = (
        f", since {time.strftime('%H:%M:%S', time.localtime(float(since)))}" if isinstance(since, int | float) else ""
    )
    return f"pid {pid} (`{command}`{when})"


def _describe_self(folder: Path) -> None:
    info = folder / (LOCK_NAME + ".json")
    program = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    if program == "__main__.py":  # python -m wheelmatrix
        program = "wheelmatrix"
    doc = {
        "pid": os.getpid(),
        "command": " ".join([program, *sys.argv[1:]]),
        "host": socket.gethostname(),
        "started": time.time(),
    }
    tmp = info.with_name(f"{info.name}.{os.getpid()}")
    tmp.write_text(json.dumps(doc) + "\n")
    tmp.replace(info)


@contextmanager
def hold_folder(
    folder: Path, what: str, *, wait: bool = True, on_wait: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold the lock of ``folder`` (created if missing) while the block runs.

    When another process holds it: with ``wait``, ``on_wait`` is told who, once, and the call waits
    until the lock is free (Ctrl-C and SIGTERM still interrupt it); without, :class:`WorkFolderBusy`.
    """
    folder.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(folder / LOCK_NAME), thread_local=False)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        who = holder(folder)
        if not wait:
            raise WorkFolderBusy(
                f"{what} {folder} is in use by {who}",
                fix="wait for that run to end (run again without --no-wait to wait for it)",
            ) from None
        if on_wait is not None:
            on_wait(f"waiting for {who}, which holds {what} {folder}")
        lock.acquire(timeout=-1, poll_interval=POLL_SECONDS)
    try:
        _describe_self(folder)
        yield
    finally:
        with suppress(OSError):
            (folder / (LOCK_NAME + ".json")).unlink()
        lock.release()


@contextmanager
def hold_build(
    work: Path, cache: Path | None, *, wait: bool = True, on_wait: Callable[[str], None] | None = None
) -> Iterator[None]:
    """Hold the work folder's lock and, when it is elsewhere, the cell cache's (in that order)."""
    with ExitStack() as stack:
        stack.enter_context(hold_folder(work, "the work folder", wait=wait, on_wait=on_wait))
        if cache is not None and cache.resolve() != work.resolve():
            stack.enter_context(hold_folder(cache, "the cell cache", wait=wait, on_wait=on_wait))
        yield
