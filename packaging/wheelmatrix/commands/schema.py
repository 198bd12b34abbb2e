"""``wheelmatrix schema``: print a JSON Schema (matrix.toml, the plan document, the GitHub matrix)."""

from __future__ import annotations

import argparse

from wheelmatrix import schema

HELP = "print the JSON Schema of matrix.toml, of the plan document or of the GitHub matrix"


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", choices=schema.SCHEMAS, nargs="?", default="matrix")


def run(args: argparse.Namespace) -> int:
    doc = schema.matrix_schema() if args.name == "matrix" else schema.committed(args.name)
    print(schema.render(doc), end="")
    return 0
