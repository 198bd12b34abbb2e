"""Stage: assemble cell wheels into the distributions a release publishes.

Per platform the input is one cell wheel per variant (``cpu``, ``cuda118``, ...), each built by
the project's own build backend. The CPU cell wheel is the base: it carries the Python package
(the loader), its metadata and the CPU library. The output is either

* **fat**: one ``py3-none-<platform>`` wheel holding every library and its manifest, or
* **split** (per CUDA major): the base distribution (CPU library and loader) plus one distribution
  per CUDA major, named by ``packaging.split-name`` (``mykernels-cu12``), holding an import package
  (``mykernels_cu12``) with the libraries in its library folder, registered in the entry-point group
  ``<import_package>.libraries`` so the loader finds it, reachable as the extra
  ``packaging.extra-name`` (``mykernels[cu12]``), the versions pinned to each other exactly.

The choice follows ``packaging.split``: ``fat`` (fail when over the limit), ``per-cuda-major``
(always split) or ``auto`` (fat when the measured compressed wheel fits ``max-file-size``).
A wheel over the limit is never written: :class:`WheelTooLarge` names the libraries and the
options.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from email.parser import HeaderParser
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from wheelmatrix import data
from wheelmatrix.errors import PackageError
from wheelmatrix.model import Matrix, PlatformSpec, Project, PythonTag
from wheelmatrix.plan import extension_suffix
from wheelmatrix.platforms import platform_of
from wheelmatrix.stages import repair as repair_mod
from wheelmatrix.wheelfile import (
    WheelContents,
    WheelName,
    compressed_size,
    escape_name,
    read_wheel,
    wheel_bytes,
    write_wheel,
)

GENERATOR = "wheelmatrix"
_FIX_SIZE = (
    'options: set [packaging] split = "per-cuda-major" (or "auto") in matrix.toml to publish one '
    "distribution per CUDA major; drop CUDA versions or SASS archs (keep PTX for the newest); "
    "or raise [packaging] max-file-size after PyPI grants a larger per-file limit"
)


class WheelTooLarge(PackageError):
    """A wheel would exceed ``packaging.max-file-size``; names what makes it large."""

    def __init__(self, wheel: str, size: int, limit: int, parts: Sequence[tuple[str, int]], *, split: bool) -> None:
        biggest = ", ".join(f"{name} ({_mib(n)})" for name, n in sorted(parts, key=lambda p: -p[1]))
        what = (
            f"{wheel} would be {_mib(size)} compressed, over the {_mib(limit)} limit "
            f"([packaging] max-file-size); its libraries, largest first: {biggest}"
        )
        fix = _FIX_SIZE
        if split:
            fix = (
                "this distribution is already split per CUDA major and one major alone is too large: "
                "drop SASS archs or CUDA minors of that major, or raise [packaging] max-file-size "
                "after PyPI grants a larger per-file limit"
            )
        super().__init__(what, fix=fix)
        self.size = size
        self.limit = limit
        self.parts = tuple(parts)


def _mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB"


@dataclass(frozen=True)
class CellWheel:
    """A cell build's wheel: which cell it came from and where it is."""

    cell_id: str
    platform: str
    variant: str  # "cpu" or "cudaXY"
    path: Path


@dataclass(frozen=True)
class Library:
    """A native library taken from a cell wheel, with its manifest and every file of its stem."""

    variant: str
    stem: str  # libmykernels_cuda124
    files: tuple[tuple[str, bytes], ...]  # (file name inside the library folder, data)
    manifest: dict[str, Any] = field(compare=False, hash=False)
    compressed: int = 0  # measured deflate size of its files in a wheel

    @property
    def cuda_major(self) -> int | None:
        m = re.fullmatch(r"cuda(\d+?)(\d)", self.variant)
        if self.variant == "cpu" or m is None:
            return None
        cuda = self.manifest.get("cuda")
        if isinstance(cuda, str) and "." in cuda:
            return int(cuda.split(".", 1)[0])
        return int(m.group(1))

    @property
    def filename(self) -> str:
        names = [n for n, _ in self.files if not n.endswith(".json")]
        return names[0] if names else self.files[0][0]


@dataclass(frozen=True)
class AssembledWheel:
    """One distribution's wheel as assembled (before repair)."""

    platform: str
    distribution: str  # mykernels, mykernels-cu12
    contents: WheelContents
    libraries: tuple[Library, ...]
    size: int  # compressed size of the wheel as written
    cell_ids: tuple[str, ...] = ()  # the cells it was made from, when not every cell of its variants

    @property
    def filename(self) -> str:
        return self.contents.filename


@dataclass(frozen=True)
class Assembly:
    platform: str
    layout: str  # "fat" or "split"
    reason: str
    wheels: tuple[AssembledWheel, ...]


def _library_prefix(project: Project) -> str:
    return project.library_folder


def _folder_of(project: Project, package: str) -> str:
    """The library folder of ``package`` (a split distribution's package keeps the same layout)."""
    return package + project.library_folder[len(project.import_package) :]


def extract_library(project: Project, cell: CellWheel, contents: WheelContents, expected: str) -> Library:
    """The library of ``cell.variant`` inside a cell wheel: ``expected`` (the platform's library
    pattern over [project] library, data/platforms.toml) and its manifest in the library folder."""
    stem = expected.rsplit(".", 1)[0]
    prefix = _library_prefix(project)
    names = {expected, stem + ".json"}
    files = tuple(
        sorted((name[len(prefix) :], data) for name, data in contents.files.items() if name[len(prefix) :] in names)
    )
    binaries = [n for n, _ in files if not n.endswith(".json")]
    manifests = [d for n, d in files if n == stem + ".json"]
    if not binaries:
        raise PackageError(
            f"cell wheel {cell.path.name} (cell {cell.cell_id}) has no {prefix}{expected}",
            fix="check the build writes the library into the wheel's library folder, then rebuild the cell",
        )
    if not manifests:
        raise PackageError(
            f"cell wheel {cell.path.name} (cell {cell.cell_id}) has no manifest {prefix}{stem}.json",
            fix="the cell stage writes it: rebuild the cell (`wheelmatrix build --cell " + cell.cell_id + "`)",
        )
    try:
        manifest = json.loads(manifests[0])
    except ValueError as exc:
        raise PackageError(f"{cell.path.name}: {prefix}{stem}.json is not JSON: {exc}") from exc
    if not isinstance(manifest, dict):
        raise PackageError(f"{cell.path.name}: {prefix}{stem}.json is not a JSON object")
    size = sum(compressed_size(d) for _, d in files)
    return Library(cell.variant, stem, files, manifest, size)


def _strip_libraries(project: Project, contents: WheelContents, libraries: Sequence[Library]) -> WheelContents:
    prefix = _library_prefix(project)
    drop = {prefix + name for lib in libraries for name, _ in lib.files}
    keep = {n: d for n, d in contents.files.items() if n not in drop}
    return WheelContents(contents.filename, keep, {n: m for n, m in contents.modes.items() if n in keep})


def _with_libraries(
    project: Project, base: WheelContents, libraries: Sequence[Library], package: str | None = None
) -> WheelContents:
    out = WheelContents(base.filename, dict(base.files), dict(base.modes))
    folder = _folder_of(project, package or project.import_package)
    for lib in libraries:
        for name, blob in lib.files:
            out.put(folder + name, blob)
    return out


def _set_headers(metadata: str, add: Sequence[tuple[str, str]]) -> str:
    """Append headers to a METADATA text, keeping its body (after the first blank line)."""
    head, sep, body = metadata.partition("\n\n")
    lines = head.rstrip("\n").split("\n")
    lines.extend(f"{k}: {v}" for k, v in add)
    return "\n".join(lines) + "\n" + (sep[1:] + body if sep else "")


def _wheel_file(tag: str) -> bytes:
    return f"Wheel-Version: 1.0\nGenerator: {GENERATOR}\nRoot-Is-Purelib: false\nTag: {tag}\n".encode()


def _check_cells(project: Project, platform: str, cells: Sequence[tuple[CellWheel, WheelContents]]) -> tuple[str, str]:
    versions = {(c.wheel_name.name, c.wheel_name.version) for _, c in cells}
    if len(versions) != 1:
        listing = ", ".join(sorted(f"{cw.path.name}" for cw, _ in cells))
        raise PackageError(
            f"the cell wheels of {platform} disagree on name or version: {listing}",
            fix="rebuild every cell from the same source tree (`wheelmatrix build`)",
        )
    name, version = versions.pop()
    if escape_name(name) != escape_name(project.name):
        raise PackageError(f"cell wheels of {platform} are for {name!r}, matrix.toml releases {project.name!r}")
    return name, version


def split_names(matrix: Matrix, major: int) -> tuple[str, str, str]:
    """(distribution, import package, extra) of the split distribution for CUDA ``major``."""
    dist = matrix.packaging.split_name.format(name=matrix.project.name, major=major)
    return dist, escape_name(dist), matrix.packaging.extra_name.format(name=matrix.project.name, major=major)


def cell_library_name(matrix: Matrix, platform: str, variant: str, tag: WheelName) -> str:
    """The library file a cell wheel of ``variant`` holds: ``libmykernels_cpu.so`` for a py3-none
    project, the extension module of the wheel's Python tag (``_mykernels_cpu.abi3.so``) otherwise."""
    spec = matrix.platform(platform)
    stem = matrix.project.library_stem(variant)
    if matrix.project.python.api == "none":
        return spec.library_pattern.format(name=stem)
    version = f"{tag.python[2]}.{tag.python[3:]}" if tag.python.startswith("cp") else None
    return stem + extension_suffix(spec, PythonTag(tag.python, tag.abi, version))


def _renamed(contents: WheelContents, dist: str, version: str) -> WheelContents:
    """``contents`` as the distribution ``dist``: its .dist-info folder and METADATA Name changed."""
    old = contents.dist_info
    new = f"{escape_name(dist)}-{version}.dist-info"
    tag = contents.wheel_name.tag
    out = WheelContents(f"{escape_name(dist)}-{version}-{tag}.whl", {}, {})
    for name, blob in contents.files.items():
        target = new + name[len(old) :] if name.startswith(old + "/") else name
        out.put(target, blob, contents.modes.get(name))
    meta = out.text(f"{new}/METADATA")
    out.put(f"{new}/METADATA", re.sub(r"(?m)^Name: .*$", f"Name: {dist}", meta, count=1).encode())
    return out


def assemble_standalone(matrix: Matrix, platform: str, cells: Sequence[CellWheel]) -> Assembly:
    """``split = "standalone"``: every cell wheel is a whole distribution of its own; the CPU
    variant's is the project, a CUDA variant's is named by ``packaging.cuda-name`` for its major and
    declares NVIDIA's runtime wheels of the components it links."""
    project = matrix.project
    limit = matrix.packaging.max_file_size
    read = [(c, read_wheel(c.path)) for c in sorted(cells, key=lambda c: c.cell_id)]
    _, version = _check_cells(project, platform, read)
    wheels: list[AssembledWheel] = []
    for cell, contents in read:
        lib = extract_library(
            project, cell, contents, cell_library_name(matrix, platform, cell.variant, contents.wheel_name)
        )
        dist = matrix.packaging.distribution(project.name, lib.cuda_major)
        out = _renamed(contents, dist, version) if dist != project.name else contents
        out.put(f"{out.dist_info}/WHEEL", _wheel_file(out.wheel_name.tag))
        metadata = f"{out.dist_info}/METADATA"
        requires = [] if matrix.packaging.split == "core-plugin" else _runtime_headers(matrix, [lib])
        if requires:  # core-plugin: its core declares them (split_core_plugin), the plugin requires the core
            out.put(metadata, _set_headers(out.text(metadata), requires).encode())
        size = len(wheel_bytes(out))
        if size > limit and matrix.packaging.split != "core-plugin":  # core-plugin: its core and plugin are sized
            raise WheelTooLarge(out.filename, size, limit, [(lib.filename, lib.compressed)], split=True)
        wheels.append(AssembledWheel(platform, dist, out, (lib,), size, (cell.cell_id,)))
    if matrix.packaging.split == "core-plugin":
        reason = (
            'core-plugin ([packaging] split = "core-plugin"): one distribution per variant, each a py3-none core '
            "and a plugin per Python tag"
        )
        return Assembly(platform, "core-plugin", reason, tuple(wheels))
    reason = 'standalone ([packaging] split = "standalone"): one distribution per variant and Python tag'
    return Assembly(platform, "standalone", reason, tuple(wheels))


def _runtime_headers(matrix: Matrix, libraries: Sequence[Library]) -> list[tuple[str, str]]:
    """METADATA headers declaring NVIDIA's runtime wheels of ``libraries`` (under ``cuda-extra`` when set)."""
    extra = matrix.packaging.cuda_extra
    requires = [
        ("Requires-Dist", req + (f'; extra == "{extra}"' if extra else ""))
        for req in runtime_requirements(matrix, libraries)
    ]
    if requires and extra:
        requires.insert(0, ("Provides-Extra", extra))
    return requires


class CoreFilesDiffer(PackageError):
    """A core file is not byte-identical across the per-Python cells of its distribution."""


@dataclass(frozen=True)
class CorePlugin:
    """A repaired cell wheel of a core-plugin release, split: its plugin and the core it shares."""

    plugin: WheelContents
    core: WheelContents
    core_files: tuple[str, ...]  # the files of the core outside its .dist-info


def _core_member(matrix: Matrix, name: str) -> bool:
    """Whether a wheel entry belongs to the core: a core-files glob under the import package, or
    anything the repair vendored (``<dist>.libs/``)."""
    top, _, rest = name.partition("/")
    if top.endswith(".libs") and rest:
        return True
    if top != matrix.project.import_package or not rest:
        return False
    return any(fnmatchcase(rest, g) for g in matrix.packaging.core_files)


def split_core_plugin(matrix: Matrix, contents: WheelContents, cell: str, module: str) -> CorePlugin:
    """Split one repaired cell wheel (a whole distribution) into its py3-none core and its plugin.

    The core holds the files ``[packaging] core-files`` matches (and what the repair vendored) and
    declares NVIDIA's runtime wheels; the plugin keeps the rest (the extension module, the Python
    package, the metadata) and requires the core at the exact version. Both install into the same
    import package, so the module's ``$ORIGIN`` run path finds the core's library unchanged.
    """
    name = contents.wheel_name
    info = contents.dist_info
    taken = sorted(n for n in contents.files if not n.startswith(info + "/") and _core_member(matrix, n))
    where = matrix.project.import_package + "/"
    if not taken:
        there = sorted(n for n in contents.files if not n.startswith(info + "/"))
        raise PackageError(
            f"{contents.filename} (cell {cell}): [packaging] core-files {list(matrix.packaging.core_files)} match no "
            f"file under {where}; the wheel holds {', '.join(there)}",
            fix="build the kernels as a shared library installed in the import package beside the module, or "
            "correct core-files (globs relative to the import package) in matrix.toml",
        )
    if matrix.project.library_folder + module in taken:
        raise PackageError(
            f"{contents.filename} (cell {cell}): [packaging] core-files {list(matrix.packaging.core_files)} match the "
            f"extension module {module}, which is built per Python and belongs to the plugin",
            fix="narrow core-files to the kernel libraries (e.g. lib*_kernels*.so*)",
        )
    meta_text = contents.text(f"{info}/METADATA")
    parsed = HeaderParser().parsestr(meta_text)
    plugin_name = str(parsed.get("Name") or name.name)
    core_dist = matrix.packaging.core(plugin_name)
    libraries = _libraries_of(matrix, contents, module)
    runtime = _runtime_headers(matrix, libraries)
    extra = matrix.packaging.cuda_extra
    plugin = WheelContents(contents.filename, {}, {})
    for n, blob in contents.files.items():
        if n not in taken:
            plugin.put(n, blob, contents.modes.get(n))
    requires = [("Requires-Dist", f"{core_dist}=={name.version}")]
    if runtime and extra:
        requires += [
            ("Provides-Extra", extra),
            ("Requires-Dist", f'{core_dist}[{extra}]=={name.version}; extra == "{extra}"'),
        ]
    plugin.put(f"{info}/METADATA", _set_headers(meta_text, requires).encode())
    core_info = f"{escape_name(core_dist)}-{name.version}.dist-info"
    headers = [
        ("Metadata-Version", "2.1"),
        ("Name", core_dist),
        ("Version", name.version),
        ("Summary", f"The shared libraries of {plugin_name} (its plugin {plugin_name} holds the extension module)"),
    ]
    if parsed.get("Requires-Python"):
        headers.append(("Requires-Python", str(parsed.get("Requires-Python"))))
    headers += runtime
    content_type = parsed.get("Description-Content-Type")
    if content_type:  # the plugin's description: PyPI's page of the core and twine check --strict
        headers.append(("Description-Content-Type", str(content_type)))
    body = meta_text.partition("\n\n")[2]
    platforms = name.platform.split(".")
    core = WheelContents(f"{escape_name(core_dist)}-{name.version}-py3-none-{name.platform}.whl", {}, {})
    for n in taken:
        core.put(n, contents.files[n], contents.modes.get(n))
    core.put(f"{core_info}/METADATA", ("".join(f"{k}: {v}\n" for k, v in headers) + "\n" + body).encode())
    tags = "".join(f"Tag: py3-none-{p}\n" for p in platforms)
    core.put(
        f"{core_info}/WHEEL", f"Wheel-Version: 1.0\nGenerator: {GENERATOR}\nRoot-Is-Purelib: false\n{tags}".encode()
    )
    core.put(f"{core_info}/RECORD", b"")
    return CorePlugin(plugin, core, tuple(taken))


def _libraries_of(matrix: Matrix, contents: WheelContents, module: str) -> list[Library]:
    """The module's manifest as a Library (its components say which NVIDIA wheels the core needs)."""
    stem = module.rsplit(".", 1)[0]
    folder = matrix.project.library_folder
    raw = contents.files.get(folder + stem + ".json")
    if raw is None:
        return []
    manifest = json.loads(raw)
    cuda = manifest.get("cuda") if isinstance(manifest, dict) else None
    variant = "cpu" if not isinstance(cuda, str) else "cuda" + cuda.replace(".", "")
    return [Library(variant, stem, ((module, b""),), manifest)]


def merge_cores(platform: str, splits: Sequence[tuple[str, CorePlugin]]) -> WheelContents:
    """The one core of a distribution on a platform from its per-Python cells: every cell must have
    made the same core files, byte for byte (they come from the variant's one build tree)."""
    first_cell, first = splits[0]
    for cell, other in splits[1:]:
        names = set(first.core_files) | set(other.core_files)
        for n in sorted(names):
            a, b = first.core.files.get(n), other.core.files.get(n)
            if a != b:
                digest = {
                    c: hashlib.sha256(x).hexdigest() if x is not None else "absent"
                    for c, x in ((first_cell, a), (cell, b))
                }
                raise CoreFilesDiffer(
                    f"the core file {n} of {first.core.filename} ({platform}) differs between the cells "
                    + " and ".join(f"{c} (sha256 {d})" for c, d in digest.items())
                    + ": the core is one py3-none wheel for every Python and cannot hold two",
                    fix="build the kernels library without Python in it (no Python headers, symbols or paths; "
                    "the same flags in every per-Python build of the variant's tree) and rebuild the cells, or "
                    "narrow [packaging] core-files to the files that do not depend on the Python",
                )
    return first.core


def assemble_platform(matrix: Matrix, platform: str, cells: Sequence[CellWheel]) -> Assembly:
    """Decide fat or split for one platform from measured sizes and build the wheels in memory."""
    if matrix.packaging.per_distribution:
        return assemble_standalone(matrix, platform, cells)
    project = matrix.project
    limit = matrix.packaging.max_file_size
    read = [(c, read_wheel(c.path)) for c in sorted(cells, key=lambda c: c.variant)]
    _, version = _check_cells(project, platform, read)
    base_cells = [(c, w) for c, w in read if c.variant == "cpu"]
    if not base_cells:
        raise PackageError(
            f"no cpu cell wheel for {platform}: it carries the loader every distribution of the platform needs",
            fix=f"build the cell {platform}-cpu (`wheelmatrix build --cell {platform}-cpu`)",
        )
    base_raw = base_cells[0][1]
    pattern = matrix.platform(platform).library_pattern
    libraries = [extract_library(project, c, w, pattern.format(name=project.library_stem(c.variant))) for c, w in read]
    base = _strip_libraries(project, base_raw, libraries)
    tag = base.wheel_name.tag
    base.put(f"{base.dist_info}/WHEEL", _wheel_file(tag))
    cuda_libs = [lib for lib in libraries if lib.cuda_major is not None]
    cpu_libs = [lib for lib in libraries if lib.cuda_major is None]

    def make(contents: WheelContents, dist: str, libs: Sequence[Library]) -> AssembledWheel:
        size = len(wheel_bytes(contents))
        return AssembledWheel(platform, dist, contents, tuple(libs), size)

    metadata_name = f"{base.dist_info}/METADATA"
    majors = sorted({lib.cuda_major for lib in cuda_libs if lib.cuda_major is not None})
    fat_contents = _with_libraries(project, base, libraries)
    # the extras of the split layout exist (empty) in a fat wheel too, so `mykernels[cu12]` installs
    # whichever layout a release has
    fat_extras = [("Provides-Extra", split_names(matrix, m)[2]) for m in majors]
    runtime = {m: runtime_requirements(matrix, [lib for lib in cuda_libs if lib.cuda_major == m]) for m in majors}
    needing = [m for m in majors if runtime[m]]
    for m in needing:  # NVIDIA's runtime wheels for the CUDA components the libraries link
        marker = "" if len(needing) == 1 else f'; extra == "{split_names(matrix, m)[2]}"'
        fat_extras += [("Requires-Dist", req + marker) for req in runtime[m]]
    fat_contents.put(metadata_name, _set_headers(fat_contents.text(metadata_name), fat_extras).encode())
    fat = make(fat_contents, project.name, libraries)
    strategy = matrix.packaging.split
    if strategy == "fat" or (strategy == "auto" and fat.size <= limit) or not cuda_libs:
        if fat.size > limit:
            raise WheelTooLarge(
                fat.filename, fat.size, limit, [(lib.filename, lib.compressed) for lib in libraries], split=False
            )
        reason = (
            f"fat: {_mib(fat.size)} fits the {_mib(limit)} limit"
            if strategy != "fat"
            else f'fat by policy ([packaging] split = "fat"), {_mib(fat.size)} of {_mib(limit)}'
        )
        return Assembly(platform, "fat", reason, (fat,))
    reason = (
        f"split per CUDA major: the fat wheel would be {_mib(fat.size)}, over the {_mib(limit)} limit"
        if strategy == "auto"
        else 'split per CUDA major by policy ([packaging] split = "per-cuda-major")'
    )
    extras: list[tuple[str, str]] = []
    pieces: list[AssembledWheel] = []
    requires_python = HeaderParser().parsestr(base.text(metadata_name)).get("Requires-Python")
    for major in majors:
        dist, package, extra = split_names(matrix, major)
        libs = [lib for lib in cuda_libs if lib.cuda_major == major]
        extras += [("Provides-Extra", extra), ("Requires-Dist", f'{dist}=={version}; extra == "{extra}"')]
        info = f"{escape_name(dist)}-{version}.dist-info"
        headers = [
            ("Metadata-Version", "2.1"),
            ("Name", dist),
            ("Version", version),
            ("Summary", f"CUDA {major} libraries of {project.name} (installed by {project.name}[{extra}])"),
        ]
        if requires_python:
            headers.append(("Requires-Python", str(requires_python)))
        headers.append(("Requires-Dist", f"{project.name}=={version}"))
        headers += [("Requires-Dist", req) for req in runtime[major]]
        piece = WheelContents(f"{escape_name(dist)}-{version}-{tag}.whl", {}, {})
        piece.put(
            f"{package}/__init__.py",
            f'"""CUDA {major} libraries of {project.name}; found through the entry-point group {project.import_package}.libraries."""\n'.encode(),
        )
        piece.put(f"{info}/METADATA", ("".join(f"{k}: {v}\n" for k, v in headers)).encode())
        piece.put(f"{info}/WHEEL", _wheel_file(tag))
        piece.put(f"{info}/entry_points.txt", f"[{project.import_package}.libraries]\n{extra} = {package}\n".encode())
        piece.put(f"{info}/RECORD", b"")
        piece = _with_libraries(project, piece, libs, package)
        assembled = make(piece, dist, libs)
        if assembled.size > limit:
            raise WheelTooLarge(
                assembled.filename, assembled.size, limit, [(lib.filename, lib.compressed) for lib in libs], split=True
            )
        pieces.append(assembled)
    base_split = _with_libraries(project, base, cpu_libs)
    base_split.put(metadata_name, _set_headers(base_split.text(metadata_name), extras).encode())
    main = make(base_split, project.name, cpu_libs)
    if main.size > limit:
        raise WheelTooLarge(
            main.filename, main.size, limit, [(lib.filename, lib.compressed) for lib in cpu_libs], split=True
        )
    return Assembly(platform, "split", reason, (main, *pieces))


def _components(lib: Library) -> list[str]:
    flags = lib.manifest.get("flags")
    names = flags.get("components", []) if isinstance(flags, dict) else []
    return [str(n) for n in names] if isinstance(names, list) else []


def runtime_requirements(matrix: Matrix, libraries: Sequence[Library]) -> list[str]:
    """Requirements on NVIDIA's runtime wheels for the CUDA components ``libraries`` link
    (``nvidia-cublas==13.*``): any release of the CUDA major serves a library built with one of
    its minors (minor-version compatibility). None when the matrix vendors them."""
    if matrix.packaging.cuda_libraries != "depend":
        return []
    known = data.components()
    out: set[str] = set()
    for lib in libraries:
        major = lib.cuda_major
        for name in _components(lib):
            wheel = known[name].runtime_wheel(major) if name in known and major is not None else None
            if wheel is not None:
                out.add(f"{wheel}=={major}.*")
    return sorted(out)


def never_vendor(matrix: Matrix, platform: str, libraries: Sequence[Library]) -> list[str]:
    """Library globs the repair must not vendor: the CUDA components declared as dependencies."""
    if matrix.packaging.cuda_libraries != "depend":
        return []
    known = data.components()
    pattern = matrix.platform(platform).library_pattern
    return sorted(
        {
            pattern.format(name=so) + "*"
            for lib in libraries
            for n in _components(lib)
            if n in known
            for so in known[n].libraries
        }
    )


def group_cells(cells: Sequence[CellWheel]) -> dict[str, list[CellWheel]]:
    by_platform: dict[str, list[CellWheel]] = {}
    for c in cells:
        by_platform.setdefault(c.platform, []).append(c)
    return dict(sorted(by_platform.items()))


def library_names(libraries: Sequence[Library]) -> tuple[str, ...]:
    """The native libraries (not manifests) of a wheel."""
    return tuple(sorted(lib.filename for lib in libraries))


def describe(wheel: WheelName) -> str:
    return wheel.filename()


@dataclass(frozen=True)
class FinalWheel:
    """A wheel written to ``dist/``: assembled, repaired, within the size limit."""

    platform: str
    distribution: str
    layout: str  # fat or split
    path: Path
    size: int
    limit: int
    tag: str  # platform tag in the file name
    rated: str | None  # auditwheel's overall_tag (Linux)
    repair_tool: str
    vendored: tuple[str, ...]
    excluded: tuple[str, ...]
    libraries: tuple[str, ...]
    manifests: tuple[dict[str, Any], ...]
    sha256: str
    cells: tuple[str, ...]
    reason: str

    @property
    def percent(self) -> float:
        return 100.0 * self.size / self.limit if self.limit else 0.0


def assemble_all(
    matrix: Matrix,
    cells: Sequence[CellWheel],
    dist: Path,
    *,
    repair: bool = True,
    exclude: Sequence[str] = (),
    timeout: float = 900,
) -> list[FinalWheel]:
    """Assemble, write, repair and size-check every platform's wheels; move them into ``dist``.

    Nothing reaches ``dist`` unless every wheel of every platform passed: the work happens in
    ``dist/.staging`` which is removed on failure.
    """
    if not cells:
        raise PackageError("there are no cell wheels to assemble", fix="run `wheelmatrix build` first")
    staging = dist / ".staging"
    if staging.exists():
        shutil.rmtree(staging)
    (staging / "assembled").mkdir(parents=True)
    (staging / "repaired").mkdir(parents=True)
    finals: list[FinalWheel] = []
    limit = matrix.packaging.max_file_size
    try:
        for platform, group in group_cells(cells).items():
            spec = matrix.platform(platform)
            assembly = assemble_platform(matrix, platform, group)
            repaired: list[tuple[AssembledWheel, repair_mod.Repaired]] = []
            for wheel in assembly.wheels:
                raw = write_wheel(wheel.contents, staging / "assembled")
                keep_out = [*exclude, *never_vendor(matrix, platform, wheel.libraries)]
                if repair:
                    done = platform_of(spec).repair(raw, spec, staging / "repaired", exclude=keep_out, timeout=timeout)
                else:
                    done = repair_mod.repair(raw, _no_repair(spec), staging / "repaired", timeout=timeout)
                size = done.path.stat().st_size
                if size > limit and assembly.layout != "core-plugin":  # core-plugin: its core and plugin are sized
                    raise WheelTooLarge(
                        done.path.name + " (after repair)",
                        size,
                        limit,
                        [(lib.filename, lib.compressed) for lib in wheel.libraries] + [(v, 0) for v in done.vendored],
                        split=assembly.layout == "split",
                    )
                if assembly.layout == "core-plugin":  # split once every cell of the platform is repaired
                    repaired.append((wheel, done))
                    continue
                data = done.path.read_bytes()
                finals.append(
                    FinalWheel(
                        platform=platform,
                        distribution=wheel.distribution,
                        layout=assembly.layout,
                        path=done.path,
                        size=size,
                        limit=limit,
                        tag=WheelName.parse(done.path.name).platform,
                        rated=done.rated,
                        repair_tool=done.tool,
                        vendored=done.vendored,
                        excluded=done.excluded,
                        libraries=library_names(wheel.libraries),
                        manifests=tuple(lib.manifest for lib in wheel.libraries),
                        sha256=hashlib.sha256(data).hexdigest(),
                        cells=wheel.cell_ids
                        or tuple(
                            sorted(c.cell_id for c in group if any(lib.variant == c.variant for lib in wheel.libraries))
                        ),
                        reason=assembly.reason,
                    )
                )
            if repaired:
                finals += _core_plugin_finals(matrix, platform, assembly, repaired, staging / "split")
        dist.mkdir(parents=True, exist_ok=True)
        for stale in _project_wheels(matrix, dist, {f.platform for f in finals}):
            stale.unlink()  # an earlier layout's wheels (fat before, split now) must not be published
        moved: list[FinalWheel] = []
        for final in finals:
            target = dist / final.path.name
            shutil.move(final.path, target)
            moved.append(_replace_path(final, target))
        return moved
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _core_plugin_finals(
    matrix: Matrix,
    platform: str,
    assembly: Assembly,
    repaired: Sequence[tuple[AssembledWheel, repair_mod.Repaired]],
    folder: Path,
) -> list[FinalWheel]:
    """Split each repaired cell wheel into its plugin and core; one core per distribution (checked
    byte-identical across its cells), every wheel written to ``folder`` and size-checked."""
    limit = matrix.packaging.max_file_size
    folder.mkdir(parents=True, exist_ok=True)
    by_dist: dict[str, list[tuple[str, CorePlugin, AssembledWheel, repair_mod.Repaired]]] = {}
    for wheel, done in repaired:
        cell = wheel.cell_ids[0]
        module = wheel.libraries[0].filename
        split = split_core_plugin(matrix, read_wheel(done.path), cell, module)
        by_dist.setdefault(wheel.distribution, []).append((cell, split, wheel, done))
    out: list[FinalWheel] = []

    def final(contents: WheelContents, dist: str, done: repair_mod.Repaired, **kw: Any) -> FinalWheel:
        path = write_wheel(contents, folder)
        size = path.stat().st_size
        if size > limit:
            parts = [(n, len(b)) for n, b in contents.files.items() if n.rsplit("/", 1)[-1] in kw["libraries"]]
            raise WheelTooLarge(path.name, size, limit, parts, split=True)
        return FinalWheel(
            platform=platform,
            distribution=dist,
            layout=assembly.layout,
            path=path,
            size=size,
            limit=limit,
            tag=WheelName.parse(path.name).platform,
            rated=done.rated,
            repair_tool=done.tool,
            excluded=done.excluded,
            sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
            reason=assembly.reason,
            **kw,
        )

    for dist, splits in sorted(by_dist.items()):
        core = merge_cores(platform, [(c, sp) for c, sp, _, _ in splits])
        first_done = splits[0][3]
        core_files = splits[0][1].core_files
        out.append(
            final(
                core,
                matrix.packaging.core(dist),
                first_done,
                vendored=tuple(sorted({v for *_, d in splits for v in d.vendored})),
                libraries=tuple(n.rsplit("/", 1)[-1] for n in core_files),
                manifests=(),
                cells=tuple(sorted(c for c, *_ in splits)),
            )
        )
        for cell, sp, wheel, done in splits:
            out.append(
                final(
                    sp.plugin,
                    dist,
                    done,
                    vendored=(),
                    libraries=library_names(wheel.libraries),
                    manifests=tuple(lib.manifest for lib in wheel.libraries),
                    cells=(cell,),
                )
            )
    return out


def _project_wheels(matrix: Matrix, dist: Path, platforms: set[str]) -> list[Path]:
    """Wheels in ``dist`` of the project or its split distributions, for these platforms."""
    names = [
        escape_name(matrix.project.name),
        escape_name(matrix.packaging.split_name.format(name=matrix.project.name, major="*")),
        escape_name(matrix.packaging.cuda_name.format(name=matrix.project.name, major="*")),
    ]
    if matrix.packaging.split == "core-plugin":
        names += [escape_name(matrix.packaging.core(n)) for n in names]
    arches = {matrix.platform(p).wheel_arch for p in platforms}
    found = []
    for path in sorted(dist.glob("*.whl")):
        try:
            wheel = WheelName.parse(path.name)
        except PackageError:
            continue
        if any(fnmatchcase(escape_name(wheel.name), n) for n in names) and any(
            wheel.platform.endswith(a) for a in arches
        ):
            found.append(path)
    return found


def _replace_path(final: FinalWheel, path: Path) -> FinalWheel:
    return replace(final, path=path)


def _no_repair(spec: PlatformSpec) -> PlatformSpec:
    return replace(spec, repair="none")
