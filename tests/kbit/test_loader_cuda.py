"""The loader with a REAL CUDA library: kbit's CUDA 13.0 variant built from PyPI's nvcc (the
fixtures of test_native_build.py), loaded through ctypes on this machine, which has no GPU and no
driver. Where a case needs a driver with a GPU, the probe is MOCKED (a ``DriverProbe`` value): the
library is still loaded for real and asked for its identity; only running a kernel needs a GPU,
and that fails with the library's own "no device" error, which is asserted too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from kbit import _loader
from kbit._diagnose import collect, render
from kbit._errors import KernelError
from kbit._manifest import CudaVersion
from kbit._native import NativeLibrary
from kbit._probe import DriverProbe, Gpu, probe_driver
from test_native_build import cuda13, cuda13_wheel, unpack  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cuda_dir(
    cuda13_wheel: tuple[Path, Path],  # noqa: F811  (the fixture imported above)
    kbit_library_dir: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """The CUDA 13.0 library and its manifest, as the wheel installs them, plus the CPU one."""
    wheel, _ = cuda13_wheel
    lib_dir = unpack(wheel, tmp_path_factory.mktemp("cuda13-unpacked"))
    for name in ("libkbit_cpu.so", "libkbit_cpu.json"):
        shutil.copy2(kbit_library_dir / name, lib_dir / name)
    assert (lib_dir / "libkbit_cuda130.so").is_file()
    return lib_dir


def blackwell(driver: int) -> DriverProbe:
    return DriverProbe("libcuda.so.1", driver, (Gpu(0, "RTX 5090 (mocked)", (12, 0)),))


def test_no_driver_sets_the_cuda_library_aside(cuda_dir: Path) -> None:
    probe = probe_driver()
    assert probe.driver is None  # this machine: no NVIDIA driver
    rt = _loader.resolve({"KBIT_LIBRARY_DIR": str(cuda_dir)}, probe)
    assert rt.on_cpu and rt.failures == ()
    assert rt.selection is not None
    [rejected] = rt.selection.rejected
    assert rejected.library.name == "libkbit_cuda130.so" and rejected.reason == "no NVIDIA driver"
    assert rt.warning is None  # no NVIDIA hardware here: CPU is right, nothing to warn about


def test_forced_cuda_library_loads_and_reports_itself(cuda_dir: Path) -> None:
    rt = _loader.resolve({"KBIT_LIBRARY_DIR": str(cuda_dir), "KBIT_CUDA_VERSION": "130"}, probe_driver())
    assert rt.library is not None and rt.failures == ()
    ident = rt.library.identity
    assert (ident.backend, ident.cuda, ident.sass, ident.ptx) == ("cuda", CudaVersion(13, 0), (75, 120), (120,))
    assert ident.cuda_runtime is not None and ident.cuda_runtime.major == 13  # static cudart
    assert rt.library.device_count() == 0
    assert rt.selection is not None
    assert rt.selection.notes == (("KBIT_CUDA_VERSION=130 forces libkbit_cuda130.so but no NVIDIA driver was found"),)
    # Running a kernel needs a GPU: the library's own error comes through.
    _loader.install(rt)
    try:
        import kbit

        with pytest.raises(KernelError, match="KBIT_ERR_NO_DEVICE") as info:
            kbit.quantize_blockwise(np.ones(64, np.float32))
        assert info.value.status == 4
    finally:
        _loader.reset()


@pytest.mark.parametrize(
    ("probe", "chosen", "why"),
    [
        (blackwell(13000), "libkbit_cuda130.so", "SASS for RTX 5090 (mocked) (sm_120)"),
        (blackwell(12080), "libkbit_cpu.so", "needs a CUDA 13.x driver"),
        (
            DriverProbe("libcuda.so.1", 13000, (Gpu(0, "V100 (mocked)", (7, 0)),)),
            "libkbit_cpu.so",
            "the GPU is older than every arch",
        ),
        (
            DriverProbe("libcuda.so.1", 13000, (Gpu(0, "H100 (mocked)", (9, 0)),)),
            "libkbit_cpu.so",
            "no code for GPU 0 H100 (mocked) (sm_90)",
        ),
    ],
    ids=["sm120-driver13", "driver-12.8", "sm70-too-old", "sm90-not-covered"],
)
def test_mocked_gpus_with_the_real_library(cuda_dir: Path, probe: DriverProbe, chosen: str, why: str) -> None:
    rt = _loader.resolve({"KBIT_LIBRARY_DIR": str(cuda_dir)}, probe)
    assert rt.library is not None and rt.library.info.name == chosen
    assert rt.failures == ()  # the real CUDA library loads when chosen
    assert rt.selection is not None
    reasons = rt.selection.reason + " | " + " | ".join(r.reason for r in rt.selection.rejected)
    assert why in reasons
    if chosen == "libkbit_cuda130.so":
        assert isinstance(rt.library, NativeLibrary) and rt.library.identity.sass == (75, 120)


def test_diagnose_lists_the_real_cuda_library(cuda_dir: Path) -> None:
    doc = collect({"KBIT_LIBRARY_DIR": str(cuda_dir)}, probe_driver(), self_test=False)
    text = render(doc)
    assert "  libkbit_cuda130.so: CUDA 13.0, SASS 75 120, PTX 120; from KBIT_LIBRARY_DIR" in text
    assert "      rejected: no NVIDIA driver" in text
    assert doc["healthy"] is True  # no GPU here: CPU is right, CUDA is listed as unusable


def test_diagnose_forced_cuda_without_gpu_is_unhealthy(cuda_dir: Path) -> None:
    doc = collect({"KBIT_LIBRARY_DIR": str(cuda_dir), "KBIT_CUDA_VERSION": "130"}, probe_driver(), self_test=False)
    assert doc["healthy"] is False
    assert doc["selected"]["devices"] == 0 and doc["selected"]["forced"] is True
    assert doc["status"].startswith("libkbit_cuda130.so loaded but its CUDA runtime sees no GPU: ")
