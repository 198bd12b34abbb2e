"""``wheelmatrix assemble``: cell wheels -> the final wheels in dist/, repaired, size-checked, recorded."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from wheelmatrix import host as host_mod
from wheelmatrix.commands.build import DEFAULT_WORK
from wheelmatrix.config import load_matrix
from wheelmatrix.plan import make_plan
from wheelmatrix.stages.assemble import FinalWheel
from wheelmatrix.stages.release import assemble_release

HELP = "merge the cell wheels into the wheels to publish (fat or split by size), repair them, write dist/"


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
    matrix = load_matrix(args.matrix)
    plan = make_plan(matrix, host_mod.detect(matrix))
    console = Console(stderr=True, quiet=args.quiet, soft_wrap=True)
    with console.status("assembling and repairing wheels", spinner="dots"):
        release = assemble_release(
            plan, args.work, args.dist, repair=not args.no_repair, exclude=args.exclude, timeout=args.timeout
        )
    if not args.quiet:
        out = Console(width=200 if not sys.stdout.isatty() else None)
        out.print(wheel_table(list(release.wheels)))
        if release.other_host:
            out.print("cells that need another host:")
            for cell_id, reason in release.other_host:
                out.print(f"  {cell_id}: {reason}", highlight=False)
        if release.reused:
            out.print("unchanged inputs: the wheels already in the dist folder were kept (no repair re-run)")
        out.print(f"build record: {release.record}", highlight=False)
    return 0
