"""``python -m kbit``: what kbit finds on this machine, what it chose and why.

:func:`collect` builds one versioned document (plain JSON types); :func:`render` prints it for
people; ``--json`` prints the document itself. Exit status: 0 when healthy (a library loaded and
passed the self-test, nothing is broken, and kbit runs on a GPU when there is one or on CPU when
there is none), 1 otherwise with the reason on the last line, 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kbit._loader import ENV_LIBRARY_DIR, Runtime, resolve
from kbit._probe import DriverProbe
from kbit._select import ENV_CUDA_VERSION

SCHEMA = 1
ENV_VARS = (
    ENV_CUDA_VERSION,
    ENV_LIBRARY_DIR,
    "KBIT_NUM_THREADS",
    "KBIT_CPU_PORTABLE",
    "CUDA_VISIBLE_DEVICES",
    "CUDA_MODULE_LOADING",
)


def _self_test() -> dict[str, Any]:
    """Quantize and dequantize a few values with each format; report the largest error."""
    try:
        import numpy as np

        import kbit

        x = np.linspace(-4.0, 4.0, 1000, dtype=np.float32)
        worst = 0.0
        for fmt in ("dynamic", "linear"):
            q = kbit.quantize_blockwise(x, fmt, 256)
            worst = max(worst, float(np.max(np.abs(kbit.dequantize_blockwise(q) - x))))
        for fmt in ("nf4", "fp4"):
            q = kbit.quantize_4bit(x, fmt, 64)
            worst = max(worst, float(np.max(np.abs(kbit.dequantize_4bit(q) - x))))
        limit = 4.0 * 0.5  # a quarter of the range: catches garbage, not precision
        ok = worst <= limit
        return {
            "ok": ok,
            "detail": f"8-bit and 4-bit round trips of 1000 values, "
            f"largest error {worst:.4g}" + ("" if ok else f" (over {limit})"),
        }
    except Exception as exc:
        return {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}


def _library_entries(rt: Runtime) -> list[dict[str, Any]]:
    sel = rt.selection
    chosen = rt.library.info if rt.library is not None else None
    failed = {f.library.path: f.error for f in rt.failures}
    rejected = {r.library.path: r.reason for r in sel.rejected} if sel else {}
    candidates = [c.path for c in sel.candidates] if sel else []
    entries = []
    for lib in rt.discovery.libraries:
        if chosen is not None and lib.path == chosen.path:
            status, reason = "selected", sel.reason if sel else ""
        elif lib.path in failed:
            status, reason = "failed", failed[lib.path]
        elif lib.path in rejected:
            status, reason = "rejected", rejected[lib.path]
        elif lib.path in candidates:
            status, reason = "fallback", "would be tried if the libraries before it failed"
        else:
            status, reason = "unused", "not considered" + (" (override)" if sel and sel.forced else "")
        entries.append(
            {
                "file": lib.name,
                "path": str(lib.path),
                "source": lib.source,
                "backend": lib.backend,
                "cuda": None if lib.cuda is None else str(lib.cuda),
                "sass": list(lib.sass),
                "ptx": list(lib.ptx),
                "version": lib.version,
                "runtime": lib.runtime,
                "status": status,
                "reason": reason,
            }
        )
    return entries


def _features(rt: Runtime) -> list[dict[str, Any]]:
    lib = rt.library
    cuda_ok = lib is not None and lib.info.cuda is not None
    if cuda_ok:
        cuda_reason = f"{lib.info.name} (CUDA {lib.info.cuda})" if lib else ""
    elif rt.selection is not None:
        cuda_reason = rt.selection.reason
    else:
        cuda_reason = str(rt.error.message if rt.error else "no library")
    torch = importlib.util.find_spec("torch") is not None  # found, not imported
    ml_dtypes = importlib.util.find_spec("ml_dtypes") is not None
    return [
        {"name": "CUDA kernels", "available": cuda_ok, "reason": cuda_reason},
        {
            "name": "torch tensors",
            "available": torch,
            "reason": "torch is installed" if torch else "torch is not installed (pip install torch)",
        },
        {
            "name": "bfloat16 NumPy arrays",
            "available": ml_dtypes,
            "reason": "ml_dtypes is installed"
            if ml_dtypes
            else "ml_dtypes is not installed (pip install ml_dtypes; torch bfloat16 tensors work without it)",
        },
    ]


def _health(rt: Runtime, probe: DriverProbe, self_test: dict[str, Any] | None) -> tuple[bool, str]:
    if rt.library is None:
        assert rt.error is not None
        return False, rt.error.message.splitlines()[0]
    if rt.failures:
        f = rt.failures[0]
        return False, f"{f.library.path} failed to load: {f.error}"
    if rt.discovery.problems:
        return False, f"broken installation: {rt.discovery.problems[0]}"
    sel = rt.selection
    assert sel is not None
    forced_cpu = sel.forced and rt.library.info.cuda is None
    if probe.gpus and rt.library.info.cuda is None and not forced_cpu:
        return False, sel.reason
    if rt.library.info.cuda is not None and rt.library.device_count() < 1:
        detail = rt.library.last_error() or "no detail"
        return False, f"{rt.library.info.name} loaded but its CUDA runtime sees no GPU: {detail}"
    if self_test is not None and not self_test["ok"]:
        return False, f"self-test failed: {self_test['detail']}"
    if rt.library.info.cuda is None:
        return True, sel.reason if sel.reason.startswith("running on CPU") else (f"running on CPU: {sel.reason}")
    return True, f"running on {rt.library.info.name}: {sel.reason}"


def collect(
    env: Mapping[str, str] | None = None, probe: DriverProbe | None = None, *, self_test: bool = True
) -> dict[str, Any]:
    """The diagnostic document (schema 1; docs/kbit-runtime.md describes each field)."""
    import kbit
    from kbit import _loader

    env = dict(os.environ if env is None else env)
    rt = resolve(env, probe)
    probe = rt.probe
    test = None
    if self_test and rt.library is not None:
        # Run the self-test on exactly this runtime: make it the process's runtime first.
        _loader.install(rt)
        test = _self_test()
    healthy, status = _health(rt, probe, test)
    libc_name, libc_version = platform.libc_ver()
    sel = rt.selection
    driver_cuda = probe.driver_cuda
    return {
        "schema": SCHEMA,
        "kbit": {"version": kbit.__version__, "location": str(Path(kbit.__file__).parent)},
        "platform": {
            "system": platform.system(),
            "release": platform.release(),
            "machine": platform.machine(),
            "platform": platform.platform(),
        },
        "python": {
            "version": platform.python_version(),
            "implementation": platform.python_implementation(),
            "executable": sys.executable,
        },
        "libc": {"name": libc_name or None, "version": libc_version or None},
        "driver": {
            "found": probe.driver is not None,
            "library": probe.library,
            "cuda": None if driver_cuda is None else str(driver_cuda),
            "api_version": probe.driver,
            "release": probe.kernel_driver,
            "error": probe.error,
        },
        "gpus": [
            {"index": g.index, "name": g.name, "compute_capability": f"{g.cc[0]}.{g.cc[1]}", "arch": g.arch}
            for g in probe.gpus
        ],
        "libraries": _library_entries(rt),
        "problems": [{"path": str(p.path), "problem": p.problem} for p in rt.discovery.problems],
        "selected": None
        if rt.library is None
        else {
            "file": rt.library.info.name,
            "path": str(rt.library.info.path),
            "backend": rt.library.info.backend,
            "cuda": None if rt.library.info.cuda is None else str(rt.library.info.cuda),
            "forced": bool(sel and sel.forced),
            "reason": sel.reason if sel else "",
            "devices": rt.library.device_count(),
            "notes": list(sel.notes) if sel else [],
        },
        "load_failures": [{"path": str(f.library.path), "error": f.error} for f in rt.failures],
        "error": None if rt.error is None else str(rt.error),
        "warning": rt.warning,
        "features": _features(rt),
        "environment": {name: env.get(name) for name in ENV_VARS},
        "self_test": test,
        "healthy": healthy,
        "status": status,
    }


def _archs(values: Sequence[int]) -> str:
    return " ".join(map(str, values)) or "none"


def render(doc: Mapping[str, Any]) -> str:
    """The document for people: one fact per line, what was chosen and why, then the status."""
    lines: list[str] = []
    add = lines.append
    add(f"kbit {doc['kbit']['version']} ({doc['kbit']['location']})")
    add(f"platform     {doc['platform']['platform']} ({doc['platform']['machine']})")
    py = doc["python"]
    add(f"python       {py['version']} {py['implementation']} ({py['executable']})")
    libc = doc["libc"]
    add(f"libc         {libc['name'] or 'unknown'} {libc['version'] or ''}".rstrip())
    drv = doc["driver"]
    if drv["found"]:
        release = f", release {drv['release']}" if drv["release"] else ""
        add(f"driver       CUDA {drv['cuda']} (cuDriverGetVersion {drv['api_version']}{release}; {drv['library']})")
        if drv["error"]:
            add(f"             {drv['error']}")
    else:
        add(f"driver       none: {drv['error']}")
        if drv["release"]:
            add(f"             (the NVIDIA kernel module {drv['release']} is loaded)")
    if doc["gpus"]:
        for g in doc["gpus"]:
            add(f"GPU {g['index']}        {g['name']}, compute capability {g['compute_capability']} (sm_{g['arch']})")
    else:
        add("GPUs         none")
    add(f"libraries    {len(doc['libraries'])} installed")
    for lib in doc["libraries"]:
        mark = "*" if lib["status"] == "selected" else " "
        what = (
            "CPU"
            if lib["cuda"] is None
            else (f"CUDA {lib['cuda']}, SASS {_archs(lib['sass'])}, PTX {_archs(lib['ptx'])}")
        )
        add(f"  {mark} {lib['file']}: {what}; from {lib['source']}")
        if lib["status"] != "selected":
            add(f"      {lib['status']}: {lib['reason']}")
    for p in doc["problems"]:
        add(f"  ! {p['path']}: {p['problem']}")
    sel = doc["selected"]
    if sel is not None:
        add(f"selected     {sel['file']}: {sel['reason']}")
        for note in sel["notes"]:
            add(f"             note: {note}")
    else:
        add("selected     none")
    for f in doc["load_failures"]:
        add(f"load failed  {f['path']}: {f['error']}")
    if doc["error"]:
        add(f"error        {doc['error']}")
    unavailable = [f for f in doc["features"] if not f["available"]]
    add("unavailable" + ("  nothing" if not unavailable else ""))
    for f in unavailable:
        add(f"  {f['name']}: {f['reason']}")
    add("environment")
    for name, value in doc["environment"].items():
        add(f"  {name}={value}" if value is not None else f"  {name} (unset)")
    test = doc["self_test"]
    if test is not None:
        add(f"self-test    {'ok' if test['ok'] else 'FAILED'}: {test['detail']}")
    add(f"status       {'healthy' if doc['healthy'] else 'UNHEALTHY'}: {doc['status']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m kbit",
        description="Show what kbit finds on this machine (driver, GPUs, installed libraries), "
        "which library it uses and why. Exit 0 when healthy, 1 with the reason otherwise.",
    )
    parser.add_argument("--json", action="store_true", help=f"print a JSON document (schema {SCHEMA}) for machines")
    parser.add_argument("--no-self-test", action="store_true", help="do not run the quantize/dequantize self-test")
    args = parser.parse_args(argv)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the report shows the warning itself
        doc = collect(self_test=not args.no_self_test)
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        print(render(doc))
    return 0 if doc["healthy"] else 1
