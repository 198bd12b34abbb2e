"""Reading Debian's archive without apt: the signed release file, the package index, .deb files.

InRelease (checked with gpgv against the archive keyring when both exist) gives the SHA256 of
``<component>/binary-<arch>/Packages.xz``; that index gives each .deb's path and SHA256; a .deb is
an ``ar`` archive whose ``data.tar.*`` member holds the files.
"""

from __future__ import annotations

import hashlib
import lzma
import os
import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import BinaryIO

from wheelmatrix import _proc
from wheelmatrix.errors import CommandFailed, ToolchainError
from wheelmatrix.toolchains.fetch import fetch_bytes


class IndexError_(ToolchainError):
    """The archive's release file or package index failed verification."""


@dataclass(frozen=True)
class Release:
    suite: str
    signed: bool  # True when gpgv checked the signature against the keyring
    sha256: dict[str, tuple[str, int]]  # index path -> (sha256, size)
    date: str


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    filename: str  # pool path relative to the mirror
    sha256: str
    size: int


def _clearsigned_body(text: str) -> str:
    """The signed text of a clearsigned message (for when gpgv cannot check it)."""
    lines = text.splitlines()
    try:
        start = lines.index("-----BEGIN PGP SIGNED MESSAGE-----")
        end = lines.index("-----BEGIN PGP SIGNATURE-----")
    except ValueError as exc:
        raise IndexError_("the InRelease file is not a clearsigned message") from exc
    body = lines[start + 1 : end]
    while body and body[0].strip():  # armor headers ("Hash: SHA256") up to the blank line
        body.pop(0)
    return "\n".join(line[2:] if line.startswith("- ") else line for line in body[1:]) + "\n"


def verify_release(raw: bytes, *, keyring: Path | None) -> tuple[str, bool]:
    """Return the release text and whether its signature was checked."""
    gpgv = shutil.which("gpgv")
    if keyring is None or gpgv is None or not keyring.is_file():
        return _clearsigned_body(raw.decode("utf-8", "replace")), False
    with tempfile.TemporaryDirectory(prefix="wm-inrelease-") as tmp:
        src = Path(tmp) / "InRelease"
        src.write_bytes(raw)
        out = Path(tmp) / "Release"
        try:
            _proc.run([gpgv, "--keyring", str(keyring), "--output", str(out), str(src)], timeout=60)
        except CommandFailed as exc:
            raise IndexError_(
                f"the signature of the archive's InRelease file does not verify against {keyring}:\n{exc.tail}",
                fix="the mirror may be compromised or the keyring outdated; use another mirror "
                "(WHEELMATRIX_DEBIAN_MIRROR) or update debian-archive-keyring",
            ) from exc
        return out.read_text("utf-8", "replace"), True


def parse_release(text: str, suite: str, signed: bool) -> Release:
    sums: dict[str, tuple[str, int]] = {}
    in_sha = False
    date = ""
    for line in text.splitlines():
        if line.startswith("Date:"):
            date = line.split(":", 1)[1].strip()
        if not line.startswith(" "):
            in_sha = line.startswith("SHA256:")
            continue
        if in_sha:
            parts = line.split()
            if len(parts) == 3:
                sums[parts[2]] = (parts[0], int(parts[1]))
    if not sums:
        raise IndexError_(f"the InRelease file of {suite} lists no SHA256 sums")
    return Release(suite, signed, sums, date)


def parse_packages(text: str) -> Iterator[dict[str, str]]:
    for para in text.split("\n\n"):
        fields: dict[str, str] = {}
        key = None
        for line in para.splitlines():
            if line[:1] in (" ", "\t"):
                if key is not None:
                    fields[key] += "\n" + line.strip()
                continue
            if ":" in line:
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        if "Package" in fields:
            yield fields


@dataclass
class SuiteIndex:
    """The verified package indexes of one suite, fetched on demand per component."""

    mirror: str
    suite: str
    arch: str
    keyring: Path | None
    release: Release | None = None
    components: dict[str, dict[str, Package]] | None = None

    def load_release(self) -> Release:
        if self.release is None:
            raw = fetch_bytes(f"{self.mirror}/dists/{self.suite}/InRelease", what=f"the release file of {self.suite}")
            text, signed = verify_release(raw, keyring=self.keyring)
            self.release = parse_release(text, self.suite, signed)
        return self.release

    def index_path(self, component: str) -> str:
        return f"{component}/binary-{self.arch}/Packages.xz"

    def packages(self, component: str) -> dict[str, Package]:
        if self.components is None:
            self.components = {}
        if component in self.components:
            return self.components[component]
        release = self.load_release()
        path = self.index_path(component)
        if path not in release.sha256:
            raise IndexError_(
                f"the release file of {self.suite} lists no {path}",
                fix=f"check that the mirror carries the {component} component of {self.suite}",
            )
        want, size = release.sha256[path]
        raw = fetch_bytes(f"{self.mirror}/dists/{self.suite}/{path}", what=f"the {component} index of {self.suite}")
        got = hashlib.sha256(raw).hexdigest()
        if got != want or len(raw) != size:
            raise IndexError_(
                f"the {component} index of {self.suite} ({path}) does not match the SHA256 in its release "
                f"file: got {got} ({len(raw)} bytes), the release file says {want} ({size} bytes)",
                fix="the mirror may be updating or tampered with: try again later or use another mirror",
            )
        try:
            text = lzma.decompress(raw).decode("utf-8", "replace")
        except lzma.LZMAError as exc:
            raise IndexError_(f"the {component} index of {self.suite} is not valid xz: {exc}") from exc
        found: dict[str, Package] = {}
        for fields in parse_packages(text):
            try:
                pkg = Package(
                    fields["Package"], fields["Version"], fields["Filename"], fields["SHA256"], int(fields["Size"])
                )
            except (KeyError, ValueError):
                continue
            found.setdefault(pkg.name, pkg)
        self.components[component] = found
        return found

    def describe(self) -> str:
        release = self.load_release()
        sig = "signature checked" if release.signed else "signature NOT checked"
        return f"InRelease of {release.date}, {sig}"


# --- .deb files: an ar archive with a data.tar.* member ---------------------------------------


class _Limited:
    """A read-only view of ``length`` bytes of a file from its current position."""

    def __init__(self, fh: BinaryIO, length: int) -> None:
        self.fh = fh
        self.left = length

    def read(self, n: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        if n < 0 or n > self.left:
            n = self.left
        data = self.fh.read(n)
        self.left -= len(data)
        return data


def ar_members(fh: BinaryIO) -> Iterator[tuple[str, int]]:
    """Yield (name, size) of each member, leaving ``fh`` at its data (read it before the next)."""
    if fh.read(8) != b"!<arch>\n":
        raise ToolchainError("not an ar archive (a .deb file starts with '!<arch>')")
    while True:
        header = fh.read(60)
        if not header:
            return
        if len(header) < 60 or header[58:60] != b"`\n":
            raise ToolchainError("a .deb file has a corrupt ar member header")
        name = header[:16].decode("ascii", "replace").strip().rstrip("/")
        size = int(header[48:58].decode("ascii").strip())
        start = fh.tell()
        yield name, size
        fh.seek(start + size + (size & 1))


def deb_data_tar(fh: BinaryIO) -> tarfile.TarFile:
    """Open the ``data.tar.*`` member of a .deb as a streaming tar."""
    for name, size in ar_members(fh):
        if name.startswith("data.tar"):
            tar: tarfile.TarFile = tarfile.open(fileobj=_Limited(fh, size), mode="r|*")  # type: ignore[call-overload]  # noqa: SIM115 - the caller closes it
            return tar
    raise ToolchainError("a .deb file has no data.tar member")


@dataclass(frozen=True)
class KeepRule:
    src: str  # "usr/include/"
    dst: str  # "include/"
    files: tuple[str, ...]  # fnmatch patterns over the rest of the path

    def map(self, path: str) -> str | None:
        if not path.startswith(self.src):
            return None
        rest = path[len(self.src) :]
        if rest and any(fnmatchcase(rest, pattern) for pattern in self.files):
            return self.dst + rest
        return None


def _safe_rel(path: str) -> bool:
    parts = Path(path).parts
    return bool(parts) and not Path(path).is_absolute() and ".." not in parts


def unpack_deb(deb: Path, dest: Path, rules: tuple[KeepRule, ...]) -> int:
    """Unpack the files of ``deb`` that a rule keeps into ``dest``; returns how many were kept."""
    kept = 0
    with deb.open("rb") as fh, deb_data_tar(fh) as tar:
        for member in tar:
            name = member.name[2:] if member.name.startswith("./") else member.name
            if member.isdir() or not _safe_rel(name):
                continue
            target_rel = next((t for t in (r.map(name) for r in rules) if t is not None), None)
            if target_rel is None:
                continue
            target = dest / target_rel
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink() or target.exists():
                target.unlink()
            if member.issym():
                link = member.linkname
                resolved = os.path.normpath(str(Path(target_rel).parent / link))
                if Path(link).is_absolute() or not _safe_rel(resolved):
                    continue  # points outside the kept tree (e.g. /etc/nvcc.profile): dropped
                target.symlink_to(link)
            elif member.isfile():
                src = tar.extractfile(member)
                if src is None:
                    continue
                with target.open("wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
                target.chmod(0o755 if member.mode & 0o111 else 0o644)
            else:
                continue
            kept += 1
    return kept
