"""``wheelmatrix plan``: the cells of the release and whether this host builds each."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from wheelmatrix import host as host_mod
from wheelmatrix.config import load_matrix
from wheelmatrix.plan import Plan, github_matrix, make_plan, plan_document

HELP = "expand matrix.toml into build cells and say which this host can build"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--format",
        choices=("table", "json", "github"),
        default="table",
        help="table (default), json (versioned plan document), github (strategy.matrix object)",
    )


def load_plan(args: argparse.Namespace) -> Plan:
    matrix = load_matrix(args.matrix)
    return make_plan(matrix, host_mod.detect(matrix))


def print_table(plan: Plan, console: Console) -> None:
    table = Table(title=f"{plan.matrix.project.name}: {len(plan.cells)} cells, host {plan.host.platform}")
    for col in ("cell", "cuda", "sass", "ptx", "toolchain", "here", "why"):
        table.add_column(col, overflow="fold")
    for c in plan.cells:
        table.add_row(
            c.id,
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
    console.print(f"{len(plan.buildable)} of {len(plan.cells)} cells build on this host")


def run(args: argparse.Namespace) -> int:
    plan = load_plan(args)
    if args.format == "json":
        print(json.dumps(plan_document(plan), indent=2))
    elif args.format == "github":
        print(json.dumps(github_matrix(plan), separators=(",", ":")))
    else:
        print_table(plan, Console(width=200 if not Console().is_terminal else None))
    return 0
