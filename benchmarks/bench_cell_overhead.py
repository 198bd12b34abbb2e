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
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "wheelmatrix"))

from build_fixtures.project import copy_kbit  # noqa: E402

MATRIX = """
[project]
name = "kbit"
import-package = "kbit"
library = "kbit_{variant}"
library-dir = "_lib"
[build]
backend = { variable = "KBIT_BACKEND", cpu = "cpu", cuda = "cuda" }
[matrix]
platforms = ["linux-x86_64"]
cuda = []
python = ["3.11"]
[platform.linux-x86_64]
policy = "manylinux_2_39"
"""


def _timed(argv: list[str], cwd: Path) -> float:
    start = time.monotonic()
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, check=False)
    took = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return took


def plain(tree: Path, tmp: Path) -> float:
    build = tmp / "plain"
    shutil.rmtree(build, ignore_errors=True)
    start = time.monotonic()
    _timed(
        ["cmake", "-S", str(tree), "-B", str(build), "-G", "Ninja", "-DCMAKE_BUILD_TYPE=Release", "-DKBIT_BACKEND=cpu"],
        tree,
    )
    _timed(["cmake", "--build", str(build)], tree)
    return time.monotonic() - start


def toolkit(tree: Path, work: Path, *more: str) -> tuple[float, float]:
    """(the cell's recorded duration, the command's wall time)."""
    shutil.rmtree(work / "cells", ignore_errors=True)  # a fresh build tree: everything compiles
    argv = [sys.executable, "-m", "wheelmatrix", "build", "-q", "--matrix", str(tree / "matrix.toml")]
    argv += ["--work", str(work), "--no-cache", "--no-compiler-cache", *more]
    wall = _timed(argv, tree)
    (cell,) = json.loads((work / "cells.json").read_text())["cells"]
    assert cell["status"] == "built", cell
    return float(cell["duration"]), wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench-cell-overhead.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="wm-overhead-") as name:
        tmp = Path(name)
        tree = copy_kbit(tmp / "kbit")
        (tree / "matrix.toml").write_text(MATRIX)
        work = tmp / "work"
        toolkit(tree, work)  # prepares the build environment (once per machine) and warms the disk
        plains, cells, walls, fresh_cells = [], [], [], []
        for i in range(args.repeat):
            plains.append(plain(tree, tmp))
            cell, wall = toolkit(tree, work)
            cells.append(cell)
            walls.append(wall)
            fresh_cells.append(toolkit(tree, work, "--fresh-env")[0])
            print(
                f"run {i + 1}: plain {plains[-1]:.2f} s, cell {cell:.2f} s (command {wall:.2f} s), fresh env {fresh_cells[-1]:.2f} s",
                flush=True,
            )
    med = {
        k: statistics.median(v)
        for k, v in {"plain": plains, "cell": cells, "command": walls, "fresh_env_cell": fresh_cells}.items()
    }
    doc = {
        "cores": os.cpu_count(),
        "load": os.getloadavg(),
        "runs": {"plain": plains, "cell": cells, "command": walls, "fresh_env_cell": fresh_cells},
        "median": med,
        "ratio_cell_to_plain": med["cell"] / med["plain"],
        "ratio_command_to_plain": med["command"] / med["plain"],
        "ratio_fresh_env_cell_to_plain": med["fresh_env_cell"] / med["plain"],
    }
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print(json.dumps({k: v for k, v in doc.items() if k != "runs"}, indent=1))


if __name__ == "__main__":
    main()
