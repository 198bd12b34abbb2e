"""The ``system`` source: a CUDA toolkit already on this host (CI images with CUDA installed),
at the path named in matrix.toml or ``$CUDA_HOME``. Verified like every other source; the CUDA
components the matrix asks for must be in it (header and ``lib<name>.so``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from wheelmatrix.errors import ToolchainError
from wheelmatrix.host import system_cuda_root
from wheelmatrix.model import CudaSpec, SourceKind
from wheelmatrix.toolchains import components
from wheelmatrix.toolchains.base import Assembled, LockedFile, LockEntry

# NVIDIA's package names of a component's development files (headers and the lib<name>.so link)
_DEV_PACKAGE = {"cublas": "libcublas-dev", "cufft": "libcufft-dev", "curand": "libcurand-dev",
                "cusparse": "libcusparse-dev", "cusolver": "libcusolver-dev"}  # fmt: skip


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
        return {"components": components.recipe(spec)} if spec.components else {}

    def check_components(self, spec: CudaSpec, root: Path) -> None:
        """Every requested component's header and library exist in ``root``, else a ToolchainError
        naming the first missing file and how to get it."""
        gaps = components.missing(spec, root)
        if not gaps:
            return
        name, path = gaps[0]
        more = f" (and {', '.join(p for _, p in gaps[1:])})" if len(gaps) > 1 else ""
        dev = _DEV_PACKAGE.get(name, f"the {name} development files")
        v = spec.version
        raise ToolchainError(
            f"the CUDA {v} toolkit at {root} lacks {root / path}{more}, which the component {name} needs "
            "(matrix.toml asks for it; lib/ and targets/x86_64-linux/ were searched too)",
            fix=f"install {name}'s development files into that toolkit (NVIDIA's package {dev}-{v.major}-{v.minor}), "
            f'point [cuda."{v}"] toolchain path at a CUDA root that has them, or remove "{name}" from its components',
        )

    def package_names(self, spec: CudaSpec) -> frozenset[str]:
        return frozenset()

    def resolve(self, spec: CudaSpec) -> LockEntry:
        return LockEntry(spec.version, "system", spec.toolchain.describe(), ())

    def assemble(self, spec: CudaSpec, files: Sequence[tuple[LockedFile, Path]], staging: Path) -> Assembled:
        raise ToolchainError("a system toolchain is used in place, never assembled")
