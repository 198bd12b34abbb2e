"""Python as a build axis: [project] python-api, the plan's per-Python cells, the expected-wheels oracle.

Unit tests over the extension test project's matrix (tests/projects/qext) with injected hosts: the
plan is pure over the Host, so which interpreters a host has is stated, not probed. One test probes
this machine's real interpreters (pyenv) through the command line.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest

from wheelmatrix import config, schema
from wheelmatrix.cli import main
from wheelmatrix.errors import MatrixError
from wheelmatrix.model import PythonAxis
from wheelmatrix.plan import Host, build_spec, expected_wheels, github_matrix, make_plan, plan_document
from wm_support import MATRICES, REPO, linux_host

QEXT = REPO / "tests" / "projects" / "qext" / "matrix.toml"
PYTHONS = ("3.9", "3.10", "3.11", "3.12", "3.13")


def host_with(*versions: str) -> Host:
    return replace(linux_host(), pythons=tuple((v, f"/opt/python{v}/bin/python{v}") for v in versions))


def qext_plan(host: Host):  # type: ignore[no-untyped-def]
    return make_plan(config.load_matrix(QEXT), host)


def test_tags_of_each_binding() -> None:
    assert [str(t) for t in PythonAxis().tags(PYTHONS)] == ["py3-none"]
    per = PythonAxis(api="per-version", free_threaded=("3.13",)).tags(PYTHONS)
    assert [str(t) for t in per] == [
        "cp39-cp39", "cp310-cp310", "cp311-cp311", "cp312-cp312", "cp313-cp313", "cp313-cp313t",
    ]  # fmt: skip
    abi3 = PythonAxis(api="abi3", abi3_floor="3.12").tags(PYTHONS)
    assert [str(t) for t in abi3] == ["cp39-cp39", "cp310-cp310", "cp311-cp311", "cp312-abi3"]
    assert [t.py_api for t in abi3] == [None, None, None, "cp312"]
    assert abi3[-1].version == "3.12"
    # free-threaded CPython has no stable ABI: an abi3 project ships a cp313t wheel of its own beside
    # the abi3 one (as cryptography does), built without wheel.py-api
    both = PythonAxis(api="abi3", abi3_floor="3.12", free_threaded=("3.13",)).tags(PYTHONS)
    assert [str(t) for t in both] == ["cp39-cp39", "cp310-cp310", "cp311-cp311", "cp313-cp313t", "cp312-abi3"]
    assert [t.py_api for t in both][-2:] == [None, "cp312"]


def test_qext_plan_expands_cells_per_python_tag() -> None:
    plan = qext_plan(host_with(*PYTHONS))
    ids = [c.id for c in plan.cells]
    assert ids == [
        "linux-x86_64-cpu-cp39",
        "linux-x86_64-cpu-cp310",
        "linux-x86_64-cpu-cp311",
        "linux-x86_64-cpu-cp312-abi3",
        "linux-x86_64-cuda130-cp39",
        "linux-x86_64-cuda130-cp310",
        "linux-x86_64-cuda130-cp311",
        "linux-x86_64-cuda130-cp312-abi3",
    ]  # fmt: skip  (the cells of one variant next to each other: they share one build tree)
    assert all(c.buildable for c in plan.cells)
    cell = plan.cell("linux-x86_64-cuda130-cp310")
    assert cell.interpreter == "/opt/python3.10/bin/python3.10"
    assert cell.reason == "CUDA 13.0 from PyPI (NVIDIA's wheels); CPython 3.10 (/opt/python3.10/bin/python3.10)"
    spec = build_spec(plan.matrix, cell, plan.host)
    assert spec.library == "_qext_cuda130.cpython-310-x86_64-linux-gnu.so"
    assert spec.interpreter == cell.interpreter and str(spec.python_tag) == "cp310-cp310"
    abi3 = build_spec(plan.matrix, plan.cell("linux-x86_64-cpu-cp312-abi3"), plan.host)
    assert abi3.library == "_qext_cpu.abi3.so" and abi3.python_tag.py_api == "cp312"


def test_a_missing_interpreter_needs_another_runner_never_a_silent_skip() -> None:
    plan = qext_plan(host_with("3.9", "3.11", "3.12"))  # no 3.10 here
    missing = [c for c in plan.cells if not c.buildable]
    assert [c.id for c in missing] == ["linux-x86_64-cpu-cp310", "linux-x86_64-cuda130-cp310"]
    for c in missing:
        assert c.reason == (
            "CPython 3.10 is not on this host (looked on PATH and in pyenv): "
            "needs a linux-x86_64 runner (ubuntu-24.04); CI builds it"
        )
    # the oracle still lists their wheels: the release has them, another runner builds them
    wheels = {w.filename: w for w in expected_wheels(plan) or ()}
    assert not wheels["qext-0.1.0-cp310-cp310-manylinux_2_28_x86_64.whl"].buildable
    gh = github_matrix(plan)["include"]
    assert {"cell": "linux-x86_64-cpu-cp310", "python": "3.10", "python_tag": "cp310-cp310"}.items() <= next(
        j for j in gh if j["cell"] == "linux-x86_64-cpu-cp310"
    ).items()


def test_expected_wheels_every_distribution_platform_and_python_tag() -> None:
    names = [w.filename for w in expected_wheels(qext_plan(host_with(*PYTHONS))) or ()]
    tags = ["cp310-cp310", "cp311-cp311", "cp312-abi3", "cp39-cp39"]
    assert names == sorted(
        f"{dist}-0.1.0-{tag}-manylinux_2_28_x86_64.whl" for dist in ("qext", "qext_cuda13x") for tag in tags
    )


def test_plan_document_validates_and_reports_interpreters() -> None:
    plan = qext_plan(host_with("3.9", "3.12"))
    doc = plan_document(plan)
    jsonschema.validate(doc, schema.committed("plan"))
    jsonschema.validate(github_matrix(plan), schema.committed("github-matrix"))
    assert doc["python_api"] == "abi3"
    assert doc["host"]["pythons"] == {"3.9": "/opt/python3.9/bin/python3.9", "3.12": "/opt/python3.12/bin/python3.12"}
    assert len(doc["wheels"]) == 8


def test_py3_none_projects_keep_their_cells_and_ids() -> None:
    for path in (MATRICES / "good" / "release.toml", REPO / "matrix.toml", REPO / "tests/projects/qblas/matrix.toml"):
        plan = make_plan(config.load_matrix(path), host_with(*PYTHONS))
        assert all(re.fullmatch(r"[a-z0-9_]+-[a-z0-9_]+-(cpu|cuda\d+)", c.id) for c in plan.cells)
        assert all(str(c.python) == "py3-none" and c.interpreter is None for c in plan.cells)
        assert all(
            build_spec(plan.matrix, c, plan.host).library.startswith("lib")
            for c in plan.cells
            if c.platform.startswith("linux")
        )


def test_plan_wheels_command_on_this_host(capsys: pytest.CaptureFixture[str]) -> None:
    """Real interpreter probing (PATH and pyenv on this machine)."""
    assert main(["plan", "--matrix", str(QEXT), "--wheels"]) == 0
    lines = capsys.readouterr().out.split()
    assert "qext-0.1.0-cp312-abi3-manylinux_2_28_x86_64.whl" in lines
    assert "qext_cuda13x-0.1.0-cp39-cp39-manylinux_2_28_x86_64.whl" in lines
    assert main(["plan", "--matrix", str(QEXT), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    for cell in doc["cells"]:
        version = cell["python_tag"][2:].split("-")[0]
        python = f"{version[0]}.{version[1:]}"
        assert cell["buildable"] == (python in doc["host"]["pythons"]), cell


def test_auto_split_has_no_oracle(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plan", "--matrix", str(REPO / "tests/projects/qblas/matrix.toml"), "--wheels"]) == 2
    assert 'split = "auto" decides fat or split' in capsys.readouterr().err


def _qext_with(tmp_path: Path, old: str, new: str) -> Path:
    text = QEXT.read_text()
    for a, b in zip(old.split("|"), new.split("|"), strict=True):
        assert a in text
        text = text.replace(a, b)
    path = tmp_path / "matrix.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("old", "new", "key", "problem"),
    [
        ('abi3-floor = "3.12"\n', "", "project.abi3-floor", 'missing: python-api = "abi3"'),
        ('abi3-floor = "3.12"', 'abi3-floor = "3.14"', "project.abi3-floor", '"3.14" is not one of matrix.python'),
        ('split = "standalone"', 'split = "fat"', "packaging.split", '"fat" merges the variants'),
        ('python-api = "abi3"', 'python-api = "per-version"', "project.abi3-floor", "only applies to"),
        ('python-api = "abi3"\nabi3-floor = "3.12"', 'python-api = "none"\nfree-threaded = ["3.13"]',
         "project.free-threaded", "only applies to extension modules"),
        ('cuda = ["13.0"]|[packaging]',
         'cuda = ["13.0", "13.2"]|[cuda."13.2"]\nsass = [75]\nptx = []\ntoolchain = { source = "pypi" }\n[packaging]',
         "matrix.cuda", "CUDA 13.0, 13.2 would both be the distribution"),
    ],
)  # fmt: skip
def test_python_axis_errors_name_key_and_fix(tmp_path: Path, old: str, new: str, key: str, problem: str) -> None:
    with pytest.raises(MatrixError) as err:
        config.load_matrix(_qext_with(tmp_path, old, new))
    assert err.value.key == key
    assert problem in err.value.problem
    assert err.value.fix


def test_nvidia_runtime_wheels_for_install_checks_come_from_a_local_folder(tmp_path: Path) -> None:
    """The install check's source of NVIDIA's wheels: the toolchain cache (file names only here)."""
    from wheelmatrix.stages.check import local_runtime_wheels, oracle_findings

    for sub, name in (("a", "nvidia_cublas-13.1.1.3-py3-none-manylinux_2_27_x86_64.whl"),
                      ("b", "nvidia_cublas-13.0.2.14-py3-none-manylinux_2_27_x86_64.whl"),
                      ("c", "nvidia_cublas_cu12-12.4.5.8-py3-none-manylinux2014_x86_64.whl"),
                      ("d", "numpy-2.0.0-cp311-cp311-manylinux_2_17_x86_64.whl")):  # fmt: skip
        (tmp_path / sub).mkdir()
        (tmp_path / sub / name).write_bytes(b"")
    local, rest = local_runtime_wheels(["nvidia-cublas==13.*", "nvidia-cusparse==13.*", "numpy>=1"], [tmp_path])
    assert [p.name for p in local] == ["nvidia_cublas-13.1.1.3-py3-none-manylinux_2_27_x86_64.whl"]  # the newest fit
    assert rest == ["nvidia-cusparse==13.*", "numpy>=1"]  # not there, or not NVIDIA's: from the index
    local, rest = local_runtime_wheels(["nvidia-cublas-cu12==12.*"], [tmp_path])
    assert [p.name for p in local] == ["nvidia_cublas_cu12-12.4.5.8-py3-none-manylinux2014_x86_64.whl"]

    dist = tmp_path / "dist"
    dist.mkdir()
    for name in ("x-1-cp39-cp39-any.whl", "x-1-cp38-cp38-any.whl", "x-1-cp313-cp313-any.whl"):
        (dist / name).write_bytes(b"")
    found = oracle_findings(dist, ["x-1-cp39-cp39-any.whl", "x-1-cp310-cp310-any.whl"], ["x-1-cp313-cp313-any.whl"])
    assert [(f.code, f.file) for f in found] == [
        ("WM803", "x-1-cp310-cp310-any.whl"),
        ("WM804", "x-1-cp38-cp38-any.whl"),
    ]


def _cell_wheel(folder: Path, variant: str, tag: str, module: str, manifest: dict[str, object]) -> Path:
    """A cell wheel as the cell stage leaves it (the module's bytes are a stand-in: assemble reads names)."""
    from wheelmatrix.wheelfile import WheelContents, write_wheel

    info = "qext-0.1.0.dist-info"
    contents = WheelContents(f"qext-0.1.0-{tag}-linux_x86_64.whl", {}, {})
    contents.put("qext/__init__.py", b"")
    contents.put(f"qext/{module}", b"\x7fELF stand-in")
    contents.put(f"qext/{module.rsplit('.', 1)[0]}.json", json.dumps(manifest).encode())
    contents.put(f"{info}/METADATA", b"Metadata-Version: 2.1\nName: qext\nVersion: 0.1.0\n\nreadme\n")
    contents.put(f"{info}/WHEEL", f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: {tag}-linux_x86_64\n".encode())
    return write_wheel(contents, folder / variant / tag)


@pytest.mark.parametrize("extra", ["", "ctk"])
def test_standalone_layout_renames_the_cuda_distribution_and_declares_nvidia(tmp_path: Path, extra: str) -> None:
    from wheelmatrix.stages.assemble import CellWheel, assemble_platform

    old, new = '[packaging]\nsplit = "standalone"', f'[packaging]\nsplit = "standalone"\ncuda-extra = "{extra}"'
    matrix = config.load_matrix(_qext_with(tmp_path, old, new) if extra else QEXT)
    cpu = _cell_wheel(tmp_path, "cpu", "cp310-cp310", "_qext_cpu.cpython-310-x86_64-linux-gnu.so", {"cuda": None})
    cuda = _cell_wheel(tmp_path, "cuda130", "cp312-abi3", "_qext_cuda130.abi3.so",
                       {"cuda": "13.0", "flags": {"components": ["cublas"]}})  # fmt: skip
    assembly = assemble_platform(matrix, "linux-x86_64", [
        CellWheel("linux-x86_64-cpu-cp310", "linux-x86_64", "cpu", cpu),
        CellWheel("linux-x86_64-cuda130-cp312-abi3", "linux-x86_64", "cuda130", cuda),
    ])  # fmt: skip
    assert assembly.layout == "standalone"
    by_dist = {w.distribution: w for w in assembly.wheels}
    assert sorted(by_dist) == ["qext", "qext-cuda13x"]
    assert by_dist["qext"].filename == "qext-0.1.0-cp310-cp310-linux_x86_64.whl"
    assert by_dist["qext"].cell_ids == ("linux-x86_64-cpu-cp310",)
    wheel = by_dist["qext-cuda13x"].contents
    assert wheel.filename == "qext_cuda13x-0.1.0-cp312-abi3-linux_x86_64.whl"
    assert wheel.dist_info == "qext_cuda13x-0.1.0.dist-info"
    meta = wheel.text(f"{wheel.dist_info}/METADATA")
    assert "Name: qext-cuda13x\n" in meta and meta.endswith("\n\nreadme\n")
    if extra:
        assert 'Provides-Extra: ctk\nRequires-Dist: nvidia-cublas==13.*; extra == "ctk"\n' in meta
    else:
        assert "Requires-Dist: nvidia-cublas==13.*\n" in meta and "Provides-Extra" not in meta
    assert "Requires-Dist" not in by_dist["qext"].contents.text("qext-0.1.0.dist-info/METADATA")


def test_per_python_cells_of_a_variant_share_one_build_tree_and_environment(tmp_path: Path) -> None:
    from wheelmatrix.stages import buildenv, cells

    plan = qext_plan(host_with(*PYTHONS))
    specs = plan.build_specs()
    keys = {s.cell_id: cells.tree_name(s) for s in specs}
    assert set(keys.values()) == {"linux-x86_64-cpu", "linux-x86_64-cuda130"}  # no Python in the key
    assert cells.tree_lock(specs[0]) is cells.tree_lock(specs[1])  # same tree: one at a time
    assert cells.tree_lock(specs[0]) is not cells.tree_lock(specs[-1])
    assert cells.oldest_interpreter(specs) == "/opt/python3.9/bin/python3.9"
    assert buildenv.shared_requires(specs[0].project.source) == [
        "build>=1.2",
        "nanobind>=2.4",
        "scikit-build-core>=0.10",
    ]
    abi3 = next(s for s in specs if s.cell_id == "linux-x86_64-cuda130-cp312-abi3")
    argv, env = cells.python_build_argv(abi3, tmp_path / "env", tmp_path / "out")
    assert argv[:4] == ["/opt/python3.12/bin/python3.12", "-m", "build", "--wheel"]
    assert "--no-isolation" in argv and "-Cwheel.py-api=cp312" in argv
    assert env["PYTHONPATH"] == str(tmp_path / "env")
    per = next(s for s in specs if s.cell_id == "linux-x86_64-cuda130-cp310")
    assert not any(a.startswith("-Cwheel.py-api") for a in cells.python_build_argv(per, tmp_path, tmp_path)[0])
    # the cache keys of per-Python cells differ by Python; a py3-none cell's key has no Python in it
    assert cells.python_key(per) == {"python_tag": "cp310-cp310", "interpreter": "/opt/python3.10/bin/python3.10"}
    kbit = make_plan(config.load_matrix(REPO / "matrix.toml"), linux_host()).build_specs()
    assert all(cells.python_key(s) == {} for s in kbit)


def test_a_partial_build_uses_the_plans_build_environment() -> None:
    """`wheelmatrix build --cell <one cp310 cell>` must reuse the environment (and so the build tree)
    of the whole plan: a different environment makes scikit-build-core clear the tree."""
    from wheelmatrix.stages import cells

    plan = qext_plan(host_with(*PYTHONS))
    one = plan.build_specs([plan.cell("linux-x86_64-cuda130-cp310")])
    assert (
        cells.oldest_interpreter(one) == cells.oldest_interpreter(plan.build_specs()) == "/opt/python3.9/bin/python3.9"
    )
