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
    shims, which fail for versions not selected), pyenv's versions, uv's managed Pythons. On Windows
    (no ``python3.X`` there): the ``py`` launcher, actions/setup-python's tool cache, PATH, uv's
    (:func:`_find_on_windows`)."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        return Interpreter(Path(sys.executable), ".".join(map(str, sys.version_info[:3])))
    if on_windows():
        return _find_on_windows(version, free_threaded=False)
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


def on_windows() -> bool:
    """Whether this host is Windows, as :func:`host_platform` reads it (``platform.system()``)."""
    return platform.system() == "Windows"


# What a Windows candidate prints: its own path, its full version, whether it is free-threaded.
_WINDOWS_PROBE = (
    "import sys, sysconfig; print(sys.executable); print('.'.join(map(str, sys.version_info[:3]))); "
    "print(int(bool(sysconfig.get_config_var('Py_GIL_DISABLED'))))"
)
# setup-python's tool-cache folder of an architecture (<tool cache>/Python/3.12.10/x64/python.exe)
_TOOL_CACHE_ARCH = {"amd64": "x64", "x86_64": "x64", "arm64": "arm64", "aarch64": "arm64", "x86": "x86"}


def _find_on_windows(version: str, *, free_threaded: bool) -> Interpreter | None:
    """CPython ``version`` ("3.12"; free-threaded: "3.13t") the way Windows provides it, first that runs:

    1. the Python launcher, ``py -3.12`` / ``py -3.13t``: it runs what python.org's installer
       registered (PEP 514), and setup-python's Windows CPythons are installed by that installer
       (actions/python-versions' win-setup-template.ps1, ``InstallAllUsers=1``);
    2. actions/setup-python's tool cache, ``$RUNNER_TOOL_CACHE/Python/3.12.*/x64/python.exe``
       (``x64-freethreaded/python3.13t.exe`` or ``python.exe``), newest patch first;
    3. ``python3.12.exe`` / ``python3.13t.exe`` on PATH;
    4. uv's managed Pythons (``$UV_PYTHON_INSTALL_DIR``, else ``%APPDATA%/uv/python``).

    Each candidate is run and must report that version (and, for "t", a free-threaded build).
    """
    want = version + ("t" if free_threaded else "")
    argvs: list[list[str]] = []
    launcher = shutil.which("py")
    if launcher:
        argvs.append([launcher, f"-{want}"])
    arch = _TOOL_CACHE_ARCH.get(platform.machine().lower(), "x64") + ("-freethreaded" if free_threaded else "")
    exes = [f"python{want}.exe", "python.exe"] if free_threaded else ["python.exe"]  # the probe tells them apart
    caches = [os.environ.get("RUNNER_TOOL_CACHE"), os.environ.get("AGENT_TOOLSDIRECTORY")]
    for cache in dict.fromkeys(c for c in caches if c):
        dirs = sorted(Path(cache).glob(f"Python/{version}.*/{arch}"), key=_patch_key, reverse=True)
        argvs += [[str(d / exe)] for d in dirs for exe in exes if (d / exe).is_file()]
    on_path = shutil.which(f"python{want}")
    if on_path:
        argvs.append([on_path])
    appdata = os.environ.get("APPDATA")
    uv = os.environ.get("UV_PYTHON_INSTALL_DIR") or (str(Path(appdata) / "uv" / "python") if appdata else None)
    if uv:  # cpython-3.12.10-windows-x86_64-none, cpython-3.13.3+freethreaded-windows-x86_64-none
        dirs = sorted(Path(uv).glob(f"cpython-{version}.*-windows-*"), key=_patch_key, reverse=True)
        dirs = [d for d in dirs if ("+freethreaded" in d.name) == free_threaded]
        argvs += [[str(d / exe)] for d in dirs for exe in exes if (d / exe).is_file()]
    for argv in argvs:
        try:
            done = _proc.run([*argv, "-c", _WINDOWS_PROBE], check=False, timeout=60)
        except WheelmatrixError:
            continue
        lines = done.output.strip().splitlines()
        if done.returncode != 0 or len(lines) < 3:
            continue
        path, full, gil_free = lines[-3].strip(), lines[-2].strip(), lines[-1].strip()
        if full.rsplit(".", 1)[0] == version and (gil_free == "1") == free_threaded:
            return Interpreter(Path(path), full)
    return None


def _patch_key(path: Path) -> tuple[int, ...]:
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", str(path))
    return tuple(int(x) for x in m.groups()) if m else (0,)


def find_free_threaded(version: str) -> str | None:
    """A free-threaded CPython ``version`` ("3.13": python3.13t) on PATH or in pyenv (on Windows:
    ``py -3.13t``, setup-python's tool cache, PATH, uv's), or None."""
    if on_windows():
        found = _find_on_windows(version, free_threaded=True)
        return None if found is None else str(found.path)
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
