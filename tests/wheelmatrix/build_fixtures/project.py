"""The real kbit tree, copied so a test can change its sources, and matrices/cells over it."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from wheelmatrix.config import load_matrix
from wheelmatrix.host import detect
from wheelmatrix.model import CudaVersion, Matrix
from wheelmatrix.plan import BuildSpec, Cell, build_spec

REPO = Path(__file__).resolve().parents[3]
# what kbit's build reads (pyproject's readme and sdist list included)
TREE = ("pyproject.toml", "CMakeLists.txt", "csrc", "cmake", "src", "docs/kbit-formats.md", "KBIT.md")

# kbit's CPU cell alone, linked against this host's glibc or newer (no zig link): a build of seconds
CPU_ONLY_MATRIX = """
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


def copy_kbit(dest: Path) -> Path:
    for name in TREE:
        src = REPO / name
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copyfile(src, target)
    return dest


def kbit_matrix(source: Path, *, policy: str | None = None) -> Matrix:
    """kbit's release (as frozen in kbit-release.toml) with the project source at ``source`` (and
    optionally another Linux policy)."""
    matrix = load_matrix(Path(__file__).parent / "kbit-release.toml")
    matrix = replace(matrix, project=replace(matrix.project, source=source), toolchain_lock=REPO / "toolchains.lock")
    if policy is not None:
        matrix = replace(
            matrix,
            platforms=tuple(replace(p, policy=policy) if p.name == "linux-x86_64" else p for p in matrix.platforms),
        )
    return matrix


def specs(matrix: Matrix, cells: list[Cell]) -> list[BuildSpec]:
    """The build specs of ``cells`` on this host (as the plan resolves them)."""
    host = detect(matrix)
    return [build_spec(matrix, c, host) for c in cells]


def cpu_cell(platform: str = "linux-x86_64") -> Cell:
    return Cell(platform, "cpu", None, (), (), None, True, "this host builds it")  # type: ignore[arg-type]


def cuda_cell(version: str, sass: tuple[int, ...], ptx: tuple[int, ...]) -> Cell:
    v = CudaVersion.parse(version)
    return Cell("linux-x86_64", v.variant, v, sass, ptx, None, True, "this host builds it")


@dataclass(frozen=True)
class FakeToolchain:
    """A toolchain whose nvcc is a script (a compiler that hangs); stands in for a real one."""

    nvcc: Path
    identity: str = "fake"

    @property
    def cmake_args(self) -> tuple[str, ...]:
        return (f"-DCMAKE_CUDA_COMPILER={self.nvcc}",)

    @property
    def env(self) -> dict[str, str]:
        return {}
