"""macOS cells: cross-built on Linux with ``zig cc -target aarch64-macos.<minimum macOS>`` (the
minimum macOS of the policy, recorded in the dylib's LC_BUILD_VERSION), natively on a macOS runner.

delocate, the repair tool of macOS wheels, runs on macOS only. On Linux the wheel is checked
instead from its Mach-O load commands (:mod:`wheelmatrix.binaries`): the architecture, the
minimum macOS against the wheel tag, and no library loaded from outside the system or the wheel;
those are what delocate would have to fix. CI's macOS runner runs delocate itself.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from wheelmatrix.binaries import BinaryError, inspect_binary
from wheelmatrix.errors import PackageError
from wheelmatrix.model import PlatformSpec
from wheelmatrix.plan import BuildSpec
from wheelmatrix.platforms import zig
from wheelmatrix.stages.repair import Repaired
from wheelmatrix.wheelfile import read_wheel

_POLICY = re.compile(r"^macosx_(\d+)_(\d+)_(\w+)$")
_SYSTEM = ("/usr/lib/", "/System/Library/")


def _minimum(policy: str) -> tuple[int, int]:
    m = _POLICY.match(policy)
    return (int(m.group(1)), int(m.group(2))) if m else (11, 0)


def check_macos_wheel(wheel: Path, spec: PlatformSpec) -> list[str]:
    """What is wrong with a macOS wheel's Mach-O files, read from their load commands."""
    want = _minimum(spec.policy)
    problems: list[str] = []
    contents = read_wheel(wheel)
    for name, data in sorted(contents.files.items()):
        if not name.endswith((".dylib", ".so")):
            continue
        try:
            info = inspect_binary(data, name=name)
        except BinaryError as exc:
            problems.append(f"{name}: {exc.message}")
            continue
        if info.format != "macho":
            problems.append(f"{name} is {info.format}, not a Mach-O file")
            continue
        if info.machine != spec.wheel_arch:
            problems.append(f"{name} is built for {info.machine}, the wheel is for {spec.wheel_arch}")
        if info.min_os is None:
            problems.append(f"{name} declares no minimum macOS (LC_BUILD_VERSION)")
        else:
            major, _, minor = info.min_os.partition(".")
            if (int(major), int(minor or 0)) > want:
                problems.append(f"{name} needs macOS {info.min_os}, newer than the tag's {want[0]}.{want[1]}")
        outside = [
            n for n in info.needed if not n.startswith(_SYSTEM) and not n.startswith(("@loader_path/", "@rpath/"))
        ]
        if outside:
            problems.append(f"{name} loads {', '.join(outside)} from outside the system and the wheel")
    return problems


class MacOS:
    os = "macos"

    def toolchain_file(self, spec: BuildSpec, tools: Path) -> list[str]:
        if spec.cross is None:
            return ["# a native macOS build: the host's compilers"]
        major, minor = _minimum(spec.platform.policy)
        return [
            *zig.cross_lines(spec, tools, "Darwin", "arm64"),
            f'set(CMAKE_OSX_DEPLOYMENT_TARGET "{major}.{minor}" CACHE STRING "")',
            'set(CMAKE_OSX_SYSROOT "" CACHE PATH "")  # zig brings the SDK stubs: no xcrun here',
            "# the library's own name is @rpath/<file>, never its build folder (a build path in the wheel)",
            'set(CMAKE_INSTALL_NAME_DIR "@rpath")',
            "set(CMAKE_BUILD_WITH_INSTALL_NAME_DIR ON)",
            "# stripped: the debug map would name this machine's object files (build paths in the wheel)",
            'set(CMAKE_SHARED_LINKER_FLAGS_INIT "-s")',
            'set(CMAKE_MODULE_LINKER_FLAGS_INIT "-s")',
        ]

    def env(self, spec: BuildSpec) -> dict[str, str]:
        if spec.cross is None:
            return {}
        major, minor = _minimum(spec.platform.policy)
        return {"_PYTHON_HOST_PLATFORM": f"macosx-{major}.{minor}-{spec.platform.wheel_arch}",
                "MACOSX_DEPLOYMENT_TARGET": f"{major}.{minor}"}  # fmt: skip

    def identity(self, spec: BuildSpec) -> str:
        return f"zig {zig.zig_version()} for {spec.cross}" if spec.cross is not None else "native clang"

    def repair(
        self, wheel: Path, spec: PlatformSpec, out_dir: Path, *, exclude: Sequence[str], timeout: float
    ) -> Repaired:
        """On a Linux host: check the Mach-O load commands instead of delocate (macOS only)."""
        problems = check_macos_wheel(wheel, spec)
        if problems:
            raise PackageError(
                f"{wheel.name} cannot be published as {spec.wheel_tag}: " + "; ".join(problems),
                fix="build against the policy's minimum macOS with nothing but system libraries, or repair it "
                f"with delocate on a {spec.runner} runner",
            )
        target = out_dir / wheel.name
        if target != wheel:
            shutil.copyfile(wheel, target)
        return Repaired(target, "none", spec.wheel_tag, (), tuple(exclude))

    def rpath_entry(self, relative: str) -> str | None:
        return "@loader_path/" + relative
