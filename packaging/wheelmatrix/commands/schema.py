"""``wheelmatrix schema``: print a JSON Schema (matrix.toml, the plan document, the GitHub matrix,
the build record, the check report, the publish record)."""

from __future__ import annotations

import argparse

from wheelmatrix import schema
from wheelmatrix.stages import record

HELP = "print the JSON Schema of matrix.toml, the plan, the GitHub matrix, the build record, the check report or the publish record"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "name", choices=(*schema.SCHEMAS, "build-record", "check-report", "publish-record"), nargs="?", default="matrix"
    )


def run(args: argparse.Namespace) -> int:
    if args.name == "build-record":
        doc = record.SCHEMA
    elif args.name == "matrix":
        doc = schema.matrix_schema()
    else:
        doc = schema.committed(args.name)
    print(schema.render(doc), end="")
    return 0
