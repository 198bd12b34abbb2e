"""The generated release workflow: drift check, pins, permissions, the plan matrix consumed by the
workflow's expressions, the cell commands shared with `ci reproduce`, the export/collect hand-off.

GitHub itself cannot run here: the workflow's expressions are evaluated by a small evaluator below
(the subset the generator writes: contexts, string literals, ==, !=, !, &&, ||, fromJSON), against
the real `wheelmatrix plan --format github` output.
"""

from __future__ import annotations

import json
import platform
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import replace
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from build_fixtures.cellwheels import make_cell_wheel
from wheelmatrix import ci
from wheelmatrix.cli import build_parser, main
from wheelmatrix.config import load_matrix
from wheelmatrix.host import Interpreter, detect, find_python
from wheelmatrix.model import Matrix
from wheelmatrix.plan import Host, Plan, github_matrix, make_plan
from wheelmatrix.stages.cells import CellResult, read_results, write_results
from wheelmatrix.stages.release import cell_wheels
from wheelmatrix.toolchains.fetch import file_sha256
from wm_support import REPO, linux_host

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MATRIX = REPO / "matrix.toml"
GITHUB_SCHEMA = json.loads((REPO / "packaging/wheelmatrix/schemas/github-matrix.schema.json").read_text())


def workflow() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((REPO / ci.WORKFLOW).read_text())
    return doc


# --- a small evaluator of GitHub Actions expressions -------------------------------------------

_TOKEN = re.compile(r"\s*(?:(?P<str>'(?:[^']|'')*')|(?P<op>==|!=|&&|\|\||[()!,])|(?P<name>[A-Za-z_][\w.-]*))")


def evaluate(expr: str, context: dict[str, Any]) -> Any:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(expr.rstrip()):
        m = _TOKEN.match(expr, pos)
        assert m, f"cannot read {expr[pos:]!r}"
        kind = m.lastgroup
        assert kind is not None
        tokens.append((kind, m.group(kind)))
        pos = m.end()
    i = 0

    def peek() -> str | None:
        return tokens[i][1] if i < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal i
        i += 1
        return tokens[i - 1]

    def primary() -> Any:
        kind, text = take()
        if text == "(":
            value = disjunction()
            assert take()[1] == ")"
            return value
        if text == "!":
            return not truthy(primary())
        if kind == "str":
            return text[1:-1].replace("''", "'")
        if peek() == "(":  # a function call
            take()
            args = [disjunction()]
            while peek() == ",":
                take()
                args.append(disjunction())
            assert take()[1] == ")"
            if text == "startsWith":
                return str(args[0]).lower().startswith(str(args[1]).lower())
            assert text == "fromJSON", text
            return json.loads(args[0])
        value: Any = context
        for part in text.split("."):
            value = value.get(part, "") if isinstance(value, dict) else ""
        return value

    def comparison() -> Any:
        left = primary()
        while peek() in ("==", "!="):
            op = take()[1]
            right = primary()
            left = (left == right) if op == "==" else (left != right)
        return left

    def conjunction() -> Any:
        left = comparison()
        while peek() == "&&":
            take()
            right = comparison()
            left = right if truthy(left) else left
        return left

    def disjunction() -> Any:
        left = conjunction()
        while peek() == "||":
            take()
            right = conjunction()
            left = left if truthy(left) else right
        return left

    value = disjunction()
    assert i == len(tokens), f"left over in {expr!r}: {tokens[i:]}"
    return value


def truthy(value: Any) -> bool:
    return value not in ("", None, False, 0)


def render(text: Any, context: dict[str, Any]) -> Any:
    """A workflow value with its ``${{ }}`` evaluated; a whole-expression value keeps its type."""
    if not isinstance(text, str):
        return text
    whole = re.fullmatch(r"\$\{\{(.*)\}\}", text.strip(), re.S)
    if whole:
        return evaluate(whole.group(1), context)
    return re.sub(r"\$\{\{(.*?)\}\}", lambda m: str(evaluate(m.group(1), context)), text)


def test_the_evaluator_reads_what_the_generator_writes() -> None:
    ctx = {"matrix": {"platform": "linux-x86_64", "cuda": "", "here": False}}
    assert evaluate("(matrix.platform == 'linux-x86_64' && 'img') || ''", ctx) == "img"
    assert evaluate("(!matrix.here && matrix.platform == 'linux-x86_64' && 'img') || ''", ctx) == "img"
    assert evaluate("!(!matrix.here && matrix.platform == 'linux-x86_64')", ctx) is False
    assert evaluate("(matrix.platform == 'macos-arm64' && 'img') || ''", ctx) == ""
    assert evaluate("matrix.cuda != ''", ctx) is False
    assert evaluate("!(matrix.cuda != '')", ctx) is True
    assert evaluate("fromJSON('{\"a\": 1}')", ctx) == {"a": 1}


# --- generation and drift ------------------------------------------------------------------------


def test_ci_check_passes_on_the_committed_workflow(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ci", "check", "--matrix", str(MATRIX)]) == 0
    assert "match" in capsys.readouterr().out
    text = (REPO / ci.WORKFLOW).read_text()
    assert text.startswith("# generated by `wheelmatrix ci generate`") and "wheelmatrix ci check" in text[:300]


def _copy_repo(tmp: Path) -> Path:
    root = tmp / "repo"
    for rel in ("matrix.toml", "toolchains.lock", "packaging/pyproject.toml", str(ci.WORKFLOW), str(ci.CIBUILDWHEEL)):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(REPO / rel, root / rel)
    return root


def test_ci_check_fails_naming_the_difference_after_a_matrix_edit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _copy_repo(tmp_path)
    assert main(["ci", "check", "--matrix", str(root / "matrix.toml")]) == 0
    text = (root / "matrix.toml").read_text()
    edited = text.replace('python = ["3.9", "3.10",', 'python = ["3.10",').replace(
        'name = "testpypi"', 'name = "staging"'
    )
    assert edited != text
    (root / "matrix.toml").write_text(edited)
    capsys.readouterr()
    rc = main(["ci", "check", "--matrix", str(root / "matrix.toml")])
    err = capsys.readouterr().err
    assert rc == 1
    assert "--- .github/workflows/release.yml (committed)" in err and "+++ .github/workflows/release.yml" in err
    assert re.search(r"^-\s+3\.9$", err, re.M), err  # the Python dropped from the verify jobs
    assert "+  publish-staging:" in err and "-  publish-testpypi:" in err
    assert 'build = "cp39-*' in err  # ci/cibuildwheel.toml differs too
    assert "fix: run `wheelmatrix ci generate`" in err and "Traceback" not in err
    assert main(["ci", "generate", "--matrix", str(root / "matrix.toml")]) == 0
    assert main(["ci", "check", "--matrix", str(root / "matrix.toml")]) == 0
    assert "publish-staging" in (root / ci.WORKFLOW).read_text()


def test_a_missing_workflow_is_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _copy_repo(tmp_path)
    (root / ci.WORKFLOW).unlink()
    assert main(["ci", "check", "--matrix", str(root / "matrix.toml")]) == 1
    assert "release.yml (missing)" in capsys.readouterr().err


# --- pins, permissions, hygiene ------------------------------------------------------------------


def _steps() -> list[tuple[str, dict[str, Any]]]:
    return [(name, step) for name, job in workflow()["jobs"].items() for step in job["steps"]]


def test_every_action_is_pinned_by_sha_with_its_tag_in_a_comment() -> None:
    pins = {p.action: p for p in ci.load_pins().actions}
    lines = [line for line in (REPO / ci.WORKFLOW).read_text().splitlines() if "uses:" in line]
    assert len(lines) == sum(1 for _, s in _steps() if "uses" in s) > 0
    used = set()
    for line in lines:
        m = re.fullmatch(r'\s+uses: "?([\w.-]+/[\w.-]+)@([0-9a-f]{40})"?  # (\S+)', line)
        assert m, line
        action, sha, tag = m.groups()
        assert (pins[action].sha, pins[action].tag) == (sha, tag)
        used.add(action)
    assert used == set(pins), "every pinned action is used, every used action is pinned"


def test_the_pin_table_holds_full_shas_and_digests() -> None:
    pins = ci.load_pins()
    assert all(re.fullmatch(r"[0-9a-f]{40}", p.sha) and p.tag.startswith("v") for p in pins.actions)
    assert all(re.search(r"@sha256:[0-9a-f]{64}$", i.image) for i in pins.images)


def test_a_tag_instead_of_a_sha_in_the_table_is_refused(tmp_path: Path) -> None:
    table = tmp_path / "actions.toml"
    table.write_text('[actions."actions/checkout"]\ntag = "v4"\nsha = "v4"\n')
    with pytest.raises(ci.CiError, match="not a 40-hex commit SHA"):
        ci.load_pins(table)


def test_permissions_are_least_and_only_publish_jobs_get_an_id_token() -> None:
    doc = workflow()
    assert doc["permissions"] == {}
    assert doc["concurrency"]["cancel-in-progress"] is False and "github.ref" in doc["concurrency"]["group"]
    for name, job in doc["jobs"].items():
        assert isinstance(job["timeout-minutes"], int) and job["timeout-minutes"] > 0, name
        publishes = any("wheelmatrix publish" in s.get("run", "") for s in job["steps"])
        perms = job["permissions"]
        assert set(perms) <= {"contents", "id-token"}, name
        assert perms.get("contents") == "read", name
        assert ("id-token" in perms) == publishes, name
        if publishes:
            assert perms["id-token"] == "write" and job["environment"]["name"] in name
    text = (REPO / ci.WORKFLOW).read_text()
    assert "secrets." not in text and "pull_request" not in text


def test_no_expression_inside_a_run_script() -> None:
    for job, step in _steps():
        assert "${{" not in step.get("run", ""), (job, step)


def test_attestations_are_signed_for_pypi_only() -> None:
    jobs = workflow()["jobs"]
    signing = [n for n, j in jobs.items() for s in j["steps"] if "pypi_attestations sign" in s.get("run", "")]
    assert signing == ["publish-pypi"]
    # in order: the previous stage verified in the same job, then signed, then uploaded
    runs = [s.get("run", "") for s in jobs["publish-pypi"]["steps"]]
    order = [
        next(i for i, r in enumerate(runs) if key in r)
        for key in ("verify --from testpypi", "attestations sign", "wheelmatrix publish")
    ]
    assert order == sorted(order)


def test_publishing_runs_for_tags_only() -> None:
    """A manual run on a branch builds, assembles and checks everything, and publishes nothing."""
    jobs = workflow()["jobs"]
    for name, job in jobs.items():
        if name.startswith("publish-"):
            assert evaluate(job["if"], {"github": {"ref": "refs/tags/v0.1.0"}}) is True
            assert evaluate(job["if"], {"github": {"ref": "refs/heads/main"}}) is False
        elif not name.startswith("verify-"):  # verify jobs need their publish job: skipped with it
            assert "if" not in job, name
    assert workflow()["on"]["push"] == {"tags": ["v*"]}


def test_stages_follow_the_matrix_order() -> None:
    jobs = workflow()["jobs"]
    assert list(jobs) == [
        "plan",
        "cell",
        "assemble",
        "publish-testpypi",
        "verify-testpypi",
        "publish-pypi",
        "verify-pypi",
    ]
    assert jobs["publish-testpypi"]["needs"] == ["assemble"]
    assert jobs["publish-pypi"]["needs"] == ["verify-testpypi"]
    assert jobs["publish-pypi"]["environment"] == {"name": "pypi", "url": "https://pypi.org/p/kbit"}
    assert jobs["publish-testpypi"]["environment"]["url"] == "https://test.pypi.org/p/kbit"
    verify = jobs["verify-testpypi"]
    assert verify["strategy"]["matrix"]["os"] == ["ubuntu-24.04", "ubuntu-24.04-arm", "windows-2022", "macos-14"]
    pythons = next(s for s in verify["steps"] if "setup-python" in s.get("uses", ""))["with"]["python-version"]
    assert set(pythons.split()) == set(load_matrix(MATRIX).python) | {ci.TOOLKIT_PYTHON}
    assert pythons.split()[-1] == ci.TOOLKIT_PYTHON  # the default `python` runs the toolkit


# --- the plan matrix, evaluated -----------------------------------------------------------------


def _plan_output(capsys: pytest.CaptureFixture[str]) -> str:
    """What the plan job writes to $GITHUB_OUTPUT: the real CLI's `plan --format github`."""
    capsys.readouterr()
    assert main(["plan", "--format", "github", "--matrix", str(MATRIX)]) == 0
    return capsys.readouterr().out.strip()


def _cell_jobs(output: str, doc: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    job = (doc or workflow())["jobs"]["cell"]
    ctx: dict[str, Any] = {"needs": {"plan": {"outputs": {"matrix": output}}}}
    strategy = render(job["strategy"]["matrix"], ctx)
    jobs = []
    for entry in strategy["include"]:
        c = {**ctx, "matrix": entry}
        c["env"] = {k: render(v, c) for k, v in job["env"].items()}
        runs_on = render(job["runs-on"], c)
        c["runner"] = {
            "os": "Linux" if runs_on.startswith("ubuntu") else "Windows" if "windows" in runs_on else "macOS"
        }
        jobs.append(
            {
                "entry": entry,
                "runs-on": render(job["runs-on"], c),
                "container": render(job.get("container", ""), c),
                "env": c["env"],
                "steps": [s for s in job["steps"] if "if" not in s or truthy(evaluate(s["if"], c))],
                "artifact": next(
                    render(s["with"]["name"], c) for s in job["steps"] if "upload-artifact" in s.get("uses", "")
                ),
            }
        )
    return jobs


def test_the_cell_jobs_cover_every_cell_this_host_cannot_build(capsys: pytest.CaptureFixture[str]) -> None:
    output = _plan_output(capsys)
    jsonschema.validate(json.loads(output), GITHUB_SCHEMA)
    matrix = load_matrix(MATRIX)
    plan = make_plan(matrix, linux_host())
    elsewhere = [c for c in plan.cells if not c.buildable]
    assert elsewhere, "kbit's plan has cells this host cannot build"
    jobs = {j["env"]["CELL"]: j for j in _cell_jobs(output)}
    assert {c.id for c in elsewhere} <= set(jobs)
    assert set(jobs) == {c.id for c in plan.cells}  # a CI release builds every cell
    pins = ci.load_pins()
    host_runner = matrix.platform("linux-x86_64").runner
    for cell in plan.cells:
        job = jobs[cell.id]
        platform = matrix.platform(cell.platform)
        assert job["env"]["CUDA"] == ("" if cell.cuda is None else str(cell.cuda))
        names = [s["name"] for s in job["steps"]]
        if cell.buildable:  # on the host's runner, with the commands this host runs: no image
            assert job["runs-on"] == host_runner and job["container"] == "", cell.id
            assert "set up Python" in names and "the manylinux image's Python" not in names
            continue
        assert job["runs-on"] == platform.runner, cell.id  # the runner the plan names
        image = ci.manylinux_image_name(platform)
        expected = pins.image(image).image if image and pins.image(image) else ""  # type: ignore[union-attr]
        assert job["container"] == expected, cell.id
        assert (platform.os == "linux") == bool(job["container"])
        assert ("the manylinux image's Python" in names) == bool(job["container"]) != ("set up Python" in names)
    artifacts = [j["artifact"] for j in jobs.values()]
    assert len(set(artifacts)) == len(artifacts) and all(a.startswith("cell-") for a in artifacts)
    assemble = workflow()["jobs"]["assemble"]
    download = next(s for s in assemble["steps"] if "download-artifact" in s.get("uses", ""))["with"]
    assert download["merge-multiple"] is True and all(
        re.fullmatch(download["pattern"].replace("*", ".*"), a) for a in artifacts
    )


def test_the_cell_jobs_run_the_commands_ci_reproduce_runs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    output = _plan_output(capsys)
    monkeypatch.chdir(REPO)
    for job in _cell_jobs(output):
        cell = job["env"]["CELL"]
        runs = []
        for step in job["steps"]:
            run = step.get("run", "")
            if run.startswith("wheelmatrix "):
                line = run.replace('"$CELL"', shlex.quote(job["env"]["CELL"])).replace(
                    '"$CUDA"', shlex.quote(job["env"]["CUDA"])
                )
                runs.append(shlex.split(line))
        capsys.readouterr()
        assert main(["ci", "reproduce", cell, "--dry-run"]) == 0
        printed = [shlex.split(line[2:]) for line in capsys.readouterr().out.splitlines() if line.startswith("$ ")]
        assert runs == printed == ci.cell_commands(cell, job["env"]["CUDA"]), cell
        assert (["wheelmatrix", "toolchain", "install", job["env"]["CUDA"]] in runs) == bool(job["env"]["CUDA"])
        assert ["wheelmatrix", "build", "--cell", cell, "--no-cache"] in runs


# --- per-Python cells (qext): each job provides its cell's CPython ---------------------------------

QEXT = REPO / "tests/projects/qext/matrix.toml"


def _manylinux_python_dirs() -> dict[str, str]:
    """cibuildwheel's own table of the manylinux images' CPythons: "3.9" -> /opt/python/cp39-cp39,
    "3.14t" -> /opt/python/cp314-cp314t (resources/build-platforms.toml of the installed cibuildwheel)."""
    table = tomllib.loads(resources.files("cibuildwheel").joinpath("resources/build-platforms.toml").read_text())
    out = {}
    for entry in table["linux"]["python_configurations"]:
        ident = entry["identifier"]
        if ident.startswith("cp") and ident.endswith("-manylinux_x86_64"):
            out[entry["version"] + ("t" if ident.split("-")[0].endswith("t") else "")] = entry["path_str"]
    return out


def _in_image_path(script: str, python: str, tmp: Path) -> list[str]:
    """What the step's script adds to $GITHUB_PATH, run by bash with the step's environment."""
    github_path = tmp / "github_path"
    github_path.write_text("")
    env = {"PATH": "/usr/bin:/bin", "CELL_PYTHON": python, "GITHUB_PATH": str(github_path)}
    subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env, check=True, timeout=30)
    return github_path.read_text().splitlines()


def test_the_in_image_script_names_cibuildwheels_python_dirs(tmp_path: Path) -> None:
    cell_step = _qext_cell_step(_qext_workflow(tmp_path), "the cell's Python from the manylinux image")
    dirs = _manylinux_python_dirs()
    assert {"3.9", "3.13", "3.14t"} <= set(dirs)
    for version, where in dirs.items():
        assert _in_image_path(cell_step["run"], version, tmp_path) == [f"{where}/bin"], version


def _qext_workflow(tmp: Path) -> dict[str, Any]:
    root = tmp / "qext"
    ci.generate(load_matrix(QEXT), root)
    doc: dict[str, Any] = yaml.safe_load((root / ci.WORKFLOW).read_text())
    return doc


def _qext_cell_step(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(s for s in doc["jobs"]["cell"]["steps"] if s["name"] == name)


@pytest.mark.parametrize(
    "platforms", ['["linux-x86_64"]', '["linux-x86_64", "windows-x86_64"]'], ids=["linux", "linux+windows"]
)
def test_every_per_python_cell_this_host_cannot_build_has_a_job_with_its_python(
    platforms: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan job's runner, like a hosted one, has one CPython: this one (pyenv's and uv's hidden;
    pyenv's shims on PATH are never used). The real `plan --format github` then leaves the other
    Pythons' cells to jobs in the manylinux image, which must put the cell's CPython on PATH, and
    every Windows cell to a job on the Windows runner, whose setup-python installs the cell's
    CPython and whose plan then finds it there (:func:`_plan_on_a_windows_runner`)."""
    real = {v: find_python(v) for v in load_matrix(QEXT).python}  # before pyenv's are hidden
    matrix_path = QEXT if platforms == '["linux-x86_64"]' else _qext_copy(tmp_path, platforms)
    for var in ("PYENV_ROOT", "UV_PYTHON_INSTALL_DIR"):
        monkeypatch.setenv(var, str(tmp_path / "none"))
    capsys.readouterr()
    assert main(["plan", "--format", "github", "--matrix", str(matrix_path)]) == 0
    output = capsys.readouterr().out.strip()
    jsonschema.validate(json.loads(output), GITHUB_SCHEMA)
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    matrix = load_matrix(matrix_path)
    plan = make_plan(matrix, Host(**{**linux_host().__dict__, "pythons": ((here, sys.executable),)}))
    elsewhere = [c for c in plan.cells if not c.buildable]
    assert {c.python.version for c in elsewhere} >= {"3.9", "3.10"}, "qext has per-Python cells this host cannot build"
    windows = [c for c in plan.cells if c.platform == "windows-x86_64"]
    assert bool(windows) == ("windows" in platforms) and all(c in elsewhere for c in windows)
    assert {c.python.version for c in windows} == ({"3.9", "3.10", "3.11", "3.12"} if windows else set())
    assert {c.variant for c in windows} == ({"cpu", "cuda130"} if windows else set())
    ci.generate(matrix, tmp_path / "qext")
    doc: dict[str, Any] = yaml.safe_load((tmp_path / "qext" / ci.WORKFLOW).read_text())
    jobs = {j["env"]["CELL"]: j for j in _cell_jobs(output, doc)}
    assert set(jobs) == {c.id for c in plan.cells}
    assert {cell for cell, j in jobs.items() if not j["entry"]["here"]} == {c.id for c in elsewhere}
    dirs = _manylinux_python_dirs()
    image = ci.load_pins().image("manylinux_2_28_x86_64")
    assert image is not None
    for cell in plan.cells:
        job = jobs[cell.id]
        assert job["entry"]["python"] == cell.python.version, cell.id
        names = [s["name"] for s in job["steps"]]
        if cell.buildable:  # the host runner: setup-python installs the cell's Python, then the toolkit's
            assert job["container"] == "" and "the cell's Python from the manylinux image" not in names
            setup = next(s for s in job["steps"] if s["name"] == "set up Python")
            versions = render(setup["with"]["python-version"], {"matrix": job["entry"]}).split()
            assert versions == [cell.python.version, ci.TOOLKIT_PYTHON], cell.id
            continue
        if cell.platform == "windows-x86_64":  # the Windows runner: no image, setup-python
            assert job["runs-on"] == matrix.platform(cell.platform).runner == "windows-2022", cell.id
            assert job["container"] == "" and "the cell's Python from the manylinux image" not in names, cell.id
            setup = job["steps"][names.index("set up Python")]
            assert names.index("set up Python") < names.index("build the cell")
            assert setup["uses"] == ci.load_pins().action("actions/setup-python").uses
            versions = render(setup["with"]["python-version"], {"matrix": job["entry"]}).split()
            assert versions == [cell.python.version, ci.TOOLKIT_PYTHON], cell.id
            if any(real[v] is None for v in versions):
                pytest.skip(f"this machine lacks one of {versions} to stand behind the runner's setup-python")
            there = _plan_on_a_windows_runner(matrix, versions, real, tmp_path / cell.id, monkeypatch)
            found = there.cell(cell.id)
            assert found.buildable, (cell.id, found.reason)
            assert found.interpreter == there.host.interpreter(cell.python.version) is not None, cell.id
        else:
            assert job["runs-on"] == matrix.platform(cell.platform).runner and job["container"] == image.image, cell.id
            assert "set up Python" not in names
            i = names.index("the cell's Python from the manylinux image")
            assert i < names.index("the manylinux image's Python") < names.index("build the cell"), cell.id
            step = job["steps"][i]
            python = render(step["env"]["CELL_PYTHON"], {"matrix": job["entry"]})
            # GitHub prepends each $GITHUB_PATH line: the toolkit's cp312, written after, stays `python`
            assert _in_image_path(step["run"], python, tmp_path) == [f"{dirs[cell.python.version]}/bin"], cell.id
        capsys.readouterr()
        assert main(["ci", "reproduce", cell.id, "--dry-run", "--matrix", str(matrix_path)]) == 0
        printed = [shlex.split(line[2:]) for line in capsys.readouterr().out.splitlines() if line.startswith("$ ")]
        for argv in printed:  # run here with --matrix naming qext's; in its own repository the job needs none
            if "--matrix" in argv:
                del argv[argv.index("--matrix") : argv.index("--matrix") + 2]
        runs = [
            shlex.split(s["run"].replace('"$CELL"', cell.id).replace('"$CUDA"', job["env"]["CUDA"] or "''"))
            for s in job["steps"]
            if s.get("run", "").startswith("wheelmatrix ")
        ]
        assert printed == runs == ci.cell_commands(cell.id, job["env"]["CUDA"]), cell.id


def _qext_copy(tmp: Path, platforms: str = '["linux-x86_64"]') -> Path:
    root = tmp / "qext-repo"
    shutil.copytree(QEXT.parent, root)
    text = (root / "matrix.toml").read_text()
    assert 'platforms = ["linux-x86_64"]' in text, "qext's matrix no longer names its platforms as this test expects"
    (root / "matrix.toml").write_text(text.replace('platforms = ["linux-x86_64"]', f"platforms = {platforms}"))
    return root / "matrix.toml"


def _plan_on_a_windows_runner(
    matrix: Matrix,
    versions: list[str],
    real: dict[str, Interpreter | None],
    tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Plan:
    """The plan a cell job's `wheelmatrix build --cell` makes on the Windows runner after its
    setup-python step installed ``versions``. No Windows host here: `platform.system()` says Windows
    (as host.py reads it), and setup-python's tool cache is laid out as on the runner
    (<RUNNER_TOOL_CACHE>/Python/<X.Y.Z>/x64/python.exe), each python.exe a link to this machine's
    real CPython of that version; PATH keeps only the C++ compiler's folder (no python3.X, no
    launcher). The real `host.detect` and `make_plan` then run."""
    cache = tmp / "hostedtoolcache" / "windows"
    for version in versions:
        interpreter = real[version]
        assert interpreter is not None
        where = cache / "Python" / interpreter.version / "x64"
        where.mkdir(parents=True, exist_ok=True)
        if not (where / "python.exe").exists():
            (where / "python.exe").symlink_to(interpreter.path)
    compiler = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    with monkeypatch.context() as patch:
        patch.setattr(platform, "system", lambda: "Windows")
        patch.setattr(platform, "machine", lambda: "AMD64")
        patch.setenv("RUNNER_TOOL_CACHE", str(cache))
        patch.setenv("PATH", str(Path(compiler).parent) if compiler else str(tmp / "empty"))
        there = detect(matrix)
    assert there.platform == "windows-x86_64"
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    for version in versions:  # the running Python answers for its own version, as on the runner
        found = there.interpreter(version)
        assert found is not None and (version == here or found.startswith(str(cache))), (version, found)
    return make_plan(matrix, there if compiler else replace(there, has_c_compiler=True))


def _generate_then_edit(
    matrix_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str
) -> tuple[Path, str, str]:
    """Generate the matrix's workflow (every cell buildable by a job, `ci check` passing), then replace
    ``old`` by ``new`` in it: `ci check` must fail. The workflow's path, its generated text, check's stderr."""
    assert ci.unbuildable_cells(load_matrix(matrix_path)) == []
    assert main(["ci", "generate", "--matrix", str(matrix_path)]) == 0
    assert main(["ci", "check", "--matrix", str(matrix_path)]) == 0
    workflow_path = matrix_path.parent / ci.WORKFLOW
    text = workflow_path.read_text()
    edited = text.replace(old, new)
    assert edited != text
    workflow_path.write_text(edited)
    capsys.readouterr()
    assert main(["ci", "check", "--matrix", str(matrix_path)]) == 1
    return workflow_path, text, capsys.readouterr().err


def test_ci_check_covers_the_per_python_jobs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """qext's workflow is generated (its per-Python cells are buildable by their jobs) and its drift
    check fails when the cell's Python is taken out of the committed cell job."""
    matrix_path = _qext_copy(tmp_path)
    workflow_path, text, err = _generate_then_edit(matrix_path, capsys, "            ${{ matrix.python }}\n", "")
    assert re.search(r"^\+\s+\$\{\{ matrix\.python \}\}$", err, re.M), err
    workflow_path.write_text(text.replace("cp${version/./}", "cp${version}"))
    assert main(["ci", "check", "--matrix", str(matrix_path)]) == 1
    assert 'tag="cp${version/./}"' in capsys.readouterr().err


def test_per_python_cells_are_buildable_where_the_job_provides_the_python(tmp_path: Path) -> None:
    """setup-python provides each cell's CPython on macOS (python3.X on PATH) and on Windows (the
    `py` launcher and its tool cache, which host.py asks there): every per-Python cell of Linux,
    macOS and Windows has a job that builds it, except macOS's CUDA cells, refused for CUDA."""
    matrix = load_matrix(_qext_copy(tmp_path, '["linux-x86_64", "macos-arm64", "windows-x86_64"]'))
    nowhere = dict(ci.unbuildable_cells(matrix))
    cells = make_plan(matrix, linux_host()).cells
    windows = {c.id for c in cells if c.platform == "windows-x86_64"}
    assert len(windows) == 8 and not windows & set(nowhere)
    assert set(nowhere) == {c.id for c in cells if c.platform == "macos-arm64" and c.cuda is not None}
    assert all("CUDA 13.0" in why and "CPython" not in why for why in nowhere.values()), nowhere


def test_windows_per_python_qext_generates_checks_and_names_a_cuda_refusal_for_cuda(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """qext on Linux and Windows: `ci generate` writes the workflow, `ci check` passes and catches an
    edit of the Windows jobs' setup-python list. With a CUDA version whose source cannot serve
    Windows (debian), its Windows per-Python cells are refused naming the source, not the Python."""
    matrix_path = _qext_copy(tmp_path, '["linux-x86_64", "windows-x86_64"]')
    workflow_path, text, err = _generate_then_edit(
        matrix_path, capsys, "            ${{ matrix.python }}\n            3.12\n", "            3.12\n"
    )
    assert re.search(r"^\+\s+\$\{\{ matrix\.python \}\}$", err, re.M)
    workflow_path.write_text(text)
    debian = matrix_path.read_text().replace(
        '[cuda."13.0"]',
        '[cuda."12.4"]\nsass = [75, 90]\nptx = [90]\ntoolchain = { source = "debian", suite = "trixie" }\n\n[cuda."13.0"]',
    )
    matrix_path.write_text(debian.replace('cuda = ["13.0"]', 'cuda = ["12.4", "13.0"]'))
    nowhere = dict(ci.unbuildable_cells(load_matrix(matrix_path)))
    assert set(nowhere) == {f"windows-x86_64-cuda124-{t}" for t in ("cp39", "cp310", "cp311", "cp312-abi3")}
    for why in nowhere.values():
        assert "source 'debian' cannot provide windows-x86_64" in why and "CPython" not in why, why
    capsys.readouterr()
    assert main(["ci", "check", "--matrix", str(matrix_path)]) == 1
    err = capsys.readouterr().err
    assert "4 cells of" in err and "windows-x86_64-cuda124-cp39: CUDA 12.4: source 'debian'" in err, err


def test_ci_reproduce_of_an_unknown_cell_names_the_cells(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ci", "reproduce", "linux-x86_64-cuda999", "--matrix", str(MATRIX)]) == 2
    err = capsys.readouterr().err
    assert "no cell linux-x86_64-cuda999" in err and "windows-x86_64-cuda130" in err


def test_all_verbs_lists_every_wheelmatrix_command_of_the_workflow() -> None:
    found = set()
    for _, step in _steps():
        for line in step.get("run", "").splitlines():
            for m in re.finditer(r"wheelmatrix [^)\n]*", line):
                words = shlex.split(m.group(0).replace('"$CELL"', "{cell}").replace('"$CUDA"', "{cuda}"))
                found.add(tuple(words))
    assert found == set(ci.all_verbs(load_matrix(MATRIX)))


@pytest.mark.parametrize("argv", ci.all_verbs(load_matrix(MATRIX)), ids=lambda a: " ".join(a[1:4]))
def test_every_command_the_workflow_runs_exists_in_the_real_parser(argv: tuple[str, ...]) -> None:
    """publish and verify come with issue 11: until it is merged, their two cases fail here."""
    words = [a.format(cell="linux-x86_64-cpu", cuda="13.0") for a in argv[1:]]
    build_parser().parse_args(words)


# --- the hand-off between runners ----------------------------------------------------------------


def _built(tmp: Path) -> tuple[Path, CellResult]:
    cell = make_cell_wheel(tmp, "cpu")
    result = CellResult(
        cell.cell_id,
        cell.platform,
        cell.variant,
        "built",
        "built",
        wheel=str(cell.path),
        wheel_sha256=file_sha256(cell.path),
        log=str(tmp / "build.log"),
    )
    skipped = CellResult("windows-x86_64-cuda130", "windows-x86_64", "cuda130", "skipped", "needs a Windows runner")
    write_results(tmp / "work", [result, skipped])
    return tmp / "work", result


def test_export_then_collect_hands_over_the_same_bytes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work, result = _built(tmp_path)
    out = tmp_path / "cells-in"  # the assemble job downloads every upload into one folder
    assert main(["ci", "export", result.cell_id, "--work", str(work), "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [Path(str(result.wheel)).name, f"{result.cell_id}.cell.json"]
    )
    meta = json.loads((out / f"{result.cell_id}.cell.json").read_text())
    assert meta["wheel"] == Path(str(result.wheel)).name and meta["log"] is None  # nothing of the runner's paths
    other = tmp_path / "assemble-work"
    assert main(["ci", "collect", str(out), "--work", str(other)]) == 0
    (collected,) = read_results(other)
    assert collected.cell_id == result.cell_id and collected.status == "built"
    assert Path(str(collected.wheel)).read_bytes() == Path(str(result.wheel)).read_bytes()
    assert collected.wheel_sha256 == result.wheel_sha256


def test_export_of_a_cell_not_built_here_says_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work, _ = _built(tmp_path)
    rc = main(["ci", "export", "windows-x86_64-cuda130", "--work", str(work), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 5 and "not built here (skipped): needs a Windows runner" in err


def test_collect_refuses_a_wheel_changed_after_export(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    work, result = _built(tmp_path)
    out = tmp_path / "cells-in"
    ci.export_cell(work, result.cell_id, out)
    wheel = out / Path(str(result.wheel)).name
    wheel.write_bytes(wheel.read_bytes() + b"\0")
    rc = main(["ci", "collect", str(out), "--work", str(tmp_path / "w2")])
    err = capsys.readouterr().err
    assert rc == 6 and "has sha256" in err and result.cell_id in err
    assert not (tmp_path / "w2" / "cells.json").exists()


# --- refreshing the pins with real git ------------------------------------------------------------


def _git(*args: str, cwd: Path) -> str:
    env = {
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.invalid",
        "HOME": str(cwd),
        "PATH": "/usr/bin:/bin:/usr/local/bin",
    }
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


def test_pins_refresh_resolves_tags_with_git_ls_remote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A local repository stands in for github.com/actions/checkout (GitHub is unreachable here)."""
    repo = tmp_path / "remote" / "actions" / "checkout"
    repo.mkdir(parents=True)
    _git("init", "-q", cwd=repo)
    (repo / "a").write_text("1")
    _git("add", "a", cwd=repo)
    _git("commit", "-qm", "one", cwd=repo)
    _git("tag", "-a", "v4.2.2", "-m", "annotated: ls-remote peels it", cwd=repo)
    first = _git("rev-parse", "HEAD", cwd=repo)
    (repo / "a").write_text("2")
    _git("commit", "-qam", "two", cwd=repo)
    _git("tag", "v5.0.0", cwd=repo)
    second = _git("rev-parse", "HEAD", cwd=repo)
    table = tmp_path / "actions.toml"
    table.write_text(
        '# header kept\n\n[actions."actions/checkout"]\ntag = "v4.2.2"\nsha = "' + "0" * 40 + '"\n\n'
        '[images.manylinux_2_28_x86_64]\nimage = "q/m@sha256:' + "1" * 64 + '"\ntag = "old"\n'
    )
    cfg = "[x86_64]\nmanylinux_2_28 = q/m@sha256:" + "2" * 64 + "  # 2026.10.26-1\n"
    changes = ci.refresh_pins(table, base=str(tmp_path / "remote"), cibuildwheel_pins=cfg)
    pins = ci.load_pins(table)
    assert pins.actions[0].sha == first and pins.actions[0].sha != _git("rev-parse", "v4.2.2", cwd=repo)
    assert pins.images[0].image.endswith("2" * 64) and pins.images[0].tag == "2026.10.26-1"
    assert len(changes) == 2 and table.read_text().startswith("# header kept\n")
    refresh = ["ci", "pins", "--refresh", "--table", str(table), "--remote", str(tmp_path / "remote")]
    rc = main([*refresh, "--tag", "actions/checkout=v5.0.0"])
    assert rc == 0 and ci.load_pins(table).actions[0] == ci.ActionPin("actions/checkout", "v5.0.0", second)
    capsys.readouterr()
    rc = main([*refresh, "--tag", "actions/checkout=v9"])
    assert rc == 1 and "has no tag v9" in capsys.readouterr().err
    assert ci.load_pins(table).actions[0].tag == "v5.0.0"  # a failed refresh leaves the table as it was


def test_a_collected_cell_from_another_runner_feeds_assemble_and_is_not_listed_as_missing(tmp_path: Path) -> None:
    plan = make_plan(load_matrix(MATRIX), linux_host())
    foreign = "windows-x86_64-cuda130"
    assert not plan.cell(foreign).buildable
    results = []
    for cell in [*plan.buildable, plan.cell(foreign)]:
        wheel = tmp_path / f"{cell.id}.whl"
        wheel.write_bytes(cell.id.encode())
        results.append(CellResult(cell.id, cell.platform, cell.variant, "built", "built", wheel=str(wheel)))
    cells, other_host = cell_wheels(plan, results, repair=False)
    assert foreign in {c.cell_id for c in cells}
    missing = {cell_id for cell_id, _ in other_host}
    assert foreign not in missing
    assert missing == {c.id for c in plan.cells if not c.buildable} - {foreign}


def test_a_host_without_a_runner_label_sends_every_cell_to_its_platforms_runner() -> None:
    matrix = load_matrix(MATRIX)
    odd = Host(platform="linux-ppc64le", has_c_compiler=True, has_zig=True, glibc=(2, 36))
    include = github_matrix(make_plan(matrix, odd))["include"]
    assert isinstance(include, list)
    assert all(e["builder"] == e["runner"] and e["here"] is False for e in include)
    jsonschema.validate({"include": include}, GITHUB_SCHEMA)


def test_ci_pins_prints_the_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ci", "pins"]) == 0
    out = capsys.readouterr().out
    for pin in ci.load_pins().actions:
        assert f"{pin.action}@{pin.sha}  # {pin.tag}" in out


def test_kbit_releases_no_cell_that_no_job_can_build() -> None:
    """Every cell of kbit's plan is built by some job: the ones no runner's toolchain can serve are
    excluded by its rules, each with a reason (so `ci generate`/`ci check` accept the matrix)."""
    matrix = load_matrix(MATRIX)
    assert ci.unbuildable_cells(matrix) == []
    plan = make_plan(matrix, ci.runner_host("linux-x86_64"))
    excluded = {f"{e.platform}-{e.variant}": e.reason for e in plan.excluded}
    assert {c for c in excluded if not c.startswith("macos-")} == {
        "linux-x86_64-cuda128",
        "linux-aarch64-cuda128",
        "windows-x86_64-cuda128",
        "linux-aarch64-cuda118",
        "linux-aarch64-cuda124",
        "windows-x86_64-cuda118",
        "windows-x86_64-cuda124",
    }
    assert "no nvcc" in excluded["windows-x86_64-cuda128"] and "amd64 only" in excluded["linux-aarch64-cuda118"]


def _without_kbit_ci_rules(root: Path) -> Path:
    """kbit's matrix without the rules that exclude the cells no job can build."""
    path = root / "matrix.toml"
    text = path.read_text()
    rules = text.split("[[rules]]")
    kept = [r for r in rules[1:] if "cuda128" not in r and "cuda118" not in r]
    assert len(kept) == len(rules) - 3, "kbit's matrix no longer has the two rules this test removes"
    path.write_text("[[rules]]".join([rules[0], *kept]))
    return path


def test_cells_no_job_can_build_make_generate_and_check_fail(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without kbit's exclusions its matrix has cells whose toolchain no runner of the workflow has:
    the plan says why per runner, and `ci generate`/`ci check` refuse a workflow that can never
    publish, unless --allow-unbuildable (then they warn)."""
    root = _copy_repo(tmp_path)
    matrix_path = _without_kbit_ci_rules(root)
    nowhere = dict(ci.unbuildable_cells(load_matrix(matrix_path)))
    assert set(nowhere) == {
        "linux-x86_64-cuda128",  # a system toolkit no runner or image carries
        "linux-aarch64-cuda128",
        "windows-x86_64-cuda128",
        "linux-aarch64-cuda118",  # the debian source provides amd64 only
        "linux-aarch64-cuda124",
        "windows-x86_64-cuda118",  # debian cannot provide Windows
        "windows-x86_64-cuda124",
    }
    assert "amd64 only" in nowhere["linux-aarch64-cuda118"] and "on any runner" in nowhere["windows-x86_64-cuda118"]
    assert "no GitHub-hosted runner" in nowhere["linux-x86_64-cuda128"]
    for action in ("generate", "check"):
        capsys.readouterr()
        assert main(["ci", action, "--matrix", str(matrix_path)]) == 1
        err = capsys.readouterr().err
        assert "7 cells of" in err and "  linux-x86_64-cuda128: CUDA 12.8: " in err, err
        assert "fix: exclude them with a [[rules]] entry" in err and "Traceback" not in err
    before = (root / ci.WORKFLOW).read_text()
    assert main(["ci", "check", "--allow-unbuildable", "--matrix", str(matrix_path)]) == 0
    err = capsys.readouterr().err
    assert "warning: 7 cells no job of the workflow can build" in err and "  windows-x86_64-cuda124: " in err
    assert main(["ci", "generate", "--allow-unbuildable", "--matrix", str(matrix_path)]) == 0
    assert (root / ci.WORKFLOW).read_text() == before  # the cells are the plan job's output, not the text's
    # kbit's own matrix (with its rules) gets no warning
    capsys.readouterr()
    assert main(["ci", "generate", "--matrix", str(_copy_repo(tmp_path / "kbit") / "matrix.toml")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_the_assemble_job_has_every_python_the_install_check_uses() -> None:
    job = workflow()["jobs"]["assemble"]
    pythons = next(s for s in job["steps"] if "setup-python" in s.get("uses", ""))["with"]["python-version"].split()
    matrix = load_matrix(MATRIX)
    assert set(pythons) == {*matrix.python, *matrix.check.python, ci.TOOLKIT_PYTHON} and pythons[-1] == "3.12"


def test_a_stage_name_that_cannot_name_a_job_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _copy_repo(tmp_path)
    text = (root / "matrix.toml").read_text()
    (root / "matrix.toml").write_text(text.replace('name = "testpypi"', 'name = "test pypi"'))
    assert main(["ci", "generate", "--matrix", str(root / "matrix.toml")]) == 1
    err = capsys.readouterr().err
    assert "publish[0].name 'test pypi'" in err and "fix: use letters" in err and "Traceback" not in err
