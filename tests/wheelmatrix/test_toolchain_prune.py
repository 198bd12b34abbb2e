"""``toolchain prune`` on a cache shared by several projects: the registry of projects in the
cache (toolchains/registry.py) and what prune keeps for whom. Fast: fake cache entries and
locks in tmp folders, no network, no compiler."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from wheelmatrix.model import Matrix, Toolchain
from wheelmatrix.toolchains import Cache, LockedFile, LockEntry, prune, registry
from wheelmatrix.toolchains.base import identity_of
from wheelmatrix.toolchains.cache import write_meta
from wheelmatrix.toolchains.lockfile import write_lock
from wheelmatrix.toolchains.pypi import PypiSource
from wheelmatrix.toolchains.verify import probe_archs

from .toolchain_fixtures.matrices import matrix, spec

SHARED = "5" * 64  # a file both projects' locks pin


def _project(folder: Path, seed: int, *, version: str = "13.0") -> tuple[Matrix, LockEntry]:
    """A project in ``folder``: a matrix.toml on disk and a toolchains.lock pinning pypi files whose
    sha256s derive from ``seed`` (the first file is the same in every project)."""
    s = spec(version, Toolchain("pypi"))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "matrix.toml").write_text("# a test project (the tests hand the Matrix over in code)\n")
    names = sorted(PypiSource().package_names(s))
    files = tuple(
        LockedFile(n, "13.0.1", f"{n}.whl", f"https://x/{n}.whl", SHARED if i == 0 else f"{seed:02x}{i:062x}", 10)
        for i, n in enumerate(names)
    )
    entry = LockEntry(s.version, "pypi", "pypi", files)
    write_lock(folder / "toolchains.lock", [entry])
    return matrix(folder, s), entry


def _install(cache: Cache, m: Matrix, entry: LockEntry) -> Path:
    """A verified-looking cache entry made from ``entry``'s files, and those downloads."""
    s = m.cuda[0]
    identity = identity_of(entry, PypiSource().recipe(s))
    folder = cache.entry_path("pypi", str(s.version), identity)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "cuda" / "bin").mkdir(parents=True, exist_ok=True)
    sass, ptx = probe_archs(s)
    meta: dict[str, object] = {
        "schema": 1,
        "source": "pypi",
        "version": str(s.version),
        "identity": identity,
        "root": "cuda",
        "nvcc": "bin/nvcc",
        "host_cxx": None,
        "env": {},
        "size": 1,
        "files": [f.to_json() for f in entry.files],
        "verifications": [{"sass": list(sass), "ptx": list(ptx)}],
    }
    write_meta(folder, meta)
    for f in entry.files:
        path = cache.download_path(f.sha256, f.filename)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * f.size)
    return folder


def _downloads(entry: LockEntry, cache: Cache) -> set[Path]:
    return {cache.downloads / f.sha256 for f in entry.files}


def _orphans(cache: Cache) -> tuple[Path, Path]:
    """An entry and a download no project pins."""
    old = cache.entry_path("pypi", "13.0", "f" * 64)
    old.mkdir(parents=True)
    write_meta(old, {"schema": 1, "source": "pypi", "version": "13.0", "identity": "f" * 64, "files": []})
    download = cache.download_path("e" * 64, "old.whl")
    download.parent.mkdir(parents=True)
    download.write_bytes(b"old")
    return old, download.parent


@pytest.fixture
def two(tmp_path: Path) -> tuple[Cache, Matrix, LockEntry, Matrix, LockEntry]:
    """Projects A and B with different locks, both installed into one cache and recorded."""
    cache = Cache(tmp_path / "cache")
    a, lock_a = _project(tmp_path / "a", 0xA)
    b, lock_b = _project(tmp_path / "b", 0xB)
    for m, e in ((a, lock_a), (b, lock_b)):
        _install(cache, m, e)
        registry.record(cache, m)
    return cache, a, lock_a, b, lock_b


def test_record_holds_paths_time_entries_and_downloads(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    a, lock_a = _project(tmp_path / "a", 0xA)
    folder = _install(cache, a, lock_a)
    rec = registry.record(cache, a)
    assert rec.file == cache.root / "projects" / f"{registry.key_of(a.path)}.json"
    doc = json.loads(rec.file.read_text())
    assert doc["matrix"] == str(a.path.resolve()) and doc["lock"] == str((tmp_path / "a" / "toolchains.lock").resolve())
    assert doc["last_used"].endswith("Z")
    assert doc["toolchains"] == [
        {"cuda": "13.0", "source": "pypi", "entry": folder.name, "downloads": [f.sha256 for f in lock_a.files]}
    ]
    assert registry.records(cache) == [rec]
    # the same matrix reached through another spelling of its path is the same record
    again = registry.record(cache, matrix(tmp_path / "a" / ".." / "a", a.cuda[0]))
    assert again.file == rec.file and len(registry.records(cache)) == 1


def test_prune_from_a_keeps_what_b_pins(two: tuple[Cache, Matrix, LockEntry, Matrix, LockEntry]) -> None:
    cache, a, lock_a, b, lock_b = two
    old, old_download = _orphans(cache)
    result = prune(a, cache=cache)
    assert {p for p, _ in result} == {old, old_download}  # nobody pins them
    assert isinstance(result, registry.Pruned)
    kept = {k.path: k.users for k in result.kept}
    entry_a = _install(cache, a, lock_a)  # (idempotent: the path of A's entry)
    entry_b = _install(cache, b, lock_b)
    assert set(kept) == {entry_a, entry_b} | _downloads(lock_a, cache) | _downloads(lock_b, cache)
    assert kept[entry_a] == (f"{a.path.resolve()} (this matrix)",)
    assert kept[entry_b] == (str(b.path.resolve()),)
    assert kept[cache.downloads / SHARED] == (f"{a.path.resolve()} (this matrix)", str(b.path.resolve()))
    assert result.dropped == []
    assert all(p.exists() for p in kept)


def test_record_of_a_deleted_project_is_dropped_and_its_toolchains_pruned(
    two: tuple[Cache, Matrix, LockEntry, Matrix, LockEntry],
) -> None:
    cache, a, lock_a, b, lock_b = two
    entry_b = _install(cache, b, lock_b)
    record_b = registry.record_path(cache, b.path)
    assert record_b.is_file()
    b.path.unlink()  # project B is gone
    result = prune(a, cache=cache)
    assert isinstance(result, registry.Pruned)
    (message,) = result.dropped
    assert str(b.path.resolve()) in message and "no longer exists" in message
    assert not record_b.exists()
    only_b = _downloads(lock_b, cache) - _downloads(lock_a, cache)
    assert {p for p, _ in result} == {entry_b} | only_b
    assert cache.downloads.joinpath(SHARED).is_dir()  # A pins it too
    assert [r.matrix for r in registry.records(cache) if isinstance(r, registry.ProjectRecord)] == [a.path.resolve()]


def test_renewed_lock_of_another_project_is_read_again(
    two: tuple[Cache, Matrix, LockEntry, Matrix, LockEntry], tmp_path: Path
) -> None:
    """B renewed its lock since it was recorded: what B's lock pins now stays (its new entry,
    found by the files in toolchain.json), what it pinned before goes."""
    cache, a, _lock_a, b, lock_b = two
    old_b = _install(cache, b, lock_b)
    _b, new_lock_b = _project(tmp_path / "b", 0xC)  # rewrites b's lock, no new record
    new_b = _install(cache, b, new_lock_b)  # e.g. installed by a process that recorded nothing
    result = prune(a, cache=cache)
    assert isinstance(result, registry.Pruned)
    removed = {p for p, _ in result}
    assert old_b in removed and not old_b.exists()
    assert new_b.is_dir() and _downloads(new_lock_b, cache) <= {k.path for k in result.kept}
    assert _downloads(lock_b, cache) - {cache.downloads / SHARED} <= removed


def test_unreadable_lock_of_another_project_falls_back_to_its_record(
    two: tuple[Cache, Matrix, LockEntry, Matrix, LockEntry],
) -> None:
    cache, a, _lock_a, b, lock_b = two
    entry_b = _install(cache, b, lock_b)
    (b.path.parent / "toolchains.lock").write_text("version = [")  # mid-merge, say
    result = prune(a, cache=cache)
    assert isinstance(result, registry.Pruned)
    assert {p for p, _ in result} == set()
    (users,) = [k.users for k in result.kept if k.path == entry_b]
    assert users[0].startswith(f"{b.path.resolve()} (as recorded ") and "cannot be read" in users[0]


def test_prune_without_a_record_still_keeps_the_current_matrix(tmp_path: Path) -> None:
    """The current matrix needs no record to be spared, and prune records it for the others."""
    cache = Cache(tmp_path / "cache")
    a, lock_a = _project(tmp_path / "a", 0xA)
    entry_a = _install(cache, a, lock_a)
    b, lock_b = _project(tmp_path / "b", 0xB)
    entry_b = _install(cache, b, lock_b)
    removed = {p for p, _ in prune(a, cache=cache)}
    assert entry_b in removed and entry_a.is_dir()  # B was never recorded: nothing protects it
    assert registry.record_path(cache, a.path).is_file()
    entry_b = _install(cache, b, lock_b)
    removed = {p for p, _ in prune(b, cache=cache)}
    assert entry_a.is_dir() and entry_b.is_dir()  # A was recorded by its own prune
    assert removed == set()


def test_prune_all_removes_everything(two: tuple[Cache, Matrix, LockEntry, Matrix, LockEntry]) -> None:
    cache, _a, lock_a, b, lock_b = two
    old, old_download = _orphans(cache)
    entry_b = _install(cache, b, lock_b)
    removed = {p for p, _ in prune(None, cache=cache, everything=True)}
    assert {old, old_download, entry_b} | _downloads(lock_a, cache) | _downloads(lock_b, cache) <= removed
    assert list(cache.entries.iterdir()) == [] and list(cache.downloads.iterdir()) == []


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., tuple[int, str, str]]:
    """`wheelmatrix toolchain ...` with the cache in tmp_path/cache and matrices handed over in code."""
    from wheelmatrix import cli as cli_mod
    from wheelmatrix.commands import toolchain as command

    known: dict[Path, Matrix] = {}
    monkeypatch.setattr(command, "_load_matrix", lambda path: known[path])
    monkeypatch.setattr(cli_mod, "COMMANDS", {"toolchain": "wheelmatrix.commands.toolchain"})
    monkeypatch.setenv("WHEELMATRIX_CACHE_DIR", str(tmp_path / "cache"))

    def run(m: Matrix, *argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
        known[m.path] = m
        code = cli_mod.main(["toolchain", "--matrix", str(m.path), *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_cli_records_on_use_and_prune_says_what_it_keeps_and_why(
    cli: Callable[..., tuple[int, str, str]], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cache = Cache(tmp_path / "cache")
    a, lock_a = _project(tmp_path / "a", 0xA)
    b, lock_b = _project(tmp_path / "b", 0xB)
    entry_a = _install(cache, a, lock_a)
    entry_b = _install(cache, b, lock_b)
    old, _ = _orphans(cache)
    code, out, err = cli(b, "path", "13.0", capsys=capsys)  # provides B (from the cache): records B
    assert code == 0, err
    assert out.strip() == str(entry_b / "cuda" / "bin" / "nvcc")
    assert registry.record_path(cache, b.path).is_file()
    code, out, err = cli(a, "prune", capsys=capsys)
    assert code == 0, err
    assert f"removed {old} " in out
    assert f"kept entries/{entry_b.name} (" in out and f"): used by {b.path.resolve()}\n" in out
    assert f"kept entries/{entry_a.name} (" in out and f"): used by {a.path.resolve()} (this matrix)\n" in out
    shared_name = lock_a.files[0].filename
    assert (
        f"kept downloads/{SHARED}/{shared_name} (10 B): used by {a.path.resolve()} (this matrix), {b.path.resolve()}"
        in out
    )
    assert out.splitlines()[-1].startswith("pruned 2 items, ") and "used by 2 projects" in out.splitlines()[-1]
    b.path.unlink()
    code, out, err = cli(a, "prune", capsys=capsys)
    assert code == 0, err
    assert out.splitlines()[0].startswith(f"dropped the record of {b.path.resolve()} (last used ")
    assert f"removed {entry_b} " in out
    code, out, err = cli(a, "prune", "--all", capsys=capsys)
    assert code == 0, err
    assert f"removed {entry_a} " in out and "kept" not in out
    assert list(cache.entries.iterdir()) == [] and list(cache.downloads.iterdir()) == []


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from toolchain_fixtures.matrices import matrix, spec
    from wheelmatrix.model import Toolchain
    from wheelmatrix.toolchains import Cache, registry
    cache = Cache(Path({cache!r}))
    folders = [Path(f) for f in {folders!r}]
    for i in range({rounds}):
        registry.record(cache, matrix(folders[i % len(folders)], spec("13.0", Toolchain("pypi"))))
    """
)


def test_concurrent_record_writes_do_not_corrupt_the_registry(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "cache")
    folders = []
    for n in range(3):
        _project(tmp_path / f"p{n}", n)
        folders.append(str(tmp_path / f"p{n}"))
    script = WRITER.format(tests=str(Path(__file__).parent), cache=str(cache.root.parent), folders=folders, rounds=40)
    procs = [subprocess.Popen([sys.executable, "-c", script], env={**os.environ}) for _ in range(4)]
    readings = []
    while any(p.poll() is None for p in procs):  # read while they write: never half a file
        readings.extend(registry.records(cache))
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0, 0]
    assert not [r for r in readings if isinstance(r, Path)], "a record was read half-written"
    found = registry.records(cache)
    assert sorted(str(r.matrix) for r in found if isinstance(r, registry.ProjectRecord)) == sorted(
        str(Path(f, "matrix.toml").resolve()) for f in folders
    )
    assert len(found) == 3
    assert [p.name for p in cache.projects.iterdir() if p.name.startswith(".")] == []  # no temporary file left
    for rec in found:
        assert isinstance(rec, registry.ProjectRecord) and len(rec.pins) == 1 and len(rec.downloads) == 5
