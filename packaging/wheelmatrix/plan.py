"""Stage 2: the plan. Expands the matrix into cells and says, per cell, whether this host builds it.

Pure over an injected :class:`Host`, so it is property-tested over generated matrices.
"""

from __future__ import annotations

from dataclasses import dataclass

from wheelmatrix.model import CudaSpec, CudaVersion, Matrix, PlatformName, PlatformSpec, Toolchain


@dataclass(frozen=True)
class Host:
    """What this build host is and has; :func:`wheelmatrix.host.detect` fills it."""

    platform: str  # one of the platform names, or e.g. "linux-ppc64le" for an unknown one
    has_c_compiler: bool
    has_mingw: bool  # x86_64-w64-mingw32-g++ on PATH (Windows CPU cells cross-build here)
    system_cuda: tuple[tuple[str, str], ...] = ()  # (cuda version, root) of system toolkits found


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

    @property
    def id(self) -> str:
        return f"{self.platform}-{self.variant}"


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


def _other_runner(platform: PlatformSpec) -> str:
    kind = {"linux": "a " + platform.name, "windows": "a Windows", "macos": "a macOS"}[platform.os]
    return f"needs {kind} runner ({platform.runner}); CI builds it"


def _cpu_cell(platform: PlatformSpec, host: Host) -> tuple[bool, str]:
    if platform.name == host.platform:
        if host.has_c_compiler:
            return True, "CPU library with the host C++ compiler"
        return False, "no C/C++ compiler on this host: install g++ (or set CXX)"
    if platform.name == "windows-x86_64" and host.platform == "linux-x86_64":
        if host.has_mingw:
            return True, "CPU library cross-built with mingw-w64"
        return False, "install g++-mingw-w64-x86-64 to cross-build it here; " + _other_runner(platform)
    return False, _other_runner(platform)


def _cuda_cell(platform: PlatformSpec, spec: CudaSpec, host: Host) -> tuple[bool, str]:
    t = spec.toolchain
    if platform.name != host.platform:
        if platform.os == "windows":
            return False, f"CUDA on Windows {_other_runner(platform)}"
        return False, _other_runner(platform)
    if t.source not in platform.cuda_providers:
        return False, f"CUDA {spec.version}: source {t.source!r} cannot provide {platform.name}; CI builds it"
    if t.source == "pypi":
        return True, f"CUDA {spec.version} from PyPI (NVIDIA's wheels)"
    if t.source == "debian":
        if platform.wheel_arch != "x86_64":
            return False, f"CUDA {spec.version}: the debian source provides amd64 only; CI builds it"
        return True, f"CUDA {spec.version} from Debian {t.suite} (non-free)"
    for version, root in host.system_cuda:
        if version == str(spec.version):
            return True, f"CUDA {spec.version} from the system ({root})"
    where = str(t.path) if t.path is not None else "$CUDA_HOME"
    return False, f"CUDA {spec.version}: no toolchain source on this host (no system CUDA at {where}); CI builds it"


def make_plan(matrix: Matrix, host: Host) -> Plan:
    """Expand the matrix into cells (platform x variant), apply the rules, decide buildability."""
    cells: list[Cell] = []
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
                cells.append(Cell(platform.name, "cpu", None, (), (), None, buildable, reason))
            else:
                buildable, reason = _cuda_cell(platform, spec, host)
                cells.append(
                    Cell(platform.name, variant, spec.version, spec.sass, spec.ptx, spec.toolchain, buildable, reason)
                )
    return Plan(matrix=matrix, host=host, cells=tuple(cells), excluded=tuple(excluded))


PLAN_SCHEMA_VERSION = 1


def _toolchain_doc(t: Toolchain | None) -> str | None:
    return None if t is None else t.describe()


def plan_document(plan: Plan) -> dict[str, object]:
    """The versioned JSON document of ``wheelmatrix plan --format json`` (schemas/plan.schema.json)."""
    m = plan.matrix
    return {
        "schema": "wheelmatrix-plan",
        "version": PLAN_SCHEMA_VERSION,
        "project": m.project.name,
        "matrix": str(m.path),
        "host": {
            "platform": plan.host.platform,
            "c_compiler": plan.host.has_c_compiler,
            "mingw": plan.host.has_mingw,
        },
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
            }
            for c in plan.cells
        ],
        "excluded": [
            {"platform": e.platform, "variant": e.variant, "reason": e.reason, "rule": e.rule} for e in plan.excluded
        ],
    }


def github_matrix(plan: Plan) -> dict[str, object]:
    """The object a GitHub Actions job consumes as ``strategy.matrix: ${{ fromJSON(...) }}``.

    Every cell of the release is a job on its own runner (buildability on *this* host does not
    matter there); schemas/github-matrix.schema.json describes it.
    """
    m = plan.matrix
    return {
        "include": [
            {
                "cell": c.id,
                "platform": c.platform,
                "variant": c.variant,
                "cuda": "" if c.cuda is None else str(c.cuda),
                "runner": m.platform(c.platform).runner,
            }
            for c in plan.cells
        ]
    }
