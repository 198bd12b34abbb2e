"""CUDA components (cuBLAS, cuFFT, ...) in a toolchain: what a tree must hold for each, the
fix-ups that make CMake's ``CUDA::<lib>`` targets work, and the probe verification links.

The components come from the matrix (``CudaSpec.components``, data/cuda.toml [components]); what
a toolchain needs for each is data (data/toolchains.toml [components]). Every source uses these
helpers, so a component is checked and verified the same way whatever provides it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wheelmatrix.errors import ToolchainError
from wheelmatrix.model import Component, CudaSpec
from wheelmatrix.toolchains import data

# Where a CUDA root keeps headers and libraries (NVIDIA's installer links include/ and lib64/ to
# targets/x86_64-linux/; the pypi trees use lib/, the Debian trees lib64/).
INCLUDE_DIRS = ("include", "targets/x86_64-linux/include")
LIB_DIRS = ("lib64", "lib", "targets/x86_64-linux/lib")


@dataclass(frozen=True)
class ComponentFacts:
    """What a toolchain needs for one component."""

    name: str
    libraries: tuple[str, ...]  # link names of the component itself (must be in the tree)
    header: str  # must be in include/
    needs: tuple[str, ...]  # the component's libraries and those they load, where present
    probe: str  # C++ defining wm_probe_component()

    @property
    def link_flags(self) -> tuple[str, ...]:
        return tuple(f"-l{lib}" for lib in self.libraries)


def facts(component: Component) -> ComponentFacts:
    table: dict[str, Any] = data.table().get("components", {})
    raw = table.get(component.name)
    if raw is None:
        raise ToolchainError(
            f"wheelmatrix has no toolchain data for the CUDA component {component.name!r}",
            fix="add [components." + component.name + "] (header, needs, probe) to wheelmatrix/data/toolchains.toml",
        )
    return ComponentFacts(
        name=component.name,
        libraries=component.libraries,
        header=str(raw["header"]),
        needs=tuple(dict.fromkeys([*component.libraries, *raw["needs"]])),
        probe=str(raw["probe"]),
    )


def of(spec: CudaSpec) -> tuple[ComponentFacts, ...]:
    return tuple(facts(c) for c in spec.components)


def recipe(spec: CudaSpec) -> dict[str, object]:
    """The component part of a source's recipe (hashed into the cache key); {} without components."""
    return {
        f.name: {"libraries": list(f.libraries), "header": f.header, "needs": list(f.needs), "probe": f.probe}
        for f in of(spec)
    }


def needed_libraries(spec: CudaSpec) -> tuple[str, ...]:
    """Every library name the requested components need, in order, once."""
    return tuple(dict.fromkeys(name for f in of(spec) for name in f.needs))


def find_header(root: Path, header: str) -> Path | None:
    return next((root / d / header for d in INCLUDE_DIRS if (root / d / header).is_file()), None)


def find_library(root: Path, name: str) -> Path | None:
    """``lib<name>.so`` (what ``-l<name>`` and CMake's find_library look for) in a lib dir of ``root``."""
    return next((root / d / f"lib{name}.so" for d in LIB_DIRS if (root / d / f"lib{name}.so").is_file()), None)


def missing(spec: CudaSpec, root: Path) -> list[tuple[str, str]]:
    """(component, file) for each header or library a requested component lacks in ``root``
    (named as in its first folder: include/, lib64/; the others in INCLUDE_DIRS, LIB_DIRS count too)."""
    out: list[tuple[str, str]] = []
    for f in of(spec):
        if find_header(root, f.header) is None:
            out.append((f.name, f"{INCLUDE_DIRS[0]}/{f.header}"))
        for lib in f.libraries:
            if find_library(root, lib) is None:
                out.append((f.name, f"{LIB_DIRS[0]}/lib{lib}.so"))
    return out


def check_assembled(spec: CudaSpec, root: Path, what: str) -> None:
    """After a source built a tree: every requested component's header and libraries are there."""
    gaps = missing(spec, root)
    if gaps:
        listed = "; ".join(f"{name}: {path}" for name, path in gaps)
        raise ToolchainError(
            f"{what} provided no {listed} (CUDA {spec.version} with components {', '.join(spec.component_names)})",
            fix="the component's packages in wheelmatrix/data/toolchains.toml do not hold these files for this "
            "CUDA version: correct them, or drop the component from matrix.toml",
        )


def link_unversioned(lib: Path, names: Iterable[str]) -> list[str]:
    """Add ``lib<name>.so -> lib<name>.so.<N>`` where a wheel ships only the versioned file."""
    added = []
    for name in names:
        link = lib / f"lib{name}.so"
        if link.exists() or link.is_symlink():
            continue
        versioned = sorted((p.name for p in lib.glob(f"lib{name}.so.*")), key=lambda n: (len(n), n))
        if versioned:
            link.symlink_to(versioned[0])  # the shortest: libcublas.so.13 over libcublas.so.13.1.1
            added.append(link.name)
    return added


def drop_dangling(lib: Path, names: Iterable[str]) -> None:
    """Remove ``lib<name>.so*`` links whose target is absent (a -dev package's link to a runtime
    package that was not fetched: libnvJitLink.so when nothing needed libnvjitlink)."""
    for name in names:
        for p in lib.glob(f"lib{name}.so*"):
            if p.is_symlink() and not p.exists():
                p.unlink()


def system_key(spec: CudaSpec, root: Path) -> list[object]:
    """The component part of a system toolchain's identity: each library file as it is now."""
    out: list[object] = []
    for f in of(spec):
        for lib in f.libraries:
            path = find_library(root, lib)
            if path is None:
                out.append([f.name, lib, None])
                continue
            st = path.stat()
            out.append([f.name, lib, os.path.realpath(path), st.st_size, st.st_mtime_ns])
    return out


def names_of(record: Mapping[str, object]) -> list[str]:
    """The components a verification record (or entry metadata) covers; none in older records."""
    value = record.get("components", [])
    return [str(v) for v in value] if isinstance(value, list) else []
