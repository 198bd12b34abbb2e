"""Finds and loads the native qblas library that sits next to this file.

Like bitsandbytes' cextension: the highest libqblas_cuda<NNN>.so that loads wins,
else libqblas_cpu.so with a warning. QBLAS_BACKEND=cpu forces the CPU library,
QBLAS_BACKEND=cuda makes a CUDA library that does not load an error.
"""

from __future__ import annotations

import ctypes
import os
import re
import warnings
from pathlib import Path

import numpy as np

PACKAGE_DIR = Path(__file__).resolve().parent
_CUDA_NAME = re.compile(r"^libqblas_cuda(\d+)\.so$")
_BACKENDS = {0: "cpu", 1: "cuda"}


class QblasError(RuntimeError):
    pass


class Library:
    """One loaded native library file and typed wrappers around its C API."""

    def __init__(self, path: os.PathLike[str] | str) -> None:
        self.path = Path(path).resolve()
        self._lib = ctypes.CDLL(str(self.path))
        lib = self._lib
        for name in ("qblas_backend", "qblas_cuda_runtime_version", "qblas_blas_version"):
            getattr(lib, name).argtypes = []
            getattr(lib, name).restype = ctypes.c_int
        lib.qblas_error_string.argtypes = [ctypes.c_int]
        lib.qblas_error_string.restype = ctypes.c_char_p
        f32p = ctypes.POINTER(ctypes.c_float)
        lib.qblas_absmax_quantize_int8.argtypes = [f32p, ctypes.c_int, ctypes.POINTER(ctypes.c_int8), f32p]
        lib.qblas_absmax_quantize_int8.restype = ctypes.c_int
        i, f = ctypes.c_int, ctypes.c_float
        lib.qblas_sgemm.argtypes = [i, i, i, f, f32p, i, f32p, i, f, f32p, i]
        lib.qblas_sgemm.restype = ctypes.c_int

    def __repr__(self) -> str:
        return f"<qblas.Library {self.backend()} {self.path}>"

    def _check(self, func: str, rc: int) -> None:
        if rc != 0:
            msg = self._lib.qblas_error_string(rc).decode()
            raise QblasError(f"{func} failed with code {rc} ({msg}) in {self.path.name}")

    def backend(self) -> str:
        return _BACKENDS.get(self._lib.qblas_backend(), "unknown")

    def cuda_runtime_version(self) -> int:
        return int(self._lib.qblas_cuda_runtime_version())

    def blas_version(self) -> int:
        return int(self._lib.qblas_blas_version())

    def quantize_int8(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """Symmetric absmax int8 quantization: returns (q, scale) with x ~= q * scale."""
        xs = np.ascontiguousarray(x, dtype=np.float32)
        q = np.empty(xs.shape, dtype=np.int8)
        scale = ctypes.c_float(0.0)
        rc = self._lib.qblas_absmax_quantize_int8(
            xs.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
            xs.size,
            q.ctypes.data_as(ctypes.POINTER(ctypes.c_int8)),
            ctypes.byref(scale),
        )
        self._check("qblas_absmax_quantize_int8", rc)
        return q, scale.value

    def sgemm(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Row-major float32 matrix product a @ b."""
        a = np.ascontiguousarray(a, dtype=np.float32)
        b = np.ascontiguousarray(b, dtype=np.float32)
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
            raise ValueError(f"cannot multiply shapes {a.shape} and {b.shape}")
        m, k = a.shape
        n = b.shape[1]
        c = np.zeros((m, n), dtype=np.float32)
        p = ctypes.POINTER(ctypes.c_float)
        # Row-major C = A B is column-major C^T = B^T A^T.
        rc = self._lib.qblas_sgemm(
            n,
            m,
            k,
            1.0,
            b.ctypes.data_as(p),
            max(n, 1),
            a.ctypes.data_as(p),
            max(k, 1),
            0.0,
            c.ctypes.data_as(p),
            max(n, 1),
        )
        self._check("qblas_sgemm", rc)
        return c


def load(path: os.PathLike[str] | str) -> Library:
    """Load one specific library file (does not change the package's default library)."""
    return Library(path)


def cuda_libraries(directory: Path = PACKAGE_DIR) -> list[Path]:
    """libqblas_cuda*.so files in ``directory``, highest CUDA version first."""
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _CUDA_NAME.match(p.name))]
    return [p for _, p in sorted(found, reverse=True)]


def load_default(directory: Path = PACKAGE_DIR) -> Library:
    choice = os.environ.get("QBLAS_BACKEND", "").strip().lower()
    if choice not in ("", "auto", "cpu", "cuda"):
        raise ValueError(f"QBLAS_BACKEND must be 'cpu', 'cuda' or 'auto', not {choice!r}")
    errors: list[str] = []
    if choice != "cpu":
        for path in cuda_libraries(directory):
            try:
                return Library(path)
            except OSError as exc:
                errors.append(f"{path.name}: {exc}")
        if choice == "cuda":
            raise QblasError(
                "QBLAS_BACKEND=cuda but no CUDA library loaded: " + ("; ".join(errors) or f"none in {directory}")
            )
    cpu = directory / "libqblas_cpu.so"
    if not cpu.exists():
        raise QblasError(f"no qblas native library in {directory}" + (": " + "; ".join(errors) if errors else ""))
    if choice != "cpu":
        why = "; ".join(errors) if errors else "this installation has no CUDA library"
        warnings.warn(f"qblas: using the CPU library ({why})", RuntimeWarning, stacklevel=3)
    return Library(cpu)
