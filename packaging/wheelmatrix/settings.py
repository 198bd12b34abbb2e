"""The shape of ``matrix.toml``: the raw tables as written, before resolution into :mod:`model`.

These dataclasses are the single source of the file's keys, types, defaults and docs:
:mod:`wheelmatrix.config` converts TOML into them (with key paths and did-you-mean errors) and
:mod:`wheelmatrix.schema` generates the committed JSON Schema from them.
TOML keys are the field names with ``_`` written ``-``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


class Size(int):
    """A byte count, written as an integer or a string such as ``"100 MiB"``."""


def doc(text: str, **kwargs: object) -> dict[str, object]:
    return {"doc": text, **kwargs}


@dataclass(frozen=True)
class ProjectTable:
    name: str = field(metadata=doc("Distribution name on PyPI (e.g. mykernels)."))
    import_package: str = field(metadata=doc("Import package shipped in the wheels (e.g. mykernels)."))
    library: str = field(
        metadata=doc(
            "Name of each variant's native library without prefix or suffix, a pattern over {variant} "
            '(cpu, cuda124, ...), {cuda_tag} (124) and {cuda_major} (12), e.g. "mykernels_{variant}"; the '
            "platform adds the rest (lib{name}.so, lib{name}.dll, lib{name}.dylib)."
        )
    )
    library_dir: str = field(
        default=".",
        metadata=doc('Folder inside the import package that holds the libraries ("." is the package folder itself).'),
    )
    source: str = field(default=".", metadata=doc("The project's source tree, relative to matrix.toml."))
    exclude: tuple[str, ...] = field(
        default=(),
        metadata=doc(
            "Globs of tracked files that do not change a cell's wheel (docs, CI files); left out of the cell cache key."
        ),
    )
    include: tuple[str, ...] = field(
        default=(),
        metadata=doc("Globs of untracked files (generated sources) that do change a cell's wheel; added to the key."),
    )
    python_api: Literal["none", "abi3", "per-version"] = field(
        default="none",
        metadata=doc(
            'How the wheels bind the Python axis. "none": py3-none-<platform> (libraries loaded with ctypes; '
            'matrix.python only says where installs are tested). "per-version": a CPython extension, one '
            'cpXY-cpXY wheel per Python of matrix.python. "abi3": one cpXY-abi3 wheel from abi3-floor on (the '
            "stable ABI, scikit-build-core's wheel.py-api), per-version wheels for the Pythons below the floor."
        ),
    )
    abi3_floor: str | None = field(
        default=None,
        metadata=doc('The oldest Python of the abi3 wheel (python-api = "abi3"), e.g. "3.12" (cp312-abi3).'),
    )
    free_threaded: tuple[str, ...] = field(
        default=(),
        metadata=doc(
            'Pythons of matrix.python that also get a free-threaded wheel (cp313-cp313t; python-api = "per-version").'
        ),
    )


@dataclass(frozen=True)
class BackendTable:
    variable: str = field(metadata=doc("The project's CMake variable that selects the backend (e.g. COMPUTE_BACKEND)."))
    cpu: str = field(default="cpu", metadata=doc("Its value for the CPU variant."))
    cuda: str = field(default="cuda", metadata=doc("Its value for CUDA variants."))


@dataclass(frozen=True)
class BuildTable:
    backend: BackendTable | None = field(
        default=None,
        metadata=doc(
            "How a cell selects its backend; default: no variable (the project decides from the CUDA compiler)."
        ),
    )
    archs_variable: str = field(
        default="CMAKE_CUDA_ARCHITECTURES",
        metadata=doc('CMake variable that receives the archs of a CUDA cell, as "80-real;90-real;90-virtual".'),
    )
    defines: dict[str, str] = field(
        default_factory=dict,
        metadata=doc(
            "CMake defines for every cell. Values may use {variant}, {platform}, {cuda}, {cuda_major}, {cuda_tag}."
        ),
    )
    cpu_defines: dict[str, str] = field(default_factory=dict, metadata=doc("CMake defines for the CPU variant."))
    cuda_defines: dict[str, str] = field(default_factory=dict, metadata=doc("CMake defines for every CUDA variant."))
    memory_per_compile: Size | None = field(
        default=None,
        metadata=doc(
            "Memory one compile (one nvcc thread) may take, for `--jobs auto`: fewer compiles run at once when "
            "available memory / this is below the cores. Default: 1 GiB for CPU-only builds, 4 GiB with CUDA cells."
        ),
    )


@dataclass(frozen=True)
class AxesTable:
    platforms: tuple[str, ...] = field(
        metadata=doc(
            "Platforms to release for.", enum=["linux-x86_64", "linux-aarch64", "windows-x86_64", "macos-arm64"]
        )
    )
    cuda: tuple[str, ...] = field(
        metadata=doc('CUDA versions (MAJOR.MINOR); each needs a [cuda."X.Y"] table. The CPU variant is always built.')
    )
    python: tuple[str, ...] = field(
        metadata=doc(
            "Python versions on which installs are tested; with [project] python-api per-version or abi3 also the "
            "Pythons the wheels are built for."
        )
    )


@dataclass(frozen=True)
class ToolchainTable:
    source: Literal["pypi", "debian", "system"] = field(metadata=doc("Where this CUDA version's nvcc comes from."))
    suite: str | None = field(default=None, metadata=doc('Debian suite (source = "debian"), e.g. bookworm.'))
    path: str | None = field(default=None, metadata=doc('CUDA root (source = "system"); default $CUDA_HOME.'))


@dataclass(frozen=True)
class CudaFactsTable:
    archs: tuple[int, ...] | None = field(default=None, metadata=doc("Every compute capability nvcc can target."))
    host_gcc_max: int | None = field(default=None, metadata=doc("Newest GCC major nvcc accepts as host compiler."))
    driver_api: int | None = field(default=None, metadata=doc("cuDriverGetVersion() needed: major*1000 + minor*10."))
    min_driver_linux: str | None = field(default=None, metadata=doc("First Linux driver of this toolkit."))
    min_driver_windows: str | None = field(default=None, metadata=doc("First Windows driver of this toolkit."))


@dataclass(frozen=True)
class CudaTable:
    sass: tuple[int, ...] = field(metadata=doc("Compute capabilities to emit SASS for (e.g. 80 for sm_80)."))
    ptx: tuple[int, ...] = field(metadata=doc("Compute capabilities to embed PTX for (JIT-compiled on newer GPUs)."))
    toolchain: ToolchainTable = field(metadata=doc("Where the toolchain comes from."))
    components: tuple[str, ...] = field(
        default=(),
        metadata=doc(
            "CUDA libraries the build links besides the runtime (cublas with cuBLASLt, cusparse, cufft, curand, cusolver): "
            "provided with the toolchain, pinned in toolchains.lock, verified by linking a probe."
        ),
    )
    defines: dict[str, str] = field(default_factory=dict, metadata=doc("CMake defines for this CUDA version's cells."))
    fatbin_compression: Literal["auto", "size", "standard", "none"] = field(
        default="auto",
        metadata=doc(
            "How nvcc compresses the fatbin: size (--compress-mode=size, nvcc >= 12.8, smallest; older drivers "
            "cannot load it), standard (-Xfatbin -compress-all), none; auto: size where the version's driver "
            "floor loads it (CUDA 13), else standard."
        ),
    )
    facts: CudaFactsTable | None = field(
        default=None,
        metadata=doc("Facts for a CUDA version wheelmatrix does not know, or overrides of the ones it does."),
    )


@dataclass(frozen=True)
class PlatformTable:
    policy: str | None = field(
        default=None, metadata=doc("Wheel platform policy (e.g. manylinux_2_28); default from wheelmatrix's data.")
    )
    repair: Literal["auditwheel", "delvewheel", "delocate", "none"] | None = field(
        default=None, metadata=doc("Repair tool; default from wheelmatrix's data.")
    )
    never_vendor: tuple[str, ...] = field(
        default=(),
        metadata=doc("Extra library globs the repair step must not vendor (the driver's are always kept out)."),
    )
    defines: dict[str, str] = field(default_factory=dict, metadata=doc("CMake defines for this platform's cells."))


@dataclass(frozen=True)
class RuleTable:
    action: Literal["include", "exclude"] = field(metadata=doc("Exclude or (re-)include the matching cells."))
    platforms: tuple[str, ...] = field(default=("*",), metadata=doc("Platform name patterns (fnmatch)."))
    variants: tuple[str, ...] = field(
        default=("*",), metadata=doc("Variant patterns (fnmatch) over cpu, cuda118, cuda124, ...; e.g. cuda12*.")
    )
    reason: str = field(default="", metadata=doc("Why; shown in the plan."))


@dataclass(frozen=True)
class PackagingTable:
    max_file_size: Size = field(default=Size(100 * 2**20), metadata=doc("Largest wheel file allowed (PyPI: 100 MiB)."))
    project_quota: Size = field(default=Size(10 * 2**30), metadata=doc("Project size quota (PyPI: 10 GiB)."))
    split: Literal["fat", "per-cuda-major", "auto", "standalone", "core-plugin"] = field(
        default="auto",
        metadata=doc(
            "fat: one wheel per platform; per-cuda-major: one distribution per CUDA major; auto: fat while it fits; "
            "standalone: every variant is a whole distribution of its own, the CPU one named [project] name and "
            "each CUDA major's named by cuda-name (as CuPy ships; python-api per-version and abi3 need it or core-plugin); "
            "core-plugin: as standalone, each distribution split into a per-Python plugin (the extension module) "
            "and a py3-none core (core-name) holding the core-files, as JAX ships its CUDA plugin and PJRT."
        ),
    )
    split_name: str = field(
        default="{name}-cu{major}", metadata=doc("Name of a split distribution; {name} and {major} are filled in.")
    )
    extra_name: str = field(default="cu{major}", metadata=doc("Extra that pulls a split distribution: {major}."))
    cuda_libraries: Literal["depend", "vendor"] = field(
        default="depend",
        metadata=doc(
            "CUDA components (cuBLAS, ...) a library links: depend on NVIDIA's runtime wheels (declared per CUDA "
            "major, never vendored). vendor (copying them into the wheel) is not supported yet."
        ),
    )
    cuda_name: str = field(
        default="{name}-cuda{major}x",
        metadata=doc('Name of a standalone CUDA distribution (split = "standalone"): {name} and {major} filled in.'),
    )
    cuda_extra: str = field(
        default="",
        metadata=doc(
            'split = "standalone": declare NVIDIA\'s runtime wheels under this extra (e.g. "ctk", as CuPy\'s '
            "cupy-cuda13x[ctk]) instead of as plain requirements; empty: plain requirements."
        ),
    )
    core_name: str = field(
        default="{dist}-core",
        metadata=doc(
            'split = "core-plugin": name of the py3-none core of each distribution; {dist} is the distribution '
            "([project] name or cuda-name), e.g. qext-cuda13x-core. The plugin requires it at the exact version."
        ),
    )
    core_files: tuple[str, ...] = field(
        default=("lib*.so*", "*.dll", "*.dylib"),
        metadata=doc(
            'split = "core-plugin": globs (relative to the import package) of the files the core holds, e.g. '
            '["lib*_kernels*.so*"]; the repair\'s vendored libraries (<package>.libs/) go with them. Must not '
            "match the extension module."
        ),
    )


@dataclass(frozen=True)
class PublishTable:
    name: str = field(metadata=doc("Stage name (e.g. testpypi)."))
    repository_url: str = field(metadata=doc("Upload URL (twine --repository-url)."))
    index_url: str = field(metadata=doc("Simple index URL that installs are verified from."))


DEFAULT_PUBLISH: tuple[PublishTable, ...] = (
    PublishTable("testpypi", "https://test.pypi.org/legacy/", "https://test.pypi.org/simple/"),
    PublishTable("pypi", "https://upload.pypi.org/legacy/", "https://pypi.org/simple/"),
)


@dataclass(frozen=True)
class CheckTable:
    smoke: tuple[str, ...] = field(
        default=(),
        metadata=doc(
            'The project\'s smoke command, run in a fresh venv where each wheel was installed (e.g. ["python", '
            '"-m", "mykernels", "--json"]); "python" is that venv\'s interpreter. Empty: the import package is imported.'
        ),
    )
    python: tuple[str, ...] = field(
        default=(),
        metadata=doc("Pythons the install check runs on (default: every one of matrix.python this host has)."),
    )


@dataclass(frozen=True)
class MatrixFile:
    """The whole ``matrix.toml``."""

    project: ProjectTable = field(metadata=doc("The project being released."))
    matrix: AxesTable = field(metadata=doc("The axes of the release."))
    build: BuildTable = field(
        default_factory=BuildTable, metadata=doc("How cells reach the project's CMake build (its contract).")
    )
    cuda: dict[str, CudaTable] = field(default_factory=dict, metadata=doc("Per CUDA version: archs and toolchain."))
    platform: dict[str, PlatformTable] = field(default_factory=dict, metadata=doc("Per platform: policy and repair."))
    rules: tuple[RuleTable, ...] = field(
        default=(), metadata=doc("Include/exclude rules over cells, applied in order; the last match wins.")
    )
    packaging: PackagingTable = field(default_factory=PackagingTable, metadata=doc("Size limits and split policy."))
    publish: tuple[PublishTable, ...] = field(
        default=DEFAULT_PUBLISH, metadata=doc("Publish stages, in order (default: testpypi then pypi).")
    )
    check: CheckTable = field(default_factory=CheckTable, metadata=doc("What `wheelmatrix check` runs."))
