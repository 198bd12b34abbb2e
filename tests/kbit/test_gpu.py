"""The CUDA library against the same reference, on a real GPU. Marked ``gpu``: conftest skips
these (with the reason from the driver probe) where no GPU is present; it is kbit's only skip.

The CUDA library comes from KBIT_CUDA_LIBRARY_DIR, or is built here with CMake for the GPUs
present (conftest ``kbit_cuda_library_dir``).
"""

from __future__ import annotations

import ctypes
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ml_dtypes
import numpy as np
import pytest

import reference as R  # tests/kbit/reference.py (pytest puts this folder on sys.path)
from kbit import _loader
from kbit._probe import probe_driver
from test_kernels import check_against_reference, sample

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def on_cuda(kbit_cuda_library_dir: Path) -> Iterator[_loader.Runtime]:
    """The process's kbit runtime pointed at the CUDA library for this module."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KBIT_LIBRARY_DIR", str(kbit_cuda_library_dir))
        patch.delenv("KBIT_CUDA_VERSION", raising=False)
        _loader.reset()
        rt = _loader.runtime()
        yield rt
        _loader.reset()


def test_probe_reports_gpus() -> None:
    probe = probe_driver()
    assert probe.error is None and probe.driver is not None and probe.driver >= 11000
    assert probe.gpus and all(g.cc[0] >= 3 and g.name for g in probe.gpus)


def test_cuda_library_selected(on_cuda: _loader.Runtime) -> None:
    rt = on_cuda
    assert rt.library is not None and rt.library.info.cuda is not None, rt.selection
    assert rt.warning is None and rt.failures == ()
    assert rt.library.device_count() == len(rt.probe.gpus)
    ident = rt.library.identity
    assert ident.cuda == rt.library.info.cuda and ident.cuda_runtime is not None


@pytest.mark.parametrize("blocksize", R.BLOCKSIZES)
@pytest.mark.parametrize("dtype", R.DTYPES)
@pytest.mark.parametrize("fmt", R.FORMATS)
def test_gpu_matches_reference(on_cuda: _loader.Runtime, fmt: str, dtype: str, blocksize: int) -> None:
    """Host arrays: the CUDA library stages them through the GPU."""
    rng = np.random.default_rng([R.FORMATS.index(fmt), R.DTYPES.index(dtype), blocksize, 1])
    n = 5 * blocksize + 37
    check_against_reference(sample(rng, n, blocksize, dtype), fmt, blocksize)


class _Device:
    """Device memory through the driver API (libcuda), in the primary context the CUDA runtime
    inside the kbit library also uses; no torch needed."""

    def __init__(self) -> None:
        self.cu = ctypes.CDLL("libcuda.so.1")
        u64 = ctypes.c_uint64
        self.cu.cuMemAlloc_v2.argtypes = [ctypes.POINTER(u64), ctypes.c_size_t]
        self.cu.cuMemFree_v2.argtypes = [u64]
        self.cu.cuMemcpyHtoD_v2.argtypes = [u64, ctypes.c_void_p, ctypes.c_size_t]
        self.cu.cuMemcpyDtoH_v2.argtypes = [ctypes.c_void_p, u64, ctypes.c_size_t]
        self._check(self.cu.cuInit(0), "cuInit")
        dev = ctypes.c_int()
        self._check(self.cu.cuDeviceGet(ctypes.byref(dev), 0), "cuDeviceGet")
        self.ctx = ctypes.c_void_p()
        self._check(self.cu.cuDevicePrimaryCtxRetain(ctypes.byref(self.ctx), dev), "retain")
        self._check(self.cu.cuCtxSetCurrent(self.ctx), "cuCtxSetCurrent")
        self.held: list[int] = []

    @staticmethod
    def _check(status: int, what: str) -> None:
        assert status == 0, f"{what} failed with CUresult {status}"

    def put(self, host: np.ndarray) -> int:
        ptr = ctypes.c_uint64()
        self._check(self.cu.cuMemAlloc_v2(ctypes.byref(ptr), max(host.nbytes, 1)), "cuMemAlloc")
        self.held.append(ptr.value)
        if host.nbytes:
            self._check(self.cu.cuMemcpyHtoD_v2(ptr.value, host.ctypes.data, host.nbytes), "HtoD")
        return ptr.value

    def get(self, ptr: int, like: np.ndarray) -> np.ndarray:
        out = np.empty_like(like)
        if out.nbytes:
            self._check(self.cu.cuMemcpyDtoH_v2(out.ctypes.data, ptr, out.nbytes), "DtoH")
        return out

    def free(self) -> None:
        for ptr in self.held:
            self.cu.cuMemFree_v2(ptr)


@pytest.mark.parametrize("fmt", R.FORMATS)
def test_device_pointers(on_cuda: _loader.Runtime, fmt: str) -> None:
    """Device pointers go to the kernels in place (no staging)."""
    lib = on_cuda.library
    assert lib is not None
    rng = np.random.default_rng(5)
    blocksize, n = 256, 10_001
    x = sample(rng, n, blocksize, "float16")
    codes, absmax = R.quantize(x, "float16", fmt, blocksize)
    four = fmt in ("nf4", "fp4")
    table: dict[str, Any] = {"dynamic": 0, "linear": 1, "nf4": 0, "fp4": 1}
    dev = _Device()
    try:
        d_x = dev.put(x)
        d_codes = dev.put(np.zeros_like(codes))
        d_absmax = dev.put(np.zeros_like(absmax))
        q_fn = "kbit_quantize_4bit" if four else "kbit_quantize_blockwise"
        lib.call(q_fn, "float16", table[fmt], d_x, d_codes, d_absmax, n, blocksize)
        np.testing.assert_array_equal(dev.get(d_codes, codes), codes)
        np.testing.assert_array_equal(dev.get(d_absmax, absmax).view(np.uint32), absmax.view(np.uint32))
        d_out = dev.put(np.zeros(n, ml_dtypes.bfloat16))
        dq_fn = "kbit_dequantize_4bit" if four else "kbit_dequantize_blockwise"
        lib.call(dq_fn, "bfloat16", table[fmt], d_codes, d_absmax, d_out, n, blocksize)
        got = dev.get(d_out, np.zeros(n, np.uint16))
        np.testing.assert_array_equal(got, R.dequantize(codes, absmax, fmt, blocksize, n, "bfloat16"))
    finally:
        dev.free()
