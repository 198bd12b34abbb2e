"""Library manifests: what a native kbit library is, read from the JSON file next to it.

A library ``libkbit_cuda124.so`` comes with ``libkbit_cuda124.json``::

    {"schema": 1, "library": "libkbit_cuda124.so", "backend": "cuda", "cuda": "12.4",
     "sass": [50, 60, 70, 75, 80, 86, 89, 90], "ptx": [90], "version": "0.1.0",
     "runtime": "static", "flags": {...}}

Reading a manifest never loads the library. Everything here is plain data and pure functions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

MANIFEST_SCHEMA = 1
_MANIFEST_GLOB = "libkbit_*.json"
_LIBRARY_SUFFIXES = (".so", ".dll", ".dylib")


class CudaVersion(NamedTuple):
    """A CUDA version as ``major.minor``; ordered like versions."""

    major: int
    minor: int

    @property
    def api(self) -> int:
        """The ``CUDA_VERSION`` / ``cuDriverGetVersion`` encoding: 12040 for 12.4."""
        return self.major * 1000 + self.minor * 10

    @property
    def tag(self) -> str:
        """The tag in library names and in ``KBIT_CUDA_VERSION``: ``124`` for 12.4."""
        return f"{self.major}{self.minor}"

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    @classmethod
    def from_api(cls, value: int) -> CudaVersion:
        """12040 -> 12.4 (the encoding of ``cuDriverGetVersion`` and ``CUDART_VERSION``)."""
        return cls(value // 1000, (value % 1000) // 10)

    @classmethod
    def parse(cls, text: str) -> CudaVersion:
        """``"12.4"`` -> 12.4; raises ValueError on anything else."""
        m = re.fullmatch(r"(\d{1,3})\.(\d{1,2})", text)
        if m is None:
            raise ValueError(f"{text!r} is not a CUDA version like '12.4'")
        return cls(int(m.group(1)), int(m.group(2)))


def arch_name(arch: int, *, ptx: bool = False) -> str:
    return f"compute_{arch}" if ptx else f"sm_{arch}"


@dataclass(frozen=True)
class LibraryInfo:
    """One installed native library, as its manifest describes it."""

    path: Path  # the library file
    manifest: Path  # the JSON file next to it
    backend: str  # "cpu" or "cuda"
    cuda: CudaVersion | None  # None for cpu
    sass: tuple[int, ...]
    ptx: tuple[int, ...]
    version: str
    runtime: str | None  # "static", "shared" or None
    source: str  # where it was found: "kbit", "KBIT_LIBRARY_DIR", "kbit_cu12 (kbit-cu12 0.1.0)"
    flags: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def label(self) -> str:
        """``CUDA 12.4`` or ``CPU``."""
        return "CPU" if self.cuda is None else f"CUDA {self.cuda}"

    def describe(self) -> str:
        """One line: file, CUDA version and archs, source."""
        if self.cuda is None:
            return f"{self.name} (CPU, from {self.source})"
        sass = " ".join(map(str, self.sass)) or "none"
        ptx = " ".join(map(str, self.ptx)) or "none"
        return f"{self.name} (CUDA {self.cuda}, SASS {sass}, PTX {ptx}, from {self.source})"


@dataclass(frozen=True)
class Problem:
    """Something found in a library folder that cannot be used, and why."""

    path: Path
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


class ManifestError(Exception):
    """A manifest is malformed (internal: turned into a :class:`Problem` by :func:`scan_dir`)."""


def _arch_list(data: Mapping[str, Any], key: str) -> tuple[int, ...]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(
        isinstance(a, int) and not isinstance(a, bool) and 10 <= a <= 999 for a in value
    ):
        raise ManifestError(f"'{key}' must be a list of compute capabilities like [80, 90]")
    return tuple(sorted(set(value)))


def parse_manifest(data: object, manifest: Path, source: str) -> LibraryInfo:
    """Validate one decoded manifest; raises :class:`ManifestError` naming the bad key."""
    if not isinstance(data, dict):
        raise ManifestError("not a JSON object")
    schema = data.get("schema")
    if schema != MANIFEST_SCHEMA:
        raise ManifestError(f"schema {schema!r} is not supported (this kbit reads schema 1)")
    library = data.get("library")
    if not isinstance(library, str) or not library or "/" in library or "\\" in library:
        raise ManifestError("'library' must be the library's file name")
    backend = data.get("backend")
    if backend not in ("cpu", "cuda"):
        raise ManifestError(f"'backend' is {backend!r}, expected 'cpu' or 'cuda'")
    cuda_text = data.get("cuda")
    cuda: CudaVersion | None = None
    if backend == "cuda":
        if not isinstance(cuda_text, str):
            raise ManifestError("'cuda' must be the CUDA version like '12.4' for a cuda library")
        try:
            cuda = CudaVersion.parse(cuda_text)
        except ValueError as exc:
            raise ManifestError(f"'cuda': {exc}") from None
    elif cuda_text is not None:
        raise ManifestError("'cuda' must be null for a cpu library")
    sass = _arch_list(data, "sass")
    ptx = _arch_list(data, "ptx")
    if backend == "cuda" and not sass and not ptx:
        raise ManifestError("a cuda library needs at least one arch in 'sass' or 'ptx'")
    version = data.get("version")
    if not isinstance(version, str):
        raise ManifestError("'version' must be a string")
    runtime = data.get("runtime")
    if runtime not in (None, "static", "shared"):
        raise ManifestError(f"'runtime' is {runtime!r}, expected 'static', 'shared' or null")
    flags = data.get("flags", {})
    if not isinstance(flags, dict):
        raise ManifestError("'flags' must be an object")
    return LibraryInfo(
        path=manifest.parent / library,
        manifest=manifest,
        backend=backend,
        cuda=cuda,
        sass=sass,
        ptx=ptx,
        version=version,
        runtime=runtime,
        source=source,
        flags=flags,
    )


def scan_dir(directory: Path, source: str) -> tuple[list[LibraryInfo], list[Problem]]:
    """Read every ``libkbit_*.json`` manifest in ``directory``.

    Returns the libraries found (in file-name order) and the problems: unreadable or malformed
    manifests, manifests whose library file is missing, library files without a manifest.
    A folder that does not exist holds nothing (no problem: kbit may have no ``_lib``).
    """
    libraries: list[LibraryInfo] = []
    problems: list[Problem] = []
    if not directory.is_dir():
        return libraries, problems
    described: set[str] = set()
    for manifest in sorted(directory.glob(_MANIFEST_GLOB)):
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
            info = parse_manifest(data, manifest, source)
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(manifest, f"cannot read the manifest: {exc}"))
            continue
        except json.JSONDecodeError as exc:
            problems.append(Problem(manifest, f"the manifest is not valid JSON: {exc}"))
            continue
        except ManifestError as exc:
            problems.append(Problem(manifest, f"malformed manifest: {exc}"))
            continue
        described.add(info.path.name)
        if not info.path.is_file():
            problems.append(Problem(manifest, f"the manifest names {info.path.name}, which is not there"))
            continue
        libraries.append(info)
    for candidate in sorted(directory.glob("libkbit_*")):
        if candidate.suffix in _LIBRARY_SUFFIXES and candidate.name not in described:
            problems.append(Problem(candidate, f"library without a manifest ({candidate.stem}.json): ignored"))
    return libraries, problems
