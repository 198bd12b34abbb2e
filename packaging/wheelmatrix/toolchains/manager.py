"""Provide toolchains: pick the source, pin the files, reuse or build the cache entry, verify.

The one entry point of the build stage is :func:`provide`; the ``wheelmatrix toolchain`` verbs
call the same functions.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from wheelmatrix.errors import ToolchainError
from wheelmatrix.host import system_cuda_root
from wheelmatrix.model import CudaSpec, Matrix, SourceKind
from wheelmatrix.toolchains import components
from wheelmatrix.toolchains.base import InstalledToolchain, LockedFile, LockEntry, Source, identity_of
from wheelmatrix.toolchains.cache import META_SCHEMA, Cache, EntryRecord, tree_size, write_meta
from wheelmatrix.toolchains.debian import DebianSource, mirror
from wheelmatrix.toolchains.fetch import disk_full, download, file_sha256, is_disk_full
from wheelmatrix.toolchains.lockfile import read_lock, write_lock
from wheelmatrix.toolchains.progress import Reporter, human_size
from wheelmatrix.toolchains.pypi import PypiSource
from wheelmatrix.toolchains.system import SystemSource
from wheelmatrix.toolchains.verify import Verification, covers, verify


def get_source(kind: SourceKind, reporter: Reporter | None = None) -> Source:
    if kind == "pypi":
        return PypiSource(reporter)
    if kind == "debian":
        return DebianSource(reporter)
    if kind == "system":
        return SystemSource()
    raise ToolchainError(f"unknown toolchain source {kind!r}")


def lock_path_of(matrix: Matrix) -> Path:
    """Where the matrix's ``toolchains.lock`` lives (relative paths: next to matrix.toml)."""
    path = matrix.toolchain_lock
    return path if path.is_absolute() else matrix.path.parent / path


def _int(value: object) -> int:
    return int(value) if isinstance(value, (int, str)) else 0


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cannot(spec: CudaSpec, reason: str) -> ToolchainError:
    return ToolchainError(
        f"CUDA {spec.version} cannot be provided by its source {spec.toolchain.describe()}: {reason}",
        fix="change the toolchain of this CUDA version in matrix.toml (pypi: 13.x; debian: 11.8 bookworm, "
        "12.4 trixie; system: a path holding bin/nvcc)",
    )


def _url(locked: LockedFile) -> str:
    return locked.url if "://" in locked.url else f"{mirror()}/{locked.url}"


def stale_reason(entry: LockEntry, spec: CudaSpec) -> str | None:
    """Why a lock entry no longer fits the matrix or data/toolchains.toml, or None."""
    if entry.origin != spec.toolchain.describe():
        return f"it was resolved from {entry.origin}, the matrix says {spec.toolchain.describe()}"
    wanted = get_source(spec.toolchain.source).package_names(spec)
    have = {f.name for f in entry.files}
    problems = []
    if wanted - have:
        asked = f" (the matrix asks for the components {', '.join(spec.component_names)})" if spec.components else ""
        problems.append("it lacks " + ", ".join(sorted(wanted - have)) + asked)
    if have - wanted:
        problems.append(
            "it pins " + ", ".join(sorted(have - wanted)) + " that data/toolchains.toml no longer lists"
            " (or for a component the matrix no longer asks for)"
        )
    return "; ".join(problems) or None


def pinned(spec: CudaSpec, lock_path: Path | None, *, offline: bool, reporter: Reporter) -> LockEntry:
    """The lock's entry for ``spec``; without one, resolve it live (not offline)."""
    entries = read_lock(lock_path) if lock_path is not None else {}
    entry = entries.get((str(spec.version), spec.toolchain.source))
    if entry is not None:
        problem = stale_reason(entry, spec)
        if problem:
            raise ToolchainError(
                f"{lock_path} is stale for CUDA {spec.version}: {problem}",
                fix=f"run `wheelmatrix toolchain lock {spec.version}` and commit the lock",
            )
        return entry
    where = f"{lock_path} pins no files" if lock_path is not None else "there is no toolchains.lock to pin the files"
    if offline:
        raise ToolchainError(
            f"offline: {where} for CUDA {spec.version} ({spec.toolchain.describe()}), so the cache cannot be matched",
            fix="run `wheelmatrix toolchain lock` with network access, then install once online",
        )
    # the indexes are part of the key: a process that points them elsewhere (tests) resolves again
    indexes = "|".join(os.environ.get(v, "") for v in ("WHEELMATRIX_PYPI_URL", "WHEELMATRIX_DEBIAN_MIRROR"))
    key = (str(spec.version), spec.toolchain.source, repr(spec) + indexes)
    with _resolved_lock:
        if key not in _resolved:  # once per process: every cell of this CUDA version gets the same files
            reporter.warn(
                f"{where} for CUDA {spec.version}: resolving the newest ones now"
                " (run `wheelmatrix toolchain lock` to pin them)"
            )
            _resolved[key] = get_source(spec.toolchain.source, reporter).resolve(spec)
        return _resolved[key]


_resolved: dict[tuple[str, str, str], LockEntry] = {}
_resolved_lock = threading.Lock()


def _verified_for(record: EntryRecord, spec: CudaSpec) -> bool:
    if record.failed:
        return False
    return any(covers(v, spec) for v in record.verifications)


def _installed(record: EntryRecord, spec: CudaSpec) -> InstalledToolchain:
    meta = record.meta
    root = record.path / str(meta["root"])
    nvcc = root / str(meta["nvcc"])
    host = record.path / str(meta["host_cxx"]) if meta.get("host_cxx") else None
    env = _env_of(meta, record.path)
    env.update({"CUDA_HOME": str(root), "CUDACXX": str(nvcc)})
    return InstalledToolchain(
        version=spec.version,
        source=spec.toolchain.source,
        root=root,
        nvcc=nvcc,
        host_cxx=host,
        nvcc_version=str(meta.get("nvcc_version", "")),
        identity=record.identity,
        size=_int(meta.get("size", 0)),
        verified=_verified_for(record, spec),
        env_items=tuple(sorted(env.items())),
        components=tuple(components.names_of(meta)),
    )


def _env_of(meta: dict[str, object], folder: Path) -> dict[str, str]:
    raw = meta.get("env") or {}
    assert isinstance(raw, dict)
    return {k: str(v).replace("{entry}", str(folder)) for k, v in raw.items()}


def _missing(entry: LockEntry, cache: Cache) -> list[LockedFile]:
    """Pinned files not in the cache with their exact bytes (a damaged copy is deleted)."""
    missing = []
    for f in entry.files:
        path = cache.download_path(f.sha256, f.filename)
        if cache.has_download(f.sha256, f.filename, f.size) and file_sha256(path) == f.sha256:
            continue
        path.unlink(missing_ok=True)
        missing.append(f)
    return missing


def fetch_files(entry: LockEntry, cache: Cache, *, offline: bool, reporter: Reporter) -> int:
    """Make every pinned file of ``entry`` present and verified in the cache; returns bytes fetched."""
    missing = _missing(entry, cache)
    if offline and missing:
        total = sum(f.size for f in missing)
        names = "\n".join(f"    {f.filename} ({human_size(f.size)})" for f in missing)
        raise ToolchainError(
            f"offline: the cache lacks {len(missing)} of the {len(entry.files)} files of CUDA {entry.cuda} "
            f"({entry.origin}), {human_size(total)} in all:\n{names}",
            fix=f"run `wheelmatrix toolchain install {entry.cuda}` once with network access",
        )
    fetched = 0
    for i, locked in enumerate(missing, 1):
        dest = cache.download_path(locked.sha256, locked.filename)
        label = f"[{i}/{len(missing)}] {locked.filename}"
        fetched += download(_url(locked), dest, sha256=locked.sha256, size=locked.size, reporter=reporter, label=label)
    return fetched


def provide(
    spec: CudaSpec,
    *,
    lock_path: Path | None = None,
    offline: bool = False,
    cache: Cache | None = None,
    reporter: Reporter | None = None,
    reverify: bool = False,
) -> InstalledToolchain:
    """Provide the CUDA toolchain of ``spec``, verified: from the cache, else installed now.

    Raises :class:`~wheelmatrix.errors.ToolchainError` (or EnvironmentProblem for a full disk);
    a toolchain that fails verification is never returned, and nothing half-built stays cached.
    """
    reporter = reporter or Reporter(enabled=False)
    cache = cache or Cache()
    kind = spec.toolchain.source
    source = get_source(kind, reporter)
    reason = source.unavailable(spec)
    if reason:
        raise _cannot(spec, reason)
    if kind == "system":
        return _provide_system(spec, cache, reporter, reverify=reverify)
    entry = pinned(spec, lock_path, offline=offline, reporter=reporter)
    identity = identity_of(entry, source.recipe(spec))
    version = str(spec.version)
    path = cache.entry_path(kind, version, identity)
    with cache.locked(kind, version):
        record = cache.read_entry(path)
        if record is None:
            record = _install(
                spec, source, entry=entry, identity=identity, path=path, cache=cache, offline=offline, reporter=reporter
            )
        elif reverify or not _verified_for(record, spec):
            record = _reverify(record, spec, reporter)
    return _installed(record, spec)


def _install(
    spec: CudaSpec,
    source: Source,
    *,
    entry: LockEntry,
    identity: str,
    path: Path,
    cache: Cache,
    offline: bool,
    reporter: Reporter,
) -> EntryRecord:
    start = time.monotonic()
    version = str(spec.version)
    try:
        fetched = fetch_files(entry, cache, offline=offline, reporter=reporter)
        files = [(f, cache.download_path(f.sha256, f.filename)) for f in entry.files]
        with cache.staging(source.kind, version) as staging:
            built = source.assemble(spec, files, staging)
            meta: dict[str, object] = {
                "schema": META_SCHEMA,
                "source": source.kind,
                "origin": entry.origin,
                "version": version,
                "identity": identity,
                "root": built.root,
                "nvcc": built.nvcc,
                "host_cxx": built.host_cxx,
                "env": dict(built.env),
                "files": [f.to_json() for f in entry.files],
                "created": _now(),
            }
            if spec.components:
                meta["components"] = list(spec.component_names)
            with reporter.task(f"verifying CUDA {version} (probe kernel)", None):
                result = verify(spec, staging / built.root / built.nvcc, _env_of(meta, staging))
            meta["nvcc_version"] = result.nvcc_version
            meta["verifications"] = [{**result.to_json(), "at": _now()}]
            meta["size"] = tree_size(staging)
            cache.commit(staging, path, meta)
    except OSError as exc:
        if is_disk_full(exc):
            raise disk_full(exc, cache.root) from exc
        raise
    record = cache.read_entry(path)
    if record is None:  # pragma: no cover - commit wrote it
        raise ToolchainError(f"the cache entry {path} vanished after it was written")
    elapsed = time.monotonic() - start
    reporter.info(
        f"CUDA {version} from {entry.origin}: nvcc {result.nvcc_version}, {human_size(_int(meta['size']))} "
        f"on disk, {human_size(fetched)} downloaded, {elapsed:.1f} s, verified ({_archs(result)})"
    )
    return record


def _archs(result: Verification) -> str:
    archs = ", ".join([f"sm_{a}" for a in result.sass] + [f"compute_{a}" for a in result.ptx])
    return archs + (f"; linked {', '.join(result.components)}" if result.components else "")


def _reverify(record: EntryRecord, spec: CudaSpec, reporter: Reporter) -> EntryRecord:
    meta = dict(record.meta)
    root = record.path / str(meta["root"])
    try:
        with reporter.task(f"verifying CUDA {spec.version} (probe kernel)", None):
            result = verify(spec, root / str(meta["nvcc"]), _env_of(meta, record.path))
    except ToolchainError as exc:
        meta["failed"] = exc.message
        meta["verifications"] = []
        write_meta(record.path, meta)
        raise
    meta.pop("failed", None)
    others = [v for v in record.verifications if not covers(v, spec)]
    meta["verifications"] = [*others, {**result.to_json(), "at": _now()}]
    write_meta(record.path, meta)
    reporter.info(f"CUDA {spec.version} ({record.path.name}): verified ({_archs(result)})")
    return EntryRecord(record.path, meta)


def _system_identity(spec: CudaSpec, root: Path) -> str:
    """A system toolkit's identity: its nvcc as it is now (path, size, mtime), the version, and
    the library files of the components the matrix asks for (none: the key it always had)."""
    nvcc = root / "bin" / "nvcc"
    st = nvcc.stat()
    parts: list[object] = [str(nvcc.resolve()), st.st_size, st.st_mtime_ns, str(spec.version)]
    if spec.components:
        parts.append(components.system_key(spec, root))
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


def _provide_system(spec: CudaSpec, cache: Cache, reporter: Reporter, *, reverify: bool) -> InstalledToolchain:
    root = system_cuda_root(spec)
    assert root is not None  # unavailable() checked it
    nvcc = root / "bin" / "nvcc"
    SystemSource().check_components(spec, root)
    identity = _system_identity(spec, root)
    records = cache.root / "system"
    record_path = records / f"{identity[:16]}.json"
    state: dict[str, object] = {}
    try:
        state = json.loads(record_path.read_text())
    except (OSError, ValueError):
        state = {}
    verifications = state.get("verifications", [])
    assert isinstance(verifications, list)
    done = any(covers(v, spec) for v in verifications)
    if reverify or not done:
        start = time.monotonic()
        with reporter.task(f"verifying CUDA {spec.version} at {root} (probe kernel)", None):
            result = verify(spec, nvcc, {})
        if "size" not in state:
            state["size"] = tree_size(root)
        state.update({"root": str(root), "nvcc_version": result.nvcc_version, "identity": identity})
        state["verifications"] = [
            *(v for v in verifications if not covers(v, spec)),
            {**result.to_json(), "at": _now()},
        ]
        records.mkdir(parents=True, exist_ok=True)
        tmp = records / f".{record_path.name}.{os.getpid()}"
        tmp.write_text(json.dumps(state, indent=2))
        tmp.replace(record_path)
        reporter.info(
            f"CUDA {spec.version} from {spec.toolchain.describe()} ({root}): nvcc {result.nvcc_version}, "
            f"{human_size(_int(state['size']))} on disk, {time.monotonic() - start:.1f} s, verified ({_archs(result)})"
        )
    return InstalledToolchain(
        version=spec.version,
        source="system",
        root=root,
        nvcc=nvcc,
        host_cxx=None,
        nvcc_version=str(state["nvcc_version"]),
        identity=identity,
        size=_int(state["size"]),
        verified=True,
        env_items=(("CUDACXX", str(nvcc)), ("CUDA_HOME", str(root))),
        components=spec.component_names,
    )


# --- list, lock, prune ------------------------------------------------------------------------


@dataclass(frozen=True)
class Status:
    """What ``toolchain list`` reports for one toolchain."""

    version: str
    source: str  # "pypi", "debian:bookworm", "system:/usr/local/cuda-12.8"
    needed: bool  # what the matrix and its lock ask for (False: another cached build, prunable)
    available: bool  # this host and source can provide it
    reason: str | None  # why not, when not available
    locked: bool  # toolchains.lock pins its files
    cached: bool  # an installed entry matching the lock is in the cache
    verified: bool  # ... and passed verification for the matrix's archs
    nvcc: str | None
    nvcc_version: str | None
    size: int | None
    download_size: int | None
    entry: str | None
    components: tuple[str, ...] = ()  # CUDA components (cublas, ...) provided with it

    def to_json(self) -> dict[str, object]:
        out = dict(self.__dict__)
        out["components"] = list(self.components)
        return out


def status(matrix: Matrix, *, cache: Cache | None = None) -> list[Status]:
    cache = cache or Cache()
    lock = read_lock(lock_path_of(matrix))
    out: list[Status] = []
    seen: set[Path] = set()
    for spec in matrix.cuda:
        kind = spec.toolchain.source
        source = get_source(kind)
        reason = source.unavailable(spec)
        entry = lock.get((str(spec.version), kind))
        if entry is not None and stale_reason(entry, spec):
            entry = None  # a stale pin counts as none: install refuses it, `lock` renews it
        if kind == "system":
            record_ok = False
            nvcc_version = None
            root = system_cuda_root(spec)
            if reason is None and root is not None:
                rec = cache.root / "system" / f"{_system_identity(spec, root)[:16]}.json"
                try:
                    state = json.loads(rec.read_text())
                    record_ok = any(covers(v, spec) for v in state["verifications"])
                    nvcc_version = str(state["nvcc_version"])
                except (OSError, ValueError, KeyError, TypeError, AttributeError):
                    pass
            out.append(
                Status(
                    str(spec.version),
                    spec.toolchain.describe(),
                    True,
                    reason is None,
                    reason,
                    True,
                    record_ok,
                    record_ok,
                    str(root / "bin" / "nvcc") if root and reason is None else None,
                    nvcc_version,
                    None,
                    None,
                    None,
                    spec.component_names,
                )
            )
            continue
        record = None
        if entry is not None:
            path = cache.entry_path(kind, str(spec.version), identity_of(entry, source.recipe(spec)))
            record = cache.read_entry(path)
            if record is not None:
                seen.add(record.path)
        installed = _installed(record, spec) if record is not None else None
        out.append(
            Status(
                version=str(spec.version),
                source=spec.toolchain.describe(),
                needed=True,
                available=reason is None,
                reason=reason,
                locked=entry is not None,
                cached=record is not None,
                verified=installed.verified if installed else False,
                nvcc=str(installed.nvcc) if installed else None,
                nvcc_version=installed.nvcc_version if installed else None,
                size=installed.size if installed else None,
                download_size=entry.download_size if entry else None,
                entry=str(record.path) if record else None,
                components=spec.component_names,
            )
        )
    for record in cache.all_entries():
        if record.path in seen:
            continue
        out.append(
            Status(
                record.version,
                str(record.meta.get("origin", record.source)),
                False,
                True,
                None,
                False,
                True,
                bool(record.verifications) and not record.failed,
                None,
                str(record.meta.get("nvcc_version")),
                _int(record.meta.get("size", 0)),
                None,
                str(record.path),
                tuple(components.names_of(record.meta)),
            )
        )
    return out


def lock(matrix: Matrix, versions: Sequence[str] = (), *, reporter: Reporter | None = None) -> list[LockEntry]:
    """Resolve the newest files of each (or the named) toolchain and write toolchains.lock."""
    reporter = reporter or Reporter(enabled=False)
    path = lock_path_of(matrix)
    current = read_lock(path)
    resolved = []
    for spec in select(matrix, versions):
        if spec.toolchain.source == "system":
            continue
        source = get_source(spec.toolchain.source, reporter)
        reason = source.unavailable(spec)
        if reason:
            raise _cannot(spec, reason)
        entry = source.resolve(spec)
        current[(str(spec.version), spec.toolchain.source)] = entry
        resolved.append(entry)
        reporter.info(
            f"CUDA {spec.version} ({entry.origin}): {len(entry.files)} files, {human_size(entry.download_size)}: "
            + ", ".join(f"{f.name} {f.version}" for f in entry.files)
        )
    declared = {(str(s.version), s.toolchain.source) for s in matrix.cuda}
    write_lock(path, [e for k, e in current.items() if k in declared])
    return resolved


def select(matrix: Matrix, versions: Iterable[str]) -> list[CudaSpec]:
    """The specs of the named versions (all when none is named); unknown names are an error."""
    wanted = list(versions)
    if not wanted:
        return list(matrix.cuda)
    declared = ", ".join(str(s.version) for s in matrix.cuda)
    specs = []
    for text in wanted:
        try:
            specs.append(matrix.cuda_spec(text))
        except (KeyError, ValueError):
            raise ToolchainError(
                f"CUDA {text!r} is not declared in {matrix.path} (it declares {declared})",
                fix="name one of the declared versions, or add it to matrix.toml",
            ) from None
    return specs


def prune(matrix: Matrix | None, *, cache: Cache | None = None, everything: bool = False) -> list[tuple[Path, int]]:
    """Remove cache entries and downloads no project pins (all with ``everything``), and staging
    folders of dead processes. The cache is shared by every project on the machine: what the
    matrix's lock pins stays, and so does what the lock of any project recorded in the cache's
    registry pins now (:mod:`wheelmatrix.toolchains.registry`); records of matrices that no longer
    exist are dropped first. Returns what was removed, a :class:`~wheelmatrix.toolchains.registry.Pruned`
    list of (path, size) whose ``kept`` and ``dropped`` say what stayed, for whom, and which records went."""
    from wheelmatrix.toolchains import registry  # noqa: PLC0415 - the registry imports this module

    cache = cache or Cache()
    result = registry.Pruned()
    users = registry.Users()
    if not everything:
        users = registry.users(cache, matrix)  # raises for an unreadable lock of the matrix itself
        if matrix is not None:
            registry.record(cache, matrix)
        result.dropped.extend(users.dropped)
    for folder in cache.clean_stale_staging():
        result.append((folder, 0))
    for parent, needed in ((cache.entries, users.entries), (cache.downloads, users.downloads)):
        if not parent.is_dir():
            continue
        for child in sorted(parent.iterdir()):
            size = tree_size(child)
            if child.name in needed:
                result.kept.append(registry.Kept(child, size, tuple(needed[child.name])))
                continue
            if parent == cache.entries:  # an entry: take its lock so a running install is not cut
                record = cache.read_entry(child)
                if record is not None:
                    with cache.locked(record.source, record.version):
                        shutil.rmtree(child, ignore_errors=True)
                else:
                    shutil.rmtree(child, ignore_errors=True)
            else:
                shutil.rmtree(child, ignore_errors=True)
            result.append((child, size))
    if everything and (cache.root / "system").is_dir():
        shutil.rmtree(cache.root / "system", ignore_errors=True)
    return result
