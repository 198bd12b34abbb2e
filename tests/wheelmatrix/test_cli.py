"""The command line on the repository's real matrix.toml, in a real process."""

from __future__ import annotations

import json
import subprocess
import sys

import jsonschema

from wheelmatrix import __version__, schema
from wm_support import REPO


def wm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wheelmatrix", *args], cwd=REPO, capture_output=True, text=True, check=False
    )


def test_plan_table_lists_every_cell_with_buildability() -> None:
    proc = wm("plan")
    assert proc.returncode == 0, proc.stderr
    for cell in ("linux-x86_64-cpu", "linux-x86_64-cuda118", "windows-x86_64-cuda130", "macos-arm64-cpu"):
        assert cell in proc.stdout
    assert "excluded macos-arm64-cuda124: no CUDA on macOS" in proc.stdout
    assert "cells build on this host" in proc.stdout


def test_plan_json_validates_and_is_this_host() -> None:
    proc = wm("plan", "--format", "json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    jsonschema.validate(doc, schema.committed("plan"))
    assert doc["host"]["platform"] == "linux-x86_64"
    # 4 platforms x (CPU + 5 CUDA) = 24, less macOS CUDA (5) and the 7 cells no runner can build (matrix.toml's rules)
    assert len(doc["cells"]) == 12
    by_id = {c["id"]: c for c in doc["cells"]}
    assert by_id["linux-x86_64-cpu"]["buildable"] is True
    assert by_id["windows-x86_64-cuda130"]["buildable"] is False
    assert "windows-x86_64-cuda124" not in by_id


def test_plan_github_validates() -> None:
    proc = wm("plan", "--format", "github")
    assert proc.returncode == 0, proc.stderr
    jsonschema.validate(json.loads(proc.stdout), schema.committed("github-matrix"))


def test_version_and_quiet() -> None:
    assert wm("--version").stdout.strip() == f"wheelmatrix {__version__}"
    assert wm("plan", "-q", "--format", "json").returncode == 0


def test_help_names_the_verbs() -> None:
    out = wm("--help").stdout
    assert "plan" in out and "schema" in out
