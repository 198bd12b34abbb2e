"""The toolchain cache: downloads by content hash, installed toolchains by source, version and
content hash, a file lock per toolchain, and staging folders renamed into place atomically.

Layout under ``$WHEELMATRIX_CACHE_DIR`` (default: the platformdirs user cache dir)/toolchains::

    downloads/<sha256>/<filename>      verified downloads (wheels, .debs), reusable offline
    entries/<source>-<version>-<id>/   installed, verified toolchains; toolchain.json inside
    staging/<source>-<version>.<pid>.<random>/   an install in progress (never used)
    locks/<source>-<version>.lock      held while a toolchain is installed or verified
    projects/<sha256 of matrix path>.json   the projects this cache serves (toolchains/registry.py)
    locks/project-<sha256[:16]>.lock   held while a project's record is written or dropped
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout
from platformdirs import user_cache_dir

from wheelmatrix.errors import ToolchainError

META = "toolchain.json"
META_SCHEMA = 1
LOCK_TIMEOUT = 3600.0


def cache_root() -> Path:
    override = os.environ.get("WHEELMATRIX_CACHE_DIR")
    if override:
        return Path(override).expanduser().resolve()
    return Path(user_cache_dir("wheelmatrix", appauthor=False))


@dataclass(frozen=True)
class EntryRecord:
    """An installed toolchain as recorded in its ``toolchain.json``."""

    path: Path
    meta: dict[str, object]

    @property
    def source(self) -> str:
        return str(self.meta["source"])

    @property
    def version(self) -> str:
        return str(self.meta["version"])

    @property
    def identity(self) -> str:
        return str(self.meta["identity"])

    @property
    def verifications(self) -> list[dict[str, object]]:
        value = self.meta.get("verifications", [])
        return list(value) if isinstance(value, list) else []

    @property
    def failed(self) -> str | None:
        value = self.meta.get("failed")
        return str(value) if value else None


class Cache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = (root or cache_root()) / "toolchains"

    @property
    def downloads(self) -> Path:
        return self.root / "downloads"

    @property
    def entries(self) -> Path:
        return self.root / "entries"

    @property
    def staging_root(self) -> Path:
        return self.root / "staging"

    def download_path(self, sha256: str, filename: str) -> Path:
        if "/" in filename or filename.startswith("."):
            raise ToolchainError(f"refusing a download file name with a path in it: {filename!r}")
        return self.downloads / sha256 / filename

    def has_download(self, sha256: str, filename: str, size: int) -> bool:
        path = self.download_path(sha256, filename)
        return path.is_file() and path.stat().st_size == size

    @staticmethod
    def key(source: str, version: str) -> str:
        return f"{source}-{version}"

    def entry_path(self, source: str, version: str, identity: str) -> Path:
        return self.entries / f"{self.key(source, version)}-{identity[:16]}"

    @contextmanager
    def locked(self, source: str, version: str) -> Iterator[None]:
        """Hold the lock of one toolchain: concurrent installs of it wait for each other."""
        locks = self.root / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(locks / f"{self.key(source, version)}.lock"), timeout=LOCK_TIMEOUT)
        try:
            with lock:
                yield
        except Timeout as exc:
            raise ToolchainError(
                f"another wheelmatrix process has held the lock of CUDA {version} ({source}) for an hour",
                fix=f"stop it, or remove {lock.lock_file} if no such process runs",
            ) from exc

    @property
    def projects(self) -> Path:
        """The registry of the projects this cache serves (see :mod:`wheelmatrix.toolchains.registry`)."""
        return self.root / "projects"

    @contextmanager
    def locked_named(self, name: str, what: str, timeout: float = 60.0) -> Iterator[None]:
        """Hold ``locks/<name>.lock`` (``what`` names it in the error when it is held too long)."""
        locks = self.root / "locks"
        locks.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(locks / f"{name}.lock"), timeout=timeout)
        try:
            with lock:
                yield
        except Timeout as exc:
            raise ToolchainError(
                f"another wheelmatrix process has held the lock of {what} for {timeout:.0f} s",
                fix=f"stop it, or remove {lock.lock_file} if no such process runs",
            ) from exc

    @contextmanager
    def staging(self, source: str, version: str) -> Iterator[Path]:
        """An empty folder on the cache's file system, removed unless it was renamed away."""
        self.staging_root.mkdir(parents=True, exist_ok=True)
        self.clean_stale_staging()
        path = Path(tempfile.mkdtemp(prefix=f"{self.key(source, version)}.{os.getpid()}.", dir=self.staging_root))
        try:
            yield path
        finally:
            if path.exists():
                shutil.rmtree(path, ignore_errors=True)

    def clean_stale_staging(self) -> list[Path]:
        """Remove staging folders left by processes that died (killed mid-install)."""
        removed: list[Path] = []
        if not self.staging_root.is_dir():
            return removed
        for child in self.staging_root.iterdir():
            parts = child.name.split(".")
            pid = int(parts[-2]) if len(parts) >= 3 and parts[-2].isdigit() else None
            if pid is not None and pid_alive(pid):
                continue
            shutil.rmtree(child, ignore_errors=True)
            removed.append(child)
        return removed

    def commit(self, staging: Path, entry: Path, meta: dict[str, object]) -> None:
        """Write the metadata and rename the finished staging folder into place."""
        write_meta(staging, meta)
        entry.parent.mkdir(parents=True, exist_ok=True)
        if entry.exists():  # a broken leftover without metadata (cannot happen via commit)
            shutil.rmtree(entry)
        staging.rename(entry)

    def read_entry(self, path: Path) -> EntryRecord | None:
        try:
            meta = json.loads((path / META).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or meta.get("schema") != META_SCHEMA:
            return None
        return EntryRecord(path, meta)

    def all_entries(self) -> list[EntryRecord]:
        if not self.entries.is_dir():
            return []
        found = []
        for child in sorted(self.entries.iterdir()):
            record = self.read_entry(child)
            if record is not None:
                found.append(record)
        return found


def write_meta(folder: Path, meta: dict[str, object]) -> None:
    tmp = folder / f".{META}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    tmp.replace(folder / META)


def tree_size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with suppress(OSError):
                total += (Path(dirpath) / name).lstat().st_size
    return total


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (leftovers of dead processes may be cleaned up)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
