"""qext: int8 quantization as a CPython extension module (CPU, or CUDA with cuBLAS).

The wheel holds one extension module: ``_qext_cpu`` in the ``qext`` distribution, ``_qext_cudaXY``
in ``qext-cudaNx``. Both give ``quantize_int8``; the CUDA one adds the GPU path.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

__all__ = ["backend", "info", "quantize_int8"]


def _load() -> ModuleType:
    names = sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("_qext_"))
    if not names:
        raise ImportError("qext: no extension module in this installation (a broken wheel)")
    # a CUDA module first: it has the CPU path too
    names.sort(key=lambda n: (not n.startswith("_qext_cuda"), n))
    try:
        return importlib.import_module(f"{__name__}.{names[0]}")
    except ImportError as exc:
        if "libqext_kernels" not in str(exc):
            raise
        raise ImportError(
            f"qext: the extension module {names[0]} cannot load its kernels library ({exc}); it ships in a "
            "separate wheel of this release (the distribution's core): install it at the same version"
        ) from exc


_ext = _load()
backend: str = "cuda" if _ext.backend.startswith("_qext_cuda") else "cpu"


def quantize_int8(values: list[float]) -> tuple[list[int], float]:
    """Absmax int8 quantization of ``values``: (quantized values, scale); the GPU when there is one."""
    if backend == "cuda" and not _ext.cuda_unavailable():
        return _ext.quantize_int8_cuda(values)
    return _ext.quantize_int8(values)


def info() -> dict[str, object]:
    """The backend and, for CUDA, whether a GPU is usable here and why not."""
    out: dict[str, object] = {"module": _ext.backend, "backend": backend}
    if backend == "cuda":
        why = _ext.cuda_unavailable()
        out.update(
            gpu=not why,
            reason=why,
            cuda_runtime=_ext.cuda_runtime_version(),
            cublas=_ext.cublas_version(),
        )
    return out
