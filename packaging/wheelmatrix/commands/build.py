"""``wheelmatrix build``: build every cell this host can (or the ``--cell`` ones) into cell wheels."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from wheelmatrix import host as host_mod
from wheelmatrix import toolchains
from wheelmatrix.config import load_matrix
from wheelmatrix.errors import ExitCode, WheelmatrixError
from wheelmatrix.model import CudaSpec, Matrix
from wheelmatrix.plan import Cell, Plan, make_plan
from wheelmatrix.stages.cells import (
    DEFAULT_TIMEOUT,
    BuildOptions,
    CellResult,
    Provider,
    Toolchain,
    build_cells,
)
from wheelmatrix.toolchains import registry
from wheelmatrix.toolchains.cache import cache_root

HELP = "build the plan's cells into cell wheels (cached, in parallel, each with a timeout and a log)"
DEFAULT_WORK = Path("build/wheelmatrix")


class UsageProblem(WheelmatrixError):
    """A command-line value that cannot work (an unknown cell, --jobs 0)."""

    exit_code = ExitCode.USAGE


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cell",
        action="append",
        default=[],
        metavar="ID",
        help="build only this cell (repeatable), e.g. linux-x86_64-cuda124",
    )
    parser.add_argument(
        "--jobs",
        "-j",
        default="auto",
        metavar="N|auto",
        help="cells at once; auto (default) divides the cores and memory between cells, build jobs and"
        " nvcc threads ([build] memory-per-compile of matrix.toml bounds it)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="kill a cell's build after this long (default: %(default)g)",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=DEFAULT_WORK,
        metavar="DIR",
        help="per-cell folders, logs and cells.json (default: %(default)s)",
    )
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument(
        "--cache", type=Path, default=None, metavar="DIR", help="cell wheel cache (default: <work>/cache)"
    )
    cache.add_argument("--no-cache", action="store_true", help="build every cell, ignore and fill no cache")
    parser.add_argument("--offline", action="store_true", help="use only toolchains already provided (no downloads)")
    env = parser.add_mutually_exclusive_group()
    env.add_argument(
        "--no-isolation", action="store_true", help="build in this environment (scikit-build-core must be installed)"
    )
    env.add_argument(
        "--fresh-env",
        action="store_true",
        help="a fresh isolated build environment per cell (default: one prepared environment, reused)",
    )
    parser.add_argument("--no-compiler-cache", action="store_true", help="compile everything anew (no ccache launcher)")
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="fail at once (exit 5) when another run holds the work folder or cell cache, instead of waiting",
    )


def parse_jobs(value: str) -> int | None:
    """``--jobs``: a number of cells at once, or None for auto."""
    if value == "auto":
        return None
    try:
        jobs = int(value)
    except ValueError:
        raise UsageProblem(f"--jobs {value}: not a number", fix="pass --jobs auto or --jobs 1 or more") from None
    if jobs < 1:
        raise UsageProblem(f"--jobs {jobs}: needs at least 1", fix="pass --jobs auto or --jobs 1 or more")
    return jobs


def select_cells(plan: Plan, wanted: Sequence[str]) -> list[Cell]:
    if not wanted:
        return list(plan.cells)
    known = {c.id: c for c in plan.cells}
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise UsageProblem(
            f"no cell {', '.join(unknown)} in the plan of {plan.matrix.path}",
            fix="choose from: " + ", ".join(known),
        )
    return [known[w] for w in dict.fromkeys(wanted)]


def _provider(matrix: Matrix, offline: bool) -> Provider:
    lock = toolchains.lock_path_of(matrix)
    registry.record(toolchains.Cache(), matrix)  # so that `toolchain prune` from other projects spares it

    def provide(spec: CudaSpec) -> Toolchain:
        return toolchains.provide(spec, lock_path=lock if lock.is_file() else None, offline=offline)

    return provide


def result_table(results: Sequence[CellResult]) -> Table:
    table = Table(title="cells")
    for col in ("cell", "result", "time", "wheel", "compiler cache", "reason"):
        table.add_column(col, overflow="fold")
    colors = {"built": "green", "cached": "cyan", "failed": "red", "skipped": "yellow"}
    for r in results:
        size = f"{r.wheel_size / 2**20:.2f} MiB" if r.wheel_size else "-"
        rate = r.compiler_cache.get("hit_rate") if r.compiler_cache else None
        hits = "-"
        if r.compiler_cache:
            hits = f"{rate:.0%}" if isinstance(rate, float) else "no compile" if r.compiler_cache["enabled"] else "off"
        table.add_row(r.cell_id, f"[{colors[r.status]}]{r.status}[/]", f"{r.duration:.1f} s", size, hits, r.reason)
    return table


def run(args: argparse.Namespace) -> int:
    matrix = load_matrix(args.matrix)
    plan = make_plan(matrix, host_mod.detect(matrix))
    cells = select_cells(plan, args.cell)
    jobs = parse_jobs(str(args.jobs))
    work: Path = args.work
    cache = None if args.no_cache else (args.cache or work / "cache")
    console = Console(stderr=True, quiet=args.quiet, log_path=False, soft_wrap=True)
    buildable = [c for c in cells if c.buildable]
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=args.quiet or not console.is_terminal,
    )
    task = progress.add_task("building cells", total=len(buildable))

    def on_event(cell_id: str, result: CellResult | None, message: str) -> None:
        if not cell_id:  # about the whole build (the schedule)
            progress.console.log(message, markup=False, highlight=False)
            return
        if result is None:
            progress.console.log(f"{cell_id}: building")
            return
        if result.status != "skipped":
            progress.advance(task)
            progress.console.log(
                f"{cell_id}: {result.status} in {result.duration:.1f} s"
                + (f" ({result.reason})" if result.status == "failed" else "")
                + (f", compiler cache {result.compiler_cache['reason']}" if result.compiler_cache else ""),
                markup=False,
                highlight=False,
            )

    def on_wait(message: str) -> None:
        console.print(message, markup=False, highlight=False)

    options = BuildOptions(
        work=work,
        cache=cache,
        jobs=jobs,
        timeout=args.timeout,
        isolation=not args.no_isolation,
        build_envs=None if args.fresh_env else cache_root() / "build-envs",
        compiler_cache=None if args.no_compiler_cache else cache_root() / "compiler-cache",
        memory_per_compile=matrix.build.memory_per_compile,
        wait=not args.no_wait,
        on_wait=on_wait,
        offline=args.offline,
        on_event=on_event,
    )
    with progress:
        results = build_cells(plan.build_specs(cells), options, _provider(matrix, args.offline))
    out = Console(width=200 if not sys.stdout.isatty() else None)
    if not args.quiet:
        out.print(result_table(results))
    errors = Console(stderr=True, soft_wrap=True)  # failures are said even with -q
    for r in results:
        if r.status == "failed":
            detail = f"\n{escape(r.tail)}" if r.tail else ""
            errors.print(
                f"[red]{r.cell_id} failed[/]: {escape(r.reason)} (log: {escape(str(r.log))}){detail}",
                markup=True,
                highlight=False,
            )
    failed = [r for r in results if r.status == "failed"]
    other = [r for r in results if r.status == "skipped"]
    if other and not args.quiet:
        out.print(f"{len(other)} cells need another host (reasons in the table); CI builds them")
    if failed:
        errors.print(
            f"error: {len(failed)} of {len(buildable)} cells failed: {', '.join(r.cell_id for r in failed)}",
            markup=False,
        )
        return int(ExitCode.FAILURE)
    return 0
