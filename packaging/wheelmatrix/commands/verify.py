"""``wheelmatrix verify --from STAGE``: prove a stage serves the release and that it installs from there.

Downloads every file back (sha256 compared with the checked file), installs in fresh venvs on every
Python of the matrix (the project from the stage's index alone, its requirements from the production
index alone) and runs the smoke command. Exit codes: 0 verified (recorded in dist/publish-record.json),
7 when a file is missing or differs, or an install or the smoke fails.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wheelmatrix.commands.build import DEFAULT_WORK
from wheelmatrix.commands.publish import add_dist
from wheelmatrix.config import load_matrix
from wheelmatrix.errors import ExitCode
from wheelmatrix.stages.verify import verify

HELP = "download a stage's files back, install them from that index on every Python, run the smoke"


def add_verify_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--deps-index-url",
        default=None,
        metavar="URL",
        help="where the release's requirements install from (default: the last [[publish]] stage's index-url, "
        "the production index); never mixed with the stage's index in one pip run",
    )
    parser.add_argument(
        "--python",
        action="append",
        default=None,
        metavar="X.Y",
        help="verify on this Python (repeatable; default: [check] python, else [matrix] python)",
    )
    parser.add_argument(
        "--work",
        type=Path,
        default=DEFAULT_WORK,
        metavar="DIR",
        help="install logs go to DIR/verify/logs (default: %(default)s)",
    )


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="stage", required=True, metavar="STAGE", help="the [[publish]] stage to verify")
    add_dist(parser)
    add_verify_options(parser)


def run(args: argparse.Namespace) -> int:
    matrix = load_matrix(args.matrix)
    result = verify(
        matrix, args.dist, args.stage, deps_index_url=args.deps_index_url, pythons=args.python, work=args.work
    )
    print(
        f"verified {result.stage}: {len(result.files)} file(s) downloaded back with the checked sha256, "
        f"{result.passed_installs} install(s) passed ({result.seconds:.1f} s); record: {result.record}"
    )
    for name, results in sorted(result.installs.items()):
        for r in results:
            print(f"  {name} Python {r.python}: {r.status}: {r.reason}")
    return int(ExitCode.OK)
