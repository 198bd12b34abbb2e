"""Stage 2: the plan. Expands the matrix into cells and says, per cell, whether this host builds it.

Pure over an injected :class:`Host`, so it is property-tested over generated matrices.
"""

from __future__ import annotations

from dataclasses import dataclass

from wheelmatrix.model import CudaVersion, Matrix, PlatformName, Toolchain


@dataclass(frozen=True)
class Host:
    """What this build host is and has; :func:`wheelmatrix.host.detect` fills it."""

    platform: str  # one of the platform names, or e.g. "linux-ppc64le" for an unknown one
    has_c_compiler: bool
    has_mingw: bool  # x86_64-w64-mingw32-g++ on PATH (Windows CPU cells cross-build here)
    system_cuda: tuple[tuple[str, str], ...] = ()  # (cuda version, root) of system toolkits found


@dataclass(frozen=True)
class Cell:
    """One build cell: a (platform, variant) pair; variant is "cpu" or "cudaXY"."""

    platform: PlatformName
    variant: str
    cuda: CudaVersion | None
    sass: tuple[int, ...]
    ptx: tuple[int, ...]
    toolchain: Toolchain | None
    buildable: bool
    reason: str  # why it can or cannot be built on this host

    @property
    def id(self) -> str:
        return f"{self.platform}-{self.variant}"


@dataclass(frozen=True)
class Excluded:
    platform: PlatformName
    variant: str
    reason: str
    rule: int


@dataclass(frozen=True)
class Plan:
    matrix: Matrix
    host: Host
    cells: tuple[Cell, ...]
    excluded: tuple[Excluded, ...]

    def cell(self, cell_id: str) -> Cell:
        for c in self.cells:
            if c.id == cell_id:
                return c
        raise KeyError(cell_id)

    @property
    def buildable(self) -> tuple[Cell, ...]:
        return tuple(c for c in self.cells if c.buildable)
