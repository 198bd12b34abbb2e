"""The CLI's commands: one module each, with ``HELP``, ``register(parser)`` and ``run(args)``."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_action(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help: str
) -> argparse.ArgumentParser:
    """An ACTION of a command with actions (``ci generate``, ``toolchain lock``): ``--matrix`` is also
    accepted after the action; the default is the one given before it."""
    p = sub.add_parser(name, help=help, description=help)
    p.add_argument("--matrix", type=Path, default=argparse.SUPPRESS, metavar="PATH", help=argparse.SUPPRESS)
    return p
