"""The README's path, measured as a user runs it: a fresh clone, `pip install nox`, `nox -s build`
twice (cold, then no-op), then one kernel source touched and `nox -s build` again.

Each run is timed as a whole process (nox's own start, the session's environment, the toolkit's
build and assemble). The toolkit's user-wide caches (CUDA toolchains, cell wheels, zig's objects)
are used as they are unless told otherwise:

  --fresh-cell-cache   cells built from nothing (a new cell cache, passed as `-- --cache DIR`)
  --fresh-zig-cache    zig's first build per cross target (a new ZIG_GLOBAL_CACHE_DIR)

From the build record of each run: per cell, built or cached and its time, so the cold run gives
the first-build time of each cross target and the no-op run the cached one. The touched run
checks that every cell rebuilt (nothing is served stale).

Usage: python benchmarks/bench_nox_build.py [--repo .] [--fresh-cell-cache] [--fresh-zig-cache]
       [--out bench-nox-build.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.monotonic()
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    took = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return took


def _cells(clone: Path) -> dict[str, dict[str, object]]:
    record = json.loads((clone / "dist" / "build-record.json").read_text())
    return {
        c["cell_id"]: {"status": c["status"], "seconds": round(c["duration"], 2)}
        for c in record["cells"]
        if c["status"] != "skipped"
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--fresh-cell-cache", action="store_true")
    parser.add_argument("--fresh-zig-cache", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    report: dict[str, object] = {"cpus": os.cpu_count(), "python": sys.version.split()[0]}
    with tempfile.TemporaryDirectory(prefix="bench-nox-") as t:
        tmp = Path(t)
        clone = tmp / "clone"
        subprocess.run(["git", "clone", "-q", str(args.repo), str(clone)], check=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NOX", "VIRTUAL_ENV"))}
        if args.fresh_zig_cache:
            env["ZIG_GLOBAL_CACHE_DIR"] = str(tmp / "zig-cache")
        posargs = ["--", "--cache", str(tmp / "cells")] if args.fresh_cell_cache else []
        # the README: `pip install nox`, in a fresh environment
        subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True)
        start = time.monotonic()
        subprocess.run([str(tmp / "venv" / "bin" / "pip"), "install", "-q", "nox"], check=True, env=env)
        report["pip_install_nox_seconds"] = round(time.monotonic() - start, 2)
        env["PATH"] = f"{tmp / 'venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        nox = ["nox", "-s", "build", *posargs]
        report["cold_seconds"] = round(_run(nox, clone, env), 2)
        report["cold_cells"] = _cells(clone)
        report["noop_seconds"] = round(_run(nox, clone, env), 2)
        report["noop_cells"] = _cells(clone)
        source = clone / "csrc" / "kbit_shared.cpp"  # compiled into every kbit library
        source.write_text(source.read_text() + "\n// touched by bench_nox_build.py\n")
        report["touched_seconds"] = round(_run(nox, clone, env), 2)
        touched = _cells(clone)
        report["touched_cells"] = touched
        stale = sorted(c for c, r in touched.items() if r["status"] != "built")
        report["touched_all_rebuilt"] = not stale
        if stale:
            print(f"served stale after a source change: {stale}", file=sys.stderr)
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0 if report["touched_all_rebuilt"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
