"""Make real cell wheels (real compiled libraries, manifests, RECORD) and a matching Matrix."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
from pathlib import Path

from wheelmatrix.config import platform_spec
from wheelmatrix.model import Matrix, Packaging, Project, SplitStrategy
from wheelmatrix.stages.assemble import CellWheel
from wheelmatrix.wheelfile import WheelContents, write_wheel

HERE = Path(__file__).parent
VERSION = "0.1.0"

LINUX = platform_spec("linux-x86_64", policy="manylinux_2_28")
WINDOWS = platform_spec("windows-x86_64")


def make_matrix(
    tmp: Path, *, limit: int = 100 * 2**20, split: SplitStrategy = "auto", policy: str = "manylinux_2_28"
) -> Matrix:
    from dataclasses import replace

    return Matrix(
        path=tmp / "matrix.toml",
        project=Project(name="kbit", import_package="kbit", library="kbit_{variant}", library_dir="_lib", source=tmp),
        platforms=(replace(LINUX, policy=policy), WINDOWS),
        cuda=(),
        python=("3.11",),
        rules=(),
        packaging=Packaging(
            max_file_size=limit,
            project_quota=10 * 2**30,
            split=split,
            split_name="{name}-cu{major}",
            extra_name="cu{major}",
        ),
        publish=(),
    )


def compile_library(
    out: Path, variant: str, *, windows: bool = False, pad: int = 0, threads: bool = False, seed: int = 0
) -> Path:
    """Compile fakelib.c into ``out/libkbit_<variant>.(so|dll)`` with gcc, or zig for Windows (the
    toolkit's own cross compiler, from PyPI)."""
    out.mkdir(parents=True, exist_ok=True)
    lib = out / f"libkbit_{variant}.{'dll' if windows else 'so'}"
    cuda = variant[4:] if variant.startswith("cuda") else ""
    cc = [sys.executable, "-m", "ziglang", "cc", "-target", "x86_64-windows-gnu"] if windows else ["gcc"]
    args = [*cc, "-shared", "-O2", "-o", lib.name, str(HERE / "fakelib.c")]  # relative: a PE link embeds the path
    if windows:
        args += ["-s"]  # no PDB: its GUID, recorded in the DLL, differs on every link
    else:
        args += ["-fPIC", "-Wl,--build-id=none"]
    if cuda:
        api = int(cuda[:-1]) * 1000 + int(cuda[-1]) * 10
        args += ['-DKBIT_BACKEND="cuda"', f"-DKBIT_CUDA={api}", '-DKBIT_SASS="75;80"']
    if threads:
        args += ["-DWITH_THREADS", "-pthread"]
    if pad:
        blob = out / f"pad_{variant}.bin"
        blob.write_bytes(random.Random(f"{variant}-{seed}").randbytes(pad))  # incompressible
        asm = out / f"pad_{variant}.S"
        sym = "kbit_pad"
        asm.write_text(f'.section .rodata\n.globl {sym}\n.globl {sym}_end\n{sym}:\n.incbin "{blob}"\n{sym}_end:\n')
        args += ["-DKBIT_PAD", str(asm)]
    subprocess.run(args, check=True, cwd=out)
    return lib


def manifest(variant: str, library: str) -> dict[str, object]:
    if variant == "cpu":
        return {
            "schema": 1,
            "library": library,
            "backend": "cpu",
            "cuda": None,
            "sass": [],
            "ptx": [],
            "version": VERSION,
            "runtime": None,
            "flags": {},
        }
    cuda = variant[4:]
    return {
        "schema": 1,
        "library": library,
        "backend": "cuda",
        "cuda": f"{cuda[:-1]}.{cuda[-1]}",
        "sass": [75, 80],
        "ptx": [80],
        "version": VERSION,
        "runtime": "static",
        "flags": {},
    }


def make_cell_wheel(
    tmp: Path, variant: str, *, windows: bool = False, pad: int = 0, threads: bool = False
) -> CellWheel:
    """A cell wheel as the project's build backend would write it (loader + one library)."""
    lib = compile_library(tmp / "objs", variant, windows=windows, pad=pad, threads=threads)
    plat = "win_amd64" if windows else "linux_x86_64"
    contents = WheelContents(f"kbit-{VERSION}-py3-none-{plat}.whl", {}, {})
    for src in sorted((HERE / "fakekbit" / "kbit").glob("*.py")):
        contents.put(f"kbit/{src.name}", src.read_bytes())
    contents.put(f"kbit/_lib/{lib.name}", lib.read_bytes())
    contents.put(f"kbit/_lib/libkbit_{variant}.json", json.dumps(manifest(variant, lib.name), indent=1).encode())
    info = f"kbit-{VERSION}.dist-info"
    contents.put(
        f"{info}/METADATA",
        f"Metadata-Version: 2.1\nName: kbit\nVersion: {VERSION}\nSummary: test\nRequires-Python: >=3.9\n\nkbit test build\n".encode(),
    )
    contents.put(
        f"{info}/WHEEL", f"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: false\nTag: py3-none-{plat}\n".encode()
    )
    contents.put(f"{info}/RECORD", b"")
    platform = "windows-x86_64" if windows else "linux-x86_64"
    out = write_wheel(contents, tmp / "cells" / f"{platform}-{variant}")
    return CellWheel(f"{platform}-{variant}", platform, variant, out)


def isolated_env() -> dict[str, str]:
    """The environment for an installed venv's interpreter: nothing pointing at the source tree
    (tests/kbit's conftest puts src/ on PYTHONPATH for the whole session) and no kbit overrides."""
    import os

    return {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME"} and not k.startswith("KBIT_")}


def fresh_venv(path: Path) -> Path:
    """A fresh venv (no site packages); returns its python."""
    subprocess.run([shutil.which("python3") or "python3", "-m", "venv", str(path)], check=True)
    return path / "bin" / "python"


def pip_install(python: Path, *wheels: Path) -> None:
    env = {
        "PIP_CONFIG_FILE": "/dev/null",
        "PIP_NO_INDEX": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "PATH": "/usr/bin:/bin",
    }
    subprocess.run([str(python), "-m", "pip", "install", "-q", *map(str, wheels)], check=True, env=env)
