"""Windows cells: cross-built on Linux with ``zig cc -target x86_64-windows-gnu`` (no system
package: zig comes from PyPI), natively elsewhere; repaired by delvewheel (which runs on Linux)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from wheelmatrix.model import PlatformSpec
from wheelmatrix.plan import BuildSpec
from wheelmatrix.platforms import zig
from wheelmatrix.stages.repair import Repaired, repair_windows


class Windows:
    os = "windows"

    def toolchain_file(self, spec: BuildSpec, tools: Path) -> list[str]:
        if spec.cross is None:
            return ["# a native Windows build: the host's compilers"]
        return [
            *zig.cross_lines(spec, tools, "Windows", "AMD64"),
            "# stripped, no PDB: its GUID, recorded in the DLL, would differ on every link (reproducibility)",
            'set(CMAKE_SHARED_LINKER_FLAGS_INIT "-s")',
            'set(CMAKE_MODULE_LINKER_FLAGS_INIT "-s")',
        ]

    def env(self, spec: BuildSpec) -> dict[str, str]:
        return {"_PYTHON_HOST_PLATFORM": "win-amd64"} if spec.cross is not None else {}

    def identity(self, spec: BuildSpec) -> str:
        return f"zig {zig.zig_version()} for {spec.cross}" if spec.cross is not None else "native MSVC or mingw"

    def repair(
        self, wheel: Path, spec: PlatformSpec, out_dir: Path, *, exclude: Sequence[str], timeout: float
    ) -> Repaired:
        return repair_windows(wheel, spec, out_dir, exclude=exclude, timeout=timeout)

    def rpath_entry(self, relative: str) -> str | None:
        return None  # Windows has no run path: the loader adds DLL folders itself
