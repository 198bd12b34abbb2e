"""The toolkit's own cost per cell: one small cell through wheelmatrix against a plain CMake build.

On a copy of kbit's tree (its CPU cell; the Linux policy set to this host's glibc so no zig link
is involved, as in a plain build), each repeated ``--repeat`` times, alternating, medians reported:

* plain: ``cmake -S <tree> -B <fresh dir> -G Ninja -DCMAKE_BUILD_TYPE=Release -DKBIT_BACKEND=cpu``
  then ``cmake --build`` (configure, compile, link: what a developer runs by hand);
* toolkit: ``wheelmatrix build --no-cache --no-compiler-cache`` of the same cell with a fresh
  build tree each time (so it compiles everything, like the plain build): the cell's time as the
  toolkit records it (its toolchain file, the build backend in the reused build environment,
  configure, compile, link, install, the wheel, the checks from the binary, the manifest), and
  the command's whole wall time (Python start, the plan, the locks, the results) besides;
* ``--fresh-env``: the same with a fresh isolated build environment per cell (the old way).

The build environment is prepared before the first measured run (once per machine).

Usage: python benchmarks/bench_cell_overhead.py [--repeat 5] [--out bench-cell-overhead.json]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "wheelmatrix"))

from build_fixtures.project import CPU_ONLY_MATRIX, copy_kbit  # noqa: E402


def _cpu() -> float:
    """CPU seconds (user + system) of the finished children so far: steadier than wall time on a
    machine shared with other work."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(argv: list[str], cwd: Path) -> float:
    start = time.monotonic()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    took = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return took


def plain(tree: Path, tmp: Path) -> tuple[float, float]:
    """(wall, CPU) of a configure and build in a fresh folder."""
    build = tmp / "plain"
    shutil.rmtree(build, ignore_errors=True)
    cpu = _cpu()
    start = time.monotonic()
    _timed(
        ["cmake", "-S", str(tree), "-B", str(build), "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release", "-DKBIT_BACKEND=cpu"],
        tree,
    )
    _timed(["cmake", "--build", str(build)], tree)
    return time.monotonic() - start, _cpu() - cpu


def toolkit(tree: Path, work: Path, *more: str) -> tuple[float, float, float]:
    """(the cell's recorded duration, the command's wall time, the command's CPU time)."""
    shutil.rmtree(work / "cells", ignore_errors=True)  # a fresh build tree: everything compiles
    argv = [sys.executable, "-m", "wheelmatrix", "build", "-q", "--matrix", str(tree / "matrix.toml")]
    argv += ["--work", str(work), "--no-cache", "--no-compiler-cache", *more]
    cpu = _cpu()
    wall = _timed(argv, tree)
    cpu = _cpu() - cpu
    (cell,) = json.loads((work / "cells.json").read_text())["cells"]
    assert cell["status"] == "built", cell
    return float(cell["duration"]), wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench-cell-overhead.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wm-overhead-") as name:
        tmp = Path(name)
        tree = copy_kbit(tmp / "kbit")
        (tree / "matrix.toml").write_text(CPU_ONLY_MATRIX)
        work = tmp / "work"
        toolkit(tree, work)  # prepares the build environment (once per machine) and warms the disk
        runs: dict[str, list[float]] = {
            k: [] for k in ("plain", "plain_cpu", "cell", "command", "command_cpu", "fresh_env_cell")
        }
        for i in range(args.repeat):
            wall, cpu = plain(tree, tmp)
            runs["plain"].append(wall)
            runs["plain_cpu"].append(cpu)
            cell, wall, cpu = toolkit(tree, work)
            runs["cell"].append(cell)
            runs["command"].append(wall)
            runs["command_cpu"].append(cpu)
            runs["fresh_env_cell"].append(toolkit(tree, work, "--fresh-env")[0])
            print(
                f"run {i + 1}: plain {runs['plain'][-1]:.2f} s ({runs['plain_cpu'][-1]:.2f} s CPU), "
                f"cell {cell:.2f} s (command {wall:.2f} s, {cpu:.2f} s CPU), "
                f"fresh env {runs['fresh_env_cell'][-1]:.2f} s, load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
    med = {k: statistics.median(v) for k, v in runs.items()}
    doc = {
        "cores": os.cpu_count(),
        "load": os.getloadavg(),
        "runs": runs,
        "median": med,
        "ratio_cell_to_plain": med["cell"] / med["plain"],
        "ratio_command_to_plain": med["command"] / med["plain"],
        "ratio_command_cpu_to_plain_cpu": med["command_cpu"] / med["plain_cpu"],
        "ratio_fresh_env_cell_to_plain": med["fresh_env_cell"] / med["plain"],
    }
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps({k: v for k, v in doc.items() if k != "runs"}, indent=1))


if __name__ == "__main__":
    main()
