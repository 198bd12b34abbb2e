"""``wheelmatrix plan``: the cells of the release and whether this host builds each."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from wheelmatrix import host as host_mod
from wheelmatrix.commands.build import UsageProblem
from wheelmatrix.config import load_matrix
from wheelmatrix.plan import Plan, expected_wheels, github_matrix, make_plan, plan_document

HELP = "expand matrix.toml into build cells and say which this host can build"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=("table", "json", "github"),
        default="table",
        help="table (default), json (versioned plan document), github (strategy.matrix object)",
    )
    parser.add_argument(
        "--wheels",
        action="store_true",
        help="print the exact wheel file names the release will have, one a line (the expected-wheels oracle)",
    )


def load_plan(args: argparse.Namespace) -> Plan:
    matrix = load_matrix(args.matrix)
    return make_plan(matrix, host_mod.detect(matrix))


def print_table(plan: Plan, console: Console) -> None:
    table = Table(title=f"{plan.matrix.project.name}: {len(plan.cells)} cells, host {plan.host.platform}")
    for col in ("cell", "python", "cuda", "sass", "ptx", "toolchain", "here", "why"):
        table.add_column(col, overflow="fold")
    for c in plan.cells:
        table.add_row(
            c.id,
            str(c.python),
            str(c.cuda or "-"),
            " ".join(map(str, c.sass)) or "-",
            " ".join(map(str, c.ptx)) or "-",
            c.toolchain.describe() if c.toolchain else "-",
            "[green]yes[/]" if c.buildable else "[yellow]no[/]",
            c.reason,
        )
    console.print(table)
    for e in plan.excluded:
        console.print(f"excluded {e.platform}-{e.variant}: {e.reason}")
    if plan.matrix.project.python.api != "none":
        have = ", ".join(f"{v} ({p})" for v, p in plan.host.pythons) or "none"
        console.print(f"CPythons of matrix.python on this host: {have}", highlight=False)
    console.print(f"{len(plan.buildable)} of {len(plan.cells)} cells build on this host")


def run(args: argparse.Namespace) -> int:
    plan = load_plan(args)
    if args.wheels:
        wheels = expected_wheels(plan)
        if wheels is None:
            raise UsageProblem(
                '[packaging] split = "auto" decides fat or split from the built libraries\' sizes: the wheel '
                "names are known only after `wheelmatrix assemble`",
                fix='set split = "fat", "per-cuda-major" or "standalone" in matrix.toml to fix them in advance',
            )
        for w in wheels:
            print(w.filename)
        return 0
    if args.format == "json":
        print(json.dumps(plan_document(plan), indent=2))
    elif args.format == "github":
        print(json.dumps(github_matrix(plan), separators=(",", ":")))
    else:
        print_table(plan, Console(width=200 if not Console().is_terminal else None))
    return 0
