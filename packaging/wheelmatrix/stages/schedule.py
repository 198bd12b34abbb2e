"""How a build divides the machine: concurrent cells x the build tool's jobs x nvcc's ``--threads``.

``--jobs auto`` (the default of ``wheelmatrix build``) chooses the split from the cores and the
available memory: every compile thread that runs at once is counted against both, so

    cells x jobs x threads <= cores   and   cells x jobs x threads x memory-per-compile <= available memory

(``[build] memory-per-compile`` of matrix.toml; by default :data:`DEFAULT_CPU_COMPILE` for CPU-only
builds and :data:`DEFAULT_CUDA_COMPILE` once a CUDA cell is built: large kernels take 3-5 GB per
nvcc thread). nvcc's ``--threads`` compiles the archs of one file in parallel; it only gets the
cores that the cells and the build tool leave (it slows a build down when make or ninja already fill
every core). ``--jobs N`` fixes the cells at once and splits the rest the same way.

The split changes how fast a cell builds, never what it builds: it is not in the cell cache key.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

GIB = 2**30
DEFAULT_CPU_COMPILE = 1 * GIB
DEFAULT_CUDA_COMPILE = 4 * GIB


@dataclass(frozen=True)
class Schedule:
    cells: int  # cells built at once
    jobs: int  # the build tool's parallel level in each cell (CMAKE_BUILD_PARALLEL_LEVEL)
    threads: int  # nvcc --threads in each CUDA compile (1 for CPU cells)
    cores: int
    memory: int  # bytes available when the build started
    per_compile: int  # bytes counted per compile thread
    reason: str

    def split(self, cuda: bool) -> tuple[int, int]:
        """(jobs, nvcc threads) of one cell; a CPU cell gives the threads' share to its jobs."""
        if cuda:
            return self.jobs, self.threads
        return self.jobs * self.threads, 1

    def describe(self) -> str:
        return (
            f"{self.cells} cell(s) at once x {self.jobs} job(s) x {self.threads} nvcc thread(s)"
            f" <= {self.cores} cores, {self.per_compile / GIB:g} GiB per compile of"
            f" {self.memory / GIB:.1f} GiB available ({self.reason})"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "cells": self.cells,
            "jobs": self.jobs,
            "threads": self.threads,
            "cores": self.cores,
            "memory": self.memory,
            "per_compile": self.per_compile,
            "reason": self.reason,
        }


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def available_memory() -> int:
    """Bytes of memory available to new processes (MemAvailable; the cgroup limit where lower)."""
    best: int | None = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                best = int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            best = min(best, int(limit)) if best is not None else int(limit)
    except OSError:
        pass
    if best is None:  # not Linux: assume 2 GiB per core
        best = available_cores() * 2 * GIB
    return best


def per_compile_default(any_cuda: bool) -> int:
    return DEFAULT_CUDA_COMPILE if any_cuda else DEFAULT_CPU_COMPILE


def plan_schedule(
    *,
    cells: int,
    archs: int,
    cores: int,
    memory: int,
    per_compile: int,
    fixed_cells: int | None = None,
) -> Schedule:
    """The split for ``cells`` cells to build, the largest of which compiles ``archs`` CUDA archs
    per file (0: no CUDA cell); ``fixed_cells`` is ``--jobs N``."""
    cores = max(1, cores)
    by_memory = max(1, memory // max(1, per_compile))
    slots = max(1, min(cores, by_memory))
    bound = "cores" if cores <= by_memory else "memory"
    if fixed_cells is not None:
        at_once = max(1, fixed_cells)
        reason = f"--jobs {fixed_cells}; bound by {bound}"
    else:
        # each cell gets at least two slots where there are enough, so a cell's own configure and
        # link steps (one process) do not leave cores idle
        at_once = max(1, min(cells, slots // 2 if slots >= 2 else 1))
        reason = f"--jobs auto; bound by {bound}"
    per_cell = max(1, slots // at_once)
    threads = 1
    if archs > 1 and per_cell > 1:
        # nvcc threads for a multi-arch file, but never more than half the cell's share: the build
        # tool compiles files side by side too
        threads = max(1, min(archs, per_cell // 2))
    jobs = max(1, per_cell // threads)
    return Schedule(at_once, jobs, threads, cores, memory, per_compile, reason)


def auto_schedule(
    specs_cuda_archs: Sequence[int],
    *,
    per_compile: int | None = None,
    fixed_cells: int | None = None,
    cores: int | None = None,
    memory: int | None = None,
) -> Schedule:
    """:func:`plan_schedule` for this machine; ``specs_cuda_archs`` holds, per buildable cell, the
    number of archs it compiles (0 for a CPU cell)."""
    any_cuda = any(a > 0 for a in specs_cuda_archs)
    return plan_schedule(
        cells=max(1, len(specs_cuda_archs)),
        archs=max(specs_cuda_archs, default=0),
        cores=cores if cores is not None else available_cores(),
        memory=memory if memory is not None else available_memory(),
        per_compile=per_compile if per_compile is not None else per_compile_default(any_cuda),
        fixed_cells=fixed_cells,
    )
