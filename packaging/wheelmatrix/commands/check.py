"""``wheelmatrix check``: prove the wheels of a release publishable; print the findings, write the report.

Exit codes: 0 when no finding fails (``--strict``: no finding at all), 1 when some do; a check that
cannot run (no build record, a missing tool) exits with its error's code (6, 8).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from wheelmatrix import host as host_mod
from wheelmatrix.commands.build import DEFAULT_WORK
from wheelmatrix.config import load_matrix
from wheelmatrix.errors import ExitCode
from wheelmatrix.plan import expected_wheels, make_plan
from wheelmatrix.stages.check import CheckResult, FileReport, check_release

HELP = "check every wheel of the release is publishable (PyPI's rules, ABI, GPU archs, hygiene, installs)"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "wheels",
        nargs="*",
        type=Path,
        metavar="WHEEL",
        help="the wheels to check (default: every wheel DIST/build-record.json lists)",
    )
    parser.add_argument(
        "--dist",
        type=Path,
        default=Path("dist"),
        metavar="DIR",
        help="where the wheels, build-record.json and the reports are (default: %(default)s)",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=DEFAULT_WORK,
        metavar="DIR",
        help="the check's caches and install logs go to DIR/check (default: %(default)s)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="warnings fail too (as `twine check --strict`), not only errors"
    )
    parser.add_argument(
        "--format", choices=("table", "json"), default="table", help="table for people, json for machines"
    )
    parser.add_argument("--no-install", action="store_true", help="skip the install checks (static checks only)")
    parser.add_argument(
        "--python",
        action="append",
        default=None,
        metavar="X.Y",
        help="install-check on this Python (repeatable; default: [check] python, else [matrix] python)",
    )


def _installs(f: FileReport) -> str:
    marks = {"passed": "ok", "failed": "FAILED", "skipped": "skipped"}
    return " ".join(f"{i.python}:{marks[i.status]}" for i in f.installs) or "-"


def _archs(f: FileReport) -> str:
    parts = []
    for lib in f.libraries:
        if lib.backend != "cuda":
            parts.append(f"{lib.file}: cpu")
            continue
        sass = ",".join(map(str, lib.sass)) or "-"
        ptx = ",".join(map(str, lib.ptx)) or "-"
        parts.append(f"{lib.file}: CUDA {lib.cuda} sass {sass} ptx {ptx}")
    return "\n".join(parts) or "-"


def files_table(result: CheckResult) -> Table:
    table = Table(title="checked files")
    for col in ("wheel", "size", "% of limit", "libraries (read from the binaries)", "installs"):
        table.add_column(col, overflow="fold")
    for f in result.files:
        table.add_row(
            escape(f.file),
            f"{f.size / 2**20:.2f} MiB",
            f"{100 * f.size / f.limit:.1f} %" if f.limit else "-",
            escape(_archs(f)),
            escape(_installs(f)),
        )
    return table


def print_result(result: CheckResult, out: Console) -> None:
    out.print(files_table(result))
    for f in result.files:
        for note in f.notes:
            out.print(f"note: {f.file}: {note}", highlight=False, markup=False)
        skipped: dict[str, list[str]] = {}
        for i in f.installs:
            if i.status == "skipped" and i.reason != "--no-install":
                skipped.setdefault(i.reason, []).append(i.python)
        for reason, pythons in skipped.items():
            out.print(f"install {f.file}: skipped on {', '.join(pythons)}: {reason}", highlight=False, markup=False)
    if result.needs_other_host:
        out.print(f"{len(result.needs_other_host)} cells need another host (their wheels are checked there)")
    failing = set(result.failing)
    for finding in result.findings:
        fails = "fails" if finding in failing else "does not fail without --strict"
        out.print(
            f"\n{finding.code} {finding.severity} ({fails}) {finding.file or 'the release'}",
            highlight=False,
            markup=False,
        )
        for key, text in (("what", finding.what), ("why", finding.why), ("fix", finding.fix)):
            out.print(f"  {key}: {text}", highlight=False, markup=False, soft_wrap=True)
    timing = f"static checks {result.static_seconds:.2f} s, installs {result.install_seconds:.2f} s"
    where = f"; report: {result.report}" if result.report else ""
    if result.passed:
        warned = f", {len(result.findings)} warnings (pass without --strict)" if result.findings else ""
        out.print(f"\ncheck passed: {len(result.files)} file(s){warned} ({timing}){where}", highlight=False)
    else:
        strict = " (--strict: warnings fail too)" if result.strict else ""
        out.print(
            f"\ncheck failed: {len(result.failing)} finding(s) fail{strict}, {len(result.files)} file(s) "
            f"checked ({timing}){where}",
            highlight=False,
        )


def run(args: argparse.Namespace) -> int:
    matrix = load_matrix(args.matrix)
    # the expected-wheels oracle (plan --wheels): none for named wheels, split = "auto" or a dynamic version
    oracle = None
    if not args.wheels and matrix.project.version is not None:
        oracle = expected_wheels(make_plan(matrix, host_mod.detect(matrix)))
    console = Console(stderr=True, quiet=args.quiet, soft_wrap=True)
    with console.status("checking wheels", spinner="dots") as status:
        result = check_release(
            matrix,
            args.dist,
            list(args.wheels),
            strict=args.strict,
            install=not args.no_install,
            work=args.work,
            pythons=args.python,
            progress=status.update,
            expected=None if oracle is None else [w.filename for w in oracle if w.buildable],
            allowed=[w.filename for w in oracle or ()],
        )
    if args.format == "json":
        print(json.dumps(result.to_json(), indent=1))
    elif not args.quiet or not result.passed:
        print_result(result, Console(width=200 if not sys.stdout.isatty() else None))
    return int(ExitCode.OK if result.passed else ExitCode.FAILURE)
