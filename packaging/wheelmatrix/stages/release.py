"""The hand-off from the cell builds to the wheels of a release: which cell wheels feed assemble,
which cells need another host, then assemble + repair + the build record.

Callable from a test: :func:`assemble_release` takes the plan and the folders, and returns a
typed :class:`Release`; ``wheelmatrix assemble`` only parses arguments and prints it.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wheelmatrix.errors import PackageError
from wheelmatrix.plan import Plan
from wheelmatrix.stages.assemble import CellWheel, FinalWheel, assemble_all
from wheelmatrix.stages.cells import CellResult, read_results_file
from wheelmatrix.stages.record import make_record, write_record
from wheelmatrix.wheelfile import WheelName

# where each repair tool runs
_RUNS_ON = {
    "auditwheel": {"linux"},
    "delvewheel": {"linux", "windows"},
    "delocate": {"macos"},
    "none": {"linux", "windows", "macos"},
}


def _host_os() -> str:
    return "windows" if sys.platform == "win32" else "macos" if sys.platform == "darwin" else "linux"


@dataclass(frozen=True)
class Release:
    wheels: tuple[FinalWheel, ...]
    other_host: tuple[tuple[str, str], ...]  # (cell id, why another host builds or repairs it)
    record: Path  # dist/build-record.json


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
    other_host: list[tuple[str, str]] = [(c.id, c.reason) for c in plan.cells if not c.buildable]
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


def assemble_release(
    plan: Plan,
    work: Path,
    dist: Path,
    *,
    repair: bool = True,
    exclude: Sequence[str] = (),
    timeout: float = 900,
) -> Release:
    """Cell results in ``work`` -> the repaired wheels in ``dist`` and ``dist/build-record.json``."""
    start = time.monotonic()
    results, cells_wall = read_results_file(work)
    cells, other_host = cell_wheels(plan, results, repair=repair)
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
    return Release(tuple(finals), tuple(other_host), write_record(dist, record))
