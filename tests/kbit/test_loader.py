"""The loader on real files: manifests on disk, a real corrupt .so loaded through ctypes, a real
split distribution found through importlib.metadata entry points, the real CPU library.

Where a case needs a driver with GPUs, the probe is MOCKED (this machine has no GPU): a
``DriverProbe`` value is passed in, or the fake libcuda from conftest is used.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import kbit
from kbit import _loader
from kbit._errors import (
    CpuFallbackWarning,
    LibraryError,
    LibraryLoadWarning,
    OverrideError,
)
from kbit._manifest import scan_dir
from kbit._probe import DriverProbe, Gpu

H100 = DriverProbe("libcuda.so.1", 12040, (Gpu(0, "NVIDIA H100 (mocked)", (9, 0)),))
NO_DRIVER = DriverProbe(None, None, (), "no NVIDIA driver found: libcuda.so.1: cannot open")
SUFFIX = {"win32": ".dll", "darwin": ".dylib"}.get(sys.platform, ".so")


def manifest(directory: Path, stem: str, **fields: object) -> Path:
    data: dict[str, object] = {
        "schema": 1,
        "library": f"{stem}{SUFFIX}",
        "backend": "cuda",
        "cuda": "12.4",
        "sass": [80, 86, 90],
        "ptx": [90],
        "version": "0.1.0",
        "runtime": "static",
        "flags": {},
    }
    data.update(fields)
    path = directory / f"{stem}.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def corrupt_cuda(directory: Path, stem: str = "libkbit_cuda124") -> Path:
    """A garbage file where a CUDA library should be, with a valid manifest."""
    lib = directory / f"{stem}{SUFFIX}"
    lib.write_bytes(b"this is not a shared library\n" * 64)
    manifest(directory, stem)
    return lib


def copy_cpu(src: Path, dst: Path) -> None:
    dst.mkdir(parents=True, exist_ok=True)
    for name in (f"libkbit_cpu{SUFFIX}", "libkbit_cpu.json"):
        shutil.copy2(src / name, dst / name)


# ------------------------------------------------------------------------- manifests


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"schema": 2}, "schema 2 is not supported"),
        ({"backend": "rocm"}, "'backend' is 'rocm', expected 'cpu' or 'cuda'"),
        ({"cuda": "twelve"}, "'cuda': 'twelve' is not a CUDA version like '12.4'"),
        ({"sass": [86, "90"]}, "'sass' must be a list of compute capabilities"),
        ({"sass": [], "ptx": []}, "needs at least one arch"),
        ({"library": "../evil.so"}, "'library' must be the library's file name"),
        ({"runtime": "dynamic"}, "'runtime' is 'dynamic'"),
        ({"backend": "cpu"}, "'cuda' must be null for a cpu library"),
        ({"version": 1}, "'version' must be a string"),
    ],
)
def test_malformed_manifest_is_a_problem(tmp_path: Path, fields: dict[str, object], problem: str) -> None:
    (tmp_path / f"libkbit_cuda124{SUFFIX}").write_bytes(b"x")
    manifest(tmp_path, "libkbit_cuda124", **fields)
    libraries, problems = scan_dir(tmp_path, "test")
    assert libraries == []
    assert any(problem in p.problem for p in problems), problems


def test_scan_dir_problems(tmp_path: Path) -> None:
    manifest(tmp_path, "libkbit_cuda128", cuda="12.8")  # its library is missing
    (tmp_path / f"libkbit_cuda130{SUFFIX}").write_bytes(b"x")  # no manifest
    (tmp_path / "libkbit_cuda118.json").write_text("{not json", encoding="utf-8")
    (tmp_path / f"libkbit_cuda124{SUFFIX}").write_bytes(b"x")
    manifest(tmp_path, "libkbit_cuda124")
    libraries, problems = scan_dir(tmp_path, "test")
    assert [lib.name for lib in libraries] == [f"libkbit_cuda124{SUFFIX}"]
    text = [str(p) for p in problems]
    assert any("libkbit_cuda118.json: the manifest is not valid JSON" in t for t in text)
    assert any(f"the manifest names libkbit_cuda128{SUFFIX}, which is not there" in t for t in text)
    assert any(f"libkbit_cuda130{SUFFIX}: library without a manifest" in t for t in text)
    assert scan_dir(tmp_path / "absent", "test") == ([], [])


def test_library_dir_override_must_exist(tmp_path: Path) -> None:
    rt = _loader.resolve({"KBIT_LIBRARY_DIR": str(tmp_path / "nowhere")}, NO_DRIVER)
    assert rt.library is None and isinstance(rt.error, OverrideError)
    assert f"KBIT_LIBRARY_DIR={tmp_path / 'nowhere'} is not a folder" in str(rt.error)


def test_empty_library_dir(tmp_path: Path) -> None:
    rt = _loader.resolve({"KBIT_LIBRARY_DIR": str(tmp_path)}, NO_DRIVER)
    assert rt.library is None and isinstance(rt.error, LibraryError)
    assert "no CPU library is installed (no kbit library is installed)" in str(rt.error)
    assert "no kbit library (libkbit_*.json manifest) in this folder" in str(rt.error)


# ------------------------------------------------------------------------- real loads


def test_cpu_library_loads(kbit_library_dir: Path) -> None:
    rt = _loader.resolve({"KBIT_LIBRARY_DIR": str(kbit_library_dir)}, NO_DRIVER)
    assert rt.error is None and rt.library is not None and rt.on_cpu
    ident = rt.library.identity
    assert (ident.abi, ident.backend, ident.cuda, ident.sass, ident.ptx) == (1, "cpu", None, (), ())
    assert ident.version == kbit.__version__
    assert rt.library.device_count() == 0
    assert rt.warning is None  # no GPU, no CUDA library: CPU is simply right
    assert rt.selection is not None and rt.selection.reason.startswith("running on CPU: no NVIDIA driver found")


def test_corrupt_library_is_reported_and_next_candidate_loads(kbit_library_dir: Path, tmp_path: Path) -> None:
    copy_cpu(kbit_library_dir, tmp_path)
    bad = corrupt_cuda(tmp_path)
    rt = _loader.resolve({"KBIT_LIBRARY_DIR": str(tmp_path)}, H100)
    assert rt.selection is not None and rt.selection.choice is not None
    assert rt.selection.choice.path == bad  # chosen first: SASS 90 covers the mocked H100
    assert rt.library is not None and rt.on_cpu  # ... and the CPU library took over
    [failure] = rt.failures
    assert failure.library.path == bad
    assert str(bad) in failure.error
    if sys.platform.startswith("linux"):
        assert "invalid ELF header" in failure.error  # the OS error from dlopen
    assert rt.warning_category is CpuFallbackWarning
    assert rt.warning is not None and str(bad) in rt.warning and "failed to load" in rt.warning


def test_forced_corrupt_library_is_an_error(kbit_library_dir: Path, tmp_path: Path) -> None:
    copy_cpu(kbit_library_dir, tmp_path)
    bad = corrupt_cuda(tmp_path)
    rt = _loader.resolve({"KBIT_LIBRARY_DIR": str(tmp_path), "KBIT_CUDA_VERSION": "124"}, H100)
    assert rt.library is None and isinstance(rt.error, LibraryError)
    assert "forced by KBIT_CUDA_VERSION=124" in str(rt.error)
    assert f"{bad}: cannot load {bad}:" in str(rt.error)


def test_library_not_matching_its_manifest(kbit_library_dir: Path, tmp_path: Path) -> None:
    copy_cpu(kbit_library_dir, tmp_path)
    liar = tmp_path / f"libkbit_cuda124{SUFFIX}"
    shutil.copy2(tmp_path / f"libkbit_cpu{SUFFIX}", liar)  # a real kbit library, wrong manifest
    manifest(tmp_path, "libkbit_cuda124")
    rt = _loader.resolve({"KBIT_LIBRARY_DIR": str(tmp_path)}, H100)
    assert rt.on_cpu
    [failure] = rt.failures
    assert (
        "does not match its manifest: reports backend 'cpu' (manifest 'cuda'), CUDA None "
        "(manifest 12.4)" in failure.error
    )


def test_not_a_kbit_library(kbit_library_dir: Path, tmp_path: Path) -> None:
    import ctypes.util

    libm = ctypes.util.find_library("m")
    assert libm is not None
    copy_cpu(kbit_library_dir, tmp_path)
    found = Path("/lib/x86_64-linux-gnu") / libm
    if not found.exists():  # pragma: no cover - other layouts
        pytest.fail(f"cannot locate {libm} on this machine")
    shutil.copy2(found, tmp_path / f"libkbit_cuda124{SUFFIX}")
    manifest(tmp_path, "libkbit_cuda124")
    rt = _loader.resolve({"KBIT_LIBRARY_DIR": str(tmp_path)}, H100)
    assert rt.on_cpu
    assert "not a kbit library (missing symbol:" in rt.failures[0].error


def make_split_dist(site: Path, cpu_dir: Path) -> Path:
    """A real installed distribution ``kbit-cu12`` (dist-info + entry point) holding one corrupt
    CUDA library and a copy of the real CPU library. Importing its package fails loudly, so the
    test also proves the loader never imports it."""
    package = site / "kbit_cu12"
    (package / "_lib").mkdir(parents=True)
    (package / "__init__.py").write_text("raise RuntimeError('kbit_cu12 must not be imported')\n")
    copy_cpu(cpu_dir, package / "_lib")
    corrupt_cuda(package / "_lib")
    info = site / "kbit_cu12-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: kbit-cu12\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[kbit.libraries]\ncu12 = kbit_cu12\nghost = kbit_ghost\n")
    (info / "RECORD").write_text("")
    return package


def test_library_from_split_distribution(
    kbit_library_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    package = make_split_dist(site, kbit_library_dir)
    monkeypatch.syspath_prepend(str(site))
    discovery = _loader.discover({})
    mine = [lib for lib in discovery.libraries if lib.source.startswith("kbit_cu12")]
    assert {lib.name for lib in mine} == {f"libkbit_cpu{SUFFIX}", f"libkbit_cuda124{SUFFIX}"}
    if sys.version_info >= (3, 10):
        assert mine[0].source == "kbit_cu12 (kbit-cu12 0.1.0)"
    assert any(d.path == package / "_lib" for d in discovery.dirs)
    assert any("names kbit_ghost" in p.problem and "no such package" in p.problem for p in discovery.problems)
    rt = _loader.resolve({}, H100)
    assert rt.selection is not None and rt.selection.choice is not None
    assert rt.selection.choice.path == package / "_lib" / f"libkbit_cuda124{SUFFIX}"
    assert rt.library is not None and rt.on_cpu
    assert "kbit_cu12" not in sys.modules


# ------------------------------------------------------------------------- process-wide runtime


def test_runtime_warns_once(kbit_library_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy_cpu(kbit_library_dir, tmp_path)
    corrupt_cuda(tmp_path)
    monkeypatch.setenv("KBIT_LIBRARY_DIR", str(tmp_path))
    monkeypatch.delenv("KBIT_CUDA_VERSION", raising=False)
    # A MOCKED probe: an NVIDIA kernel module without a usable libcuda (a container without GPU
    # access); the CUDA library is set aside (never loaded) and the warning says why.
    broken = DriverProbe(None, None, (), "no NVIDIA driver found: libcuda.so.1: cannot open", kernel_driver="550.54.14")
    monkeypatch.setattr(_loader, "probe_driver", lambda: broken)
    _loader.reset()
    try:
        with pytest.warns(CpuFallbackWarning, match="kernel driver 550.54.14 is loaded") as record:
            _loader.library()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # a second use must not warn again
            _loader.library()
        assert len(record) == 1
    finally:
        _loader.reset()


def test_library_error_raised_on_use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    monkeypatch.setenv("KBIT_LIBRARY_DIR", str(tmp_path))
    monkeypatch.setenv("KBIT_CUDA_VERSION", "12")
    _loader.reset()
    try:
        with pytest.raises(OverrideError, match="KBIT_CUDA_VERSION='12' is not a CUDA version"):
            kbit.quantize_blockwise(np.zeros(4, np.float32))
    finally:
        _loader.reset()


def test_load_warning_when_a_cuda_library_takes_over(kbit_library_dir: Path, tmp_path: Path) -> None:
    """Two candidates fail; the warning names both files (here the CPU library ends up used)."""
    copy_cpu(kbit_library_dir, tmp_path)
    a = corrupt_cuda(tmp_path, "libkbit_cuda124")
    b = corrupt_cuda(tmp_path, "libkbit_cuda118")
    manifest(tmp_path, "libkbit_cuda118", cuda="11.8")
    rt = _loader.resolve({"KBIT_LIBRARY_DIR": str(tmp_path)}, H100)
    assert [f.library.path for f in rt.failures] == [a, b]
    assert rt.warning is not None and str(a) in rt.warning and str(b) in rt.warning
    assert rt.warning_category in (CpuFallbackWarning, LibraryLoadWarning)


# ------------------------------------------------------------------------- import is cheap


def test_import_loads_nothing(kbit_library_dir: Path) -> None:
    code = (
        "import sys, kbit\n"
        "maps = open('/proc/self/maps').read() if sys.platform.startswith('linux') else ''\n"
        "print(sorted(m for m in ('numpy', 'torch', 'ctypes', 'importlib.metadata') "
        "if m in sys.modules), 'libkbit' in maps, 'libcuda' in maps)\n"
        "import numpy\n"
        "kbit.quantize_4bit(numpy.ones(3, numpy.float32))\n"
        "maps = open('/proc/self/maps').read() if sys.platform.startswith('linux') else 'libkbit'\n"
        "print('libkbit' in maps)\n"
    )
    env = {**os.environ, "KBIT_LIBRARY_DIR": str(kbit_library_dir)}
    env.pop("KBIT_CUDA_VERSION", None)
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], env=env, check=True, capture_output=True, text=True
    ).stdout.splitlines()
    assert out == ["[] False False", "True"]


def test_warnings_filter_error_does_not_break_cpu_only(kbit_cpu: Path) -> None:
    import numpy as np

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        q = kbit.quantize_blockwise(np.arange(10, dtype=np.float32))
    assert q.codes.shape == (10,)


def test_missing_dependency_is_reported(kbit_library_dir: Path, tmp_path: Path) -> None:
    """A real shared library whose dependency is gone (as a CUDA library linked against a shared
    CUDA runtime that is not installed): dlopen's error names the missing file."""
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc is not None, "a C compiler is needed for this test"
    dep_dir = tmp_path / "dep"
    dep_dir.mkdir()
    (dep_dir / "dep.c").write_text("int kbit_test_dependency(void) { return 1; }\n")
    (tmp_path / "lib.c").write_text(
        "int kbit_test_dependency(void);\nint kbit_abi_version(void) { return kbit_test_dependency(); }\n"
    )
    subprocess.run([cc, "-shared", "-fPIC", "-o", dep_dir / "libkbitgone.so", dep_dir / "dep.c"], check=True)
    libdir = tmp_path / "libs"
    copy_cpu(kbit_library_dir, libdir)
    target = libdir / f"libkbit_cuda124{SUFFIX}"
    subprocess.run([cc, "-shared", "-fPIC", "-o", target, tmp_path / "lib.c", f"-L{dep_dir}", "-lkbitgone"], check=True)
    manifest(libdir, "libkbit_cuda124")
    shutil.rmtree(dep_dir)  # the dependency disappears
    rt = _loader.resolve({"KBIT_LIBRARY_DIR": str(libdir)}, H100)
    assert rt.on_cpu
    [failure] = rt.failures
    assert failure.error.startswith(f"cannot load {target}: ")
    assert "libkbitgone.so: cannot open shared object file" in failure.error


def test_dll_search_dirs_for_a_shared_cuda_runtime(tmp_path: Path) -> None:
    """Windows only needs these folders (the function is pure path logic, checked here)."""
    from kbit._manifest import parse_manifest
    from kbit._native import dll_search_dirs

    roots = [tmp_path / "site" / "nvidia"]
    (roots[0] / "cu13" / "bin").mkdir(parents=True)
    (roots[0] / "cuda_runtime" / "bin").mkdir(parents=True)
    data = {
        "schema": 1,
        "library": "libkbit_cuda130.dll",
        "backend": "cuda",
        "cuda": "13.0",
        "sass": [75],
        "ptx": [],
        "version": "0.1.0",
        "runtime": "shared",
    }
    lib_dir = tmp_path / "kbit" / "_lib"
    shared = parse_manifest(data, lib_dir / "libkbit_cuda130.json", "kbit")
    assert dll_search_dirs(shared, roots) == [lib_dir, roots[0] / "cu13" / "bin", roots[0] / "cuda_runtime" / "bin"]
    static = parse_manifest({**data, "runtime": "static"}, lib_dir / "libkbit_cuda130.json", "kbit")
    assert dll_search_dirs(static, roots) == [lib_dir]
