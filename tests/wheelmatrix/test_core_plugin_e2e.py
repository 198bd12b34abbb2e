"""The core + plugin layout for real: qext released with ``split = "core-plugin"``.

A copy of tests/projects/qext whose matrix turns on ``QEXT_SHARED_KERNELS`` (the kernels, CUDA
ones included, in ``libqext_kernels_<variant>.so`` beside the module, found through ``$ORIGIN``) and
splits each distribution into a py3-none core (the kernels library) and a per-Python plugin (the
extension module). Kept small (2 cores): CPython 3.11 (per-version) and 3.12 (abi3), CPU and CUDA 13.0
with one SASS arch, so four cells. The real build, assemble and `check --strict` (which installs each
plugin with its core into a fresh venv of each Python and runs ``python -m qext``: the CUDA plugin
says "no GPU", NVIDIA's cuBLAS wheel comes from the toolchain cache); dist/ is exactly
`plan --wheels`; the CPU plugins called against the reference from fresh venvs; a plugin without
its core fails to import, saying so; a plugin whose metadata lost its core requirement is WM805.
"""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from wheelmatrix import config
from wheelmatrix.binaries import inspect_binary
from wheelmatrix.cli import main
from wheelmatrix.host import detect, find_python
from wheelmatrix.plan import expected_wheels, make_plan
from wheelmatrix.stages.check import check_release, local_runtime_wheels
from wheelmatrix.toolchains.cache import cache_root
from wheelmatrix.wheelfile import read_wheel
from wm_support import REPO, drop_metadata_line

pytestmark = pytest.mark.slow
QEXT = REPO / "tests" / "projects" / "qext"
MATRIX = """
[project]
name = "qext"
import-package = "qext"
library = "_qext_{variant}"
python-api = "abi3"
abi3-floor = "3.12"

[build]
backend = { variable = "QEXT_BACKEND", cpu = "cpu", cuda = "cuda" }
defines = { QEXT_SHARED_KERNELS = "ON" }

[matrix]
platforms = ["linux-x86_64"]
cuda = ["13.0"]
python = ["3.11", "3.12"]

[cuda."13.0"]
sass = [90]
ptx = [90]
toolchain = { source = "pypi" }
components = ["cublas"]

[packaging]
split = "core-plugin"
core-files = ["libqext_kernels_*.so*"]

[check]
smoke = ["python", "-m", "qext"]
"""
TAIL = "0.1.0-{}-manylinux_2_28_x86_64.whl"


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("qext-core-plugin")
    source = tmp / "qext"
    shutil.copytree(QEXT, source, ignore=shutil.ignore_patterns("build", "dist", "__pycache__"))
    (source / "matrix.toml").write_text(MATRIX)
    work, dist = tmp / "work", tmp / "dist"
    matrix = str(source / "matrix.toml")
    assert main(["build", "--matrix", matrix, "--work", str(work), "--no-cache", "-q"]) == 0
    assert main(["assemble", "--matrix", matrix, "--work", str(work), "--dist", str(dist), "-q"]) == 0
    m = config.load_matrix(source / "matrix.toml")
    return {"tmp": tmp, "work": work, "dist": dist, "matrix": m, "plan": make_plan(m, detect(m)), "source": source}


def test_release_is_exactly_the_expected_wheels(released: dict[str, Any]) -> None:
    oracle = expected_wheels(released["plan"])
    assert oracle is not None and all(w.buildable for w in oracle)
    built = sorted(p.name for p in released["dist"].glob("*.whl"))
    assert built == [w.filename for w in oracle]
    plugins = [f"{d}-{TAIL.format(t)}" for d in ("qext", "qext_cuda13x") for t in ("cp311-cp311", "cp312-abi3")]
    cores = [f"{d}-{TAIL.format('py3-none')}" for d in ("qext_core", "qext_cuda13x_core")]
    assert built == sorted(plugins + cores)
    record = json.loads((released["dist"] / "build-record.json").read_text())
    assert {w["layout"] for w in record["wheels"]} == {"core-plugin"}


def test_the_core_holds_the_kernels_and_the_plugin_the_module(released: dict[str, Any]) -> None:
    dist = released["dist"]
    for variant, dist_name in (("cpu", "qext"), ("cuda130", "qext_cuda13x")):
        core = read_wheel(dist / f"{dist_name}_core-{TAIL.format('py3-none')}")
        assert "Tag: py3-none-manylinux_2_28_x86_64\n" in core.text(f"{core.dist_info}/WHEEL")
        library = f"qext/libqext_kernels_{variant}.so"
        assert [n for n in core.files if not n.startswith(core.dist_info)] == [library]
        kernels = inspect_binary(core.files[library])
        for tag in ("cp311-cp311", "cp312-abi3"):
            plugin = read_wheel(dist / f"{dist_name}-{TAIL.format(tag)}")
            assert not any("libqext_kernels" in n for n in plugin.files), "no file in both"
            module = next(n for n in plugin.files if n.startswith(f"qext/_qext_{variant}.") and n.endswith(".so"))
            info = inspect_binary(plugin.files[module])
            assert f"libqext_kernels_{variant}.so" in info.needed and "$ORIGIN" in info.rpath
            assert not info.has_cuda_code and "libcublas.so.13" not in info.needed  # all in the core
            meta = plugin.text(f"{plugin.dist_info}/METADATA")
            assert f"Requires-Dist: {dist_name.replace('_', '-')}-core==0.1.0\n" in meta
            assert "nvidia" not in meta
        core_meta = core.text(f"{core.dist_info}/METADATA")
        if variant == "cpu":
            assert not kernels.has_cuda_code and "Requires-Dist" not in core_meta
        else:  # the CUDA code, cuBLAS's link and its declaration are the core's
            assert kernels.sass == (90,) and kernels.ptx == (90,) and "libcublas.so.13" in kernels.needed
            assert "Requires-Dist: nvidia-cublas==13.*\n" in core_meta


def test_check_strict_installs_every_plugin_with_its_core(released: dict[str, Any]) -> None:
    dist, work = released["dist"], released["work"]
    args = ["check", "--matrix", str(released["source"] / "matrix.toml"), "--dist", str(dist), "--work", str(work)]
    assert main([*args, "--strict", "-q"]) == 0
    report = json.loads((dist / "check-report.json").read_text())
    libraries = {f["file"]: f["libraries"] for f in report["files"]}
    kernels = libraries[f"qext_cuda13x_core-{TAIL.format('py3-none')}"]  # read and checked in the core
    assert [(k["file"], k["backend"], k["sass"], k["ptx"]) for k in kernels] == [
        ("libqext_kernels_cuda130.so", "cuda", [90], [90])
    ]
    passed = {f["file"]: {i["python"] for i in f["installs"] if i["status"] == "passed"} for f in report["files"]}
    assert passed[f"qext_cuda13x-{TAIL.format('cp311-cp311')}"] == {"3.11"}
    assert passed[f"qext_cuda13x-{TAIL.format('cp312-abi3')}"] == {"3.12"}
    logs = list((work / "check" / "logs").glob("qext_cuda13x-*.log"))
    said = [json.loads(line) for log in logs for line in log.read_text().splitlines() if line.startswith("{")]
    assert len(said) == 2
    assert all(d["backend"] == "cuda" and d["gpu"] is False and d["reason"].startswith("no GPU") for d in said)
    assert all(d["cublas"] >= 130000 for d in said)  # the core's kernels library loaded NVIDIA's cuBLAS


def _reference(values: list[float]) -> tuple[list[int], float]:
    absmax = max(abs(v) for v in values)
    scale = absmax / 127.0
    return [max(-127, min(127, round(v / scale))) for v in values], scale


def _venv(folder: Path, version: str, *wheels: Path, deps: bool = False) -> Path:
    python = find_python(version)
    assert python is not None, f"CPython {version} is on this host (the plan built for it)"
    subprocess.run([str(python.path), "-m", "venv", str(folder)], check=True, timeout=300)
    vpy = folder / "bin" / "python"
    pip = [str(vpy), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index"]
    subprocess.run([*pip, *([] if deps else ["--no-deps"]), *map(str, wheels)], check=True, timeout=300)
    return vpy


@pytest.mark.parametrize(("version", "tag"), [("3.11", "cp311-cp311"), ("3.12", "cp312-abi3")])
def test_cpu_plugin_with_its_core_matches_the_reference(
    released: dict[str, Any], tmp_path: Path, version: str, tag: str
) -> None:
    dist = released["dist"]
    # pip resolves the core from the plugin's exact requirement (dist/ is the only index)
    python = find_python(version)
    assert python is not None
    subprocess.run([str(python.path), "-m", "venv", str(tmp_path / "venv")], check=True, timeout=300)
    vpy = tmp_path / "venv" / "bin" / "python"
    subprocess.run(
        [str(vpy), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-index", "--find-links",
         str(dist), "qext==0.1.0"], check=True, timeout=300,
    )  # fmt: skip
    listed = subprocess.run([str(vpy), "-m", "pip", "list", "--format", "json"], capture_output=True, text=True,
                            check=True, timeout=120).stdout  # fmt: skip
    assert {"qext", "qext-core"} <= {p["name"] for p in json.loads(listed)}
    rng = random.Random(17)
    values = [float(f"{rng.uniform(-4, 4):.6g}") for _ in range(257)] + [1e-3, -1e-3]
    want_q, want_scale = _reference(values)
    probe = "import json,sys,qext; print(json.dumps([qext.backend, qext.quantize_int8(json.loads(sys.stdin.read()))]))"
    done = subprocess.run([str(vpy), "-c", probe], input=json.dumps(values), cwd=tmp_path, capture_output=True,
                          text=True, check=True, timeout=120)  # fmt: skip
    backend, (q, scale) = json.loads(done.stdout)
    assert backend == "cpu"
    assert abs(scale - want_scale) <= 1e-6 * want_scale
    assert all(abs(a - b) <= 1 for a, b in zip(q, want_q, strict=True))
    assert sum(a != b for a, b in zip(q, want_q, strict=True)) <= 2  # float32 vs float64 on a .5


def test_cuda_plugin_with_its_core_says_no_gpu(released: dict[str, Any], tmp_path: Path) -> None:
    """The abi3 CUDA plugin and its core with --no-deps (NVIDIA's 400+ MB wheel stays out), cuBLAS
    from the toolchain cache's wheel when there is one: imports and says why no GPU."""
    dist = released["dist"]
    cached, _ = local_runtime_wheels(["nvidia-cublas==13.*"], [cache_root() / "toolchains" / "downloads"])
    wheels = [dist / f"qext_cuda13x-{TAIL.format('cp312-abi3')}", dist / f"qext_cuda13x_core-{TAIL.format('py3-none')}"]
    vpy = _venv(tmp_path / "venv", "3.12", *wheels, *cached)
    done = subprocess.run(
        [str(vpy), "-m", "qext"], check=False, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    if cached:
        assert done.returncode == 0, done.stderr
        said = json.loads(done.stdout)
        assert said["backend"] == "cuda" and said["gpu"] is False and said["reason"].startswith("no GPU")
    else:  # no cuBLAS here: the core's library is found, its own cuBLAS is what is missing
        assert "libcublas.so.13" in done.stderr


def test_a_plugin_without_its_core_fails_to_import_saying_so(released: dict[str, Any], tmp_path: Path) -> None:
    vpy = _venv(tmp_path / "venv", "3.11", released["dist"] / f"qext-{TAIL.format('cp311-cp311')}")
    done = subprocess.run(
        [str(vpy), "-c", "import qext"], check=False, cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: qext: the extension module _qext_cpu")
    assert "libqext_kernels_cpu.so" in last and "core" in last


def test_check_strict_fails_on_a_plugin_lacking_its_core_requirement(released: dict[str, Any], tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    shutil.copytree(released["dist"], dist, ignore=shutil.ignore_patterns("check-report.json", "report.html"))
    path = dist / f"qext_cuda13x-{TAIL.format('cp311-cp311')}"
    drop_metadata_line(path, "Requires-Dist: qext-cuda13x-core==0.1.0\n")
    oracle = expected_wheels(released["plan"]) or ()
    result = check_release(released["matrix"], dist, strict=True, install=False, write=False,
                           expected=[w.filename for w in oracle], allowed=[])  # fmt: skip
    # WM802 too: the wheel changed after assemble recorded it
    assert {f.code for f in result.failing} == {"WM802", "WM805"}
    found = [f for f in result.failing if f.code == "WM805"]
    assert [f.file for f in found] == [path.name]
    assert "does not require qext-cuda13x-core==0.1.0" in found[0].what
