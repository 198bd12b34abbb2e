"""Types shared by every toolchain source: the result the build stage consumes, locked files,
and the :class:`Source` protocol a new source implements."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from wheelmatrix.model import CudaSpec, CudaVersion, SourceKind

# Bump when the layout of an installed toolchain changes: it is part of every cache key.
LAYOUT_VERSION = 1


@dataclass(frozen=True)
class InstalledToolchain:
    """A provided, verified CUDA toolchain: what the build stage needs to use it."""

    version: CudaVersion
    source: SourceKind
    root: Path  # the CUDA root (bin/nvcc, include/, lib64/ or lib/)
    nvcc: Path
    host_cxx: Path | None  # a private host compiler (g++-11 for 11.8), None = the system's
    nvcc_version: str  # full version nvcc reports, e.g. "13.0.88"
    identity: str  # sha256 over source, version, components, and the exact bytes it was made from
    size: int  # bytes on disk
    verified: bool
    env_items: tuple[tuple[str, str], ...] = ()
    components: tuple[str, ...] = ()  # CUDA components (cublas, ...) it provides, verified by linking

    @property
    def env(self) -> dict[str, str]:
        """Environment overrides for builds with this toolchain."""
        return dict(self.env_items)

    @property
    def cmake_args(self) -> tuple[str, ...]:
        args = [f"-DCMAKE_CUDA_COMPILER={self.nvcc}", f"-DCUDAToolkit_ROOT={self.root}"]
        if self.host_cxx is not None:
            args.append(f"-DCMAKE_CUDA_HOST_COMPILER={self.host_cxx}")
        return tuple(args)

    def to_json(self) -> dict[str, object]:
        return {
            "version": str(self.version),
            "source": self.source,
            "root": str(self.root),
            "nvcc": str(self.nvcc),
            "host_cxx": str(self.host_cxx) if self.host_cxx else None,
            "nvcc_version": self.nvcc_version,
            "identity": self.identity,
            "size": self.size,
            "verified": self.verified,
            "components": list(self.components),
            "cmake_args": list(self.cmake_args),
            "env": self.env,
        }


@dataclass(frozen=True)
class LockedFile:
    """One file a toolchain is made from, pinned by hash (a wheel or a .deb)."""

    name: str  # package name
    version: str  # package version
    filename: str
    url: str  # absolute, or relative to the Debian mirror ("pool/...")
    sha256: str
    size: int
    role: str = "cuda"  # "cuda", "component" (a CUDA component's), or "host-gcc" (a private host compiler)

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "version": self.version,
            "filename": self.filename,
            "url": self.url,
            "sha256": self.sha256,
            "size": self.size,
            "role": self.role,
        }


@dataclass(frozen=True)
class LockEntry:
    """The pinned inputs of one toolchain (one ``[[toolchain]]`` table of toolchains.lock)."""

    cuda: CudaVersion
    source: SourceKind
    origin: str  # where it was resolved from, e.g. "debian:bookworm" or "pypi"
    files: tuple[LockedFile, ...]
    indexes: tuple[str, ...] = ()  # the verified indexes it was resolved through (informational)

    @property
    def download_size(self) -> int:
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class Assembled:
    """What a source built in a staging folder (paths relative to that folder)."""

    root: str  # CUDA root
    nvcc: str  # relative to the CUDA root
    host_cxx: str | None = None  # relative to the staging folder
    env: Mapping[str, str] = field(default_factory=dict)  # values may use "{entry}" for the folder


def identity_of(entry: LockEntry, recipe: Mapping[str, object]) -> str:
    """The cache key's content hash: the exact input bytes plus how they are laid out."""
    payload = {
        "layout": LAYOUT_VERSION,
        "source": entry.source,
        "cuda": str(entry.cuda),
        "files": sorted((f.role, f.filename, f.sha256) for f in entry.files),
        "recipe": recipe,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class Source(Protocol):
    """A place CUDA toolchains come from. A new source is one module implementing this."""

    kind: SourceKind

    def unavailable(self, spec: CudaSpec) -> str | None:
        """Why this source cannot provide ``spec`` (checked without network), or None."""
        ...

    def recipe(self, spec: CudaSpec) -> Mapping[str, object]:
        """The data that shapes an install besides the files (hashed into the cache key)."""
        ...

    def package_names(self, spec: CudaSpec) -> frozenset[str]:
        """The packages a lock entry for ``spec`` must pin (a stale lock is refused)."""
        ...

    def resolve(self, spec: CudaSpec) -> LockEntry:
        """Find the exact files (with hashes) for ``spec``, from the network. Used by ``lock``."""
        ...

    def assemble(self, spec: CudaSpec, files: Sequence[tuple[LockedFile, Path]], staging: Path) -> Assembled:
        """Build the toolchain from verified local ``files`` inside the empty folder ``staging``."""
        ...
