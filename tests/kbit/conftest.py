"""Fixtures for kbit's tests.

``kbit_library_dir`` (session): a folder holding the CPU library built from this repository and
its manifest. ``KBIT_LIBRARY_DIR`` names one when set (CI can build once and share it); otherwise
the library is built here with CMake (the root CMakeLists.txt, backend ``cpu``) into
``build/kbit-tests/`` and reused by later runs while the sources are unchanged (CMake decides).

``fake_libcuda`` (session): a stand-in for the NVIDIA driver library compiled from
``fake_libcuda/fake_libcuda.c``, for probe tests on machines without a GPU (this one has none).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from wheelmatrix._proc import run

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
BUILD = ROOT / "build" / "kbit-tests"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "gpu: needs an NVIDIA GPU and driver; skipped (with the reason) where none is"
    )
    config.addinivalue_line("markers", "slow: a real build that takes more than a few seconds")


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
    run([cmake, "-S", ROOT, "-B", build, "-DKBIT_BACKEND=cpu", "-DCMAKE_BUILD_TYPE=Release"],
        timeout=300)
    run([cmake, "--build", build, "--parallel", "2"], timeout=600)
    suffix = {"win32": ".dll", "darwin": ".dylib"}.get(sys.platform, ".so")
    for library in sorted(build.rglob(f"libkbit_cpu{suffix}")):
        if (library.parent / "libkbit_cpu.json").is_file():
            return library.parent
    raise pytest.UsageError(f"the CMake build in {build} made no libkbit_cpu{suffix} + .json")


@pytest.fixture(scope="session")
def kbit_library_dir() -> Path:
    given = os.environ.get("KBIT_LIBRARY_DIR", "").strip()
    if given:
        return Path(given)
    return build_cpu_library(BUILD / "cpu")


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
    run([cc, "-shared", "-fPIC", "-O1", "-o", out, HERE / "fake_libcuda" / "fake_libcuda.c"],
        timeout=120)
    return out
