"""A NumPy reference of kbit's formats, written from their definitions.

Sources: the format comment in csrc/include/kbit.h and docs/kbit-formats.md (blocks, midpoint
rule, packing, dequantize rounding, special values). The code tables are CONSTRUCTED here from
their definitions (the dynamic code with bitsandbytes' create_dynamic_map algorithm, the linear
code with torch's float32 linspace formula, NF4/FP4 from bitsandbytes' published values); nothing
is read from csrc/kbit_codes.h, so a wrong table there is caught.

Everything is float32 arithmetic with round-to-nearest-even, element by element; bfloat16 is
handled as raw uint16 bits (NumPy has no bfloat16), so the reference needs nothing but NumPy.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

F32 = np.float32
FloatArray = npt.NDArray[np.float32]
ByteArray = npt.NDArray[np.uint8]

BLOCKSIZES = (64, 128, 256, 512, 1024, 2048, 4096)
FORMATS = ("dynamic", "linear", "nf4", "fp4")
DTYPES = ("float32", "float16", "bfloat16")


# ----------------------------------------------------------------------------- code tables


def linspace_f32(a: float, b: float, k: int) -> FloatArray:
    """torch.linspace's float32 CPU formula: step in float32; the first half counts up from a,
    the second half counts down from b."""
    a32, b32 = F32(a), F32(b)
    step = F32((b32 - a32) / F32(k - 1))
    out = np.empty(k, dtype=F32)
    for i in range(k):
        if i < k // 2:
            out[i] = F32(a32 + F32(step * F32(i)))
        else:
            out[i] = F32(b32 - F32(step * F32(k - 1 - i)))
    return out


def dynamic_code() -> FloatArray:
    """bitsandbytes create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), sorted."""
    values: list[np.float32] = []
    for i in range(7):
        bounds = linspace_f32(0.1, 1.0, 2**i + 1)
        means = ((bounds[:-1] + bounds[1:]) / F32(2)).astype(F32)
        scale = F32(10.0 ** (i - 6))
        values += list((scale * means).astype(F32))
        values += list((-scale * means).astype(F32))
    values += [F32(0.0), F32(1.0)]
    code = np.sort(np.array(values, dtype=F32))
    assert code.size == 256 and np.unique(code).size == 256
    return code


def linear_code() -> FloatArray:
    return linspace_f32(-1.0, 1.0, 256)


NF4_VALUES = (
    -1.0,
    -0.6961928009986877,
    -0.5250730514526367,
    -0.39491748809814453,
    -0.28444138169288635,
    -0.18477343022823334,
    -0.09105003625154495,
    0.0,
    0.07958029955625534,
    0.16093020141124725,
    0.24611230194568634,
    0.33791524171829224,
    0.44070982933044434,
    0.5626170039176941,
    0.7229568362236023,
    1.0,
)  # bitsandbytes' NF4 table (quantiles of N(0, 1), normalised), sorted
FP4_NUMERATORS = (0, 0.0625, 8, 12, 4, 6, 2, 3, -0.0, -0.0625, -8, -12, -4, -6, -2, -3)
# bitsandbytes' FP4 (e2m1) table in storage order, bit 3 = sign, divided by 12


def nf4_code() -> FloatArray:
    return np.array(NF4_VALUES, dtype=F32)


def fp4_code() -> FloatArray:
    return (np.array(FP4_NUMERATORS, dtype=F32) / F32(12)).astype(F32)


def code_table(fmt: str) -> FloatArray:
    """The code in storage order (index -> value)."""
    return {"dynamic": dynamic_code, "linear": linear_code, "nf4": nf4_code, "fp4": fp4_code}[fmt]()


def selection_table(fmt: str) -> tuple[FloatArray, npt.NDArray[np.intp]]:
    """Sorted distinct values and, for each, the storage index written for it.

    For FP4, +0 and -0 are one value stored as index 0 (+0)."""
    table = code_table(fmt)
    values: list[float] = []
    indices: list[int] = []
    for index in np.argsort(table, kind="stable"):
        value = float(table[index])
        if values and value == values[-1]:  # -0 == +0: keep the first (+0, index 0 for FP4)
            if fmt == "fp4" and index == 0:
                indices[-1] = 0
            continue
        values.append(value)
        indices.append(int(index))
    return np.array(values, dtype=F32), np.array(indices, dtype=np.intp)


def midpoints(sorted_values: FloatArray) -> FloatArray:
    """m_i = (c_i + c_{i+1}) / 2: the sum rounded to float32, then halved (in float32)."""
    return ((sorted_values[:-1] + sorted_values[1:]).astype(F32) / F32(2)).astype(F32)


# ----------------------------------------------------------------------------- dtypes


def to_f32(x: npt.NDArray[np.generic], dtype: str) -> FloatArray:
    """Widen exactly: float16 by NumPy, bfloat16 given as uint16 bits."""
    if dtype == "bfloat16":
        bits = np.ascontiguousarray(x).view(np.uint16).astype(np.uint32) << np.uint32(16)
        return bits.view(F32)
    return np.asarray(x).astype(F32)


def f32_to_bf16_bits(y: FloatArray) -> npt.NDArray[np.uint16]:
    """Round float32 to bfloat16 (round to nearest even); NaN stays a quiet NaN."""
    u = np.ascontiguousarray(y, dtype=F32).view(np.uint32).astype(np.uint64)
    rounded = (u + np.uint64(0x7FFF) + ((u >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16)
    nan = np.isnan(y)
    quiet = (u >> np.uint64(16)) | np.uint64(0x0040)
    return np.where(nan, quiet, rounded).astype(np.uint16)


def from_f32(y: FloatArray, dtype: str) -> npt.NDArray[np.generic]:
    """Round float32 results to the output dtype (bfloat16: as uint16 bits)."""
    if dtype == "bfloat16":
        return f32_to_bf16_bits(y)
    return y.astype(np.dtype(dtype))


# ----------------------------------------------------------------------------- quantize


def block_absmax(x: FloatArray, blocksize: int) -> FloatArray:
    """Largest |x| per block over the finite elements; 0 for a block without any."""
    n = x.size
    blocks = math.ceil(n / blocksize)
    out = np.zeros(blocks, dtype=F32)
    a = np.abs(x)
    a = np.where(np.isfinite(a), a, F32(0))
    for b in range(blocks):
        chunk = a[b * blocksize : (b + 1) * blocksize]
        out[b] = chunk.max() if chunk.size else F32(0)
    return out


def normalise(x: FloatArray, absmax: FloatArray, blocksize: int) -> FloatArray:
    """n = x / absmax[b] in float32; 0 when absmax is 0; 0 for NaN."""
    scale = np.repeat(absmax, blocksize)[: x.size]
    with np.errstate(divide="ignore", invalid="ignore"):
        n = (x / scale).astype(F32)
    n = np.where(scale == 0, F32(0), n)
    return np.where(np.isnan(x), F32(0), n).astype(F32)


def indices(n: FloatArray, fmt: str) -> npt.NDArray[np.intp]:
    """Storage index per normalised value: k = #{i : n > m_i} over the sorted distinct values."""
    values, storage = selection_table(fmt)
    k = np.searchsorted(midpoints(values), n, side="left")  # counts m_i < n
    return storage[k]


def pack4(idx: npt.NDArray[np.intp]) -> ByteArray:
    """Element 2i in the high nibble, 2i+1 in the low; an odd tail leaves the low nibble 0."""
    padded = np.zeros(idx.size + (idx.size % 2), dtype=np.uint8)
    padded[: idx.size] = idx
    return ((padded[0::2] << 4) | padded[1::2]).astype(np.uint8)


def unpack4(codes: ByteArray, n: int) -> npt.NDArray[np.intp]:
    out = np.empty(codes.size * 2, dtype=np.intp)
    out[0::2] = codes >> 4
    out[1::2] = codes & 0x0F
    return out[:n]


def quantize(x: npt.NDArray[np.generic], dtype: str, fmt: str, blocksize: int) -> tuple[ByteArray, FloatArray]:
    """(codes, absmax) for the flattened input (C order) of the given kbit dtype."""
    x32 = to_f32(np.ascontiguousarray(x).reshape(-1), dtype)
    absmax = block_absmax(x32, blocksize)
    idx = indices(normalise(x32, absmax, blocksize), fmt)
    if fmt in ("nf4", "fp4"):
        return pack4(idx), absmax
    return idx.astype(np.uint8), absmax


def dequantize(
    codes: ByteArray, absmax: FloatArray, fmt: str, blocksize: int, n: int, dtype: str
) -> npt.NDArray[np.generic]:
    """y = code[index] * absmax[b] in float32, rounded to dtype (bfloat16 as uint16 bits)."""
    idx = unpack4(codes, n) if fmt in ("nf4", "fp4") else codes.astype(np.intp)[:n]
    scale = np.repeat(absmax, blocksize)[:n]
    with np.errstate(invalid="ignore", over="ignore"):
        y = (code_table(fmt)[idx] * scale).astype(F32)
        return from_f32(y, dtype)


def max_gap(fmt: str) -> float:
    """The largest distance between adjacent code values (the round-trip error bound is half of
    it times absmax)."""
    values, _ = selection_table(fmt)
    return float(np.max(np.diff(values.astype(np.float64))))
