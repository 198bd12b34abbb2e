"""kbit: k-bit blockwise quantization (8-bit dynamic/linear, 4-bit NF4/FP4) on CPU and CUDA.

``import kbit`` is cheap: it imports neither NumPy nor torch and loads no native library. The
library is found, chosen and loaded on the first call of a quantization function (see
``python -m kbit`` for what was found and why).
"""

from __future__ import annotations

from kbit._errors import (
    CpuFallbackWarning,
    KbitError,
    KbitTypeError,
    KbitValueError,
    KbitWarning,
    KernelError,
    LibraryError,
    LibraryLoadError,
    LibraryLoadWarning,
    OverrideError,
)

__version__ = "0.1.0"

__all__ = [
    "BLOCKSIZES",
    "CpuFallbackWarning",
    "KbitError",
    "KbitTypeError",
    "KbitValueError",
    "KbitWarning",
    "KernelError",
    "LibraryError",
    "LibraryLoadError",
    "LibraryLoadWarning",
    "OverrideError",
    "Quantized",
    "__version__",
    "dequantize_4bit",
    "dequantize_blockwise",
    "quantize_4bit",
    "quantize_blockwise",
]

TYPE_CHECKING = False  # typing's constant without importing typing (mypy reads it the same)
if TYPE_CHECKING:
    from typing import Any

    from kbit._api import (
        BLOCKSIZES,
        Quantized,
        dequantize_4bit,
        dequantize_blockwise,
        quantize_4bit,
        quantize_blockwise,
    )

_LAZY = {
    "BLOCKSIZES",
    "Quantized",
    "dequantize_4bit",
    "dequantize_blockwise",
    "quantize_4bit",
    "quantize_blockwise",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from kbit import _api

        value = getattr(_api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'kbit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY)
