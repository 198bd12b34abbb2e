"""Reading and deterministically writing wheel files.

Every final wheel is written here, never by a tool's own zip writer: entries are sorted (package
files first, ``.dist-info`` last, ``RECORD`` the very last), every timestamp is
``SOURCE_DATE_EPOCH`` (or 1980-01-01 when unset), permissions are 0644 or 0755 only, the
compression level is fixed and ``RECORD`` is regenerated from the bytes written. Two runs over the
same contents give byte-identical files.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import os
import re
import stat
import time
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from email.parser import HeaderParser
from pathlib import Path

from packaging.utils import InvalidWheelFilename, parse_wheel_filename

from wheelmatrix.errors import PackageError

ZIP_EPOCH_MIN = 315532800  # 1980-01-01T00:00:00Z, the earliest time a zip entry can hold
COMPRESS_LEVEL = 9
_EXECUTABLE_SUFFIXES = (".so", ".dll", ".pyd", ".dylib", ".exe")


def source_date_epoch(env: Mapping[str, str] | None = None) -> int:
    """``SOURCE_DATE_EPOCH`` from the environment (clamped to the zip minimum), else 1980-01-01."""
    value = (os.environ if env is None else env).get("SOURCE_DATE_EPOCH", "").strip()
    if not value:
        return ZIP_EPOCH_MIN
    if not value.isdigit():
        raise PackageError(
            f"SOURCE_DATE_EPOCH={value!r} is not a whole number of seconds",
            fix="unset it or set it to e.g. the last commit's time: `git log -1 --format=%ct`",
        )
    return max(int(value), ZIP_EPOCH_MIN)


@dataclass(frozen=True)
class WheelName:
    name: str  # as in the file name (underscored)
    version: str
    python: str
    abi: str
    platform: str  # the platform tag, e.g. linux_x86_64 or manylinux_2_28_x86_64.manylinux_2_17_x86_64

    @classmethod
    def parse(cls, filename: str) -> WheelName:
        try:
            parse_wheel_filename(filename)  # packaging's rules: name, version, tags
        except InvalidWheelFilename as exc:
            raise PackageError(f"{filename} is not a wheel file name: {exc}") from None
        parts = filename[: -len(".whl")].split("-")
        if len(parts) == 6:  # a build tag: name-version-build-py-abi-platform
            del parts[2]
        name, version, python, abi, plat = parts
        return cls(name, version, python, abi, plat)

    @property
    def tag(self) -> str:
        return f"{self.python}-{self.abi}-{self.platform}"

    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.tag}.whl"


def escape_name(name: str) -> str:
    """A distribution name as wheel file names and ``.dist-info`` folders spell it (PEP 427/503)."""
    return re.sub(r"[-_.]+", "_", name).lower()


def record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _mode(name: str, mode: int | None) -> int:
    if name.endswith(_EXECUTABLE_SUFFIXES) or (mode is not None and mode & 0o111):
        return 0o755
    return 0o644


def _order(name: str) -> tuple[int, str]:
    top = name.split("/", 1)[0]
    if name.endswith(".dist-info/RECORD") and "/" not in name[: -len("/RECORD")]:
        return (2, name)
    if top.endswith(".dist-info"):
        return (1, name)
    return (0, name)


@dataclass
class WheelContents:
    """A wheel in memory: file name and entries (path -> bytes, and path -> unix mode)."""

    filename: str
    files: dict[str, bytes]
    modes: dict[str, int]

    @property
    def wheel_name(self) -> WheelName:
        return WheelName.parse(self.filename)

    @property
    def dist_info(self) -> str:
        dirs = {n.split("/", 1)[0] for n in self.files if n.split("/", 1)[0].endswith(".dist-info")}
        if len(dirs) != 1:
            raise PackageError(f"{self.filename} has {len(dirs)} .dist-info folders, a wheel needs exactly one")
        return dirs.pop()

    def text(self, name: str) -> str:
        return self.files[name].decode("utf-8")

    def metadata_header(self, key: str) -> list[str]:
        parsed = HeaderParser().parsestr(self.text(f"{self.dist_info}/METADATA"))
        return [str(v) for v in parsed.get_all(key, [])]

    def put(self, name: str, data: bytes, mode: int | None = None) -> None:
        self.files[name] = data
        self.modes[name] = _mode(name, mode)


def read_wheel(path: Path) -> WheelContents:
    """Read every entry of ``path`` (RECORD verified: a corrupt cell wheel is refused)."""
    try:
        with zipfile.ZipFile(path) as zf:
            files: dict[str, bytes] = {}
            modes: dict[str, int] = {}
            for info in zf.infolist():
                if info.is_dir():
                    continue
                files[info.filename] = zf.read(info)
                modes[info.filename] = stat.S_IMODE(info.external_attr >> 16)
    except (OSError, zipfile.BadZipFile) as exc:
        raise PackageError(
            f"cannot read wheel {path}: {exc}", fix="rebuild it (delete it and run `wheelmatrix build`)"
        ) from exc
    contents = WheelContents(path.name, files, modes)
    _verify_record(contents, path)
    return contents


def _verify_record(contents: WheelContents, path: Path) -> None:
    record_name = f"{contents.dist_info}/RECORD"
    if record_name not in contents.files:
        raise PackageError(f"{path} has no {record_name}")
    listed: set[str] = set()
    for row in csv.reader(io.StringIO(contents.text(record_name))):
        if not row:
            continue
        name, digest = row[0], row[1] if len(row) > 1 else ""
        listed.add(name)
        if name == record_name or not digest:
            continue
        data = contents.files.get(name)
        if data is None or record_hash(data) != digest:
            raise PackageError(f"{path}: {name} does not match its RECORD entry", fix="rebuild the wheel")
    missing = sorted(set(contents.files) - listed)
    if missing:
        raise PackageError(f"{path}: files missing from RECORD: {', '.join(missing)}", fix="rebuild the wheel")


def wheel_bytes(contents: WheelContents, *, epoch: int | None = None) -> bytes:
    """The deterministic zip of ``contents`` (RECORD regenerated)."""
    when = source_date_epoch() if epoch is None else max(epoch, ZIP_EPOCH_MIN)
    date_time = time.gmtime(when)[:6]
    record_name = f"{contents.dist_info}/RECORD"
    files = {n: d for n, d in contents.files.items() if n != record_name}
    rows = [(n, record_hash(d), str(len(d))) for n, d in sorted(files.items(), key=lambda kv: _order(kv[0]))]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerows(rows)
    writer.writerow((record_name, "", ""))
    files[record_name] = buf.getvalue().encode("utf-8")
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for name in sorted(files, key=_order):
            info = zipfile.ZipInfo(name, date_time=date_time)
            info.create_system = 3  # unix, so the mode below is honoured
            info.external_attr = (stat.S_IFREG | _mode(name, contents.modes.get(name))) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, files[name], compress_type=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL)
    return out.getvalue()


def write_wheel(contents: WheelContents, directory: Path, *, epoch: int | None = None) -> Path:
    """Write ``contents`` deterministically into ``directory`` (atomically); returns the path."""
    directory.mkdir(parents=True, exist_ok=True)
    data = wheel_bytes(contents, epoch=epoch)
    target = directory / contents.filename
    tmp = target.with_name(target.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target


def normalize_wheel(path: Path, *, epoch: int | None = None) -> Path:
    """Rewrite a wheel some tool wrote (auditwheel, delvewheel) deterministically, in place."""
    return write_wheel(read_wheel(path), path.parent, epoch=epoch)


def compressed_size(data: bytes) -> int:
    """The bytes ``data`` takes in a wheel written by :func:`wheel_bytes` (deflate, fixed level)."""
    comp = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, -15)
    return len(comp.compress(data) + comp.flush())
