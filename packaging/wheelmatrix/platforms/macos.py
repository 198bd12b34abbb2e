"""macOS cells: built on a macOS runner (delocate repairs them there)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from wheelmatrix.errors import PackageError
from wheelmatrix.model import PlatformSpec
from wheelmatrix.plan import BuildSpec
from wheelmatrix.stages.repair import Repaired


class MacOS:
    os = "macos"

    def toolchain_file(self, spec: BuildSpec, tools: Path) -> list[str]:
        return ["# a native macOS build: the host's compilers"]

    def env(self, spec: BuildSpec) -> dict[str, str]:
        return {}

    def identity(self, spec: BuildSpec) -> str:
        return "native clang"

    def repair(
        self, wheel: Path, spec: PlatformSpec, out_dir: Path, *, exclude: Sequence[str], timeout: float
    ) -> Repaired:
        raise PackageError(
            f"delocate repairs {spec.name} wheels and runs on macOS only",
            fix=f"assemble them on a {spec.runner} runner",
        )

    def rpath_entry(self, relative: str) -> str | None:
        return "@loader_path/" + relative
