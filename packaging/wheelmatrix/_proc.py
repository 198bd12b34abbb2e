"""The one subprocess wrapper of wheelmatrix.

Every external program (nvcc, cmake, pip, auditwheel, delvewheel, twine, ...) runs through
:func:`run`: it resolves the executable, echoes the command at verbose level, captures the output
or streams it into a log file, applies a timeout that kills the whole process group (a hung
compiler and all its children), and turns a failure into :class:`CommandFailed` carrying the
command, the exit code and the tail of the output.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from wheelmatrix.errors import CommandFailed, EnvironmentProblem

log = logging.getLogger("wheelmatrix")

TAIL_LINES = 40


@dataclass(frozen=True)
class Completed:
    argv: tuple[str, ...]
    returncode: int
    output: str  # captured stdout+stderr ("" when streamed to a log file)
    duration: float


def which(program: str, *, fix: str | None = None, path: str | None = None) -> str:
    """Resolve ``program`` on PATH (or ``path``), or raise a clear error naming it."""
    if os.sep in program:
        if os.access(program, os.X_OK):
            return program
        raise EnvironmentProblem(f"{program} is not an executable file", fix=fix)
    found = shutil.which(program, path=path)
    if found is None:
        raise EnvironmentProblem(f"`{program}` was not found on PATH", fix=fix or f"install {program}")
    return found


def _tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


def session_members(sid: int) -> list[int]:
    """The processes of session ``sid`` (Linux: read from /proc; elsewhere none are found).

    A command started by :func:`run` leads its own session. Build tools put their commands in
    process groups of their own (ninja does, for each compile), so killing the leader's group alone
    would leave those compilers running; the session holds them all."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 3 and fields[3] == str(sid) and fields[0] != "Z":
            members.append(int(stat.parent.name))
    return members


def kill_session(sid: int) -> list[int]:
    """SIGKILL every process of session ``sid`` (and the group it leads); returns the pids killed."""
    killed = []
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(sid, signal.SIGKILL)
    for pid in session_members(sid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    return killed


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        kill_session(proc.pid)  # the leader is gone; its session may not be
        return
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)
    # children may outlive the leader, in groups of their own: kill the whole session regardless
    kill_session(proc.pid)
    proc.wait()


def run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    log_file: Path | None = None,
    check: bool = True,
    input: bytes | None = None,
    fix: str | None = None,
    on_start: Callable[[int], None] | None = None,
) -> Completed:
    """Run ``argv``; see the module docstring.

    ``env`` replaces the environment, ``extra_env`` is laid over it (or over ``os.environ``).
    With ``log_file`` the output is appended there (and its tail read back on failure);
    otherwise it is captured and returned. ``on_start`` is given the process id (= its process
    group's) as soon as it runs.
    """
    args = [os.fspath(a) for a in argv]
    args[0] = which(args[0], path=(env or os.environ).get("PATH"), fix=fix)
    full_env = dict(os.environ if env is None else env)
    if extra_env:
        full_env.update(extra_env)
    log.debug("$ %s", " ".join(args))
    start = time.monotonic()
    out_handle = None
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        out_handle = log_file.open("ab")
        out_handle.write(f"$ {' '.join(args)}\n".encode())
        out_handle.flush()
    try:
        proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=out_handle if out_handle is not None else subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so a timeout kills every child
        )
    except OSError as exc:
        if out_handle is not None:
            out_handle.close()
        raise EnvironmentProblem(f"cannot start `{args[0]}`: {exc.strerror}", fix=fix) from exc
    timed_out = False
    try:
        if on_start is not None:
            on_start(proc.pid)
        raw, _ = proc.communicate(input=input, timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(proc)
        raw, _ = proc.communicate()  # drains and closes the pipe (the whole group is dead)
    except BaseException:  # KeyboardInterrupt included: never leave a compiler behind
        _kill_group(proc)
        raise
    finally:
        if out_handle is not None:
            out_handle.close()
    duration = time.monotonic() - start
    output = (raw or b"").decode("utf-8", "replace")
    if log_file is not None:
        output = ""
    if check and (timed_out or proc.returncode != 0):
        tail = _tail(log_file.read_text("utf-8", "replace")) if log_file is not None else _tail(output)
        raise CommandFailed(
            args,
            proc.returncode,
            tail,
            timed_out=timed_out,
            timeout=timeout,
            log=str(log_file) if log_file is not None else None,
            fix=fix,
        )
    return Completed(tuple(args), proc.returncode if not timed_out else -9, output, duration)
