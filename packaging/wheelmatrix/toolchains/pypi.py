"""The ``pypi`` source: CUDA 13.x from NVIDIA's wheels, in one ``pip install --target``.

pip installs the wheels already downloaded and verified into the cache (``--no-index
--find-links``), checking the same SHA256 again through ``--require-hashes``; then the fix-ups
the wheels need: ``nvcc.profile`` names ``lib64`` where the wheels have ``lib``, and there is no
unversioned ``libcudart.so`` for CMake's FindCUDAToolkit.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import sys
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from packaging.version import InvalidVersion, Version

from wheelmatrix import _proc
from wheelmatrix.errors import CommandFailed, ToolchainError
from wheelmatrix.model import CudaSpec, SourceKind
from wheelmatrix.toolchains import data
from wheelmatrix.toolchains.base import Assembled, LockedFile, LockEntry
from wheelmatrix.toolchains.fetch import clip, disk_full, fetch_bytes
from wheelmatrix.toolchains.progress import Reporter

PIP_TIMEOUT = 900.0


def index_url() -> str:
    return os.environ.get("WHEELMATRIX_PYPI_URL", str(data.table()["pypi"]["index"])).rstrip("/")


def _cfg() -> dict[str, Any]:
    cfg: dict[str, Any] = data.table()["pypi"]
    return cfg


class PypiSource:
    kind: SourceKind = "pypi"

    def __init__(self, reporter: Reporter | None = None) -> None:
        self.reporter = reporter or Reporter(enabled=False)

    def unavailable(self, spec: CudaSpec) -> str | None:
        if spec.version.major not in _cfg()["majors"]:
            return (
                f"NVIDIA's CUDA {spec.version.major}.x wheels on PyPI hold no nvcc (only ptxas, libnvvm and headers); "
                "wheelmatrix provides CUDA " + ", ".join(f"{m}.x" for m in _cfg()["majors"]) + " from PyPI"
            )
        return None

    def recipe(self, spec: CudaSpec) -> Mapping[str, object]:
        return {"packages": _cfg()["packages"], "root": _cfg()["root"], "fixups": 1}

    def package_names(self, spec: CudaSpec) -> frozenset[str]:
        return frozenset(_cfg()["packages"])

    def resolve(self, spec: CudaSpec) -> LockEntry:
        reason = self.unavailable(spec)
        if reason:
            raise ToolchainError(f"the pypi source cannot provide CUDA {spec.version}: {reason}")
        files = [self._resolve_one(name, spec) for name in _cfg()["packages"]]
        return LockEntry(spec.version, "pypi", "pypi", tuple(files), (index_url(),))

    def _resolve_one(self, name: str, spec: CudaSpec) -> LockedFile:
        meta_url = f"{index_url()}/{name}/json"
        raw = fetch_bytes(meta_url, what=f"the PyPI metadata of {name}")
        try:
            releases: dict[str, list[dict[str, Any]]] = json.loads(raw)["releases"]
        except (ValueError, KeyError) as exc:
            raise ToolchainError(f"PyPI answered malformed metadata for {name}") from exc
        best: tuple[Version, dict[str, Any]] | None = None
        for text, dists in releases.items():
            try:
                version = Version(text)
            except InvalidVersion:
                continue
            if version.is_prerelease or version.release[:2] != (spec.version.major, spec.version.minor):
                continue
            wheel = next(
                (d for d in dists if fnmatchcase(d["filename"], _cfg()["wheel"]) and not d.get("yanked")), None
            )
            if wheel is not None and (best is None or version > best[0]):
                best = (version, wheel)
        if best is None:
            raise ToolchainError(
                f"PyPI has no {name} wheel for CUDA {spec.version} on this platform",
                fix="choose a CUDA version NVIDIA publishes wheels for, or another source",
            )
        version, wheel = best
        url = urljoin(meta_url, wheel["url"])  # some indexes answer relative URLs
        return LockedFile(name, str(version), wheel["filename"], url, wheel["digests"]["sha256"], int(wheel["size"]))

    def assemble(self, spec: CudaSpec, files: Sequence[tuple[LockedFile, Path]], staging: Path) -> Assembled:
        links = staging / ".wheels"
        links.mkdir()
        requirements = []
        for locked, path in files:
            (links / locked.filename).symlink_to(path)
            requirements.append(f"{locked.name}=={locked.version} --hash=sha256:{locked.sha256}")
        req = staging / ".requirements.txt"
        req.write_text("\n".join(requirements) + "\n")
        target = staging / "site"
        argv = [
            sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--no-index", "--find-links", str(links), "--no-deps", "--only-binary", ":all:",
            "--require-hashes", "--no-compile", "--target", str(target), "-r", str(req),
        ]  # fmt: skip
        # pip unpacks --target installs in TMPDIR first: keep that on the cache's file system
        # (a rename, not a copy; and a full disk is the cache's, not /tmp's)
        tmp = staging / ".tmp"
        tmp.mkdir()
        env = {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_INPUT": "1", "PYTHONNOUSERSITE": "1", "TMPDIR": str(tmp)}
        with self.reporter.task(f"pip install CUDA {spec.version} wheels", None):
            try:
                _proc.run(argv, extra_env=env, timeout=PIP_TIMEOUT)
            except CommandFailed as exc:
                if "No space left on device" in exc.tail or "[Errno 28]" in exc.tail:
                    raise disk_full(OSError(errno.ENOSPC, "No space left on device"), staging) from exc
                raise ToolchainError(
                    f"pip could not install the CUDA {spec.version} wheels:\n{clip(exc.tail)}"
                ) from exc
        shutil.rmtree(tmp, ignore_errors=True)
        for p in (links, req):
            if p.is_dir():
                for child in p.iterdir():
                    child.unlink()
                p.rmdir()
            else:
                p.unlink()
        root_rel = "site/" + str(_cfg()["root"]).format(major=spec.version.major)
        root = staging / root_rel
        nvcc = root / "bin" / "nvcc"
        if not nvcc.is_file():
            raise ToolchainError(f"the CUDA {spec.version} wheels installed no {nvcc.relative_to(staging)}")
        self._fixups(root)
        return Assembled(root=root_rel, nvcc="bin/nvcc")

    @staticmethod
    def _fixups(root: Path) -> None:
        profile = root / "bin" / "nvcc.profile"
        if profile.is_file():
            text = profile.read_text()
            fixed = re.sub(r"\blib(64|\$\(_TARGET_SIZE_\))(?=\W)", "lib", text)
            if fixed != text:
                profile.write_text(fixed)
        lib = root / "lib"
        if lib.is_dir() and not (root / "lib64").exists():
            (root / "lib64").symlink_to("lib")  # CMake and older build scripts look in lib64
        if lib.is_dir() and not (lib / "libcudart.so").exists():
            versioned = sorted(p.name for p in lib.glob("libcudart.so.*"))
            if versioned:
                (lib / "libcudart.so").symlink_to(versioned[0])
