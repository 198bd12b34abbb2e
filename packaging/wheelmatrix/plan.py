"""Stage 2: the plan. Expands the matrix into cells and says, per cell, whether this host builds it.

Pure over an injected :class:`Host`, so it is property-tested over generated matrices.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Literal

from wheelmatrix.model import (
    PY3_NONE,
    BuildContract,
    CudaSpec,
    CudaVersion,
    Matrix,
    PlatformName,
    PlatformSpec,
    Project,
    PythonTag,
    Toolchain,
)

_MANYLINUX = re.compile(r"^manylinux_(\d+)_(\d+)$")


@dataclass(frozen=True)
class Host:
    """What this build host is and has; :func:`wheelmatrix.host.detect` fills it."""

    platform: str  # one of the platform names, or e.g. "linux-ppc64le" for an unknown one
    has_c_compiler: bool
    has_zig: bool  # zig from the ziglang package (cross builds and the glibc floor)
    system_cuda: tuple[tuple[str, str], ...] = ()  # (cuda version, root) of system toolkits found
    glibc: tuple[int, int] | None = None  # this host's glibc, None when not glibc
    pythons: tuple[tuple[str, str], ...] = ()  # (version "3.12" or "3.13t", interpreter path) found here

    def interpreter(self, version: str) -> str | None:
        return dict(self.pythons).get(version)


@dataclass(frozen=True)
class BuildSpec:
    """One cell resolved for its build: everything the cell stage needs, taken whole.

    The plan makes it (:func:`build_spec`); the build never reads the matrix or probes the host.
    """

    cell_id: str
    variant: str  # "cpu" or "cudaXY"
    project: Project
    platform: PlatformSpec
    cuda: CudaSpec | None
    contract: BuildContract
    library: str  # the library file the cell must produce: libmykernels_cuda130.so
    defines: tuple[tuple[str, str], ...]  # the project's CMake defines for this cell (backend, archs, extras)
    link_glibc: tuple[int, int] | None  # link libraries against this glibc with zig; None: the host linker
    cross: str | None  # zig target of a cross build ("x86_64-windows-gnu"); None: a native build
    cuda_libraries: Literal["depend", "vendor"]
    buildable: bool
    reason: str
    python_tag: PythonTag = PY3_NONE  # the wheel's Python tag (py3-none, cp311-cp311, cp312-abi3)
    interpreter: str | None = None  # the CPython that builds a per-Python cell; None: the toolkit's own
    build_python: str | None = None  # the oldest CPython of the host: installs the per-Python cells' build environment

    @property
    def library_stem(self) -> str:
        """The library file name without its suffix: ``libmykernels_cuda130``."""
        return self.library.rsplit(".", 1)[0]

    @property
    def manifest(self) -> str:
        """The manifest the toolkit writes next to the library: ``libmykernels_cuda130.json``."""
        return self.library_stem + ".json"


@dataclass(frozen=True)
class Cell:
    """One build cell: a (platform, variant) pair; variant is "cpu" or "cudaXY"."""

    platform: PlatformName
    variant: str
    cuda: CudaVersion | None
    sass: tuple[int, ...]
    ptx: tuple[int, ...]
    toolchain: Toolchain | None
    buildable: bool
    reason: str  # why it can or cannot be built on this host
    python: PythonTag = PY3_NONE  # the Python tag of its wheel
    interpreter: str | None = None  # the CPython of this host that builds it (per-Python cells)

    @property
    def id(self) -> str:
        return f"{self.platform}-{self.variant}{self.python.suffix}"


@dataclass(frozen=True)
class Excluded:
    platform: PlatformName
    variant: str
    reason: str
    rule: int


@dataclass(frozen=True)
class Plan:
    matrix: Matrix
    host: Host
    cells: tuple[Cell, ...]
    excluded: tuple[Excluded, ...]

    def cell(self, cell_id: str) -> Cell:
        for c in self.cells:
            if c.id == cell_id:
                return c
        raise KeyError(cell_id)

    @property
    def buildable(self) -> tuple[Cell, ...]:
        return tuple(c for c in self.cells if c.buildable)

    def build_specs(self, cells: tuple[Cell, ...] | list[Cell] | None = None) -> tuple[BuildSpec, ...]:
        """The build specs of ``cells`` (default: every cell of the plan)."""
        return tuple(build_spec(self.matrix, c, self.host) for c in (self.cells if cells is None else cells))


def _included(matrix: Matrix, platform: str, variant: str) -> tuple[bool, Excluded | None]:
    """Apply the rules in order; the last matching rule decides (no match: included)."""
    verdict: tuple[bool, Excluded | None] = (True, None)
    for rule in matrix.rules:
        if rule.matches(platform, variant):
            if rule.action == "include":
                verdict = (True, None)
            else:
                reason = rule.reason or f"excluded by rules[{rule.index}]"
                verdict = (False, Excluded(platform, variant, reason, rule.index))  # type: ignore[arg-type]
    return verdict


# zig targets of the CPU cells a host cross-builds: (platform, host platform) -> target pattern
# ({glibc} is the policy's glibc, {macos} the policy's minimum macOS)
_CROSS_TARGETS = {
    ("windows-x86_64", "linux-x86_64"): "x86_64-windows-gnu",
    ("linux-aarch64", "linux-x86_64"): "aarch64-linux-gnu.{glibc}",
    ("macos-arm64", "linux-x86_64"): "aarch64-macos.{macos}",
}
_MACOS_POLICY = re.compile(r"^macosx_(\d+)_(\d+)_\w+$")


def cross_target(platform: PlatformSpec, host_platform: str) -> str | None:
    """The zig target that cross-builds ``platform``'s CPU cells on ``host_platform``, or None."""
    pattern = _CROSS_TARGETS.get((platform.name, host_platform))
    if pattern is None:
        return None
    glibc = _MANYLINUX.match(platform.policy)
    macos = _MACOS_POLICY.match(platform.policy)
    return pattern.format(
        glibc=f"{glibc.group(1)}.{glibc.group(2)}" if glibc else "2.17",
        macos=f"{macos.group(1)}.{macos.group(2)}" if macos else "11.0",
    )


def _other_runner(platform: PlatformSpec) -> str:
    kind = {"linux": "a " + platform.name, "windows": "a Windows", "macos": "a macOS"}[platform.os]
    return f"needs {kind} runner ({platform.runner}); CI builds it"


def _cpu_cell(platform: PlatformSpec, host: Host) -> tuple[bool, str]:
    if platform.name == host.platform:
        if host.has_c_compiler:
            return True, "CPU library with the host C++ compiler"
        return False, "no C/C++ compiler on this host: install g++ (or set CXX)"
    target = cross_target(platform, host.platform)
    if target is not None:
        if host.has_zig:
            return True, f"CPU library cross-built with zig ({target})"
        return False, "pip install ziglang (wheelmatrix[build]) to cross-build it here; " + _other_runner(platform)
    return False, _other_runner(platform)


def _cuda_cell(platform: PlatformSpec, spec: CudaSpec, host: Host) -> tuple[bool, str]:
    t = spec.toolchain
    if t.source not in platform.cuda_providers:
        return False, (
            f"CUDA {spec.version}: source {t.source!r} cannot provide {platform.name} on any runner; declare a "
            f"source that can ({', '.join(platform.cuda_providers) or 'none'}) or exclude the cell with a rule"
        )
    if t.source == "debian" and platform.wheel_arch != "x86_64":
        return False, (
            f"CUDA {spec.version}: the debian source provides amd64 only, so no {platform.name} machine or runner "
            "builds it; declare a source that can or exclude the cell with a rule"
        )
    if platform.name != host.platform:
        if t.source == "system":
            return False, (
                f"CUDA {spec.version}: needs a {platform.name} machine with a system CUDA at {_where(t)}, which no "
                f"GitHub-hosted runner ({platform.runner}) carries; build it on one or exclude the cell with a rule"
            )
        if platform.os == "windows":
            return False, f"CUDA on Windows {_other_runner(platform)}"
        return False, _other_runner(platform)
    if t.source == "pypi":
        return True, f"CUDA {spec.version} from PyPI (NVIDIA's wheels)"
    if t.source == "debian":
        return True, f"CUDA {spec.version} from Debian {t.suite} (non-free)"
    for version, root in host.system_cuda:
        if version == str(spec.version):
            return True, f"CUDA {spec.version} from the system ({root})"
    return False, (
        f"CUDA {spec.version}: no system CUDA at {_where(t)} on this host, and no GitHub-hosted runner carries one; "
        "build it where one is installed or exclude the cell with a rule"
    )


def _where(t: Toolchain) -> str:
    return str(t.path) if t.path is not None else "$CUDA_HOME"


def _python_cell(platform: PlatformSpec, tag: PythonTag, host: Host) -> tuple[bool, str, str | None]:
    """Whether this host has the CPython a per-Python cell is built with: (buildable, reason, interpreter)."""
    if tag.version is None:
        return True, "", None
    if platform.name != host.platform:
        return (
            False,
            f"a CPython extension for {platform.name} is built on its own runner: " + _other_runner(platform),
            None,
        )
    want = tag.version + ("t" if tag.free_threaded else "")
    path = host.interpreter(want)
    if path is None:
        kind = "free-threaded CPython" if tag.free_threaded else "CPython"
        return (
            False,
            (f"{kind} {tag.version} is not on this host (looked on PATH and in pyenv): {_other_runner(platform)}"),
            None,
        )
    return True, f"CPython {want} ({path})", path


def make_plan(matrix: Matrix, host: Host) -> Plan:
    """Expand the matrix into cells (platform x variant x Python tag), apply the rules, decide buildability.

    A py3-none project has one cell per (platform, variant); a per-Python project one per Python tag
    of :meth:`PythonAxis.tags`, the cells of one variant next to each other (they share a build tree).
    """
    cells: list[Cell] = []
    tags = matrix.project.python.tags(matrix.python)
    excluded: list[Excluded] = []
    for platform in matrix.platforms:
        options: list[CudaSpec | None] = [None, *matrix.cuda]
        for spec in options:
            variant = "cpu" if spec is None else spec.variant
            keep, why = _included(matrix, platform.name, variant)
            if not keep:
                assert why is not None
                excluded.append(why)
                continue
            if spec is None:
                buildable, reason = _cpu_cell(platform, host)
                base = Cell(platform.name, "cpu", None, (), (), None, buildable, reason)
            else:
                buildable, reason = _cuda_cell(platform, spec, host)
                base = Cell(
                    platform.name, variant, spec.version, spec.sass, spec.ptx, spec.toolchain, buildable, reason
                )
            for tag in tags:
                ok, found, interpreter = _python_cell(platform, tag, host)
                if tag.version is None:
                    cells.append(base)
                elif not base.buildable:
                    cells.append(replace(base, python=tag))
                else:
                    text = f"{base.reason}; {found}" if ok else found
                    cells.append(replace(base, python=tag, buildable=ok, reason=text, interpreter=interpreter))
    return Plan(matrix=matrix, host=host, cells=tuple(cells), excluded=tuple(excluded))


PLAN_SCHEMA_VERSION = 3


def _format(template: str, fields: dict[str, str]) -> str:
    return template.format(**fields)


def build_spec(matrix: Matrix, cell: Cell, host: Host | None = None) -> BuildSpec:
    """Resolve ``cell`` of ``matrix`` into the spec its build takes whole (on ``host``)."""
    platform = matrix.platform(cell.platform)
    spec = matrix.cuda_spec(cell.cuda) if cell.cuda is not None else None
    project = matrix.project
    contract = matrix.build
    fields = {
        "variant": cell.variant,
        "platform": cell.platform,
        "cuda": "" if cell.cuda is None else str(cell.cuda),
        "cuda_major": "" if cell.cuda is None else str(cell.cuda.major),
        "cuda_tag": "" if cell.cuda is None else cell.cuda.tag,
    }
    defines: dict[str, str] = {}
    if contract.backend is not None:
        defines[contract.backend.variable] = contract.backend.cpu if spec is None else contract.backend.cuda
    if spec is not None:
        archs = [f"{a}-real" for a in cell.sass] + [f"{a}-virtual" for a in cell.ptx]
        defines[contract.archs_variable] = ";".join(archs)
    layers = [contract.defines, contract.cpu_defines if spec is None else contract.cuda_defines, platform.defines]
    if spec is not None:
        layers.append(spec.defines)
    for layer in layers:
        for name, value in layer:
            defines[name] = _format(value, fields)
    link_glibc: tuple[int, int] | None = None
    host_platform = host.platform if host is not None else platform.name
    m = _MANYLINUX.match(platform.policy)
    if platform.os == "linux" and m and host is not None and host.glibc is not None and host_platform == platform.name:
        floor = (int(m.group(1)), int(m.group(2)))
        if floor < host.glibc:
            link_glibc = floor
    stem = project.library_stem(cell.variant, cell.cuda)
    library = platform.library_pattern.format(name=stem)
    if cell.python.version is not None:
        library = stem + extension_suffix(platform, cell.python)
    return BuildSpec(
        cell_id=cell.id,
        variant=cell.variant,
        project=project,
        platform=platform,
        cuda=spec,
        contract=contract,
        library=library,
        defines=tuple(defines.items()),
        link_glibc=link_glibc,
        cross=cross_target(platform, host_platform) if host_platform != platform.name else None,
        cuda_libraries=matrix.packaging.cuda_libraries,
        buildable=cell.buildable,
        reason=cell.reason,
        python_tag=cell.python,
        interpreter=cell.interpreter,
        build_python=_oldest_python(host) if cell.python.version is not None else None,
    )


def _oldest_python(host: Host | None) -> str | None:
    """The interpreter of the oldest (GIL) CPython the host has: every per-Python cell of a plan shares
    the build environment it installs, whichever cells one build selects."""
    found = [(int(v.split(".")[1]), path) for v, path in (host.pythons if host else ()) if not v.endswith("t")]
    return min(found)[1] if found else None


def extension_suffix(platform: PlatformSpec, tag: PythonTag) -> str:
    """The file suffix CPython gives an extension module of ``tag`` on ``platform`` (EXT_SUFFIX):
    ``.cpython-311-x86_64-linux-gnu.so``, ``.abi3.so``, ``.cp311-win_amd64.pyd``, ``.pyd``."""
    abi = tag.abi
    if platform.os == "windows":
        return ".pyd" if abi == "abi3" else f".{abi}-win_amd64.pyd"
    if abi == "abi3":
        return ".abi3.so"
    digits = abi[2:]  # "311" or "313t"
    if platform.os == "macos":
        return f".cpython-{digits}-darwin.so"
    arch = "x86_64" if platform.wheel_arch == "x86_64" else "aarch64"
    return f".cpython-{digits}-{arch}-linux-gnu.so"


def _escape(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


@dataclass(frozen=True)
class ExpectedWheel:
    """One wheel file the release will have (the expected-wheels oracle)."""

    filename: str
    distribution: str
    platform: str
    cells: tuple[str, ...]  # the cells whose build it holds
    buildable: bool  # every one of its cells builds on this host


def expected_wheels(plan: Plan) -> tuple[ExpectedWheel, ...] | None:
    """The exact wheel files of the release: every distribution x platform x Python tag.

    None when the layout is decided by measured size (``split = "auto"``) and so cannot be known
    before the libraries are built.
    """
    m = plan.matrix
    version = m.project.version or "{version}"
    strategy = m.packaging.split
    if strategy == "auto":
        return None
    groups: dict[tuple[str, str, str], list[Cell]] = {}
    for c in plan.cells:
        major = None if c.cuda is None else c.cuda.major
        if strategy == "core-plugin":  # the plugin per Python tag, its py3-none core once per platform
            dist = m.packaging.distribution(m.project.name, major)
            groups.setdefault((m.packaging.core(dist), c.platform, "py3-none"), []).append(c)
        if m.packaging.per_distribution:
            dist = m.packaging.distribution(m.project.name, major)
        elif strategy == "per-cuda-major" and major is not None:
            dist = m.packaging.split_name.format(name=m.project.name, major=major)
        else:
            dist = m.project.name
        groups.setdefault((dist, c.platform, str(c.python)), []).append(c)
    out = []
    for (dist, platform, tag), cells in groups.items():
        wheel_tag = m.platform(platform).wheel_tag
        out.append(
            ExpectedWheel(
                filename=f"{_escape(dist)}-{version}-{tag}-{wheel_tag}.whl",
                distribution=dist,
                platform=platform,
                cells=tuple(c.id for c in cells),
                buildable=all(c.buildable for c in cells),
            )
        )
    return tuple(sorted(out, key=lambda w: w.filename))


def _toolchain_doc(t: Toolchain | None) -> str | None:
    return None if t is None else t.describe()


def plan_document(plan: Plan) -> dict[str, object]:
    """The versioned JSON document of ``wheelmatrix plan --format json`` (schemas/plan.schema.json)."""
    m = plan.matrix
    wheels = expected_wheels(plan)
    return {
        "schema": "wheelmatrix-plan",
        "version": PLAN_SCHEMA_VERSION,
        "project": m.project.name,
        "matrix": str(m.path),
        "host": {
            "platform": plan.host.platform,
            "c_compiler": plan.host.has_c_compiler,
            "zig": plan.host.has_zig,
            "pythons": dict(plan.host.pythons),
        },
        "python_api": m.project.python.api,
        "cells": [
            {
                "id": c.id,
                "platform": c.platform,
                "variant": c.variant,
                "cuda": None if c.cuda is None else str(c.cuda),
                "archs": list(c.sass),
                "ptx": list(c.ptx),
                "toolchain": _toolchain_doc(c.toolchain),
                "buildable": c.buildable,
                "reason": c.reason,
                "runner": m.platform(c.platform).runner,
                "wheel_tag": m.platform(c.platform).wheel_tag,
                "python_tag": str(c.python),
                "interpreter": c.interpreter,
            }
            for c in plan.cells
        ],
        "excluded": [
            {"platform": e.platform, "variant": e.variant, "reason": e.reason, "rule": e.rule} for e in plan.excluded
        ],
        "wheels": None
        if wheels is None
        else [
            {
                "file": w.filename,
                "distribution": w.distribution,
                "platform": w.platform,
                "cells": list(w.cells),
                "buildable": w.buildable,
            }
            for w in wheels
        ],
    }


def github_matrix(plan: Plan) -> dict[str, object]:
    """The object a GitHub Actions job consumes as ``strategy.matrix: ${{ fromJSON(...) }}``.

    Every cell of the release is a job: ``runner`` is its platform's runner; ``builder`` the runner
    that builds it: the runner of the host the plan ran on when this host builds the cell
    (``here``: the same commands as a local build, zig cross builds included), else ``runner``.
    schemas/github-matrix.schema.json describes it.
    """
    from wheelmatrix.data import platform_facts  # noqa: PLC0415 - read lazily, never at import

    m = plan.matrix
    host = platform_facts().get(plan.host.platform)
    return {
        "include": [
            {
                "cell": c.id,
                "platform": c.platform,
                "variant": c.variant,
                "cuda": "" if c.cuda is None else str(c.cuda),
                "runner": m.platform(c.platform).runner,
                "builder": host.runner if c.buildable and host is not None else m.platform(c.platform).runner,
                "here": c.buildable and host is not None,
                **({} if c.python.version is None else {"python": c.python.version, "python_tag": str(c.python)}),
            }
            for c in plan.cells
        ]
    }
