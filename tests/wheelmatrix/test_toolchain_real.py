"""Real toolchains from the real registries: CUDA 13.0 from PyPI, 11.8 and 12.4 from Debian's
archive, pinned by the repository's toolchains.lock; each compiles the probe (slow: ~1 GB of
downloads and ~1 min of unpacking per Debian toolkit on a cold cache).

One cache serves the whole session: ``$WHEELMATRIX_TEST_CACHE_DIR`` when set (to reuse
downloads between runs), else a session temporary folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from wheelmatrix import _proc
from wheelmatrix.errors import ToolchainError
from wheelmatrix.model import CudaSpec, Toolchain
from wheelmatrix.toolchains import Cache, InstalledToolchain, VerificationFailed, provide
from wheelmatrix.toolchains.lockfile import read_lock

from .toolchain_fixtures.matrices import matrix, release_matrix, spec

REPO = Path(__file__).resolve().parents[2]
LOCK = REPO / "toolchains.lock"

pytestmark = pytest.mark.slow

KERNEL = textwrap.dedent(
    """
    #include <cuda_runtime.h>
    #include <random>
    __global__ void axpy(float a, const float* x, float* y, int n) {
        int i = blockIdx.x * blockDim.x + threadIdx.x;
        if (i < n) y[i] += a * x[i];
    }
    extern "C" int run_axpy(float a, const float* x, float* y, int n) {
        std::minstd_rand gen(7);
        (void)gen();
        axpy<<<(n + 127) / 128, 128>>>(a, x, y, n);
        return static_cast<int>(cudaGetLastError());
    }
    """
)


@pytest.fixture(scope="session")
def real_cache(tmp_path_factory: pytest.TempPathFactory) -> Cache:
    folder = os.environ.get("WHEELMATRIX_TEST_CACHE_DIR")
    return Cache(Path(folder) if folder else tmp_path_factory.mktemp("toolchain-cache"))


@pytest.fixture(scope="session")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[CudaSpec, ...]:
    return release_matrix(REPO).cuda


def _provide(release: tuple[CudaSpec, ...], version: str, cache: Cache, **kw: bool) -> InstalledToolchain:
    chosen = next(s for s in release if str(s.version) == version)
    return provide(chosen, lock_path=LOCK, cache=cache, **kw)


@pytest.fixture(scope="session")
def cuda130(release: tuple[CudaSpec, ...], real_cache: Cache) -> InstalledToolchain:
    return _provide(release, "13.0", real_cache)


@pytest.fixture(scope="session")
def cuda124(release: tuple[CudaSpec, ...], real_cache: Cache) -> InstalledToolchain:
    return _provide(release, "12.4", real_cache)


@pytest.fixture(scope="session")
def cuda118(release: tuple[CudaSpec, ...], real_cache: Cache) -> InstalledToolchain:
    return _provide(release, "11.8", real_cache)


def compile_shared(tc: InstalledToolchain, work: Path, archs: tuple[int, ...]) -> Path:
    """Compile KERNEL with the toolchain's nvcc alone (no -ccbin: the toolchain must be whole)."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "k.cu").write_text(KERNEL)
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in archs]
    _proc.run([tc.nvcc, "-shared", "-Xcompiler", "-fPIC", *gencode, "k.cu", "-o", "libk.so"], cwd=work, timeout=600)
    return work / "libk.so"


def check_pinned(tc: InstalledToolchain, cache: Cache, version: str, source: str) -> None:
    """The installed entry was made from exactly the files toolchains.lock pins."""
    entry = read_lock(LOCK)[(version, source)]
    record = next(r for r in cache.all_entries() if r.identity == tc.identity)
    made_from = {(f["filename"], f["sha256"]) for f in record.meta["files"]}  # type: ignore[union-attr,index]
    assert made_from == {(f.filename, f.sha256) for f in entry.files}


def test_pypi_13_0(cuda130: InstalledToolchain, real_cache: Cache, tmp_path: Path) -> None:
    assert cuda130.verified
    assert cuda130.source == "pypi"
    assert cuda130.nvcc_version.startswith("13.0.")
    assert cuda130.host_cxx is None
    assert (cuda130.root / "lib" / "libcudart.so").resolve().is_file()  # fix-up: unversioned runtime
    assert "lib64" not in (cuda130.root / "bin" / "nvcc.profile").read_text()  # fix-up: lib, not lib64
    assert f"-DCMAKE_CUDA_COMPILER={cuda130.nvcc}" in cuda130.cmake_args
    check_pinned(cuda130, real_cache, "13.0", "pypi")
    lib = compile_shared(cuda130, tmp_path, (75, 120))
    assert b".nv_fatbin" in lib.read_bytes()


def test_debian_12_4(cuda124: InstalledToolchain, real_cache: Cache, tmp_path: Path) -> None:
    assert cuda124.verified
    assert cuda124.nvcc_version.startswith("12.4.")
    assert cuda124.host_cxx is None
    check_pinned(cuda124, real_cache, "12.4", "debian")
    lib = compile_shared(cuda124, tmp_path, (50, 90))
    listing = _proc.run([cuda124.root / "bin" / "cuobjdump", "--list-elf", lib]).output
    assert "sm_50" in listing and "sm_90" in listing
    # only what compiling needs was kept: no math libraries, profilers or sanitizers
    assert not list(cuda124.root.rglob("libcublas*"))
    assert cuda124.size < 400 << 20


def test_debian_11_8_uses_its_own_g_plus_plus_11(
    cuda118: InstalledToolchain, real_cache: Cache, tmp_path: Path
) -> None:
    assert cuda118.verified
    assert cuda118.nvcc_version.startswith("11.8.")
    assert cuda118.host_cxx is not None and cuda118.host_cxx.name.endswith("g++-11")
    version = _proc.run([cuda118.host_cxx, "-dumpversion"]).output.strip()
    assert version.split(".")[0] == "11"
    assert f"-DCMAKE_CUDA_HOST_COMPILER={cuda118.host_cxx}" in cuda118.cmake_args
    check_pinned(cuda118, real_cache, "11.8", "debian")
    # the launcher passes g++-11 by itself: host code with <random> compiles with no -ccbin given
    lib = compile_shared(cuda118, tmp_path, (50, 90))
    listing = _proc.run([cuda118.root / "bin" / "cuobjdump", "--list-elf", lib]).output
    assert "sm_50" in listing and "sm_90" in listing
    # and an explicit host compiler is respected: the system's gcc 12 is refused by 11.8's headers
    system_gxx = shutil.which("g++")
    if system_gxx and int(_proc.run([system_gxx, "-dumpversion"]).output.strip().split(".")[0]) > 11:
        failed = _proc.run([cuda118.nvcc, "-ccbin", system_gxx, "-c", "k.cu", "-o", "k.o"], cwd=tmp_path, check=False)
        assert failed.returncode != 0 and "unsupported GNU version" in failed.output


@pytest.mark.parametrize("fixture", ["cuda130", "cuda124", "cuda118"])
def test_cmake_finds_the_toolkit(fixture: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """The cmake_args the build stage gets configure and build a CUDA library with FindCUDAToolkit."""
    tc: InstalledToolchain = request.getfixturevalue(fixture)
    (tmp_path / "k.cu").write_text(KERNEL)
    (tmp_path / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.24)\nproject(p LANGUAGES CXX CUDA)\n"
        "find_package(CUDAToolkit REQUIRED)\nadd_library(k SHARED k.cu)\n"
        "target_link_libraries(k PRIVATE CUDA::cudart_static)\n"
    )
    cmake = shutil.which("cmake")
    assert cmake, "cmake is a test dependency (noxfile TEST_DEPS)"
    arch = "90-real" if tc.version.major < 13 else "120-real"
    _proc.run(
        [cmake, "-S", tmp_path, "-B", tmp_path / "b", f"-DCMAKE_CUDA_ARCHITECTURES={arch}", *tc.cmake_args],
        extra_env=tc.env,
        timeout=600,
    )
    _proc.run([cmake, "--build", tmp_path / "b"], extra_env=tc.env, timeout=600)
    assert (tmp_path / "b" / "libk.so").is_file()


def test_warm_offline_and_reverify(
    cuda130: InstalledToolchain, release: tuple[CudaSpec, ...], real_cache: Cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WHEELMATRIX_PYPI_URL", "http://127.0.0.1:9")  # no index reachable
    again = _provide(release, "13.0", real_cache, offline=True)
    assert again == cuda130
    verified = _provide(release, "13.0", real_cache, reverify=True)
    assert verified.verified and verified.root == cuda130.root


def test_system_source_is_verified_not_trusted(cuda130: InstalledToolchain, tmp_path: Path, real_cache: Cache) -> None:
    """The system source, pointed at a real CUDA root (the PyPI 13.0 tree stands in for /usr/local/cuda)."""
    good = spec("13.0", Toolchain("system", path=cuda130.root))
    tc = provide(good, cache=real_cache, reverify=True)
    assert (tc.source, tc.nvcc, tc.verified) == ("system", cuda130.root / "bin" / "nvcc", True)
    wrong = spec("12.8", Toolchain("system", path=cuda130.root))
    with pytest.raises(VerificationFailed) as info:
        provide(wrong, cache=real_cache)
    assert info.value.step == "nvcc --version"
    assert "expected release 12.8" in info.value.message
    with pytest.raises(ToolchainError, match=r"there is no nvcc at /nonexistent/cuda-12\.8/bin/nvcc"):
        provide(spec("12.8", Toolchain("system", path=Path("/nonexistent/cuda-12.8"))), cache=real_cache)


def test_system_source_from_cuda_home(
    cuda130: InstalledToolchain, real_cache: Cache, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CUDA_HOME", str(cuda130.root))
    tc = provide(spec("13.0", Toolchain("system")), cache=real_cache)
    assert tc.root == cuda130.root and tc.verified


CONCURRENT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from toolchain_fixtures.matrices import release_matrix
    from wheelmatrix.toolchains import Cache, provide
    m = release_matrix(Path({repo!r}))
    tc = provide(m.cuda_spec("13.0"), lock_path=Path({lock!r}), cache=Cache(Path({cache!r})))
    print(tc.nvcc)
    """
)


def test_two_concurrent_installs_make_one_entry(cuda130: InstalledToolchain, real_cache: Cache, tmp_path: Path) -> None:
    """Two processes install 13.0 into one empty cache at once (downloads pre-seeded by hard
    links, so the test does not fetch 100 MB again): one entry, both get it."""
    fresh = Cache(tmp_path / "cache")
    for f in read_lock(LOCK)[("13.0", "pypi")].files:
        src = real_cache.download_path(f.sha256, f.filename)
        dst = fresh.download_path(f.sha256, f.filename)
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.link(src, dst)
    code = CONCURRENT.format(
        tests=str(Path(__file__).parent), repo=str(REPO), lock=str(LOCK), cache=str(tmp_path / "cache")
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    paths = {out.strip() for out, _ in outs}
    assert len(paths) == 1
    entries = list(fresh.entries.iterdir())
    assert len(entries) == 1 and fresh.read_entry(entries[0]) is not None
    assert not (fresh.staging_root.exists() and any(fresh.staging_root.iterdir()))


def test_release_matrix_list_reports_verified(
    cuda130: InstalledToolchain, cuda124: InstalledToolchain, cuda118: InstalledToolchain, real_cache: Cache
) -> None:
    from wheelmatrix.toolchains import status

    rows = {(r.version, r.needed): r for r in status(release_matrix(REPO), cache=real_cache)}
    for version in ("11.8", "12.4", "13.0"):
        row = rows[(version, True)]
        assert (row.locked, row.cached, row.verified) == (True, True, True), row
    assert rows[("12.8", True)].available is (Path("/usr/local/cuda-12.8/bin/nvcc").is_file())


def test_pypi_cannot_provide_12_x(real_cache: Cache, tmp_path: Path) -> None:
    m = matrix(tmp_path, spec("12.4", Toolchain("pypi")))
    with pytest.raises(ToolchainError, match=r"CUDA 12\.x wheels on PyPI hold no nvcc"):
        provide(m.cuda[0], cache=real_cache)
