"""The verify stage: a published stage proved to serve the release, byte for byte, installable.

The stage's index must list every file of the release with the checked sha256; each is downloaded
back and hashed; then the install checks of ``wheelmatrix check`` run again in fresh venvs on every
Python of the matrix, this time with the project's own distributions from the stage's index alone
and their requirements from the production index alone (two pip runs: never one resolution over
both indexes, never ``--extra-index-url``), and the smoke command runs. A passing verification is
written to ``dist/publish-record.json``; the next stage is published only against it.
"""

from __future__ import annotations

import datetime as dt
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from wheelmatrix.errors import PublishError
from wheelmatrix.index import download
from wheelmatrix.model import Matrix
from wheelmatrix.stages.check import InstallResult, InstallSource, check_installs_from_index
from wheelmatrix.stages.publish import (
    Release,
    compare_with_index,
    index_view,
    load_release,
    read_publish_record,
    stage_named,
    write_publish_record,
)

log = logging.getLogger("wheelmatrix")


@dataclass(frozen=True)
class VerifyResult:
    stage: str
    index_url: str
    deps_index_url: str
    files: dict[str, str]  # file -> sha256, downloaded back
    installs: dict[str, tuple[InstallResult, ...]]  # file -> one result per Python
    seconds: float
    record: Path

    @property
    def passed_installs(self) -> int:
        return sum(1 for rs in self.installs.values() for r in rs if r.status == "passed")


def default_deps_index(matrix: Matrix) -> str:
    """The production index (the last stage's): where the release's requirements come from."""
    return matrix.publish[-1].index_url


def verify(
    matrix: Matrix,
    dist: Path,
    stage_name: str,
    *,
    deps_index_url: str | None = None,
    pythons: Sequence[str] | None = None,
    work: Path | None = None,
    release: Release | None = None,
    progress: Callable[[str], None] | None = None,
) -> VerifyResult:
    """Verify ``stage_name`` serves the checked release in ``dist``; record it (see the module)."""
    say = progress or log.info
    start = time.monotonic()
    _, stage = stage_named(matrix, stage_name)
    release = release or load_release(matrix, dist)
    deps = deps_index_url or default_deps_index(matrix)
    view = index_view(stage, release)
    _, missing = compare_with_index(stage, release, view)
    if missing:
        raise PublishError(
            f"{stage.name} ({stage.index_url}) is missing {len(missing)} file(s) of {release.project} "
            f"{release.version}: {', '.join(missing)}",
            fix=f"run `wheelmatrix publish --to {stage.name}` (it uploads only what is missing), then verify again",
        )
    wanted = tuple(pythons or matrix.check.python or matrix.python)
    with tempfile.TemporaryDirectory(prefix="wheelmatrix-verify-") as tmp:
        folder = Path(tmp)
        got: dict[str, str] = {}
        for f in release.files:
            say(f"{stage.name}: downloading {f.file} back")
            sha = download(view[f.file], folder)
            if sha != f.sha256:
                raise PublishError(
                    f"{f.file} downloaded from {stage.name} has sha256 {sha}, the checked file is {f.sha256}",
                    fix="the index serves other bytes than it lists: do not publish further; investigate the index",
                )
            got[f.file] = sha
        say(f"{stage.name}: installing from {stage.index_url} (requirements from {deps}) on Python {', '.join(wanted)}")
        installs, findings = check_installs_from_index(
            matrix,
            [folder / f.file for f in release.files],
            wanted,
            source=InstallSource(index_url=stage.index_url, deps_index_url=deps, logs="verify"),
            work=work,
        )
    if findings:
        lines = "; ".join(f"{f.file}: {f.what}" for f in findings[:5])
        more = f" (and {len(findings) - 5} more)" if len(findings) > 5 else ""
        raise PublishError(
            f"verification of {stage.name} failed: {lines}{more}",
            fix=f"fix the release (a new version: {stage.name} already holds these files); the next stage stays closed",
        )
    results = {name: tuple(rs) for name, rs in installs.items()}
    if not any(r.status == "passed" for rs in results.values() for r in rs):
        say(f"{stage.name}: no file of the release installs on this host; only the downloaded bytes were verified")
    record = read_publish_record(release)
    record.stage(stage).published = dict(got)
    record.stage(stage).verified = {
        "files": dict(sorted(got.items())),
        "deps_index_url": deps,
        "pythons": list(wanted),
        "installs": [
            {"file": name, "python": r.python, "status": r.status, "reason": r.reason}
            for name, rs in sorted(results.items())
            for r in rs
        ],
        "at": dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat(),
    }
    path = write_publish_record(release, record)
    return VerifyResult(stage.name, stage.index_url, deps, got, results, time.monotonic() - start, path)
