"""The one typed, frozen model of a release, built from ``matrix.toml`` by :mod:`wheelmatrix.config`.

Everything downstream of the config stage takes these objects, never a dict.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Literal

PlatformName = Literal["linux-x86_64", "linux-aarch64", "windows-x86_64", "macos-arm64"]
PLATFORMS: tuple[PlatformName, ...] = ("linux-x86_64", "linux-aarch64", "windows-x86_64", "macos-arm64")
SourceKind = Literal["pypi", "debian", "system"]
RepairTool = Literal["auditwheel", "delvewheel", "delocate", "none"]
SplitStrategy = Literal["fat", "per-cuda-major", "auto", "standalone", "core-plugin"]
PythonApi = Literal["none", "abi3", "per-version"]
RuleAction = Literal["include", "exclude"]


@functools.total_ordering
@dataclass(frozen=True)
class CudaVersion:
    """A CUDA toolkit version, major.minor (``12.4``)."""

    major: int
    minor: int

    @classmethod
    def parse(cls, text: str) -> CudaVersion:
        """Parse ``"12.4"``; raises ValueError on anything else."""
        parts = text.split(".")
        if len(parts) != 2 or not all(p.isdigit() and (p == "0" or not p.startswith("0")) for p in parts):
            raise ValueError(text)
        return cls(int(parts[0]), int(parts[1]))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, CudaVersion):
            return NotImplemented
        return (self.major, self.minor) < (other.major, other.minor)

    @property
    def tag(self) -> str:
        """``"124"`` for 12.4: the suffix of variant ids and library names."""
        return f"{self.major}{self.minor}"

    @property
    def variant(self) -> str:
        return f"cuda{self.tag}"

    @property
    def api(self) -> int:
        """The CUDA_VERSION / cuDriverGetVersion encoding: 12040 for 12.4."""
        return self.major * 1000 + self.minor * 10


@dataclass(frozen=True)
class Toolchain:
    """Where the CUDA toolchain of one CUDA version comes from."""

    source: SourceKind
    suite: str | None = None  # debian: the suite whose non-free component has this version
    path: Path | None = None  # system: the CUDA root (nvcc at path/bin/nvcc); None = $CUDA_HOME

    def describe(self) -> str:
        if self.source == "debian":
            return f"debian:{self.suite}"
        if self.source == "system":
            return f"system:{self.path}" if self.path else "system:$CUDA_HOME"
        return "pypi"


@dataclass(frozen=True)
class CudaFacts:
    """Facts about one CUDA version from ``data/cuda.toml`` (not user-settable)."""

    archs: tuple[int, ...]
    host_gcc_max: int
    driver_api: int
    min_driver_linux: str
    min_driver_windows: str
    family_min_driver_linux: str
    family_min_driver_windows: str
    runtime_soname: str
    compress: tuple[str, ...]
    compress_size: tuple[str, ...] = ()  # --compress-mode=size where nvcc has it (12.8+)
    compress_size_default: bool = False  # on by default: the version's driver floor loads it


@dataclass(frozen=True)
class Component:
    """A CUDA library besides the runtime (cuBLAS, ...) from ``data/cuda.toml`` [components]."""

    name: str  # as matrix.toml names it: "cublas"
    libraries: tuple[str, ...]  # link names: ("cublas", "cublasLt")
    runtime_wheels: tuple[tuple[int, str], ...]  # (CUDA major, NVIDIA's runtime wheel on PyPI)
    wheel_lib_dirs: tuple[tuple[int, str], ...]  # (CUDA major, its libraries' folder under site-packages)

    def runtime_wheel(self, major: int) -> str | None:
        return dict(self.runtime_wheels).get(major)

    def wheel_lib_dir(self, major: int) -> str | None:
        return dict(self.wheel_lib_dirs).get(major)


@dataclass(frozen=True)
class CudaSpec:
    """One CUDA version of the release: what to compile and with which toolchain."""

    version: CudaVersion
    sass: tuple[int, ...]
    ptx: tuple[int, ...]
    toolchain: Toolchain
    facts: CudaFacts
    components: tuple[Component, ...] = ()
    defines: tuple[tuple[str, str], ...] = ()  # CMake defines of this version's cells
    fatbin_compression: str = "auto"  # auto | size | standard | none ([cuda."X.Y"] fatbin-compression)

    @property
    def compress_flags(self) -> tuple[str, ...]:
        """nvcc's fatbin compression flags of this version's cells."""
        mode = self.fatbin_compression
        if mode == "auto":
            mode = "size" if self.facts.compress_size_default and self.facts.compress_size else "standard"
        if mode == "size":
            return self.facts.compress_size
        return self.facts.compress if mode == "standard" else ()

    @property
    def component_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.components)

    @property
    def variant(self) -> str:
        return self.version.variant


@dataclass(frozen=True)
class PlatformSpec:
    name: PlatformName
    policy: str  # wheel platform policy, e.g. manylinux_2_28
    repair: RepairTool
    never_vendor: tuple[str, ...]  # globs of libraries the repair step must not vendor
    wheel_arch: str
    runner: str
    library_pattern: str  # "lib{name}.so"
    cuda_providers: tuple[SourceKind, ...]
    defines: tuple[tuple[str, str], ...] = ()  # CMake defines of this platform's cells

    @property
    def wheel_tag(self) -> str:
        """The platform tag of this platform's wheels (``manylinux_2_28_x86_64``, ``win_amd64``)."""
        if self.policy.startswith("manylinux"):
            return f"{self.policy}_{self.wheel_arch}"
        return self.policy

    @property
    def os(self) -> str:
        return self.name.split("-", 1)[0]


@dataclass(frozen=True)
class Rule:
    """An include/exclude rule over cells; rules apply in order and the last match wins."""

    action: RuleAction
    platforms: tuple[str, ...]  # fnmatch patterns over platform names
    variants: tuple[str, ...]  # fnmatch patterns over variant ids ("cpu", "cuda124", "cuda12*")
    reason: str
    index: int  # position in matrix.toml, for messages

    def matches(self, platform: str, variant: str) -> bool:
        return any(fnmatchcase(platform, p) for p in self.platforms) and any(
            fnmatchcase(variant, v) for v in self.variants
        )


@dataclass(frozen=True)
class Packaging:
    max_file_size: int  # bytes
    project_quota: int  # bytes
    split: SplitStrategy
    split_name: str  # distribution name template, e.g. "{name}-cu{major}"
    extra_name: str  # extra that pulls a split distribution, e.g. "cu{major}"
    cuda_libraries: Literal["depend", "vendor"] = "depend"  # CUDA components: runtime wheels or vendored
    cuda_name: str = "{name}-cuda{major}x"  # a standalone CUDA distribution's name (split = "standalone")
    cuda_extra: str = ""  # standalone: the extra NVIDIA's runtime wheels are declared under ("": plain requirements)
    core_name: str = "{dist}-core"  # core-plugin: the py3-none core distribution of the distribution {dist}
    core_files: tuple[str, ...] = (
        "lib*.so*",
        "*.dll",
        "*.dylib",
    )  # core-plugin: the core's files (import package globs)

    @property
    def per_distribution(self) -> bool:
        """Every variant is a distribution of its own (``standalone``, ``core-plugin``)."""
        return self.split in ("standalone", "core-plugin")

    def core(self, dist: str) -> str:
        """The core distribution of ``dist`` (split = "core-plugin")."""
        return self.core_name.format(dist=dist)

    def distribution(self, project: str, major: int | None) -> str:
        """The distribution of a standalone variant: ``project`` for CPU, ``cuda_name`` for a CUDA major."""
        return project if major is None else self.cuda_name.format(name=project, major=major)


@dataclass(frozen=True)
class PublishStage:
    name: str
    repository_url: str  # where twine uploads
    index_url: str  # the simple index pip installs from to verify


@dataclass(frozen=True)
class PythonTag:
    """The Python part of a wheel's tag: ``py3-none``, ``cp311-cp311``, ``cp312-abi3``, ``cp313-cp313t``."""

    python: str  # "py3", "cp311"
    abi: str  # "none", "cp311", "abi3", "cp313t"
    version: str | None = None  # the CPython that builds it ("3.11"); None for py3-none

    def __str__(self) -> str:
        return f"{self.python}-{self.abi}"

    @property
    def suffix(self) -> str:
        """The cell id's suffix: ``""`` for py3-none, ``-cp311``, ``-cp312-abi3``, ``-cp313t``."""
        if self.abi == "none":
            return ""
        if self.abi == "abi3":
            return f"-{self.python}-abi3"
        return f"-{self.abi}"

    @property
    def free_threaded(self) -> bool:
        return self.abi.endswith("t")

    @property
    def py_api(self) -> str | None:
        """scikit-build-core's ``wheel.py-api`` for this tag (None: its default, the interpreter's own)."""
        if self.abi == "none":
            return "py3"
        if self.abi == "abi3":
            return self.python
        return None


PY3_NONE = PythonTag("py3", "none")


@dataclass(frozen=True)
class PythonAxis:
    """How a project binds the Python axis ([project] python-api, abi3-floor, free-threaded)."""

    api: PythonApi = "none"
    abi3_floor: str | None = None  # "3.12"
    free_threaded: tuple[str, ...] = ()  # ("3.13",)

    def tags(self, pythons: tuple[str, ...]) -> tuple[PythonTag, ...]:
        """The Python tags of one (platform, variant) over the matrix's Pythons, in order."""
        if self.api == "none":
            return (PY3_NONE,)
        out: list[PythonTag] = []
        floor = _minor(self.abi3_floor) if self.api == "abi3" and self.abi3_floor else None
        for version in sorted(pythons, key=_minor):
            cp = "cp" + version.replace(".", "")
            if floor is None or _minor(version) < floor:
                out.append(PythonTag(cp, cp, version))
            if version in self.free_threaded:  # no stable ABI there: its own wheel, abi3 or not
                out.append(PythonTag(cp, cp + "t", version))
        if floor is not None and self.abi3_floor is not None:
            out.append(PythonTag("cp" + self.abi3_floor.replace(".", ""), "abi3", self.abi3_floor))
        return tuple(out)


def _minor(version: str) -> int:
    return int(version.split(".")[1])


@dataclass(frozen=True)
class Project:
    name: str  # distribution name
    import_package: str
    library: str  # the library name pattern: "mykernels_{variant}" (placeholders: variant, cuda_tag, cuda_major)
    library_dir: str  # folder inside the import package holding the libraries ("." = the package itself)
    source: Path  # the project's source tree (where its pyproject.toml is)
    exclude: tuple[str, ...] = ()  # tracked files left out of the cell cache key (globs)
    include: tuple[str, ...] = ()  # untracked files added to the cell cache key (globs)
    python: PythonAxis = field(default_factory=PythonAxis)
    version: str | None = None  # [project] version of its pyproject.toml, when static

    def library_stem(self, variant: str, cuda: CudaVersion | None = None) -> str:
        """The library name of ``variant`` without prefix or suffix: ``mykernels_cuda124``."""
        if cuda is None and variant.startswith("cuda"):
            digits = variant[4:]
            cuda = CudaVersion(int(digits[:-1]), int(digits[-1])) if digits.isdigit() and len(digits) >= 2 else None
        return self.library.format(
            variant=variant,
            cuda_tag="" if cuda is None else cuda.tag,
            cuda_major="" if cuda is None else str(cuda.major),
        )

    @property
    def library_folder(self) -> str:
        """The libraries' folder inside the wheel, with a trailing slash: ``mykernels/`` or ``mykernels/_lib/``."""
        if self.library_dir in ("", "."):
            return f"{self.import_package}/"
        return f"{self.import_package}/{self.library_dir.strip('/')}/"


@dataclass(frozen=True)
class Backend:
    variable: str  # the project's CMake variable selecting the backend
    cpu: str
    cuda: str


@dataclass(frozen=True)
class BuildContract:
    """How the toolkit reaches a project's CMake build (``[build]`` of matrix.toml)."""

    backend: Backend | None = None
    archs_variable: str = "CMAKE_CUDA_ARCHITECTURES"
    defines: tuple[tuple[str, str], ...] = ()
    cpu_defines: tuple[tuple[str, str], ...] = ()
    cuda_defines: tuple[tuple[str, str], ...] = ()
    memory_per_compile: int | None = None  # bytes per compile thread for --jobs auto; None: the default


@dataclass(frozen=True)
class CheckSpec:
    smoke: tuple[str, ...] = ()  # argv; "python" is the venv's interpreter; empty: import the package
    python: tuple[str, ...] = ()  # Pythons of the install check; empty: matrix.python


@dataclass(frozen=True)
class Matrix:
    path: Path
    project: Project
    platforms: tuple[PlatformSpec, ...]
    cuda: tuple[CudaSpec, ...]
    python: tuple[str, ...]
    rules: tuple[Rule, ...]
    packaging: Packaging
    publish: tuple[PublishStage, ...]
    toolchain_lock: Path = field(default=Path("toolchains.lock"))
    build: BuildContract = field(default_factory=BuildContract)
    check: CheckSpec = field(default_factory=CheckSpec)

    def cuda_spec(self, version: CudaVersion | str) -> CudaSpec:
        v = CudaVersion.parse(version) if isinstance(version, str) else version
        for spec in self.cuda:
            if spec.version == v:
                return spec
        raise KeyError(str(v))

    def platform(self, name: str) -> PlatformSpec:
        for spec in self.platforms:
            if spec.name == name:
                return spec
        raise KeyError(name)
