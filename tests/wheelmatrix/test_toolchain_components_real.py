"""A real CUDA component: CUDA 13.0 + cuBLAS from PyPI (~420 MiB more than the toolkit), locked
live through NVIDIA's cuda-toolkit metapackage, installed, verified, and linked by CMake through
``CUDA::cublas``; the system source pointed at that tree and at one without cuBLAS; CUDA 12.4 +
cuBLAS from Debian trixie (~230 MiB more .debs, ~1 min of unpacking on a cold cache).

One cache serves the session: ``$WHEELMATRIX_TEST_CACHE_DIR`` when set (the tests session sets it
to the toolkit's own cache, so a machine downloads each file once), else a temporary folder.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import textwrap
from pathlib import Path

import pytest

from wheelmatrix import _proc
from wheelmatrix.data import components
from wheelmatrix.errors import ToolchainError
from wheelmatrix.model import CudaSpec, Toolchain
from wheelmatrix.toolchains import Cache, InstalledToolchain, lock, lock_path_of, provide
from wheelmatrix.toolchains.lockfile import read_lock

from .toolchain_fixtures.matrices import matrix, release_matrix, spec

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]

KERNEL = textwrap.dedent(
    """
    #include <cublas_v2.h>
    #include <cuda_runtime.h>
    __global__ void scale(float a, float* y, int n) {
        int i = blockIdx.x * blockDim.x + threadIdx.x;
        if (i < n) y[i] *= a;
    }
    extern "C" int gemv_then_scale(const float* A, const float* x, float* y, int n) {
        cublasHandle_t handle;
        if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS) return -1;
        const float one = 1.0f, zero = 0.0f;
        cublasSgemv(handle, CUBLAS_OP_N, n, n, &one, A, n, x, 1, &zero, y, 1);
        cublasDestroy(handle);
        scale<<<(n + 127) / 128, 128>>>(2.0f, y, n);
        return static_cast<int>(cudaGetLastError());
    }
    """
)


def with_cublas(s: CudaSpec) -> CudaSpec:
    return dataclasses.replace(s, components=(components()["cublas"],))


@pytest.fixture(scope="module")
def real_cache(tmp_path_factory: pytest.TempPathFactory) -> Cache:
    folder = os.environ.get("WHEELMATRIX_TEST_CACHE_DIR")
    return Cache(Path(folder) if folder else tmp_path_factory.mktemp("toolchain-cache"))


@pytest.fixture(scope="module")
def cublas_matrix(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test matrix (13.0 from PyPI with cuBLAS) and its lock, resolved now from PyPI."""
    folder = tmp_path_factory.mktemp("matrix")
    lock(matrix(folder, with_cublas(spec("13.0", Toolchain("pypi")))))
    return folder


@pytest.fixture(scope="module")
def cuda130_cublas(cublas_matrix: Path, real_cache: Cache) -> InstalledToolchain:
    m = matrix(cublas_matrix, with_cublas(spec("13.0", Toolchain("pypi"))))
    return provide(m.cuda[0], lock_path=lock_path_of(m), cache=real_cache)


@pytest.fixture(scope="module")
def cuda124_cublas(tmp_path_factory: pytest.TempPathFactory, real_cache: Cache) -> InstalledToolchain:
    m = matrix(tmp_path_factory.mktemp("matrix124"), with_cublas(spec("12.4", Toolchain("debian", suite="trixie"))))
    lock(m)
    return provide(m.cuda[0], lock_path=lock_path_of(m), cache=real_cache)


def test_lock_pins_cublas_of_cuda_13_0(cublas_matrix: Path) -> None:
    entry = read_lock(cublas_matrix / "toolchains.lock")[("13.0", "pypi")]
    (cublas,) = [f for f in entry.files if f.role == "component"]
    assert cublas.name == "nvidia-cublas" and cublas.filename.endswith("x86_64.whl")
    # the metapackage of CUDA 13.0 said which cuBLAS: 13.1.x (cuBLAS numbers itself)
    assert any(i.startswith("component versions from cuda-toolkit 13.0.") for i in entry.indexes)
    assert cublas.version.startswith("13.")
    nvcc = next(f for f in entry.files if f.name == "nvidia-cuda-nvcc")
    assert nvcc.version.startswith("13.0.")


def test_pypi_13_0_with_cublas(cuda130_cublas: InstalledToolchain, real_cache: Cache) -> None:
    tc = cuda130_cublas
    assert tc.verified and tc.components == ("cublas",) and tc.to_json()["components"] == ["cublas"]
    lib = tc.root / "lib"
    for name in ("libcublas.so", "libcublasLt.so"):  # fix-up: the unversioned names the wheel lacks
        assert (lib / name).is_symlink() and (lib / name).resolve().is_file()
    assert (tc.root / "include" / "cublas_v2.h").is_file()
    record = next(r for r in real_cache.all_entries() if r.identity == tc.identity)
    assert record.meta["components"] == ["cublas"]
    base = provide(release_matrix(REPO).cuda_spec("13.0"), lock_path=REPO / "toolchains.lock", cache=real_cache)
    assert base.identity != tc.identity and base.components == ()  # another cache entry


def test_debian_12_4_with_cublas(cuda124_cublas: InstalledToolchain) -> None:
    tc = cuda124_cublas
    assert tc.verified and tc.components == ("cublas",)
    lib = tc.root / "lib64"
    assert (lib / "libcublas.so").resolve().name == "libcublas.so.12.4.5.8"  # nvidia-cuda-dev's link, kept
    assert (lib / "libcublasLt.so").resolve().is_file()
    assert not list(lib.glob("libcublas*_static.a"))  # static archives stay dropped
    assert (tc.root / "include" / "cublas_v2.h").is_file()


@pytest.mark.parametrize("fixture", ["cuda130_cublas", "cuda124_cublas"])
def test_cmake_links_cuda_cublas(fixture: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """The cmake_args the build stage gets: find_package(CUDAToolkit) + CUDA::cublas links."""
    tc: InstalledToolchain = request.getfixturevalue(fixture)
    lib_dir = "lib" if tc.source == "pypi" else "lib64"
    arch = "120-real" if tc.version.major >= 13 else "90-real"
    (tmp_path / "k.cu").write_text(KERNEL)
    (tmp_path / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.24)\nproject(p LANGUAGES CXX CUDA)\n"
        "find_package(CUDAToolkit REQUIRED)\nadd_library(k SHARED k.cu)\n"
        "target_link_libraries(k PRIVATE CUDA::cublas CUDA::cudart_static)\n"
    )
    cmake = shutil.which("cmake")
    assert cmake, "cmake is a test dependency (noxfile TEST_DEPS)"
    _proc.run(
        [cmake, "-S", tmp_path, "-B", tmp_path / "b", f"-DCMAKE_CUDA_ARCHITECTURES={arch}", *tc.cmake_args],
        extra_env=tc.env,
        timeout=600,
    )
    _proc.run([cmake, "--build", tmp_path / "b"], extra_env=tc.env, timeout=600)
    library = tmp_path / "b" / "libk.so"
    needed = _proc.run(["readelf", "-dW", library], timeout=60).output
    assert f"[libcublas.so.{tc.version.major}]" in needed  # (libcublasLt comes through libcublas: --as-needed)
    found = (tmp_path / "b" / "CMakeCache.txt").read_text()
    for name in ("cublas", "cublasLt"):  # what CUDA::cublas brings, from the toolchain's tree
        assert f"CUDA_{name}_LIBRARY:FILEPATH={tc.root / lib_dir / f'lib{name}.so'}" in found


def test_system_source_checks_the_component(
    cuda130_cublas: InstalledToolchain, real_cache: Cache, tmp_path: Path
) -> None:
    """The system source pointed at the tree with cuBLAS (verified, probe linked) and at the
    PyPI 13.0 tree without it (refused, naming the file)."""
    tc = provide(with_cublas(spec("13.0", Toolchain("system", path=cuda130_cublas.root))), cache=real_cache)
    assert tc.verified and tc.components == ("cublas",)
    base = provide(release_matrix(REPO).cuda_spec("13.0"), lock_path=REPO / "toolchains.lock", cache=real_cache)
    with pytest.raises(ToolchainError) as info:
        provide(with_cublas(spec("13.0", Toolchain("system", path=base.root))), cache=real_cache)
    assert f"lacks {base.root}/include/cublas_v2.h" in info.value.message
    assert info.value.fix and "libcublas-dev-13-0" in info.value.fix
