"""Real builds of kbit's native libraries: wheels, a CUDA 13.0 variant from PyPI, glibc floor,
Windows cross-build. Everything here runs the real tools (scikit-build-core through
`python -m build`, nvcc, zig, auditwheel, cuobjdump, objdump, wine where present); nothing is
mocked. No GPU is needed: the CUDA library is loaded and asked for its identity, not run.

Two kinds of build:

* kbit's own CMake, as anyone builds it (`python -m build`, `cmake`): the CPU wheel, a CUDA 13.0
  wheel with the archs given as CMAKE_CUDA_ARCHITECTURES, the default archs, the shared runtime;
* cells of kbit's matrix.toml built by the wheelmatrix toolkit (`build_cells` over the plan's
  build specs), which owns what is not kbit's business: the glibc floor (every link through
  `zig cc -target x86_64-linux-gnu.<glibc>`), the Windows cross build (zig, x86_64-windows-gnu)
  and fatbin compression, all through the CMake toolchain file it writes per cell.

Needs (the `build` extra of wheelmatrix + Debian packages): build, auditwheel, ziglang, cmake,
ninja or make, g++, binutils (objdump reads PE too), network access to PyPI for the CUDA
toolkit wheels (cached after the first run); wine64 to run the Windows DLL (skipped without it).
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

if TYPE_CHECKING:
    from wheelmatrix.model import CudaSpec, Matrix
    from wheelmatrix.plan import BuildSpec
    from wheelmatrix.toolchains import InstalledToolchain

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT_VERSION = re.search(
    r'^\[project\][^[]*?^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.MULTILINE | re.DOTALL
)
assert PYPROJECT_VERSION is not None
VERSION = PYPROJECT_VERSION.group(1)

CUDA13_SASS = (75, 120)
CUDA13_PTX = (120,)
# the same archs as CMake's own variable (what kbit reads and the toolkit passes)
CUDA13_ARCHITECTURES = ";".join([f"{a}-real" for a in CUDA13_SASS] + [f"{a}-virtual" for a in CUDA13_PTX])
# kbit's default when CMAKE_CUDA_ARCHITECTURES is unset, for CUDA 13.x (cmake/kbit_helpers.cmake)
CUDA13_DEFAULT_SASS = [75, 80, 86, 89, 90, 100, 120]
# what every kbit library exports, and nothing else (csrc/include/kbit.h)
ABI = {
    "kbit_abi_version",
    "kbit_version",
    "kbit_backend",
    "kbit_cuda_version",
    "kbit_cuda_runtime_version",
    "kbit_sass_archs",
    "kbit_ptx_archs",
    "kbit_device_count",
    "kbit_last_error",
    "kbit_quantize_blockwise",
    "kbit_dequantize_blockwise",
    "kbit_quantize_4bit",
    "kbit_dequantize_4bit",
}
# manylinux_2_28 is the newest policy kbit's Linux wheels may need (DEVELOPERS.md, toolchains.md).
GLIBC_CEILING = (2, 28)

pytestmark = pytest.mark.slow


# ----------------------------------------------------------------------------- helpers


def sh(
    argv: Sequence[str | Path],
    *,
    env: dict[str, str] | dict[str, str | None] | None = None,
    timeout: float = 900,
    cwd: Path | None = None,
) -> str:
    """Run a command (env: variables to set, None to remove); on failure, fail the test with its output tail."""
    full_env = dict(os.environ)
    for name, value in (env or {}).items():
        if value is None:
            full_env.pop(name, None)
        else:
            full_env[name] = value
    proc = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, env=full_env, timeout=timeout, cwd=cwd, check=False
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-60:])
        pytest.fail(f"command failed ({proc.returncode}): {' '.join(map(str, argv))}\n{tail}")
    return proc.stdout + proc.stderr


def need_module(name: str) -> None:
    try:
        __import__(name)
    except ImportError:
        pytest.fail(f"these tests need the Python package '{name}' (pip install {name})")


def zig_executable() -> Path:
    need_module("ziglang")
    import ziglang

    return Path(ziglang.__file__).parent / "zig"


def cache_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    cache = getattr(request.config, "cache", None)  # absent under -p no:cacheprovider
    if cache is not None:
        return Path(cache.mkdir(name))
    return tmp_path_factory.mktemp(name)


def build_wheel(outdir: Path, *config: str, env: dict[str, str] | None = None) -> Path:
    """`python -m build --wheel` of the repository root with -C settings; returns the wheel."""
    need_module("build")
    argv: list[str | Path] = [sys.executable, "-m", "build", "--wheel", "--outdir", outdir]
    for setting in config:
        argv += ["-C", setting]
    sh([*argv, ROOT], env=env)
    wheels = sorted(outdir.glob("*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def unpack(wheel: Path, dest: Path) -> Path:
    with zipfile.ZipFile(wheel) as zf:
        zf.extractall(dest)
    return dest / "kbit" / "_lib"


def read_manifest(lib_dir: Path, stem: str) -> dict[str, object]:
    data = json.loads((lib_dir / f"lib{stem}.json").read_text())
    assert isinstance(data, dict)
    return data


def load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    for name in ("kbit_version", "kbit_backend", "kbit_sass_archs", "kbit_ptx_archs", "kbit_last_error"):
        getattr(lib, name).restype = ctypes.c_char_p
    vp, i64, ci = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    for name in ("kbit_quantize_blockwise", "kbit_dequantize_blockwise", "kbit_quantize_4bit", "kbit_dequantize_4bit"):
        getattr(lib, name).argtypes = [ci, ci, vp, vp, vp, i64, ci]
    return lib


def auditwheel_tag(wheel: Path) -> tuple[str, dict[str, object]]:
    need_module("auditwheel")
    out = sh([sys.executable, "-m", "auditwheel", "show", "--json", wheel])
    start = out.index("{")
    data = json.loads(out[start : out.rindex("}") + 1])
    return str(data["overall_tag"]), data


def manylinux_glibc(tag: str) -> tuple[int, int]:
    m = re.fullmatch(r"manylinux_(\d+)_(\d+)_\w+", tag)
    assert m, f"auditwheel rated the wheel {tag}, not a manylinux tag"
    return int(m.group(1)), int(m.group(2))


def symbol_versions(library: Path) -> set[str]:
    """Version names the library needs (GLIBC_2.x, GLIBCXX_3.4.x, ...), from its dynamic table."""
    out = sh(["objdump", "-T", library])
    return set(re.findall(r"\b(GLIBC(?:XX)?_[0-9.]+)\b", out))


def newest_glibc(versions: set[str]) -> tuple[int, ...]:
    found = [tuple(int(p) for p in v.split("_")[1].split(".")) for v in versions if v.startswith("GLIBC_")]
    return max(found)


def section_size(library: Path, name: str) -> int:
    """The size of an ELF section (readelf -SW), 0 when the library has none."""
    for line in sh(["readelf", "-SW", library]).splitlines():
        fields = line.replace("[ ", "[").split()
        if name in fields:
            return int(fields[fields.index(name) + 4], 16)  # name, type, address, offset, size
    return 0


# ----------------------------------------------------------------------------- the toolkit's cells


def release_matrix(*, policy: str | None = None) -> Matrix:
    """kbit's matrix.toml, with CUDA 13.0 cut to the archs these tests compile (CUDA13_SASS/PTX),
    and optionally another policy for linux-x86_64 (whose glibc decides the zig link)."""
    from wheelmatrix.config import load_matrix

    matrix = load_matrix(ROOT / "matrix.toml")
    cuda = tuple(replace(c, sass=CUDA13_SASS, ptx=CUDA13_PTX) if str(c.version) == "13.0" else c for c in matrix.cuda)
    platforms = tuple(
        replace(p, policy=policy) if policy is not None and p.name == "linux-x86_64" else p for p in matrix.platforms
    )
    return replace(matrix, cuda=cuda, platforms=platforms)


@dataclass(frozen=True)
class ToolkitCell:
    wheel: Path  # the cell wheel, checked by the toolkit, its manifest rewritten from the binary
    spec: BuildSpec  # what the toolkit resolved for it: link_glibc, cross, defines


def toolkit_cell(
    cell_id: str,
    work: Path,
    *,
    policy: str | None = None,
    toolchain: InstalledToolchain | None = None,
    env: dict[str, str] | None = None,
) -> ToolkitCell:
    """Build one cell of kbit's matrix.toml the way `wheelmatrix build` does: the plan on this host
    (wheelmatrix.host.detect), the cell's BuildSpec (wheelmatrix.plan.build_spec), then
    wheelmatrix.stages.cells.build_cells: toolchain file, `python -m build` of this repository,
    the check of the library against the spec. No cell cache: always a real build."""
    from wheelmatrix.host import detect
    from wheelmatrix.plan import make_plan
    from wheelmatrix.stages.cells import BuildOptions, build_cells

    need_module("build")
    need_module("ziglang")
    matrix = release_matrix(policy=policy)
    plan = make_plan(matrix, detect(matrix))
    cell = plan.cell(cell_id)
    assert cell.buildable, f"{cell_id} is not buildable here: {cell.reason}"
    (spec,) = plan.build_specs([cell])

    def provide(cuda: CudaSpec) -> InstalledToolchain:
        assert toolchain is not None and toolchain.version == cuda.version, cuda.version
        return toolchain

    options = BuildOptions(work=work, cache=None, timeout=1800, env=dict(env or {}))
    (result,) = build_cells([spec], options, provide)
    assert result.status == "built" and result.wheel is not None, f"{result.reason}\n{result.tail}"
    return ToolkitCell(Path(result.wheel), spec)


# ----------------------------------------------------------------------------- the code tables


def test_code_tables_are_generated_from_the_definitions() -> None:
    """csrc/kbit_codes.h is exactly what csrc/gen_kbit_codes.py writes (no hand edits)."""
    sh([sys.executable, ROOT / "csrc" / "gen_kbit_codes.py", "--check"])


# ----------------------------------------------------------------------------- (a) CPU wheel


@pytest.fixture(scope="module")
def cpu_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_wheel(tmp_path_factory.mktemp("cpu-wheel"))


def test_cpu_wheel_holds_library_and_manifest(cpu_wheel: Path, tmp_path: Path) -> None:
    assert re.fullmatch(rf"kbit-{re.escape(VERSION)}-py3-none-linux_x86_64\.whl", cpu_wheel.name)
    with zipfile.ZipFile(cpu_wheel) as zf:
        names = set(zf.namelist())
    assert {"kbit/_lib/libkbit_cpu.so", "kbit/_lib/libkbit_cpu.json", "kbit/__init__.py"} <= names
    assert not any(n.endswith(".json") and "_lib/" in n and "cpu" not in n for n in names)
    lib_dir = unpack(cpu_wheel, tmp_path)
    manifest = read_manifest(lib_dir, "kbit_cpu")
    assert manifest["schema"] == 1
    assert manifest["library"] == "libkbit_cpu.so"
    assert manifest["backend"] == "cpu"
    assert manifest["cuda"] is None
    assert manifest["sass"] == [] and manifest["ptx"] == []
    assert manifest["version"] == VERSION
    assert manifest["runtime"] is None
    assert isinstance(manifest["flags"], dict) and manifest["flags"]["build_type"] == "Release"
    lib = load(lib_dir / "libkbit_cpu.so")
    assert lib.kbit_version().decode() == VERSION
    assert lib.kbit_backend() == b"cpu"
    assert lib.kbit_abi_version() == 1
    assert (lib.kbit_cuda_version(), lib.kbit_device_count()) == (0, 0)


def test_cpu_library_needs_no_cxx_runtime(cpu_wheel: Path, tmp_path: Path) -> None:
    """Only libc (+ the dynamic loader): no libstdc++, libgcc_s or libm, no GLIBCXX symbols."""
    library = unpack(cpu_wheel, tmp_path) / "libkbit_cpu.so"
    needed = set(re.findall(r"\(NEEDED\).*\[(.+)\]", sh(["readelf", "-d", library])))
    assert needed <= {"libc.so.6", "ld-linux-x86-64.so.2", "libpthread.so.0"}, needed
    assert not any(v.startswith("GLIBCXX") for v in symbol_versions(library))
    exported = re.findall(r"\sT\s(\w+)", sh(["nm", "-D", "--defined-only", library]))
    assert exported and all(s.startswith("kbit_") for s in exported), exported


def test_cpu_roundtrip_smoke(cpu_wheel: Path, tmp_path: Path) -> None:
    """Quantize/dequantize through ctypes; the full reference tests are tests/kbit/test_kernels.py."""
    lib = load(unpack(cpu_wheel, tmp_path) / "libkbit_cpu.so")
    rng = np.random.default_rng(7)
    x = rng.standard_normal(10_001).astype(np.float32)
    codes = np.zeros(x.size, np.uint8)
    absmax = np.zeros(-(-x.size // 256), np.float32)
    assert lib.kbit_quantize_blockwise(0, 0, x.ctypes.data, codes.ctypes.data, absmax.ctypes.data, x.size, 256) == 0
    y = np.zeros_like(x)
    assert lib.kbit_dequantize_blockwise(0, 0, codes.ctypes.data, absmax.ctypes.data, y.ctypes.data, x.size, 256) == 0
    np.testing.assert_array_equal(absmax, _block_absmax(x, 256))
    assert np.max(np.abs(y - x) / np.repeat(absmax, 256)[: x.size]) < 0.02
    packed = np.zeros((x.size + 1) // 2, np.uint8)
    assert lib.kbit_quantize_4bit(0, 0, x.ctypes.data, packed.ctypes.data, absmax.ctypes.data, x.size, 256) == 0
    assert packed[-1] & 0x0F == 0  # odd n: the last low nibble stays 0
    assert lib.kbit_dequantize_4bit(0, 0, packed.ctypes.data, absmax.ctypes.data, y.ctypes.data, x.size, 256) == 0
    assert np.max(np.abs(y - x) / np.repeat(absmax, 256)[: x.size]) < 0.2
    # a bad blocksize is refused with a message naming the allowed ones
    assert lib.kbit_quantize_4bit(0, 0, x.ctypes.data, packed.ctypes.data, absmax.ctypes.data, x.size, 100) == 1
    assert b"blocksize 100" in lib.kbit_last_error()


def _block_absmax(x: np.ndarray, bs: int) -> np.ndarray:
    pad = np.zeros(-x.size % bs, np.float32)
    return np.abs(np.concatenate([x, pad])).reshape(-1, bs).max(axis=1)


@pytest.mark.parametrize("portable", [False, True], ids=["f16c-if-present", "portable"])
def test_float16_and_bfloat16_rounding_is_nearest_even(
    cpu_wheel: Path, tmp_path: Path, portable: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dequantizing code 1.0 (dynamic index 255) with absmax a gives exactly a, rounded to the
    output dtype: compared with NumPy's float16 cast (round to nearest even) over random float32
    bit patterns, and with an integer RNE reference for bfloat16. Both CPU paths: F16C
    instructions (where the CPU has them) and the portable bit manipulation."""
    monkeypatch.setenv("KBIT_CPU_PORTABLE", "1" if portable else "0")
    lib = load(unpack(cpu_wheel, tmp_path) / "libkbit_cpu.so")
    rng = np.random.default_rng(3)
    bits = rng.integers(0, 2**32, 200_000, dtype=np.uint64).astype(np.uint32)
    special = np.array(
        [
            0x477FEFFF,
            0x477FF000,
            0x33000000,
            0x33000001,
            0x387FC000,
            0x38800000,
            0x7F800000,
            0xFF800000,
            0x00000001,
            0x80000000,
        ],
        np.uint32,
    )
    absmax = np.concatenate([bits, special]).view(np.float32)
    absmax = absmax[~np.isnan(absmax)]
    n = absmax.size * 64
    codes = np.full(n, 255, np.uint8)
    out16 = np.zeros(n, np.uint16)
    assert lib.kbit_dequantize_blockwise(1, 0, codes.ctypes.data, absmax.ctypes.data, out16.ctypes.data, n, 64) == 0
    with np.errstate(over="ignore"):  # values beyond 65504 become inf, as intended
        want16 = absmax.astype(np.float16)
    np.testing.assert_array_equal(out16[::64].view(np.float16), want16)
    assert lib.kbit_dequantize_blockwise(2, 0, codes.ctypes.data, absmax.ctypes.data, out16.ctypes.data, n, 64) == 0
    u = absmax.view(np.uint32).astype(np.uint64)
    want = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    np.testing.assert_array_equal(out16[::64], want)
    # float16 input: every bit pattern widens exactly (absmax = |x| of a one-element block)
    halves = np.arange(65536, dtype=np.uint32).astype(np.uint16)
    halves = halves[~np.isnan(halves.view(np.float16))]
    codes = np.zeros(halves.size * 64, np.uint8)
    block = np.zeros(halves.size * 64, np.uint16)
    block[::64] = halves
    got = np.zeros(halves.size, np.float32)
    assert lib.kbit_quantize_blockwise(1, 0, block.ctypes.data, codes.ctypes.data, got.ctypes.data, block.size, 64) == 0
    finite = np.abs(halves.view(np.float16).astype(np.float32))
    np.testing.assert_array_equal(got, np.where(np.isinf(finite), 0, finite))


MXCSR_HELPER = """
#include <xmmintrin.h>
unsigned kbit_test_get_mxcsr(void) { return _mm_getcsr(); }
void kbit_test_set_mxcsr(unsigned v) { _mm_setcsr(v); }
"""


def test_cpu_results_ignore_the_callers_flush_to_zero_mode(cpu_wheel: Path, tmp_path: Path) -> None:
    """A process whose thread runs with FTZ/DAZ (e.g. after loading a -ffast-math library) gets
    the same codes and values: the CPU backend sets IEEE mode (MXCSR) for its own work."""
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a C compiler is needed for the MXCSR helper"
    (tmp_path / "mxcsr.c").write_text(MXCSR_HELPER)
    sh([cc, "-shared", "-fPIC", "-O1", "-o", tmp_path / "libmxcsr.so", tmp_path / "mxcsr.c"])
    helper = ctypes.CDLL(str(tmp_path / "libmxcsr.so"))
    helper.kbit_test_get_mxcsr.restype = ctypes.c_uint
    helper.kbit_test_set_mxcsr.argtypes = [ctypes.c_uint]
    lib = load(unpack(cpu_wheel, tmp_path) / "libkbit_cpu.so")
    x = (np.arange(1, 65, dtype=np.float32) * np.float32(1e-40)).astype(np.float32)  # subnormals

    def roundtrip() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        codes, absmax, y = np.zeros(64, np.uint8), np.zeros(1, np.float32), np.zeros(64, np.float32)
        assert lib.kbit_quantize_blockwise(0, 1, x.ctypes.data, codes.ctypes.data, absmax.ctypes.data, 64, 64) == 0
        assert lib.kbit_dequantize_blockwise(0, 1, codes.ctypes.data, absmax.ctypes.data, y.ctypes.data, 64, 64) == 0
        return codes, absmax, y

    ieee = roundtrip()
    assert np.count_nonzero(ieee[2]) > 32  # subnormal results really are produced
    saved = helper.kbit_test_get_mxcsr()
    try:
        helper.kbit_test_set_mxcsr(saved | 0x8040)  # FTZ | DAZ on this thread
        assert helper.kbit_test_get_mxcsr() & 0x8040 == 0x8040
        flushed = roundtrip()
        after = helper.kbit_test_get_mxcsr()
    finally:
        helper.kbit_test_set_mxcsr(saved)
    for want, got in zip(ieee, flushed, strict=True):
        np.testing.assert_array_equal(got, want)
    assert after & 0x8040 == 0x8040  # the caller's mode is restored, not changed


# ----------------------------------------------------------------------------- (b) CUDA 13.0 from PyPI


def provision_cuda13_from_pypi(dest: Path) -> InstalledToolchain:
    """The CUDA 13.0 toolkit of kbit's matrix.toml (nvcc, cicc, crt headers, cudart, CCCL) from
    PyPI wheels alone, through wheelmatrix's toolchain stage (pinned by toolchains.lock, hash-checked,
    fixed up and verified); cached in `dest` or in $WHEELMATRIX_TEST_CACHE_DIR."""
    from wheelmatrix.config import load_matrix
    from wheelmatrix.toolchains import Cache, lock_path_of, provide

    shared = os.environ.get("WHEELMATRIX_TEST_CACHE_DIR")
    matrix = load_matrix(ROOT / "matrix.toml")
    spec = matrix.cuda_spec("13.0")
    assert spec.toolchain.source == "pypi"
    tc = provide(spec, lock_path=lock_path_of(matrix), cache=Cache(Path(shared) if shared else dest))
    assert tc.verified
    assert not str(tc.nvcc).startswith("/usr/local/cuda")
    return tc


def provision_cuobjdump_from_pypi(dest: Path) -> Path:
    """cuobjdump from PyPI (the 13.2+ wheels read 13.0 fatbins; there is none for 13.0)."""
    exe = dest / "nvidia" / "cu13" / "bin" / "cuobjdump"
    if not exe.is_file():
        sh(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--target",
                dest,
                "nvidia-cuda-cuobjdump>=13.2,<14",
            ],
            env={"PIP_CONFIG_FILE": os.devnull},
            timeout=600,
        )
    assert exe.is_file()
    return exe


@pytest.fixture(scope="module")
def cuda13_toolchain(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> InstalledToolchain:
    return provision_cuda13_from_pypi(cache_dir(request, tmp_path_factory, "kbit-cuda13-pypi"))


@pytest.fixture(scope="module")
def cuda13(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toolkit's root. Self-contained (test_loader_cuda.py imports it with cuda13_wheel alone);
    a second provide() of the same toolchain is served from its cache."""
    return provision_cuda13_from_pypi(cache_dir(request, tmp_path_factory, "kbit-cuda13-pypi")).root


def cuda_config(root: Path, build_dir: Path) -> list[str]:
    return [
        "cmake.define.KBIT_BACKEND=cuda",
        f"cmake.define.CMAKE_CUDA_ARCHITECTURES={CUDA13_ARCHITECTURES}",
        f"cmake.define.CMAKE_CUDA_COMPILER={root / 'bin' / 'nvcc'}",
        f"cmake.define.CUDAToolkit_ROOT={root}",
        f"build-dir={build_dir}",
    ]


def no_system_cuda_env() -> dict[str, str]:
    """PATH without any CUDA folder and no CUDA_* variables: only the PyPI toolkit can be used."""
    path = os.pathsep.join(p for p in os.environ.get("PATH", "").split(os.pathsep) if "cuda" not in p.lower())
    env = {"PATH": path, "SOURCE_DATE_EPOCH": "1700000000"}  # reproducible wheel timestamps
    for var in ("CUDA_PATH", "CUDA_HOME", "CUDAToolkit_ROOT", "CUDACXX"):
        env[var] = ""
    return env


@pytest.fixture(scope="module")
def cuda13_wheel(cuda13: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    build_dir = tmp_path_factory.mktemp("cuda13-build")
    wheel = build_wheel(
        tmp_path_factory.mktemp("cuda13-wheel"), *cuda_config(cuda13, build_dir), env=no_system_cuda_env()
    )
    return wheel, build_dir


def test_cuda13_variant_builds_from_pypi_nvcc(cuda13: Path, cuda13_wheel: tuple[Path, Path], tmp_path: Path) -> None:
    wheel, build_dir = cuda13_wheel
    # The build used the PyPI toolkit and nothing else.
    cache = (build_dir / "CMakeCache.txt").read_text()
    compiler = re.search(r"^CMAKE_CUDA_COMPILER:\w+=(.+)$", cache, re.MULTILINE)
    assert compiler and Path(compiler.group(1)).resolve() == (cuda13 / "bin" / "nvcc").resolve()
    for line in re.findall(r"^CUDA_cudart\w*LIBRARY:\w+=(.+)$", cache, re.MULTILINE):
        assert Path(line).resolve().is_relative_to(cuda13.resolve()), line
    assert "/usr/local/cuda" not in cache

    lib_dir = unpack(wheel, tmp_path)
    manifest = read_manifest(lib_dir, "kbit_cuda130")
    assert manifest["library"] == "libkbit_cuda130.so"
    assert (manifest["backend"], manifest["cuda"]) == ("cuda", "13.0")
    assert manifest["sass"] == list(CUDA13_SASS) and manifest["ptx"] == list(CUDA13_PTX)
    assert manifest["runtime"] == "static" and manifest["version"] == VERSION
    assert isinstance(manifest["flags"], dict) and manifest["flags"]["build_type"] == "Release"

    lib = load(lib_dir / "libkbit_cuda130.so")
    assert lib.kbit_backend() == b"cuda"
    assert 13000 <= lib.kbit_cuda_version() < 13010
    assert 13000 <= lib.kbit_cuda_runtime_version() < 13010  # static runtime: no driver needed
    assert lib.kbit_sass_archs().decode() == ";".join(map(str, CUDA13_SASS))
    assert lib.kbit_ptx_archs().decode() == ";".join(map(str, CUDA13_PTX))
    assert lib.kbit_version().decode() == VERSION
    count = lib.kbit_device_count()  # 0 with a reason where there is no GPU/driver
    assert count >= 0
    if count == 0:
        assert lib.kbit_last_error() != b""


@pytest.fixture(scope="module")
def cuobjdump(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return provision_cuobjdump_from_pypi(cache_dir(request, tmp_path_factory, "kbit-cuobjdump-pypi"))


@pytest.mark.parametrize("route", ["kbit", "toolkit"])
def test_cuda13_fatbin_holds_exactly_the_requested_archs(
    request: pytest.FixtureRequest, cuobjdump: Path, route: str, tmp_path: Path
) -> None:
    """cuobjdump lists exactly the CMAKE_CUDA_ARCHITECTURES asked for, in kbit's own build and in
    the toolkit's cell (whose fatbin is compressed)."""
    if route == "kbit":
        wheel = request.getfixturevalue("cuda13_wheel")[0]
    else:
        wheel = request.getfixturevalue("cuda13_cell").wheel
    library = unpack(wheel, tmp_path) / "libkbit_cuda130.so"
    elf = sh([cuobjdump, "--list-elf", library])
    ptx = sh([cuobjdump, "--list-ptx", library])
    assert sorted(int(a) for a in re.findall(r"\.sm_(\d+)\.cubin", elf)) == list(CUDA13_SASS)
    assert sorted(int(a) for a in re.findall(r"\.sm_(\d+)\.ptx", ptx)) == list(CUDA13_PTX)
    assert section_size(library, ".nv_fatbin") > 0


def test_cuda13_wheel_rebuilds_bit_identical(
    cuda13: Path, cuda13_wheel: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A second build in another folder gives the same wheel, byte for byte (SOURCE_DATE_EPOCH
    fixes the zip times; the link strips nvcc's tmpxft_<pid> file symbol)."""
    build_dir = tmp_path_factory.mktemp("cuda13-rebuild-elsewhere")
    again = build_wheel(
        tmp_path_factory.mktemp("cuda13-wheel-again"), *cuda_config(cuda13, build_dir), env=no_system_cuda_env()
    )
    assert again.read_bytes() == cuda13_wheel[0].read_bytes()


def test_cuda13_library_exports_only_the_abi(cuda13_wheel: tuple[Path, Path], tmp_path: Path) -> None:
    """The static CUDA runtime stays inside: only kbit_* symbols, no libcudart/libstdc++ needed."""
    library = unpack(cuda13_wheel[0], tmp_path) / "libkbit_cuda130.so"
    exported = re.findall(r"\sT\s(\w+)", sh(["nm", "-D", "--defined-only", library]))
    assert sorted(exported) == sorted(ABI)
    needed = set(re.findall(r"\(NEEDED\).*\[(.+)\]", sh(["readelf", "-d", library])))
    assert not any("cudart" in n or "stdc++" in n for n in needed), needed


def configure_cuda(cuda13: Path, build: Path, *defines: str, env: dict[str, str | None] | None = None) -> str:
    """`cmake -S <repo> -B build -DKBIT_BACKEND=cuda` with the PyPI toolkit; returns the output."""
    cmake = shutil.which("cmake")
    assert cmake, "cmake is needed"
    argv: list[str | Path] = [
        cmake,
        "-S",
        ROOT,
        "-B",
        build,
        "-DKBIT_BACKEND=cuda",
        f"-DCMAKE_CUDA_COMPILER={cuda13 / 'bin' / 'nvcc'}",
        f"-DCUDAToolkit_ROOT={cuda13}",
        *defines,
    ]
    return sh(argv, env={**no_system_cuda_env(), **(env or {})})


def test_cuda_archs_default_per_cuda_major_else_from_cmake_or_cudaarchs(cuda13: Path, tmp_path: Path) -> None:
    """CMAKE_CUDA_ARCHITECTURES unset: kbit's default for the CUDA major (13.x: SASS 75..120, PTX
    the highest); CMake's CUDAARCHS environment variable is honoured like the cache variable; a
    bare arch means SASS and PTX; an arch that is none of 75, 75-real, 120-virtual stops the
    configure naming the variable. Configure only: kbit writes its manifest at configure time."""
    configure_cuda(cuda13, tmp_path / "default", env={"CUDAARCHS": None})
    manifest = read_manifest(tmp_path / "default" / "lib", "kbit_cuda130")
    assert (manifest["sass"], manifest["ptx"]) == (CUDA13_DEFAULT_SASS, [CUDA13_DEFAULT_SASS[-1]])

    configure_cuda(cuda13, tmp_path / "env", env={"CUDAARCHS": "86-real;90"})
    manifest = read_manifest(tmp_path / "env" / "lib", "kbit_cuda130")
    assert (manifest["sass"], manifest["ptx"]) == ([86, 90], [90])

    cmake = shutil.which("cmake")
    assert cmake
    argv = [
        cmake,
        "-S",
        ROOT,
        "-B",
        tmp_path / "bad",
        "-DKBIT_BACKEND=cuda",
        "-DCMAKE_CUDA_ARCHITECTURES=75-real;sm_120",
    ]
    proc = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, env={**os.environ, **no_system_cuda_env()}, check=False
    )
    assert proc.returncode != 0
    assert "CUDA arch 'sm_120' in CMAKE_CUDA_ARCHITECTURES" in proc.stdout + proc.stderr


def test_cuda13_shared_runtime_points_at_nvidia_runtime_wheels(cuda13: Path, tmp_path: Path) -> None:
    """KBIT_CUDA_RUNTIME=shared: the library NEEDS libcudart.so.13 and finds it through an RPATH
    into NVIDIA's runtime wheel (site-packages/nvidia/cu13/lib), not the build toolkit's path."""
    cmake = shutil.which("cmake")
    assert cmake, "cmake is needed"
    build = tmp_path / "build"
    configure_cuda(cuda13, build, "-DKBIT_CUDA_RUNTIME=shared", "-DCMAKE_CUDA_ARCHITECTURES=75")
    sh([cmake, "--build", build], env=no_system_cuda_env())
    library = build / "lib" / "libkbit_cuda130.so"
    dynamic = sh(["readelf", "-d", library])
    assert "[libcudart.so.13]" in dynamic
    runpath = re.search(r"\((?:RUNPATH|RPATH)\).*\[(.+)\]", dynamic)
    assert runpath and runpath.group(1).split(":")[0] == "$ORIGIN/../../nvidia/cu13/lib"
    assert str(cuda13) not in dynamic
    manifest = read_manifest(library.parent, "kbit_cuda130")
    assert (manifest["runtime"], manifest["sass"], manifest["ptx"]) == ("shared", [75], [75])
    assert newest_glibc(symbol_versions(library)) <= (2, 17)


# ----------------------------------------------------------------------------- (c) glibc floor, through the toolkit

# A policy older than this host's glibc: the toolkit's toolchain file sends every shared-library
# link through `zig cc -target x86_64-linux-gnu.2.17` (zig's glibc 2.17 stubs).
FLOOR_POLICY = "manylinux_2_17"


def check_glibc_floor(cell: ToolkitCell, library: Path) -> None:
    """The library binds no glibc symbol newer than 2.17, needs no libstdc++, and auditwheel rates
    the cell wheel no newer than kbit's policy."""
    assert cell.spec.link_glibc == (2, 17), f"this host's glibc is not newer than 2.17: {cell.spec.link_glibc}"
    versions = symbol_versions(library)
    assert newest_glibc(versions) <= (2, 17), sorted(versions)
    assert not any(v.startswith("GLIBCXX") for v in versions), sorted(versions)
    tag, report = auditwheel_tag(cell.wheel)
    assert manylinux_glibc(tag) <= GLIBC_CEILING, tag
    assert "versioned_symbols" in report
    manifest = read_manifest(library.parent, library.stem[len("lib") :])
    assert isinstance(manifest["flags"], dict)
    assert str(manifest["flags"]["written_by"]).startswith("wheelmatrix ")  # rewritten from the binary
    glibc = manifest["flags"]["glibc"]
    assert isinstance(glibc, str) and tuple(map(int, glibc.split("."))) == newest_glibc(versions)


def test_cpu_cell_through_the_toolkit_needs_glibc_2_17_at_most(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    cell = toolkit_cell("linux-x86_64-cpu", tmp_path_factory.mktemp("cpu-cell"), policy=FLOOR_POLICY)
    assert cell.wheel.name == f"kbit-{VERSION}-py3-none-linux_x86_64.whl"
    library = unpack(cell.wheel, tmp_path) / "libkbit_cpu.so"
    check_glibc_floor(cell, library)
    needed = set(re.findall(r"\(NEEDED\).*\[(.+)\]", sh(["readelf", "-d", library])))
    assert needed <= {"libc.so.6", "ld-linux-x86-64.so.2", "libpthread.so.0"}, needed
    exported = re.findall(r"\sT\s(\w+)", sh(["nm", "-D", "--defined-only", library]))
    assert exported and all(s.startswith("kbit_") for s in exported), exported
    manifest = read_manifest(library.parent, "kbit_cpu")
    assert (manifest["library"], manifest["backend"], manifest["cuda"]) == ("libkbit_cpu.so", "cpu", None)
    assert (manifest["sass"], manifest["ptx"], manifest["version"]) == ([], [], VERSION)
    lib = load(library)
    assert lib.kbit_backend() == b"cpu" and lib.kbit_version().decode() == VERSION


@pytest.fixture(scope="module")
def cuda13_cell(cuda13_toolchain: InstalledToolchain, tmp_path_factory: pytest.TempPathFactory) -> ToolkitCell:
    return toolkit_cell(
        "linux-x86_64-cuda130",
        tmp_path_factory.mktemp("cuda13-cell"),
        policy=FLOOR_POLICY,
        toolchain=cuda13_toolchain,
        env=no_system_cuda_env(),
    )


def test_cuda13_cell_through_the_toolkit_needs_glibc_2_17_at_most(
    cuda13_cell: ToolkitCell, cuda13_wheel: tuple[Path, Path], tmp_path: Path
) -> None:
    """libcudart_static.a linked on this glibc-2.36 host would need GLIBC_2.34; linked by the
    toolkit through zig's glibc-2.17 stubs it needs no newer than 2.17 and still loads and reports
    its runtime. The toolkit also compresses the fatbin (CMAKE_CUDA_FLAGS_INIT of its toolchain
    file): smaller than kbit's plain build of the same archs."""
    library = unpack(cuda13_cell.wheel, tmp_path / "cell") / "libkbit_cuda130.so"
    check_glibc_floor(cuda13_cell, library)
    manifest = read_manifest(library.parent, "kbit_cuda130")
    assert (manifest["backend"], manifest["cuda"], manifest["runtime"]) == ("cuda", "13.0", "static")
    assert (manifest["sass"], manifest["ptx"]) == (list(CUDA13_SASS), list(CUDA13_PTX))
    exported = re.findall(r"\sT\s(\w+)", sh(["nm", "-D", "--defined-only", library]))
    assert sorted(exported) == sorted(ABI)
    lib = load(library)
    assert 13000 <= lib.kbit_cuda_runtime_version() < 13010
    assert lib.kbit_sass_archs().decode() == ";".join(map(str, CUDA13_SASS))
    assert lib.kbit_ptx_archs().decode() == ";".join(map(str, CUDA13_PTX))
    plain = unpack(cuda13_wheel[0], tmp_path / "plain") / "libkbit_cuda130.so"
    compressed, uncompressed = section_size(library, ".nv_fatbin"), section_size(plain, ".nv_fatbin")
    assert 0 < compressed < uncompressed / 2, (compressed, uncompressed)


# ----------------------------------------------------------------------------- (d) Windows, through the toolkit


@pytest.fixture(scope="module")
def win_cell(tmp_path_factory: pytest.TempPathFactory) -> ToolkitCell:
    """The windows-x86_64 CPU cell, cross-built here by the toolkit with zig (x86_64-windows-gnu)."""
    return toolkit_cell("windows-x86_64-cpu", tmp_path_factory.mktemp("win-cell"))


def test_windows_cpu_cell_is_cross_built_into_a_win_amd64_wheel(win_cell: ToolkitCell, tmp_path: Path) -> None:
    """The DLL exports the ABI and imports Windows' own DLLs only (KERNEL32 and the UCRT's
    api-ms-win-crt-*): no libgcc_s, libstdc++, libwinpthread or msvcrt to ship beside it."""
    assert win_cell.spec.cross == "x86_64-windows-gnu"
    assert win_cell.wheel.name == f"kbit-{VERSION}-py3-none-win_amd64.whl"
    lib_dir = unpack(win_cell.wheel, tmp_path)
    manifest = read_manifest(lib_dir, "kbit_cpu")
    assert manifest["library"] == "libkbit_cpu.dll" and manifest["backend"] == "cpu"
    assert (manifest["sass"], manifest["ptx"], manifest["version"]) == ([], [], VERSION)
    dump = sh(["objdump", "-p", lib_dir / "libkbit_cpu.dll"])  # binutils reads pei-x86-64 on any host
    assert "pei-x86-64" in dump
    exports = set(re.findall(r"^\s*\[\s*\d+\]\s+(kbit_\w+)$", dump, re.MULTILINE))
    assert exports == ABI, exports ^ ABI
    imports = {d.lower() for d in re.findall(r"DLL Name: (\S+)", dump)}
    assert "kernel32.dll" in imports
    assert imports <= {"kernel32.dll"} | {i for i in imports if i.startswith("api-ms-win-crt-")}, imports
    assert isinstance(manifest["flags"], dict)
    assert {str(n).lower() for n in manifest["flags"]["needed"]} == imports  # read by the toolkit alike


WINE_DRIVER = r"""
#include <windows.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
typedef int (*qf)(int, int, const void *, uint8_t *, float *, int64_t, int);
typedef int (*dqf)(int, int, const uint8_t *, const float *, void *, int64_t, int);
typedef const char *(*sf)(void);
int main(int argc, char **argv) {
    HMODULE h = LoadLibraryA(argv[1]);
    if (!h) { printf("LoadLibrary failed: %lu\n", GetLastError()); return 2; }
    sf backend = (sf)GetProcAddress(h, "kbit_backend"), err = (sf)GetProcAddress(h, "kbit_last_error");
    qf q8 = (qf)GetProcAddress(h, "kbit_quantize_blockwise"), q4 = (qf)GetProcAddress(h, "kbit_quantize_4bit");
    dqf d8 = (dqf)GetProcAddress(h, "kbit_dequantize_blockwise"), d4 = (dqf)GetProcAddress(h, "kbit_dequantize_4bit");
    int64_t n = atoll(argv[2]);
    float *x = malloc(n * 4), *a = malloc((n / 64 + 1) * 4), *y = malloc(n * 4);
    uint8_t *c = malloc(n);
    uint16_t *y16 = malloc(n * 2);
    FILE *in = fopen(argv[3], "rb"), *out = fopen(argv[4], "wb");
    if (fread(x, 4, n, in) != (size_t)n) return 4;
    printf("backend=%s\n", backend());
    int sizes[] = {64, 4096};
    for (int b = 0; b < 2; ++b) for (int code = 0; code < 2; ++code) {
        int64_t nb = (n + sizes[b] - 1) / sizes[b];
        if (q8(0, code, x, c, a, n, sizes[b])) { printf("%s\n", err()); return 3; }
        fwrite(c, 1, n, out); fwrite(a, 4, nb, out);
        if (d8(1, code, c, a, y16, n, sizes[b])) { printf("%s\n", err()); return 3; }
        fwrite(y16, 2, n, out);
        if (q4(2, code, y16, c, a, n, sizes[b])) { printf("%s\n", err()); return 3; }
        fwrite(c, 1, (n + 1) / 2, out); fwrite(a, 4, nb, out);
        if (d4(0, code, c, a, y, n, sizes[b])) { printf("%s\n", err()); return 3; }
        fwrite(y, 4, n, out);
    }
    fclose(out);
    return 0;
}
"""


def _linux_reference_stream(lib: ctypes.CDLL, x: np.ndarray) -> bytes:
    """The same calls as WINE_DRIVER, through the Linux library, in the same byte layout."""
    n, parts = x.size, []
    for bs in (64, 4096):
        for code in (0, 1):
            codes, absmax = np.zeros(n, np.uint8), np.zeros(-(-n // bs), np.float32)
            y16, y, c4 = np.zeros(n, np.uint16), np.zeros(n, np.float32), np.zeros((n + 1) // 2, np.uint8)
            assert (
                lib.kbit_quantize_blockwise(0, code, x.ctypes.data, codes.ctypes.data, absmax.ctypes.data, n, bs) == 0
            )
            parts += [codes.tobytes(), absmax.tobytes()]
            assert (
                lib.kbit_dequantize_blockwise(1, code, codes.ctypes.data, absmax.ctypes.data, y16.ctypes.data, n, bs)
                == 0
            )
            parts.append(y16.tobytes())
            assert lib.kbit_quantize_4bit(2, code, y16.ctypes.data, c4.ctypes.data, absmax.ctypes.data, n, bs) == 0
            parts += [c4.tobytes(), absmax.tobytes()]
            assert lib.kbit_dequantize_4bit(0, code, c4.ctypes.data, absmax.ctypes.data, y.ctypes.data, n, bs) == 0
            parts.append(y.tobytes())
    return b"".join(parts)


@pytest.mark.parametrize(
    "env", [{}, {"KBIT_CPU_PORTABLE": "1"}, {"KBIT_NUM_THREADS": "1"}], ids=["default", "portable", "one-thread"]
)
def test_windows_dll_runs_under_wine_like_the_linux_library(
    win_cell: ToolkitCell, cpu_wheel: Path, tmp_path: Path, env: dict[str, str]
) -> None:
    """The cross-built DLL really runs (wine 64-bit, a real Windows loader, the UCRT and threads)
    and gives byte-identical codes, absmax and values to the Linux library: 8-bit and 4-bit,
    float32, float16 and bfloat16 paths, multithreaded and not, F16C and portable. The driver is
    cross-compiled with the same zig target as the DLL (also where wine is absent, then skipped)."""
    (tmp_path / "driver.c").write_text(WINE_DRIVER)
    driver = tmp_path / "driver.exe"
    sh([zig_executable(), "cc", "-target", "x86_64-windows-gnu", "-O1", "-o", driver, tmp_path / "driver.c"])
    assert "pei-x86-64" in sh(["objdump", "-p", driver])
    wine = shutil.which("wine64") or shutil.which("/usr/lib/wine/wine64") or shutil.which("wine")
    if wine is None:
        pytest.skip(
            "wine is not installed, so the DLL cannot run here: apt-get install -y --no-install-recommends wine64"
        )
    dll = unpack(win_cell.wheel, tmp_path / "win") / "libkbit_cpu.dll"
    lib = load(unpack(cpu_wheel, tmp_path / "linux") / "libkbit_cpu.so")
    n = 300_001  # several threads' worth, odd
    x = np.random.default_rng(5).standard_normal(n).astype(np.float32)
    x[[3, 7, 11]] = [np.nan, np.inf, -np.inf]
    x.tofile(tmp_path / "x.bin")
    out = sh(
        [wine, driver, dll, str(n), tmp_path / "x.bin", tmp_path / "out.bin"],
        env={"WINEDEBUG": "-all", "WINEPREFIX": str(tmp_path / "wineprefix"), **env},
        timeout=600,
    )
    assert "backend=cpu" in out
    assert (tmp_path / "out.bin").read_bytes() == _linux_reference_stream(lib, x)


# ----------------------------------------------------------------------------- GPU (where lent)


def _cudart(cuda13: Path) -> ctypes.CDLL:
    rt = ctypes.CDLL(str(cuda13 / "lib" / "libcudart.so"))
    rt.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
    rt.cudaMemcpy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    rt.cudaFree.argtypes = [ctypes.c_void_p]
    return rt


@pytest.mark.gpu
@pytest.mark.parametrize("pointers", ["host", "device"])
def test_cuda_kernels_match_the_cpu_backend_bit_for_bit(
    cuda13: Path, cuda13_wheel: tuple[Path, Path], cpu_wheel: Path, tmp_path: Path, pointers: str
) -> None:
    """Every format x dtype x blocksize: codes, absmax and dequantized values of the CUDA library
    equal the CPU library's (which tests/kbit/test_kernels.py checks against the reference), with
    host pointers (staged) and with device pointers (cudaMalloc through the toolkit's cudart)."""
    gpu = load(unpack(cuda13_wheel[0], tmp_path / "gpu") / "libkbit_cuda130.so")
    cpu = load(unpack(cpu_wheel, tmp_path / "cpu") / "libkbit_cpu.so")
    assert gpu.kbit_device_count() > 0, gpu.kbit_last_error()
    rt = _cudart(cuda13) if pointers == "device" else None
    rng = np.random.default_rng(11)
    for blocksize in (64, 128, 256, 512, 1024, 2048, 4096):
        n = 3 * blocksize + 37  # a short last block and an odd tail
        x32 = (rng.standard_normal(n) * 10.0).astype(np.float32)
        x32[[1, 5, 9]] = [np.nan, np.inf, -np.inf]
        bf16 = (x32.view(np.uint32) >> 16).astype(np.uint16)  # any bit pattern is a valid input
        for dtype, x in ((0, x32), (1, x32.astype(np.float16)), (2, bf16)):
            for bits, code in ((8, 0), (8, 1), (4, 0), (4, 1)):
                results = [
                    _run_roundtrip(lib, rt, dtype=dtype, code=code, bits=bits, x=x, blocksize=blocksize)
                    for lib in (cpu, gpu)
                ]
                for want, got in zip(results[0], results[1], strict=True):
                    np.testing.assert_array_equal(
                        got.view(np.uint8), want.view(np.uint8), err_msg=f"{bits=} {code=} {dtype=} {blocksize=}"
                    )


def _run_roundtrip(
    lib: ctypes.CDLL, rt: ctypes.CDLL | None, *, dtype: int, code: int, bits: int, x: np.ndarray, blocksize: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = x.size
    codes = np.zeros(n if bits == 8 else (n + 1) // 2, np.uint8)
    absmax = np.zeros(-(-n // blocksize), np.float32)
    out = np.zeros_like(x)
    quantize = lib.kbit_quantize_blockwise if bits == 8 else lib.kbit_quantize_4bit
    dequantize = lib.kbit_dequantize_blockwise if bits == 8 else lib.kbit_dequantize_4bit
    if rt is None or lib.kbit_backend() == b"cpu":
        assert quantize(dtype, code, x.ctypes.data, codes.ctypes.data, absmax.ctypes.data, n, blocksize) == 0, (
            lib.kbit_last_error()
        )
        assert dequantize(dtype, code, codes.ctypes.data, absmax.ctypes.data, out.ctypes.data, n, blocksize) == 0, (
            lib.kbit_last_error()
        )
        return codes, absmax, out
    arrays = {"x": x, "codes": codes, "absmax": absmax, "out": out}
    dev: dict[str, ctypes.c_void_p] = {}
    try:
        for name, arr in arrays.items():
            dev[name] = ctypes.c_void_p()
            assert rt.cudaMalloc(ctypes.byref(dev[name]), max(arr.nbytes, 1)) == 0
        assert rt.cudaMemcpy(dev["x"], x.ctypes.data, x.nbytes, 1) == 0  # host to device
        assert quantize(dtype, code, dev["x"], dev["codes"], dev["absmax"], n, blocksize) == 0, lib.kbit_last_error()
        assert dequantize(dtype, code, dev["codes"], dev["absmax"], dev["out"], n, blocksize) == 0, (
            lib.kbit_last_error()
        )
        for name in ("codes", "absmax", "out"):
            arr = arrays[name]
            assert rt.cudaMemcpy(arr.ctypes.data, dev[name], arr.nbytes, 2) == 0  # device to host
    finally:
        for ptr in dev.values():
            rt.cudaFree(ptr)
    return codes, absmax, out
