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
    name: str = field(metadata=doc("Distribution name on PyPI (e.g. kbit)."))
    import_package: str = field(metadata=doc("Import package shipped in the wheels (e.g. kbit)."))
    library: str = field(
        metadata=doc("Native library base name: libraries are lib<library>_cpu and lib<library>_cuda<MAJOR><MINOR>.")
    )
    library_dir: str = field(default="_lib", metadata=doc("Folder inside the import package that holds the libraries."))
    source: str = field(default=".", metadata=doc("The project's source tree, relative to matrix.toml."))


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
        metadata=doc("Python versions on which installs are tested (the wheels are py3-none-<platform>).")
    )


@dataclass(frozen=True)
class ToolchainTable:
    source: Literal["pypi", "debian", "system"] = field(metadata=doc("Where this CUDA version's nvcc comes from."))
    suite: str | None = field(default=None, metadata=doc('Debian suite (source = "debian"), e.g. bookworm.'))
    path: str | None = field(default=None, metadata=doc('CUDA root (source = "system"); default $CUDA_HOME.'))


@dataclass(frozen=True)
class CudaTable:
    sass: tuple[int, ...] = field(metadata=doc("Compute capabilities to emit SASS for (e.g. 80 for sm_80)."))
    ptx: tuple[int, ...] = field(metadata=doc("Compute capabilities to embed PTX for (JIT-compiled on newer GPUs)."))
    toolchain: ToolchainTable = field(metadata=doc("Where the toolchain comes from."))


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
    split: Literal["fat", "per-cuda-major", "auto"] = field(
        default="auto",
        metadata=doc(
            "fat: one wheel per platform; per-cuda-major: one distribution per CUDA major; auto: fat while it fits."
        ),
    )
    split_name: str = field(
        default="{name}-cu{major}", metadata=doc("Name of a split distribution; {name} and {major} are filled in.")
    )
    extra_name: str = field(default="cu{major}", metadata=doc("Extra that pulls a split distribution: {major}."))


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
class MatrixFile:
    """The whole ``matrix.toml``."""

    project: ProjectTable = field(metadata=doc("The project being released."))
    matrix: AxesTable = field(metadata=doc("The axes of the release."))
    cuda: dict[str, CudaTable] = field(default_factory=dict, metadata=doc("Per CUDA version: archs and toolchain."))
    platform: dict[str, PlatformTable] = field(default_factory=dict, metadata=doc("Per platform: policy and repair."))
    rules: tuple[RuleTable, ...] = field(
        default=(), metadata=doc("Include/exclude rules over cells, applied in order; the last match wins.")
    )
    packaging: PackagingTable = field(default_factory=PackagingTable, metadata=doc("Size limits and split policy."))
    publish: tuple[PublishTable, ...] = field(
        default=DEFAULT_PUBLISH, metadata=doc("Publish stages, in order (default: testpypi then pypi).")
    )
