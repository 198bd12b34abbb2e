"""torch tensors through the API, with the real torch (CPU build; a test dependency: torch is not
a dependency of kbit). CUDA tensors are covered in test_gpu.py where a GPU is present."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import kbit
import reference as R  # tests/kbit/reference.py

# torch is optional (not a kbit dependency, and PyPI's default build pulls GBs of CUDA packages):
# the tests session installs a CPU build when KBIT_TORCH_WHEEL names one (.ci/run does where it exists).
torch = pytest.importorskip("torch", reason="torch is not installed (set KBIT_TORCH_WHEEL to a CPU torch wheel)")

pytestmark = pytest.mark.usefixtures("kbit_cpu")

TORCH = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def as_reference_input(t: torch.Tensor) -> np.ndarray:
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().view(np.uint16)
    return t.numpy()


@pytest.mark.parametrize("fmt", R.FORMATS)
@pytest.mark.parametrize("dtype", R.DTYPES)
def test_cpu_tensors_match_reference(fmt: str, dtype: str) -> None:
    gen = torch.Generator().manual_seed(3)
    x = (torch.randn(33, 70, generator=gen) * 5).to(TORCH[dtype])
    x = x.t()  # non-contiguous
    four = fmt in ("nf4", "fp4")
    q = kbit.quantize_4bit(x, fmt, 128) if four else kbit.quantize_blockwise(x, fmt, 128)
    assert isinstance(q.codes, torch.Tensor) and q.codes.dtype == torch.uint8
    assert isinstance(q.absmax, torch.Tensor) and q.absmax.dtype == torch.float32
    codes, absmax = R.quantize(as_reference_input(x), dtype, fmt, 128)
    np.testing.assert_array_equal(q.codes.numpy(), codes)
    np.testing.assert_array_equal(q.absmax.numpy().view(np.uint32), absmax.view(np.uint32))
    y = kbit.dequantize_4bit(q) if four else kbit.dequantize_blockwise(q)
    assert isinstance(y, torch.Tensor) and y.dtype == x.dtype and tuple(y.shape) == (70, 33)
    expected = R.dequantize(codes, absmax, fmt, 128, x.numel(), dtype)
    got = y.view(torch.int16).numpy().view(np.uint16) if dtype == "bfloat16" else y.numpy()
    np.testing.assert_array_equal(got.reshape(-1).view(expected.dtype), expected)


def test_output_dtype_as_torch_dtype() -> None:
    x = torch.linspace(-2, 2, 300)
    q = kbit.quantize_blockwise(x, blocksize=64)
    y = kbit.dequantize_blockwise(q, dtype=torch.bfloat16)
    assert y.dtype == torch.bfloat16
    assert torch.allclose(y.float(), x, atol=0.05)


def test_mixed_kinds_are_refused() -> None:
    q = kbit.quantize_blockwise(torch.ones(64))
    with pytest.raises(TypeError, match=r"codes \(torch on cpu\) and absmax \(NumPy\) must be "):
        kbit.dequantize_blockwise(q.codes, q.absmax.numpy(), blocksize=4096)
    with pytest.raises(TypeError, match=r"A has dtype torch\.float64; allowed: float32"):
        kbit.quantize_blockwise(torch.ones(4, dtype=torch.float64))


def test_requires_grad_tensor_is_accepted() -> None:
    x = torch.ones(64, requires_grad=True)
    assert kbit.quantize_4bit(x).codes.tolist() == [0xFF] * 32


def test_torch_not_imported_for_numpy_callers() -> None:
    code = (
        "import sys, numpy, kbit; kbit.quantize_blockwise(numpy.ones(4, numpy.float32)); print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


def test_empty_tensors() -> None:
    """An empty tensor's data pointer is 0: the kernels accept it for n = 0."""
    for four in (False, True):
        q = kbit.quantize_4bit(torch.zeros(0)) if four else kbit.quantize_blockwise(torch.zeros(0))
        assert q.codes.shape == (0,) and q.absmax.shape == (0,)
        y = kbit.dequantize_4bit(q) if four else kbit.dequantize_blockwise(q)
        assert isinstance(y, torch.Tensor) and y.shape == (0,)
