"""Stage: prove every wheel of a release publishable before it leaves the machine.

:func:`check_release` reads the wheels ``dist/build-record.json`` lists (or the ones it is given)
and collects :class:`Finding` objects, each with a stable code (:data:`CODES`), the wheel, what is
wrong, why it matters and the fix. Nothing here raises for a bad wheel: a broken wheel is a
finding. Only a check that cannot run at all (no build record, a missing tool) raises a
:class:`~wheelmatrix.errors.WheelmatrixError`.

What it checks, from a Linux host, on every platform's wheels:

* **archive**: a readable ZIP framed as PyPI accepts it (``warehouse/utils/zipfiles.py``: no
  data descriptors, duplicates, comments, unknown records or trailing data; stored or deflate;
  compression ratio), every entry's hash and size against RECORD, no missing or extra entries;
  check-wheel-contents run for real;
* **name, version, tags**: :func:`packaging.utils.parse_wheel_filename`, no local version, platform
  tags from PyPI's allow-list (``warehouse/forklift/legacy.py``), file name agreeing with METADATA
  and WHEEL;
* **metadata**: :meth:`packaging.metadata.Metadata.from_email` validation, a Metadata-Version PyPI
  accepts, ``twine check --strict`` run for real, Requires-Python admitting the declared Pythons;
* **size**: each file against ``[packaging] max-file-size``, the release against ``project-quota``;
* **ABI**: Linux wheels re-rated by ``auditwheel show`` against their tag and the declared policy
  (offending symbols named); Windows DLL imports resolved to the wheel or the system (delvewheel's
  list of system DLLs); macOS Mach-O architecture and minimum OS against the tag;
* **GPU coverage**: each CUDA library's SASS and PTX archs read from its fat binaries against the
  matrix, its manifest against the binary, the CUDA release that wrote its PTX;
* **hygiene**: no absolute build paths of this machine, no credentials, no ``.pyc``, no build or
  test leftovers;
* **installs**: each wheel this host can run installed into a fresh venv per declared Python,
  the project's own distributions from the checked wheels alone, then the smoke command.

Results are cached in the work folder: the static checks by wheel sha256 + toolkit + matrix +
tools, the installs by the installed wheels' sha256 + interpreter + smoke command (passes only),
so a rerun over unchanged wheels costs a hash per file. ``dist/check-report.json``
(:data:`REPORT_SCHEMA`, committed as ``schemas/check-report.schema.json``) records every file's
sha256 and size with the findings; the publish stage refuses bytes other than those that passed.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import csv
import fnmatch
import hashlib
import io
import json
import logging
import os
import re
import struct
import tempfile
import time
import zipfile
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from email.parser import HeaderParser
from pathlib import Path
from typing import Any, Literal

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags, platform_tags
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from packaging import metadata as pkg_metadata
from wheelmatrix import __version__, _proc, binaries, data
from wheelmatrix.errors import CommandFailed, PackageError, WheelmatrixError
from wheelmatrix.host import Interpreter, find_python
from wheelmatrix.model import CudaSpec, Matrix, PlatformSpec
from wheelmatrix.platforms.macos import check_macos_wheel
from wheelmatrix.stages.cells import toolkit_digest
from wheelmatrix.stages.record import RECORD_FILE
from wheelmatrix.stages.release import tool_version
from wheelmatrix.stages.repair import PolicyViolation, check_policy, glibc_of, offending_symbols, rate, tool, tool_path
from wheelmatrix.stages.report import write_report
from wheelmatrix.toolchains.cache import cache_root
from wheelmatrix.toolchains.fetch import file_sha256

log = logging.getLogger("wheelmatrix")

REPORT_FILE = "check-report.json"
REPORT_KIND = "wheelmatrix-check-report"
REPORT_VERSION = 1
Severity = Literal["error", "warning"]
InstallStatus = Literal["passed", "failed", "skipped"]

TWINE_FIX = "pip install 'wheelmatrix[build]' (it brings twine)"
CWC_FIX = "pip install 'wheelmatrix[build]' (it brings check-wheel-contents)"
_REBUILD = "rebuild and re-assemble it (`wheelmatrix build && wheelmatrix assemble`); never edit a wheel after assemble"


# ------------------------------------------------------------------------------------------ codes
@dataclass(frozen=True)
class Code:
    """One kind of finding: its stable code, severity, a title and why it matters."""

    code: str
    severity: Severity
    title: str
    why: str


_PYPI_400 = "PyPI refuses the upload (HTTP 400)"
CODES: dict[str, Code] = {
    c.code: c
    for c in (
        # archive and RECORD
        Code("WM001", "error", "not a readable ZIP archive",
             f"pip and PyPI open a wheel as a ZIP: {_PYPI_400} and no installer can read it"),
        Code("WM002", "error", "ZIP framing PyPI rejects",
             f"{_PYPI_400} for ZIPs that two ZIP readers could see differently (docs.pypi.org/archives)"),
        Code("WM003", "error", "compression other than stored or deflate",
             f"{_PYPI_400}: 'File does not use a supported compression type'; older installers cannot read it"),
        Code("WM004", "error", "compression ratio over 50 above 64 MiB unpacked",
             f"{_PYPI_400}: PyPI treats it as a decompression bomb"),
        Code("WM005", "error", "unsafe entry path",
             "an absolute path or '..' would write outside site-packages; installers refuse the wheel"),
        Code("WM006", "error", "an entry cannot be read back",
             "its CRC or deflate stream is broken: pip fails half-way through installing it"),
        Code("WM010", "error", ".dist-info incomplete",
             "installers need exactly one <name>-<version>.dist-info with METADATA, WHEEL and RECORD"),
        Code("WM011", "error", "RECORD hash mismatch",
             "PEP 427: installers must refuse a file whose hash differs from RECORD (pip does)"),
        Code("WM012", "error", "RECORD size mismatch",
             "RECORD is the installer's inventory: a wrong size means the file changed after RECORD was written"),
        Code("WM013", "error", "file missing from RECORD",
             "pip installs it without a hash check and cannot uninstall it; PyPI mails the maintainers"),
        Code("WM014", "error", "RECORD lists a file the wheel lacks",
             "the wheel lost a file after RECORD was written; pip refuses or installs a broken package"),
        Code("WM015", "error", "RECORD hash missing or forbidden",
             "PEP 427: every file but RECORD carries a hash, sha256 or stronger (md5 and sha1 are forbidden)"),
        Code("WM016", "error", "RECORD malformed", "installers parse RECORD as CSV: a malformed one fails the install"),
        Code("WM020", "warning", "check-wheel-contents finding",
             "check-wheel-contents spots wheels that install something other than what was meant"),
        # name, version, tags
        Code("WM101", "error", "invalid wheel file name",
             f"{_PYPI_400} and pip skips files whose names do not parse (PEP 427)"),
        Code("WM102", "error", "local version segment",
             f"{_PYPI_400}: 'Can't use PEP 440 local versions' (+cu124 and the like)"),
        Code("WM103", "error", "platform tag PyPI rejects",
             f"{_PYPI_400}: only tags on its allow-list are accepted (linux_x86_64 is not: use manylinux)"),
        Code("WM104", "error", "file name disagrees with METADATA Name",
             f"{_PYPI_400}: the file name must start with the normalized project name"),
        Code("WM105", "error", "file name disagrees with METADATA Version",
             f"{_PYPI_400}: the file name's version must equal METADATA's"),
        Code("WM106", "error", "WHEEL Tag lines disagree with the file name",
             "installers pick wheels by file name and check WHEEL: a disagreement installs the wrong binary"),
        Code("WM109", "error", "wheel for a platform the matrix does not declare",
             "no policy, repair tool or archs are declared for it, so nothing vouches for its binaries"),
        # metadata
        Code("WM201", "error", "METADATA invalid",
             f"{_PYPI_400} when core metadata does not validate (packaging.metadata, as warehouse uses)"),
        Code("WM202", "error", "Metadata-Version PyPI rejects",
             f"{_PYPI_400}: it accepts Metadata-Version 1.0-1.2 and 2.1-2.5 only (2.0 is rejected)"),
        Code("WM203", "error", "twine check error", "`twine check` fails: `twine upload` and PyPI refuse it"),
        Code("WM204", "warning", "twine check warning",
             "`twine check --strict` fails on it; the PyPI page would render without a description"),
        Code("WM205", "error", "METADATA unreadable", "installers and PyPI read METADATA first"),
        Code("WM206", "error", "Requires-Python excludes a declared Python",
             "pip refuses the wheel on a Python the matrix promises"),
        # size
        Code("WM301", "error", "file over the size limit",
             f"{_PYPI_400}: 'File too large' ([packaging] max-file-size is the index's per-file limit)"),
        Code("WM302", "error", "release over the project quota",
             f"{_PYPI_400} once the project's total size passes its quota ([packaging] project-quota)"),
        # ABI
        Code("WM401", "error", "glibc newer than the tag or the declared policy",
             "pip installs the wheel on every glibc its tag names; older ones fail at import with "
             "'version GLIBC_x not found' (a lying manylinux tag)"),
        Code("WM402", "error", "libraries needed from outside the wheel",
             "a library no manylinux policy allows and the wheel does not carry: import fails where it is absent"),
        Code("WM404", "error", "auditwheel cannot rate the wheel",
             "without a rating nothing vouches for the manylinux tag"),
        Code("WM405", "error", "binary for another platform",
             "the loader rejects a binary of another format or architecture than the wheel's tag"),
        Code("WM406", "error", "unreadable binary",
             "a library whose headers do not parse will not load either"),
        Code("WM411", "error", "DLL import resolved by neither the wheel nor Windows",
             "Windows fails to load the DLL ('The specified module could not be found')"),
        Code("WM412", "error", "a library that must never be vendored is inside",
             "the NVIDIA driver and the libraries of declared dependencies belong to the machine or "
             "their own wheels: a copy in the wheel shadows them and breaks on other drivers"),
        Code("WM413", "error", "vendors a CUDA library NVIDIA's runtime wheel provides",
             "the wheel carries hundreds of MB it should take from NVIDIA's wheel, and two copies can clash at run time"),
        Code("WM414", "error", "links a CUDA library whose NVIDIA runtime wheel it does not declare",
             "pip installs no copy of the library, so importing the module fails with 'cannot open shared object'"),
        Code("WM415", "error", "abi3 wheel outside the stable ABI",
             "abi3audit finds symbols of the full C API or a newer stable ABI than the tag: other Pythons crash"),
        Code("WM421", "error", "Mach-O architecture or minimum macOS against the tag",
             "macOS refuses the library on the machines the tag admits"),
        # GPU coverage
        Code("WM501", "error", "declared SASS arch missing",
             "GPUs of that arch fall back to JIT-compiling PTX (slow first call) or cannot run the kernels"),
        Code("WM502", "error", "SASS arch not declared",
             "the matrix is the release's contract: an undeclared arch means the build did not take it"),
        Code("WM503", "error", "declared PTX arch missing",
             "newer GPUs than the SASS archs can run nothing without the declared PTX"),
        Code("WM504", "error", "PTX arch not declared",
             "the matrix is the release's contract: an undeclared arch means the build did not take it"),
        Code("WM505", "error", "backend contradicts the binary",
             "a CUDA library without CUDA code (or a CPU library with some) was not built as declared"),
        Code("WM506", "error", "CUDA version the matrix does not declare",
             "nothing in matrix.toml vouches for its archs or toolchain"),
        Code("WM507", "error", "PTX written by another CUDA release",
             "the driver floor and the PTX users get are those of the nvcc that wrote it, not the declared one"),
        Code("WM508", "error", "manifest disagrees with the binary",
             "the loader picks libraries by their manifests: a wrong one loads a library that cannot run"),
        Code("WM509", "error", "library without a manifest", "the loader cannot select a library it has no manifest for"),
        # hygiene
        Code("WM601", "warning", "absolute build path of this machine",
             "it leaks the build machine's layout and makes the bytes depend on where the build ran"),
        Code("WM602", "error", "credential or token", "anyone who downloads the wheel can use it"),
        Code("WM603", "warning", "compiled Python bytecode",
             "stale .pyc files shadow nothing useful and may not match the interpreter; installers compile"),
        Code("WM604", "warning", "build or test leftovers", "they bloat the wheel and install files no user needs"),
        # installs
        Code("WM701", "error", "does not install from the checked wheels",
             "users' `pip install` fails the same way"),
        Code("WM702", "error", "smoke command failed",
             "it installs, but the project's own smoke command fails: users' imports or first calls fail"),
        Code("WM703", "error", "requirements do not install",
             "the project's requirements cannot be installed on a Python the matrix declares"),
        # release
        Code("WM801", "error", "file listed in the build record is missing",
             "the release would be published without it"),
        Code("WM802", "error", "bytes differ from what assemble recorded",
             "the wheel changed after assemble: what is checked is not what was built"),
        Code("WM803", "error", "wheel the plan expects is missing from dist/",
             "`wheelmatrix plan --wheels` lists it: users of that Python or platform would get no wheel"),
        Code("WM804", "error", "wheel in dist/ the plan does not expect",
             "it is not part of the release `wheelmatrix plan --wheels` describes and would be published by mistake"),
        Code("WM805", "error", "plugin does not require its core at the exact version",
             'split = "core-plugin": without Requires-Dist <core>==<version> pip installs the plugin without its '
             "core, or with another release's, and the module fails to load its kernels library"),
    )
}  # fmt: skip


@dataclass(frozen=True)
class Finding:
    code: str
    severity: Severity
    file: str | None  # the wheel's file name; None for the release as a whole
    what: str
    why: str
    fix: str

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "severity": self.severity,
            "file": self.file,
            "what": self.what,
            "why": self.why,
            "fix": self.fix,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Finding:
        severity: Severity = "warning" if doc["severity"] == "warning" else "error"
        return cls(str(doc["code"]), severity, doc["file"], str(doc["what"]), str(doc["why"]), str(doc["fix"]))


def finding(code: str, file: str | None, what: str, fix: str) -> Finding:
    """A finding of ``code``: its severity and why from :data:`CODES`."""
    c = CODES[code]
    return Finding(code, c.severity, file, what, c.why, fix)


# ----------------------------------------------------------------------------------- result types
@dataclass(frozen=True)
class LibraryReport:
    """A project library of a wheel, as its binary shows it."""

    file: str  # libmykernels_cuda130.so
    path: str  # where in the wheel
    backend: str  # cpu or cuda
    cuda: str | None  # the declared CUDA version ("13.0")
    sass: tuple[int, ...]
    ptx: tuple[int, ...]
    size: int  # uncompressed bytes
    compressed: int  # bytes in the zip
    runtime: str | None = None  # CUDA runtime linkage: static or shared
    runtime_cuda: str | None = None  # the CUDA release read from the binary (PTX ISA, cudart soname)
    ptx_isa: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "path": self.path,
            "backend": self.backend,
            "cuda": self.cuda,
            "sass": list(self.sass),
            "ptx": list(self.ptx),
            "size": self.size,
            "compressed": self.compressed,
            "runtime": self.runtime,
            "runtime_cuda": self.runtime_cuda,
            "ptx_isa": self.ptx_isa,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> LibraryReport:
        return cls(
            doc["file"],
            doc["path"],
            doc["backend"],
            doc["cuda"],
            tuple(doc["sass"]),
            tuple(doc["ptx"]),
            int(doc["size"]),
            int(doc["compressed"]),
            doc.get("runtime"),
            doc.get("runtime_cuda"),
            doc.get("ptx_isa"),
        )


@dataclass(frozen=True)
class InstallResult:
    python: str
    status: InstallStatus
    reason: str
    seconds: float = 0.0
    cached: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "python": self.python,
            "status": self.status,
            "reason": self.reason,
            "seconds": round(self.seconds, 3),
            "cached": self.cached,
        }


@dataclass(frozen=True)
class FileReport:
    """One checked file: its bytes (sha256, size), what it is and what its binaries hold."""

    file: str
    path: Path
    sha256: str
    size: int
    platform: str | None
    tag: str | None
    distribution: str | None
    limit: int
    libraries: tuple[LibraryReport, ...] = ()
    installs: tuple[InstallResult, ...] = ()
    notes: tuple[str, ...] = ()
    cached: bool = False  # the static checks came from the cache

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "sha256": self.sha256,
            "size": self.size,
            "platform": self.platform,
            "tag": self.tag,
            "distribution": self.distribution,
            "limit": self.limit,
            "libraries": [lib.to_json() for lib in self.libraries],
            "installs": [i.to_json() for i in self.installs],
            "notes": list(self.notes),
        }


@dataclass(frozen=True)
class CheckResult:
    """What :func:`check_release` found; ``passed`` follows ``strict`` (warnings fail too)."""

    project: str
    version: str
    strict: bool
    files: tuple[FileReport, ...]
    findings: tuple[Finding, ...]
    needs_other_host: tuple[tuple[str, str], ...]
    matrix: Matrix
    static_seconds: float
    install_seconds: float
    report: Path | None = None  # dist/check-report.json
    html: Path | None = None  # dist/report.html

    @property
    def failing(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if f.severity == "error" or self.strict)

    @property
    def passed(self) -> bool:
        return not self.failing

    def to_json(self) -> dict[str, Any]:
        m = self.matrix
        return {
            "schema": REPORT_KIND,
            "version": REPORT_VERSION,
            "wheelmatrix": __version__,
            "project": {"name": self.project, "version": self.version},
            "strict": self.strict,
            "passed": self.passed,
            "files": [f.to_json() for f in self.files],
            "findings": [f.to_json() for f in self.findings],
            "needs_other_host": [{"cell": c, "reason": r} for c, r in self.needs_other_host],
            "matrix": {
                "cuda": {str(c.version): {"sass": list(c.sass), "ptx": list(c.ptx)} for c in m.cuda},
                "platforms": [p.name for p in m.platforms],
                "python": list(m.check.python or m.python),
                "max_file_size": m.packaging.max_file_size,
                "project_quota": m.packaging.project_quota,
            },
            "timings": {
                "static_seconds": round(self.static_seconds, 3),
                "install_seconds": round(self.install_seconds, 3),
            },
        }


# ---------------------------------------------------------------------------------- names & tags
# PyPI's allow-list of platform tags (warehouse/forklift/legacy.py, _valid_platform_tag)
_ALLOWED_PLATFORMS = frozenset(
    {
        "any", "win32", "win_arm64", "win_amd64", "win_ia64",
        "manylinux1_x86_64", "manylinux1_i686", "manylinux2010_x86_64", "manylinux2010_i686",
        "manylinux2014_x86_64", "manylinux2014_i686", "manylinux2014_aarch64", "manylinux2014_armv7l",
        "manylinux2014_ppc64", "manylinux2014_ppc64le", "manylinux2014_s390x",
        "linux_armv6l", "linux_armv7l",
    }
)  # fmt: skip
_MACOSX = re.compile(r"^macosx_(\d+)_(\d+)_(.+)$")
_MACOSX_ARCHES = frozenset(
    {"ppc", "ppc64", "i386", "x86_64", "arm64", "intel", "fat", "fat3", "fat64", "universal", "universal2"}
)
_MACOSX_MAJORS = frozenset({"11", "12", "13", "14", "15", "26"})  # with minor 0; 10 takes any minor
_LINUX = re.compile(r"^(many|musl)linux_(\d+)_(\d+)_(.+)$")
_LINUX_ARCHES = frozenset({"x86_64", "i686", "aarch64", "armv7l", "ppc64le", "s390x", "riscv64"})
_IOS = re.compile(r"^ios_(\d+)_(\d+)_(.+)_(iphoneos|iphonesimulator)$")
_ANDROID = re.compile(r"^android_(\d+)_(.+)$")
_LEGACY_GLIBC = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


def pypi_accepts_platform(tag: str) -> bool:
    """Whether PyPI's upload accepts a wheel with this platform tag."""
    if tag in _ALLOWED_PLATFORMS:
        return True
    if m := _MACOSX.match(tag):
        major, minor, arch = m.groups()
        return arch in _MACOSX_ARCHES and (major == "10" or (major in _MACOSX_MAJORS and minor == "0"))
    if m := _LINUX.match(tag):
        arch = m.group(4)
        return arch in _LINUX_ARCHES or (m.group(1) == "many" and arch == "ppc64")
    if m := _IOS.match(tag):
        return m.group(3) in {"arm64", "x86_64"}
    if m := _ANDROID.match(tag):
        return m.group(2) in {"armeabi_v7a", "arm64_v8a", "x86", "x86_64"}
    return False


def tag_glibc(platform_tag: str) -> tuple[int, int] | None:
    """The glibc a manylinux platform tag promises to run on: (2, 17) for manylinux2014_x86_64."""
    for prefix, glibc in _LEGACY_GLIBC.items():
        if platform_tag.startswith(prefix + "_"):
            return glibc
    m = _LINUX.match(platform_tag)
    return (int(m.group(2)), int(m.group(3))) if m and m.group(1) == "many" else None


def platform_of_tag(matrix: Matrix, tag: str) -> PlatformSpec | None:
    """The matrix platform whose wheels carry this platform tag (``manylinux_2_28_x86_64``)."""
    for spec in matrix.platforms:
        arch = spec.wheel_arch
        if spec.os == "linux" and re.fullmatch(rf"(?:(?:many|musl)linux\w*|linux)_{arch}", tag):
            return spec
        if spec.os == "windows" and tag == f"win_{arch}":
            return spec
        if spec.os == "macos" and tag.startswith("macosx_") and tag.endswith("_" + arch):
            return spec
    return None


# ------------------------------------------------------------------------------------ ZIP framing
_SIG_LOCAL, _SIG_CENTRAL = b"PK\x03\x04", b"PK\x01\x02"
_SIG_EOCD, _SIG_EOCD64, _SIG_EOCD64_LOCATOR = b"PK\x05\x06", b"PK\x06\x06", b"PK\x06\x07"
_UNPRINTABLE = frozenset(range(0x20)) | {0x7F}


class _Framing(Exception):
    pass


def _read_exact(fh: io.BufferedReader, n: int) -> bytes:
    chunk = fh.read(n)
    if len(chunk) != n:
        raise _Framing(f"a record is cut short at offset {fh.tell()}")
    return chunk


def zip_framing_problem(path: Path, central: Mapping[str, tuple[int, int]]) -> str | None:
    """The first reason PyPI's ZIP validation would refuse ``path``, or None.

    Walks the records front to back as a streaming reader would and requires them to agree with
    the central directory ``central`` (name -> compressed size, size) that :mod:`zipfile` read:
    local headers with the sizes the central directory gives, no data descriptors, no duplicate
    names, no comments in the central directory, no unprintable characters in names, no unknown
    records, nothing after the end record (the rules of warehouse's ``validate_zipfile``).
    """
    local: set[bytes] = set()
    listed: set[bytes] = set()
    cd_records, cd_offset, cd_size = 0, -1, 0
    eocd64 = False
    try:
        with path.open("rb") as fh:
            while True:
                signature = _read_exact(fh, 4)
                if signature == _SIG_LOCAL:
                    flags, method, csize, usize, nlen, xlen = struct.unpack("<xxHHxxxxxxxxIIHH", _read_exact(fh, 26))
                    name = _read_exact(fh, nlen)
                    extra = _read_exact(fh, xlen)
                    del method
                    if _UNPRINTABLE & set(name):
                        raise _Framing(f"the name {name!r} holds unprintable characters")
                    if flags & 0x08:
                        raise _Framing(f"{name.decode('utf-8', 'replace')} uses a data descriptor")
                    csize, usize = _zip64_sizes(extra, csize, usize)
                    if name in local:
                        raise _Framing(f"{name.decode('utf-8', 'replace')} appears twice among the local headers")
                    local.add(name)
                    text = name.decode("utf-8", "replace")
                    if text not in central:
                        raise _Framing(f"{text} has a local header but no central directory entry")
                    if central[text] != (csize, usize):
                        raise _Framing(f"{text}: the local header's sizes differ from the central directory's")
                    fh.seek(csize, os.SEEK_CUR)
                elif signature == _SIG_CENTRAL:
                    if cd_offset < 0:
                        cd_offset = fh.tell() - 4
                    cd_records += 1
                    nlen, xlen, clen = struct.unpack("<xxxxxxxxxxxxxxxxxxxxxxxxHHHxxxxxxxxxxxx", _read_exact(fh, 42))
                    name = _read_exact(fh, nlen)
                    extra = _read_exact(fh, xlen)
                    cd_size += 46 + nlen + xlen
                    if clen:
                        raise _Framing(f"{name.decode('utf-8', 'replace')} carries a comment in the central directory")
                    if _UNPRINTABLE & set(name):
                        raise _Framing(f"the name {name!r} holds unprintable characters")
                    if name in listed:
                        raise _Framing(f"{name.decode('utf-8', 'replace')} appears twice in the central directory")
                    if name not in local:
                        raise _Framing(f"{name.decode('utf-8', 'replace')} has no local header")
                    listed.add(name)
                elif signature == _SIG_EOCD64:
                    size = struct.unpack("<Q", _read_exact(fh, 8))[0]
                    if size != 44:
                        raise _Framing("the ZIP64 end record carries extensible data")
                    fh.seek(size, os.SEEK_CUR)
                    eocd64 = True
                elif signature == _SIG_EOCD64_LOCATOR:
                    _read_exact(fh, 16)
                elif signature == _SIG_EOCD:
                    on_disk, total, size, offset, comment = struct.unpack("<xxxxHHIIH", _read_exact(fh, 18))
                    fh.seek(comment, os.SEEK_CUR)
                    if on_disk != total:
                        raise _Framing("the end record spans several disks")
                    if cd_offset < 0:
                        cd_offset = fh.tell() - 22 - comment
                    if not eocd64 and (total != cd_records or offset != cd_offset or size != cd_size):
                        raise _Framing("the end record disagrees with the central directory it ends")
                    break
                else:
                    raise _Framing(f"an unknown record {signature!r} at offset {fh.tell() - 4}")
            end = fh.tell()
            fh.seek(0, os.SEEK_END)
            if fh.tell() != end:
                return f"{fh.tell() - end} bytes of trailing data after the end record"
    except _Framing as exc:
        return str(exc)
    except (OSError, struct.error) as exc:
        return f"cannot be walked: {exc}"
    if local != listed:
        return "local headers and central directory list different files"
    return None


def _zip64_sizes(extra: bytes, csize: int, usize: int) -> tuple[int, int]:
    while len(extra) >= 4:
        ident, size = struct.unpack("<HH", extra[:4])
        body = extra[4 : 4 + size]
        if ident == 0x0001:
            values = [struct.unpack_from("<Q", body, i)[0] for i in range(0, len(body) - 7, 8)]
            if usize == 0xFFFFFFFF and values:
                usize = values.pop(0)
            if csize == 0xFFFFFFFF and values:
                csize = values.pop(0)
        extra = extra[4 + size :]
    return csize, usize


# ------------------------------------------------------------------------------------------ RECORD
_RECORD_ALGORITHMS = frozenset({"sha256", "sha384", "sha512", "sha3_256", "sha3_384", "sha3_512", "blake2b"})
_SIGNATURES = ("/RECORD.jws", "/RECORD.p7s")


def _urlsafe(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


# ------------------------------------------------------------------------------------------ hygiene
_LEFTOVER_NAMES = frozenset(
    {"CMakeCache.txt", "cmake_install.cmake", "build.ninja", ".ninja_log", ".ninja_deps", "compile_commands.json",
     "CTestTestfile.cmake", ".DS_Store"}
)  # fmt: skip
_LEFTOVER_SUFFIXES = (".o", ".obj", ".ilk", ".orig", ".rej", ".swp")
_LEFTOVER_DIRS = frozenset({"CMakeFiles", ".git", ".pytest_cache", ".mypy_cache", ".ruff_cache", ".tox", ".nox"})
_TEST_DIRS = frozenset({"tests", "test", "testing"})
# temporary build folders of pip and pypa/build: present on every machine, never in a wheel
_BUILD_TEMP = (b"/tmp/pip-build-env-", b"/tmp/build-env-", b"/tmp/pip-req-build-", b"/tmp/pip-install-")
# (what, pattern): each pattern starts with a literal or a narrow prefix, so a search over 100 MiB
# costs one fast scan; tokens are never printed whole
_SECRETS: tuple[tuple[str, re.Pattern[bytes]], ...] = (
    ("a PyPI API token", re.compile(rb"pypi-AgE[A-Za-z0-9_-]{50,}")),
    ("a GitHub token", re.compile(rb"gh[pousr]_[A-Za-z0-9]{36,251}")),
    ("a GitHub fine-grained token", re.compile(rb"github_pat_[A-Za-z0-9_]{22,255}")),
    ("an AWS access key id", re.compile(rb"A[KS]IA[0-9A-Z]{16}(?![0-9A-Z])")),
    ("a private key", re.compile(rb"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----")),
)


def _printable_around(blob: bytes | memoryview, at: int, limit: int = 160) -> str:
    """The printable string that holds position ``at`` (a path inside a binary)."""
    start = at
    while start > 0 and at - start < limit and 0x20 <= blob[start - 1] < 0x7F:
        start -= 1
    end = at
    while end < len(blob) and end - at < limit and 0x20 <= blob[end] < 0x7F:
        end += 1
    return bytes(blob[start:end]).decode("ascii", "replace")


def build_path_pattern(needles: Sequence[bytes]) -> re.Pattern[bytes]:
    """One pattern over ``needles`` (absolute paths all starting with "/": one fast scan)."""
    return re.compile(b"|".join(re.escape(n) for n in sorted(needles, key=len, reverse=True)))


def find_build_paths(blob: bytes, pattern: re.Pattern[bytes], limit: int = 3) -> list[str]:
    """The strings in ``blob`` that hold a match of ``pattern`` (absolute paths of this machine)."""
    found: list[str] = []
    for m in pattern.finditer(blob):
        text = _printable_around(blob, m.start())
        if text not in found:
            found.append(text)
        if len(found) >= limit:
            break
    return found


def find_secrets(blob: bytes) -> list[str]:
    """What kinds of credential ``blob`` holds, each with a redacted sample."""
    found: list[str] = []
    for what, pattern in _SECRETS:
        m = pattern.search(blob)
        if m is not None:
            token = m.group(0).decode("ascii", "replace")
            found.append(f"{what} ({token[:10]}…, {len(token)} characters)")
    return found


# ----------------------------------------------------------------------------------- GPU coverage
# The PTX ISA version each CUDA release's nvcc writes (CUDA release notes, "PTX ISA version"): the
# fat binary records it in the clear for every PTX entry, so the release that wrote a library's
# PTX is read from the binary even when the payload is compressed.
PTX_ISA: dict[str, str] = {
    "11.0": "7.0", "11.1": "7.1", "11.2": "7.2", "11.3": "7.3", "11.4": "7.4", "11.5": "7.5", "11.6": "7.6",
    "11.7": "7.7", "11.8": "7.8", "12.0": "8.0", "12.1": "8.1", "12.2": "8.2", "12.3": "8.3", "12.4": "8.4",
    "12.5": "8.5", "12.6": "8.5", "12.8": "8.7", "12.9": "8.8", "13.0": "9.0", "13.1": "9.1", "13.2": "9.2",
}  # fmt: skip
_FATBIN_MAGIC = struct.pack("<I", 0xBA55ED50)
_FATBIN_HEADER = struct.Struct("<IHHQ")
_FATBIN_ENTRY = struct.Struct("<HHIQIIHHI")  # kind, version, header size, payload, ..., minor, major, arch


def ptx_isa_versions(blob: bytes) -> list[tuple[int, int]]:
    """The PTX ISA versions (major, minor) of every PTX entry of the fat binaries in ``blob``."""
    found: set[tuple[int, int]] = set()
    at = blob.find(_FATBIN_MAGIC)
    while at >= 0:
        nxt = at + 1
        if at + _FATBIN_HEADER.size <= len(blob):
            _, _, header, size = _FATBIN_HEADER.unpack_from(blob, at)
            pos, end = at + header, at + header + size
            if header >= _FATBIN_HEADER.size and end <= len(blob):
                entries: list[tuple[int, int]] = []
                while pos + _FATBIN_ENTRY.size <= end:
                    kind, _, entry_header, payload, _, _, minor, major, _ = _FATBIN_ENTRY.unpack_from(blob, pos)
                    if entry_header < _FATBIN_ENTRY.size or pos + entry_header + payload > end:
                        entries = []
                        break
                    if kind == 1:
                        entries.append((major, minor))
                    pos += entry_header + payload
                if pos == end:
                    found.update(entries)
                    nxt = end
        at = blob.find(_FATBIN_MAGIC, nxt)
    return sorted(found)


def cuda_of_isa(isa: tuple[int, int]) -> str:
    """The CUDA release(s) whose nvcc writes PTX ISA ``isa`` ("12.5 or 12.6" where two do)."""
    text = f"{isa[0]}.{isa[1]}"
    releases = [cuda for cuda, i in PTX_ISA.items() if i == text]
    return " or ".join(releases) if releases else f"unknown (PTX ISA {text})"


def _library_regex(matrix: Matrix, spec: PlatformSpec) -> re.Pattern[str]:
    """File names of the project's libraries on ``spec``'s platform: ``libmykernels_(cpu|cuda130).so``."""
    stem = matrix.project.library.format(variant="\0V\0", cuda_tag="\0T\0", cuda_major="\0M\0")
    name = spec.library_pattern.format(name=stem)
    text = re.escape(name)
    if matrix.project.python.api != "none":  # extension modules: _mykernels_cpu.cpython-311-x86_64-linux-gnu.so
        text = re.escape(stem) + r"(?:\.[\w-]+)?\.(?:so|pyd)"
    text = text.replace("\0V\0", r"(?P<variant>cpu|cuda\d+)")
    text = text.replace("\0T\0", r"(?P<tag>\d*)", 1).replace("\0T\0", r"\d*")
    text = text.replace("\0M\0", r"\d*")
    return re.compile(text)


def _variant_cuda(variant: str) -> str | None:
    digits = variant[4:] if variant.startswith("cuda") else ""
    return f"{digits[:-1]}.{digits[-1]}" if digits.isdigit() and len(digits) >= 2 else None


# -------------------------------------------------------------------------------- Windows imports
# Windows resolves these itself (delvewheel's list of DLLs present on every Windows it supports,
# its API-set and interpreter patterns); CPython 3.9+ ships vcruntime140(_1).dll, and the UCRT is
# part of Windows 10 and later.
_WINDOWS_SYSTEM_EXTRA = frozenset(
    {"ucrtbase.dll", "msvcrt.dll", "vcruntime140.dll", "vcruntime140_1.dll", "kernel32.dll", "ntdll.dll",
     "user32.dll", "advapi32.dll", "ws2_32.dll", "shell32.dll", "ole32.dll", "oleaut32.dll", "bcrypt.dll",
     "crypt32.dll", "version.dll", "shlwapi.dll", "gdi32.dll", "psapi.dll", "dbghelp.dll", "setupapi.dll",
     "winmm.dll", "secur32.dll", "rpcrt4.dll", "iphlpapi.dll", "comdlg32.dll", "cfgmgr32.dll"}
)  # fmt: skip
_WINDOWS_SYSTEM_PATTERNS = (r"api-ms-win-.*", r"ext-ms-.*", r"python[0-9]+t?(_d)?\.dll", r"combase\.dll")


def _windows_system_dlls() -> tuple[frozenset[str], tuple[re.Pattern[str], ...]]:
    names = set(_WINDOWS_SYSTEM_EXTRA)
    patterns = [re.compile(p) for p in _WINDOWS_SYSTEM_PATTERNS]
    try:  # delvewheel's own analysis data (the build extra brings delvewheel); a private module
        from delvewheel import _dll_list  # type: ignore[import-untyped,import-not-found,unused-ignore]  # noqa: PLC0415
    except ImportError:
        return frozenset(names), tuple(patterns)
    names.update(str(n).lower() for n in getattr(_dll_list, "ignore_names_x64", ()))
    patterns.extend(p for p in getattr(_dll_list, "ignore_regexes", ()) if isinstance(p, re.Pattern))
    return frozenset(names), tuple(patterns)


def unresolved_imports(needed: Iterable[str], in_wheel: Iterable[str], allowed: Sequence[str]) -> list[str]:
    """The DLLs of ``needed`` that neither the wheel, nor Windows, nor ``allowed`` (globs) provides."""
    names, patterns = _windows_system_dlls()
    present = {n.rsplit("/", 1)[-1].lower() for n in in_wheel}
    missing = []
    for dll in needed:
        low = dll.lower()
        if low in present or low in names or any(p.fullmatch(low) for p in patterns):
            continue
        if any(fnmatch.fnmatchcase(low, g.lower()) for g in allowed):
            continue
        missing.append(dll)
    return missing


# -------------------------------------------------------------------------------- check context
@dataclass(frozen=True)
class _Target:
    """A file to check, with what the build record says about it (None: not in the record)."""

    path: Path
    entry: Mapping[str, Any] | None


@dataclass(frozen=True)
class _Context:
    matrix: Matrix
    build_paths: tuple[bytes, ...]  # absolute paths of this machine that must not reach a wheel
    pythons: tuple[str, ...]
    build_path_re: re.Pattern[bytes] = field(default=re.compile(b"(?!)"), compare=False)


def _context(matrix: Matrix, work: Path | None) -> _Context:
    paths: list[bytes] = []
    for p in (matrix.project.source, work, cache_root()):
        if p is None:
            continue
        for variant in {str(Path(p).absolute()), str(Path(p).resolve())}:
            if len(variant) >= 5 and variant != "/":
                paths.append(variant.encode())
    paths = sorted(set(paths), key=len)
    # a path inside another one is found through the shorter
    kept = [p for p in paths if not any(p != q and p.startswith(q + b"/") for q in paths)]
    needles = (*kept, *_BUILD_TEMP)
    return _Context(matrix, needles, tuple(matrix.check.python or matrix.python), build_path_pattern(needles))


def _tool_versions() -> dict[str, str | None]:
    return {
        name: tool_version(name) for name in ("twine", "check-wheel-contents", "auditwheel", "packaging", "delvewheel")
    }


def _static_key(ctx: _Context, target: _Target, sha256: str) -> str:
    m = ctx.matrix
    doc = {
        "sha256": sha256,
        "file": target.path.name,
        "entry": {k: target.entry.get(k) for k in ("platform", "excluded", "distribution")} if target.entry else None,
        "toolkit": toolkit_digest(),
        "matrix": hashlib.sha256(m.path.read_bytes()).hexdigest() if m.path.is_file() else repr(m),
        "build_paths": [p.decode() for p in ctx.build_paths],
        "pythons": list(ctx.pythons),
        "tools": _tool_versions(),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


# ------------------------------------------------------------------------------ one wheel, statically
@dataclass
class _Static:
    """The static checks of one wheel (cacheable by its sha256 and the context)."""

    file: str
    sha256: str
    size: int
    platform: str | None
    tag: str | None
    distribution: str | None
    findings: list[Finding] = field(default_factory=list)
    libraries: list[LibraryReport] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    readable: bool = False  # a ZIP the external tools can be run on
    requires_python: str | None = None
    requires: list[str] = field(default_factory=list)
    extras: list[str] = field(default_factory=list)
    name: str | None = None  # METADATA Name
    version: str | None = None

    def add(self, code: str, what: str, fix: str) -> None:
        self.findings.append(finding(code, self.file, what, fix))

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "sha256": self.sha256,
            "size": self.size,
            "platform": self.platform,
            "tag": self.tag,
            "distribution": self.distribution,
            "findings": [f.to_json() for f in self.findings],
            "libraries": [lib.to_json() for lib in self.libraries],
            "notes": self.notes,
            "readable": self.readable,
            "requires_python": self.requires_python,
            "requires": self.requires,
            "extras": self.extras,
            "name": self.name,
            "version": self.version,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> _Static:
        return cls(
            file=doc["file"],
            sha256=doc["sha256"],
            size=int(doc["size"]),
            platform=doc["platform"],
            tag=doc["tag"],
            distribution=doc["distribution"],
            findings=[Finding.from_json(f) for f in doc["findings"]],
            libraries=[LibraryReport.from_json(lib) for lib in doc["libraries"]],
            notes=list(doc["notes"]),
            readable=bool(doc["readable"]),
            requires_python=doc["requires_python"],
            requires=list(doc["requires"]),
            extras=list(doc["extras"]),
            name=doc["name"],
            version=doc["version"],
        )


def _listing(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


def _check_name(st: _Static, ctx: _Context) -> tuple[str, Version, frozenset[Tag]] | None:
    try:
        name, version, _, tags = parse_wheel_filename(st.file)
    except InvalidWheelFilename as exc:
        st.add(
            "WM101",
            f"{st.file} is not a valid wheel file name: {exc}",
            "let `wheelmatrix assemble` name the wheel (name-version-python-abi-platform.whl, PEP 427)",
        )
        return None
    if version.local is not None:
        st.add(
            "WM102",
            f"the version {version} carries the local segment +{version.local}",
            f"drop +{version.local}: tell CUDA builds apart by platform tags, split distributions "
            f"(`{ctx.matrix.project.name}-cu12`) or extras, never by a local version",
        )
    bad = sorted({t.platform for t in tags if not pypi_accepts_platform(t.platform)})
    for plat in bad:
        fix = "repair the wheel to a policy PyPI accepts (manylinux_2_17 ... manylinux_2_39 or musllinux)"
        if plat.startswith("linux_"):
            fix = (
                f"{plat} is what a build writes before repair: run `wheelmatrix assemble` without "
                "--no-repair so auditwheel tags it manylinux_X_Y (and checks that the tag is honest)"
            )
        st.add("WM103", f"platform tag {plat} is not one PyPI accepts", fix)
    return str(name), version, tags


def _check_size(st: _Static, ctx: _Context) -> None:
    limit = ctx.matrix.packaging.max_file_size
    if st.size > limit:
        st.add(
            "WM301",
            f"{st.file} is {st.size / 2**20:.2f} MiB, over the {limit / 2**20:.2f} MiB limit",
            'set [packaging] split = "per-cuda-major" (or "auto") to publish one distribution per CUDA major; '
            "drop SASS archs (keep PTX of the newest) or CUDA versions; or ask the index for a larger limit "
            "and raise [packaging] max-file-size",
        )


def _check_archive(st: _Static, path: Path) -> zipfile.ZipFile | None:
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        how = "it is empty" if st.size == 0 else f"{exc}"
        if st.size and not zipfile.is_zipfile(path):
            with path.open("rb") as fh:
                head = fh.read(4)
            how = (
                f"{exc} (it starts with {head!r}: no ZIP at all)"
                if head != _SIG_LOCAL
                else f"{exc} (it starts like a ZIP: cut short or damaged)"
            )
        st.add("WM001", f"{st.file} cannot be opened as a ZIP archive: {how}", _REBUILD)
        return None
    central = {i.orig_filename: (i.compress_size, i.file_size) for i in zf.infolist()}
    problem = zip_framing_problem(path, central)
    if problem:
        st.add(
            "WM002",
            f"PyPI's ZIP validation refuses it: {problem}",
            "write wheels with wheelmatrix (wheelfile.write_wheel) or another writer that streams no data descriptors, "
            "comments or appended data",
        )
    methods = sorted({i.compress_type for i in zf.infolist()} - {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
    if methods:
        st.add(
            "WM003",
            f"entries use ZIP compression methods {methods} (only stored, 0, and deflate, 8, are accepted)",
            "write the wheel with deflate (wheelmatrix's writer always does)",
        )
    unpacked = sum(i.file_size for i in zf.infolist())
    if unpacked > 64 * 2**20 and st.size and unpacked / st.size > 50:
        st.add(
            "WM004",
            f"it unpacks to {unpacked / 2**20:.1f} MiB, {unpacked / st.size:.0f} times its size",
            "ship less redundant data (PyPI rejects ratios over 50 for archives unpacking to over 64 MiB)",
        )
    unsafe = [
        i.filename
        for i in zf.infolist()
        if i.filename.startswith(("/", "\\"))
        or ".." in re.split(r"[/\\]", i.filename)
        or re.match(r"^[A-Za-z]:", i.filename)
    ]
    if unsafe:
        st.add("WM005", f"entries with unsafe paths: {_listing(unsafe)}", _REBUILD)
    return zf


def _read_record(st: _Static, text: str, record_name: str) -> dict[str, tuple[str, str]] | None:
    rows: dict[str, tuple[str, str]] = {}
    try:
        for row in csv.reader(io.StringIO(text)):
            if not row:
                continue
            if len(row) != 3:
                st.add("WM016", f"{record_name}: the row {row!r} has {len(row)} fields, not 3", _REBUILD)
                return None
            if row[0] in rows:
                st.add("WM016", f"{record_name} lists {row[0]} twice", _REBUILD)
                return None
            rows[row[0]] = (row[1], row[2])
    except csv.Error as exc:
        st.add("WM016", f"{record_name} is not valid CSV: {exc}", _REBUILD)
        return None
    return rows


def _entries(st: _Static, zf: zipfile.ZipFile) -> Iterator[tuple[zipfile.ZipInfo, bytes]]:
    for info in zf.infolist():
        if info.is_dir():
            continue
        try:
            blob = zf.read(info)
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
            st.add("WM006", f"{info.filename} cannot be read back: {exc}", _REBUILD)
            continue
        yield info, blob


def _check_metadata(st: _Static, ctx: _Context, raw: bytes, names: tuple[str, Version, frozenset[Tag]] | None) -> None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        st.add("WM205", f"METADATA is not UTF-8: {exc}", _REBUILD)
        return
    headers = HeaderParser().parsestr(text)
    mv = str(headers.get("Metadata-Version", "")).strip()
    accepted = {"1.0", "1.1", "1.2", "2.1", "2.2", "2.3", "2.4", "2.5"}
    if mv not in accepted:
        st.add(
            "WM202",
            f"Metadata-Version is {mv or 'missing'}",
            "build with a current build backend (it writes 2.1 or newer); PyPI accepts 1.0-1.2 and 2.1-2.5",
        )
    try:
        meta = pkg_metadata.Metadata.from_email(text, validate=True)
    except pkg_metadata.ExceptionGroup as group:
        for problem in group.exceptions:
            field_name = getattr(problem, "field", None)
            if field_name == "metadata-version" and mv not in accepted:
                continue  # said above
            st.add(
                "WM201",
                f"METADATA {field_name}: {problem}" if field_name else f"METADATA: {problem}",
                "correct it in the project's pyproject.toml [project] table (PEP 621) and rebuild",
            )
        st.name = str(headers.get("Name", "")) or None
        st.version = str(headers.get("Version", "")) or None
    else:
        st.name, st.version = str(meta.name), str(meta.version)
        st.requires_python = str(meta.requires_python) if meta.requires_python is not None else None
        st.requires = [str(r) for r in meta.requires_dist or []]
        st.extras = [str(e) for e in meta.provides_extra or []]
    if names is None:
        return
    name, version, _ = names
    if st.name is not None and canonicalize_name(st.name) != name:
        st.add(
            "WM104",
            f"the file name says {name!r}, METADATA Name says {st.name!r}",
            "rename nothing by hand: rebuild so the file name and METADATA come from one project name",
        )
    if st.version is not None:
        try:
            same = Version(st.version) == version
        except InvalidVersion:
            same = False
        if not same:
            st.add(
                "WM105",
                f"the file name says version {version}, METADATA Version says {st.version}",
                "rebuild so the file name and METADATA come from one version",
            )
    if st.requires_python:
        try:
            spec = SpecifierSet(st.requires_python)
        except InvalidSpecifier:
            return
        excluded = [p for p in ctx.pythons if not spec.contains(p + ".0", prereleases=True)]
        if excluded:
            st.add(
                "WM206",
                f"Requires-Python {st.requires_python} excludes Python {', '.join(excluded)}, which the matrix declares",
                "widen requires-python in pyproject.toml, or drop those Pythons from [matrix] python / [check] python",
            )


def _check_wheel_file(st: _Static, raw: bytes, tags: frozenset[Tag] | None) -> None:
    headers = HeaderParser().parsestr(raw.decode("utf-8", "replace"))
    declared: set[Tag] = set()
    for value in headers.get_all("Tag", []):
        parts = str(value).strip().split("-")
        if len(parts) == 3:
            declared.add(Tag(*parts))
    if tags is not None and declared != set(tags):
        st.add(
            "WM106",
            f"WHEEL declares {sorted(map(str, declared)) or 'no tags'}, the file name {sorted(map(str, tags))}",
            "let the repair tool rename the wheel (it rewrites WHEEL too); never rename a wheel by hand",
        )


def _check_hygiene(st: _Static, ctx: _Context, entries: Sequence[tuple[str, bytes]]) -> None:
    pyc = [n for n, _ in entries if n.endswith((".pyc", ".pyo")) or "/__pycache__/" in f"/{n}"]
    if pyc:
        st.add(
            "WM603",
            f"compiled bytecode: {_listing(pyc)}",
            "keep __pycache__ and *.pyc out of the package data (pip compiles on install)",
        )
    leftovers = []
    for n, _ in entries:
        parts = n.split("/")
        if parts[0].endswith((".dist-info", ".data")):
            continue
        leftover_file = parts[-1] in _LEFTOVER_NAMES or parts[-1].endswith(_LEFTOVER_SUFFIXES)
        folders = parts[:-1]
        if leftover_file or any(p in _LEFTOVER_DIRS or p in _TEST_DIRS or p.endswith(".egg-info") for p in folders):
            leftovers.append(n)
    if leftovers:
        st.add(
            "WM604",
            f"build or test leftovers: {_listing(leftovers)}",
            "list only the package in the build backend's wheel contents (scikit-build-core wheel.packages, "
            "wheel.exclude) and install only the libraries from CMake",
        )
    paths: dict[str, list[str]] = {}
    secrets: list[str] = []
    for n, blob in entries:
        for text in find_build_paths(blob, ctx.build_path_re):
            paths.setdefault(n, []).append(text)
        secrets += [f"{n}: {s}" for s in find_secrets(blob)]
    if paths:
        listing = "; ".join(f"{n} holds {_listing(sorted(set(v)), 2)}" for n, v in sorted(paths.items())[:5])
        st.add(
            "WM601",
            f"absolute paths of this build machine: {listing}",
            "strip the libraries (no debug info or object-file stabs: `-s` / `-Wl,-S` at link), and keep "
            "__FILE__ and build folders out of the sources (-ffile-prefix-map=<source>=.)",
        )
    if secrets:
        st.add(
            "WM602",
            f"credentials: {_listing(secrets)}",
            "revoke the credential now (it must be assumed leaked), then remove it from the sources and rebuild",
        )


def _check_binaries(
    st: _Static, ctx: _Context, target: _Target, spec: PlatformSpec | None, entries: Sequence[tuple[str, bytes, int]]
) -> None:
    matrix = ctx.matrix
    names = [n for n, _, _ in entries]
    excluded = [str(x) for x in target.entry.get("excluded", [])] if target.entry else []
    lib_re = _library_regex(matrix, spec) if spec is not None else None
    files = {n: blob for n, blob, _ in entries}
    cores = {canonicalize_name(c) for c in core_distributions(matrix).values()}
    for n, blob, compressed in entries:
        base = n.rsplit("/", 1)[-1]
        head = blob[:4]
        is_binary = (
            head == b"\x7fELF" or head[:2] == b"MZ" or head in binaries._MACHO_THIN or head in binaries._MACHO_FAT
        )
        if not is_binary and not re.search(r"\.(so(\.\d+)*|dll|pyd|dylib)$", base):
            continue
        if spec is not None and any(fnmatch.fnmatchcase(base.lower(), g.lower()) for g in spec.never_vendor):
            st.add(
                "WM412",
                f"{n} is in the wheel, but [platform] never-vendor names it ({', '.join(spec.never_vendor)})",
                "exclude it from the repair (`wheelmatrix assemble` does: it belongs to the driver or a declared "
                "dependency) and rebuild",
            )
        try:
            info = binaries.inspect_binary(blob, name=n)
        except binaries.BinaryError as exc:
            st.add("WM406", exc.message, exc.fix or _REBUILD)
            continue
        if spec is not None:
            want = {"linux": "elf", "windows": "pe", "macos": "macho"}[spec.os]
            arch = {"amd64": "x86_64"}.get(spec.wheel_arch, spec.wheel_arch)
            if info.format != want or (spec.os != "macos" and info.machine != arch):
                st.add(
                    "WM405",
                    f"{n} is a {info.format} binary for {info.machine}; a {st.tag} wheel needs {want} for {arch}",
                    f"build the library of the {spec.name} cell for its platform (its toolchain file) and re-assemble",
                )
            if spec.os == "windows" and info.format == "pe":
                missing = unresolved_imports(info.needed, names, [*spec.never_vendor, *excluded])
                if missing:
                    st.add(
                        "WM411",
                        f"{n} imports {', '.join(missing)}, found neither in the wheel nor on Windows",
                        "let delvewheel vendor it (make it findable with --add-path), link it statically, or "
                        "declare the dependency that installs it and exclude it",
                    )
        if lib_re is not None and spec is not None and (m := lib_re.fullmatch(base)):
            _check_library(st, ctx, name=n, blob=blob, compressed=compressed, info=info, m=m, files=files)
        elif spec is not None and st.name and canonicalize_name(st.name) in cores and _is_core_file(matrix, n):
            _check_core_library(st, ctx, name=n, blob=blob, compressed=compressed, info=info)
    record_broken = any(f.code.startswith("WM01") for f in st.findings)  # said already; the reader refuses it
    if spec is not None and spec.os == "macos" and not record_broken:
        try:
            problems = check_macos_wheel(target.path, spec)
        except WheelmatrixError as exc:
            problems = [exc.message]
        for problem in problems:
            st.add(
                "WM421",
                problem,
                f"build against the policy's minimum macOS ({spec.policy}) with system libraries only, "
                f"or repair with delocate on a {spec.runner} runner",
            )
    extensions = [n for n in names if _is_extension(n.rsplit("/", 1)[-1])]
    if extensions and "-abi3-" in st.file:
        st.notes.append(f"abi3audit: run on its extension modules: {_listing(extensions)}")
    elif extensions:
        st.notes.append(f"abi3audit: not applicable (not an abi3 wheel); extension modules: {_listing(extensions)}")
    else:
        st.notes.append(
            "abi3audit: not run, the wheel holds no Python extension modules (its libraries are loaded with ctypes)"
        )


def _is_extension(base: str) -> bool:
    return bool(re.search(r"\.(cpython|abi3|pypy)[^/]*\.so$|\.abi3\.so$|\.pyd$", base)) or base.endswith(".pyd")


def _check_library(
    st: _Static,
    ctx: _Context,
    *,
    name: str,
    blob: bytes,
    compressed: int,
    info: binaries.BinaryInfo,
    m: re.Match[str],
    files: Mapping[str, bytes],
) -> None:
    matrix = ctx.matrix
    groups = m.groupdict()
    variant = groups.get("variant") or ("cuda" + groups["tag"] if groups.get("tag") else "cpu")
    folder, base = name.rsplit("/", 1) if "/" in name else ("", name)
    stem = re.sub(r"\.(so|dll|dylib)$", "", base)
    manifest_name = f"{folder}/{stem}.json".lstrip("/")
    manifest: dict[str, Any] = {}
    if manifest_name in files:
        try:
            loaded = json.loads(files[manifest_name])
            manifest = loaded if isinstance(loaded, dict) else {}
        except ValueError:
            manifest = {}
    else:
        st.add(
            "WM509",
            f"{name} has no manifest {manifest_name}",
            "assemble writes the manifest the cell stage made from the binary: rebuild the cell and re-assemble",
        )
    declared_cuda = manifest.get("cuda") if isinstance(manifest.get("cuda"), str) else _variant_cuda(variant)
    backend = str(manifest.get("backend") or ("cpu" if variant == "cpu" else "cuda"))
    runtime: str | None = None
    runtime_cuda: str | None = None
    isas = ptx_isa_versions(blob) if info.has_cuda_code else []
    shared = [n for n in info.needed if n.lower().startswith(("libcudart", "cudart"))]
    if backend == "cuda":
        runtime = "shared" if shared else "static"
        if isas:
            runtime_cuda = " / ".join(cuda_of_isa(i) for i in isas)
        elif shared:
            major = re.search(r"(?:\.so\.|64_)(\d+)", shared[0])
            runtime_cuda = major.group(1) if major else None
    st.libraries.append(
        LibraryReport(
            file=base,
            path=name,
            backend=backend,
            cuda=declared_cuda,
            sass=info.sass,
            ptx=info.ptx,
            size=len(blob),
            compressed=compressed,
            runtime=runtime,
            runtime_cuda=runtime_cuda,
            ptx_isa=", ".join(f"{a}.{b}" for a, b in isas) or None,
        )
    )
    in_core = [
        n for n in info.needed if any(fnmatch.fnmatchcase(n, g) for g in _core_globs(matrix)) and n not in _bases(files)
    ]
    if in_core and not info.has_cuda_code:
        st.notes.append(f"{name}: its kernels are in {', '.join(in_core)} of its core wheel (checked there)")
        return
    if manifest:
        wrong = []
        for key, held in (("sass", list(info.sass)), ("ptx", list(info.ptx))):
            if key in manifest and sorted(int(x) for x in manifest[key] or []) != held:
                wrong.append(f"{key}: the manifest says {manifest[key]}, the binary holds {held}")
        if wrong:
            st.add(
                "WM508",
                f"{manifest_name} disagrees with {base}: " + "; ".join(wrong),
                "never replace a library after its cell was built: rebuild the cell (it writes the manifest from "
                "the binary) and re-assemble",
            )
    if backend == "cpu":
        if info.has_cuda_code:
            st.add(
                "WM505",
                f"{name} is the CPU library but holds CUDA code (SASS {list(info.sass)}, PTX {list(info.ptx)})",
                "select the CPU backend for the cpu cell ([build] backend in matrix.toml) and rebuild",
            )
        return
    if not info.has_cuda_code:
        st.add(
            "WM505",
            f"{name} is declared a CUDA {declared_cuda} library but holds no CUDA code",
            "declare the project's backend variable in [build] backend of matrix.toml and rebuild the cell",
        )
        return
    try:
        spec = matrix.cuda_spec(declared_cuda or "")
    except (KeyError, ValueError):
        st.add(
            "WM506",
            f"{name} is built for CUDA {declared_cuda}, which matrix.toml does not declare "
            f"(it declares {', '.join(str(c.version) for c in matrix.cuda) or 'none'})",
            "add the version to [matrix] cuda (with its archs) or leave its library out of the release",
        )
        return
    _check_archs(st, matrix, name, info, spec)
    expected = PTX_ISA.get(str(spec.version))
    found = [f"{a}.{b}" for a, b in isas]
    if expected and found and any(isa != expected for isa in found):
        st.add(
            "WM507",
            f"{name} is declared CUDA {spec.version}, but its PTX is ISA {', '.join(found)}, written by CUDA "
            f"{runtime_cuda} (CUDA {spec.version} writes ISA {expected})",
            f"build it with the CUDA {spec.version} toolchain the matrix declares (`wheelmatrix toolchain verify`)",
        )


def _check_archs(st: _Static, matrix: Matrix, name: str, info: binaries.BinaryInfo, spec: CudaSpec) -> None:
    """The SASS and PTX archs a CUDA library holds against its CUDA version's (WM501-WM504)."""
    for code_missing, code_extra, kind, got, want in (
        ("WM501", "WM502", "SASS", info.sass, spec.sass),
        ("WM503", "WM504", "PTX", info.ptx, spec.ptx),
    ):
        missing = sorted(set(want) - set(got))
        extra = sorted(set(got) - set(want))
        if missing:
            st.add(
                code_missing,
                f"{name} (CUDA {spec.version}) lacks {kind} {', '.join(f'sm_{a}' for a in missing)}: it holds "
                f"{kind} {list(got)}, matrix.toml declares {list(want)}",
                f"let the project take its archs from {matrix.build.archs_variable} (the toolkit sets it from "
                '[cuda."' + str(spec.version) + '"]) and rebuild the cell',
            )
        if extra:
            st.add(
                code_extra,
                f"{name} (CUDA {spec.version}) holds {kind} {', '.join(f'sm_{a}' for a in extra)} that "
                f"matrix.toml does not declare (it declares {list(want)})",
                f'declare them in [cuda."{spec.version}"] {kind.lower()}, or stop the project\'s CMake from adding '
                f"archs of its own ({matrix.build.archs_variable} is the toolkit's)",
            )


def _check_core_library(
    st: _Static, ctx: _Context, *, name: str, blob: bytes, compressed: int, info: binaries.BinaryInfo
) -> None:
    """A core's kernels library (split = "core-plugin"): reported, and its CUDA code checked against
    the CUDA version of its distribution (the plugin's module holds none to check)."""
    matrix = ctx.matrix
    cuda: CudaSpec | None = None
    for c in matrix.cuda:
        dist = matrix.packaging.distribution(matrix.project.name, c.version.major)
        if canonicalize_name(matrix.packaging.core(dist)) == canonicalize_name(st.name or ""):
            cuda = c
    base = name.rsplit("/", 1)[-1]
    st.libraries.append(
        LibraryReport(
            file=base, path=name, backend="cpu" if cuda is None else "cuda",
            cuda=None if cuda is None else str(cuda.version), sass=info.sass, ptx=info.ptx, size=len(blob),
            compressed=compressed, runtime=None, runtime_cuda=None, ptx_isa=None,
        )
    )  # fmt: skip
    if cuda is None and info.has_cuda_code:
        st.add(
            "WM505",
            f"{name} is in the CPU distribution's core but holds CUDA code (SASS {list(info.sass)}, PTX "
            f"{list(info.ptx)})",
            "select the CPU backend for the cpu cell ([build] backend in matrix.toml) and rebuild",
        )
    elif cuda is not None and info.has_cuda_code:
        _check_archs(st, matrix, name, info, cuda)


def _bases(files: Mapping[str, bytes]) -> set[str]:
    return {n.rsplit("/", 1)[-1] for n in files}


def platform_spec_of(ctx: _Context, target: _Target) -> PlatformSpec | None:
    """The matrix platform of a wheel: the build record's, else the one its tag names."""
    entry = target.entry
    if entry is not None and entry.get("platform"):
        try:
            return ctx.matrix.platform(str(entry["platform"]))
        except KeyError:
            return None
    try:
        tags = parse_wheel_filename(target.path.name)[3]
    except InvalidWheelFilename:
        return None
    return platform_of_tag(ctx.matrix, sorted(t.platform for t in tags)[0])


def static_checks(ctx: _Context, target: _Target, sha256: str) -> _Static:
    """Every in-process check of one wheel (the external tools run beside it)."""
    path = target.path
    entry = target.entry
    size = path.stat().st_size
    tag_text = None
    with contextlib.suppress(InvalidWheelFilename):
        tag_text = parse_wheel_filename(path.name)[3]
    platform_tag = sorted(t.platform for t in tag_text)[0] if tag_text else None
    joined_tag = ".".join(sorted({t.platform for t in tag_text})) if tag_text else None
    spec = platform_spec_of(ctx, target)
    st = _Static(
        file=path.name,
        sha256=sha256,
        size=size,
        platform=spec.name if spec else None,
        tag=joined_tag,
        distribution=str(entry["distribution"]) if entry and entry.get("distribution") else None,
    )
    names = _check_name(st, ctx)
    if names is not None and spec is None and platform_tag not in (None, "any"):
        st.add(
            "WM109",
            f"no platform of matrix.toml ({', '.join(p.name for p in ctx.matrix.platforms)}) has wheels tagged "
            f"{joined_tag}",
            "declare the platform in [matrix] platforms, or leave the wheel out of the release",
        )
    _check_size(st, ctx)
    zf = _check_archive(st, path)
    if zf is None:
        return st
    with zf:
        st.readable = True
        infos = [i for i in zf.infolist() if not i.is_dir()]
        dist_infos = sorted(
            {i.filename.split("/", 1)[0] for i in infos if i.filename.split("/", 1)[0].endswith(".dist-info")}
        )
        if names is not None:
            expected = f"{names[0].replace('-', '_')}-{names[1]}.dist-info"
            matching = [d for d in dist_infos if d.lower() == expected.lower() or _dist_info_matches(d, names)]
        else:
            matching = dist_infos[:1]
        if len(dist_infos) != 1 or not matching:
            st.add(
                "WM010",
                f"it has {len(dist_infos)} .dist-info folders ({', '.join(dist_infos) or 'none'})"
                + ("" if matching else " and none matches the file name"),
                _REBUILD,
            )
        info_dir = matching[0] if matching else (dist_infos[0] if dist_infos else None)
        compressed = {i.filename: i.compress_size for i in infos}
        contents = list(_entries(st, zf))
        by_name = {i.filename: blob for i, blob in contents}
        record_name = f"{info_dir}/RECORD" if info_dir else None
        if info_dir is not None:
            for needed in ("METADATA", "WHEEL", "RECORD"):
                if f"{info_dir}/{needed}" not in by_name:
                    st.add("WM010", f"{info_dir}/{needed} is missing", _REBUILD)
        if record_name and record_name in by_name:
            _check_record(st, record_name, by_name)
        if info_dir and f"{info_dir}/METADATA" in by_name:
            _check_metadata(st, ctx, by_name[f"{info_dir}/METADATA"], names)
        if info_dir and f"{info_dir}/WHEEL" in by_name:
            _check_wheel_file(st, by_name[f"{info_dir}/WHEEL"], names[2] if names else None)
        _check_hygiene(st, ctx, [(i.filename, blob) for i, blob in contents])
        _check_binaries(
            st, ctx, target, spec, [(i.filename, blob, compressed.get(i.filename, 0)) for i, blob in contents]
        )
        if spec is not None:
            _check_nvidia(st, ctx, spec, [(i.filename, blob) for i, blob in contents])
        if names is not None:
            _check_core_requirement(st, ctx, names)
    return st


def core_distributions(matrix: Matrix) -> dict[str, str]:
    """split = "core-plugin": the canonical name of each plugin distribution -> its core's."""
    if matrix.packaging.split != "core-plugin":
        return {}
    dists = [matrix.project.name] + [
        matrix.packaging.distribution(matrix.project.name, c.version.major) for c in matrix.cuda
    ]
    return {canonicalize_name(d): matrix.packaging.core(d) for d in dists}


def _check_core_requirement(st: _Static, ctx: _Context, names: tuple[str, Version, frozenset[Tag]]) -> None:
    """A plugin's METADATA requires its core at exactly its own version (WM805)."""
    core = core_distributions(ctx.matrix).get(canonicalize_name(names[0]))
    if core is None:
        return
    exact = False
    for text in st.requires:
        with contextlib.suppress(InvalidRequirement):
            req = Requirement(text)
            pins = [sp for sp in req.specifier if sp.operator in ("==", "===")]
            unconditional = req.marker is None or req.marker.evaluate({"extra": ""})
            if canonicalize_name(req.name) == canonicalize_name(core) and unconditional and pins:
                exact = exact or all(sp.version == str(names[1]) for sp in pins)
    if not exact:
        st.add(
            "WM805",
            f"the plugin {names[0]} {names[1]} does not require {core}=={names[1]} (it requires "
            f"{_listing(st.requires) or 'nothing'})",
            "let `wheelmatrix assemble` split the cell wheels (it writes the requirement); never edit a plugin's "
            "METADATA",
        )


def _is_core_file(matrix: Matrix, name: str) -> bool:
    top, _, rest = name.partition("/")
    return top == matrix.project.import_package and any(
        fnmatch.fnmatchcase(rest, g) for g in matrix.packaging.core_files
    )


def _core_globs(matrix: Matrix) -> list[str]:
    """split = "core-plugin": file-name globs of the libraries a plugin takes from its core."""
    if matrix.packaging.split != "core-plugin":
        return []
    return [g.rsplit("/", 1)[-1] for g in matrix.packaging.core_files]


_AUDITWHEEL_HASH = re.compile(r"-[0-9a-f]{8}(?=\.so)")


def _check_nvidia(st: _Static, ctx: _Context, spec: PlatformSpec, entries: Sequence[tuple[str, bytes]]) -> None:
    """NVIDIA's runtime libraries (cuBLAS, ...): never vendored, and declared when linked.

    A library the wheel holds whose name (auditwheel's hash removed) is a component's is vendored
    (WM413); a binary that links a component's library needs the Requires-Dist of NVIDIA's wheel of
    that CUDA major (``nvidia-cublas-cu12``, ``nvidia-cublas``) in the wheel's metadata (WM414).
    """
    if ctx.matrix.packaging.cuda_libraries != "depend":
        return
    known = data.components()
    globs = _component_globs(ctx.matrix, spec) or [
        spec.library_pattern.format(name=so) + "*" for c in known.values() for so in c.libraries
    ]
    declared = set()
    for text in st.requires:
        with contextlib.suppress(InvalidRequirement):
            declared.add(canonicalize_name(Requirement(text).name))
    for name, blob in entries:
        base = name.rsplit("/", 1)[-1]
        if blob[:4] != b"\x7fELF":
            continue
        plain = _AUDITWHEEL_HASH.sub("", base)
        if any(fnmatch.fnmatchcase(plain, g) for g in globs):
            st.add(
                "WM413",
                f"{name} is a copy of {plain.split('.so')[0]}, which NVIDIA's runtime wheel provides",
                "exclude it from the repair (`wheelmatrix assemble` does for the components matrix.toml declares) "
                "and declare NVIDIA's wheel as a requirement",
            )
            continue
        try:
            info = binaries.inspect_binary(blob, name=name)
        except binaries.BinaryError:
            continue  # WM406 says so
        for needed in info.needed:
            m = re.fullmatch(r"lib(\w+?)\.so\.(\d+)(?:\..*)?", needed)
            if m is None:
                continue
            for comp in known.values():
                wheel = comp.runtime_wheel(int(m.group(2))) if m.group(1) in comp.libraries else None
                if wheel is not None and canonicalize_name(wheel) not in declared:
                    st.add(
                        "WM414",
                        f"{name} links {needed}, but the metadata does not require {wheel} (CUDA {m.group(2)}'s "
                        f"{comp.name}); it requires {_listing(sorted(declared)) or 'nothing'}",
                        f'declare {comp.name} in [cuda."X.Y"] components of matrix.toml so that assemble adds '
                        f"Requires-Dist: {wheel}=={m.group(2)}.*",
                    )


def run_abi3audit(paths: Sequence[Path], timeout: float = 600) -> dict[str, list[Finding]]:
    """abi3audit on the abi3 wheels: every extension inside within the stable ABI of its tag (WM415)."""
    wheels = [p for p in paths if "-abi3-" in p.name]
    out: dict[str, list[Finding]] = {}
    if not wheels:
        return out
    exe = tool("abi3audit", "pip install abi3audit (wheelmatrix[build] brings it)")
    done = _proc.run([exe, "--report", *wheels], timeout=timeout, check=False, extra_env=_tool_env())
    text = done.output
    try:
        report = json.JSONDecoder().raw_decode(text[text.find("{") :])[0]  # a summary may follow the JSON
    except ValueError:
        for p in wheels:
            out[p.name] = [finding("WM415", p.name, f"abi3audit gave no report: {_tail(text)}", "run abi3audit on it")]
        return out
    for spec, result in report.get("specs", {}).items():
        name = Path(spec).name
        for ext in result.get("wheel", []) or []:
            r = ext.get("result") or {}
            bad = list(r.get("non_abi3_symbols") or [])
            if not r.get("is_abi3", True) or bad or not r.get("is_abi3_baseline_compatible", True):
                out.setdefault(name, []).append(
                    finding(
                        "WM415",
                        name,
                        f"{ext.get('name')}: baseline {r.get('baseline')}, needs {r.get('computed')}"
                        + (f", symbols outside the stable ABI: {_listing(bad)}" if bad else ""),
                        "build the module against the stable ABI of the tag (nanobind STABLE_ABI, "
                        "Py_LIMITED_API) or raise [project] abi3-floor",
                    )
                )
    return out


def _dist_info_matches(folder: str, names: tuple[str, Version, frozenset[Tag]]) -> bool:
    stem = folder[: -len(".dist-info")]
    name, _, version = stem.partition("-")
    try:
        return canonicalize_name(name) == names[0] and Version(version) == names[1]
    except InvalidVersion:
        return False


def _check_record(st: _Static, record_name: str, by_name: Mapping[str, bytes]) -> None:
    try:
        text = by_name[record_name].decode("utf-8")
    except UnicodeDecodeError as exc:
        st.add("WM016", f"{record_name} is not UTF-8: {exc}", _REBUILD)
        return
    rows = _read_record(st, text, record_name)
    if rows is None:
        return
    wrong_hash, wrong_size, no_hash = [], [], []
    for name, blob in by_name.items():
        if name == record_name or name.endswith(_SIGNATURES) or name not in rows:
            continue
        digest, size = rows[name]
        algorithm, _, value = digest.partition("=")
        if not value or algorithm not in _RECORD_ALGORITHMS:
            no_hash.append(f"{name} ({digest or 'no hash'})")
            continue
        if _urlsafe(hashlib.new(algorithm, blob).digest()) != value:
            wrong_hash.append(name)
        if size and size != str(len(blob)):
            wrong_size.append(f"{name} (RECORD {size}, actual {len(blob)})")
    extra = sorted(n for n in by_name if n not in rows and n != record_name and not n.endswith(_SIGNATURES))
    missing = sorted(n for n in rows if n not in by_name and not n.endswith("/"))
    if wrong_hash:
        st.add("WM011", f"{record_name}: the hash of {_listing(wrong_hash)} differs from the bytes", _REBUILD)
    if wrong_size:
        st.add("WM012", f"{record_name}: wrong sizes for {_listing(wrong_size)}", _REBUILD)
    if extra:
        st.add("WM013", f"{record_name} does not list {_listing(extra)}", _REBUILD)
    if missing:
        st.add("WM014", f"{record_name} lists {_listing(missing)}, which the wheel does not hold", _REBUILD)
    if no_hash:
        st.add("WM015", f"{record_name}: no sha256-or-stronger hash for {_listing(no_hash)}", _REBUILD)


# ---------------------------------------------------------------------------------- external tools
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# check-wheel-contents codes the toolkit does not take as findings, each with why:
_CWC_IGNORED = {
    # auditwheel and delvewheel vendor libraries into a top-level `<package>.libs/` folder: a second
    # top-level entry without modules by design, and the only one a repair adds
    "W009": "a repair tool's <package>.libs folder is the second top-level entry",
    "W010": "a repair tool's <package>.libs folder holds libraries, not modules",
}
# W101, W102 (--package/--src-dir) and W201, W202 (--toplevel) are never selected: they compare the
# wheel with a source layout the toolkit does not know; WM604 and W005 cover stray folders.


def _tool_env() -> dict[str, str]:
    return {"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "10000", "PATH": tool_path()}


def run_twine(paths: Sequence[Path], timeout: float = 600) -> dict[str, list[Finding]]:
    """``twine check --strict`` over ``paths``: its warnings and errors per file name."""
    if not paths:
        return {}
    twine = tool("twine", TWINE_FIX)
    out = _ANSI.sub(
        "", _proc.run([twine, "check", "--strict", *paths], check=False, timeout=timeout, extra_env=_tool_env()).output
    )
    # rich wraps twine's lines at 80 columns, inside file names too: match them across any whitespace
    starts = sorted(
        (m.start(), m.end(), p)
        for p in paths
        for m in re.finditer(r"Checking\s+" + r"\s*".join(map(re.escape, str(p))) + r"\s*:", out)
    )
    found: dict[str, list[Finding]] = {}
    crashed = "Traceback (most recent call last)" in out
    if crashed and len(paths) > 1:  # one unreadable file ends the batch: attribute per file
        for p in paths:
            found.update(run_twine([p], timeout))
        return found
    for i, (_, at, p) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(out)
        section = re.sub(r"\s+", " ", out[at:end])
        items = found.setdefault(p.name, [])
        for kind, message in re.findall(r"(WARNING|ERROR) +(.+?)(?= WARNING | ERROR |$)", section):
            code = "WM204" if kind == "WARNING" else "WM203"
            items.append(finding(code, p.name, f"twine check --strict: {message.strip()}", _twine_fix(message)))
        if crashed:
            last = [line for line in out.strip().splitlines() if line.strip()][-1:]
            items.append(finding("WM203", p.name, f"twine check crashed: {''.join(last)}", _REBUILD))
    for p in paths:
        if p.name not in found and crashed:
            last = [line for line in out.strip().splitlines() if line.strip()][-1:]
            found[p.name] = [finding("WM203", p.name, f"twine check crashed: {''.join(last)}", _REBUILD)]
    return found


def _twine_fix(message: str) -> str:
    if "long_description" in message:
        return (
            'give the project a description: readme = "README.md" in pyproject.toml [project] (its content '
            "type follows from the suffix), then rebuild"
        )
    return "correct the metadata in the project's pyproject.toml and rebuild"


def run_check_wheel_contents(paths: Sequence[Path], timeout: float = 600) -> dict[str, list[Finding]]:
    """check-wheel-contents over ``paths`` (no configuration file read): its findings per file name."""
    if not paths:
        return {}
    cwc = tool("check-wheel-contents", CWC_FIX)
    out = _ANSI.sub(
        "", _proc.run([cwc, "--no-config", *paths], check=False, timeout=timeout, extra_env=_tool_env()).output
    )
    found: dict[str, list[Finding]] = {p.name: [] for p in paths}
    current: tuple[str, str, str, list[str]] | None = None  # (file, code, message, details)

    def flush() -> None:
        if current is None:
            return
        name, code, message, details = current
        if (
            code in _CWC_IGNORED
            and details
            and all(d.rstrip("/").endswith(".libs") or d.rstrip("/") == _top(name) for d in details)
        ):
            return
        what = f"check-wheel-contents {code}: {message}" + (f": {_listing(details)}" if details else "")
        found[name].append(
            finding("WM020", name, what, _CWC_FIX.get(code, "see check-wheel-contents' README for the code"))
        )

    by_text = {str(p): p.name for p in paths}
    for line in out.splitlines():
        if line.startswith("  ") and current is not None:
            current[3].append(line.strip())
            continue
        flush()
        current = None
        for text, name in by_text.items():
            if line.startswith(text + ": "):
                rest = line[len(text) + 2 :].strip()
                if rest == "OK":
                    break
                m = re.match(r"(W\d{3}): (.*?):?$", rest)
                if m:
                    current = (name, m.group(1), m.group(2), [])
                else:
                    found[name].append(finding("WM020", name, f"check-wheel-contents: {rest}", _REBUILD))
                break
    flush()
    if "Traceback (most recent call last)" in out and len(paths) > 1:
        for p in paths:
            found.update(run_check_wheel_contents([p], timeout))
    return found


def _top(name: str) -> str:
    return name.split("-", 1)[0]


_CWC_FIX = {
    "W001": "keep __pycache__ and *.pyc out of the package data",
    "W002": "ship one copy (or make the files differ on purpose)",
    "W003": "move the file into the package",
    "W004": "rename the module to a valid identifier or move it into the package",
    "W005": "keep tests/docs out of the wheel (the build backend's wheel.packages / exclude)",
    "W006": "remove the top-level __init__.py",
    "W007": "check the build backend packages the library",
    "W008": "check the build backend packages something",
    "W009": "ship one top-level package per distribution",
    "W010": "put modules in the folder or leave it out",
}


def _rated_by_auditwheel(ctx: _Context, target: _Target) -> PlatformSpec | None:
    """The platform of a wheel auditwheel rates: a Linux one holding shared libraries."""
    spec = platform_spec_of(ctx, target)
    if spec is None or spec.os != "linux" or spec.repair != "auditwheel":
        return None
    try:
        with zipfile.ZipFile(target.path) as zf:
            names = zf.namelist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return None
    return spec if any(re.search(r"\.so(\.\d+)*$", n) for n in names) else None


def _linux_abi(ctx: _Context, target: _Target, spec: PlatformSpec) -> list[Finding]:
    """auditwheel's rating of a Linux wheel against its tag and the declared policy."""
    path = target.path
    excluded = [str(x) for x in target.entry.get("excluded", [])] if target.entry else []
    # a plugin's kernels library comes from its core (split = "core-plugin"), which it requires exactly
    core = _core_globs(ctx.matrix)
    excluded = list(dict.fromkeys([*spec.never_vendor, *excluded, *_component_globs(ctx.matrix, spec), *core]))
    try:
        rating = rate(path)
    except CommandFailed as exc:
        if "does not look like a platform wheel" in exc.tail:
            return []  # no ELF file after all: nothing to rate
        last = " ".join(exc.tail.strip().splitlines()[-2:])
        return [
            finding(
                "WM404",
                path.name,
                f"`auditwheel show` failed: {last}",
                "run `auditwheel show` on it to see why; rebuild",
            )
        ]
    except PackageError as exc:
        return [finding("WM404", path.name, exc.message, "run `auditwheel show` on it to see why; rebuild")]
    out: list[Finding] = []
    try:
        check_policy(path, rating, spec, excluded)
    except PolicyViolation as exc:
        code = "WM402" if "needs libraries outside the wheel" in exc.message else "WM401"
        out.append(finding(code, path.name, exc.message, exc.fix or _REBUILD))
    try:
        tags = sorted({t.platform for t in parse_wheel_filename(path.name)[3]})
    except InvalidWheelFilename:
        tags = []
    claimed = [g for g in (tag_glibc(t) for t in tags) if g is not None]
    if claimed:
        floor = min(claimed)
        stray = [lib for lib in rating.external_libs if not any(fnmatch.fnmatchcase(lib, g) for g in excluded)]
        rated = glibc_of(rating.overall_tag.removesuffix("_" + spec.wheel_arch)) if stray else None
        rated = rated or glibc_of(rating.sym_tag.removesuffix("_" + spec.wheel_arch))
        if rated is not None and rated > floor and not any(f.code == "WM401" for f in out):
            bad = offending_symbols(path, f"manylinux_{floor[0]}_{floor[1]}")
            listing = "; ".join(f"{sym}@{ver} in {name}" for name, sym, ver in bad[:20])
            out.append(
                finding(
                    "WM401",
                    path.name,
                    f"the tag promises glibc {floor[0]}.{floor[1]}, but auditwheel rates it {rating.sym_tag}"
                    + (f": {listing}" if listing else ""),
                    "let `wheelmatrix assemble` tag the wheel from auditwheel's rating (never rename a wheel), "
                    "or link against the older glibc (the cell's zig link)",
                )
            )
    return out


def _component_globs(matrix: Matrix, spec: PlatformSpec) -> list[str]:
    """Globs of the CUDA component libraries (libcublas.so*) declared dependencies supply."""
    if matrix.packaging.cuda_libraries != "depend":
        return []
    known = data.components()
    globs = []
    for c in matrix.cuda:
        for comp in c.components:
            if comp.name in known:
                globs += [spec.library_pattern.format(name=so) + "*" for so in known[comp.name].libraries]
    return globs


# ------------------------------------------------------------------------------------------ installs
_WHERE_PYTHONS = "PATH, pyenv ($PYENV_ROOT/versions) and uv's managed Pythons"


def host_tags(version: str) -> set[Tag]:
    """The tags a CPython ``version`` on this host installs (packaging.tags, this host's platforms)."""
    major, minor = (int(x) for x in version.split("."))
    plats = list(platform_tags())
    interp = f"cp{major}{minor}"
    return set(cpython_tags((major, minor), abis=[interp], platforms=plats)) | set(
        compatible_tags((major, minor), interp, plats)
    )


_ENV_PROBE = (
    "import json, os, platform, sys; "
    "print(json.dumps({'implementation_name': sys.implementation.name, "
    "'implementation_version': '.'.join(map(str, sys.implementation.version[:3])), "
    "'os_name': os.name, 'platform_machine': platform.machine(), 'platform_release': platform.release(), "
    "'platform_system': platform.system(), 'platform_version': platform.version(), "
    "'python_full_version': platform.python_version(), "
    "'platform_python_implementation': platform.python_implementation(), "
    "'python_version': '.'.join(platform.python_version_tuple()[:2]), 'sys_platform': sys.platform}))"
)


@dataclass(frozen=True)
class _Group:
    """What one install puts in a venv: a base wheel and the split wheels its extras pull."""

    base: _Static
    base_path: Path
    members: tuple[tuple[_Static, Path], ...]  # the base and the split wheels
    extras: tuple[str, ...]


def _groups(statics: Sequence[tuple[_Static, Path]], matrix: Matrix) -> list[_Group]:
    """One install per platform: the project's wheel with the extras whose split wheels are here."""
    project = canonicalize_name(matrix.project.name)
    groups: list[_Group] = []
    grouped: set[str] = set()
    cores = {canonicalize_name(c) for c in core_distributions(matrix).values()}  # installed with their plugins
    for st, path in statics:
        if st.name is None or canonicalize_name(st.name) != project:
            continue
        members = {st.file: (st, path), **{o.file: (o, p) for o, p in _cores_of(st, statics, matrix)}}
        extras: list[str] = []
        for text in st.requires:
            try:
                req = Requirement(text)
            except InvalidRequirement:
                continue
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                continue
            for other, other_path in statics:
                if other is st or other.name is None or other.tag != st.tag:
                    continue
                if canonicalize_name(req.name) != canonicalize_name(other.name):
                    continue
                for extra in st.extras:
                    if req.marker.evaluate({"extra": extra}) and extra not in extras:
                        extras.append(extra)
                        members[other.file] = (other, other_path)
        groups.append(_Group(st, path, tuple(members.values()), tuple(extras)))
        grouped.update(members)
    # a split or standalone wheel whose base is not checked: install it alone with its extras (NVIDIA's
    # wheels under one) and its core; a core is installed with its plugins, never alone
    for st, path in statics:
        if st.file not in grouped and st.name is not None and canonicalize_name(st.name) not in cores:
            groups.append(_Group(st, path, ((st, path), *_cores_of(st, statics, matrix)), tuple(st.extras)))
    return groups


def _cores_of(st: _Static, statics: Sequence[tuple[_Static, Path]], matrix: Matrix) -> list[tuple[_Static, Path]]:
    """The core wheel (same platform) a plugin requires, when it is among the checked wheels."""
    core = core_distributions(matrix).get(canonicalize_name(st.name or ""))
    if core is None:
        return []
    return [
        (o, p)
        for o, p in statics
        if o.name is not None and canonicalize_name(o.name) == canonicalize_name(core) and o.tag == st.tag
    ]


def _clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV"}}
    env.update(extra or {})
    return env


def _no_index_env() -> dict[str, str]:
    """pip without any configured index or find-links: the checked wheels are all it sees."""
    env = {k: v for k, v in _clean_env().items() if not k.startswith("PIP_")}
    env.update({"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"})
    return env


def _tail(text: str, lines: int = 3) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:])


def _install_key(group: _Group, python: Path, version_text: str, smoke: Sequence[str]) -> str:
    doc = {
        "wheels": sorted(s.sha256 for s, _ in group.members),
        "extras": list(group.extras),
        "python": str(python.resolve()),  # a venv's python and its base interpreter are one
        "version": version_text,
        "smoke": list(smoke),
        "wheelmatrix": __version__,
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class InstallSource:
    """Where an install gets what it installs. The default (``wheelmatrix check``): the requirements
    from pip's configured index, the project's wheels from the files themselves. With ``index_url``
    (``wheelmatrix verify``): the project's own distributions from that index alone, their requirements
    from ``deps_index_url`` alone, in two pip runs, so no resolution ever mixes the two indexes."""

    index_url: str | None = None
    deps_index_url: str | None = None
    logs: str = "check"  # the folder under ``work`` for the logs


def runtime_wheel_names() -> set[str]:
    """NVIDIA's runtime wheels the components data names (every major), canonical."""
    return {canonicalize_name(w) for c in data.components().values() for _, w in c.runtime_wheels}


def local_runtime_wheels(reqs: Sequence[str], roots: Sequence[Path]) -> tuple[list[Path], list[str]]:
    """Split ``reqs`` into NVIDIA runtime wheels found under ``roots`` (the toolchain cache, where the
    pypi toolchain source keeps them) and the rest: cuBLAS alone weighs 400-550 MB, and an install
    check must not download it once per Python."""
    nvidia = runtime_wheel_names()
    found: dict[str, list[tuple[Version, Path]]] = {}
    for root in roots:
        for path in sorted(root.glob("*/*.whl")):
            try:
                name, version, _, _ = parse_wheel_filename(path.name)
            except InvalidWheelFilename:
                continue
            if name in nvidia:
                found.setdefault(name, []).append((version, path))
    local: list[Path] = []
    rest: list[str] = []
    for text in reqs:
        req = Requirement(text)
        name = canonicalize_name(req.name)
        fits = sorted((v, p) for v, p in found.get(name, []) if req.specifier.contains(v, prereleases=True))
        if name in nvidia and fits:
            local.append(fits[-1][1])
        else:
            rest.append(text)
    return local, rest


def _install_one(
    matrix: Matrix,
    group: _Group,
    version: str,
    interpreter: Interpreter,
    *,
    work: Path | None,
    timeout: float,
    source: InstallSource = InstallSource(),
) -> tuple[InstallResult, list[Finding]]:
    """A fresh venv, the requirements from the index, the project's wheels from themselves (or from
    ``source.index_url``), the smoke."""
    start = time.monotonic()
    name = group.base.file
    smoke = list(matrix.check.smoke) or ["python", "-c", f"import {matrix.project.import_package}"]
    python = interpreter.path
    key = _install_key(group, python, interpreter.version, smoke)
    from_index = source.index_url is not None
    cache = work / "check" / "installs" / f"{key}.json" if work is not None and not from_index else None
    if cache is not None and cache.is_file():
        try:
            doc = json.loads(cache.read_text())
            return InstallResult(version, "passed", str(doc["reason"]), time.monotonic() - start, cached=True), []
        except (OSError, ValueError, KeyError):
            pass
    logs = (work / source.logs / "logs") if work is not None else None
    log_file = logs / f"{Path(name).stem}-py{version}.log" if logs is not None else None
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log_file.write_text("")
    where = f" (log: {log_file})" if log_file else ""
    with tempfile.TemporaryDirectory(prefix="wheelmatrix-check-") as tmp:
        venv = Path(tmp) / "venv"
        index = Path(tmp) / "index"
        index.mkdir()
        for _, p in group.members:
            (index / p.name).symlink_to(p.resolve())
        # the venv's own pip (ensurepip's, made for that Python): this environment's pip may be too new
        # to install for an older declared Python (pip 26 refuses --python 3.9)
        _proc.run([python, "-m", "venv", venv], timeout=300, log_file=log_file)
        vpy = venv / "bin" / "python"
        env = json.loads(_proc.run([vpy, "-c", _ENV_PROBE], timeout=60, env=_clean_env()).output)
        own = {canonicalize_name(s.name or "") for s, _ in group.members} | {canonicalize_name(matrix.project.name)}
        reqs: list[str] = []
        for st, _ in group.members:
            # a plugin's core (split = "core-plugin") declares NVIDIA's wheels under the extras the plugin passes on
            core = canonicalize_name(st.name or "") in {
                canonicalize_name(c) for c in core_distributions(matrix).values()
            }
            wanted = set(group.extras) if st is group.base or core else set()
            for text in st.requires:
                try:
                    r = Requirement(text)
                except InvalidRequirement:
                    continue
                if canonicalize_name(r.name) in own:
                    continue
                if r.marker is not None and not any(_marker(r.marker, env, e) for e in ("", *wanted)):
                    continue
                r.marker = None
                reqs.append(str(r))
        pip = [str(vpy), "-m", "pip", "install", "--disable-pip-version-check"]
        local, reqs = local_runtime_wheels(sorted(set(reqs)), [cache_root() / "toolchains" / "downloads"])
        if local:  # NVIDIA's runtime wheels from the toolchain cache: their own requirements are optional at load
            done = _proc.run([*pip, "--no-index", "--no-deps", *local], check=False, timeout=timeout,
                             log_file=log_file, env=_no_index_env())  # fmt: skip
            if done.returncode != 0:
                reason = f"NVIDIA's runtime wheels from the toolchain cache did not install{where}"
                return _failed(version, reason, start), [finding("WM703", name, f"Python {version}: {reason}",
                                                                 "read pip's log; delete the toolchain cache entry")]  # fmt: skip
        if reqs:
            deps = ["--index-url", source.deps_index_url] if source.deps_index_url else []
            done = _proc.run(
                [*pip, *deps, *sorted(set(reqs))],
                check=False,
                timeout=timeout,
                log_file=log_file,
                env=_no_index_env() if source.deps_index_url else _clean_env(),
            )
            if done.returncode != 0:
                from_where = source.deps_index_url or "the index"
                reason = f"its requirements ({', '.join(sorted(set(reqs)))}) did not install from {from_where}{where}"
                return _failed(version, reason, start), [
                    finding(
                        "WM703",
                        name,
                        f"Python {version}: {reason}",
                        "make the requirements installable on every declared Python (markers), or drop that Python",
                    )
                ]
        target = f"{canonicalize_name(group.base.name or matrix.project.name)}"
        if group.extras:
            target += f"[{','.join(group.extras)}]"
        if source.index_url is not None:
            # the release from the index alone: its own distributions pinned, fetched again (no cache)
            target += f"=={group.base.version}"
            own_args = ["--no-cache-dir", "--index-url", source.index_url, target]
            own_args += [f"{s.name}=={s.version}" for s, _ in group.members if s is not group.base and s.name]
            if local:  # NVIDIA's wheels came without their optional requirements: take the release as it is
                own_args.insert(0, "--no-deps")
        else:
            target += f" @ {group.base_path.resolve().as_uri()}"
            own_args = ["--no-index", "--find-links", str(index), target]
            if local:  # NVIDIA's wheels came without their optional requirements: take the checked wheels as they are
                own_args = ["--no-index", "--no-deps", *(str(p.resolve()) for _, p in group.members)]
        done = _proc.run(
            [*pip, *own_args],
            check=False,
            timeout=timeout,
            log_file=log_file,
            env=_no_index_env(),
        )
        if done.returncode != 0:
            text = log_file.read_text(errors="replace") if log_file else done.output
            alone = source.index_url or "the checked wheels"
            reason = f"pip could not install it from {alone} alone: {_tail(text, 2)}{where}"
            return _failed(version, reason, start), [
                finding(
                    "WM701",
                    name,
                    f"Python {version}: {reason}",
                    "read pip's message: a requirement on a split distribution that is not built, a tag this "
                    "Python does not take, or a broken wheel",
                )
            ]
        argv = [str(vpy) if a == "python" else a for a in smoke]
        run_env = _clean_env(
            {"VIRTUAL_ENV": str(venv), "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}
        )
        work_dir = Path(tmp) / "run"
        work_dir.mkdir()
        try:
            done = _proc.run(argv, check=False, timeout=timeout, cwd=work_dir, env=run_env, log_file=log_file)
        except WheelmatrixError as exc:
            return _failed(version, exc.message, start), [
                finding(
                    "WM702",
                    name,
                    f"Python {version}: `{' '.join(smoke)}` could not start: {exc.message}",
                    "correct [check] smoke in matrix.toml",
                )
            ]
        if done.returncode != 0:
            text = log_file.read_text(errors="replace") if log_file else done.output
            reason = f"`{' '.join(smoke)}` exited with {done.returncode}: {_tail(text)}{where}"
            return _failed(version, reason, start), [
                finding(
                    "WM702",
                    name,
                    f"Python {version}: {reason}",
                    "run the smoke command in a fresh venv with the wheel to see the whole output; a library that "
                    "does not load names the missing symbol or library",
                )
            ]
    extras = f" with [{','.join(group.extras)}]" if group.extras else ""
    origin = source.index_url or "the checked wheels"
    reason = (
        f"installed{extras} from {origin} ({', '.join(p.name for _, p in group.members)}); `{' '.join(smoke)}` passed"
    )
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps({"reason": reason}))
    return InstallResult(version, "passed", reason, time.monotonic() - start), []


def _marker(marker: Marker, env: Mapping[str, str], extra: str) -> bool:
    return bool(marker.evaluate({**env, "extra": extra}))


def _failed(version: str, reason: str, start: float) -> InstallResult:
    return InstallResult(version, "failed", reason, time.monotonic() - start)


def check_installs(
    matrix: Matrix,
    statics: Sequence[tuple[_Static, Path]],
    pythons: Sequence[str],
    *,
    work: Path | None,
    timeout: float = 900,
    jobs: int = 1,
    source: InstallSource = InstallSource(),
) -> tuple[dict[str, list[InstallResult]], list[Finding]]:
    """Install each wheel this host can run on each Python of ``pythons``; the rest are skipped with why."""
    results: dict[str, list[InstallResult]] = {st.file: [] for st, _ in statics}
    findings: list[Finding] = []
    interpreters = {v: find_python(v) for v in pythons}
    jobs_list: list[tuple[_Group, str, Interpreter]] = []
    for group in _groups(statics, matrix):
        for version in pythons:
            python = interpreters[version]
            members = [s.file for s, _ in group.members]
            if python is None:
                for m in members:
                    results[m].append(
                        InstallResult(
                            version, "skipped", f"Python {version} is not on this host (looked in {_WHERE_PYTHONS})"
                        )
                    )
                continue
            try:
                _, _, _, tags = parse_wheel_filename(group.base.file)
            except InvalidWheelFilename:
                continue
            if not (set(tags) & host_tags(version)):
                why = f"its tags ({group.base.tag}) do not run on this host"
                if group.base.platform:
                    spec = matrix.platform(group.base.platform)
                    why += f"; a {spec.runner} runner installs it"
                for m in members:
                    results[m].append(InstallResult(version, "skipped", why))
                continue
            rp = group.base.requires_python
            if rp:
                try:
                    if not SpecifierSet(rp).contains(f"{version}.0", prereleases=True):
                        for m in members:
                            results[m].append(InstallResult(version, "skipped", f"Requires-Python {rp} excludes it"))
                        continue
                except InvalidSpecifier:
                    pass
            jobs_list.append((group, version, python))
    todo = []
    for group, version, python in jobs_list:
        if all(s.readable for s, _ in group.members):
            todo.append((group, version, python))
            continue
        for s, _ in group.members:
            results[s.file].append(InstallResult(version, "skipped", "not a readable wheel (see the findings)"))

    def one(job: tuple[_Group, str, Interpreter]) -> tuple[_Group, InstallResult, list[Finding]]:
        group, version, python = job
        log.info("install check: %s on Python %s", group.base.file, version)
        try:
            result, found = _install_one(matrix, group, version, python, work=work, timeout=timeout, source=source)
        except WheelmatrixError as exc:
            result = InstallResult(version, "failed", exc.message.splitlines()[0])
            found = [
                finding(
                    "WM701",
                    group.base.file,
                    f"Python {version}: {exc.message.splitlines()[0]}",
                    exc.fix or "see the log",
                )
            ]
        return group, result, found

    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for group, result, found in pool.map(one, todo):
            for s, _ in group.members:
                results[s.file].append(result)
            findings += found
    for items in results.values():
        items.sort(key=lambda r: tuple(int(x) for x in r.python.split(".")))
    return results, findings


def check_installs_from_index(
    matrix: Matrix,
    wheels: Sequence[Path],
    pythons: Sequence[str],
    *,
    source: InstallSource,
    work: Path | None,
    jobs: int = 1,
) -> tuple[dict[str, list[InstallResult]], list[Finding]]:
    """The install checks of ``wheels`` (copies downloaded back from an index), installed from
    ``source``: what ``wheelmatrix verify`` runs. The wheels are read in-process only (their static
    checks ran at ``wheelmatrix check``)."""
    ctx = _context(matrix, None)
    statics = [(static_checks(ctx, _Target(p, None), file_sha256(p)), p) for p in wheels]
    return check_installs(matrix, statics, pythons, work=work, jobs=jobs, source=source)


# -------------------------------------------------------------------------------------- the stage
def read_build_record(dist: Path) -> dict[str, Any] | None:
    path = dist / RECORD_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise PackageError(f"{path} is not readable JSON: {exc}", fix="run `wheelmatrix assemble` again") from exc
    return doc if isinstance(doc, dict) else None


def _targets(
    dist: Path, wheels: Sequence[Path], record: Mapping[str, Any] | None
) -> tuple[list[_Target], list[Finding]]:
    entries = {str(w["file"]): w for w in (record or {}).get("wheels", []) if isinstance(w, dict) and "file" in w}
    findings: list[Finding] = []
    if wheels:
        return [_Target(Path(w), entries.get(Path(w).name)) for w in wheels], findings
    if record is None:
        raise PackageError(
            f"{dist / RECORD_FILE} does not exist, so there is no list of wheels to check",
            fix="run `wheelmatrix build && wheelmatrix assemble` first, or name the wheels: `wheelmatrix check WHEEL...`",
        )
    targets = []
    for name, entry in sorted(entries.items()):
        path = dist / name
        if not path.is_file():
            findings.append(
                finding(
                    "WM801", name, f"{path} is listed in {RECORD_FILE} but missing", "run `wheelmatrix assemble` again"
                )
            )
            continue
        targets.append(_Target(path, entry))
    if not targets and not findings:
        raise PackageError(
            f"{dist / RECORD_FILE} lists no wheels", fix="run `wheelmatrix build && wheelmatrix assemble`"
        )
    return targets, findings


def _static_all(
    ctx: _Context, targets: Sequence[_Target], work: Path | None, jobs: int
) -> list[tuple[_Static, Path, bool]]:
    """The static checks of every target: from the cache, or computed (external tools in threads)."""
    cache_dir = work / "check" / "static" if work is not None else None
    out: list[tuple[_Static, Path, bool] | None] = [None] * len(targets)
    todo: list[tuple[int, _Target, str, str]] = []
    for i, t in enumerate(targets):
        sha = file_sha256(t.path)
        key = _static_key(ctx, t, sha)
        cached = cache_dir / f"{key}.json" if cache_dir is not None else None
        if cached is not None and cached.is_file():
            try:
                out[i] = (_Static.from_json(json.loads(cached.read_text())), t.path, True)
                continue
            except (OSError, ValueError, KeyError, TypeError):
                pass
        todo.append((i, t, sha, key))
    if todo:
        readable = [t.path for _, t, _, _ in todo if _opens(t.path)]
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(2, jobs + 1)) as pool:
            twine = pool.submit(run_twine, readable)
            cwc = pool.submit(run_check_wheel_contents, readable)
            abi3 = pool.submit(run_abi3audit, readable)
            abi: dict[int, concurrent.futures.Future[list[Finding]]] = {}
            for i, t, _, _ in todo:  # auditwheel extracts the whole wheel: start it first
                spec = _rated_by_auditwheel(ctx, t)
                if spec is not None:
                    abi[i] = pool.submit(_linux_abi, ctx, t, spec)
            computed: list[tuple[int, _Target, str, _Static]] = []
            for i, t, sha, key in todo:
                computed.append((i, t, key, static_checks(ctx, t, sha)))
            tool_findings = [twine.result(), cwc.result(), abi3.result()]
            for i, t, key, st in computed:
                for found in tool_findings:
                    st.findings += found.get(t.path.name, [])
                if i in abi:
                    st.findings += abi[i].result()
                if cache_dir is not None:
                    cache_dir.mkdir(parents=True, exist_ok=True)
                    tmp = cache_dir / f"{key}.json.part"
                    tmp.write_text(json.dumps(st.to_json()))
                    tmp.replace(cache_dir / f"{key}.json")
                out[i] = (st, t.path, False)
    return [o for o in out if o is not None]


def oracle_findings(dist: Path, expected: Sequence[str], allowed: Sequence[str] = ()) -> list[Finding]:
    """dist/ against the expected-wheels oracle: every expected wheel there (WM803), no wheel that is
    neither expected nor allowed (WM804)."""
    present = {p.name for p in dist.glob("*.whl")}
    out = [
        finding("WM803", name, f"{dist / name} is missing: `wheelmatrix plan --wheels` lists it",
                "build its cells and assemble again (`wheelmatrix build && wheelmatrix assemble`)")
        for name in sorted(set(expected) - present)
    ]  # fmt: skip
    out += [
        finding("WM804", name, f"{dist / name} is not one of the wheels `wheelmatrix plan --wheels` "
                "lists", "remove it from the dist folder (`wheelmatrix assemble` writes only the expected ones)")
        for name in sorted(present - set(expected) - set(allowed))
    ]  # fmt: skip
    return out


def _opens(path: Path) -> bool:
    try:
        with zipfile.ZipFile(path):
            return True
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return False


def check_release(
    matrix: Matrix,
    dist: Path,
    wheels: Sequence[Path] = (),
    *,
    strict: bool = False,
    install: bool = True,
    work: Path | None = None,
    pythons: Sequence[str] | None = None,
    write: bool = True,
    jobs: int | None = None,
    progress: Callable[[str], None] | None = None,
    expected: Sequence[str] | None = None,
    allowed: Sequence[str] = (),
) -> CheckResult:
    """Check ``wheels`` (default: every wheel ``dist/build-record.json`` lists) and write
    ``dist/check-report.json`` and ``dist/report.html`` (``write``).

    ``work`` holds the caches and the install logs (None: nothing cached); ``pythons`` overrides
    ``[check] python`` (default ``[matrix] python``); ``install=False`` skips the install checks.
    ``expected`` is the oracle (``wheelmatrix plan --wheels``, the wheels this host builds): a
    missing one and any wheel in ``dist`` neither expected nor ``allowed`` (the oracle's wheels
    other runners build) are findings.
    """
    say = progress or (lambda _msg: None)
    start = time.monotonic()
    jobs = jobs if jobs is not None else min(2, os.cpu_count() or 1)
    record = read_build_record(dist)
    targets, release_findings = _targets(dist, wheels, record)
    if expected is not None:
        release_findings += oracle_findings(dist, expected, allowed)
    ctx = _context(matrix, work)
    if pythons is not None:
        ctx = replace(ctx, pythons=tuple(pythons))
    say(f"static checks of {len(targets)} wheel(s)")
    statics = _static_all(ctx, targets, work, jobs)
    for st, path, _ in statics:
        entry = next((t.entry for t in targets if t.path == path), None)
        if entry is not None and entry.get("sha256") and entry["sha256"] != st.sha256:
            st.findings.append(
                finding(
                    "WM802",
                    st.file,
                    f"its sha256 is {st.sha256[:16]}…, {RECORD_FILE} recorded {str(entry['sha256'])[:16]}… at assemble",
                    "run `wheelmatrix assemble` again (it rewrites the wheels from the cells)",
                )
            )
    total = sum(st.size for st, _, _ in statics)
    quota = matrix.packaging.project_quota
    if total > quota:
        release_findings.append(
            finding(
                "WM302",
                None,
                f"the release's files total {total / 2**30:.2f} GiB, over the {quota / 2**30:.2f} GiB project quota",
                "drop CUDA versions or archs, delete old releases from the index, or ask the index for a larger "
                "quota and raise [packaging] project-quota",
            )
        )
    static_seconds = time.monotonic() - start
    installs: dict[str, list[InstallResult]] = {}
    install_findings: list[Finding] = []
    t_install = time.monotonic()
    wanted = tuple(ctx.pythons)
    if install:
        say(f"install checks on Python {', '.join(wanted)}")
        installs, install_findings = check_installs(
            matrix, [(st, p) for st, p, _ in statics], wanted, work=work, jobs=jobs
        )
    else:
        installs = {st.file: [InstallResult(v, "skipped", "--no-install") for v in wanted] for st, _, _ in statics}
    install_seconds = time.monotonic() - t_install
    files = tuple(
        FileReport(
            file=st.file,
            path=path,
            sha256=st.sha256,
            size=st.size,
            platform=st.platform,
            tag=st.tag,
            distribution=st.distribution or st.name,
            limit=matrix.packaging.max_file_size,
            libraries=tuple(st.libraries),
            installs=tuple(installs.get(st.file, [])),
            notes=tuple(st.notes),
            cached=cached,
        )
        for st, path, cached in statics
    )
    findings = [*release_findings, *(f for st, _, _ in statics for f in st.findings), *install_findings]
    findings.sort(key=lambda f: (f.file or "", f.code))
    project = str((record or {}).get("project", {}).get("name") or matrix.project.name)
    version = str(
        (record or {}).get("project", {}).get("version")
        or next((st.version for st, _, _ in statics if st.version), "0")
    )
    other = tuple(
        (str(c["cell"]), str(c["reason"])) for c in (record or {}).get("needs_other_host", []) if isinstance(c, dict)
    )
    result = CheckResult(
        project=project,
        version=version,
        strict=strict,
        files=files,
        findings=tuple(findings),
        needs_other_host=other,
        matrix=matrix,
        static_seconds=static_seconds,
        install_seconds=install_seconds,
    )
    if write:
        report = write_check_report(dist, result)
        html = write_report(dist)
        result = replace(result, report=report, html=html)
    return result


def write_check_report(dist: Path, result: CheckResult) -> Path:
    dist.mkdir(parents=True, exist_ok=True)
    path = dist / REPORT_FILE
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(result.to_json(), indent=1) + "\n")
    tmp.replace(path)
    return path
