"""GPU check: the released wheels on a machine with an NVIDIA GPU (on demand, never a test here).

Run on the GPU machine, from the repository root, with the wheels ``nox -s build`` made here (kbit)
and qext's CUDA 13 release wheel (tests/projects/qext) copied into ``WHEELS`` (default ``.gpu/``):

    python3 benchmarks/gpu_check.py [--wheels .gpu] [--only all|qext|kbit|bench] [--out gpu-check.json]

``--only bench`` installs nothing and times the kbit that the interpreter imports (``PYTHONPATH=src``
and ``KBIT_LIBRARY_DIR`` pointing at a CUDA library built from ``csrc/`` on the GPU machine).

A sub-folder of WHEELS holding qext wheels is one more install set: ``.gpu/core-plugin/`` with the
``split = "core-plugin"`` release's CUDA plugin and its py3-none core is installed in place of
the standalone wheel and checked the same way.

The interpreter that runs it must hold numpy, pytest, torch (for device arrays) and NVIDIA's CUDA 13
runtime wheels (nvidia-cublas, nvidia-cuda-runtime): the GPU machine's image has them. Both wheels
are installed into that interpreter's environment with ``--no-deps --no-index`` (nothing can be
downloaded there), so qext's CUDA module finds cuBLAS through the run path the toolkit gave it
(``$ORIGIN/../nvidia/cu13/lib``), exactly as after ``pip install qext-cuda13x``.

What it records (JSON, and a summary on stdout):

1. the GPU and driver (``nvidia-smi``);
2. qext-cuda13x: ``python -m qext`` says a GPU is usable; the CUDA path's int8 quantization equals
   the CPU path's and a NumPy reference on 1 Mi values; which libcublas file the process mapped;
3. kbit: ``python -m kbit --json`` (which library was selected and why); ``pytest -m gpu`` over
   tests/kbit/test_gpu.py against the installed wheel; each CUDA library the wheel ships, forced with
   ``KBIT_CUDA_VERSION``, gives the same bytes as the CPU library;
4. kbit's GPU throughput: quantize and dequantize (8-bit dynamic, NF4, FP4; blocksizes 64 and 4096;
   float32, float16, bfloat16; 2^24 and 2^28 elements) in GB/s of bytes read plus written, against a
   device-to-device copy measured in the same run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def sh(argv: list[str], env: dict[str, str] | None = None, timeout: float = 300) -> dict[str, Any]:
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            argv, check=False, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=timeout
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"$ {' '.join(argv)}  -> {exc}", flush=True)
        return {"argv": argv, "rc": None, "error": str(exc), "stdout": "", "stderr": ""}
    out = {"argv": argv, "rc": proc.returncode, "seconds": round(time.monotonic() - t0, 2)}
    out["stdout"] = proc.stdout
    out["stderr"] = proc.stderr[-3000:]
    print(
        f"$ {' '.join(a if len(a) < 80 else a[:40] + '...' for a in argv)}  -> rc {proc.returncode} in {out['seconds']} s",
        flush=True,
    )
    if proc.returncode:
        print(proc.stderr[-1500:], flush=True)
    return out


def install(wheels: list[Path]) -> dict[str, Any]:
    """Into this interpreter's environment; where that is read-only, into a --target folder on
    PYTHONPATH beside a link to the environment's ``nvidia`` folder (so ``$ORIGIN/../nvidia`` holds)."""
    argv = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--force-reinstall"]
    step = sh([*argv, *map(str, wheels)])
    if step["rc"] == 0:
        return step
    site = Path("/tmp/gpu-site")
    step = sh([*argv, "--target", str(site), *map(str, wheels)])
    spec = importlib.util.find_spec("nvidia")
    if spec and spec.submodule_search_locations and not (site / "nvidia").exists():
        (site / "nvidia").symlink_to(next(iter(spec.submodule_search_locations)))
    os.environ["PYTHONPATH"] = os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return step


QEXT_PROBE = r"""
import json, numpy as np, qext, qext as q
ext = q._ext
rng = np.random.default_rng(7)
x = (rng.standard_normal(1 << 20) * 3).astype(np.float32)
values = x.tolist()
qg, sg = ext.quantize_int8_cuda(values)
qc, sc = ext.quantize_int8(values)
absmax = float(np.abs(x).max()); scale = np.float32(absmax / np.float32(127.0))
ref = np.clip(np.rint(x / scale), -127, 127).astype(np.int8)
maps = [l.split()[-1] for l in open('/proc/self/maps') if 'libcublas' in l or 'libqext_kernels' in l]
print(json.dumps({"info": q.info(), "gpu_equals_cpu": qg == qc and sg == sc,
  "gpu_equals_numpy": bool(np.array_equal(np.array(qg, np.int8), ref)), "scale_gpu": sg, "scale_cpu": sc,
  "libcublas_mapped": sorted(set(maps))}))
"""

KBIT_SAME_BYTES = r"""
import hashlib, json, os, numpy as np, kbit
from kbit import _loader
rng = np.random.default_rng(3)
x = rng.standard_normal(5 * 4096 + 37).astype(np.float32)
out = {}
for v in os.environ["VERSIONS"].split():
    os.environ["KBIT_CUDA_VERSION"] = v
    _loader.reset()
    rt = _loader.runtime()
    lib = rt.library
    got = {}
    for name, f in (("dynamic", lambda a: kbit.quantize_blockwise(a, "dynamic", 64)),
                    ("nf4", lambda a: kbit.quantize_4bit(a, "nf4", 64)), ("fp4", lambda a: kbit.quantize_4bit(a, "fp4", 4096))):
        qz = f(x)
        back = (kbit.dequantize_blockwise(qz) if name == "dynamic" else kbit.dequantize_4bit(qz))
        got[name] = hashlib.sha256(np.asarray(qz.codes).tobytes() + np.asarray(qz.absmax).tobytes() + np.asarray(back).tobytes()).hexdigest()
    out[v] = {"library": None if lib is None else lib.info.name, "cuda": None if lib is None or lib.info.cuda is None else str(lib.info.cuda), "digests": got}
print(json.dumps(out))
"""

KBIT_BENCH = r"""
import json, torch, kbit
torch.backends.cuda.matmul.allow_tf32 = False
dev = torch.device("cuda")
def timed(fn, reps):
    for _ in range(3): fn()
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(reps): fn()
    e.record(); torch.cuda.synchronize()
    return s.elapsed_time(e) / 1000 / reps
big = torch.empty(1 << 28, dtype=torch.float32, device=dev)
dst = torch.empty_like(big)
copy_s = timed(lambda: dst.copy_(big), 20)
copy_gbs = 2 * big.numel() * 4 / copy_s / 1e9
del big, dst
rows = []
for n_log in (24, 28):
    n = 1 << n_log
    for dtype in ("float32", "float16", "bfloat16"):
        x = torch.randn(n, device=dev).to(getattr(torch, dtype))
        es = x.element_size()
        for fmt, bs in (("dynamic", 64), ("dynamic", 4096), ("nf4", 64), ("nf4", 4096), ("fp4", 64), ("fp4", 4096)):
            if fmt == "dynamic":
                qf = lambda: kbit.quantize_blockwise(x, "dynamic", bs)
            else:
                qf = lambda: kbit.quantize_4bit(x, fmt, bs)
            qz = qf()
            df = (lambda: kbit.dequantize_blockwise(qz)) if fmt == "dynamic" else (lambda: kbit.dequantize_4bit(qz))
            reps = 20 if n_log == 24 else 5
            tq, td = timed(qf, reps), timed(df, reps)
            codes = n if fmt == "dynamic" else (n + 1) // 2
            moved = n * es + codes + ((n + bs - 1) // bs) * 4
            rows.append({"n": f"2^{n_log}", "dtype": dtype, "format": fmt, "blocksize": bs,
                         "quantize_gbs": round(moved / tq / 1e9, 1), "dequantize_gbs": round(moved / td / 1e9, 1),
                         "quantize_frac": round(moved / tq / 1e9 / copy_gbs, 3), "dequantize_frac": round(moved / td / 1e9 / copy_gbs, 3)})
        del x
print(json.dumps({"gpu": torch.cuda.get_device_name(), "copy_gbs": round(copy_gbs, 1), "rows": rows}))
"""


def last_json(step: dict[str, Any]) -> Any:
    try:
        return json.loads(step["stdout"])
    except ValueError:
        pass
    for line in reversed(step["stdout"].splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wheels", type=Path, default=REPO / ".gpu")
    parser.add_argument("--only", choices=("all", "qext", "kbit", "bench"), default="all")
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", ".")) / "gpu-check.json")
    args = parser.parse_args()
    report: dict[str, Any] = {"python": sys.version, "steps": {}}
    steps = report["steps"]

    def save() -> None:
        args.out.write_text(json.dumps(report, indent=1))

    steps["nvidia-smi"] = sh(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv"])
    # qext install sets: the top folder's standalone wheel, and each sub-folder's wheels (a layout:
    # core-plugin/ holds the plugin and its py3-none core), installed in turn in place of the last
    sets = {"standalone": sorted(args.wheels.glob("qext_cuda13x-*-abi3-*.whl"))}
    sets.update({d.name: sorted(d.glob("qext_cuda13x*.whl")) for d in sorted(args.wheels.iterdir()) if d.is_dir()})
    kbit = sorted(args.wheels.glob("kbit-*manylinux*x86_64.whl")) if args.only in ("all", "kbit") else []
    report["qext"] = {}
    for name, wheels in sets.items():
        if not wheels or args.only not in ("all", "qext"):
            continue
        sh([sys.executable, "-m", "pip", "uninstall", "-q", "-y", "qext-cuda13x", "qext-cuda13x-core"])
        steps[f"qext-{name}-install"] = install(wheels)
        steps[f"qext-{name}-smoke"] = sh([sys.executable, "-m", "qext"], timeout=120)
        steps[f"qext-{name}-gpu"] = sh([sys.executable, "-c", QEXT_PROBE], timeout=300)
        report["qext"][name] = {
            "wheels": [w.name for w in wheels],
            "smoke": last_json(steps[f"qext-{name}-smoke"]),
            "gpu": last_json(steps[f"qext-{name}-gpu"]),
        }
        save()
    if args.only == "bench":  # kbit's throughput alone, with the kbit this interpreter imports as it is
        steps["kbit-bench"] = sh([sys.executable, "-c", KBIT_BENCH], timeout=600)
        report["kbit_bench"] = last_json(steps["kbit-bench"])
    if kbit:
        steps["kbit-install"] = install(kbit)
        steps["kbit-diagnose"] = sh([sys.executable, "-m", "kbit", "--json"], timeout=120)
        report["kbit_diagnose"] = last_json(steps["kbit-diagnose"])
        where = sh([sys.executable, "-c", "import kbit, os; print(os.path.dirname(kbit.__file__))"])
        lib_dir = Path(where["stdout"].strip()) / "_lib" if where["rc"] == 0 else None
        env = {"KBIT_CUDA_LIBRARY_DIR": str(lib_dir), "KBIT_LIBRARY_DIR": str(lib_dir)}
        # the installed wheel, not src/: pytest.ini puts src first on sys.path, so override it
        steps["kbit-pytest-gpu"] = sh(
            [
                sys.executable,
                "-m",
                "pytest",
                "-m",
                "gpu",
                "-q",
                "-p",
                "no:cacheprovider",
                "-o",
                "pythonpath=tests/support tests/kbit",
                "tests/kbit/test_gpu.py",
            ],
            env=env,
            timeout=600,
        )
        versions = (
            sorted(p.name[len("libkbit_cuda") : -len(".so")] for p in lib_dir.glob("libkbit_cuda*.so"))
            if lib_dir
            else []
        )
        steps["kbit-same-bytes"] = sh(
            [sys.executable, "-c", KBIT_SAME_BYTES], env={"VERSIONS": " ".join(["cpu", *versions])}, timeout=300
        )
        report["kbit_same_bytes"] = last_json(steps["kbit-same-bytes"])
        save()
        steps["kbit-bench"] = sh([sys.executable, "-c", KBIT_BENCH], timeout=600)
        report["kbit_bench"] = last_json(steps["kbit-bench"])
    save()
    summary = {
        "qext": report.get("qext"),
        "kbit_selected": (report.get("kbit_diagnose") or {}).get("selected"),
        "kbit_pytest_tail": steps.get("kbit-pytest-gpu", {}).get("stdout", "")[-600:],
        "kbit_same_bytes": report.get("kbit_same_bytes"),
        "copy_gbs": (report.get("kbit_bench") or {}).get("copy_gbs"),
    }
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
