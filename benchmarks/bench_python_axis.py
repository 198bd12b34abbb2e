"""Benchmark of the Python axis: what each further Python costs a CUDA variant (on demand, never a test).

Over the extension test project (tests/projects/qext, nanobind, CUDA 13.0 + cuBLAS), with the CUDA
toolchain already provided and the shared build environment already installed (both are one-time
costs of a host, reported by their own stages):

* cold: the first per-Python cell of the CUDA variant in an empty build tree (CMake configure, the
  CUDA kernels, nanobind's library for that Python, the module, the cell checks);
* each further Python of the same variant: it builds in the same tree (the persistent build tree
  per variant), so the kernels are not compiled again; its added cost is the reconfigure, nanobind's
  library for that Python (unless the compiler cache has it), the module link and the cell checks.

Wall time and the CPU time of the cell's processes are both recorded: this host's 2 cores are
shared, and CPU time is the steadier of the two.

Two runs: the CUDA variant alone (no compiler cache; its first cell is the cold cell), then the
release's order (the CPU variant's cells, then the CUDA variant's) with one compiler cache from
empty, where the CUDA variant takes nanobind's library for each Python from the CPU variant's cell.
The goal (issue 17): each further Python <= 25 % of the cold cell. No cell cache is used.

Usage: python benchmarks/bench_python_axis.py [--matrix tests/projects/qext/matrix.toml] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from wheelmatrix import host as host_mod
from wheelmatrix import toolchains
from wheelmatrix.config import load_matrix
from wheelmatrix.model import CudaSpec
from wheelmatrix.plan import BuildSpec, make_plan
from wheelmatrix.stages import buildenv
from wheelmatrix.stages import cells as cells_mod
from wheelmatrix.stages.cells import BuildOptions, build_cells

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--matrix", type=Path, default=REPO / "tests" / "projects" / "qext" / "matrix.toml")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    matrix = load_matrix(args.matrix)
    plan = make_plan(matrix, host_mod.detect(matrix))
    cuda = [c for c in plan.buildable if c.cuda is not None]
    if len(cuda) < 2:
        print("needs at least two buildable per-Python CUDA cells (two CPythons and a CUDA toolchain)")
        return 2
    variant = cuda[0].variant
    cells = [c for c in cuda if c.variant == variant]
    specs = plan.build_specs(cells)
    lock = toolchains.lock_path_of(matrix)

    def provide(spec: CudaSpec) -> cells_mod.Toolchain:
        return toolchains.provide(spec, lock_path=lock if lock.is_file() else None)

    t = time.monotonic()
    for spec in {s.cuda for s in specs if s.cuda is not None}:
        provide(spec)  # one-time: provided (or verified from the cache) before anything is timed
    toolchain_s = time.monotonic() - t
    release = plan.build_specs([c for c in plan.buildable if c.cuda is None]) + specs  # CPU cells first
    with tempfile.TemporaryDirectory(prefix="bench-python-axis-") as tmp:
        env_s, alone = run_cells(specs, Path(tmp) / "alone", None, provide)
        if alone is None:
            return 1
    with tempfile.TemporaryDirectory(prefix="bench-python-axis-") as tmp:
        _, in_release = run_cells(release, Path(tmp) / "release", Path(tmp) / "ccache", provide)
        if in_release is None:
            return 1
    cold = alone[0]
    cuda_in_release = [r for r in in_release if r["cell"] in {s.cell_id for s in specs}]

    def percent(rows: list[dict[str, float | str]], key: str) -> list[float]:
        return [round(100 * float(r[key]) / float(cold[key]), 1) for r in rows]

    doc = {
        "project": matrix.project.name,
        "variant": variant,
        "cores": os.cpu_count(),
        "toolchain_seconds_untimed": round(toolchain_s, 1),
        "build_env_seconds_once": round(env_s, 1),
        "cold_cell": cold,
        "variant_alone": {
            "note": "the CUDA variant's cells alone, one after another, no compiler cache",
            "further_pythons": alone[1:],
            "further_percent_of_cold": percent(alone[1:], "seconds"),
            "further_cpu_percent_of_cold": percent(alone[1:], "cpu_seconds"),
        },
        "in_release": {
            "note": "the release's order (CPU cells first, then the CUDA variant), one compiler cache from empty",
            "cells": in_release,
            "cuda_further_percent_of_cold": percent(cuda_in_release[1:], "seconds"),
            "cuda_further_cpu_percent_of_cold": percent(cuda_in_release[1:], "cpu_seconds"),
        },
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "goal_percent": 25,
    }
    print(json.dumps(doc, indent=1))
    if args.out:
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


def run_cells(
    specs: list[BuildSpec], work: Path, ccache: Path | None, provide: cells_mod.Provider
) -> tuple[float, list[dict[str, float | str]] | None]:
    """Build ``specs`` one at a time in ``work`` (the first per-Python cell of each variant is cold):
    the shared build environment's install time, and each cell's wall and CPU seconds."""
    t = time.monotonic()
    oldest = cells_mod.oldest_interpreter(specs)
    assert oldest is not None
    buildenv.prepare_shared(work, specs[0].project.source, oldest, 1800)
    env_s = time.monotonic() - t
    results: list[dict[str, float | str]] = []
    for spec in specs:  # one at a time, in the given order
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        r = build_cells([spec], BuildOptions(work=work, cache=None, jobs=1, compiler_cache=ccache), provide)[0]
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        if r.status != "built":
            print(f"{spec.cell_id}: {r.status}: {r.reason}\n{r.tail}")
            return env_s, None
        hits = (r.compiler_cache or {}).get("reason", "no compiler cache")
        results.append(
            {
                "cell": spec.cell_id,
                "seconds": round(r.duration, 2),
                "build_seconds": round(r.build_seconds, 2),
                "cpu_seconds": round(cpu, 2),  # compilers and tools, summed: steadier under other load
                "compiler_cache": str(hits),
            }
        )
        print(f"{spec.cell_id}: {r.duration:.1f} s wall, {cpu:.1f} s CPU ({hits})", flush=True)
    return env_s, results


if __name__ == "__main__":
    sys.exit(main())
