"""kbit's kernels against the NumPy reference (reference.py), through the public API.

They run on the CPU library built from this repository (conftest's ``kbit_cpu``); test_gpu.py runs
the same checks on a CUDA library where a GPU is present.

What is asserted:
- codes: EXACT (every byte equals the reference's);
- absmax: EXACT (bitwise);
- dequantize: EXACT against the reference's dequantize of the same codes (bitwise, output dtype);
- round trip: |x - y| <= absmax_b * G / 2 * (1 + 2^-20) + absmax_b * 2^-22 + |y| * u_dtype for
  every finite x, where G is the largest gap between adjacent values of the code
  (reference.max_gap) and u_dtype the output's unit roundoff (2^-24 float32, 2^-11 float16,
  2^-8 bfloat16).
"""

from __future__ import annotations

from typing import Any

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import kbit
import reference as R  # tests/kbit/reference.py (pytest puts this folder on sys.path)
from kbit import _loader

pytestmark = pytest.mark.usefixtures("kbit_cpu")

UNIT_ROUNDOFF = {"float32": 2.0**-24, "float16": 2.0**-11, "bfloat16": 2.0**-8}
FOUR_BIT = ("nf4", "fp4")


def np_dtype(dtype: str) -> Any:
    return np.dtype(ml_dtypes.bfloat16) if dtype == "bfloat16" else np.dtype(dtype)


def ref_input(x: np.ndarray) -> np.ndarray:
    """The reference takes bfloat16 as uint16 bits."""
    x = np.ascontiguousarray(x)
    return x.view(np.uint16) if x.dtype.name == "bfloat16" else x


def bits(a: np.ndarray) -> np.ndarray:
    a = np.ascontiguousarray(a)
    return a.view({1: np.uint8, 2: np.uint16, 4: np.uint32}[a.dtype.itemsize])


def quantize(x: Any, fmt: str, blocksize: int) -> kbit.Quantized:
    if fmt in FOUR_BIT:
        return kbit.quantize_4bit(x, fmt, blocksize)
    return kbit.quantize_blockwise(x, fmt, blocksize)


def dequantize(q: kbit.Quantized, **kw: Any) -> Any:
    if q.bits == 4:
        return kbit.dequantize_4bit(q, **kw)
    return kbit.dequantize_blockwise(q, **kw)


def check_against_reference(x: np.ndarray, fmt: str, blocksize: int) -> kbit.Quantized:
    dtype = x.dtype.name
    q = quantize(x, fmt, blocksize)
    codes, absmax = R.quantize(ref_input(x), dtype, fmt, blocksize)
    assert q.codes.dtype == np.uint8 and q.absmax.dtype == np.float32
    assert q.shape == x.shape and q.dtype == dtype and q.code == fmt and q.blocksize == blocksize
    np.testing.assert_array_equal(q.codes, codes, err_msg="codes differ from the reference")
    np.testing.assert_array_equal(bits(q.absmax), bits(absmax), err_msg="absmax differs")
    y = dequantize(q)
    assert y.shape == x.shape and y.dtype == x.dtype
    expected = R.dequantize(codes, absmax, fmt, blocksize, x.size, dtype)
    np.testing.assert_array_equal(bits(y).reshape(-1), bits(expected), err_msg="dequantize differs from the reference")
    return q


def sample(rng: np.random.Generator, n: int, blocksize: int, dtype: str) -> np.ndarray:
    """Normal data with a different scale per block (1e-3 .. 1e3), one all-zero block."""
    blocks = -(-n // blocksize)
    scales = np.repeat(10.0 ** rng.uniform(-3, 3, blocks), blocksize)[:n]
    x = rng.standard_normal(n) * scales
    if blocks > 2:
        x[blocksize : 2 * blocksize] = 0.0
    return x.astype(np.float32).astype(np_dtype(dtype))


@pytest.mark.parametrize("blocksize", R.BLOCKSIZES)
@pytest.mark.parametrize("dtype", R.DTYPES)
@pytest.mark.parametrize("fmt", R.FORMATS)
def test_every_format_dtype_blocksize(fmt: str, dtype: str, blocksize: int) -> None:
    rng = np.random.default_rng([R.FORMATS.index(fmt), R.DTYPES.index(dtype), blocksize])
    n = 3 * blocksize + 37  # a short last block, and an odd count for the 4-bit tail
    x = sample(rng, n, blocksize, dtype)
    q = check_against_reference(x, fmt, blocksize)
    # round trip within the stated bound (module docstring)
    y = dequantize(q).astype(np.float64)
    x64 = x.astype(np.float64)
    scale = np.repeat(q.absmax.astype(np.float64), blocksize)[:n]
    bound = scale * R.max_gap(fmt) / 2 * (1 + 2.0**-20) + scale * 2.0**-22
    bound += np.abs(y) * UNIT_ROUNDOFF[dtype]
    assert np.all(np.abs(x64 - y) <= bound)


def test_code_tables_as_documented() -> None:
    """The reference's tables have the properties docs/kbit-formats.md states."""
    dyn = R.dynamic_code()
    assert dyn[0] == np.float32(-0.99296874) and dyn[-1] == 1.0 and -1.0 not in dyn
    assert dyn[127] == 0.0
    lin = R.linear_code()
    assert lin[0] == -1.0 and lin[-1] == 1.0 and 0.0 not in lin
    assert R.midpoints(lin)[127] == 0.0
    values, storage = R.selection_table("fp4")
    assert values.size == 15 and storage[list(values).index(0.0)] == 0
    assert R.nf4_code()[7] == 0.0


def test_empty_input() -> None:
    for fmt in R.FORMATS:
        q = quantize(np.zeros(0, np.float32), fmt, 64)
        assert q.codes.shape == (0,) and q.absmax.shape == (0,)
        assert dequantize(q).shape == (0,)
        q = quantize(np.zeros((3, 0), np.float16), fmt, 64)
        assert dequantize(q).shape == (3, 0) and dequantize(q).dtype == np.float16


ZERO_INDEX = {"dynamic": 127, "linear": 127, "nf4": 7, "fp4": 0}
TOP_INDEX = {"dynamic": 255, "linear": 255, "nf4": 15, "fp4": 3}  # code value 1.0
BOTTOM_INDEX = {"dynamic": 0, "linear": 0, "nf4": 0, "fp4": 11}  # smallest code value


def unpacked(q: kbit.Quantized, n: int) -> list[int]:
    if q.bits == 4:
        return [int(i) for i in R.unpack4(q.codes, n)]
    return [int(i) for i in q.codes[:n]]


@pytest.mark.parametrize("fmt", R.FORMATS)
def test_special_values(fmt: str) -> None:
    """docs/kbit-formats.md, "Special values"."""
    nan, inf = np.float32(np.nan), np.float32(np.inf)
    block1 = [nan, 2.0, -inf, inf, 0.0, -0.0, -2.0] + [0.5] * 57
    block2 = [nan] * 30 + [inf, -inf] + [0.0] * 32  # nothing finite and non-zero
    x = np.array(block1 + block2, dtype=np.float32)
    q = check_against_reference(x, fmt, 64)
    assert q.absmax.tolist() == [2.0, 0.0]
    idx = unpacked(q, x.size)
    z, top, bottom = ZERO_INDEX[fmt], TOP_INDEX[fmt], BOTTOM_INDEX[fmt]
    assert idx[:7] == [z, top, bottom, top, z, z, bottom]
    assert set(idx[64:]) == {z}
    y = dequantize(q)
    assert y[3] == 2.0 and y[2] == R.code_table(fmt)[bottom] * 2
    assert np.isfinite(y).all()


def test_dequantize_propagates_special_absmax() -> None:
    codes = np.array([127, 255, 0], np.uint8)
    absmax = np.array([np.nan], np.float32)
    assert np.isnan(kbit.dequantize_blockwise(codes, absmax, blocksize=64)).all()
    absmax = np.array([np.inf], np.float32)
    y = kbit.dequantize_blockwise(codes, absmax, blocksize=64)
    assert np.isnan(y[0]) and y[1] == np.inf and y[2] == -np.inf  # 0 * Inf = NaN
    y = kbit.dequantize_blockwise(codes, np.array([1e5], np.float32), blocksize=64, dtype=np.float16)
    assert y.dtype == np.float16 and y[1] == np.inf and y[0] == 0  # beyond float16: Inf


@pytest.mark.parametrize("fmt", R.FORMATS)
def test_non_contiguous_input(fmt: str) -> None:
    rng = np.random.default_rng(7)
    base = rng.standard_normal((64, 50)).astype(np.float32)
    for view in (base.T, base[:, ::3], base[::-1]):
        assert not view.flags.c_contiguous
        q = check_against_reference(view, fmt, 128)
        expected = R.quantize(np.ascontiguousarray(view), "float32", fmt, 128)[0]
        np.testing.assert_array_equal(q.codes, expected)


def test_output_dtype_choice() -> None:
    x = np.linspace(-3, 3, 200, dtype=np.float32)
    q = kbit.quantize_blockwise(x, blocksize=64)
    for dtype in ("float16", np.float16, ml_dtypes.bfloat16, "bfloat16", np.float32):
        y = kbit.dequantize_blockwise(q, dtype=dtype)
        name = np.dtype(dtype).name
        expected = R.dequantize(np.asarray(q.codes), q.absmax, "dynamic", 64, 200, name)
        np.testing.assert_array_equal(bits(y), bits(expected))
    raw = kbit.dequantize_blockwise(q.codes, q.absmax, blocksize=64, shape=(10, 20))
    assert raw.shape == (10, 20) and raw.dtype == np.float32


def test_runs_on_the_built_cpu_library() -> None:
    rt = _loader.runtime()
    assert rt.library is not None and rt.library.info.backend == "cpu"


# ------------------------------------------------------------------------------ properties


@st.composite
def arrays(draw: st.DrawFn) -> tuple[np.ndarray, str, int]:
    fmt = draw(st.sampled_from(R.FORMATS))
    dtype = draw(st.sampled_from(R.DTYPES))
    blocksize = draw(st.sampled_from(R.BLOCKSIZES))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=24))
    width = 16 if dtype == "float16" else 32
    special = draw(st.booleans())
    elements = st.floats(width=width, allow_nan=special, allow_infinity=special)
    if draw(st.booleans()):  # a non-contiguous view
        big = draw(
            hnp.arrays(
                np.float32 if width == 32 else np.float16,
                (*shape[:-1], 2 * shape[-1]) if shape else (2,),
                elements=elements,
            )
        )
        x = big[..., ::2] if shape else big[0]
    else:
        x = draw(hnp.arrays(np.float32 if width == 32 else np.float16, shape, elements=elements))
    if dtype == "bfloat16":
        x = x.astype(ml_dtypes.bfloat16)
    return x, fmt, blocksize


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(arrays())
def test_property_matches_reference(case: tuple[np.ndarray, str, int]) -> None:
    x, fmt, blocksize = case
    with np.errstate(all="ignore"):
        q = check_against_reference(x, fmt, blocksize)
    assert np.isfinite(q.absmax).all() and (q.absmax >= 0).all()
    assert q.codes.size == (x.size if fmt not in FOUR_BIT else (x.size + 1) // 2)
    assert q.absmax.size == -(-x.size // blocksize)
    if fmt in FOUR_BIT and x.size % 2:
        assert int(q.codes[-1]) & 0x0F == 0  # the odd tail's low nibble


@pytest.mark.parametrize("portable", ["0", "1"], ids=["f16c", "portable"])
@pytest.mark.parametrize("threads", ["1", "3"])
@pytest.mark.parametrize("fmt", R.FORMATS)
def test_threads_and_portable_path(fmt: str, threads: str, portable: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Large enough for the CPU library to split the work across threads (it starts one per
    2^17 elements), with and without its F16C float16 conversion (csrc/include/kbit.h: the
    library reads KBIT_NUM_THREADS and KBIT_CPU_PORTABLE at each call)."""
    monkeypatch.setenv("KBIT_NUM_THREADS", threads)
    monkeypatch.setenv("KBIT_CPU_PORTABLE", portable)
    rng = np.random.default_rng([R.FORMATS.index(fmt), int(threads), int(portable)])
    blocksize = 256 if fmt in FOUR_BIT else 1024
    x = sample(rng, (1 << 19) + 12_345, blocksize, "float16")
    x[::9973] = np.float16(np.inf)
    x[5::7919] = np.float16(np.nan)
    with np.errstate(invalid="ignore"):
        check_against_reference(x, fmt, blocksize)


@settings(max_examples=300, deadline=None)
@given(
    fmt=st.sampled_from(R.FORMATS),
    out=st.sampled_from(R.DTYPES),
    blocksize=st.sampled_from(R.BLOCKSIZES[:3]),
    n=st.integers(0, 700),
    data=st.data(),
)
def test_property_dequantize_any_codes(fmt: str, out: str, blocksize: int, n: int, data: st.DataObject) -> None:
    """Dequantize on its own: arbitrary bytes and arbitrary float32 absmax (NaN, Inf, negative,
    subnormal, beyond float16's range), rounded to each output dtype exactly as the reference."""
    packed = n if fmt not in FOUR_BIT else (n + 1) // 2
    codes = data.draw(hnp.arrays(np.uint8, packed))
    absmax = data.draw(
        hnp.arrays(np.float32, -(-n // blocksize), elements=st.floats(width=32, allow_nan=True, allow_infinity=True))
    )
    deq = kbit.dequantize_4bit if fmt in FOUR_BIT else kbit.dequantize_blockwise
    kw = {"quant_type" if fmt in FOUR_BIT else "code": fmt}
    y = deq(codes, absmax, blocksize=blocksize, dtype=np_dtype(out), shape=(n,), **kw)
    expected = R.dequantize(codes, absmax, fmt, blocksize, n, out)
    got = bits(y)
    nan = np.isnan(np.asarray(y, dtype=np.float32))
    # NaN payloads are not part of the format: compare NaN-ness there, bits elsewhere
    assert np.array_equal(nan, np.isnan(R.to_f32(expected, out) if out == "bfloat16" else expected.astype(np.float32)))
    np.testing.assert_array_equal(got[~nan], bits(expected)[~nan])
