"""Read what a native library really contains: ELF (Linux), PE (Windows) and Mach-O (macOS).

Each library's manifest is written from the binary itself, never from what the project says it
built, and wheels are checked against it later. So this module answers, from the bytes alone:
the machine the loader will demand; the libraries it will look up (ELF ``DT_NEEDED``, PE import
and delay-import tables, Mach-O dylib load commands) and where (ELF ``DT_RPATH``/``DT_RUNPATH``,
Mach-O ``LC_RPATH``); its own name (``DT_SONAME``, ``LC_ID_DYLIB``); the newest ``GLIBC_x.y``
symbol version it binds (its manylinux floor); the macOS deployment target; and which CUDA
compute capabilities its embedded NVIDIA fat binaries carry as SASS and as PTX.

Pure Python over :mod:`struct`: no readelf, objdump, otool or cuobjdump, so every host gives
the same answer. Every read is bounds-checked; malformed or truncated input raises
:class:`BinaryError` naming the format and the field, and no other exception escapes.
"""

from __future__ import annotations

import mmap
import re
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal, NoReturn, TypeAlias

from wheelmatrix.errors import PackageError

BinaryData: TypeAlias = bytes | bytearray | mmap.mmap


class BinaryError(PackageError):
    """Not an ELF, PE or Mach-O binary, or one whose headers are malformed or cut short."""


@dataclass(frozen=True)
class BinaryInfo:
    """What one binary holds; tuples keep the order the binary lists them in, CUDA archs sorted."""

    format: Literal["elf", "pe", "macho"]
    machine: str  # "x86_64", "aarch64" (ELF, PE); "arm64", "x86_64" (Mach-O); "universal2" for a fat Mach-O
    needed: tuple[str, ...] = ()
    rpath: tuple[str, ...] = ()
    soname: str | None = None
    glibc: tuple[int, int] | None = None
    min_os: str | None = None
    sass: tuple[int, ...] = ()
    ptx: tuple[int, ...] = ()

    @property
    def has_cuda_code(self) -> bool:
        return bool(self.sass or self.ptx)


class _Reader:
    """Bounds-checked reads over one binary; every failure is a :class:`BinaryError`."""

    def __init__(self, data: BinaryData, name: str, fmt: str, endian: str = "<") -> None:
        self.data, self.name, self.fmt, self.endian = data, name, fmt, endian

    def fail(self, problem: str) -> NoReturn:
        raise BinaryError(
            f"{self.name}: malformed {self.fmt}: {problem}",
            fix="check that the file was not cut short or corrupted after the build",
        )

    def unpack(self, layout: str, offset: int, what: str) -> tuple[int, ...]:
        size = struct.calcsize(self.endian + layout)
        if offset < 0 or offset + size > len(self.data):
            self.fail(f"{what} at {offset:#x} (+{size}) lies past the end of the file ({len(self.data)} bytes)")
        return struct.unpack_from(self.endian + layout, self.data, offset)

    def cstr(self, offset: int, what: str, limit: int | None = None) -> str:
        limit = len(self.data) if limit is None else min(limit, len(self.data))
        end = self.data.find(b"\0", offset, limit) if 0 <= offset < limit else -1
        if end < 0:
            self.fail(f"{what} at offset {offset:#x} is not a NUL-terminated string inside its table")
        raw = bytes(self.data[offset:end])
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            self.fail(f"{what} at offset {offset:#x} is not UTF-8: {raw[:60]!r}")


def _unique(items: list[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


# ---------------------------------------------------------------------------------------------- ELF
_ELF_MACHINES = {3: "i686", 21: "ppc64", 22: "s390x", 40: "armv7l", 62: "x86_64", 183: "aarch64", 243: "riscv64"}
_PT_LOAD, _PT_DYNAMIC = 1, 2
_DT_NEEDED, _DT_STRTAB, _DT_STRSZ, _DT_SONAME, _DT_RPATH, _DT_RUNPATH = 1, 5, 10, 14, 15, 29
_DT_VERNEED, _DT_VERNEEDNUM = 0x6FFFFFFE, 0x6FFFFFFF
_GLIBC = re.compile(r"GLIBC_(\d+)\.(\d+)(?:\.\d+)*")


def _elf(data: BinaryData, name: str) -> BinaryInfo:
    if len(data) < 16 or data[4] not in (1, 2) or data[5] not in (1, 2):
        _Reader(data, name, "ELF").fail("the identification bytes name no known class (32/64-bit) or byte order")
    wide = data[4] == 2
    r = _Reader(data, name, "ELF", "<" if data[5] == 1 else ">")
    header = r.unpack("HHIQQQIHHHHHH" if wide else "HHIIIIIHHHHHH", 16, "ELF header")
    e_machine, phoff, phentsize, phnum = header[1], header[4], header[8], header[9]
    machine = _ELF_MACHINES.get(e_machine, f"elf-machine-{e_machine}")
    if machine == "ppc64" and r.endian == "<":
        machine = "ppc64le"
    loads: list[tuple[int, int, int]] = []  # (vaddr, filesz, offset) of each PT_LOAD
    dynamic: tuple[int, int] | None = None  # (offset, filesz) of PT_DYNAMIC
    if phnum and phentsize < (56 if wide else 32):
        r.fail(f"program header entries are {phentsize} bytes, too small")
    for i in range(phnum):
        at = phoff + i * phentsize
        if wide:
            p_type, _, p_offset, p_vaddr, _, p_filesz, *_ = r.unpack("IIQQQQQQ", at, f"program header {i}")
        else:
            p_type, p_offset, p_vaddr, _, p_filesz, *_ = r.unpack("IIIIIIII", at, f"program header {i}")
        if p_type == _PT_LOAD:
            loads.append((p_vaddr, p_filesz, p_offset))
        elif p_type == _PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
    if dynamic is None:  # a static executable or an object file: nothing for a loader to resolve
        return BinaryInfo("elf", machine)

    def offset_of(vaddr: int, what: str) -> int:
        for start, size, offset in loads:
            if start <= vaddr < start + size:
                return offset + vaddr - start
        r.fail(f"{what} address {vaddr:#x} lies in no loaded segment")

    entries: list[tuple[int, int]] = []
    step = 16 if wide else 8
    for at in range(dynamic[0], dynamic[0] + dynamic[1] - step + 1, step):
        tag, value = r.unpack("qQ" if wide else "iI", at, "dynamic entry")
        if tag == 0:
            break
        entries.append((tag, value))
    tags = dict(entries)
    if _DT_STRTAB not in tags:
        r.fail("the dynamic section has no DT_STRTAB")
    strtab = offset_of(tags[_DT_STRTAB], "DT_STRTAB")
    strend = strtab + tags.get(_DT_STRSZ, len(data))

    def string(index: int, what: str) -> str:
        return r.cstr(strtab + index, what, strend)

    needed = [string(v, "DT_NEEDED name") for t, v in entries if t == _DT_NEEDED]
    rpath = [
        p for t, v in entries if t in (_DT_RPATH, _DT_RUNPATH) for p in string(v, "DT_RPATH/DT_RUNPATH").split(":") if p
    ]
    soname = string(tags[_DT_SONAME], "DT_SONAME") if _DT_SONAME in tags else None
    glibc: tuple[int, int] | None = None
    if tags.get(_DT_VERNEED):
        count = tags.get(_DT_VERNEEDNUM, 0)
        if count > len(data) // 16:
            r.fail(f"DT_VERNEEDNUM {count} is more version-need entries than the file can hold")
        at, budget = offset_of(tags[_DT_VERNEED], "DT_VERNEED"), len(data) // 16  # entries are 16 bytes
        for _ in range(count):
            _, aux_count, _, aux, next_need = r.unpack("HHIII", at, "version-need entry (.gnu.version_r)")
            aux_at = at + aux
            for _ in range(aux_count):
                budget -= 1
                if budget < 0:
                    r.fail("the version-need entries link into a loop")
                _, _, _, vna_name, next_aux = r.unpack("IHHII", aux_at, "version-need auxiliary entry")
                match = _GLIBC.fullmatch(string(vna_name, "version-need name"))
                if match:
                    version = (int(match[1]), int(match[2]))
                    glibc = max(glibc, version) if glibc else version
                aux_at += next_aux
            at += next_need
    return BinaryInfo("elf", machine, _unique(needed), _unique(rpath), soname, glibc)


# ----------------------------------------------------------------------------------------------- PE
_PE_MACHINES = {0x14C: "i686", 0x1C4: "armv7", 0x8664: "x86_64", 0xAA64: "aarch64"}


def _pe(data: BinaryData, name: str) -> BinaryInfo:
    r = _Reader(data, name, "PE")
    (lfanew,) = r.unpack("I", 0x3C, "DOS header e_lfanew")
    if bytes(data[lfanew : lfanew + 4]) != b"PE\0\0":
        r.fail(f"no PE signature at e_lfanew {lfanew:#x} (an MS-DOS program, or truncated?)")
    coff_machine, nsections, _, _, _, optional_size, _ = r.unpack("HHIIIHH", lfanew + 4, "COFF header")
    optional = lfanew + 24
    (magic,) = r.unpack("H", optional, "optional header magic")
    if magic not in (0x10B, 0x20B):
        r.fail(f"optional header magic {magic:#x} is neither PE32 (0x10b) nor PE32+ (0x20b)")
    plus = magic == 0x20B
    (image_base,) = r.unpack("Q" if plus else "I", optional + (24 if plus else 28), "ImageBase")
    (ndirs,) = r.unpack("I", optional + (108 if plus else 92), "NumberOfRvaAndSizes")
    dirs = optional + (112 if plus else 96)
    sections = [r.unpack("IIII", optional + optional_size + 40 * i + 8, "section header") for i in range(nsections)]

    def offset_of(rva: int, what: str) -> int:
        for vsize, va, raw_size, raw_at in sections:
            if va <= rva < va + max(vsize, raw_size) and rva - va < raw_size:
                return raw_at + rva - va
        r.fail(f"{what} RVA {rva:#x} lies in no section's file data")

    def table(index: int, entry: str, what: str) -> list[tuple[int, ...]]:
        """The descriptors of data directory ``index``, up to the all-zero one that ends them."""
        if ndirs <= index:
            return []
        (rva,) = r.unpack("I", dirs + 8 * index, f"{what} directory")
        at, rows = (offset_of(rva, what) if rva else -1), []
        while at >= 0 and any(row := r.unpack(entry, at, f"{what} descriptor")):
            rows.append(row)
            at += struct.calcsize(entry)
        return rows

    needed = [r.cstr(offset_of(row[3], "import name"), "import name") for row in table(1, "IIIII", "import")]
    for attributes, name_at, *_ in table(13, "IIIIIIII", "delay-import"):  # loaded on first call, needed all the same
        rva = name_at if attributes & 1 else name_at - image_base  # bit 0 clear: an old linker wrote a VA
        needed.append(r.cstr(offset_of(rva, "delay-import name"), "delay-import name"))
    machine = _PE_MACHINES.get(coff_machine, f"pe-machine-{coff_machine:#x}")
    return BinaryInfo("pe", machine, _unique(needed))


# ------------------------------------------------------------------------------------------- Mach-O
_MACHO_THIN = {b"\xce\xfa\xed\xfe", b"\xcf\xfa\xed\xfe", b"\xfe\xed\xfa\xce", b"\xfe\xed\xfa\xcf"}
_MACHO_FAT = {b"\xca\xfe\xba\xbe", b"\xca\xfe\xba\xbf"}  # big-endian fat headers, 32- and 64-bit offsets
_MACHO_CPUS = {7: "i386", 0x01000007: "x86_64", 12: "arm", 0x0100000C: "arm64", 0x0200000C: "arm64_32"}
_LC_LOADS = {0xC, 0x20, 0x80000018, 0x8000001F, 0x80000023}  # LOAD, LAZY_LOAD, LOAD_WEAK, REEXPORT, LOAD_UPWARD
_LC_ID_DYLIB, _LC_RPATH, _LC_BUILD_VERSION, _LC_VERSION_MIN_MACOSX = 0xD, 0x8000001C, 0x32, 0x24
_PLATFORM_MACOS = 1


def _macho(data: BinaryData, name: str, base: int = 0, end: int | None = None) -> BinaryInfo:
    """The Mach-O image at ``data[base:end]`` (the whole file, or one slice of a universal one)."""
    end = len(data) if end is None else end
    magic = bytes(data[base : base + 4])
    r = _Reader(data, name, "Mach-O", "<" if magic[0] in (0xCE, 0xCF) else ">")
    _, cputype, subtype, _, ncmds, _, _ = r.unpack("IiiIIII", base, "Mach-O header")
    machine = _MACHO_CPUS.get(cputype, f"macho-cpu-{cputype:#x}")
    if machine == "arm64" and subtype & 0xFF == 2:
        machine = "arm64e"
    needed: list[str] = []
    rpath: list[str] = []
    soname: str | None = None
    versions: list[tuple[int, int]] = []  # (platform, minos); LC_VERSION_MIN_MACOSX counts as macOS
    at = base + (32 if magic in (b"\xcf\xfa\xed\xfe", b"\xfe\xed\xfa\xcf") else 28)
    for i in range(ncmds):
        cmd, size = r.unpack("II", at, f"load command {i}")
        if size < 8 or at + size > end:
            r.fail(f"load command {i} ({cmd:#x}) claims {size} bytes, past the end of its image")
        if cmd in _LC_LOADS or cmd in (_LC_ID_DYLIB, _LC_RPATH):
            (str_at,) = r.unpack("I", at + 8, f"load command {i} string offset")
            text = r.cstr(at + str_at, f"load command {i} ({cmd:#x}) path", at + size)
            if cmd == _LC_ID_DYLIB:
                soname = text
            else:
                (rpath if cmd == _LC_RPATH else needed).append(text)
        elif cmd == _LC_BUILD_VERSION:
            platform, minos = r.unpack("II", at + 8, "LC_BUILD_VERSION")
            versions.append((platform, minos))
        elif cmd == _LC_VERSION_MIN_MACOSX:
            versions.append((_PLATFORM_MACOS, r.unpack("I", at + 8, "LC_VERSION_MIN_MACOSX")[0]))
        at += size
    versions.sort(key=lambda v: v[0] != _PLATFORM_MACOS)  # macOS first (a zippered binary lists Catalyst too)
    min_os = None
    if versions:
        v = versions[0][1]
        min_os = f"{v >> 16}.{(v >> 8) & 0xFF}" + (f".{v & 0xFF}" if v & 0xFF else "")
    return BinaryInfo("macho", machine, _unique(needed), _unique(rpath), soname, None, min_os)


def _macho_fat(data: BinaryData, name: str) -> BinaryInfo:
    """A universal binary: one entry that merges its slices (the newest deployment target of them)."""
    r = _Reader(data, name, "universal Mach-O", ">")
    wide = bytes(data[:4]) == b"\xca\xfe\xba\xbf"
    (count,) = r.unpack("I", 4, "fat header")
    slices = []
    for i in range(count):
        if wide:
            _, _, offset, size, *_ = r.unpack("iiQQII", 8 + 32 * i, f"fat_arch {i}")
        else:
            _, _, offset, size, _ = r.unpack("iiIII", 8 + 20 * i, f"fat_arch {i}")
        if offset + size > len(data) or bytes(data[offset : offset + 4]) not in _MACHO_THIN:
            r.fail(f"slice {i} at offset {offset:#x} ({size} bytes) is not a Mach-O image inside the file")
        slices.append(_macho(data, name, offset, offset + size))
    machines = sorted({s.machine for s in slices})
    targets = sorted((s.min_os for s in slices if s.min_os), key=lambda v: tuple(map(int, v.split("."))))
    return BinaryInfo(
        "macho",
        "universal2" if machines == ["arm64", "x86_64"] else "+".join(machines),
        _unique([n for s in slices for n in s.needed]),
        _unique([p for s in slices for p in s.rpath]),
        next((s.soname for s in slices if s.soname), None),
        None,
        targets[-1] if targets else None,
    )


# ------------------------------------------------------------------------------------------- fatbin
_FATBIN_MAGIC = struct.pack("<I", 0xBA55ED50)
_FATBIN_HEADER = struct.Struct("<IHHQ")  # magic, version, header size, size of the entries after the header
# kind (1 PTX, 2 ELF/SASS), version, header size, padded payload size, compressed size, unknown,
# minor, major, arch (75 for sm_75); then name offset and length, u64 flags (a bit marks a compressed
# payload), and the decompressed size. The arch is in the clear whether the payload is compressed or not.
_FATBIN_ENTRY = struct.Struct("<HHIQIIHHI")
_KIND_PTX, _KIND_SASS = 1, 2


def _fatbin_entries(data: BinaryData, at: int) -> tuple[list[tuple[int, int]], int] | None:
    """``([(kind, arch), ...], end)`` of the fat binary at ``at``, or None for a stray magic."""
    if at + _FATBIN_HEADER.size > len(data):
        return None
    _, _, header_size, size = _FATBIN_HEADER.unpack_from(data, at)
    at, end = at + header_size, at + header_size + size
    if header_size < _FATBIN_HEADER.size or end > len(data):
        return None
    found = []
    while at < end:
        if at + _FATBIN_ENTRY.size > end:
            return None
        kind, _, entry_header, payload, *_, arch = _FATBIN_ENTRY.unpack_from(data, at)
        if entry_header < _FATBIN_ENTRY.size or at + entry_header + payload > end:
            return None
        if kind in (_KIND_PTX, _KIND_SASS):
            if not 10 <= arch < 10000:
                return None
            found.append((kind, arch))
        at += entry_header + payload
    return found, end


def fatbin_archs(data: BinaryData) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """``(sass, ptx)``: the sorted compute capabilities of every fat binary embedded anywhere in ``data``.

    Scans for the magic rather than for a section, so it reads ELF, PE and Mach-O alike, and also
    finds the fat binaries a library keeps as data to load itself (``cuobjdump`` lists only those
    in ``.nv_fatbin``). An occurrence whose sizes do not tile exactly into entries is ignored.
    """
    sass: set[int] = set()
    ptx: set[int] = set()
    at = data.find(_FATBIN_MAGIC)
    while at >= 0:
        parsed = _fatbin_entries(data, at)
        if parsed is None:
            at = data.find(_FATBIN_MAGIC, at + 1)
            continue
        for kind, arch in parsed[0]:
            (sass if kind == _KIND_SASS else ptx).add(arch)
        at = data.find(_FATBIN_MAGIC, parsed[1])
    return tuple(sorted(sass)), tuple(sorted(ptx))


# ------------------------------------------------------------------------------------------- public
def inspect_binary(data: BinaryData, *, name: str = "<binary>") -> BinaryInfo:
    """What the ELF, PE or Mach-O image in ``data`` holds; :class:`BinaryError` if it is none or malformed."""
    head = bytes(data[:4])
    try:
        if head == b"\x7fELF":
            info = _elf(data, name)
        elif head[:2] == b"MZ":
            info = _pe(data, name)
        elif head in _MACHO_THIN:
            info = _macho(data, name)
        elif head in _MACHO_FAT and 0 < int.from_bytes(bytes(data[4:8]), "big") < 20:  # a Java class file has 45+ here
            info = _macho_fat(data, name)
        else:
            what = "an empty file" if not data else f"starts with {bytes(data[:8])!r}"
            raise BinaryError(
                f"{name}: not an ELF, PE or Mach-O binary ({what})",
                fix="inspect the shared libraries a build produced (.so, .dll, .dylib), not other files",
            )
    except (struct.error, ValueError, IndexError, OverflowError) as error:  # a backstop: reads are bounds-checked
        raise BinaryError(f"{name}: malformed binary: {error}") from error
    sass, ptx = fatbin_archs(data)
    return replace(info, sass=sass, ptx=ptx)


def inspect_file(path: Path) -> BinaryInfo:
    """:func:`inspect_binary` over a file, mapped rather than read so a large library costs no memory."""
    try:
        with path.open("rb") as file:
            if path.stat().st_size == 0:
                return inspect_binary(b"", name=str(path))
            with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as view:
                return inspect_binary(view, name=str(path))
    except OSError as error:
        raise BinaryError(f"{path}: cannot read: {error.strerror or error}") from error
