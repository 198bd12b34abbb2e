"""The extension test project (tests/projects/qext) released by the toolkit, for real.

qext is a CPython extension (nanobind, from PyPI through scikit-build-core) whose CUDA variant links
cudart (static) and cuBLAS (NVIDIA's wheel, declared). Its release on this machine: per-version
wheels for the CPythons below 3.12 that pyenv holds here, one cp312-abi3 wheel, as the CPU
distribution ``qext`` and the CUDA 13 distribution ``qext-cuda13x``. The release must be exactly
`wheelmatrix plan --wheels`; `check --strict` installs every wheel into a fresh venv of each Python
its tag takes and runs ``python -m qext`` (the CUDA module imports and says "no GPU": there is none
here). NVIDIA's cuBLAS wheel (423 MB) comes from the toolchain cache, never downloaded per Python.
Then the four ways dist/ can go wrong, each a named finding of `check --strict`.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from wheelmatrix import config
from wheelmatrix.binaries import inspect_binary
from wheelmatrix.cli import main
from wheelmatrix.host import detect, find_python
from wheelmatrix.plan import expected_wheels, make_plan
from wheelmatrix.stages.check import check_release
from wheelmatrix.stages.repair import rate
from wheelmatrix.wheelfile import WheelContents, read_wheel, write_wheel
from wm_support import REPO, drop_metadata_line

pytestmark = pytest.mark.slow
QEXT = REPO / "tests" / "projects" / "qext"


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("qext")
    source = tmp / "qext"
    shutil.copytree(QEXT, source, ignore=shutil.ignore_patterns("build", "dist", "__pycache__"))
    work, dist = tmp / "work", tmp / "dist"
    matrix = str(source / "matrix.toml")
    assert main(["build", "--matrix", matrix, "--work", str(work), "--no-cache", "-q"]) == 0
    assert main(["assemble", "--matrix", matrix, "--work", str(work), "--dist", str(dist), "-q"]) == 0
    m = config.load_matrix(source / "matrix.toml")
    plan = make_plan(m, detect(m))
    return {"tmp": tmp, "work": work, "dist": dist, "matrix": m, "plan": plan, "source": source}


def test_no_file_of_the_project_names_the_toolkit_but_its_matrix() -> None:
    naming = [
        p.relative_to(QEXT).as_posix()
        for p in QEXT.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and b"wheelmatrix" in p.read_bytes().lower()
    ]
    assert naming == ["matrix.toml"]


def test_release_is_exactly_the_expected_wheels(released: dict[str, Any]) -> None:
    plan = released["plan"]
    oracle = expected_wheels(plan)
    assert oracle is not None and all(w.buildable for w in oracle), [c.reason for c in plan.cells if not c.buildable]
    built = sorted(p.name for p in released["dist"].glob("*.whl"))
    assert built == [w.filename for w in oracle]
    # per-version for every CPython >= 3.9 and < 3.12 this host has, abi3 from 3.12, both distributions
    here = [v for v in ("3.9", "3.10", "3.11") if find_python(v) is not None]
    tags = [f"cp{v.replace('.', '')}-cp{v.replace('.', '')}" for v in here] + ["cp312-abi3"]
    assert built == sorted(f"{d}-0.1.0-{t}-manylinux_2_28_x86_64.whl" for d in ("qext", "qext_cuda13x") for t in tags)
    record = json.loads((released["dist"] / "build-record.json").read_text())
    assert {c["status"] for c in record["cells"]} == {"built"}


def test_kernels_compile_once_per_variant(released: dict[str, Any]) -> None:
    """The per-Python cells of a variant share one build tree: the CUDA kernels are compiled by the
    first cell only, every further Python relinks the module."""
    logs = sorted((released["work"] / "cells").glob("linux-x86_64-cuda130-*/build.log"))
    compiled = [log.parent.name for log in logs if "Building CUDA object" in log.read_text()]
    kernels = [log.parent.name for log in logs if "qext_kernels.dir/csrc/quantize.cpp.o" in log.read_text()]
    assert kernels == compiled
    assert len(logs) >= 2
    first = released["plan"].build_specs([c for c in released["plan"].buildable if c.cuda is not None])[0]
    assert compiled == [first.cell_id]


def test_cuda_wheels_declare_cublas_and_vendor_nothing_of_nvidia(released: dict[str, Any]) -> None:
    for wheel in released["dist"].glob("qext_cuda13x-*.whl"):
        contents = read_wheel(wheel)
        meta = contents.text(f"{contents.dist_info}/METADATA")
        assert "Name: qext-cuda13x" in meta and "Requires-Dist: nvidia-cublas==13.*" in meta
        modules = [n for n in contents.files if n.startswith("qext/_qext_cuda130.") and n.endswith(".so")]
        assert len(modules) == 1
        info = inspect_binary(contents.files[modules[0]])
        declared = next(c for c in released["plan"].cells if c.cuda is not None)  # the matrix's archs
        assert "libcublas.so.13" in info.needed
        assert info.sass == declared.sass and info.ptx == declared.ptx, (info.sass, info.ptx)
        assert not any(".libs/" in n for n in contents.files), "nothing vendored"
        rating = rate(wheel)  # within policy; the one library outside is the declared cuBLAS
        assert rating.sym_tag in ("manylinux_2_17_x86_64", "manylinux_2_26_x86_64", "manylinux_2_28_x86_64")
        assert sorted(rating.external_libs) == ["libcublas.so.13"]


def _reference(values: list[float]) -> tuple[list[int], float]:
    absmax = max((abs(v) for v in values), default=0.0)
    if absmax == 0.0:
        return [0] * len(values), 0.0
    scale = absmax / 127.0
    return [max(-127, min(127, round(v / scale))) for v in values], scale


def test_cpu_extension_matches_the_reference_on_each_python(released: dict[str, Any], tmp_path: Path) -> None:
    rng = random.Random(17)
    values = [rng.uniform(-4, 4) for _ in range(257)] + [0.0, 1e-3, -1e-3]
    want_q, want_scale = _reference([float(f"{v:.6g}") for v in values])
    probe = "import json,sys,qext; print(json.dumps(qext.quantize_int8(json.loads(sys.stdin.read()))))"
    ran = []
    for wheel in sorted(released["dist"].glob("qext-*.whl")):
        tag = wheel.name.split("-")[2]  # cp39 ... cp312 (abi3)
        version = f"{tag[2]}.{tag[3:]}"
        python = find_python(version)
        assert python is not None
        folder = tmp_path / wheel.stem
        zipfile.ZipFile(wheel).extractall(folder)
        done = subprocess.run(
            [str(python.path), "-c", probe], input=json.dumps([float(f"{v:.6g}") for v in values]),
            cwd=folder, capture_output=True, text=True, check=True, timeout=120,
        )  # fmt: skip
        q, scale = json.loads(done.stdout)
        assert abs(scale - want_scale) <= 1e-6 * want_scale
        # float32 vs float64 rounding may move a value that sits on .5 by one step
        assert sum(a != b for a, b in zip(q, want_q, strict=True)) <= 2
        assert all(abs(a - b) <= 1 for a, b in zip(q, want_q, strict=True))
        ran.append(version)
    assert "3.12" in ran and len(ran) == len(list(released["dist"].glob("qext-*.whl")))


def test_check_strict_installs_and_runs_every_wheel(released: dict[str, Any]) -> None:
    dist, work = released["dist"], released["work"]
    args = ["check", "--matrix", str(released["source"] / "matrix.toml"), "--dist", str(dist), "--work", str(work)]
    assert main([*args, "--strict", "-q"]) == 0
    report = json.loads((dist / "check-report.json").read_text())
    installed: dict[str, list[str]] = {}
    for f in report["files"]:
        installed[f["file"]] = [i["python"] for i in f["installs"] if i["status"] == "passed"]
    for name, pythons in installed.items():
        assert pythons, f"{name} installed on no Python"
        if "-abi3-" in name:
            assert {"3.12", "3.13"} <= set(pythons) or "3.12" in pythons
    logs = list((work / "check" / "logs").glob("qext_cuda13x-*.log"))
    said = [json.loads(line) for log in logs for line in log.read_text().splitlines() if line.startswith("{")]
    assert said and all(d["backend"] == "cuda" and d["gpu"] is False and d["reason"].startswith("no GPU") for d in said)
    assert all(d["cublas"] >= 130000 for d in said)  # libcublas from NVIDIA's wheel was loaded


def _broken(released: dict[str, Any], tmp_path: Path) -> Path:
    dist = tmp_path / "dist"
    shutil.copytree(released["dist"], dist)
    for junk in ("check-report.json", "report.html"):
        (dist / junk).unlink(missing_ok=True)
    return dist


def _codes(released: dict[str, Any], dist: Path) -> set[str]:
    oracle = expected_wheels(released["plan"]) or ()
    result = check_release(
        released["matrix"], dist, strict=True, install=False, write=False,
        expected=[w.filename for w in oracle if w.buildable], allowed=[w.filename for w in oracle],
    )  # fmt: skip
    assert not result.passed
    return {f.code for f in result.failing}


def test_check_strict_fails_on_a_missing_wheel(released: dict[str, Any], tmp_path: Path) -> None:
    dist = _broken(released, tmp_path)
    (dist / "qext_cuda13x-0.1.0-cp312-abi3-manylinux_2_28_x86_64.whl").unlink()
    assert "WM803" in _codes(released, dist)


def test_check_strict_fails_on_an_extra_wheel(released: dict[str, Any], tmp_path: Path) -> None:
    dist = _broken(released, tmp_path)
    contents = read_wheel(dist / "qext-0.1.0-cp39-cp39-manylinux_2_28_x86_64.whl")
    write_wheel(WheelContents("qext-0.1.0-cp38-cp38-manylinux_2_28_x86_64.whl", contents.files, contents.modes), dist)
    assert "WM804" in _codes(released, dist)


def test_check_strict_fails_on_a_wheel_vendoring_libcublas(released: dict[str, Any], tmp_path: Path) -> None:
    dist = _broken(released, tmp_path)
    path = dist / "qext_cuda13x-0.1.0-cp39-cp39-manylinux_2_28_x86_64.whl"
    contents = read_wheel(path)
    module = next(n for n in contents.files if n.endswith(".so"))
    # what `auditwheel repair` without the exclude would have done: a renamed copy in <dist>.libs/
    contents.put("qext_cuda13x.libs/libcublas-8a1b2c3d.so.13", contents.files[module])
    path.unlink()
    write_wheel(contents, dist)
    assert "WM413" in _codes(released, dist)


def test_check_strict_fails_on_a_wheel_lacking_the_nvidia_requirement(released: dict[str, Any], tmp_path: Path) -> None:
    dist = _broken(released, tmp_path)
    drop_metadata_line(
        dist / "qext_cuda13x-0.1.0-cp310-cp310-manylinux_2_28_x86_64.whl", "Requires-Dist: nvidia-cublas==13.*\n"
    )
    assert "WM414" in _codes(released, dist)


def test_check_strict_fails_on_an_abi3_wheel_outside_the_stable_abi(released: dict[str, Any], tmp_path: Path) -> None:
    """abi3audit, for real: the cp311 module (full C API) put into the abi3 wheel under the abi3 name."""
    dist = _broken(released, tmp_path)
    path = dist / "qext-0.1.0-cp312-abi3-manylinux_2_28_x86_64.whl"
    contents = read_wheel(path)
    full = read_wheel(dist / "qext-0.1.0-cp311-cp311-manylinux_2_28_x86_64.whl")
    module = next(n for n in full.files if n.endswith(".so"))
    contents.put("qext/_qext_cpu.abi3.so", full.files[module])
    path.unlink()
    write_wheel(contents, dist)
    oracle = expected_wheels(released["plan"]) or ()
    result = check_release(released["matrix"], dist, strict=True, install=False, write=False,
                           expected=[w.filename for w in oracle], allowed=[])  # fmt: skip
    found = [f for f in result.failing if f.code == "WM415"]
    assert [f.file for f in found] == [path.name]
    assert "symbols outside the stable ABI" in found[0].what
