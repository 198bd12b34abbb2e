"""Platforms behind one protocol: what differs between Linux, Windows and macOS cells.

Each platform module implements :class:`Platform` once: the CMake toolchain file the toolkit
writes for a cell (compilers, the linker that meets the glibc floor, the cross target), the
environment of the build, and the repair of its wheels. Everything shared is written once in
:mod:`wheelmatrix.stages`; nothing there asks which OS a cell is for.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from wheelmatrix.model import PlatformSpec
from wheelmatrix.plan import BuildSpec
from wheelmatrix.stages.repair import Repaired


class Platform(Protocol):
    """One OS's share of the pipeline."""

    os: str

    def toolchain_file(self, spec: BuildSpec, tools: Path) -> list[str]:
        """CMake lines for the cell's toolchain file; wrapper scripts go into ``tools``."""
        ...

    def env(self, spec: BuildSpec) -> dict[str, str]:
        """Environment of the cell's build (e.g. the wheel tag of a cross build)."""
        ...

    def identity(self, spec: BuildSpec) -> str:
        """What of this host shapes the cell's bytes (compilers, linkers): part of its cache key."""
        ...

    def repair(
        self, wheel: Path, spec: PlatformSpec, out_dir: Path, *, exclude: Sequence[str], timeout: float
    ) -> Repaired:
        """Vendor what the wheel's libraries need and gate it on the platform policy."""
        ...

    def rpath_entry(self, relative: str) -> str | None:
        """How a library names a folder relative to itself in its run path (``$ORIGIN/...``), or None."""
        ...


def platform_of(spec: PlatformSpec) -> Platform:
    """The implementation for ``spec``'s OS."""
    from wheelmatrix.platforms.linux import Linux  # noqa: PLC0415  (each imports this module)
    from wheelmatrix.platforms.macos import MacOS  # noqa: PLC0415
    from wheelmatrix.platforms.windows import Windows  # noqa: PLC0415

    table: dict[str, Platform] = {"linux": Linux(), "windows": Windows(), "macos": MacOS()}
    return table[spec.os]
