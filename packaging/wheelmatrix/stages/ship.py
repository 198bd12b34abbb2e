"""The whole staged release, in order: check, then for each ``[[publish]]`` stage publish and
verify; the first failure stops it, and its error says what to run next.

Every step is idempotent (a stage already holding the files skips their upload; a verification is
re-run), so running the release again after fixing what stopped it finishes it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from wheelmatrix.errors import PublishError
from wheelmatrix.model import Matrix
from wheelmatrix.stages.check import check_release
from wheelmatrix.stages.publish import PublishResult, load_release, publish
from wheelmatrix.stages.verify import VerifyResult, verify

log = logging.getLogger("wheelmatrix")


@dataclass(frozen=True)
class ShipResult:
    project: str
    version: str
    steps: tuple[PublishResult | VerifyResult, ...]


def _then(exc: PublishError, steps: Sequence[str]) -> PublishError:
    """``exc`` with the rest of the release after its fix: what to run once it is fixed."""
    rest = ", then ".join(steps)
    then = f"{rest} (or `wheelmatrix release` again: finished steps are skipped)"
    exc.fix = f"{exc.fix}\n  then: {then}" if exc.fix else then
    return exc


def ship(
    matrix: Matrix,
    dist: Path,
    *,
    work: Path | None = None,
    deps_index_url: str | None = None,
    pythons: Sequence[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> ShipResult:
    """check -> publish first stage -> verify it -> publish the next -> verify it ..."""
    say = progress or log.info
    say("check: every file of the release")
    checked = check_release(matrix, dist, work=work, pythons=pythons, progress=say)
    if not checked.passed:
        codes = sorted({f.code for f in checked.failing})
        raise PublishError(
            f"check failed ({', '.join(codes)}): nothing was published",
            fix="run `wheelmatrix check` to see each finding with its fix; correct, rebuild, release again",
        )
    release = load_release(matrix, dist)
    if release.elsewhere:
        say(
            f"note: {len(release.elsewhere)} cell(s) are built on other hosts and are not in this release's files: "
            + ", ".join(c for c, _ in release.elsewhere)
        )
    steps: list[PublishResult | VerifyResult] = []
    names = [s.name for s in matrix.publish]
    for i, stage in enumerate(matrix.publish):
        rest = [f"`wheelmatrix verify --from {stage.name}`"] + [
            f"`wheelmatrix publish --to {n}` and `wheelmatrix verify --from {n}`" for n in names[i + 1 :]
        ]
        try:
            steps.append(publish(matrix, dist, stage.name, release=release, progress=say))
        except PublishError as exc:
            raise _then(exc, [f"`wheelmatrix publish --to {stage.name}`", *rest]) from None
        try:
            steps.append(
                verify(
                    matrix,
                    dist,
                    stage.name,
                    deps_index_url=deps_index_url,
                    pythons=pythons,
                    work=work,
                    release=release,
                    progress=say,
                )
            )
        except PublishError as exc:
            raise _then(exc, rest) from None
    return ShipResult(release.project, release.version, tuple(steps))
