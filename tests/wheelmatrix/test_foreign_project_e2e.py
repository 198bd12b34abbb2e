"""A foreign-shaped project released by the toolkit with a matrix.toml alone, for real.

tests/projects/qblas is shaped like bitsandbytes, not like the toolkit's first user: its own
backend variable (COMPUTE_BACKEND), libraries in the package folder itself, a CUDA library that
links cuBLAS, its own ctypes loader, no file naming the toolkit but its matrix.toml. Its CPU and
CUDA 13.0 (+ cuBLAS, from NVIDIA's wheels) cells are built, assembled, repaired by auditwheel,
installed into a fresh venv and loaded. No GPU here: the CUDA library is loaded (cuBLAS found
through its run path) and asked for versions, which need no device.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import HeaderParser
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from wheelmatrix.binaries import inspect_binary
from wheelmatrix.cli import main
from wheelmatrix.stages.repair import rate
from wm_support import REPO

pytestmark = pytest.mark.slow
QBLAS = REPO / "tests" / "projects" / "qblas"


@pytest.fixture(scope="module")
def released(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("qblas")
    source = tmp / "qblas"
    shutil.copytree(QBLAS, source, ignore=shutil.ignore_patterns("build", "dist", "__pycache__"))
    work, dist = tmp / "work", tmp / "dist"
    matrix = str(source / "matrix.toml")
    assert main(["build", "--matrix", matrix, "--work", str(work), "--no-cache", "-q"]) == 0
    assert main(["assemble", "--matrix", matrix, "--work", str(work), "--dist", str(dist), "-q"]) == 0
    (wheel,) = dist.glob("*.whl")
    return {"tmp": tmp, "wheel": wheel, "record": json.loads((dist / "build-record.json").read_text())}


def test_no_file_of_the_project_names_the_toolkit_but_its_matrix() -> None:
    naming = [
        p.relative_to(QBLAS).as_posix()
        for p in QBLAS.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and b"wheelmatrix" in p.read_bytes().lower()
    ]
    assert naming == ["matrix.toml"]


def test_cpu_and_cuda_cells_assemble_into_one_wheel_within_policy(released: dict[str, Any]) -> None:
    wheel: Path = released["wheel"]
    assert wheel.name == "qblas-0.3.0-py3-none-manylinux_2_28_x86_64.whl"
    cells = {c["cell_id"]: c["status"] for c in released["record"]["cells"]}
    assert cells == {"linux-x86_64-cpu": "built", "linux-x86_64-cuda130": "built"}
    rating = rate(wheel)
    # its symbols meet the policy; the one library outside the wheel is the declared cuBLAS
    # (auditwheel show knows no --exclude and counts it against overall_tag)
    assert rating.sym_tag in ("manylinux_2_17_x86_64", "manylinux_2_28_x86_64")
    assert sorted(rating.external_libs) == ["libcublas.so.13"]
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        cuda = inspect_binary(zf.read("qblas/libqblas_cuda130.so"))
        manifest = json.loads(zf.read("qblas/libqblas_cuda130.json"))
        meta = HeaderParser().parsestr(zf.read("qblas-0.3.0.dist-info/METADATA").decode())
    # the libraries sit in the package folder itself, next to the project's loader
    assert {"qblas/libqblas_cpu.so", "qblas/libqblas_cuda130.so", "qblas/_loader.py"} <= names
    # cuBLAS is declared, never vendored: the wheel stays small and carries no copy of it
    assert not any(n.startswith("qblas.libs/") for n in names)
    assert "libcublas.so.13" in cuda.needed
    assert "$ORIGIN/../nvidia/cu13/lib" in cuda.rpath
    assert "nvidia-cublas==13.*" in meta.get_all("Requires-Dist", [])
    # the manifest is the toolkit's, read from the binary
    assert manifest["backend"] == "cuda" and manifest["cuda"] == "13.0"
    assert (manifest["sass"], manifest["ptx"]) == ([80, 90], [90])
    assert manifest["flags"]["components"] == ["cublas"]


def _cublas_wheel() -> Path:
    root = Path(os.environ.get("WHEELMATRIX_TEST_CACHE_DIR") or Path.home() / ".cache" / "wheelmatrix")
    found = sorted(root.glob("toolchains/downloads/*/nvidia_cublas-13.*.whl"))
    if not found:
        pytest.fail(f"the CUDA 13.0 toolchain with cuBLAS left no nvidia_cublas wheel under {root}")
    return found[-1]


def test_installs_in_a_fresh_venv_and_loads_cublas_from_nvidia_wheel(released: dict[str, Any]) -> None:
    venv = released["tmp"] / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}

    def pip(*args: str) -> None:
        subprocess.run([str(python), "-m", "pip", "install", "-q", *args], check=True, env=env)

    pip("numpy")
    # cuBLAS from the very wheel the toolchain was made of (already downloaded and hash-checked).
    # --no-deps: its own dependency nvidia-cuda-nvrtc (loaded lazily by cuBLASLt, a download of its
    # own) is not needed to load the library; the declared requirement is checked below instead.
    cublas = _cublas_wheel()
    pip("--no-deps", str(cublas))
    pip("--no-deps", str(released["wheel"]))
    version = cublas.name.split("-")[1]
    with zipfile.ZipFile(released["wheel"]) as zf:
        meta = HeaderParser().parsestr(zf.read("qblas-0.3.0.dist-info/METADATA").decode())
    (req,) = [Requirement(r) for r in meta.get_all("Requires-Dist", []) if r.startswith("nvidia-cublas")]
    assert req.specifier.contains(version), (req, version)

    run = subprocess.run([str(python), "-m", "qblas"], capture_output=True, text=True, check=True, env=env)
    report = json.loads(run.stdout)
    assert report["library"].endswith("site-packages/qblas/libqblas_cuda130.so")
    assert report["backend"] == "cuda"
    assert report["cuda_runtime_version"] == 13000
    assert report["blas_version"] // 10000 == 13  # cuBLAS answered: found through the run path
    cpu = subprocess.run(
        [str(python), "-m", "qblas"], capture_output=True, text=True, check=True, env={**env, "QBLAS_BACKEND": "cpu"}
    )
    assert json.loads(cpu.stdout)["backend"] == "cpu"
