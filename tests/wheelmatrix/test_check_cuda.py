"""wheelmatrix check reads a real CUDA library's archs from its fat binary: one built with CUDA 13.0's
nvcc (the toolkit's pinned PyPI toolchain) for fewer archs than the matrix declares is a finding.

Slow: it provides the CUDA 13.0 toolchain (cached after the first run: ``$WHEELMATRIX_TEST_CACHE_DIR``
when set) and compiles with nvcc.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from build_fixtures.cellwheels import HERE, make_cell_wheel, make_matrix
from wheelmatrix import _proc
from wheelmatrix.config import load_matrix
from wheelmatrix.model import CheckSpec
from wheelmatrix.stages.check import check_release
from wheelmatrix.toolchains import Cache, InstalledToolchain, provide
from wheelmatrix.wheelfile import read_wheel, write_wheel
from wm_support import REPO

pytestmark = pytest.mark.slow

KERNEL = """
#include <cuda_runtime.h>
__global__ void scale(float *x, float a, int n) { int i = blockIdx.x * blockDim.x + threadIdx.x; if (i < n) x[i] *= a; }
extern "C" int kbit_scale(float *x, float a, int n) { scale<<<(n + 255) / 256, 256>>>(x, a, n); return (int)cudaGetLastError(); }
extern "C" const char *kbit_backend(void) { return "cuda"; }
extern "C" int kbit_cuda_version(void) { return 13000; }
"""


@pytest.fixture(scope="module")
def cuda130(tmp_path_factory: pytest.TempPathFactory) -> InstalledToolchain:
    folder = os.environ.get("WHEELMATRIX_TEST_CACHE_DIR")
    cache = Cache(Path(folder) if folder else tmp_path_factory.mktemp("toolchain-cache"))
    spec = load_matrix(REPO / "matrix.toml").cuda_spec("13.0")
    return provide(spec, lock_path=REPO / "toolchains.lock", cache=cache)


def build(tc: InstalledToolchain, folder: Path, *gencode: str) -> bytes:
    """k.cu compiled by nvcc for ``gencode`` and linked by the host compiler with the static runtime, as
    CMake does (an `nvcc -shared` link records its -L paths into the toolchain cache in the library)."""
    flags = [a for g in gencode for a in ("-gencode", g)]
    _proc.run([tc.nvcc, "-c", "-Xcompiler", "-fPIC", *flags, "k.cu", "-o", "k.o"], cwd=folder, timeout=600)
    _proc.run(
        ["c++", "-shared", "k.o", f"-L{tc.root / 'lib'}", "-lcudart_static", "-ldl", "-lpthread", "-lrt", "-o",
         "libkbit_cuda130.so"],
        cwd=folder, timeout=600,
    )  # fmt: skip
    return (folder / "libkbit_cuda130.so").read_bytes()


def test_library_missing_a_declared_arch(cuda130: InstalledToolchain, tmp_path: Path) -> None:
    (tmp_path / "k.cu").write_text(KERNEL)
    # sm_75 SASS only: the matrix below declares SASS 75 and 80 and PTX 80
    lib = build(cuda130, tmp_path, "arch=compute_75,code=sm_75")
    cell = make_cell_wheel(tmp_path, "cpu")
    contents = read_wheel(cell.path)
    # a manifest that tells the truth about the binary: what fails is the matrix's promise
    manifest = {"schema": 1, "library": "libkbit_cuda130.so", "backend": "cuda", "cuda": "13.0", "sass": [75],
                "ptx": [], "version": "0.1.0", "runtime": "static", "flags": {}}  # fmt: skip
    contents.put("kbit/_lib/libkbit_cuda130.so", lib)
    contents.put("kbit/_lib/libkbit_cuda130.json", json.dumps(manifest).encode())
    meta = "kbit-0.1.0.dist-info/METADATA"
    contents.put(meta, contents.files[meta].replace(b"\n\n", b"\nDescription-Content-Type: text/plain\n\n", 1))
    # nvcc's static runtime binds GLIBC_2.34 here: tag the wheel with the policy it meets
    wheel_file = "kbit-0.1.0.dist-info/WHEEL"
    contents.put(wheel_file, contents.files[wheel_file].replace(b"linux_x86_64", b"manylinux_2_34_x86_64"))
    contents.filename = "kbit-0.1.0-py3-none-manylinux_2_34_x86_64.whl"
    (tmp_path / "in").mkdir()
    wheel = write_wheel(contents, tmp_path / "in")

    base = make_matrix(tmp_path, policy="manylinux_2_34")
    cuda = replace(load_matrix(REPO / "matrix.toml").cuda_spec("13.0"), sass=(75, 80), ptx=(80,))
    matrix = replace(base, cuda=(cuda,), check=CheckSpec())
    result = check_release(matrix, tmp_path / "dist", [wheel], strict=True, install=False, work=tmp_path / "work")

    found = {f.code: f.what for f in result.findings}
    assert set(found) == {"WM501", "WM503"}, result.findings
    assert found["WM501"] == (
        "kbit/_lib/libkbit_cuda130.so (CUDA 13.0) lacks SASS sm_80: it holds SASS [75], matrix.toml declares [75, 80]"
    )
    assert found["WM503"].startswith("kbit/_lib/libkbit_cuda130.so (CUDA 13.0) lacks PTX sm_80")
    assert not result.passed

    # the same through the command line, in a real process, over kbit's frozen release contract
    # (CUDA 13.0: SASS 75 ... 120, PTX 120), its Linux policy raised to what nvcc's runtime needs
    toml = (
        (HERE / "kbit-release.toml")
        .read_text()
        .replace(
            '[platform.linux-x86_64]\npolicy = "manylinux_2_28"', '[platform.linux-x86_64]\npolicy = "manylinux_2_34"'
        )
    )
    (tmp_path / "matrix.toml").write_text(toml)
    proc = subprocess.run(
        [sys.executable, "-m", "wheelmatrix", "check", "--strict", "--no-install", "--matrix", "matrix.toml",
         "--dist", "dist", "--work", "work", str(wheel)],
        cwd=tmp_path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "\nWM501 error" in proc.stdout and "lacks SASS sm_80, sm_86, sm_89, sm_90, sm_100, sm_120" in proc.stdout
    assert "\nWM503 error" in proc.stdout and "Traceback" not in proc.stdout + proc.stderr

    (lib_report,) = [lib for lib in result.files[0].libraries if lib.backend == "cuda"]
    assert (lib_report.sass, lib_report.ptx, lib_report.runtime) == ((75,), (), "static")
    assert lib_report.cuda == "13.0" and lib_report.compressed > 0 and lib_report.size == len(lib)

    # the same library with the declared archs passes, and its PTX names the CUDA release that wrote it
    contents.put("kbit/_lib/libkbit_cuda130.so", build(cuda130, tmp_path, "arch=compute_75,code=sm_75",
                                                        "arch=compute_80,code=[sm_80,compute_80]"))  # fmt: skip
    contents.put("kbit/_lib/libkbit_cuda130.json", json.dumps({**manifest, "sass": [75, 80], "ptx": [80]}).encode())
    wheel = write_wheel(contents, tmp_path / "in")
    result = check_release(matrix, tmp_path / "dist", [wheel], strict=True, install=False, work=tmp_path / "work")
    assert result.findings == (), result.findings
    (lib_report,) = [lib for lib in result.files[0].libraries if lib.backend == "cuda"]
    assert (lib_report.ptx_isa, lib_report.runtime_cuda) == ("9.0", "13.0")
