"""Cell builds of the real kbit tree: results, logs, timeouts that kill a hung compiler, the cache."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from build_fixtures.project import (
    FakeToolchain,
    copy_kbit,
    cpu_cell,
    cuda_cell,
    kbit_matrix,
    specs,
)
from wheelmatrix.model import CudaSpec
from wheelmatrix.plan import Cell
from wheelmatrix.stages.cells import (
    BuildOptions,
    build_cells,
    cell_settings,
    read_results,
    toolchain_file,
)

# These build the real kbit CPU library with CMake through scikit-build-core (a few seconds
# each). The Linux policy is set to this host's glibc or newer, so no zig link is needed here;
# the zig route is covered by the slow end-to-end tests.
POLICY = "manylinux_2_39"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return copy_kbit(tmp_path / "kbit")


def _hanging_nvcc(tmp_path: Path) -> tuple[Path, Path]:
    """A fake nvcc that starts a child and waits forever (a compiler stuck in unrolling)."""
    pidfile = tmp_path / "child.pid"
    script = tmp_path / "nvcc"
    script.write_text(f"#!/bin/sh\nsleep 600 &\necho $! > {pidfile}\nwait\n")
    script.chmod(0o755)
    return script, pidfile


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie left for init is dead too
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_hung_compiler_is_killed_at_its_timeout_while_others_complete(tree: Path, tmp_path: Path) -> None:
    nvcc, pidfile = _hanging_nvcc(tmp_path)
    matrix = kbit_matrix(tree, policy=POLICY)

    def provide(spec: CudaSpec) -> FakeToolchain:
        return FakeToolchain(nvcc, identity=f"fake-{spec.version}")

    options = BuildOptions(work=tmp_path / "work", cache=None, jobs=2, timeout=20)
    cells = [cuda_cell("13.0", (75,), (75,)), cpu_cell()]
    start = time.monotonic()
    cuda, cpu = build_cells(specs(matrix, cells), options, provide)
    elapsed = time.monotonic() - start
    assert cpu.status == "built", cpu.tail
    assert cpu.wheel is not None and Path(cpu.wheel).name == "kbit-0.1.0-py3-none-linux_x86_64.whl"
    assert cuda.status == "failed"
    assert "timed out after 20 s" in cuda.reason and "killed" in cuda.reason
    assert 20 <= cuda.duration < 50
    assert elapsed < 60
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _alive(child), "the hung compiler's child survived the timeout"
    # each cell has its own log; the failed one says what ran
    assert cuda.log is not None and "python" in Path(cuda.log).read_text()
    assert cpu.log is not None and "Created kbit-0.1.0" in Path(cpu.log).read_text()
    # the results reach the hand-off file, the failure with the log's tail
    saved = {r.cell_id: r for r in read_results(options.work)}
    assert saved["linux-x86_64-cuda130"].status == "failed"
    assert saved["linux-x86_64-cpu"].status == "built"


def test_failed_build_keeps_the_tail_and_other_results(tree: Path, tmp_path: Path) -> None:
    (tree / "csrc" / "kbit_cpu.cpp").write_text("#error this cell is broken on purpose\n")
    matrix = kbit_matrix(tree, policy=POLICY)
    skipped = Cell("windows-x86_64", "cuda130", None, (), (), None, False, "needs a Windows runner (windows-2022)")  # type: ignore[arg-type]
    options = BuildOptions(work=tmp_path / "work", cache=None, jobs=1, timeout=300)
    broken, skip = build_cells(specs(matrix, [cpu_cell(), skipped]), options)
    assert broken.status == "failed" and "exited with code" in broken.reason
    assert "broken on purpose" in broken.tail
    assert skip.status == "skipped" and skip.reason == "needs a Windows runner (windows-2022)"
    doc = json.loads((options.work / "cells.json").read_text())
    assert [c["status"] for c in doc["cells"]] == ["failed", "skipped"]


def test_rebuild_is_served_from_the_cache_and_a_source_change_rebuilds(tree: Path, tmp_path: Path) -> None:
    matrix = kbit_matrix(tree, policy=POLICY)
    options = BuildOptions(work=tmp_path / "work", cache=tmp_path / "cache", jobs=1, timeout=300)
    (first,) = build_cells(specs(matrix, [cpu_cell()]), options)
    assert first.status == "built", first.tail
    start = time.monotonic()
    (second,) = build_cells(specs(matrix, [cpu_cell()]), options)
    assert time.monotonic() - start < 5  # seconds, not a build
    assert second.status == "cached" and second.cache_key == first.cache_key
    assert second.wheel_sha256 == first.wheel_sha256
    # a kernel source change is a new key: rebuilt
    src = tree / "csrc" / "kbit_cpu.cpp"
    src.write_text(src.read_text() + "\n// changed\n")
    (third,) = build_cells(specs(matrix, [cpu_cell()]), options)
    assert third.status == "built" and third.cache_key != first.cache_key
    # so is a build setting (the archs of a CUDA cell go in through the settings)
    (fourth,) = build_cells(specs(matrix, [cpu_cell()]), replace(options, extra_settings=("cmake.define.KBIT_X=1",)))
    assert fourth.status == "built" and fourth.cache_key not in {first.cache_key, third.cache_key}


def test_cuda_cell_settings_carry_archs_toolchain_and_glibc_route(tree: Path, tmp_path: Path) -> None:
    matrix = kbit_matrix(tree)  # manylinux_2_28: older than this host's glibc 2.36 -> zig link
    toolchain = FakeToolchain(Path("/opt/cuda/bin/nvcc"))
    (spec,) = specs(matrix, [cuda_cell("12.4", (50, 90), (90,))])
    settings = cell_settings(spec)
    # the project's own variables, from [build] of its matrix
    assert "cmake.define.KBIT_BACKEND=cuda" in settings
    assert "cmake.define.KBIT_CUDA_RUNTIME=static" in settings
    assert "cmake.define.CMAKE_CUDA_ARCHITECTURES=50-real;90-real;90-virtual" in settings
    # the toolkit's own mechanics go into the toolchain file, not into the project's variables
    assert spec.link_glibc == (2, 28)
    text = toolchain_file(spec, tmp_path, toolchain).read_text()
    assert 'set(CMAKE_CUDA_COMPILER "/opt/cuda/bin/nvcc"' in text
    assert "x86_64-linux-gnu.2.28" in (tmp_path / "tools" / "zig-link").read_text()
    assert "CMAKE_CXX_CREATE_SHARED_LIBRARY" in text and "CMAKE_CUDA_CREATE_SHARED_LIBRARY" in text
    assert 'set(CMAKE_CUDA_FLAGS_INIT "-Xfatbin -compress-all")' in text


def test_interrupt_kills_the_running_builds(tree: Path, tmp_path: Path) -> None:
    nvcc, pidfile = _hanging_nvcc(tmp_path)
    here = Path(__file__).parent
    script = f"""
import sys
from pathlib import Path
sys.path.insert(0, {str(here)!r})
from build_fixtures.project import FakeToolchain, cuda_cell, kbit_matrix, specs
from wheelmatrix.stages.cells import BuildOptions, build_cells
matrix = kbit_matrix(Path({str(tree)!r}), policy={POLICY!r})
options = BuildOptions(work=Path({str(tmp_path / "work")!r}), cache=None, jobs=1, timeout=600)
build_cells(specs(matrix, [cuda_cell("13.0", (75,), (75,))]), options, lambda spec: FakeToolchain(Path({str(nvcc)!r})))
"""
    proc = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert pidfile.exists(), "the fake nvcc never started"
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        start = time.monotonic()
        _, err = proc.communicate(timeout=60)
        assert time.monotonic() - start < 20  # not the 600 s timeout
        assert proc.returncode != 0 and b"KeyboardInterrupt" in err
        child = int(pidfile.read_text())
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _alive(child), "the hung compiler's child survived Ctrl-C"
    finally:  # on a failure leave nothing running: the script, and the build group it started
        proc.kill()
        proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(os.getpgid(int(pidfile.read_text())), signal.SIGKILL)
