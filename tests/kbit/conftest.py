"""Fixtures for kbit's tests.

``kbit_library_dir`` (session): a folder holding the CPU library built from this repository and
its manifest. ``KBIT_LIBRARY_DIR`` names one when set (CI can build once and share it); otherwise
the library is built here with CMake (the root CMakeLists.txt, backend ``cpu``) into pytest's
cache (``.pytest_cache/d/kbit-build/``) and reused by later runs (CMake rebuilds what changed).

``fake_libcuda`` (session): a stand-in for the NVIDIA driver library compiled from
``fake_libcuda/fake_libcuda.c``, for probe tests on machines without a GPU (this one has none).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent

# The tests import reference.py (and one another's helpers) by name: pytest.ini puts this folder
# (and src/) on sys.path, as --import-mode=importlib does not.
SRC = ROOT / "src"


@pytest.fixture(autouse=True)
def _children_import_this_tree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Child interpreters that kbit's tests start (`python -c "import kbit"`, `python -m kbit`)
    import the same source tree as this one unless a test gives them another environment
    (scoped to kbit's tests: the toolkit's tests install wheels into clean venvs)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH", "")) if p))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "gpu: needs an NVIDIA GPU and driver; skipped (with the reason) where none is")
    config.addinivalue_line("markers", "slow: a real build that takes more than a few seconds")


def run(argv: list[object], *, timeout: float) -> None:
    """Run a build command; on failure stop the session with the command and its output's tail.

    (kbit's tests run on every Python kbit supports, 3.9 included, so they do not import the
    wheelmatrix toolkit and its subprocess wrapper.)"""
    args = [str(a) for a in argv]
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise pytest.UsageError(f"`{' '.join(args)}` ran past {timeout:g} s") from None
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
        raise pytest.UsageError(f"`{' '.join(args)}` exited with {proc.returncode}:\n{tail}")


def _has_gpu() -> str | None:
    """None when a GPU is usable, else why not (asked through libcuda, as kbit does)."""
    from kbit._probe import probe_driver

    probe = probe_driver()
    if probe.gpus:
        return None
    return probe.error or "the NVIDIA driver sees no GPU"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if not gpu_items:
        return
    why = _has_gpu()
    if why is None:
        return
    skip = pytest.mark.skip(reason=f"needs a GPU: {why}")
    for item in gpu_items:  # the only skip in kbit's tests
        item.add_marker(skip)


def build_cpu_library(build: Path) -> Path:
    """Configure and build libkbit_cpu with CMake; return the folder holding it and its manifest."""
    cmake = shutil.which("cmake")
    if cmake is None:
        raise pytest.UsageError("cmake is needed to build libkbit_cpu (or set KBIT_LIBRARY_DIR)")
    run([cmake, "-S", ROOT, "-B", build, "-DKBIT_BACKEND=cpu", "-DCMAKE_BUILD_TYPE=Release"], timeout=300)
    run([cmake, "--build", build, "--parallel", "2"], timeout=600)
    suffix = {"win32": ".dll", "darwin": ".dylib"}.get(sys.platform, ".so")
    for library in sorted(build.rglob(f"libkbit_cpu{suffix}")):
        if (library.parent / "libkbit_cpu.json").is_file():
            return library.parent
    raise pytest.UsageError(f"the CMake build in {build} made no libkbit_cpu{suffix} + .json")


def build_cuda_library(build: Path, archs: list[int]) -> Path:
    """Build libkbit_cuda<XY> with CMake for the given archs (the GPUs present): SASS for each, PTX
    for the highest, as CMAKE_CUDA_ARCHITECTURES; the CUDA toolkit is whatever CMake finds
    (CUDACXX / PATH). Returns the folder with it and its manifest."""
    archs = sorted(set(archs))
    architectures = ";".join([f"{a}-real" for a in archs] + [f"{archs[-1]}-virtual"])
    cmake = shutil.which("cmake")
    if cmake is None:
        raise pytest.UsageError("cmake is needed to build the CUDA library (or set KBIT_CUDA_LIBRARY_DIR)")
    run(
        [
            cmake,
            "-S",
            ROOT,
            "-B",
            build,
            "-DKBIT_BACKEND=cuda",
            f"-DCMAKE_CUDA_ARCHITECTURES={architectures}",
            "-DCMAKE_BUILD_TYPE=Release",
        ],
        timeout=600,
    )
    run([cmake, "--build", build, "--parallel", "2"], timeout=1200)
    for manifest in sorted(build.rglob("libkbit_cuda*.json")):
        return manifest.parent
    raise pytest.UsageError(f"the CMake build in {build} made no libkbit_cuda*.json")


def _build_root(config: pytest.Config, factory: pytest.TempPathFactory) -> Path:
    """Where CMake builds for tests live: pytest's cache (kept between runs, so CMake rebuilds
    only what changed), or a temporary folder when the cache plugin is off."""
    cache = getattr(config, "cache", None)
    if cache is not None:
        return Path(cache.mkdir("kbit-build"))
    return factory.mktemp("kbit-build")


@pytest.fixture(scope="session")
def kbit_cuda_library_dir(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with a CUDA library: KBIT_CUDA_LIBRARY_DIR, else built here for the GPUs present
    (GPU tests only)."""
    given = os.environ.get("KBIT_CUDA_LIBRARY_DIR", "").strip()
    if given:
        return Path(given)
    from kbit._probe import probe_driver

    archs = [int(g.arch) for g in probe_driver().gpus]
    return build_cuda_library(_build_root(pytestconfig, tmp_path_factory) / "cuda", archs)


@pytest.fixture(scope="session")
def kbit_library_dir(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> Path:
    given = os.environ.get("KBIT_LIBRARY_DIR", "").strip()
    if given:
        return Path(given)
    return build_cpu_library(_build_root(pytestconfig, tmp_path_factory) / "cpu")


@pytest.fixture(scope="session")
def kbit_cpu(kbit_library_dir: Path) -> Iterator[Path]:
    """Point kbit's loader at the built CPU library (no CUDA override) for the session.

    Tests that change the environment reset the loader and restore it through monkeypatch."""
    import kbit._loader

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KBIT_LIBRARY_DIR", str(kbit_library_dir))
        patch.delenv("KBIT_CUDA_VERSION", raising=False)
        kbit._loader.reset()
        yield kbit_library_dir
        kbit._loader.reset()


@pytest.fixture(scope="session")
def fake_libcuda(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise pytest.UsageError("a C compiler (cc) is needed to build the fake libcuda")
    out = tmp_path_factory.mktemp("fake-driver") / "libcuda.so.1"
    run([cc, "-shared", "-fPIC", "-O1", "-o", out, HERE / "fake_libcuda" / "fake_libcuda.c"], timeout=120)
    return out
