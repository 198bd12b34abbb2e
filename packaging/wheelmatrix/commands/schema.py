"""``wheelmatrix schema``: print a JSON Schema (matrix.toml, the plan document, the GitHub matrix)."""

from __future__ import annotations

import argparse

from wheelmatrix import schema
from wheelmatrix.stages import record

HELP = "print the JSON Schema of matrix.toml, the plan document, the GitHub matrix or the build record"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=(*schema.SCHEMAS, "build-record"), nargs="?", default="matrix")


def run(args: argparse.Namespace) -> int:
    if args.name == "build-record":
        doc = record.SCHEMA
    else:
        doc = schema.matrix_schema() if args.name == "matrix" else schema.committed(args.name)
    print(schema.render(doc), end="")
    return 0
