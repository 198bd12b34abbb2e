"""``wheelmatrix publish --to STAGE``: upload every checked file of the release to one ``[[publish]]`` stage.

Idempotent and resumable: files already on the index with the same sha256 are skipped, missing ones
are uploaded (twine) and read back. Exit codes: 0 when the stage holds every file of the release,
7 when a gate refuses or an upload fails (the message says which files are missing and what to run).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from wheelmatrix.config import load_matrix
from wheelmatrix.errors import ExitCode
from wheelmatrix.stages.publish import publish

HELP = "upload the checked release to one [[publish]] stage (same bytes, resumable, gated)"
log = logging.getLogger("wheelmatrix")


def add_dist(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dist",
        type=Path,
        default=Path("dist"),
        metavar="DIR",
        help="the release: wheels, check-report.json, publish-record.json (default: %(default)s)",
    )


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", required=True, metavar="STAGE", help="the [[publish]] stage (testpypi, pypi, ...)")
    add_dist(parser)


def run(args: argparse.Namespace) -> int:
    matrix = load_matrix(args.matrix)
    result = publish(matrix, args.dist, args.to)
    print(
        f"published to {result.stage}: {len(result.uploaded)} uploaded, {len(result.skipped)} already there with the "
        f"same sha256 ({result.seconds:.1f} s); record: {result.record}"
    )
    if result.attested:
        print(f"uploaded with their attestations (twine --attestations): {', '.join(result.attested)}")
    print(f"next: wheelmatrix verify --from {result.stage}")
    return int(ExitCode.OK)
