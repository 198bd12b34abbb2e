"""``wheelmatrix release``: check, then publish and verify each [[publish]] stage in order.

Stops at the first failure with what to run next (exit 7; a failed check is 7 too: nothing was
published); running it again resumes (files already on an index are skipped).
"""

from __future__ import annotations

import argparse

from wheelmatrix.commands.publish import add_dist
from wheelmatrix.commands.verify import add_verify_options
from wheelmatrix.config import load_matrix
from wheelmatrix.errors import ExitCode
from wheelmatrix.stages.publish import PublishResult
from wheelmatrix.stages.ship import ship

HELP = "check -> publish the first stage -> verify it -> publish the next ... (stops at the first failure)"


def register(parser: argparse.ArgumentParser) -> None:
    add_dist(parser)
    add_verify_options(parser)


def run(args: argparse.Namespace) -> int:
    matrix = load_matrix(args.matrix)
    result = ship(matrix, args.dist, work=args.work, deps_index_url=args.deps_index_url, pythons=args.python)
    for step in result.steps:
        if isinstance(step, PublishResult):
            print(f"published {step.stage}: {len(step.uploaded)} uploaded, {len(step.skipped)} already there")
        else:
            print(f"verified {step.stage}: {len(step.files)} file(s), {step.passed_installs} install(s) passed")
    print(f"released {result.project} {result.version} to {', '.join(s.name for s in matrix.publish)}")
    return int(ExitCode.OK)
