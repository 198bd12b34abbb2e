"""``wheelmatrix assemble``: cell wheels -> the final wheels in dist/, repaired, size-checked, recorded."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from wheelmatrix import host as host_mod
from wheelmatrix.stages.assemble import CellWheel, FinalWheel, assemble_all
from wheelmatrix.stages.cells import read_results_file
from wheelmatrix.stages.record import make_record, write_record
from wheelmatrix.wheelfile import WheelName
from wheelmatrix.commands.build import DEFAULT_WORK
from wheelmatrix.config import load_matrix
from wheelmatrix.errors import PackageError
from wheelmatrix.plan import make_plan

HELP = "merge the cell wheels into the wheels to publish (fat or split by size), repair them, write dist/"

_RUNS_HERE = {
    "auditwheel": {"linux"},
    "delvewheel": {"linux", "windows"},
    "delocate": {"macos"},
    "none": {"linux", "windows", "macos"},
}


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--work",
        type=Path,
        default=DEFAULT_WORK,
        metavar="DIR",
        help="where `wheelmatrix build` put the cells (default: %(default)s)",
    )
    parser.add_argument(
        "--dist",
        type=Path,
        default=Path("dist"),
        metavar="DIR",
        help="where the final wheels and build-record.json go (default: %(default)s)",
    )
    parser.add_argument(
        "--no-repair",
        action="store_true",
        help="skip auditwheel/delvewheel (the wheels keep their linux_* tag: not publishable)",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="SONAME",
        help="a library a declared dependency supplies: never vendor it (repeatable, globs)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=900,
        metavar="SECONDS",
        help="limit for each repair tool run (default: %(default)g)",
    )


def _host_os() -> str:
    return "windows" if sys.platform == "win32" else "macos" if sys.platform == "darwin" else "linux"


def wheel_table(wheels: list[FinalWheel]) -> Table:
    table = Table(title="wheels")
    for col in ("wheel", "size", "% of limit", "tag", "libraries"):
        table.add_column(col, overflow="fold")
    for w in wheels:
        table.add_row(
            w.path.name,
            f"{w.size / 2**20:.2f} MiB",
            f"{w.percent:.1f} %",
            w.tag + (f" (rated {w.rated})" if w.rated and w.rated != w.tag else ""),
            " ".join(w.libraries),
        )
    return table


def run(args: argparse.Namespace) -> int:
    start = time.monotonic()
    matrix = load_matrix(args.matrix)
    plan = make_plan(matrix, host_mod.detect(matrix))
    results, cells_wall = read_results_file(args.work)
    in_plan = {c.id for c in plan.cells}
    results = [r for r in results if r.cell_id in in_plan]
    console = Console(stderr=True, quiet=args.quiet, soft_wrap=True)
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
        if not args.no_repair and _host_os() not in _RUNS_HERE[spec.repair]:
            other_host.append(
                (r.cell_id, f"its wheels are repaired by {spec.repair}, which needs a {spec.runner} runner")
            )
            continue
        path = Path(r.wheel)
        if not path.is_file():
            raise PackageError(f"the wheel of cell {r.cell_id} is gone: {path}", fix="run `wheelmatrix build` again")
        cells.append(CellWheel(r.cell_id, r.platform, r.variant, path))
    with console.status("assembling and repairing wheels", spinner="dots"):
        finals = assemble_all(
            matrix, cells, args.dist, repair=not args.no_repair, exclude=args.exclude, timeout=args.timeout
        )
    version = WheelName.parse(finals[0].path.name).version if finals else "0"
    record = make_record(
        matrix,
        results,
        finals,
        version=version,
        needs_other_host=other_host,
        cells_wall_seconds=cells_wall,
        assemble_seconds=time.monotonic() - start,
    )
    path = write_record(args.dist, record)
    if not args.quiet:
        out = Console(width=200 if not sys.stdout.isatty() else None)
        out.print(wheel_table(finals))
        if other_host:
            out.print("cells that need another host:")
            for cell_id, reason in other_host:
                out.print(f"  {cell_id}: {reason}", highlight=False)
        out.print(f"build record: {path}", highlight=False)
    return 0
