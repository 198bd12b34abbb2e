"""Find, choose and load kbit's native library, once, on first use.

Steps (each a plain function, so that tests and ``python -m kbit`` can run them one by one):

1. :func:`discover`: read the manifests in ``KBIT_LIBRARY_DIR`` when set (then nothing else is
   searched), else in ``kbit/_lib`` and in the ``_lib`` folder of every package registered under
   the ``kbit.libraries`` entry-point group (split distributions such as ``kbit-cu12``; the
   package is located with :func:`importlib.util.find_spec` and never imported).
2. :func:`kbit._probe.probe_driver`: ask ``libcuda`` for the driver version and the GPUs.
3. :func:`kbit._select.select`: the pure choice.
4. :func:`load`: try the candidates in order; a library that fails to load is recorded with its
   file and the OS error, and the next one is tried.

Nothing happens at import time. :func:`runtime` caches the result for the process and shows at most
one warning.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kbit._errors import (
    CpuFallbackWarning,
    KbitError,
    KbitWarning,
    LibraryError,
    LibraryLoadError,
    LibraryLoadWarning,
    OverrideError,
)
from kbit._manifest import LibraryInfo, Problem, scan_dir
from kbit._native import NativeLibrary
from kbit._probe import DriverProbe, probe_driver
from kbit._select import Hints, Selection, select

ENV_LIBRARY_DIR = "KBIT_LIBRARY_DIR"
ENTRY_POINT_GROUP = "kbit.libraries"
OWN_LIB_DIR = Path(__file__).resolve().parent / "_lib"
_DATA = Path(__file__).resolve().parent / "_data" / "runtime.json"


@dataclass(frozen=True)
class LibraryDir:
    path: Path
    source: str  # "KBIT_LIBRARY_DIR", "kbit", "kbit_cu12 (kbit-cu12 0.1.0)"


@dataclass(frozen=True)
class Discovery:
    dirs: tuple[LibraryDir, ...]
    libraries: tuple[LibraryInfo, ...]
    problems: tuple[Problem, ...]


def _entry_points() -> list[tuple[str, str]]:
    """(package name, description) for each ``kbit.libraries`` entry point."""
    from importlib import metadata

    eps: Sequence[metadata.EntryPoint]
    all_eps = metadata.entry_points()
    if hasattr(all_eps, "select"):  # Python >= 3.10
        eps = list(all_eps.select(group=ENTRY_POINT_GROUP))
    else:  # pragma: no cover - Python 3.9 returns a dict
        eps = list(all_eps.get(ENTRY_POINT_GROUP, []))
    found: list[tuple[str, str]] = []
    seen: set[str] = set()
    for ep in eps:
        package = ep.value.split(":")[0].strip()
        if package in seen:
            continue
        seen.add(package)
        dist = getattr(ep, "dist", None)
        where = f"{dist.name} {dist.version}" if dist is not None else f"entry point {ep.name}"
        found.append((package, f"{package} ({where})"))
    return sorted(found)


def library_dirs(env: Mapping[str, str]) -> tuple[list[LibraryDir], list[Problem]]:
    """The folders to search, in priority order, and problems met while locating them."""
    override = env.get(ENV_LIBRARY_DIR, "").strip()
    if override:
        path = Path(override)
        if not path.is_dir():
            raise OverrideError(
                f"{ENV_LIBRARY_DIR}={override} is not a folder",
                fix=f"point {ENV_LIBRARY_DIR} at a folder holding libkbit_*.so and their .json manifests, or unset it",
            )
        return [LibraryDir(path, ENV_LIBRARY_DIR)], []
    import importlib.util

    dirs = [LibraryDir(OWN_LIB_DIR, "kbit")]
    problems: list[Problem] = []
    for package, source in _entry_points():
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError) as exc:
            spec = None
            error = str(exc)
        else:
            error = "no such package"
        if spec is None or not spec.submodule_search_locations:
            problems.append(Problem(Path(package), f"entry point {ENTRY_POINT_GROUP} names {source}: {error}"))
            continue
        for location in spec.submodule_search_locations:
            dirs.append(LibraryDir(Path(location) / "_lib", source))
    return dirs, problems


def discover(env: Mapping[str, str]) -> Discovery:
    dirs, problems = library_dirs(env)
    libraries: list[LibraryInfo] = []
    for d in dirs:
        found, trouble = scan_dir(d.path, d.source)
        libraries.extend(found)
        problems.extend(trouble)
        if d.source != ENV_LIBRARY_DIR or found or trouble:
            continue
        problems.append(Problem(d.path, "no kbit library (libkbit_*.json manifest) in this folder"))
    return Discovery(tuple(dirs), tuple(libraries), tuple(problems))


def load_hints(platform: str = sys.platform) -> Hints:
    try:
        data = json.loads(_DATA.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Hints()
    key = "windows" if platform == "win32" else "linux"
    return Hints(
        install=str(data.get("install", Hints.install)),
        driver_floors={v: str(f.get(key, "")) for v, f in data.get("versions", {}).items()},
        major_floors={v: str(f.get(key, "")) for v, f in data.get("majors", {}).items()},
    )


@dataclass(frozen=True)
class LoadFailure:
    library: LibraryInfo
    error: str


@dataclass(frozen=True)
class Runtime:
    """Everything the loader found and decided; ``library`` is None when nothing could load and
    ``error`` then says why."""

    env: Mapping[str, str]
    discovery: Discovery
    probe: DriverProbe
    selection: Selection | None
    library: NativeLibrary | None
    failures: tuple[LoadFailure, ...] = ()
    error: KbitError | None = None
    warning: str | None = None
    warning_category: type[Warning] = field(default=CpuFallbackWarning)

    @property
    def on_cpu(self) -> bool:
        return self.library is not None and self.library.info.cuda is None


def load(selection: Selection) -> tuple[NativeLibrary | None, tuple[LoadFailure, ...]]:
    """Load the first candidate that loads; record the others' failures."""
    failures: list[LoadFailure] = []
    for info in selection.candidates:
        try:
            return NativeLibrary(info), tuple(failures)
        except LibraryLoadError as exc:
            failures.append(LoadFailure(info, exc.message))
    return None, tuple(failures)


def resolve(
    env: Mapping[str, str] | None = None,
    probe: DriverProbe | None = None,
    *,
    hints: Hints | None = None,
) -> Runtime:
    """Discover, probe, select and load; never raises (failures land in ``Runtime.error``)."""
    env = dict(os.environ if env is None else env)
    try:
        discovery = discover(env)
    except OverrideError as exc:
        discovery = Discovery((), (), ())
        return Runtime(env, discovery, probe or DriverProbe(None, None, (), "not probed"), None, None, error=exc)
    probe = probe_driver() if probe is None else probe
    try:
        selection = select(discovery.libraries, probe, env, hints or load_hints())
    except OverrideError as exc:
        return Runtime(env, discovery, probe, None, None, error=exc)
    library, failures = load(selection)
    error: KbitError | None = None
    if library is None:
        lines = [f"{f.library.path}: {f.error}" for f in failures]
        lines += [f"{p}" for p in discovery.problems]
        error = LibraryError(
            f"no kbit library could be loaded: {selection.reason}" + "".join(f"\n  {line}" for line in lines),
            fix="reinstall kbit (pip install --force-reinstall kbit); `python -m kbit` shows what is installed",
        )
    warning, category = _warning(selection, library, failures)
    return Runtime(env, discovery, probe, selection, library, failures, error, warning, category)


def _warning(
    selection: Selection, library: NativeLibrary | None, failures: Sequence[LoadFailure]
) -> tuple[str | None, type[Warning]]:
    """The one warning to show: a CPU fallback (with why) or a library that failed to load."""
    failed = "; ".join(f"{f.library.path} failed to load: {f.error}" for f in failures)
    if library is None:
        return None, LibraryLoadWarning  # the error says it all
    parts = [*selection.notes]
    if library.info.cuda is None and (selection.warning or (failures and not selection.forced)):
        cuda_failed = any(f.library.cuda is not None for f in failures)
        if selection.warning or cuda_failed:
            parts.insert(0, selection.warning or "kbit runs on CPU")
            if failed:
                parts.append(failed)
            return "; ".join(parts), CpuFallbackWarning
    if failed:
        parts.append(failed)
        parts.append(f"using {library.info.name} instead")
        return "; ".join(parts), LibraryLoadWarning
    return ("; ".join(parts) or None), KbitWarning  # notes on a forced or minor-version choice


_lock = threading.Lock()
_cached: Runtime | None = None


def runtime() -> Runtime:
    """The process's runtime, resolved on first call; shows its warning once."""
    global _cached
    with _lock:
        if _cached is None:
            _cached = resolve()
            if _cached.warning:
                warnings.warn(_cached.warning, _cached.warning_category, stacklevel=4)
        return _cached


def library() -> NativeLibrary:
    """The loaded library, or the error saying why there is none."""
    rt = runtime()
    if rt.library is None:
        assert rt.error is not None
        raise rt.error.with_traceback(None)
    return rt.library


def install(rt: Runtime) -> None:
    """Make ``rt`` the process's runtime (``python -m kbit`` self-tests the one it reports)."""
    global _cached
    with _lock:
        _cached = rt


def reset() -> None:
    """Forget the cached runtime (tests; a changed environment)."""
    global _cached
    with _lock:
        _cached = None
