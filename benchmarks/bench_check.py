"""Benchmark of ``wheelmatrix check`` on this host (run on demand, never a timed test).

Measures:

* **the release**: every wheel ``dist/build-record.json`` lists (copied to a scratch folder with
  the record, so ``dist/`` is left alone): the static checks cold (empty cache) and warm (the
  no-op: unchanged wheels), the install checks cold and warm, on the Pythons of ``[check]``;
  and ``wheelmatrix check --strict`` as a process over an unchanged dist (what ``nox -s build``
  adds to a no-op build);
* **a synthetic 100 MiB wheel**: a fake ``kbit`` whose CPU library carries 100 MiB of
  incompressible random data (``.incbin``), so the wheel is 100 MiB on disk and unpacked: the
  static checks cold (goal: under 3 s) and warm, and its install check on this interpreter.

Usage: python benchmarks/bench_check.py [--matrix matrix.toml] [--dist dist] [--mib 100] [--out bench-check.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

from wheelmatrix.config import load_matrix
from wheelmatrix.model import CheckSpec, Matrix
from wheelmatrix.stages.check import CheckResult, check_release
from wheelmatrix.stages.record import RECORD_FILE
from wheelmatrix.wheelfile import WheelContents, write_wheel

LIB = """
#define API __attribute__((visibility("default")))
extern const unsigned char pad[];
extern const unsigned char pad_end[];
API unsigned long kbit_pad_size(void) { return (unsigned long)(pad_end - pad); }
API const char *kbit_backend(void) { return "cpu"; }
API int kbit_cuda_version(void) { return 0; }
"""


def timed(fn: Callable[[], CheckResult]) -> tuple[float, CheckResult]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def summary(seconds: float, result: CheckResult) -> dict[str, Any]:
    return {
        "wall_seconds": round(seconds, 3),
        "static_seconds": round(result.static_seconds, 3),
        "install_seconds": round(result.install_seconds, 3),
        "files": len(result.files),
        "bytes": sum(f.size for f in result.files),
        "findings": sorted({f.code for f in result.findings}),
        "installs": sorted({f"{i.python}:{i.status}" for f in result.files for i in f.installs}),
    }


def bench_release(matrix: Matrix, dist: Path, scratch: Path) -> dict[str, Any]:
    work = scratch / "work"
    copy = scratch / "dist"
    copy.mkdir(parents=True)
    record = json.loads((dist / RECORD_FILE).read_text())
    shutil.copyfile(dist / RECORD_FILE, copy / RECORD_FILE)
    for w in record["wheels"]:
        shutil.copyfile(dist / w["file"], copy / w["file"])
    out: dict[str, Any] = {}
    for label, install in (
        ("static_cold", False),
        ("static_warm", False),
        ("installs_cold", True),
        ("installs_warm", True),
    ):
        seconds, result = timed(partial(check_release, matrix, copy, strict=True, install=install, work=work))
        out[label] = summary(seconds, result)
        print(f"release {label}: {out[label]}", flush=True)
    argv = [sys.executable, "-m", "wheelmatrix", "check", "--strict", "--matrix", str(matrix.path), "--dist", str(copy)]
    start = time.perf_counter()
    proc = subprocess.run([*argv, "--work", str(work), "-q"], capture_output=True, text=True, check=False)
    out["cli_noop_seconds"] = round(time.perf_counter() - start, 3)
    out["cli_noop_exit"] = proc.returncode
    print(f"release `wheelmatrix check --strict` on the unchanged dist: {out['cli_noop_seconds']} s", flush=True)
    return out


def synthetic_wheel(folder: Path, mib: int) -> Path:
    """A fake kbit wheel, manylinux-tagged, whose CPU library holds ``mib`` MiB of random bytes."""
    folder.mkdir(parents=True)
    (folder / "pad.bin").write_bytes(os.urandom(mib * 2**20))
    (folder / "pad.S").write_text(
        '.section .rodata\n.globl pad\n.globl pad_end\npad:\n.incbin "pad.bin"\npad_end:\n.section .note.GNU-stack,"",@progbits\n'
    )
    (folder / "lib.c").write_text(LIB)
    lib = folder / "libkbit_cpu.so"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O2", "-s", "-Wl,--build-id=none", "-o", lib.name, "lib.c", "pad.S"],
        check=True,
        cwd=folder,
    )
    manifest = {"schema": 1, "library": lib.name, "backend": "cpu", "cuda": None, "sass": [], "ptx": [],
                "version": "0.1.0", "runtime": None, "flags": {}}  # fmt: skip
    tag = "py3-none-manylinux_2_17_x86_64"
    contents = WheelContents(f"kbit-0.1.0-{tag}.whl", {}, {})
    contents.put("kbit/__init__.py", b'"""A 100 MiB stand-in for a fat CUDA wheel."""\n')
    contents.put("kbit/_lib/libkbit_cpu.so", lib.read_bytes())
    contents.put("kbit/_lib/libkbit_cpu.json", json.dumps(manifest).encode())
    info = "kbit-0.1.0.dist-info"
    contents.put(
        f"{info}/METADATA",
        b"Metadata-Version: 2.1\nName: kbit\nVersion: 0.1.0\nSummary: synthetic\nRequires-Python: >=3.9\n"
        b"Description-Content-Type: text/plain\n\nA synthetic wheel for bench_check.py.\n",
    )
    contents.put(
        f"{info}/WHEEL", f"Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: false\nTag: {tag}\n".encode()
    )
    contents.put(f"{info}/RECORD", b"")
    return write_wheel(contents, folder / "dist")


def bench_synthetic(matrix: Matrix, scratch: Path, mib: int) -> dict[str, Any]:
    wheel = synthetic_wheel(scratch / "synthetic", mib)
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    # time it, not its size; its smoke command: the import (it is no real kbit)
    matrix = replace(matrix, packaging=replace(matrix.packaging, max_file_size=2**40), check=CheckSpec())
    work = scratch / "work-synthetic"
    out: dict[str, Any] = {"wheel_bytes": wheel.stat().st_size}
    for label, install in (("static_cold", False), ("static_warm", False), ("install_cold", True)):
        run = partial(check_release, matrix, wheel.parent, [wheel], strict=True, work=work, pythons=[here], write=False)
        seconds, result = timed(partial(run, install=install))
        out[label] = summary(seconds, result)
        print(f"synthetic {mib} MiB {label}: {out[label]}", flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matrix", type=Path, default=Path("matrix.toml"))
    parser.add_argument("--dist", type=Path, default=Path("dist"))
    parser.add_argument("--mib", type=int, default=100)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    matrix = load_matrix(args.matrix)
    doc: dict[str, Any] = {"host": {"cpus": os.cpu_count(), "python": sys.version.split()[0]}}
    with tempfile.TemporaryDirectory(prefix="bench-check-") as tmp:
        if (args.dist / RECORD_FILE).is_file():
            doc["release"] = bench_release(matrix, args.dist, Path(tmp) / "release")
        else:
            print(
                f"no {args.dist / RECORD_FILE}: run `wheelmatrix build && wheelmatrix assemble` for the release figures"
            )
        doc["synthetic"] = bench_synthetic(matrix, Path(tmp), args.mib)
    if args.out:
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
