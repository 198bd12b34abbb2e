"""Benchmark of the build stages on this host (run on demand, never a timed test).

Measures, over kbit's real matrix (every cell this host can build; toolchains already provided,
so downloads are reported by the toolchain stage, not here):

* cold full build (no cell cache) with ``--jobs 1`` and with ``--jobs 2``: the speed-up from
  parallel cells;
* no-op rebuild (every cell served from the cache) and assemble + repair;
* the share of wall time spent outside compilers and linkers: every compiler and linker call
  goes through a timing launcher (CMAKE_<LANG>_COMPILER_LAUNCHER / _LINKER_LAUNCHER, which CMake
  also puts before the toolchain file's zig link rule), the union of those intervals is "compiling", the rest of the cell
  build's wall time is overhead (build isolation, CMake configure, scikit-build-core, packing).

Usage: python benchmarks/bench_build.py [--matrix matrix.toml] [--out bench-build.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from wheelmatrix import host as host_mod
from wheelmatrix import toolchains
from wheelmatrix.config import load_matrix
from wheelmatrix.model import CudaSpec
from wheelmatrix.plan import make_plan
from wheelmatrix.stages import cells as cells_mod
from wheelmatrix.stages.assemble import CellWheel, assemble_all
from wheelmatrix.stages.cells import BuildOptions, build_cells

TIMER = """#!/bin/sh
start=$(date +%s.%N)
"$@"
rc=$?
echo "$start $(date +%s.%N)" >> "{log}"
exit $rc
"""


def _union(intervals: list[tuple[float, float]]) -> float:
    total, end = 0.0, float("-inf")
    for a, b in sorted(intervals):
        if b <= end:
            continue
        total += b - max(a, end)
        end = b
    return total


def _timer(folder: Path) -> tuple[Path, Path]:
    log = folder / "compiler-times.txt"
    script = folder / "timed"
    script.write_text(TIMER.format(log=log))
    script.chmod(0o755)
    return script, log


def cold_build(matrix_path: Path, jobs: int, tmp: Path) -> dict[str, object]:
    matrix = load_matrix(matrix_path)
    plan = make_plan(matrix, host_mod.detect(matrix))
    timer, log = _timer(tmp)
    launch = [
        f"cmake.define.CMAKE_{lang}_{kind}_LAUNCHER={timer}"
        for lang in ("C", "CXX", "CUDA")
        for kind in ("COMPILER", "LINKER")
    ]
    lock = toolchains.lock_path_of(matrix)

    def provide(spec: CudaSpec) -> cells_mod.Toolchain:
        return toolchains.provide(spec, lock_path=lock if lock.is_file() else None, offline=True)

    options = BuildOptions(work=tmp / "work", cache=None, jobs=jobs, timeout=3600, extra_settings=tuple(launch))
    start = time.monotonic()
    results = build_cells(plan.build_specs(), options, provide)
    wall = time.monotonic() - start
    failed = [r.cell_id for r in results if r.status == "failed"]
    if failed:
        raise SystemExit(f"cells failed: {failed}; logs under {tmp / 'work' / 'cells'}")
    intervals = [tuple(map(float, line.split())) for line in log.read_text().splitlines() if line.strip()]
    compiling = _union([(a, b) for a, b in intervals])
    return {
        "jobs": jobs,
        "cells": [r.cell_id for r in results if r.ok],
        "wall_seconds": round(wall, 2),
        "per_cell_seconds": {r.cell_id: round(r.duration, 2) for r in results if r.ok},
        "toolchain_seconds": round(sum(r.toolchain_seconds for r in results), 2),
        "compiler_calls": len(intervals),
        "compiling_seconds": round(compiling, 2),
        "outside_compilers_share": round(1 - compiling / wall, 3) if wall else None,
    }


def noop_and_assemble(matrix_path: Path, tmp: Path) -> dict[str, object]:
    matrix = load_matrix(matrix_path)
    plan = make_plan(matrix, host_mod.detect(matrix))
    lock = toolchains.lock_path_of(matrix)

    def provide(spec: CudaSpec) -> cells_mod.Toolchain:
        return toolchains.provide(spec, lock_path=lock if lock.is_file() else None, offline=True)

    options = BuildOptions(work=tmp / "work", cache=tmp / "cache", jobs=1, timeout=3600)
    build_cells(plan.build_specs(), options, provide)  # fills the cache
    start = time.monotonic()
    results = build_cells(plan.build_specs(), options, provide)
    noop = time.monotonic() - start
    assert all(r.status in ("cached", "skipped") for r in results), [r.status for r in results]
    cells = [CellWheel(r.cell_id, r.platform, r.variant, Path(r.wheel or "")) for r in results if r.ok]
    start = time.monotonic()
    finals = assemble_all(matrix, cells, tmp / "dist")
    assemble = time.monotonic() - start
    return {
        "noop_rebuild_seconds": round(noop, 2),
        "assemble_repair_seconds": round(assemble, 2),
        "wheels": {
            f.path.name: {"size": f.size, "percent_of_limit": round(f.percent, 2), "rated": f.rated} for f in finals
        },
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--matrix", type=Path, default=Path("matrix.toml"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    report: dict[str, object] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    with tempfile.TemporaryDirectory(prefix="bench-build-") as t:
        tmp = Path(t)
        for jobs in (1, 2):
            folder = tmp / f"cold-j{jobs}"
            folder.mkdir()
            report[f"cold_jobs{jobs}"] = cold_build(args.matrix, jobs, folder)
            print(json.dumps(report[f"cold_jobs{jobs}"], indent=1), flush=True)
        (tmp / "noop").mkdir()
        report["noop"] = noop_and_assemble(args.matrix, tmp / "noop")
    j1 = report["cold_jobs1"]["wall_seconds"]  # type: ignore[index]
    j2 = report["cold_jobs2"]["wall_seconds"]  # type: ignore[index]
    report["parallel_speedup"] = round(j1 / j2, 2) if j2 else None
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
