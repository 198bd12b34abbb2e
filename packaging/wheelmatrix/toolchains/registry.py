"""The projects a toolchain cache serves, so that ``prune`` from one project spares the others.

The cache is user-wide (platformdirs' cache dir, or ``$WHEELMATRIX_CACHE_DIR``): every project on
the machine shares its downloads and installed toolchains. Each time a matrix's toolchains are
provided (``wheelmatrix build``, ``wheelmatrix toolchain install|verify|path``, ``prune``), the
project is recorded in one small JSON file::

    <cache>/toolchains/projects/<sha256 of the resolved matrix path>.json
    {"schema": 1, "matrix": "/abs/matrix.toml", "lock": "/abs/toolchains.lock",
     "last_used": "2026-11-21T15:13:00Z",
     "toolchains": [{"cuda": "13.0", "source": "pypi", "entry": "pypi-13.0-0123456789abcdef",
                     "downloads": ["<sha256>", ...]}]}

``entry`` is the folder name under ``entries/``, ``downloads`` the sha256 folders under
``downloads/``: what the project's lock pinned when it was last used. A record is replaced
atomically (temporary file + rename) under ``locks/project-<key[:16]>.lock``, so concurrent
writers and readers never see half a file.

:func:`users` tells ``prune`` who still needs what: the current matrix, and every recorded
project whose matrix file still exists, judged by its lock as it reads *now* (a lock changed
since the record keeps the entries built from its new files); when that lock cannot be read,
the recorded pins stand. A record whose matrix file is gone is dropped.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from wheelmatrix.errors import ToolchainError
from wheelmatrix.model import Matrix
from wheelmatrix.toolchains.base import identity_of
from wheelmatrix.toolchains.cache import Cache, EntryRecord, pid_alive
from wheelmatrix.toolchains.lockfile import read_lock
from wheelmatrix.toolchains.manager import get_source, lock_path_of

RECORD_SCHEMA = 1


@dataclass(frozen=True)
class Pin:
    """One toolchain a project's lock pins: its cache entry's folder name and its downloads."""

    cuda: str
    source: str
    entry: str  # folder name under entries/
    downloads: tuple[str, ...]  # sha256s (folder names under downloads/)

    def to_json(self) -> dict[str, object]:
        return {"cuda": self.cuda, "source": self.source, "entry": self.entry, "downloads": list(self.downloads)}


@dataclass(frozen=True)
class ProjectRecord:
    """One recorded project (one ``projects/<key>.json``)."""

    file: Path  # the record itself
    matrix: Path
    lock: Path
    last_used: str
    pins: tuple[Pin, ...]

    @property
    def entries(self) -> frozenset[str]:
        return frozenset(p.entry for p in self.pins)

    @property
    def downloads(self) -> frozenset[str]:
        return frozenset(sha for p in self.pins for sha in p.downloads)

    def to_json(self) -> dict[str, object]:
        return {
            "schema": RECORD_SCHEMA,
            "matrix": str(self.matrix),
            "lock": str(self.lock),
            "last_used": self.last_used,
            "toolchains": [p.to_json() for p in self.pins],
        }


@dataclass(frozen=True)
class Kept:
    """A cache item ``prune`` left in place, and who uses it."""

    path: Path
    size: int
    users: tuple[str, ...]  # "/a/matrix.toml (this matrix)", "/b/matrix.toml", ...


class Pruned(list[tuple[Path, int]]):
    """What ``prune`` removed, as (path, size) items (the type callers always got); ``kept`` says
    what stayed and for whom, ``dropped`` which project records were dropped and why."""

    def __init__(self) -> None:
        super().__init__()
        self.kept: list[Kept] = []
        self.dropped: list[str] = []


@dataclass
class Users:
    """Who needs which cache entry (folder name) and download (sha256)."""

    entries: dict[str, list[str]] = field(default_factory=dict)
    downloads: dict[str, list[str]] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)  # records dropped, one message each

    def add(self, entries: frozenset[str], downloads: frozenset[str], user: str) -> None:
        for name in sorted(entries):
            self.entries.setdefault(name, []).append(user)
        for sha in sorted(downloads):
            self.downloads.setdefault(sha, []).append(user)


def key_of(matrix_path: Path) -> str:
    """The record's name: sha256 of the resolved matrix path."""
    return hashlib.sha256(str(matrix_path.resolve()).encode()).hexdigest()


def record_path(cache: Cache, matrix_path: Path) -> Path:
    return cache.projects / f"{key_of(matrix_path)}.json"


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def pins_of(matrix: Matrix, cache: Cache) -> tuple[Pin, ...]:
    """What the matrix's lock pins now: the cache entry and the downloads of each toolchain
    (system toolchains are used in place: none). Raises ToolchainError for an unreadable lock."""
    lock = read_lock(lock_path_of(matrix))
    pins = []
    for spec in matrix.cuda:
        kind = spec.toolchain.source
        entry = lock.get((str(spec.version), kind))
        if entry is None or kind == "system":
            continue
        identity = identity_of(entry, get_source(kind).recipe(spec))
        folder = cache.entry_path(kind, str(spec.version), identity)
        pins.append(Pin(str(spec.version), kind, folder.name, tuple(f.sha256 for f in entry.files)))
    return tuple(pins)


def record(cache: Cache, matrix: Matrix) -> ProjectRecord:
    """Record (or refresh) the matrix's project in the cache's registry; returns the record.

    A lock that cannot be read keeps the pins recorded before (providing reports that lock's
    problem itself); recording never fails for it.
    """
    matrix_path = matrix.path.resolve()
    key = key_of(matrix_path)
    path = cache.projects / f"{key}.json"
    with cache.locked_named(f"project-{key[:16]}", f"the project record of {matrix_path}"):
        try:
            pins = pins_of(matrix, cache)
        except ToolchainError:
            previous = _read(path)
            pins = previous.pins if previous is not None else ()
        rec = ProjectRecord(path, matrix_path, lock_path_of(matrix).resolve(), _now(), pins)
        _write(path, rec.to_json())
    return rec


def _write(path: Path, doc: dict[str, object]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
            Path(tmp).replace(path)
        finally:
            Path(tmp).unlink(missing_ok=True)
    except OSError as exc:
        raise ToolchainError(
            f"cannot write the project record {path}: {exc}",
            fix="make the cache writable, or point WHEELMATRIX_CACHE_DIR at a writable folder",
        ) from exc


def _read(path: Path) -> ProjectRecord | None:
    """The record in ``path``; None when it is absent or malformed."""
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict) or doc.get("schema") != RECORD_SCHEMA:
            return None
        pins = tuple(
            Pin(str(t["cuda"]), str(t["source"]), str(t["entry"]), tuple(str(s) for s in t["downloads"]))
            for t in doc["toolchains"]
        )
        return ProjectRecord(path, Path(doc["matrix"]), Path(doc["lock"]), str(doc["last_used"]), pins)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def records(cache: Cache) -> list[ProjectRecord | Path]:
    """Every record of the registry, sorted by file name; a file that cannot be read as one is
    returned as its path."""
    if not cache.projects.is_dir():
        return []
    found: list[ProjectRecord | Path] = []
    for path in sorted(cache.projects.glob("*.json")):
        if path.name.startswith("."):
            continue
        rec = _read(path)
        found.append(rec if rec is not None else path)
    return found


def _foreign(path: Path) -> bool:
    """Whether ``path`` is a well-formed record of another schema version."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and isinstance(doc.get("schema"), int) and doc["schema"] != RECORD_SCHEMA


def _files_of(entry: EntryRecord) -> frozenset[str]:
    files = entry.meta.get("files")
    if not isinstance(files, list):
        return frozenset()
    return frozenset(str(f.get("sha256")) for f in files if isinstance(f, dict))


def pinned_now(rec: ProjectRecord, installed: list[EntryRecord]) -> tuple[frozenset[str], frozenset[str]]:
    """The entries (folder names) and downloads (sha256s) the recorded project's lock pins now.

    A toolchain whose pinned files are those recorded keeps its recorded entry; one whose files
    changed since (the lock was renewed) keeps every installed entry built from the new files
    (``installed``: the cache's entries). Raises ToolchainError when the lock cannot be read.
    """
    if not rec.lock.is_file():
        raise ToolchainError(f"its lock {rec.lock} does not exist")
    lock = read_lock(rec.lock)
    entries: set[str] = set()
    downloads: set[str] = set()
    for entry in lock.values():
        if entry.source == "system":
            continue
        shas = frozenset(f.sha256 for f in entry.files)
        downloads |= shas
        same = [
            p.entry
            for p in rec.pins
            if (p.cuda, p.source) == (str(entry.cuda), entry.source) and frozenset(p.downloads) == shas
        ]
        if same:
            entries.update(same)
            continue
        entries.update(
            e.path.name
            for e in installed
            if (e.source, e.version) == (entry.source, str(entry.cuda)) and _files_of(e) == shas
        )
    return frozenset(entries), frozenset(downloads)


def drop(cache: Cache, rec: ProjectRecord) -> bool:
    """Remove the record if its matrix file still does not exist (checked under its lock)."""
    key = rec.file.stem
    with cache.locked_named(f"project-{key[:16]}", f"the project record of {rec.matrix}"):
        if rec.matrix.exists():
            return False
        rec.file.unlink(missing_ok=True)
    return True


def clean_stale_tmp(cache: Cache) -> None:
    """Remove temporary record files left by processes that died while writing one."""
    if not cache.projects.is_dir():
        return
    for tmp in cache.projects.glob(".*.tmp"):
        parts = tmp.name.split(".")  # "", key, pid, random, "tmp"
        if len(parts) >= 4 and parts[2].isdigit() and not pid_alive(int(parts[2])):
            tmp.unlink(missing_ok=True)


def users(cache: Cache, matrix: Matrix | None) -> Users:
    """Who needs what in the cache: ``matrix`` (its lock must be readable) and every recorded
    project whose matrix file still exists; records of vanished matrices are dropped."""
    found = Users()
    current = matrix.path.resolve() if matrix is not None else None
    if matrix is not None:
        pins = pins_of(matrix, cache)
        found.add(
            frozenset(p.entry for p in pins),
            frozenset(s for p in pins for s in p.downloads),
            f"{current} (this matrix)",
        )
    clean_stale_tmp(cache)
    installed = cache.all_entries()
    for rec in records(cache):
        if isinstance(rec, Path):
            if _foreign(rec):  # a newer wheelmatrix's record: not ours to judge or delete
                found.dropped.append(f"ignored the project record {rec}: written by another wheelmatrix version")
            else:
                rec.unlink(missing_ok=True)
                found.dropped.append(f"dropped the unreadable project record {rec}")
            continue
        if rec.matrix == current:
            continue
        if not rec.matrix.exists() and drop(cache, rec):
            found.dropped.append(
                f"dropped the record of {rec.matrix} (last used {rec.last_used}): the file no longer exists"
            )
            continue
        try:
            entries, downloads = pinned_now(rec, installed)
            user = str(rec.matrix)
        except ToolchainError as exc:
            entries, downloads = rec.entries, rec.downloads
            user = f"{rec.matrix} (as recorded {rec.last_used}: {exc.message})"
        found.add(entries, downloads, user)
    return found
