"""The ``wheelmatrix`` command line: ``wheelmatrix <verb> [--matrix PATH] [-v|-q] ...``.

This is the one place where errors become output: every :class:`WheelmatrixError` is printed as
one message with its fix line and turned into its stable exit code; no traceback reaches users.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from wheelmatrix import __version__
from wheelmatrix.errors import ExitCode, WheelmatrixError

# verb -> module in wheelmatrix.commands that defines `register(parser)` and `run(args) -> int`
COMMANDS: dict[str, str] = {
    "build": "wheelmatrix.commands.build",
    "assemble": "wheelmatrix.commands.assemble",
    "check": "wheelmatrix.commands.check",
    "ci": "wheelmatrix.commands.ci",
    "plan": "wheelmatrix.commands.plan",
    "schema": "wheelmatrix.commands.schema",
    "toolchain": "wheelmatrix.commands.toolchain",
    "publish": "wheelmatrix.commands.publish",
    "verify": "wheelmatrix.commands.verify",
    "release": "wheelmatrix.commands.release",
}


class Command(Protocol):
    HELP: str

    def register(self, parser: argparse.ArgumentParser) -> None: ...

    def run(self, args: argparse.Namespace) -> int: ...


def _command(verb: str) -> Command:
    module: Command = importlib.import_module(COMMANDS[verb])
    return module


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--matrix",
        type=Path,
        default=Path("matrix.toml"),
        metavar="PATH",
        help="the release matrix (default: ./matrix.toml)",
    )
    verbosity = common.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="count", default=0, help="say more (echo commands)")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="say only errors and results")
    parser = argparse.ArgumentParser(
        prog="wheelmatrix",
        description="Release engineering for Python packages whose speed comes from CUDA kernels.",
    )
    parser.add_argument("--version", action="version", version=f"wheelmatrix {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", required=True)
    for verb in COMMANDS:
        command = _command(verb)
        sp = sub.add_parser(verb, parents=[common], help=command.HELP, description=command.HELP)
        command.register(sp)
    return parser


def _configure_logging(args: argparse.Namespace) -> None:
    level = logging.WARNING if args.quiet else logging.DEBUG if args.verbose else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)


def _terminated(signum: int, frame: object) -> None:
    # SIGTERM (what CI runners send when a job is cancelled) is handled like Ctrl-C: the running
    # builds are killed with all their children, the caches are left consistent, exit 130
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _configure_logging(args)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        return _main(args)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _main(args: argparse.Namespace) -> int:
    try:
        return _command(args.verb).run(args)
    except WheelmatrixError as exc:
        print(exc.render(), file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        print("error: interrupted; caches are left consistent (partial work is discarded)", file=sys.stderr)
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        return int(ExitCode.OK)
