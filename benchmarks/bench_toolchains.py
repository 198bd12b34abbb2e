"""Provisioning time and downloaded bytes of each CUDA toolchain, cold and warm.

    python benchmarks/bench_toolchains.py [--matrix matrix.toml] [VERSION ...] [--json OUT]

cold      an empty cache: download (from PyPI / Debian's archive), unpack, verify (probe compile)
unpacked  the downloads already cached (e.g. after a prune of entries): unpack + verify only
warm      the entry is cached and verified: what every later build pays
verify    verification alone (nvcc --version, probe kernel, shared library link)

Each run uses fresh temporary caches (WHEELMATRIX_CACHE_DIR is not touched) and the files
pinned by the matrix's toolchains.lock. Run it on an otherwise idle machine; it is not a test.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from wheelmatrix.config import load_matrix
from wheelmatrix.toolchains import Cache, lock_path_of, provide, select
from wheelmatrix.toolchains.cache import tree_size
from wheelmatrix.toolchains.progress import human_size


def bench(matrix_path: Path, versions: list[str]) -> list[dict[str, object]]:
    matrix = load_matrix(matrix_path)
    lock = lock_path_of(matrix)
    rows = []
    for spec in select(matrix, versions):
        if spec.toolchain.source == "system":
            continue
        with tempfile.TemporaryDirectory(prefix="wm-bench-") as tmp:
            cache = Cache(Path(tmp))
            t0 = time.monotonic()
            tc = provide(spec, lock_path=lock, cache=cache)
            cold = time.monotonic() - t0
            downloaded = tree_size(cache.downloads)
            t0 = time.monotonic()
            provide(spec, lock_path=lock, cache=cache, offline=True)
            warm = time.monotonic() - t0
            t0 = time.monotonic()
            provide(spec, lock_path=lock, cache=cache, offline=True, reverify=True)
            verify = time.monotonic() - t0
            shutil.rmtree(cache.entries)
            t0 = time.monotonic()
            provide(spec, lock_path=lock, cache=cache, offline=True)
            unpacked = time.monotonic() - t0
        row: dict[str, object] = {
            "cuda": str(spec.version),
            "source": spec.toolchain.describe(),
            "nvcc": tc.nvcc_version,
            "downloaded_bytes": downloaded,
            "installed_bytes": tc.size,
            "cold_s": round(cold, 1),
            "unpacked_s": round(unpacked, 1),
            "warm_s": round(warm, 3),
            "verify_s": round(verify, 1),
        }
        rows.append(row)
        print(
            f"CUDA {row['cuda']:<5} {row['source']:<16} downloaded {human_size(downloaded):>10}  "
            f"installed {human_size(tc.size):>10}  cold {cold:6.1f} s  unpack+verify {unpacked:6.1f} s  "
            f"warm {warm:6.3f} s  verify {verify:5.1f} s",
            flush=True,
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("versions", nargs="*", metavar="VERSION")
    parser.add_argument("--matrix", type=Path, default=Path("matrix.toml"))
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    rows = bench(args.matrix, args.versions)
    if args.json:
        args.json.write_text(json.dumps({"schema_version": 1, "results": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
