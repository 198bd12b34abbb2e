"""Unit tests of the toolchain stage: lock file, archive reading, data invariants, cache
mechanics, error messages. Fast, no network, no compiler."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from wheelmatrix.errors import ToolchainError
from wheelmatrix.model import CudaVersion, Toolchain
from wheelmatrix.toolchains import Cache, InstalledToolchain, LockedFile, LockEntry, select
from wheelmatrix.toolchains import data as tc_data
from wheelmatrix.toolchains.base import identity_of
from wheelmatrix.toolchains.debarchive import (
    IndexError_,
    KeepRule,
    _clearsigned_body,
    ar_members,
    parse_packages,
    parse_release,
    unpack_deb,
)
from wheelmatrix.toolchains.debian import DebianSource
from wheelmatrix.toolchains.fetch import DownloadError, fetch_bytes
from wheelmatrix.toolchains.lockfile import read_lock, render_lock, write_lock
from wheelmatrix.toolchains.pypi import PypiSource
from wheelmatrix.toolchains.system import SystemSource
from wheelmatrix.toolchains.verify import nvcc_release, probe_archs

from .toolchain_fixtures.matrices import facts, matrix, spec
from .toolchain_fixtures.mirror import build_deb

SHA = "ab" * 32


def _entry(sha: str = SHA) -> LockEntry:
    files = (
        LockedFile(
            "nvidia-cuda-nvcc", "13.0.88", "nvidia_cuda_nvcc-13.0.88-py3-none-x.whl", "https://x/y.whl", sha, 123
        ),
        LockedFile(
            "g++-11", "11.3.0-12", "g++-11_11.3.0-12_amd64.deb", "pool/main/g/g++-11.deb", "cd" * 32, 9, "host-gcc"
        ),
    )
    return LockEntry(CudaVersion(13, 0), "pypi", "pypi", files, ("https://pypi.org/pypi",))


# --- toolchains.lock ---------------------------------------------------------------------------


def test_lock_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "toolchains.lock"
    write_lock(path, [_entry()])
    assert path.read_text().startswith("# toolchains.lock")
    assert read_lock(path) == {("13.0", "pypi"): _entry()}
    assert render_lock(read_lock(path).values()) == path.read_text()


def test_absent_lock_is_empty(tmp_path: Path) -> None:
    assert read_lock(tmp_path / "none.lock") == {}


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("version = 2\n", "lock format version 2"),
        ("version = 1\n[[toolchain]]\nsource = 'pypi'\n", "toolchain[0]: malformed"),
        ("version = 1\n[[toolchain]]\ncuda = '13.0'\nsource = 'conda'\n", "unknown source 'conda'"),
        ("version = 1\n[[toolchain]]\ncuda='13.0'\nsource='pypi'\n[[toolchain.file]]\nname='a'\nversion='1'\n"
         "filename='a.whl'\nurl='u'\nsha256='xyz'\nsize=1\n", "malformed sha256 'xyz'"),
        ("version = [", "cannot be read"),
    ],
)  # fmt: skip
def test_malformed_lock(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "toolchains.lock"
    path.write_text(text)
    with pytest.raises(ToolchainError, match=r"toolchains\.lock") as info:
        read_lock(path)
    assert problem in info.value.message
    assert info.value.fix and "wheelmatrix toolchain lock" in info.value.fix


def test_identity_follows_bytes_and_recipe() -> None:
    base = identity_of(_entry(), {"keep": 1})
    assert identity_of(_entry(), {"keep": 1}) == base
    assert identity_of(_entry("ef" * 32), {"keep": 1}) != base
    assert identity_of(_entry(), {"keep": 2}) != base


# --- Debian archive reading --------------------------------------------------------------------


def test_clearsigned_body_and_release_sums() -> None:
    signed = (
        "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA256\n\nSuite: x\nDate: today\nSHA256:\n"
        f" {SHA}   100 non-free/binary-amd64/Packages.xz\n- -not a dash\n"
        "-----BEGIN PGP SIGNATURE-----\nabc\n-----END PGP SIGNATURE-----\n"
    )
    body = _clearsigned_body(signed)
    assert body.startswith("Suite: x\n") and "-not a dash" in body and "- -not" not in body
    release = parse_release(body, "x", signed=False)
    assert release.sha256 == {"non-free/binary-amd64/Packages.xz": (SHA, 100)}
    assert release.date == "today"
    with pytest.raises(IndexError_, match="lists no SHA256"):
        parse_release("Suite: x\n", "x", signed=False)
    with pytest.raises(IndexError_, match="not a clearsigned message"):
        _clearsigned_body("Suite: x\n")


def test_parse_packages() -> None:
    text = "Package: a\nVersion: 1\nDescription: one\n two\n\nPackage: b\nVersion: 2\n"
    assert list(parse_packages(text)) == [
        {"Package": "a", "Version": "1", "Description": "one\ntwo"},
        {"Package": "b", "Version": "2"},
    ]


def test_ar_reader_and_keep_rules(tmp_path: Path) -> None:
    deb = tmp_path / "x.deb"
    deb.write_bytes(
        build_deb(
            "x",
            "1",
            {
                "usr/bin/ptxas": b"#!/bin/sh\n",
                "usr/bin/nsys": b"#!/bin/sh\n",
                "usr/include/a/b.h": b"odd-sized",
                "usr/include/link.h": ("symlink", "a/b.h"),
                "usr/include/abs.h": ("symlink", "/etc/passwd"),
                "usr/include/up.h": ("symlink", "../../../../etc/passwd"),
                "../escape.h": b"evil",
            },
        )
    )
    with deb.open("rb") as fh:
        names = []
        for name, size in ar_members(fh):
            names.append(name)
            fh.read(size)
    assert names == ["debian-binary", "control.tar.xz", "data.tar.xz"]
    rules = (KeepRule("usr/bin/", "bin/", ("ptxas",)), KeepRule("usr/include/", "include/", ("*",)))
    out = tmp_path / "out"
    assert unpack_deb(deb, out, rules) == 3
    kept = sorted(str(p.relative_to(out)) for p in out.rglob("*") if not p.is_dir())
    assert kept == ["bin/ptxas", "include/a/b.h", "include/link.h"]
    assert os.access(out / "bin/ptxas", os.X_OK)
    assert (out / "include/link.h").read_bytes() == b"odd-sized"


def test_not_a_deb(tmp_path: Path) -> None:
    bad = tmp_path / "bad.deb"
    bad.write_bytes(b"PK\x03\x04 not an ar archive")
    with pytest.raises(ToolchainError, match="not an ar archive"):
        unpack_deb(bad, tmp_path / "o", ())
    no_data = tmp_path / "nodata.deb"
    no_data.write_bytes(
        b"!<arch>\n" + f"{'debian-binary':<16}{0:<12}{0:<6}{0:<6}{100644:<8}{4:<10}`\n".encode() + b"2.0\n"
    )
    with pytest.raises(ToolchainError, match=r"no data\.tar member"):
        unpack_deb(no_data, tmp_path / "o", ())


# --- verification helpers ----------------------------------------------------------------------


def test_nvcc_release() -> None:
    out = "nvcc: NVIDIA (R) Cuda compiler driver\nCuda compilation tools, release 12.4, V12.4.131\n"
    assert nvcc_release(out) == ("12.4", "12.4.131")
    assert nvcc_release("gcc (Debian 12.2.0-14) 12.2.0") is None


def test_probe_archs_lowest_highest_and_ptx() -> None:
    s = spec("12.4", Toolchain("debian", suite="trixie"), sass=(50, 60, 70, 90, 80), ptx=(90,))
    assert probe_archs(s) == ((50, 90), (90,))
    assert probe_archs(spec("13.0", Toolchain("pypi"), sass=(120,), ptx=())) == ((120,), ())


def test_installed_toolchain_cmake_args() -> None:
    tc = InstalledToolchain(
        CudaVersion(11, 8), "debian", Path("/c/cuda"), Path("/c/cuda/bin/nvcc"), Path("/c/gcc/g++-11"),
        "11.8.89", "id", 1, True, (("NVCC_CCBIN", "/c/gcc/g++-11"),),
    )  # fmt: skip
    assert tc.cmake_args == (
        "-DCMAKE_CUDA_COMPILER=/c/cuda/bin/nvcc",
        "-DCUDAToolkit_ROOT=/c/cuda",
        "-DCMAKE_CUDA_HOST_COMPILER=/c/gcc/g++-11",
    )
    assert tc.env == {"NVCC_CCBIN": "/c/gcc/g++-11"}
    assert tc.to_json()["host_cxx"] == "/c/gcc/g++-11"


# --- which source can provide what -------------------------------------------------------------


def test_sources_say_why_they_cannot(monkeypatch: pytest.MonkeyPatch) -> None:
    assert PypiSource().unavailable(spec("13.0", Toolchain("pypi"))) is None
    reason = PypiSource().unavailable(spec("12.4", Toolchain("pypi")))
    assert reason and "hold no nvcc" in reason
    assert DebianSource().unavailable(spec("12.4", Toolchain("debian", suite="trixie"))) is None
    reason = DebianSource().unavailable(spec("12.8", Toolchain("debian", suite="trixie")))
    assert reason and "11.8, 12.4 only" in reason
    reason = DebianSource().unavailable(spec("12.4", Toolchain("debian")))
    assert reason and "names no Debian suite" in reason
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    reason = SystemSource().unavailable(spec("12.8", Toolchain("system")))
    assert reason and "CUDA_HOME is not set" in reason


def test_select_unknown_version(tmp_path: Path) -> None:
    m = matrix(tmp_path, spec("13.0", Toolchain("pypi")), spec("12.4", Toolchain("debian", suite="trixie")))
    assert [str(s.version) for s in select(m, [])] == ["13.0", "12.4"]
    with pytest.raises(ToolchainError, match=r"CUDA '12\.9' is not declared in .* \(it declares 13\.0, 12\.4\)"):
        select(m, ["12.9"])
    with pytest.raises(ToolchainError, match="is not declared"):
        select(m, ["twelve"])


def test_only_http_urls_are_fetched() -> None:
    with pytest.raises(DownloadError, match="only http"):
        fetch_bytes("file:///etc/passwd", what="x")


# --- data/toolchains.toml invariants -----------------------------------------------------------


def test_data_invariants() -> None:
    table = tc_data.table()
    for key in ("keep", "keep-gcc"):
        for rule in table["debian"][key]:
            assert rule["from"].endswith("/") and rule["to"].endswith("/") and rule["files"], rule
    for version, cfg in table["debian"]["versions"].items():
        cuda_facts = facts(version)  # every version is one cuda.toml knows
        assert cfg["toolkit"] in cfg["packages"]["non-free"]
        gcc = cfg.get("host-gcc")
        if gcc is not None:
            assert gcc in table["debian"]["host-gcc"]
            assert int(gcc) <= cuda_facts.host_gcc_max
    for gcfg in table["debian"]["host-gcc"].values():
        assert gcfg["cxx"].startswith("usr/bin/") and gcfg["libstdcxx-system"]
    assert table["pypi"]["packages"][0] == "nvidia-cuda-nvcc" and table["pypi"]["majors"] == [13]


# --- cache mechanics ---------------------------------------------------------------------------


def test_staging_of_dead_processes_is_cleaned(tmp_path: Path) -> None:
    cache = Cache(tmp_path)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    stale = cache.staging_root / f"pypi-13.0.{dead.stdout.strip()}.abc"
    live = cache.staging_root / f"pypi-13.0.{os.getppid()}.def"
    for p in (stale, live):
        (p / "x").mkdir(parents=True)
    assert cache.clean_stale_staging() == [stale]
    assert live.exists() and not stale.exists()


def test_staging_is_removed_on_failure_and_entries_need_metadata(tmp_path: Path) -> None:
    cache = Cache(tmp_path)

    def half_written() -> None:
        with cache.staging("pypi", "13.0") as folder:
            (folder / "half-written").write_text("x")
            raise RuntimeError

    with pytest.raises(RuntimeError):
        half_written()
    assert not any(cache.staging_root.iterdir())
    (cache.entries / "pypi-13.0-0000").mkdir(parents=True)  # no toolchain.json: not an entry
    assert cache.all_entries() == []
    with cache.staging("pypi", "13.0") as folder:
        cache.commit(
            folder,
            cache.entry_path("pypi", "13.0", "1" * 64),
            {"schema": 1, "source": "pypi", "version": "13.0", "identity": "1" * 64},
        )
    (record,) = cache.all_entries()
    assert record.identity == "1" * 64 and not any(cache.staging_root.iterdir())


def test_cache_dir_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHEELMATRIX_CACHE_DIR", str(tmp_path))
    assert Cache().root == tmp_path.resolve() / "toolchains"
    with pytest.raises(ToolchainError, match="path in it"):
        Cache().download_path(SHA, "../x.deb")


def test_reporter_quiet_task_counts_nothing() -> None:
    from wheelmatrix.toolchains.progress import Reporter, human_size

    with Reporter(enabled=False).task("x", 10) as task:
        task.advance(5)
    assert human_size(512) == "512 B" and human_size(3 << 20) == "3.0 MiB"


def test_cached_entry_that_fails_verification_is_not_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cached entry whose nvcc no longer works (here a stand-in script that cannot compile) is
    verified again for new archs, fails, is marked failed and is never handed out."""
    from wheelmatrix.toolchains import VerificationFailed, provide, status
    from wheelmatrix.toolchains.cache import write_meta
    from wheelmatrix.toolchains.debian import DebianSource
    from wheelmatrix.toolchains.lockfile import write_lock

    s = spec("12.4", Toolchain("debian", suite="trixie"), sass=(75, 90), ptx=(90,))
    m = matrix(tmp_path, s)
    names = sorted(DebianSource().package_names(s))
    files = tuple(LockedFile(n, "1", f"{n}.deb", f"pool/{n}.deb", SHA, 1) for n in names)
    entry = LockEntry(s.version, "debian", "debian:trixie", files)
    write_lock(tmp_path / "toolchains.lock", [entry])
    cache = Cache(tmp_path / "cache")
    folder = cache.entry_path("debian", "12.4", identity_of(entry, DebianSource().recipe(s)))
    nvcc = folder / "cuda" / "bin" / "nvcc"
    nvcc.parent.mkdir(parents=True)
    nvcc.write_text(
        '#!/bin/sh\n[ "$1" = --version ] && echo "release 12.4, V12.4.131" && exit 0\necho "broken: $*" >&2; exit 2\n'
    )
    nvcc.chmod(0o755)
    meta = {"schema": 1, "source": "debian", "version": "12.4", "identity": identity_of(entry, DebianSource().recipe(s)),
            "root": "cuda", "nvcc": "bin/nvcc", "host_cxx": None, "env": {}, "size": 1,
            "verifications": [{"sass": [50, 90], "ptx": [90]}]}  # fmt: skip
    write_meta(folder, meta)
    assert status(m, cache=cache)[0].cached and not status(m, cache=cache)[0].verified  # other archs
    monkeypatch.setenv("WHEELMATRIX_DEBIAN_MIRROR", "http://127.0.0.1:9")  # proves nothing is fetched
    with pytest.raises(VerificationFailed, match=r"broken: -c probe\.cu"):
        provide(s, lock_path=tmp_path / "toolchains.lock", cache=cache)
    record = cache.read_entry(folder)
    assert record is not None and record.failed and record.verifications == []
    with pytest.raises(VerificationFailed):  # still refused on the next call
        provide(s, lock_path=tmp_path / "toolchains.lock", cache=cache)


def test_stale_lock_is_refused(tmp_path: Path) -> None:
    from wheelmatrix.toolchains.manager import pinned
    from wheelmatrix.toolchains.progress import Reporter

    s = spec("13.0", Toolchain("pypi"))
    write_lock(tmp_path / "toolchains.lock", [_entry()])  # pins nvcc and g++-11 only
    with pytest.raises(
        ToolchainError, match=r"is stale for CUDA 13\.0: it lacks nvidia-cuda-cccl, .*; it pins g\+\+-11 that"
    ) as info:
        pinned(s, tmp_path / "toolchains.lock", offline=True, reporter=Reporter(enabled=False))
    assert info.value.fix == "run `wheelmatrix toolchain lock 13.0` and commit the lock"
    moved = spec("13.0", Toolchain("debian", suite="trixie"))
    entry = LockEntry(moved.version, "debian", "debian:bookworm", ())
    write_lock(tmp_path / "toolchains.lock", [entry])
    with pytest.raises(ToolchainError, match="resolved from debian:bookworm, the matrix says debian:trixie"):
        pinned(moved, tmp_path / "toolchains.lock", offline=True, reporter=Reporter(enabled=False))


def test_committed_lock_pins_every_toolchain_of_the_release() -> None:
    """toolchains.lock at the repository root is current for kbit's release and for the data."""
    from wheelmatrix.toolchains.manager import pinned
    from wheelmatrix.toolchains.progress import Reporter

    from .toolchain_fixtures.matrices import release_matrix

    repo = Path(__file__).resolve().parents[2]
    for s in release_matrix(repo).cuda:
        if s.toolchain.source == "system":
            continue
        entry = pinned(s, repo / "toolchains.lock", offline=True, reporter=Reporter(enabled=False))
        assert entry.files and all(len(f.sha256) == 64 and f.size > 0 for f in entry.files)


def test_prune_keeps_what_the_lock_pins(tmp_path: Path) -> None:
    from wheelmatrix.toolchains import prune
    from wheelmatrix.toolchains.cache import write_meta
    from wheelmatrix.toolchains.lockfile import write_lock

    s = spec("13.0", Toolchain("pypi"))
    m = matrix(tmp_path, s)
    names = sorted(PypiSource().package_names(s))
    files = tuple(
        LockedFile(n, "13.0.1", f"{n}.whl", f"https://x/{n}.whl", f"{i:064x}", 1) for i, n in enumerate(names)
    )
    entry = LockEntry(s.version, "pypi", "pypi", files)
    write_lock(tmp_path / "toolchains.lock", [entry])
    cache = Cache(tmp_path / "cache")
    keep = cache.entry_path("pypi", "13.0", identity_of(entry, PypiSource().recipe(s)))
    old = cache.entry_path("pypi", "13.0", "f" * 64)
    for folder in (keep, old):
        folder.mkdir(parents=True)
        write_meta(folder, {"schema": 1, "source": "pypi", "version": "13.0", "identity": folder.name})
    kept_download = cache.download_path(files[0].sha256, files[0].filename)
    old_download = cache.download_path("e" * 64, "old.whl")
    for path in (kept_download, old_download):
        path.parent.mkdir(parents=True)
        path.write_bytes(b"x")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    stale = cache.staging_root / f"pypi-13.0.{dead.stdout.strip()}.x"
    stale.mkdir(parents=True)
    removed = {p for p, _ in prune(m, cache=cache)}
    assert removed == {old, old_download.parent, stale}
    assert keep.is_dir() and kept_download.is_file()
    removed = {p for p, _ in prune(None, cache=cache, everything=True)}
    assert removed == {keep, kept_download.parent}
