"""`wheelmatrix ci reproduce CELL` builds for real what the cell's CI job builds, and the CI
hand-off (export on the runner, collect on the assemble job) gives assemble the same bytes as a
maintainer's local build: the final wheels are identical."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from build_fixtures.project import copy_kbit
from wheelmatrix import ci
from wheelmatrix.cli import main
from wheelmatrix.stages.cells import read_results
from wheelmatrix.toolchains.fetch import file_sha256

# kbit's release cut to the one cell every Linux host builds (no CUDA: no toolchain download)
MATRIX = """
[project]
name = "kbit"
import-package = "kbit"
library = "kbit_{variant}"
library-dir = "_lib"
exclude = ["matrix.toml", "build/*", "cells-out/*"]

[build]
backend = { variable = "KBIT_BACKEND", cpu = "cpu", cuda = "cuda" }

[matrix]
platforms = ["linux-x86_64"]
cuda = []
python = ["3.12"]

[platform.linux-x86_64]
policy = "manylinux_2_28"
"""


@pytest.mark.slow
def test_reproduce_builds_the_cell_and_ci_and_local_wheels_are_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    root = copy_kbit(tmp_path / "kbit")
    (root / "matrix.toml").write_text(MATRIX)
    monkeypatch.chdir(root)
    cell = "linux-x86_64-cpu"
    # what the CI job runs, here (the same command list: ci.cell_commands)
    assert main(["ci", "reproduce", cell]) == 0
    out = capsys.readouterr().out
    assert [line[2:] for line in out.splitlines() if line.startswith("$ ")] == [
        " ".join(c) for c in ci.cell_commands(cell, "")
    ]
    exported = json.loads((root / ci.CELLS_OUT / f"{cell}{ci.CELL_SUFFIX}").read_text())
    wheel = root / ci.CELLS_OUT / exported["wheel"]
    assert exported["status"] == "built" and file_sha256(wheel) == exported["wheel_sha256"]
    # the assemble job: collect every exported cell, assemble, check
    assert main(["ci", "collect", ci.CELLS_OUT, "--work", "ci-work"]) == 0
    assert main(["assemble", "--work", "ci-work", "--dist", "ci-dist"]) == 0
    assert main(["check", "--strict", "--work", "ci-work", "--dist", "ci-dist"]) == 0  # installs it too
    report = json.loads((root / "ci-dist" / "check-report.json").read_text())
    assert report["passed"] is True
    # a maintainer's local build of the same cell, no cache
    assert main(["build", "--cell", cell, "--no-cache", "--work", "local-work"]) == 0
    (local,) = read_results(root / "local-work")
    assert local.wheel_sha256 == exported["wheel_sha256"], "the cell wheel is byte-identical"
    assert main(["assemble", "--work", "local-work", "--dist", "local-dist"]) == 0
    ci_wheels = {p.name: file_sha256(p) for p in (root / "ci-dist").glob("*.whl")}
    local_wheels = {p.name: file_sha256(p) for p in (root / "local-dist").glob("*.whl")}
    assert ci_wheels == local_wheels and len(ci_wheels) == 1
    assert "manylinux" in next(iter(ci_wheels))  # repaired, as the CI assemble job repairs
