"""Stage: cell builds. Each buildable cell of the plan becomes one cell wheel.

A cell is built by the project's own build backend (scikit-build-core) through
``python -m build --wheel``, with the cell's toolchain, SASS/PTX lists and link choices passed as
config settings (``-C cmake.define.NAME=VALUE``). Every cell

* runs with a timeout that kills the build and every child (``wheelmatrix._proc.run`` runs it in
  its own process group), with its own log file;
* returns a :class:`CellResult`: built, cached, failed (with the log's tail) or skipped (with the
  plan's reason). A failed cell never loses the others' results;
* has a content-addressed cache key (:func:`cache_key`): the project's build inputs (kernel
  sources, CMake files, pyproject, Python package), the config settings, the toolchain identity,
  the host compiler, ``SOURCE_DATE_EPOCH`` and wheelmatrix's own version. An unchanged cell is
  served from the cache.

The results are written to ``<work>/cells.json`` (:data:`RESULTS_FILE`), the hand-off to assemble.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol

from wheelmatrix import __version__, _proc
from wheelmatrix.stages.repair import glibc_of
from wheelmatrix.wheelfile import source_date_epoch
from wheelmatrix.errors import BuildError, CommandFailed, WheelmatrixError
from wheelmatrix.model import CudaSpec, Matrix
from wheelmatrix.plan import Cell

Status = Literal["built", "cached", "failed", "skipped"]
RESULTS_FILE = "cells.json"
RESULTS_SCHEMA = 1
CACHE_FORMAT = 1
DEFAULT_TIMEOUT = 3600.0
# What of the project's tree goes into a cell's cache key (files, or folders taken whole).
KEY_INPUTS = ("pyproject.toml", "CMakeLists.txt", "csrc", "cmake", "src")
_IGNORED_PARTS = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
MINGW_TOOLCHAIN_FILE = "cmake/mingw-w64-x86_64.cmake"


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


def cell_settings(matrix: Matrix, cell: Cell, toolchain: Toolchain | None) -> tuple[str, ...]:
    """The scikit-build-core config settings of ``cell`` (without the build folder)."""
    project = matrix.project
    platform = matrix.platform(cell.platform)
    settings: list[str] = [_define("KBIT_BACKEND", "cpu" if cell.cuda is None else "cuda")]
    if cell.cuda is not None:
        spec = matrix.cuda_spec(cell.cuda)
        settings += [
            _define("KBIT_CUDA_SASS", ";".join(str(a) for a in cell.sass)),
            _define("KBIT_CUDA_PTX", ";".join(str(a) for a in cell.ptx)),
            _define("KBIT_CUDA_RUNTIME", "static"),
            _define("KBIT_CUDA_COMPRESS_FLAGS", ";".join(spec.facts.compress)),
        ]
    if toolchain is not None:
        for arg in toolchain.cmake_args:
            if not arg.startswith("-D") or "=" not in arg:
                raise BuildError(f"toolchain CMake argument {arg!r} is not -DNAME=VALUE")
            name, _, value = arg[2:].partition("=")
            settings.append(_define(name.split(":", 1)[0], value))
    glibc = glibc_of(platform.policy)
    host = host_glibc()
    if platform.os == "linux" and _host_os() == "linux" and glibc is not None and host is not None and glibc < host:
        # the policy's glibc is older than this host's: link the final library with zig against
        # that glibc (docs/build.md, "glibc floor")
        settings += [_define("KBIT_LINK_GLIBC", f"{glibc[0]}.{glibc[1]}"), _define("KBIT_ZIG", zig_command())]
    if platform.os == "windows" and _host_os() != "windows":
        settings.append(_define("CMAKE_TOOLCHAIN_FILE", str((project.source / MINGW_TOOLCHAIN_FILE).resolve())))
    return tuple(settings)


def host_glibc() -> tuple[int, int] | None:
    """This host's glibc (2, 36), or None (not glibc)."""
    try:
        text = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (ValueError, OSError, AttributeError):
        return None
    parts = text.split()
    if len(parts) != 2 or parts[0] != "glibc":
        return None
    major, _, minor = parts[1].partition(".")
    return (int(major), int(minor.split(".")[0])) if major.isdigit() and minor[:1].isdigit() else None


def zig_command() -> str:
    """The zig of wheelmatrix's environment (the ``ziglang`` package), for KBIT_ZIG."""
    try:
        import ziglang  # type: ignore[import-untyped,import-not-found,unused-ignore]  # noqa: PLC0415  (optional: the build extra)
    except ImportError as exc:
        found = shutil.which("zig")
        if found:
            return found
        raise BuildError(
            "linking for an older glibc needs zig, and neither the ziglang package nor zig on PATH was found",
            fix="pip install 'wheelmatrix[build]' (it brings ziglang)",
        ) from exc
    return str(Path(ziglang.__file__).parent / "zig")


def _host_os() -> str:
    return "windows" if sys.platform == "win32" else "macos" if sys.platform == "darwin" else "linux"


def cell_env(matrix: Matrix, cell: Cell, toolchain: Toolchain | None, parallel: int) -> dict[str, str]:
    env = dict(toolchain.env) if toolchain is not None else {}
    env["SOURCE_DATE_EPOCH"] = str(source_date_epoch())
    env["CMAKE_BUILD_PARALLEL_LEVEL"] = str(parallel)
    platform = matrix.platform(cell.platform)
    if platform.os == "windows" and _host_os() != "windows":
        env["_PYTHON_HOST_PLATFORM"] = "win-amd64"  # the wheel tag of a cross build
    return env


def _source_files(root: Path) -> Iterable[Path]:
    for name in KEY_INPUTS:
        path = root / name
        if path.is_file():
            yield path
        elif path.is_dir():
            for p in sorted(path.rglob("*")):
                if p.is_file() and not _IGNORED_PARTS.intersection(p.relative_to(root).parts) and p.suffix != ".pyc":
                    yield p


def source_digest(root: Path) -> str:
    """sha256 over the project's build inputs (relative path and bytes of each)."""
    h = hashlib.sha256()
    for path in _source_files(root):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


_compiler_ids: dict[str, str] = {}
_compiler_lock = threading.Lock()


def compiler_identity(platform_os: str) -> str:
    """The host compiler's version line (it compiles the C++ parts of every cell)."""
    program = "x86_64-w64-mingw32-g++" if platform_os == "windows" and _host_os() != "windows" else "c++"
    with _compiler_lock:
        if program not in _compiler_ids:
            try:
                out = _proc.run([program, "--version"], timeout=60).output
                _compiler_ids[program] = out.splitlines()[0] if out else program
            except WheelmatrixError:
                _compiler_ids[program] = f"{program}: not found"
        return _compiler_ids[program]


def cache_key(matrix: Matrix, cell: Cell, settings: Sequence[str], toolchain: Toolchain | None, sources: str) -> str:
    """The content address of a cell's wheel: everything that can change its bytes."""
    platform = matrix.platform(cell.platform)
    doc = {
        "format": CACHE_FORMAT,
        "wheelmatrix": __version__,
        "cell": cell.id,
        "sass": list(cell.sass),
        "ptx": list(cell.ptx),
        "settings": list(settings),
        "toolchain": toolchain.identity if toolchain is not None else None,
        "compiler": compiler_identity(platform.os),
        "sources": sources,
        "source_date_epoch": source_date_epoch(),
        "cudaflags": os.environ.get("CUDAFLAGS", "").strip(),  # added to every CUDA compile
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


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


def skipped(cell: Cell) -> CellResult:
    return CellResult(cell.id, cell.platform, cell.variant, "skipped", cell.reason)


def build_cell(
    matrix: Matrix, cell: Cell, options: BuildOptions, provide: Provider | None, *, parallel: int, sources: str
) -> CellResult:
    """Build one cell (or serve it from the cache). Never raises for the cell's own failure."""
    start = time.monotonic()
    folder = options.work.resolve() / "cells" / cell.id  # absolute: the build runs in the source tree
    log = folder / "build.log"
    base = CellResult(cell.id, cell.platform, cell.variant, "failed", "", log=str(log))

    def failed(reason: str, tail: str = "", **more: Any) -> CellResult:
        return _replace(base, reason=reason, tail=tail, duration=time.monotonic() - start, **more)

    if not cell.buildable:
        return skipped(cell)
    folder.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    toolchain: Toolchain | None = None
    t0 = time.monotonic()
    if cell.cuda is not None:
        if provide is None:
            return failed("no toolchain provider was given for a CUDA cell")
        try:
            toolchain = provide(matrix.cuda_spec(cell.cuda))
        except WheelmatrixError as exc:
            with log.open("a") as fh:
                fh.write(exc.render() + "\n")
            return failed(f"toolchain for CUDA {cell.cuda} not provided: {exc.message.splitlines()[0]}", exc.render())
    toolchain_seconds = time.monotonic() - t0
    try:
        settings = cell_settings(matrix, cell, toolchain) + options.extra_settings
    except WheelmatrixError as exc:
        return failed(exc.message)
    key = cache_key(matrix, cell, settings, toolchain, sources)
    common: dict[str, Any] = {
        "cache_key": key,
        "settings": settings,
        "toolchain": toolchain.identity if toolchain else None,
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
            toolchain_seconds=toolchain_seconds,
            wheel=str(hit),
            wheel_size=hit.stat().st_size,
            wheel_sha256=_sha256(hit),
            **common,
        )
    out = folder / "wheel"
    shutil.rmtree(out, ignore_errors=True)
    env = {**cell_env(matrix, cell, toolchain, parallel), **options.env}
    argv = [options.python, "-m", "build", "--wheel", "--outdir", str(out)]
    if not options.isolation:
        argv.append("--no-isolation")
    argv += [f"-C{s}" for s in settings]
    if cell.cuda is not None:
        # nvcc compiles the archs of one file in parallel; this cell's share of the cores. Not
        # in the cache key: it changes how fast, not what is built.
        # (CMAKE_CUDA_FLAGS given here would hide $CUDAFLAGS: keep what it says)
        base_flags = (env.get("CUDAFLAGS") or os.environ.get("CUDAFLAGS") or "").strip()
        argv.append(f"-C{_define('CMAKE_CUDA_FLAGS', f'{base_flags} --threads={parallel}'.strip())}")
    argv += [f"-Cbuild-dir={folder / 'cmake'}", str(matrix.project.source)]
    t1 = time.monotonic()
    try:
        _proc.run(argv, cwd=matrix.project.source, extra_env=env, timeout=options.timeout, log_file=log)
    except CommandFailed as exc:
        if exc.timed_out:
            reason = f"timed out after {options.timeout:g} s; the build and all its children were killed"
        else:
            reason = f"the build exited with code {exc.returncode}"
        return failed(
            reason, exc.tail, build_seconds=time.monotonic() - t1, toolchain_seconds=toolchain_seconds, **common
        )
    except WheelmatrixError as exc:
        return failed(exc.message, build_seconds=time.monotonic() - t1, **common)
    build_seconds = time.monotonic() - t1
    wheels = sorted(out.glob("*.whl"))
    if len(wheels) != 1:
        return failed(
            f"the build wrote {len(wheels)} wheels to {out}, expected 1", build_seconds=build_seconds, **common
        )
    wheel = wheels[0]
    _to_cache(options.cache, key, wheel, {"cell": cell.id, **common, "settings": list(settings)})
    return _replace(
        base,
        status="built",
        reason="built",
        duration=time.monotonic() - start,
        build_seconds=build_seconds,
        toolchain_seconds=toolchain_seconds,
        wheel=str(wheel),
        wheel_size=wheel.stat().st_size,
        wheel_sha256=_sha256(wheel),
        **common,
    )


def _replace(result: CellResult, **changes: object) -> CellResult:
    return replace(result, **changes)  # type: ignore[arg-type]


def build_cells(
    matrix: Matrix, cells: Sequence[Cell], options: BuildOptions, provide: Provider | None = None
) -> list[CellResult]:
    """Build ``cells`` (unbuildable ones are skipped with the plan's reason), ``options.jobs`` at once.

    Results come back in the order of ``cells`` and are written to ``<work>/cells.json``.
    """
    jobs = max(1, options.jobs)
    cores = os.cpu_count() or 1
    parallel = max(1, cores // jobs)
    sources = source_digest(matrix.project.source)
    options.work.mkdir(parents=True, exist_ok=True)
    events = options.on_event

    def one(cell: Cell) -> CellResult:
        if events is not None and cell.buildable:
            events(cell.id, None, "building")
        result = build_cell(matrix, cell, options, provide, parallel=parallel, sources=sources)
        if events is not None:
            events(cell.id, result, result.status)
        return result

    start = time.monotonic()
    pool = ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="cell")
    try:
        results = list(pool.map(one, cells))
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
