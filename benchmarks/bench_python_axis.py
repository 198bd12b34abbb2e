"""Benchmark of the Python axis: what each further Python costs a CUDA variant (on demand, never a test).

Over the extension test project (tests/projects/qext, nanobind, CUDA 13.0 + cuBLAS), with the CUDA
toolchain already provided and the shared build environment already installed (both are one-time
costs of a host, reported by their own stages):

* cold: the first per-Python cell of the CUDA variant in an empty build tree (CMake configure, the
  CUDA kernels, nanobind's library for that Python, the module, the cell checks);
Wall time and the CPU time of the cell's processes are both recorded: this host's 2 cores are
shared, and CPU time is the steadier of the two.

* each further Python of the same variant: it builds in the same tree (the persistent build tree
  per variant), so the kernels are not compiled again; its added cost is the reconfigure, nanobind's
  library for that Python, the module link and the cell checks.

The goal (issue 17): each further Python <= 25 % of the cold cell. No cell cache is used.

Usage: python benchmarks/bench_python_axis.py [--matrix tests/projects/qext/matrix.toml] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
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
    with tempfile.TemporaryDirectory(prefix="bench-python-axis-") as tmp:
        work = Path(tmp) / "work"
        t = time.monotonic()
        oldest = cells_mod.oldest_interpreter(specs)
        assert oldest is not None
        cells_mod.shared_build_env(work, matrix.project, oldest, 1800)
        env_s = time.monotonic() - t
        results = []
        for spec in specs:  # one at a time, in the plan's order (the first one is cold)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            r = build_cells([spec], BuildOptions(work=work, cache=None, jobs=1), provide)[0]
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            if r.status != "built":
                print(f"{spec.cell_id}: {r.status}: {r.reason}\n{r.tail}")
                return 1
            results.append(
                {
                    "cell": spec.cell_id,
                    "seconds": round(r.duration, 2),
                    "build_seconds": round(r.build_seconds, 2),
                    "cpu_seconds": round(cpu, 2),  # compilers and tools, summed: steadier under other load
                }
            )
            print(f"{spec.cell_id}: {r.duration:.1f} s wall, {cpu:.1f} s CPU", flush=True)
        shutil.rmtree(work, ignore_errors=True)
    cold = results[0]["seconds"]
    further = [r["seconds"] for r in results[1:]]
    doc = {
        "project": matrix.project.name,
        "variant": variant,
        "cores": os.cpu_count(),
        "toolchain_seconds_untimed": round(toolchain_s, 1),
        "build_env_seconds_once": round(env_s, 1),
        "cold_cell": results[0],
        "further_pythons": results[1:],
        "further_percent_of_cold": [round(100 * s / cold, 1) for s in further],
        "further_cpu_percent_of_cold": [
            round(100 * float(r["cpu_seconds"]) / float(results[0]["cpu_seconds"]), 1) for r in results[1:]
        ],
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "goal_percent": 25,
    }
    print(json.dumps(doc, indent=1))
    if args.out:
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
