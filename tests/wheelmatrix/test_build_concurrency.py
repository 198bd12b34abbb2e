"""Cancelled and concurrent builds, through the real command line on a copy of kbit's CPU cell.

Each test runs `python -m wheelmatrix build` as a subprocess (the real CMake, scikit-build-core,
ccache and build environment) with a marker variable in its environment, which every process of
the build inherits: "no process of the build left" is checked by scanning /proc for the marker.
A step of the project's own CMake build stands in for a long compile (it sleeps, or hangs).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from build_fixtures.project import CPU_ONLY_MATRIX, copy_kbit
from wheelmatrix import worklock

CELL = "linux-x86_64-cpu"


@pytest.fixture(scope="module")
def toolkit_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One toolkit cache for the module: the build environment is prepared once."""
    return tmp_path_factory.mktemp("wm-cache")


def _project(root: Path, step: str | None = None) -> Path:
    """kbit's tree with a matrix of its CPU cell; ``step`` is a shell script its build runs."""
    tree = copy_kbit(root)
    (tree / "matrix.toml").write_text(CPU_ONLY_MATRIX)
    if step is not None:
        script = root.parent / f"{root.name}-step.sh"
        script.write_text("#!/bin/sh\n" + step)
        script.chmod(0o755)
        cmake = tree / "CMakeLists.txt"
        cmake.write_text(cmake.read_text() + f'\nadd_custom_target(wm_test_step ALL COMMAND "{script}")\n')
    return tree


def _start(tree: Path, cache: Path, mark: str, *more: str) -> subprocess.Popen[str]:
    env = {**os.environ, "WHEELMATRIX_CACHE_DIR": str(cache), "WM_TEST_MARK": mark}
    argv = [sys.executable, "-m", "wheelmatrix", "build", "--matrix", str(tree / "matrix.toml")]
    argv += ["--work", str(tree / "build" / "wheelmatrix"), *more]
    return subprocess.Popen(argv, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _marked(mark: str) -> list[int]:
    """Processes that carry ``mark`` in their environment (every process of one build)."""
    needle = f"WM_TEST_MARK={mark}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in environ.read_bytes().split(b"\0"):
                stat = (environ.parent / "stat").read_text().rsplit(")", 1)[1].split()
                if stat[0] != "Z":
                    found.append(int(environ.parent.name))
        except OSError:
            continue
    return found


def _wait_for(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(predicate) and predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@contextlib.contextmanager
def _cleanup(*marks: str) -> Iterator[None]:
    try:
        yield
    finally:  # on a failure leave nothing running
        for mark in marks:
            for pid in _marked(mark):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)


def _wheel(tree: Path) -> Path:
    doc = json.loads((tree / "build" / "wheelmatrix" / "cells.json").read_text())
    (cell,) = [c for c in doc["cells"] if c["cell_id"] == CELL]
    assert cell["status"] in ("built", "cached"), cell
    return Path(cell["wheel"])


def test_sigterm_mid_build_exits_interrupted_and_leaves_no_process(tmp_path: Path, toolkit_cache: Path) -> None:
    started = tmp_path / "step.pid"
    tree = _project(tmp_path / "kbit", f'echo $$ > "{started}"\nsleep 600\n')
    mark = uuid.uuid4().hex
    with _cleanup(mark):
        proc = _start(tree, toolkit_cache, mark)
        _wait_for(started.exists, 180, "the build's long step to start")
        assert len(_marked(mark)) >= 3  # the toolkit, the build backend, CMake/ninja, the step
        proc.send_signal(signal.SIGTERM)  # what a CI runner sends when a job is cancelled
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert "interrupted; caches are left consistent" in err
        assert "Traceback" not in err
        _wait_for(lambda: not _marked(mark), 10, "every process of the build to end")
    # the interrupted cell left no wheel in the cache and no tree key: the next build starts clean
    assert not list((tree / "build" / "wheelmatrix" / "cache").rglob("*.whl"))
    assert not (tree / "build" / "wheelmatrix" / "cells" / CELL / "cmake" / "wheelmatrix-tree.key").exists()
    # and the lock is free
    with worklock.hold_folder(tree / "build" / "wheelmatrix", "the work folder", wait=False):
        pass


def test_two_concurrent_builds_of_one_project_both_end_correct(tmp_path: Path, toolkit_cache: Path) -> None:
    started = tmp_path / "step.started"
    tree = _project(tmp_path / "kbit", f'touch "{started}"\nsleep 4\n')
    first_mark, second_mark, third_mark = (uuid.uuid4().hex for _ in range(3))
    with _cleanup(first_mark, second_mark, third_mark):
        first = _start(tree, toolkit_cache, first_mark)
        _wait_for(started.exists, 180, "the first build to compile")
        # a third run with --no-wait fails at once, naming the first
        t0 = time.monotonic()
        third = _start(tree, toolkit_cache, third_mark, "--no-wait")
        _, third_err = third.communicate(timeout=60)
        assert third.returncode == 5, third_err
        assert time.monotonic() - t0 < 30
        assert f"is in use by pid {first.pid} (`wheelmatrix build" in third_err
        assert "fix:" in third_err and "Traceback" not in third_err
        # the second waits for the first, saying so, then serves the cell from the cache it filled
        second = _start(tree, toolkit_cache, second_mark)
        _, first_err = first.communicate(timeout=300)
        _, second_err = second.communicate(timeout=300)
    assert first.returncode == 0, first_err
    assert second.returncode == 0, second_err
    assert f"waiting for pid {first.pid} (`wheelmatrix build" in second_err
    doc = json.loads((tree / "build" / "wheelmatrix" / "cells.json").read_text())
    assert [c["status"] for c in doc["cells"]] == ["cached"]
    wheel = _wheel(tree)
    assert wheel.is_file()
    cached = list((tree / "build" / "wheelmatrix" / "cache").rglob("*.whl"))
    assert len(cached) == 1
    assert hashlib.sha256(wheel.read_bytes()).digest() == hashlib.sha256(cached[0].read_bytes()).digest()


def test_lock_of_a_sigkilled_build_does_not_block_the_next(tmp_path: Path, toolkit_cache: Path) -> None:
    started = tmp_path / "step.pid"
    tree = _project(tmp_path / "kbit", f'echo $$ > "{started}"\nsleep 600\n')
    killed_mark, next_mark = uuid.uuid4().hex, uuid.uuid4().hex
    work = tree / "build" / "wheelmatrix"
    with _cleanup(killed_mark, next_mark):
        killed = _start(tree, toolkit_cache, killed_mark)
        _wait_for(started.exists, 180, "the build's long step to start")
        killed.send_signal(signal.SIGKILL)  # no handler runs: the OS releases its lock
        killed.communicate(timeout=30)
        # its description is left behind, and said to be stale
        assert f"pid {killed.pid}" in worklock.holder(work) and "has ended" in worklock.holder(work)
        # its build is still running (it was in its own session) until the next run reaps it
        assert _marked(killed_mark)
        (tree / "CMakeLists.txt").write_text(
            (tree / "CMakeLists.txt").read_text().replace("add_custom_target(wm_test_step", "# (")
        )
        nxt = _start(tree, toolkit_cache, next_mark, "--no-wait")
        _, err = nxt.communicate(timeout=300)
        assert nxt.returncode == 0, err
        _wait_for(lambda: not _marked(killed_mark), 10, "the killed run's build to be reaped")
    doc = json.loads((work / "cells.json").read_text())
    (cell,) = doc["cells"]
    assert cell["status"] == "built" and cell["build_tree"] == "clean"
    assert _wheel(tree).is_file()
