"""Linux cells: the host compilers, and the final link through zig when the policy's glibc is
older than the host's (``zig cc -target <arch>-linux-gnu.<glibc>``: the library then binds only
symbols that glibc had). Wheels are repaired by auditwheel and gated on the policy."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

from wheelmatrix import _proc
from wheelmatrix.errors import WheelmatrixError
from wheelmatrix.model import PlatformSpec
from wheelmatrix.plan import BuildSpec
from wheelmatrix.platforms import zig
from wheelmatrix.stages.repair import Repaired, repair_linux

_ZIG_ARCH = {"x86_64": "x86_64", "aarch64": "aarch64"}


@functools.cache
def _compiler_line(program: str) -> str:
    try:
        out = _proc.run([program, "--version"], timeout=60).output
    except WheelmatrixError:
        return f"{program}: not found"
    return out.splitlines()[0] if out else program


@functools.cache
def _static_runtime() -> tuple[str, ...]:
    """The host C++ compiler's static C++ runtime (libstdc++.a, libgcc_eh.a): a library linked
    with zig takes what it uses of them inside, so it needs no libstdc++ newer than the floor."""
    found: list[str] = []
    for name in ("libstdc++.a", "libgcc_eh.a"):
        try:
            out = _proc.run(["c++", f"-print-file-name={name}"], timeout=60, check=False).output.strip()
        except WheelmatrixError:
            continue
        if out and out != name and Path(out).is_file():
            found.append(str(Path(out).resolve()))
    return tuple(found)


def link_rules(linker: Path) -> list[str]:
    """CMake rule variables that make every shared library link go through ``linker``."""
    lines = []
    for lang in ("C", "CXX", "CUDA"):
        flags = f"<CMAKE_SHARED_LIBRARY_{lang}_FLAGS> <LINK_FLAGS> <CMAKE_SHARED_LIBRARY_CREATE_{lang}_FLAGS>"
        lines += [
            f'set(CMAKE_{lang}_CREATE_SHARED_LIBRARY "{linker} {flags} <SONAME_FLAG><TARGET_SONAME> '
            '-o <TARGET> <OBJECTS> <LINK_LIBRARIES>")',
            f'set(CMAKE_{lang}_CREATE_SHARED_MODULE "{linker} {flags} -o <TARGET> <OBJECTS> <LINK_LIBRARIES>")',
        ]
    return lines


class Linux:
    os = "linux"

    def toolchain_file(self, spec: BuildSpec, tools: Path) -> list[str]:
        if spec.cross is not None:  # another architecture: zig compiles and links, for the policy's glibc
            return zig.cross_lines(spec, tools, "Linux", _ZIG_ARCH[spec.platform.wheel_arch])
        if spec.link_glibc is None:
            return ["# the host's compilers and linker: the host glibc is not newer than the policy's"]
        arch = _ZIG_ARCH[spec.platform.wheel_arch]
        target = f"{arch}-linux-gnu.{spec.link_glibc[0]}.{spec.link_glibc[1]}"
        linker = zig.wrapper(tools, "zig-link", [zig.zig(), "cc", "-target", target], after=_static_runtime())
        return [
            f"# {spec.platform.policy}: every shared library is linked by `zig cc -target {target}`, so it",
            "# binds only symbols that glibc has; the C++ runtime it uses goes inside (static)",
            *link_rules(linker),
        ]

    def env(self, spec: BuildSpec) -> dict[str, str]:
        if spec.cross is not None:
            return {"_PYTHON_HOST_PLATFORM": f"linux-{spec.platform.wheel_arch}"}  # the wheel tag of a cross build
        return {}

    def identity(self, spec: BuildSpec) -> str:
        if spec.cross is not None:
            return f"zig {zig.zig_version()} for {spec.cross}"
        line = _compiler_line("c++")
        if spec.link_glibc is not None:
            line += f"; linked by zig {zig.zig_version()} for glibc {spec.link_glibc[0]}.{spec.link_glibc[1]}"
        return line

    def repair(
        self, wheel: Path, spec: PlatformSpec, out_dir: Path, *, exclude: Sequence[str], timeout: float
    ) -> Repaired:
        return repair_linux(wheel, spec, out_dir, exclude=exclude, timeout=timeout)

    def rpath_entry(self, relative: str) -> str | None:
        return "$ORIGIN/" + relative
