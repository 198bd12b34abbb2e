"""CPU throughput of kbit's kernels against the NumPy reference (tests/kbit/reference.py).

    python benchmarks/bench_kernels_cpu.py [--library build/.../libkbit_cpu.so] [--n 16777216]

Without --library the CPU library is built with CMake into build/bench-cpu. GB/s counts the
bytes each kernel reads and writes (input values + codes + absmax). kbit runs once with one
thread (KBIT_NUM_THREADS=1) and once with all cores; the reference runs on min(n, 2**20)
elements (it is much slower). Not a test: figures go to docs/kbit-build.md.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "kbit"))
import reference  # noqa: E402  (tests/kbit/reference.py, the NumPy reference)

DTYPES = {"float32": (0, np.float32, 4), "float16": (1, np.float16, 2), "bfloat16": (2, np.uint16, 2)}
FORMATS = {"dynamic": (8, 0), "linear": (8, 1), "nf4": (4, 0), "fp4": (4, 1)}


def build_library() -> Path:
    build = ROOT / "build" / "bench-cpu"
    cmake = shutil.which("cmake")
    if cmake is None:
        raise SystemExit("cmake is needed to build libkbit_cpu (or pass --library)")
    subprocess.run(
        [cmake, "-S", str(ROOT), "-B", str(build), "-DKBIT_BACKEND=cpu"], check=True, stdout=subprocess.DEVNULL
    )
    subprocess.run([cmake, "--build", str(build)], check=True, stdout=subprocess.DEVNULL)
    return build / "lib" / "libkbit_cpu.so"


def call(fn: Callable[..., int], *args: object) -> None:
    """One kernel call; arrays are passed by their data pointer."""
    rc = fn(*(a.ctypes.data if isinstance(a, np.ndarray) else a for a in args))
    if rc != 0:
        raise SystemExit(f"{fn.__name__} returned {rc}")


def best_of(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--library", type=Path)
    ap.add_argument("--n", type=int, default=1 << 24)
    ap.add_argument("--blocksize", type=int, default=256)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    path = args.library or build_library()
    lib = ctypes.CDLL(str(path))
    vp, i64, ci = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    for name in ("kbit_quantize_blockwise", "kbit_dequantize_blockwise", "kbit_quantize_4bit", "kbit_dequantize_4bit"):
        getattr(lib, name).argtypes = [ci, ci, vp, vp, vp, i64, ci]
    n, bs = args.n, args.blocksize
    n_ref = min(n, 1 << 20)
    rng = np.random.default_rng(0)
    x32 = rng.standard_normal(n).astype(np.float32)
    cores = os.cpu_count()
    print(f"library {path.name}, n = {n} (reference: {n_ref}), blocksize {bs}, {cores} cores")
    print(f"{'kernel':<24}{'dtype':<10}{'1 thread GB/s':>14}{'all GB/s':>10}{'NumPy GB/s':>12}{'x NumPy':>9}")
    for fmt, (bits, code) in FORMATS.items():
        for dname, (dt, npdt, esize) in DTYPES.items():
            x = (
                x32.astype(np.float16)
                if dname == "float16"
                else (reference.f32_to_bf16_bits(x32) if dname == "bfloat16" else x32)
            )
            code_bytes = n if bits == 8 else (n + 1) // 2
            nb = -(-n // bs)
            codes = np.zeros(code_bytes, np.uint8)
            absmax = np.zeros(nb, np.float32)
            out = np.zeros(n, npdt)
            q = lib.kbit_quantize_blockwise if bits == 8 else lib.kbit_quantize_4bit
            dq = lib.kbit_dequantize_blockwise if bits == 8 else lib.kbit_dequantize_4bit
            traffic = n * esize + code_bytes + nb * 4

            run_q = functools.partial(call, q, dt, code, x, codes, absmax, n, bs)
            run_dq = functools.partial(call, dq, dt, code, codes, absmax, out, n, bs)

            xr = x[:n_ref]
            ref_codes, ref_absmax = reference.quantize(xr, dname, fmt, bs)
            ref_traffic = traffic * n_ref / n
            rows = [
                (f"quantize {fmt}", run_q, lambda xr=xr, dname=dname, fmt=fmt: reference.quantize(xr, dname, fmt, bs)),
                (
                    f"dequantize {fmt}",
                    run_dq,
                    lambda rc=ref_codes, ra=ref_absmax, fmt=fmt, dname=dname: reference.dequantize(
                        rc, ra, fmt, bs, n_ref, dname
                    ),
                ),
            ]
            for label, kernel, ref in rows:
                os.environ["KBIT_NUM_THREADS"] = "1"
                t1 = best_of(kernel, args.repeat)
                os.environ.pop("KBIT_NUM_THREADS")
                tn = best_of(kernel, args.repeat)
                tr = best_of(ref, max(1, args.repeat // 2))
                g1, gn, gr = traffic / t1 / 1e9, traffic / tn / 1e9, ref_traffic / tr / 1e9
                print(f"{label:<24}{dname:<10}{g1:>14.2f}{gn:>10.2f}{gr:>12.3f}{gn / gr:>9.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
