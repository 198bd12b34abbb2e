"""The public API's argument checks: one clear error naming the argument and what is allowed."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import ml_dtypes
import numpy as np
import pytest

import kbit

pytestmark = pytest.mark.usefixtures("kbit_cpu")

X = np.linspace(-1, 1, 256, dtype=np.float32)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (
            lambda: kbit.quantize_blockwise(X.astype(np.float64)),
            kbit.KbitTypeError,
            "A has dtype float64; allowed: float32, float16, bfloat16",
        ),
        (
            lambda: kbit.quantize_4bit(X.astype(np.int32)),
            TypeError,
            "A has dtype int32; allowed: float32, float16, bfloat16",
        ),
        (lambda: kbit.quantize_blockwise([1.0, 2.0]), TypeError, "A has dtype float64"),
        (
            lambda: kbit.quantize_blockwise(X, blocksize=100),
            kbit.KbitValueError,
            "blocksize=100 is not supported; allowed: 64, 128, 256, 512, 1024, 2048, 4096",
        ),
        (lambda: kbit.quantize_blockwise(X, blocksize=8192), ValueError, "blocksize=8192"),
        (lambda: kbit.quantize_4bit(X, blocksize="64"), TypeError, "blocksize must be an int, got str"),
        (lambda: kbit.quantize_4bit(X, blocksize=True), TypeError, "blocksize must be an int"),
        (
            lambda: kbit.quantize_blockwise(X, code="nf4"),
            ValueError,
            "code='nf4' is not supported; allowed: 'dynamic', 'linear'",
        ),
        (
            lambda: kbit.quantize_4bit(X, quant_type="int4"),
            ValueError,
            "quant_type='int4' is not supported; allowed: 'nf4', 'fp4'",
        ),
        (lambda: kbit.quantize_4bit(X, quant_type=4), TypeError, "quant_type must be a string, got int"),
        (
            lambda: kbit.dequantize_blockwise(np.zeros(256, np.uint8)),
            TypeError,
            "absmax is required when codes is not a Quantized result",
        ),
        (
            lambda: kbit.dequantize_blockwise(np.zeros(256, np.int8), np.ones(1, np.float32), blocksize=256),
            TypeError,
            "codes has dtype int8; allowed: uint8",
        ),
        (
            lambda: kbit.dequantize_blockwise(np.zeros(256, np.uint8), np.ones(1, np.float64), blocksize=256),
            TypeError,
            "absmax has dtype float64; allowed: float32",
        ),
        (
            lambda: kbit.dequantize_blockwise(np.zeros(256, np.uint8), np.ones(2, np.float32), blocksize=256),
            ValueError,
            "absmax has 2 values but 256 elements in blocks of 256 need 1; pass the blocksize used",
        ),
        (
            lambda: kbit.dequantize_blockwise(
                np.zeros(256, np.uint8), np.ones(1, np.float32), blocksize=256, shape=(300,)
            ),
            ValueError,
            "codes has 256 bytes but shape (300,) needs 300 (one byte per element)",
        ),
        (
            lambda: kbit.dequantize_4bit(np.zeros(10, np.uint8), np.ones(1, np.float32), shape=(23,)),
            ValueError,
            "codes has 10 bytes but shape (23,) needs 12 (one byte per two elements)",
        ),
        (
            lambda: kbit.dequantize_4bit(np.zeros(10, np.uint8), np.ones(1, np.float32), shape=(-1, 2)),
            TypeError,
            "shape must be a tuple of non-negative ints, got (-1, 2)",
        ),
        (
            lambda: kbit.dequantize_blockwise(
                np.zeros(64, np.uint8), np.ones(1, np.float32), blocksize=64, dtype=np.float64
            ),
            ValueError,
            "dtype float64 is not supported; allowed: float32, float16, bfloat16",
        ),
        (
            lambda: kbit.dequantize_4bit(kbit.quantize_blockwise(X)),
            ValueError,
            "this Quantized result is 8-bit: use kbit.dequantize_blockwise",
        ),
        (
            lambda: kbit.dequantize_blockwise(kbit.quantize_4bit(X)),
            ValueError,
            "this Quantized result is 4-bit: use kbit.dequantize_4bit",
        ),
        (
            lambda: kbit.dequantize_blockwise(kbit.quantize_blockwise(X), blocksize=64),
            ValueError,
            "blocksize=64 contradicts the Quantized result's 4096",
        ),
        (
            lambda: kbit.dequantize_4bit(kbit.quantize_4bit(X), quant_type="fp4"),
            ValueError,
            "quant_type='fp4' contradicts the Quantized result's 'nf4'",
        ),
        (
            lambda: kbit.dequantize_4bit(kbit.quantize_4bit(X), np.ones(4, np.float32)),
            TypeError,
            "absmax must not be given with a Quantized result",
        ),
        (lambda: kbit.quantize_blockwise(object()), TypeError, "A has dtype object"),
    ],
)
def test_bad_arguments(call: Any, error: type[Exception], message: str) -> None:
    with pytest.raises(error) as info:
        call()
    assert message in str(info.value)
    assert isinstance(info.value, kbit.KbitError)


def test_round_trip_defaults_and_unpacking() -> None:
    codes, absmax = kbit.quantize_blockwise(X)
    assert codes.shape == (256,) and absmax.shape == (1,)
    y = kbit.dequantize_blockwise(codes, absmax)
    np.testing.assert_array_equal(y, kbit.dequantize_blockwise(kbit.quantize_blockwise(X)))
    q = kbit.quantize_4bit(X.reshape(16, 16).astype(np.float16))
    assert q.codes.shape == (128,) and q.absmax.shape == (4,) and q.blocksize == 64
    y4 = kbit.dequantize_4bit(q)
    assert y4.shape == (16, 16) and y4.dtype == np.float16
    raw = kbit.dequantize_4bit(q.codes, q.absmax)  # defaults: nf4, 64, flat float32
    assert raw.shape == (256,) and raw.dtype == np.float32


def test_numpy_integer_blocksize_and_big_endian_input() -> None:
    q = kbit.quantize_blockwise(X.astype(">f4"), blocksize=np.int64(128))
    assert q.blocksize == 128 and q.dtype == "float32"
    np.testing.assert_array_equal(q.codes, kbit.quantize_blockwise(X, blocksize=128).codes)


def test_bfloat16_needs_ml_dtypes_only_for_numpy_output() -> None:
    q = kbit.quantize_blockwise(X.astype(ml_dtypes.bfloat16))
    assert q.dtype == "bfloat16"
    assert kbit.dequantize_blockwise(q).dtype == np.dtype(ml_dtypes.bfloat16)


def test_import_time_and_dir() -> None:
    assert "quantize_4bit" in dir(kbit)
    with pytest.raises(AttributeError, match="module 'kbit' has no attribute 'nope'"):
        kbit.nope  # noqa: B018
    out = subprocess.run(
        [sys.executable, "-c", ("import kbit, sys; print('numpy' in sys.modules, 'torch' in sys.modules)")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == ["False", "False"]
