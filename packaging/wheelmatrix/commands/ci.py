"""``wheelmatrix ci``: generate the release workflow from the matrix, check it for drift, reproduce
a cell's CI job here, and the hand-off of cell wheels between runners (export, collect)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wheelmatrix import ci
from wheelmatrix import host as host_mod
from wheelmatrix.commands import add_action
from wheelmatrix.commands.build import DEFAULT_WORK, UsageProblem
from wheelmatrix.config import load_matrix
from wheelmatrix.plan import Cell, make_plan

HELP = "the generated CI release pipeline: generate, check, reproduce CELL, export, collect, pins"


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return add_action(sub, name, help)

    root_help = "the repository root the files go under (default: the matrix's folder)"
    allow_help = "only warn about cells no job can build (default: refuse, as their release never publishes)"
    p = add("generate", f"write {ci.WORKFLOW} and {ci.CIBUILDWHEEL} from the matrix")
    p.add_argument("--root", type=Path, default=None, metavar="DIR", help=root_help)
    p.add_argument("--allow-unbuildable", action="store_true", help=allow_help)
    p = add("check", "fail, showing the difference, when the committed files differ from what the matrix generates")
    p.add_argument("--root", type=Path, default=None, metavar="DIR", help=root_help)
    p.add_argument("--allow-unbuildable", action="store_true", help=allow_help)
    p = add("reproduce", "run here exactly the commands the CI job of CELL runs")
    p.add_argument("cell", metavar="CELL")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p = add("export", "copy a built cell's wheel and result to a folder (what a cell job uploads)")
    p.add_argument("cell", metavar="CELL")
    p.add_argument("--out", type=Path, default=Path(ci.CELLS_OUT), metavar="DIR", help="(default: %(default)s)")
    p.add_argument("--work", type=Path, default=DEFAULT_WORK, metavar="DIR", help="(default: %(default)s)")
    p = add("collect", "take exported cells (hash-checked) as the cell results assemble reads")
    p.add_argument("source", type=Path, metavar="DIR")
    p.add_argument("--work", type=Path, default=DEFAULT_WORK, metavar="DIR", help="(default: %(default)s)")
    p = add("pins", "print the action pin table; --refresh re-resolves it (needs github.com)")
    p.add_argument("--refresh", action="store_true", help="re-resolve every tag with `git ls-remote`")
    p.add_argument("--tag", action="append", default=[], metavar="ACTION=TAG", help="move an action to a new tag")
    p.add_argument("--remote", default="https://github.com", metavar="URL", help="(default: %(default)s)")
    p.add_argument("--table", type=Path, default=None, metavar="PATH", help="(default: the toolkit's data table)")


def _cell(args: argparse.Namespace) -> Cell:
    matrix = load_matrix(args.matrix)
    plan = make_plan(matrix, host_mod.detect(matrix))
    try:
        return plan.cell(args.cell)
    except KeyError:
        raise UsageProblem(
            f"no cell {args.cell} in the plan of {matrix.path}",
            fix="choose from: " + ", ".join(c.id for c in plan.cells),
        ) from None


def run(args: argparse.Namespace) -> int:
    action = args.action
    if action == "pins":
        return _pins(args)
    if action in ("export", "collect"):
        if action == "export":
            wheel, meta = ci.export_cell(args.work, args.cell, args.out)
            print(f"exported {args.cell}: {wheel} ({meta.name})")
        else:
            results = ci.collect_cells(args.source, args.work)
            print(f"collected {len(results)} cells into {args.work}: {', '.join(r.cell_id for r in results)}")
        return 0
    if action == "reproduce":
        cell = _cell(args)
        commands = ci.cell_commands(cell.id, "" if cell.cuda is None else str(cell.cuda))
        if args.matrix != Path("matrix.toml"):
            commands = [[*c[:2], "--matrix", str(args.matrix), *c[2:]] for c in commands]
        from wheelmatrix.cli import main  # noqa: PLC0415 - the very CLI the job runs, in this process

        for argv in commands:
            print("$ " + " ".join(argv), flush=True)
            if args.dry_run:
                continue
            rc = main(argv[1:])
            if rc:
                print(f"error: `{' '.join(argv)}` exited with {rc} (as the CI job would)", file=sys.stderr)
                return rc
        return 0
    matrix = load_matrix(args.matrix)
    if not args.allow_unbuildable:
        ci.require_buildable(matrix)
    nowhere = ci.unbuildable_cells(matrix)
    if nowhere:
        print(
            f"warning: {len(nowhere)} cells no job of the workflow can build (their jobs will fail, and the release "
            "with them; exclude them with a [[rules]] entry or give them a source that can):",
            file=sys.stderr,
        )
        for cell_id, reason in nowhere:
            print(f"  {cell_id}: {reason}", file=sys.stderr)
    if action == "generate":
        for path in ci.generate(matrix, args.root):
            print(f"wrote {path}")
        return 0
    diffs = ci.drift(matrix, args.root)
    if diffs:
        raise ci.CiError(
            f"the committed CI files differ from what {matrix.path} generates:\n" + "\n".join(diffs).rstrip("\n"),
            fix="run `wheelmatrix ci generate` and commit the result",
        )
    print(f"{ci.WORKFLOW} and {ci.CIBUILDWHEEL} match {matrix.path}")
    return 0


def _pins(args: argparse.Namespace) -> int:
    table = args.table or ci.pins_path()
    if args.refresh:
        tags = dict(t.split("=", 1) for t in args.tag if "=" in t)
        if len(tags) != len(args.tag):
            raise UsageProblem("--tag takes ACTION=TAG", fix="e.g. --tag actions/checkout=v4.3.0")
        changes = ci.refresh_pins(table, base=args.remote, tags=tags, cibuildwheel_pins=_cibuildwheel_pins())
        for line in changes or ["every pin is current"]:
            print(line)
        print(f"wrote {table}; now run `wheelmatrix ci generate`")
        return 0
    pins = ci.load_pins(table)
    for a in pins.actions:
        print(f"{a.action}@{a.sha}  # {a.tag}")
    for i in pins.images:
        print(f"{i.name}: {i.image}  # {i.tag}")
    return 0


def _cibuildwheel_pins() -> str | None:
    """The manylinux image pins of the installed cibuildwheel, when it is installed."""
    from importlib import resources  # noqa: PLC0415

    try:
        return resources.files("cibuildwheel").joinpath("resources/pinned_docker_images.cfg").read_text("utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        return None
