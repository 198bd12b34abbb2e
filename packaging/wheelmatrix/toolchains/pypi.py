"""The ``pypi`` source: CUDA 13.x from NVIDIA's wheels, in one ``pip install --target``.

pip installs the wheels already downloaded and verified into the cache (``--no-index
--find-links``), checking the same SHA256 again through ``--require-hashes``; then the fix-ups
the wheels need: ``nvcc.profile`` names ``lib64`` where the wheels have ``lib``, and there is no
unversioned ``libcudart.so`` for CMake's FindCUDAToolkit.

CUDA components (cuBLAS, ...) are more wheels in the same install. Their versions are not the
CUDA version (cuBLAS 13.1.1.3 belongs to CUDA 13.0), so ``resolve`` takes them from NVIDIA's
``cuda-toolkit`` metapackage: the newest ``X.Y.*`` release requires the component wheels of CUDA
X.Y (Requires-Dist per extra); its wheel is 2.5 kB, fetched and hash-checked, and its METADATA read.
"""

from __future__ import annotations

import email.parser
import errno
import hashlib
import io
import json
import os
import re
import shutil
import sys
import zipfile
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from wheelmatrix import _proc
from wheelmatrix.errors import CommandFailed, ToolchainError
from wheelmatrix.model import CudaSpec, SourceKind
from wheelmatrix.toolchains import components, data
from wheelmatrix.toolchains.base import Assembled, LockedFile, LockEntry
from wheelmatrix.toolchains.fetch import clip, disk_full, fetch_bytes
from wheelmatrix.toolchains.progress import Reporter

PIP_TIMEOUT = 900.0
# the platform the toolchain's wheels are for (the wheel pattern of data/toolchains.toml): the
# environment cuda-toolkit's Requires-Dist markers are evaluated in
MARKER_ENV = {"sys_platform": "linux", "platform_machine": "x86_64", "platform_system": "Linux", "os_name": "posix"}


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
        major = spec.version.major
        if major not in _cfg()["majors"]:
            return (
                f"NVIDIA's CUDA {major}.x wheels on PyPI hold no nvcc (only ptxas, libnvvm and headers); "
                "wheelmatrix provides CUDA " + ", ".join(f"{m}.x" for m in _cfg()["majors"]) + " from PyPI"
            )
        for c in spec.components:
            if c.runtime_wheel(major) is None or c.name not in _cfg().get("components", {}):
                return f"wheelmatrix knows no CUDA {major}.x wheel of the component {c.name} (data/toolchains.toml)"
        return None

    def recipe(self, spec: CudaSpec) -> Mapping[str, object]:
        out: dict[str, object] = {"packages": _cfg()["packages"], "root": _cfg()["root"], "fixups": 1}
        if spec.components:  # a toolchain without components keeps its cache key
            out["components"] = components.recipe(spec)
            out["component-wheels"] = list(self.component_wheels(spec))
        return out

    def package_names(self, spec: CudaSpec) -> frozenset[str]:
        return frozenset([*_cfg()["packages"], *self.component_wheels(spec)])

    @staticmethod
    def component_wheels(spec: CudaSpec) -> tuple[str, ...]:
        """The wheels the requested components add: each one's runtime wheel, then the wheels
        data/toolchains.toml [pypi.components] lists for it; none twice, none of the base set."""
        base = set(_cfg()["packages"])
        names: dict[str, None] = {}
        for c in spec.components:
            own = c.runtime_wheel(spec.version.major)
            for name in [own, *_cfg().get("components", {}).get(c.name, [])]:
                if name is not None and name not in base:
                    names[name] = None
        return tuple(names)

    def resolve(self, spec: CudaSpec) -> LockEntry:
        reason = self.unavailable(spec)
        if reason:
            raise ToolchainError(f"the pypi source cannot provide CUDA {spec.version}: {reason}")
        files = [self._resolve_one(name, spec) for name in _cfg()["packages"]]
        indexes = [index_url()]
        wheels = self.component_wheels(spec)
        if wheels:
            toolkit, pins = self._metapackage_pins(spec)
            for name in wheels:
                pin = pins.get(canonicalize_name(name))
                if pin is None:
                    raise ToolchainError(
                        f"{toolkit} (NVIDIA's metapackage of CUDA {spec.version}) requires no {name}, so wheelmatrix "
                        f"cannot tell which {name} belongs to CUDA {spec.version}",
                        fix="correct [pypi.components] in wheelmatrix/data/toolchains.toml, or choose another source",
                    )
                files.append(self._resolve_one(name, spec, pin, role="component"))
            indexes.append(f"component versions from {toolkit}")
        return LockEntry(spec.version, "pypi", "pypi", tuple(files), tuple(indexes))

    @staticmethod
    def _releases(name: str) -> tuple[str, dict[str, list[dict[str, Any]]]]:
        meta_url = f"{index_url()}/{name}/json"
        raw = fetch_bytes(meta_url, what=f"the PyPI metadata of {name}")
        try:
            releases: dict[str, list[dict[str, Any]]] = json.loads(raw)["releases"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ToolchainError(f"PyPI answered malformed metadata for {name}") from exc
        return meta_url, releases

    def _resolve_one(
        self, name: str, spec: CudaSpec, pin: SpecifierSet | None = None, *, role: str = "cuda"
    ) -> LockedFile:
        """The newest release with a wheel for this host: of the CUDA minor (``pin`` None), or
        satisfying ``pin`` (a component), preferring one of the CUDA minor when ``pin`` is a
        range (nvidia-nvjitlink>=13.0.88,<14 for CUDA 13.0: 13.0.x, not the newest 13.x)."""
        meta_url, releases = self._releases(name)
        minor = (spec.version.major, spec.version.minor)
        found: list[tuple[Version, dict[str, Any]]] = []
        for text, dists in releases.items():
            try:
                version = Version(text)
            except InvalidVersion:
                continue
            if version.is_prerelease:
                continue
            if (pin is None and version.release[:2] != minor) or (pin is not None and version not in pin):
                continue
            wheel = next(
                (d for d in dists if fnmatchcase(d["filename"], _cfg()["wheel"]) and not d.get("yanked")), None
            )
            if wheel is not None:
                found.append((version, wheel))
        same_minor = [f for f in found if f[0].release[:2] == minor]
        best = max(same_minor or found, key=lambda f: f[0], default=None)
        if best is None:
            wanted = f"{name}{pin}" if pin is not None else f"{name} {spec.version}.*"
            raise ToolchainError(
                f"PyPI has no {wanted} wheel for CUDA {spec.version} on this platform",
                fix="choose a CUDA version NVIDIA publishes wheels for, or another source",
            )
        version, wheel = best
        url = urljoin(meta_url, wheel["url"])  # some indexes answer relative URLs
        return LockedFile(
            name, str(version), wheel["filename"], url, wheel["digests"]["sha256"], int(wheel["size"]), role
        )

    def _metapackage_pins(self, spec: CudaSpec) -> tuple[str, dict[str, SpecifierSet]]:
        """What NVIDIA's metapackage of the CUDA minor requires, per wheel: the Requires-Dist of
        the extras named after the requested components, then of every other extra (for a
        wheel a component needs that its own extra does not name)."""
        name = str(_cfg()["metapackage"])
        meta_url, releases = self._releases(name)
        minor = (spec.version.major, spec.version.minor)
        best: tuple[Version, dict[str, Any]] | None = None
        for text, dists in releases.items():
            try:
                version = Version(text)
            except InvalidVersion:
                continue
            if version.is_prerelease or version.release[:2] != minor:
                continue
            wheel = next((d for d in dists if d["filename"].endswith(".whl") and not d.get("yanked")), None)
            if wheel is not None and (best is None or version > best[0]):
                best = (version, wheel)
        if best is None:
            raise ToolchainError(
                f"PyPI has no {name} {spec.version}.* release, which says the component versions of CUDA "
                f"{spec.version}",
                fix="drop the components of this CUDA version from matrix.toml, or choose another source",
            )
        version, wheel = best
        url = urljoin(meta_url, wheel["url"])
        raw = fetch_bytes(url, what=f"{wheel['filename']} (the metadata of CUDA {spec.version}'s components)")
        sha = hashlib.sha256(raw).hexdigest()
        if sha != wheel["digests"]["sha256"]:
            raise ToolchainError(
                f"{wheel['filename']} from {url} does not match the SHA256 the index lists: {sha} instead of "
                f"{wheel['digests']['sha256']}",
                fix="try again later or use another index (WHEELMATRIX_PYPI_URL)",
            )
        toolkit = f"{name} {version} ({wheel['filename']}, sha256 {sha})"
        requires = _requires_dist(raw, wheel["filename"])
        extras = [c.name for c in spec.components]
        pins: dict[str, SpecifierSet] = {}
        for extra in [*extras, None]:  # None: any extra ("all", ...), only for wheels not pinned yet
            for req in requires:
                key = canonicalize_name(req.name)
                if req.marker is None or (extra is None and key in pins):
                    continue
                if extra is not None and not req.marker.evaluate({**MARKER_ENV, "extra": extra}):
                    continue
                if extra is None and not any(req.marker.evaluate({**MARKER_ENV, "extra": e}) for e in _extras_of(req)):
                    continue
                pins[key] = pins[key] & req.specifier if key in pins else req.specifier
        return toolkit, pins

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
        if spec.components:
            components.link_unversioned(root / "lib", components.needed_libraries(spec))
            components.check_assembled(spec, root, f"the CUDA {spec.version} wheels")
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


def _requires_dist(wheel: bytes, filename: str) -> list[Requirement]:
    """The Requires-Dist of a wheel's ``*.dist-info/METADATA``."""
    try:
        with zipfile.ZipFile(io.BytesIO(wheel)) as z:
            meta = next(n for n in z.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA"))
            text = z.read(meta).decode("utf-8", "replace")
    except (zipfile.BadZipFile, StopIteration, KeyError) as exc:
        raise ToolchainError(f"{filename} is not a wheel with a METADATA file") from exc
    out = []
    for line in email.parser.Parser().parsestr(text).get_all("Requires-Dist") or []:
        try:
            out.append(Requirement(line))
        except InvalidRequirement:
            continue
    return out


def _extras_of(req: Requirement) -> list[str]:
    """The extra names a requirement's marker mentions (``extra == 'all'``)."""
    return re.findall(r"extra\s*==\s*['\"]([^'\"]+)['\"]", str(req.marker))
