"""kbit's public functions: blockwise 8-bit and 4-bit quantization of NumPy arrays and torch tensors.

Arrays: NumPy arrays (or anything :func:`numpy.asarray` accepts) of float32, float16 or bfloat16
(``ml_dtypes.bfloat16``); torch tensors of the same dtypes when the caller passes one (torch is
imported only then). Non-contiguous input is copied to a contiguous buffer first. CPU tensors and
NumPy arrays run on the selected library (a CUDA library stages host memory through the GPU);
CUDA tensors need a CUDA library and are passed as device pointers.

Codes come back flat (1-D) with the original shape recorded in :class:`Quantized`.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from kbit._errors import KbitTypeError, KbitValueError, LibraryError
from kbit._native import CODES4, CODES8, DTYPES

BLOCKSIZES = (64, 128, 256, 512, 1024, 2048, 4096)
_DTYPE_LIST = ", ".join(DTYPES)


@dataclass(frozen=True, eq=False)  # arrays have no single truth value: compare fields yourself
class Quantized:
    """The result of a quantization: ``codes`` (uint8), ``absmax`` (float32, one per block) and
    what dequantizing needs. Unpacks as ``codes, absmax = kbit.quantize_blockwise(x)``."""

    codes: Any
    absmax: Any
    shape: tuple[int, ...]
    dtype: str  # of the input: "float32", "float16" or "bfloat16"
    code: str  # "dynamic", "linear", "nf4" or "fp4"
    blocksize: int
    bits: int  # 8 or 4

    def __iter__(self) -> Iterator[Any]:
        yield self.codes
        yield self.absmax


# --------------------------------------------------------------------------- argument checks


def _check_blocksize(blocksize: object) -> int:
    if isinstance(blocksize, bool) or not hasattr(type(blocksize), "__index__"):
        raise KbitTypeError(
            f"blocksize must be an int, got {type(blocksize).__name__}",
            fix=f"pass one of {', '.join(map(str, BLOCKSIZES))}",
        )
    value = operator.index(blocksize)  # type: ignore[arg-type]  # int, numpy integers
    if value not in BLOCKSIZES:
        raise KbitValueError(f"blocksize={value} is not supported; allowed: {', '.join(map(str, BLOCKSIZES))}")
    return value


def _check_code(code: object, allowed: dict[str, int], argument: str) -> str:
    if not isinstance(code, str):
        raise KbitTypeError(
            f"{argument} must be a string, got {type(code).__name__}",
            fix=f"pass one of {', '.join(map(repr, allowed))}",
        )
    if code not in allowed:
        raise KbitValueError(f"{argument}={code!r} is not supported; allowed: {', '.join(map(repr, allowed))}")
    return code


def _is_torch(x: object) -> bool:
    return type(x).__module__.split(".")[0] == "torch"


def _dtype_name(dtype: object) -> str:
    """float32 / float16 / bfloat16 from a string, NumPy dtype or type, or torch dtype."""
    if isinstance(dtype, str):
        name = dtype
    elif _is_torch(dtype):
        name = str(dtype).replace("torch.", "")
    else:
        import numpy as np

        try:
            name = np.dtype(dtype).name  # type: ignore[call-overload]
        except TypeError:
            name = repr(dtype)
    if name not in DTYPES:
        raise KbitValueError(f"dtype {name} is not supported; allowed: {_DTYPE_LIST}")
    return name


def _numpy_dtype(name: str) -> Any:
    import numpy as np

    if name != "bfloat16":
        return np.dtype(name)
    try:
        import ml_dtypes
    except ImportError:
        raise KbitValueError(
            "bfloat16 NumPy arrays need the ml_dtypes package",
            fix="pip install ml_dtypes, or pass torch tensors",
        ) from None
    return np.dtype(ml_dtypes.bfloat16)


# --------------------------------------------------------------------------- buffers


@dataclass
class _Buffer:
    """A contiguous buffer the kernels can read or write."""

    array: Any  # numpy.ndarray or torch.Tensor, kept alive for the call
    ptr: int
    size: int
    dtype: str  # "float32", "float16", "bfloat16", "uint8"
    shape: tuple[int, ...]
    torch_device: Any = None  # torch.device for tensors, None for NumPy


def _numpy_buffer(x: object, argument: str, allowed: Sequence[str]) -> _Buffer:
    import numpy as np

    if isinstance(x, np.ndarray):
        arr = x
    else:
        try:
            arr = np.asarray(x)
        except (TypeError, ValueError) as exc:
            raise KbitTypeError(
                f"{argument} must be a NumPy array or torch tensor, got {type(x).__name__} ({exc})"
            ) from None
    name = arr.dtype.name
    if name not in allowed:
        hint = f"convert it, e.g. {argument}.astype(numpy.float32)" if "uint8" not in allowed else None
        raise KbitTypeError(
            f"{argument} has dtype {name}; allowed: {', '.join(allowed)}",
            fix=hint,
        )
    shape = tuple(arr.shape)  # before ascontiguousarray, which makes a 0-d array 1-d
    if not arr.dtype.isnative:
        arr = arr.astype(arr.dtype.newbyteorder("="))
    arr = np.ascontiguousarray(arr)
    return _Buffer(arr, int(arr.ctypes.data), int(arr.size), name, shape)


def _torch() -> Any:
    """torch, imported only when the caller passed a tensor (torch is not a dependency)."""
    import importlib

    return importlib.import_module("torch")


def _torch_buffer(x: Any, argument: str, allowed: Sequence[str]) -> _Buffer:
    torch = _torch()

    if not isinstance(x, torch.Tensor):
        raise KbitTypeError(f"{argument} must be a torch.Tensor, got {type(x).__name__}")
    name = str(x.dtype).replace("torch.", "")
    if name not in allowed:
        raise KbitTypeError(f"{argument} has dtype {x.dtype}; allowed: {', '.join(allowed)}")
    t = x.detach().contiguous()
    return _Buffer(t, int(t.data_ptr()), int(t.numel()), name, tuple(t.shape), t.device)


def _buffer(x: object, argument: str, allowed: Sequence[str]) -> _Buffer:
    if _is_torch(x):
        return _torch_buffer(x, argument, allowed)
    return _numpy_buffer(x, argument, allowed)


def _empty(like: _Buffer, size: int, dtype: str, shape: tuple[int, ...] | None = None) -> _Buffer:
    """A new buffer of the same kind (NumPy, or torch on the same device) as ``like``."""
    shape = (size,) if shape is None else shape
    if like.torch_device is not None:
        torch = _torch()
        t = torch.empty(shape, dtype=getattr(torch, dtype), device=like.torch_device)
        return _Buffer(t, int(t.data_ptr()), size, dtype, shape, like.torch_device)
    import numpy as np

    arr = np.empty(shape, dtype=_numpy_dtype(dtype) if dtype != "uint8" else np.uint8)
    return _Buffer(arr, int(arr.ctypes.data), size, dtype, shape)


def _same_kind(a: _Buffer, b: _Buffer, names: tuple[str, str]) -> None:
    if (a.torch_device is None) != (b.torch_device is None) or str(a.torch_device) != str(b.torch_device):
        where = ["NumPy" if buf.torch_device is None else f"torch on {buf.torch_device}" for buf in (a, b)]
        raise KbitTypeError(f"{names[0]} ({where[0]}) and {names[1]} ({where[1]}) must be the same kind of array")


def _run(function: str, dtype: str, code: int, bufs: tuple[_Buffer, _Buffer, _Buffer], n: int, blocksize: int) -> None:
    from kbit._loader import library

    lib = library()
    device = bufs[0].torch_device
    if device is not None and device.type == "cuda":
        if lib.info.cuda is None:
            from kbit._loader import runtime

            reason = runtime().selection
            raise LibraryError(
                "CUDA tensors need a CUDA kbit library, but kbit runs on CPU"
                + (f" ({reason.reason})" if reason else ""),
                fix="run `python -m kbit` to see why, or pass CPU tensors",
            )
        with _torch().cuda.device(device):
            lib.call(function, dtype, code, bufs[0].ptr, bufs[1].ptr, bufs[2].ptr, n, blocksize)
        return
    if device is not None and device.type != "cpu":
        raise KbitTypeError(f"tensors on {device} are not supported; use CPU or CUDA tensors")
    lib.call(function, dtype, code, bufs[0].ptr, bufs[1].ptr, bufs[2].ptr, n, blocksize)


def _check_shape(shape: object, argument: str = "shape") -> tuple[int, ...]:
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list)) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise KbitTypeError(f"{argument} must be a tuple of non-negative ints, got {shape!r}")
    return tuple(shape)


# --------------------------------------------------------------------------- public functions


def _quantize(
    A: object, code: str, codes: dict[str, int], blocksize: int, bits: int, function: str, argument: str
) -> Quantized:
    code = _check_code(code, codes, argument)
    blocksize = _check_blocksize(blocksize)
    src = _buffer(A, "A", tuple(DTYPES))
    n = src.size
    packed = n if bits == 8 else (n + 1) // 2
    out = _empty(src, packed, "uint8")
    absmax = _empty(src, math.ceil(n / blocksize), "float32")
    _run(function, src.dtype, codes[code], (src, out, absmax), n, blocksize)
    return Quantized(out.array, absmax.array, src.shape, src.dtype, code, blocksize, bits)


def quantize_blockwise(A: object, code: str = "dynamic", blocksize: int = 4096) -> Quantized:
    """8-bit blockwise quantization of ``A`` (float32, float16 or bfloat16, any shape).

    ``code``: ``"dynamic"`` (signed dynamic tree code) or ``"linear"`` (256 values over [-1, 1]).
    ``blocksize``: 64, 128, 256, 512, 1024, 2048 or 4096 elements per absmax.
    Returns :class:`Quantized` with ``codes`` (uint8, one per element, flat) and ``absmax``
    (float32, one per block).
    """
    return _quantize(A, code, CODES8, blocksize, 8, "kbit_quantize_blockwise", "code")


def quantize_4bit(A: object, quant_type: str = "nf4", blocksize: int = 64) -> Quantized:
    """4-bit blockwise quantization: ``quant_type`` ``"nf4"`` or ``"fp4"``; two values per byte
    (element 2i in the high nibble); ``codes`` has ceil(n/2) bytes."""
    return _quantize(A, quant_type, CODES4, blocksize, 4, "kbit_quantize_4bit", "quant_type")


def _dequantize(
    codes: object,
    absmax: object,
    code: str | None,
    blocksize: int | None,
    dtype: object,
    shape: object,
    *,
    bits: int,
    table: dict[str, int],
    default_code: str,
    default_blocksize: int,
    function: str,
    argument: str,
) -> Any:
    if isinstance(codes, Quantized):
        q = codes
        if q.bits != bits:
            other = "dequantize_4bit" if q.bits == 4 else "dequantize_blockwise"
            raise KbitValueError(f"this Quantized result is {q.bits}-bit: use kbit.{other}")
        if absmax is not None:
            raise KbitTypeError("absmax must not be given with a Quantized result (it holds one)")
        for given, held, name in ((code, q.code, argument), (blocksize, q.blocksize, "blocksize")):
            if given is not None and given != held:
                raise KbitValueError(f"{name}={given!r} contradicts the Quantized result's {held!r}")
        codes, absmax, code, blocksize = q.codes, q.absmax, q.code, q.blocksize
        shape = q.shape if shape is None else shape
        dtype = q.dtype if dtype is None else dtype
    elif absmax is None:
        raise KbitTypeError("absmax is required when codes is not a Quantized result")
    code = _check_code(default_code if code is None else code, table, argument)
    blocksize = _check_blocksize(default_blocksize if blocksize is None else blocksize)
    out_dtype = _dtype_name("float32" if dtype is None else dtype)
    src = _buffer(codes, "codes", ("uint8",))
    scale = _buffer(absmax, "absmax", ("float32",))
    _same_kind(src, scale, ("codes", "absmax"))
    if shape is None:
        out_shape: tuple[int, ...] = (src.size if bits == 8 else 2 * src.size,)
    else:
        out_shape = _check_shape(shape)
    n = math.prod(out_shape)
    packed = n if bits == 8 else (n + 1) // 2
    if src.size != packed:
        per = "one byte per element" if bits == 8 else "one byte per two elements"
        raise KbitValueError(f"codes has {src.size} bytes but shape {out_shape} needs {packed} ({per})")
    blocks = math.ceil(n / blocksize)
    if scale.size != blocks:
        raise KbitValueError(
            f"absmax has {scale.size} values but {n} elements in blocks of {blocksize} "
            f"need {blocks}; pass the blocksize used to quantize"
        )
    out = _empty(src, n, out_dtype, out_shape)
    _run(function, out_dtype, table[code], (src, scale, out), n, blocksize)
    return out.array


def dequantize_blockwise(
    codes: object,
    absmax: object = None,
    *,
    code: str | None = None,
    blocksize: int | None = None,
    dtype: object = None,
    shape: object = None,
) -> Any:
    """Inverse of :func:`quantize_blockwise`: ``x = code[index] * absmax[block]`` in float32,
    rounded to ``dtype`` (default: the input's dtype for a :class:`Quantized`, else float32).

    Pass the :class:`Quantized` result, or ``codes`` and ``absmax`` with ``code`` (default
    ``"dynamic"``), ``blocksize`` (default 4096) and ``shape`` (default: flat).
    """
    return _dequantize(
        codes,
        absmax,
        code,
        blocksize,
        dtype,
        shape,
        bits=8,
        table=CODES8,
        default_code="dynamic",
        default_blocksize=4096,
        function="kbit_dequantize_blockwise",
        argument="code",
    )


def dequantize_4bit(
    codes: object,
    absmax: object = None,
    *,
    quant_type: str | None = None,
    blocksize: int | None = None,
    dtype: object = None,
    shape: object = None,
) -> Any:
    """Inverse of :func:`quantize_4bit`. With raw ``codes`` the default ``shape`` is
    ``(2 * codes.size,)``: pass ``shape`` for an odd number of elements."""
    return _dequantize(
        codes,
        absmax,
        quant_type,
        blocksize,
        dtype,
        shape,
        bits=4,
        table=CODES4,
        default_code="nf4",
        default_blocksize=64,
        function="kbit_dequantize_4bit",
        argument="quant_type",
    )
