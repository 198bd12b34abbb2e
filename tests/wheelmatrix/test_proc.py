"""The one subprocess wrapper: capture, log files, failures with tails, timeouts that kill children."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from wheelmatrix._proc import run, which
from wheelmatrix.errors import CommandFailed, EnvironmentProblem


def test_captures_output() -> None:
    done = run([sys.executable, "-c", "import sys; print('out'); print('err', file=sys.stderr)"])
    assert done.returncode == 0
    assert done.output.split() == ["out", "err"]
    assert done.argv[0] == sys.executable


def test_failure_carries_command_code_and_tail() -> None:
    script = "import sys\nfor i in range(100): print('line', i)\nsys.exit(3)"
    with pytest.raises(CommandFailed) as exc:
        run([sys.executable, "-c", script])
    err = exc.value
    assert err.returncode == 3
    assert "exited with code 3" in err.message
    assert "line 99" in err.tail and "line 10\n" not in err.tail  # only the tail


def test_no_check_returns_the_code() -> None:
    assert run([sys.executable, "-c", "raise SystemExit(4)"], check=False).returncode == 4


def test_log_file_gets_the_output(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "cell.log"
    with pytest.raises(CommandFailed) as exc:
        run([sys.executable, "-c", "print('compiling'); raise SystemExit(1)"], log_file=log)
    text = log.read_text()
    assert text.startswith("$ ") and "compiling" in text
    assert exc.value.tail.endswith("compiling")
    assert str(log) in exc.value.message


def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    # the leader starts a grandchild that would outlive it, then both hang
    script = f"sleep 300 & echo $! > {pidfile}; sleep 300"
    start = time.monotonic()
    with pytest.raises(CommandFailed) as exc:
        run(["sh", "-c", script], timeout=1.5)
    assert time.monotonic() - start < 20
    assert exc.value.timed_out
    assert "ran past its 1.5 s timeout" in exc.value.message
    child = int(pidfile.read_text())
    for _ in range(50):
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("the grandchild survived the timeout")


def test_missing_program_is_a_clear_error() -> None:
    with pytest.raises(EnvironmentProblem) as exc:
        run(["no-such-compiler-xyz", "--version"], fix="install it")
    assert exc.value.render() == "error: `no-such-compiler-xyz` was not found on PATH\n  fix: install it"


def test_which_with_a_path(tmp_path: Path) -> None:
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\necho hi\n")
    tool.chmod(0o755)
    assert which(str(tool)) == str(tool)
    assert run([str(tool)]).output == "hi\n"
    with pytest.raises(EnvironmentProblem):
        which(str(tmp_path / "absent"))
