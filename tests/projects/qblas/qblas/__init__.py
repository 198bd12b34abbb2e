"""qblas: symmetric int8 quantization and SGEMM through a ctypes-loaded native library."""

from __future__ import annotations

import numpy as np

from ._loader import Library, QblasError, cuda_libraries, load, load_default

__version__ = "0.3.0"
__all__ = [
    "Library",
    "QblasError",
    "backend",
    "blas_version",
    "cuda_libraries",
    "cuda_runtime_version",
    "lib",
    "lib_path",
    "load",
    "quantize_int8",
    "sgemm",
]

lib: Library = load_default()
lib_path = lib.path


def backend() -> str:
    """'cpu' or 'cuda': which library the package loaded."""
    return lib.backend()


def cuda_runtime_version() -> int:
    return lib.cuda_runtime_version()


def blas_version() -> int:
    """cuBLAS version as major*10000 + minor*100 + patch; 0 on the CPU backend."""
    return lib.blas_version()


def quantize_int8(x: np.ndarray) -> tuple[np.ndarray, float]:
    return lib.quantize_int8(x)


def sgemm(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return lib.sgemm(a, b)
