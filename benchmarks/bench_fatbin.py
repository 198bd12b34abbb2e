"""Fatbin compression: the size of each CUDA cell's library under every `fatbin-compression` mode.

Builds kbit's CUDA cells of this host (the matrix's archs, toolchains already provided) once per
mode (`none`, `standard` = -Xfatbin -compress-all, `size` = --compress-mode=size where nvcc has
it), with no cell cache and no compiler cache, and reports the library's file size, its
`.nv_fatbin` section and the build time. The first-load time of a compressed fatbin (the driver
decompresses it when the module loads) needs a GPU: not measured here.

Usage: python benchmarks/bench_fatbin.py [--matrix matrix.toml] [--cuda 13.0 ...] [--out bench-fatbin.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import zipfile
from dataclasses import replace
from pathlib import Path

from wheelmatrix import host as host_mod
from wheelmatrix import toolchains
from wheelmatrix.config import load_matrix
from wheelmatrix.model import CudaSpec
from wheelmatrix.plan import make_plan
from wheelmatrix.stages import cells as cells_mod
from wheelmatrix.stages.cells import BuildOptions, build_cells


def fatbin_size(library: Path) -> int:
    out = subprocess.run(["readelf", "-SW", str(library)], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if ".nv_fatbin" in line:
            fields = line.split("]", 1)[1].split()
            return int(fields[4], 16)  # name, type, address, offset, size
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--matrix", type=Path, default=Path("matrix.toml"))
    parser.add_argument("--cuda", action="append", default=[], help="CUDA versions (default: every buildable)")
    parser.add_argument("--out", type=Path, default=Path("bench-fatbin.json"))
    args = parser.parse_args()
    matrix = load_matrix(args.matrix)
    lock = toolchains.lock_path_of(matrix)

    def provide(spec: CudaSpec) -> cells_mod.Toolchain:
        return toolchains.provide(spec, lock_path=lock if lock.is_file() else None, offline=True)

    rows = []
    with tempfile.TemporaryDirectory(prefix="wm-fatbin-") as name:
        tmp = Path(name)
        for mode in ("none", "standard", "size"):
            cuda = []
            for c in matrix.cuda:
                if args.cuda and str(c.version) not in args.cuda:
                    continue
                if mode == "size" and not c.facts.compress_size:
                    continue
                cuda.append(replace(c, fatbin_compression=mode))
            m = replace(matrix, cuda=tuple(cuda))
            plan = make_plan(m, host_mod.detect(m))
            specs = [s for s in plan.build_specs() if s.cuda is not None and s.buildable]
            options = BuildOptions(work=tmp / mode, cache=None, jobs=1, timeout=3600)
            for result, spec in zip(build_cells(specs, options, provide), specs, strict=True):
                assert result.status == "built", (result.reason, result.tail)
                assert result.wheel is not None and spec.cuda is not None
                with zipfile.ZipFile(result.wheel) as zf:
                    name_in = next(n for n in zf.namelist() if n.endswith(spec.library))
                    lib = tmp / f"{mode}-{spec.library}"
                    lib.write_bytes(zf.read(name_in))
                row = {
                    "cuda": str(spec.cuda.version),
                    "mode": mode,
                    "flags": list(spec.cuda.compress_flags),
                    "library_bytes": lib.stat().st_size,
                    "fatbin_bytes": fatbin_size(lib),
                    "build_seconds": round(result.build_seconds, 2),
                }
                rows.append(row)
                print(json.dumps(row), flush=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
