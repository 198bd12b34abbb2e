"""wheelmatrix.binaries over real binaries and broken ones.

Fast: an ELF library built with this host's ``cc``, PE, Mach-O and fat-binary images written
here byte by byte, malformed input (and a fuzzer over all of them). Slow: libraries linked with
zig for glibc 2.17, Windows and macOS, and CUDA libraries from nvcc 13.0, compared with
``cuobjdump`` where a new enough one is in the toolchain cache or on PATH.
"""

from __future__ import annotations

import os
import platform
import random
import re
import shutil
import struct
import subprocess
import sys
import textwrap
from importlib.util import find_spec
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wheelmatrix import _proc
from wheelmatrix.binaries import BinaryError, BinaryInfo, fatbin_archs, inspect_binary, inspect_file
from wheelmatrix.errors import PackageError, WheelmatrixError
from wheelmatrix.model import Toolchain
from wheelmatrix.toolchains import Cache, InstalledToolchain, provide

from .toolchain_fixtures.matrices import spec

REPO = Path(__file__).resolve().parents[2]
HOST_MACHINE = {"AMD64": "x86_64", "arm64": "aarch64"}.get(platform.machine(), platform.machine())
PROBE_C = textwrap.dedent(
    """
    #include <math.h>
    #include <time.h>
    double probe(double x) {
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        return cos(x) + exp(x) + (double)t.tv_nsec;
    }
    """
)
KERNEL_CU = textwrap.dedent(
    """
    __global__ void axpy(float a, const float* x, float* y, int n) {
        int i = blockIdx.x * blockDim.x + threadIdx.x;
        if (i < n) y[i] += a * x[i];
    }
    extern "C" void run_axpy(float a, const float* x, float* y, int n) { axpy<<<(n + 127) / 128, 128>>>(a, x, y, n); }
    """
)
FATBIN_MAGIC = struct.pack("<I", 0xBA55ED50)


# ------------------------------------------------------------------------------------ builders
def cc_library(folder: Path, *flags: str) -> Path:
    compiler = shutil.which("cc")
    if sys.platform != "linux" or compiler is None:
        pytest.skip("needs a Linux host with a C compiler (cc)")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "probe.c").write_text(PROBE_C)
    _proc.run([compiler, "-shared", "-fPIC", "probe.c", "-lm", *flags, "-o", "libprobe.so"], cwd=folder, timeout=120)
    return folder / "libprobe.so"


def zig_library(folder: Path, target: str, output: str, *flags: str) -> Path:
    if find_spec("ziglang") is None:
        pytest.skip("needs the ziglang package (the toolkit's `build` extra)")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "probe.c").write_text(PROBE_C)
    argv = [sys.executable, "-m", "ziglang", "cc", "-target", target, "-shared", "probe.c", *flags, "-o", output]
    _proc.run(argv, cwd=folder, timeout=600)  # a target's first build compiles its libc: minutes
    return folder / output


def readelf_glibc(path: Path) -> tuple[int, int] | None:
    out = subprocess.run(["readelf", "-VW", path], capture_output=True, text=True, check=True).stdout
    needs = out.split("Version needs section")[1] if "Version needs section" in out else ""
    return max(((int(a), int(b)) for a, b in re.findall(r"Name: GLIBC_(\d+)\.(\d+)", needs)), default=None)


def pe_image(machine: int = 0x8664, dlls: tuple[str, ...] = (), delayed: tuple[str, ...] = ()) -> bytes:
    """A PE32+ image with one section holding the import and delay-import tables and their names."""
    rva, at = 0x1000, 0x200
    imports_size, delayed_size = 20 * (len(dlls) + 1), 32 * (len(delayed) + 1)
    names, name_rvas = b"", []
    for dll in dlls + delayed:
        name_rvas.append(rva + imports_size + delayed_size + len(names))
        names += dll.encode() + b"\0"
    section = b"".join(struct.pack("<IIIII", 0, 0, 0, n, 0) for n in name_rvas[: len(dlls)]) + bytes(20)
    section += b"".join(struct.pack("<8I", 1, n, 0, 0, 0, 0, 0, 0) for n in name_rvas[len(dlls) :]) + bytes(32)
    section += names
    optional = bytearray(240)
    struct.pack_into("<H", optional, 0, 0x20B)
    struct.pack_into("<I", optional, 108, 16)
    struct.pack_into("<II", optional, 112 + 8, rva, imports_size)
    struct.pack_into("<II", optional, 112 + 13 * 8, rva + imports_size, delayed_size)
    dos = bytearray(0x40)
    dos[:2] = b"MZ"
    struct.pack_into("<I", dos, 0x3C, 0x40)
    head = bytes(dos) + b"PE\0\0" + struct.pack("<HHIIIHH", machine, 1, 0, 0, 0, len(optional), 0x2022)
    head += bytes(optional) + struct.pack("<8s6I", b".rdata", len(section), rva, len(section), at, 0, 0) + bytes(8)
    return head.ljust(at, b"\0") + section


def _load_command(cmd: int, body: bytes) -> bytes:
    body += b"\0" * (-(8 + len(body)) % 8)
    return struct.pack("<II", cmd, 8 + len(body)) + body


def _path_command(cmd: int, text: str, fields: bytes = b"") -> bytes:
    return _load_command(cmd, struct.pack("<I", 12 + len(fields)) + fields + text.encode() + b"\0")


def macho_image(cputype: int, minos: int, *, weak: str = "/usr/lib/libc++.1.dylib") -> bytes:
    """A 64-bit little-endian Mach-O dylib header and load commands (no code: none is read)."""
    dylib = struct.pack("<III", 2, 0x10000, 0x10000)
    commands = [
        _path_command(0xD, "@rpath/libprobe.dylib", dylib),
        _path_command(0xC, "/usr/lib/libSystem.B.dylib", dylib),
        _path_command(0x80000018, weak, dylib),
        _path_command(0x8000001C, "@loader_path/lib"),
        _load_command(0x32, struct.pack("<4I", 1, minos, minos, 0)),
    ]
    body = b"".join(commands)
    return struct.pack("<IiiIIIII", 0xFEEDFACF, cputype, 0, 6, len(commands), len(body), 0, 0) + body


def universal(*slices: bytes) -> bytes:
    """A fat (universal) Mach-O holding ``slices``, each aligned to 4 KiB."""
    table, body, offset = b"", b"", 4096
    for image in slices:
        cputype, subtype = struct.unpack_from("<ii", image, 4)
        table += struct.pack(">iiIII", cputype, subtype, offset, len(image), 12)
        body += image.ljust(-(-len(image) // 4096) * 4096, b"\0")
        offset += -(-len(image) // 4096) * 4096
    return (struct.pack(">II", 0xCAFEBABE, len(slices)) + table).ljust(4096, b"\0") + body


def fatbin(*entries: tuple[int, int], compressed: bool = False) -> bytes:
    """An NVIDIA fat binary of (kind, arch) entries, laid out as nvcc 11.8-13.x writes them."""
    body = b""
    for kind, arch in entries:
        payload = bytes(range(40))
        flags = 0x8011 if compressed else 0x11
        body += struct.pack("<HHIQIIHHIIIQQQ", kind, 0x101, 64, len(payload), 0, 0, 8, 1, arch, 0, 0, flags, 0, 0)
        body += payload
    return struct.pack("<IHHQ", 0xBA55ED50, 1, 16, len(body)) + body


@pytest.fixture(scope="module")
def elf_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return cc_library(tmp_path_factory.mktemp("elf"), "-Wl,-soname,libprobe.so.1")


# ----------------------------------------------------------------------------------------- ELF
@pytest.mark.parametrize("dtags", ["--enable-new-dtags", "--disable-new-dtags"], ids=["runpath", "rpath"])
def test_elf_from_cc(tmp_path: Path, dtags: str) -> None:
    lib = cc_library(tmp_path, f"-Wl,{dtags}", "-Wl,-rpath,$ORIGIN/lib:/opt/probe/lib", "-Wl,-soname,libprobe.so.1")
    info = inspect_file(lib)
    assert info.format == "elf" and info.machine == HOST_MACHINE
    assert {"libm.so.6", "libc.so.6"} <= set(info.needed)
    assert info.rpath == ("$ORIGIN/lib", "/opt/probe/lib")
    assert info.soname == "libprobe.so.1"
    host_glibc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    if host_glibc.startswith("glibc "):
        major, minor = host_glibc.split()[1].split(".")[:2]
        assert info.glibc is not None and (2, 2) <= info.glibc <= (int(major), int(minor))
    if shutil.which("readelf"):
        assert info.glibc == readelf_glibc(lib)
    assert (info.min_os, info.sass, info.ptx, info.has_cuda_code) == (None, (), (), False)
    assert inspect_binary(lib.read_bytes(), name=str(lib)) == info


@pytest.mark.slow
@pytest.mark.parametrize(
    ("target", "machine"), [("x86_64-linux-gnu.2.17", "x86_64"), ("aarch64-linux-gnu.2.17", "aarch64")]
)
def test_elf_from_zig_for_glibc_2_17(tmp_path: Path, target: str, machine: str) -> None:
    lib = zig_library(tmp_path, target, "libprobe.so", "-lm", "-Wl,-soname,libprobe.so.1", "-Wl,-rpath,$ORIGIN")
    info = inspect_file(lib)
    assert (info.format, info.machine, info.soname, info.rpath) == ("elf", machine, "libprobe.so.1", ("$ORIGIN",))
    assert "libc.so.6" in info.needed
    assert info.glibc == (2, 17)  # clock_gettime moved into libc at 2.17: the floor, and nothing above it


# ------------------------------------------------------------------------------------------ PE
def test_pe_image_imports_and_delay_imports() -> None:
    image = pe_image(dlls=("KERNEL32.dll", "VCRUNTIME140.dll"), delayed=("nvcuda.dll",))
    info = inspect_binary(image, name="probe.dll")
    assert info == BinaryInfo("pe", "x86_64", ("KERNEL32.dll", "VCRUNTIME140.dll", "nvcuda.dll"))
    assert inspect_binary(pe_image(0xAA64, ("KERNEL32.dll",))).machine == "aarch64"


@pytest.mark.slow
def test_pe_from_zig(tmp_path: Path) -> None:
    info = inspect_file(zig_library(tmp_path, "x86_64-windows-gnu", "probe.dll"))
    assert (info.format, info.machine, info.rpath, info.soname, info.glibc) == ("pe", "x86_64", (), None, None)
    assert "kernel32.dll" in {n.lower() for n in info.needed}
    assert all(n.lower().endswith(".dll") for n in info.needed)


# -------------------------------------------------------------------------------------- Mach-O
def test_macho_image_and_universal() -> None:
    arm = macho_image(0x0100000C, 0x000B0000)
    info = inspect_binary(arm)
    assert (info.format, info.machine, info.soname, info.min_os) == ("macho", "arm64", "@rpath/libprobe.dylib", "11.0")
    assert info.needed == ("/usr/lib/libSystem.B.dylib", "/usr/lib/libc++.1.dylib")
    assert info.rpath == ("@loader_path/lib",)
    intel = macho_image(0x01000007, 0x000A0D01, weak="/usr/lib/libz.1.dylib")
    assert inspect_binary(intel).min_os == "10.13.1"
    both = inspect_binary(universal(intel, arm))
    assert (both.machine, both.min_os, both.soname) == ("universal2", "11.0", "@rpath/libprobe.dylib")
    assert both.needed == ("/usr/lib/libSystem.B.dylib", "/usr/lib/libz.1.dylib", "/usr/lib/libc++.1.dylib")


@pytest.mark.slow
def test_macho_from_zig(tmp_path: Path) -> None:
    flags = ("-Wl,-rpath,@loader_path/lib", "-Wl,-install_name,@rpath/libprobe.dylib")
    info = inspect_file(zig_library(tmp_path, "aarch64-macos.11.0", "libprobe.dylib", *flags))
    assert (info.format, info.machine, info.min_os, info.glibc) == ("macho", "arm64", "11.0", None)
    assert "/usr/lib/libSystem.B.dylib" in info.needed
    assert (info.rpath, info.soname) == (("@loader_path/lib",), "@rpath/libprobe.dylib")


# -------------------------------------------------------------------------------------- fatbin
def test_fatbin_entries_plain_and_compressed() -> None:
    one = fatbin((2, 75), (2, 120), (1, 120))
    two = fatbin((2, 75), (2, 86), (4, 0), compressed=True)  # an entry of another kind is skipped, not fatal
    assert fatbin_archs(b"\0" * 13 + one + b"junk" + two) == ((75, 86, 120), (120,))
    assert fatbin_archs(FATBIN_MAGIC + b"\xff" * 12 + one) == ((75, 120), (120,))  # a stray magic, then a real one
    assert fatbin_archs(one[:-1]) == ((), ())  # cut short: the entries no longer fit
    assert fatbin_archs(b"") == ((), ())


def test_bogus_fatbin_magic_is_ignored(elf_library: Path) -> None:
    rng = random.Random(7)
    garbage = b"".join(FATBIN_MAGIC + rng.randbytes(rng.randrange(0, 64)) for _ in range(200))
    assert fatbin_archs(garbage) == ((), ())
    info = inspect_binary(elf_library.read_bytes() + garbage + FATBIN_MAGIC)
    assert (info.sass, info.ptx, info.has_cuda_code) == ((), (), False)
    info = inspect_binary(elf_library.read_bytes() + garbage + fatbin((2, 90)))
    assert (info.sass, info.ptx, info.has_cuda_code) == ((90,), (), True)


def _cached_toolchain(version: str, toolchain: Toolchain) -> InstalledToolchain | None:
    """A toolchain already in the cache (``$WHEELMATRIX_TEST_CACHE_DIR`` or the default): never downloads."""
    folder = os.environ.get("WHEELMATRIX_TEST_CACHE_DIR")
    cache = Cache(Path(folder)) if folder else Cache()
    try:
        return provide(spec(version, toolchain), lock_path=REPO / "toolchains.lock", offline=True, cache=cache)
    except WheelmatrixError:
        return None


def cuobjdump_listing(lib: Path) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
    """(sass, ptx) as cuobjdump 12.4+ lists them (older ones misread CUDA 13's fat binaries); None without one."""
    candidates = [shutil.which("cuobjdump")]
    for version, toolchain in (("13.0", Toolchain("pypi")), ("12.4", Toolchain("debian", suite="trixie"))):
        installed = _cached_toolchain(version, toolchain)
        candidates.append(str(installed.root / "bin" / "cuobjdump") if installed else None)
    for tool in (c for c in candidates if c and Path(c).is_file()):
        release = re.search(r"release (\d+)\.(\d+)", _proc.run([tool, "--version"], check=False).output)
        if release and (int(release[1]), int(release[2])) >= (12, 4):
            out = _proc.run([tool, "--list-elf", "--list-ptx", lib]).output
            sass = {int(a) for a in re.findall(r"ELF file\s+\d+: \S+\.sm_(\d+)[a-z]?\.cubin", out)}
            ptx = {int(a) for a in re.findall(r"PTX file\s+\d+: \S+\.sm_(\d+)[a-z]?\.ptx", out)}
            return tuple(sorted(sass)), tuple(sorted(ptx))
    return None


@pytest.mark.slow
@pytest.mark.parametrize("compress", [False, True], ids=["plain", "compress-all"])
def test_cuda_library_from_nvcc_13_0(tmp_path: Path, compress: bool) -> None:
    cuda = _cached_toolchain("13.0", Toolchain("pypi"))
    if cuda is None or sys.platform != "linux":
        pytest.skip("needs Linux and CUDA 13.0 in the toolchain cache (`wheelmatrix toolchain install` fetches it)")
    (tmp_path / "k.cu").write_text(KERNEL_CU)
    gencode = ["-gencode", "arch=compute_75,code=sm_75", "-gencode", "arch=compute_120,code=[sm_120,compute_120]"]
    extra = ["-Xfatbin", "-compress-all"] if compress else []
    argv: list[str | Path] = [cuda.nvcc, "-shared", "-Xcompiler", "-fPIC", *gencode, *extra, "k.cu", "-o", "libk.so"]
    _proc.run(argv, cwd=tmp_path, timeout=600)
    lib = tmp_path / "libk.so"
    info = inspect_file(lib)
    assert (info.format, info.sass, info.ptx, info.has_cuda_code) == ("elf", (75, 120), (120,), True)
    assert fatbin_archs(lib.read_bytes()) == ((75, 120), (120,))
    listing = cuobjdump_listing(lib)
    assert listing is None or listing == ((75, 120), (120,))


# ---------------------------------------------------------------------------------- bad input
def test_empty_and_random_bytes_are_not_binaries(tmp_path: Path) -> None:
    with pytest.raises(BinaryError, match=r"lib\.so: not an ELF, PE or Mach-O binary \(an empty file\)"):
        inspect_binary(b"", name="lib.so")
    with pytest.raises(BinaryError, match="not an ELF, PE or Mach-O binary"):
        inspect_binary(random.Random(1).randbytes(4096))
    with pytest.raises(BinaryError, match="not an ELF"):  # a Java class file shares the fat Mach-O magic
        inspect_binary(b"\xca\xfe\xba\xbe\x00\x00\x00\x34" + bytes(64))
    (tmp_path / "empty.so").write_bytes(b"")
    with pytest.raises(BinaryError, match="empty file"):
        inspect_file(tmp_path / "empty.so")
    with pytest.raises(BinaryError, match="cannot read"):
        inspect_file(tmp_path / "missing.so")
    assert issubclass(BinaryError, PackageError)


def test_truncated_binaries_name_what_is_cut(elf_library: Path) -> None:
    with pytest.raises(BinaryError, match=r"malformed ELF: program header 0 at 0x40 .* past the end of the file \(100"):
        inspect_binary(elf_library.read_bytes()[:100], name="libprobe.so")
    with pytest.raises(BinaryError, match="malformed PE: import descriptor"):
        inspect_binary(pe_image(dlls=("KERNEL32.dll",))[:0x210])
    with pytest.raises(BinaryError, match="malformed Mach-O: load command 1"):
        inspect_binary(macho_image(0x0100000C, 0x000B0000)[:100])


@pytest.fixture(scope="module")
def samples(elf_library: Path) -> list[bytes]:
    arm = macho_image(0x0100000C, 0x000B0000)
    elf = elf_library.read_bytes() + fatbin((2, 75), (1, 75))
    return [elf, pe_image(dlls=("KERNEL32.dll",), delayed=("nvcuda.dll",)), arm, universal(arm, arm)]


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_damaged_binaries_raise_only_binary_error(samples: list[bytes], data: st.DataObject) -> None:
    blob = bytearray(data.draw(st.sampled_from(samples)))
    for offset, value in data.draw(st.lists(st.tuples(st.integers(0, 1023), st.integers(0, 255)), max_size=6)):
        blob[offset % len(blob)] = value
    blob = blob[: data.draw(st.integers(0, len(blob)))]
    try:
        info = inspect_binary(bytes(blob))
    except BinaryError:
        return  # the one exception damaged input may raise
    assert info.format in ("elf", "pe", "macho")
