"""zig from PyPI (the ``ziglang`` package): the cross compiler and the glibc-floor linker.

``zig cc -target <triple>`` compiles and links C and C++ for other targets from this host with the
libc headers and stubs it carries: ``x86_64-linux-gnu.2.17`` links against glibc 2.17 whatever
the host's glibc is, ``x86_64-windows-gnu`` makes Windows DLLs, ``aarch64-macos`` Mach-O dylibs.
CMake needs a compiler without arguments, so each use gets a small wrapper script.
"""

from __future__ import annotations

import functools
import shutil
import stat
import sys
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from wheelmatrix.errors import EnvironmentProblem

if TYPE_CHECKING:
    from wheelmatrix.plan import BuildSpec

ZIG_FIX = "pip install 'wheelmatrix[build]' (it brings ziglang)"


@functools.cache
def zig() -> str:
    """The zig of this environment (the ``ziglang`` package), else zig on PATH."""
    try:
        import ziglang  # type: ignore[import-untyped,import-not-found,unused-ignore]  # noqa: PLC0415  (the build extra)
    except ImportError:
        found = shutil.which("zig")
        if found:
            return found
        raise EnvironmentProblem(
            "cross builds and the glibc floor need zig, and neither the ziglang package nor zig on PATH was found",
            fix=ZIG_FIX,
        ) from None
    return str(Path(ziglang.__file__).parent / "zig")


@functools.cache
def zig_version() -> str:
    """The ziglang package's version (part of every cell cache key that links with zig)."""
    try:
        return metadata.version("ziglang")
    except metadata.PackageNotFoundError:
        return "zig on PATH"


def wrapper(folder: Path, name: str, argv: list[str], *, after: tuple[str, ...] = ()) -> Path:
    """Write an executable script ``folder/name`` that runs ``argv``, its own arguments, then ``after``."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    if sys.platform == "win32":  # pragma: no cover - the cross builds run on Linux hosts
        path = path.with_suffix(".cmd")
        path.write_text("@" + " ".join(f'"{a}"' for a in argv) + " %*\r\n")
        return path

    def quote(items: list[str] | tuple[str, ...]) -> str:
        return " ".join("'" + a.replace("'", "'\\''") + "'" for a in items)

    path.write_text(f'#!/bin/sh\nexec {quote(argv)} "$@" {quote(after)}\n'.replace(" \n", "\n"))
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def cross_lines(spec: BuildSpec, tools: Path, system: str, processor: str) -> list[str]:
    """A CMake cross toolchain whose compilers are zig for ``spec.cross``."""
    assert spec.cross is not None
    z = zig()
    cc = wrapper(tools, "zig-cc", [z, "cc", "-target", spec.cross])
    cxx = wrapper(tools, "zig-c++", [z, "c++", "-target", spec.cross])
    ar = wrapper(tools, "zig-ar", [z, "ar"])
    ranlib = wrapper(tools, "zig-ranlib", [z, "ranlib"])
    return [
        f"# cross build for {spec.cross} with zig {zig_version()}",
        f"set(CMAKE_SYSTEM_NAME {system})",
        f"set(CMAKE_SYSTEM_PROCESSOR {processor})",
        f'set(CMAKE_C_COMPILER "{cc}")',
        f'set(CMAKE_CXX_COMPILER "{cxx}")',
        f'set(CMAKE_AR "{ar}" CACHE FILEPATH "")',
        f'set(CMAKE_RANLIB "{ranlib}" CACHE FILEPATH "")',
        "set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)",
        "set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)",
        "set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)",
        "set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)",
    ]
