"""What this build host is and has (probed on demand, never at import time)."""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from wheelmatrix import _proc, data
from wheelmatrix.errors import WheelmatrixError
from wheelmatrix.model import CudaSpec, Matrix
from wheelmatrix.plan import Host


def host_glibc() -> tuple[int, int] | None:
    """This host's glibc (2, 36), or None when it is not glibc."""
    lib, version = platform.libc_ver()
    if lib != "glibc":
        return None
    parts = version.split(".")
    return (int(parts[0]), int(parts[1])) if len(parts) >= 2 and parts[0].isdigit() and parts[1].isdigit() else None


def has_zig() -> bool:
    """zig from the ziglang package (or on PATH): cross builds and the glibc floor."""
    return importlib.util.find_spec("ziglang") is not None or shutil.which("zig") is not None


def host_platform() -> str:
    system, machine = platform.system(), platform.machine()
    for name, facts in data.platform_facts().items():
        if facts.host == (system, machine) or (system, machine.lower()) == (facts.host[0], facts.host[1].lower()):
            return name
    return f"{system.lower()}-{machine.lower()}"


def system_cuda_root(spec: CudaSpec) -> Path | None:
    """The CUDA root a ``system`` toolchain names, else $CUDA_HOME or $CUDA_PATH; None when unset."""
    if spec.toolchain.path is not None:
        return spec.toolchain.path
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    return Path(home) if home else None


@dataclass(frozen=True)
class Interpreter:
    path: Path
    version: str  # the full version, "3.12.1"


def find_python(version: str) -> Interpreter | None:
    """An interpreter of ``version`` ("3.12") on this host that runs: this one, PATH (not pyenv's
    shims, which fail for versions not selected), pyenv's versions, uv's managed Pythons."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        return Interpreter(Path(sys.executable), ".".join(map(str, sys.version_info[:3])))
    exe = f"python{version}"
    candidates: list[Path] = []
    on_path = shutil.which(exe)
    if on_path and "shims" not in Path(on_path).parts:
        candidates.append(Path(on_path))
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += sorted(pyenv.glob(f"{version}.*/bin/{exe}"), key=_patch_key, reverse=True)
    uv = Path(os.environ.get("UV_PYTHON_INSTALL_DIR", Path.home() / ".local/share/uv/python"))
    candidates += sorted(uv.glob(f"cpython-{version}.*/bin/{exe}"), key=_patch_key, reverse=True)
    probe = "import sys; print('.'.join(map(str, sys.version_info[:3])))"
    for c in candidates:
        if not os.access(c, os.X_OK):
            continue
        try:
            done = _proc.run([c, "-c", probe], check=False, timeout=60)
        except WheelmatrixError:
            continue
        full = done.output.strip()
        if done.returncode == 0 and full.rsplit(".", 1)[0] == version:
            return Interpreter(c, full)
    return None


def _patch_key(path: Path) -> tuple[int, ...]:
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", str(path))
    return tuple(int(x) for x in m.groups()) if m else (0,)


def find_free_threaded(version: str) -> str | None:
    """A free-threaded CPython ``version`` ("3.13": python3.13t) on PATH or in pyenv, or None."""
    exe = f"python{version}t"
    candidates = [shutil.which(exe) or ""]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += [str(p) for p in sorted(pyenv.glob(f"{version}.*t/bin/{exe}"), reverse=True)]
    for c in candidates:
        if c and "shims" not in Path(c).parts and os.access(c, os.X_OK):
            return c
    return None


def find_pythons(matrix: Matrix) -> tuple[tuple[str, str], ...]:
    """The CPythons of ``matrix.python`` (and its free-threaded ones) this host has, for per-Python
    builds: (version, interpreter). Nothing is probed for a py3-none project."""
    if matrix.project.python.api == "none":
        return ()
    found: list[tuple[str, str]] = []
    for version in matrix.python:
        interpreter = find_python(version)
        if interpreter is not None:
            found.append((version, str(interpreter.path)))
        if version in matrix.project.python.free_threaded:
            free = find_free_threaded(version)
            if free is not None:
                found.append((version + "t", free))
    return tuple(found)


def detect(matrix: Matrix) -> Host:
    found: list[tuple[str, str]] = []
    for spec in matrix.cuda:
        if spec.toolchain.source == "system":
            root = system_cuda_root(spec)
            if root is not None and (root / "bin" / "nvcc").exists():
                found.append((str(spec.version), str(root)))
    return Host(
        platform=host_platform(),
        has_c_compiler=any(shutil.which(c) for c in ("c++", "g++", "clang++")),
        has_zig=has_zig(),
        system_cuda=tuple(found),
        glibc=host_glibc(),
        pythons=find_pythons(matrix),
    )
