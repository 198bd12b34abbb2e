"""Build :class:`~wheelmatrix.model.Matrix` objects directly (no matrix.toml parsing needed)."""

from __future__ import annotations

import sys
from pathlib import Path

from wheelmatrix.data import cuda_facts
from wheelmatrix.model import CudaFacts, CudaSpec, CudaVersion, Matrix, Packaging, Project, Toolchain

if sys.version_info >= (3, 11):
    pass
else:  # pragma: no cover
    pass

# The archs the release declares per CUDA version (kbit's matrix): lowest and highest SASS and
# the PTX arch are what the probe compiles.
ARCHS: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {
    "11.8": ((50, 60, 70, 75, 80, 86, 89, 90), (90,)),
    "12.4": ((50, 60, 70, 75, 80, 86, 89, 90), (90,)),
    "12.8": ((70, 75, 80, 86, 89, 90, 100, 120), (120,)),
    "13.0": ((75, 80, 86, 89, 90, 100, 120), (120,)),
    "13.2": ((75, 80, 86, 89, 90, 100, 120), (120,)),
}


def facts(version: str) -> CudaFacts:
    return cuda_facts()[CudaVersion.parse(version)]


def spec(
    version: str, toolchain: Toolchain, *, sass: tuple[int, ...] | None = None, ptx: tuple[int, ...] | None = None
) -> CudaSpec:
    default_sass, default_ptx = ARCHS.get(version, ((75,), (75,)))
    return CudaSpec(
        version=CudaVersion.parse(version),
        sass=sass if sass is not None else default_sass,
        ptx=ptx if ptx is not None else default_ptx,
        toolchain=toolchain,
        facts=facts(version),
    )


def matrix(folder: Path, *specs: CudaSpec, lock: str = "toolchains.lock") -> Matrix:
    """A matrix whose matrix.toml would live in ``folder`` (the lock is resolved next to it)."""
    return Matrix(
        path=folder / "matrix.toml",
        project=Project("kbit", "kbit", "kbit", "_lib", folder),
        platforms=(),
        cuda=tuple(specs),
        python=("3.11",),
        rules=(),
        packaging=Packaging(100 << 20, 10 << 30, "fat", "{name}-cu{major}", "cu{major}"),
        publish=(),
        toolchain_lock=Path(lock),
    )


def release_matrix(folder: Path) -> Matrix:
    """The toolchains of kbit's release matrix (12.8 is a system toolkit, absent here)."""
    return matrix(
        folder,
        spec("11.8", Toolchain("debian", suite="bookworm")),
        spec("12.4", Toolchain("debian", suite="trixie")),
        spec("12.8", Toolchain("system", path=Path("/usr/local/cuda-12.8"))),
        spec("13.0", Toolchain("pypi")),
        spec("13.2", Toolchain("pypi")),
    )
