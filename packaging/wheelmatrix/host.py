"""What this build host is and has (probed on demand, never at import time)."""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
from pathlib import Path

from wheelmatrix import data
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
    )
