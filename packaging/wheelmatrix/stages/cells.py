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
import shutil
import signal
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from wheelmatrix import __version__, _proc
from wheelmatrix.errors import BuildError, CommandFailed, WheelmatrixError
from wheelmatrix.model import CudaSpec, Project
from wheelmatrix.plan import BuildSpec
from wheelmatrix.platforms import platform_of
from wheelmatrix.stages import finish
from wheelmatrix.wheelfile import source_date_epoch

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

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
    jobs: int = 1
    timeout: float = DEFAULT_TIMEOUT
    isolation: bool = True  # python -m build's isolated environment (PEP 517)
    python: str = sys.executable
    offline: bool = False
    extra_settings: tuple[str, ...] = ()  # more -C settings for every cell
    on_event: Callable[[str, CellResult | None, str], None] | None = None  # (cell id, result or None, message)
    env: dict[str, str] = field(default_factory=dict)


def default_jobs(cores: int | None = None) -> int:
    """Cells at once: each cell gets at least two cores (CMake's parallel level, nvcc threads)."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // 2)


def _define(name: str, value: str) -> str:
    return f"cmake.define.{name}={value}"


def toolchain_file(spec: BuildSpec, folder: Path, toolchain: Toolchain | None) -> Path:
    """Write the cell's CMake toolchain file (and the wrapper scripts it names) into ``folder``."""
    lines = [
        f"# Generated by wheelmatrix {__version__} for the cell {spec.cell_id}; rewritten by every build.",
        *platform_of(spec.platform).toolchain_file(spec, folder / "tools"),
    ]
    if spec.cuda is not None:
        flags = " ".join(spec.cuda.facts.compress)
        lines += [
            f"# CUDA {spec.cuda.version}: fatbins compressed without raising the driver floor",
            f'set(CMAKE_CUDA_FLAGS_INIT "{flags}")',
        ]
    if toolchain is not None:
        for arg in toolchain.cmake_args:
            if not arg.startswith("-D") or "=" not in arg:
                raise BuildError(f"toolchain CMake argument {arg!r} is not -DNAME=VALUE")
            name, _, value = arg[2:].partition("=")
            lines.append(f'set({name.split(":", 1)[0]} "{value}" CACHE STRING "wheelmatrix: the cell\'s toolchain")')
    path = folder / "toolchain.cmake"
    path.write_text("\n".join(lines) + "\n")
    return path


def cell_settings(spec: BuildSpec) -> tuple[str, ...]:
    """The scikit-build-core config settings of ``spec``'s project defines."""
    return tuple(_define(name, value) for name, value in spec.defines)


def cell_env(spec: BuildSpec, toolchain: Toolchain | None, parallel: int) -> dict[str, str]:
    env = dict(toolchain.env) if toolchain is not None else {}
    env["SOURCE_DATE_EPOCH"] = str(source_date_epoch())
    env["CMAKE_BUILD_PARALLEL_LEVEL"] = str(parallel)
    if spec.cuda is not None:
        # nvcc compiles the archs of one file in parallel; this cell's share of the cores. Not in
        # the cache key: it changes how fast, not what is built.
        env["NVCC_APPEND_FLAGS"] = (os.environ.get("NVCC_APPEND_FLAGS", "") + f" --threads={parallel}").strip()
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
    return [n for n in done.output.split("\0") if n]


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
        else {"sass": list(cuda.sass), "ptx": list(cuda.ptx), "components": list(cuda.component_names)},
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


def build_tree_key(spec: BuildSpec) -> str:
    """The persistent build tree of a per-Python cell: one per platform and variant (no Python axis)."""
    return f"{spec.platform.name}-{spec.variant}"


def build_tree(work: Path, spec: BuildSpec) -> Path:
    return work.resolve() / "trees" / build_tree_key(spec)


_tree_locks: dict[str, threading.Lock] = {}


def tree_lock(spec: BuildSpec) -> threading.Lock:
    """The cells sharing a build tree run in sequence, whatever ``--jobs`` says."""
    with _identity_lock:
        return _tree_locks.setdefault(build_tree_key(spec), threading.Lock())


def build_requirements(project: Project) -> list[str]:
    """``[build-system] requires`` of the project's pyproject.toml, plus the ``build`` frontend."""
    try:
        doc = tomllib.loads((project.source / "pyproject.toml").read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BuildError(f"cannot read {project.source / 'pyproject.toml'}: {exc}") from None
    requires = doc.get("build-system", {}).get("requires", [])
    return sorted({*map(str, requires), "build>=1.2"})


def shared_build_env(work: Path, project: Project, oldest: str, timeout: float) -> Path:
    """A folder holding the project's build requirements for every Python of the matrix, installed
    once by the oldest interpreter (so its environment markers hold); put on PYTHONPATH."""
    requires = build_requirements(project)
    key = hashlib.sha256(json.dumps([requires, oldest]).encode()).hexdigest()[:16]
    folder = work.resolve() / "buildenv" / key
    if (folder / "complete").is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    log = folder.parent / f"{key}.log"
    try:
        _proc.run(
            [oldest, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", folder, *requires],
            timeout=timeout,
            log_file=log,
        )
    except WheelmatrixError as exc:
        raise BuildError(
            f"the build environment of the per-Python cells ({', '.join(requires)}) did not install with {oldest}: "
            f"{exc.message.splitlines()[0]} (log: {log})",
            fix="check that the index (PyPI) is reachable and that [build-system] requires of the project's "
            "pyproject.toml installs on the oldest Python of [matrix] python",
        ) from exc
    (folder / "complete").write_text(json.dumps(requires) + "\n")
    return folder


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
    out = folder / "wheel"
    shutil.rmtree(out, ignore_errors=True)
    try:
        chain = toolchain_file(spec, folder, toolchain)
    except WheelmatrixError as exc:
        return failed(exc.message, **common)
    env = {**cell_env(spec, toolchain, parallel), **options.env}
    tree = folder / "cmake"
    if spec.interpreter is not None:
        if build_env is None:
            return failed("no shared build environment for a per-Python cell", **common)
        argv, more = python_build_argv(spec, build_env, out)
        env.update(more)
        tree = build_tree(options.work, spec)
    else:
        argv = [options.python, "-m", "build", "--wheel", "--outdir", str(out)]
        if not options.isolation:
            argv.append("--no-isolation")
    argv += [f"-C{s}" for s in settings]
    argv += [f"-C{_define('CMAKE_TOOLCHAIN_FILE', str(chain))}"]
    argv += [f"-Cbuild-dir={tree}", str(spec.project.source)]
    t1 = time.monotonic()
    try:
        with tree_lock(spec) if spec.interpreter is not None else contextlib.nullcontext():
            _proc.run(argv, cwd=spec.project.source, extra_env=env, timeout=options.timeout, log_file=log)
    except CommandFailed as exc:
        if exc.timed_out:
            reason = f"timed out after {options.timeout:g} s; the build and all its children were killed"
        else:
            reason = f"the build exited with code {exc.returncode}"
        return failed(reason, exc.tail, build_seconds=time.monotonic() - t1, **common)
    except WheelmatrixError as exc:
        return failed(exc.message, build_seconds=time.monotonic() - t1, **common)
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


def _replace(result: CellResult, **changes: object) -> CellResult:
    return replace(result, **changes)  # type: ignore[arg-type]


def build_cells(specs: Sequence[BuildSpec], options: BuildOptions, provide: Provider | None = None) -> list[CellResult]:
    """Build ``specs`` (unbuildable ones are skipped with the plan's reason), ``options.jobs`` at once.

    Results come back in the order of ``specs`` and are written to ``<work>/cells.json``.
    """
    jobs = max(1, options.jobs)
    cores = os.cpu_count() or 1
    parallel = max(1, cores // jobs)
    digests: dict[Path, str] = {}
    for spec in specs:
        if spec.buildable and spec.project.source not in digests:
            digests[spec.project.source] = source_digest(spec.project)
    options.work.mkdir(parents=True, exist_ok=True)
    events = options.on_event

    build_env: Path | None = None
    oldest = oldest_interpreter(specs)
    if oldest is not None:
        project = next(s.project for s in specs if s.interpreter is not None)
        build_env = shared_build_env(options.work, project, oldest, options.timeout)

    def one(spec: BuildSpec) -> CellResult:
        if events is not None and spec.buildable:
            events(spec.cell_id, None, "building")
        result = build_cell(
            spec,
            options,
            provide,
            parallel=parallel,
            sources=digests.get(spec.project.source, ""),
            build_env=build_env,
        )
        if events is not None:
            events(spec.cell_id, result, result.status)
        return result

    start = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="cell")
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
    write_results(options.work, results, wall_seconds=time.monotonic() - start)
    return results


def kill_running_builds() -> list[int]:
    """Kill the process groups of this process's children that lead their own session.

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
            try:
                os.killpg(pid, signal.SIGKILL)
                killed.append(pid)
            except ProcessLookupError:
                pass
    return killed


def write_results(work: Path, results: Sequence[CellResult], *, wall_seconds: float = 0.0) -> Path:
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
