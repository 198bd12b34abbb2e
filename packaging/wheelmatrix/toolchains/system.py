"""The ``system`` source: a CUDA toolkit already on this host (CI images with CUDA installed),
at the path named in matrix.toml or ``$CUDA_HOME``. Verified like every other source."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from wheelmatrix.errors import ToolchainError
from wheelmatrix.host import system_cuda_root
from wheelmatrix.model import CudaSpec, SourceKind
from wheelmatrix.toolchains.base import Assembled, LockedFile, LockEntry


class SystemSource:
    kind: SourceKind = "system"

    def unavailable(self, spec: CudaSpec) -> str | None:
        root = system_cuda_root(spec)
        if root is None:
            return "the matrix names no path for it and CUDA_HOME is not set"
        if not (root / "bin" / "nvcc").is_file():
            return f"there is no nvcc at {root / 'bin' / 'nvcc'}"
        return None

    def recipe(self, spec: CudaSpec) -> Mapping[str, object]:
        return {}

    def package_names(self, spec: CudaSpec) -> frozenset[str]:
        return frozenset()

    def resolve(self, spec: CudaSpec) -> LockEntry:
        return LockEntry(spec.version, "system", spec.toolchain.describe(), ())

    def assemble(self, spec: CudaSpec, files: Sequence[tuple[LockedFile, Path]], staging: Path) -> Assembled:
        raise ToolchainError("a system toolchain is used in place, never assembled")
