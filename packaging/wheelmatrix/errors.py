"""Error classes with stable exit codes and a fix-it line.

They are translated to output at one boundary only: :func:`wheelmatrix.cli.main`.
Exit codes are part of the public interface (README, "Exit codes").
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1  # a stage ran and reported failures (a cell failed, a check found errors)
    USAGE = 2  # bad command line
    MATRIX = 3  # matrix.toml is malformed or inconsistent
    TOOLCHAIN = 4  # a CUDA toolchain cannot be provided or failed verification
    BUILD = 5  # a build step could not run (not a cell's compile error: that is FAILURE)
    PACKAGE = 6  # assembling, repairing or checking wheels failed
    PUBLISH = 7  # an upload or a verification install failed
    ENVIRONMENT = 8  # something this host lacks (a tool, disk space, network)
    INTERRUPTED = 130


class WheelmatrixError(Exception):
    """Base class: a message naming what went wrong, and a line saying how to fix it."""

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.fix = fix

    def render(self) -> str:
        text = f"error: {self.message}"
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text


class MatrixError(WheelmatrixError):
    """``matrix.toml`` is malformed: names the file and the key path."""

    exit_code = ExitCode.MATRIX

    def __init__(self, file: str, key: str, problem: str, *, fix: str | None = None) -> None:
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {problem}", fix=fix)
        self.file = file
        self.key = key
        self.problem = problem


class ToolchainError(WheelmatrixError):
    exit_code = ExitCode.TOOLCHAIN


class BuildError(WheelmatrixError):
    exit_code = ExitCode.BUILD


class PackageError(WheelmatrixError):
    exit_code = ExitCode.PACKAGE


class PublishError(WheelmatrixError):
    exit_code = ExitCode.PUBLISH


class EnvironmentProblem(WheelmatrixError):
    exit_code = ExitCode.ENVIRONMENT


class CommandFailed(WheelmatrixError):
    """A subprocess exited non-zero or ran past its timeout (raised by ``_proc.run``)."""

    exit_code = ExitCode.FAILURE

    def __init__(
        self,
        argv: list[str],
        returncode: int | None,
        tail: str,
        *,
        timed_out: bool = False,
        timeout: float | None = None,
        log: str | None = None,
        fix: str | None = None,
    ) -> None:
        cmd = " ".join(argv)
        if timed_out:
            what = f"`{cmd}` ran past its {timeout:g} s timeout and was killed with all its children"
        else:
            what = f"`{cmd}` exited with code {returncode}"
        if log:
            what += f" (log: {log})"
        if tail.strip():
            what += "\n" + "\n".join("    " + line for line in tail.rstrip().splitlines())
        super().__init__(what, fix=fix)
        self.argv = argv
        self.returncode = returncode
        self.tail = tail
        self.timed_out = timed_out
