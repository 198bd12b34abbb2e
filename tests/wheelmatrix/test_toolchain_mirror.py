"""The debian source against a real HTTP mirror on 127.0.0.1: lock, hash chain, signature,
tampered / truncated / interrupted downloads, offline, full disk. No network needed.

The mirror serves small synthesized .deb files (see toolchain_fixtures/mirror.py): everything
up to verification is the real code path; the stand-in nvcc then fails the probe on purpose.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from wheelmatrix.errors import EnvironmentProblem, ToolchainError
from wheelmatrix.model import Matrix, Toolchain
from wheelmatrix.toolchains import Cache, VerificationFailed, lock, lock_path_of, provide, prune, status
from wheelmatrix.toolchains.debarchive import IndexError_
from wheelmatrix.toolchains.fetch import DownloadError
from wheelmatrix.toolchains.lockfile import read_lock

from .toolchain_fixtures.matrices import matrix, spec
from .toolchain_fixtures.mirror import Mirror, fake_toolkit, partial_files, wait_for

SUITE = "wmtest"
PKG = "nvidia-cuda-dev"

pytestmark = pytest.mark.skipif(
    shutil.which("gpg") is None or shutil.which("gpgv") is None, reason="needs gpg and gpgv"
)


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One throw-away signing key for the module (generating one takes a moment)."""
    home = tmp_path_factory.mktemp("gnupg")
    Mirror(tmp_path_factory.mktemp("unused"), home).make_key()
    return home


@pytest.fixture
def mirror(tmp_path: Path, key: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Mirror]:
    m = Mirror(tmp_path / "mirror", key)
    m.add_suite(SUITE, fake_toolkit("12.4"), "12.4")
    with m.serving() as url:
        monkeypatch.setenv("WHEELMATRIX_DEBIAN_MIRROR", url)
        monkeypatch.setenv("WHEELMATRIX_DEBIAN_KEYRING", str(m.keyring))
        monkeypatch.setenv("WHEELMATRIX_CACHE_DIR", str(tmp_path / "cache"))
        yield m


@pytest.fixture
def test_matrix(tmp_path: Path) -> Matrix:
    return matrix(tmp_path, spec("12.4", Toolchain("debian", suite=SUITE), sass=(75, 90), ptx=(90,)))


def _cache(tmp_path: Path) -> Cache:
    return Cache(tmp_path / "cache")


def assert_consistent(cache: Cache) -> None:
    """No partial download, no staging folder, no entry without metadata."""
    assert partial_files(cache.root.parent) == []
    if cache.entries.is_dir():
        for entry in cache.entries.iterdir():
            assert cache.read_entry(entry) is not None, entry
    if cache.downloads.is_dir():
        for folder in cache.downloads.iterdir():
            for f in folder.iterdir():
                assert hashlib.sha256(f.read_bytes()).hexdigest() == folder.name, f


def test_lock_pins_index_hashes(mirror: Mirror, test_matrix: Matrix) -> None:
    lock(test_matrix)
    entries = read_lock(lock_path_of(test_matrix))
    entry = entries[("12.4", "debian")]
    pinned = {f.name: f for f in entry.files}
    assert set(pinned) == {
        "nvidia-cuda-toolkit",
        "nvidia-cuda-dev",
        "libcudart12",
        "libcu++-dev",
        "libcub-dev",
        "libthrust-dev",
    }
    for name, f in pinned.items():
        assert f.sha256 == mirror.packages[name]["sha256"]
        assert f.url == mirror.packages[name]["path"]
    assert "signature checked" in entry.indexes[0]


def test_install_unpacks_only_kept_files_then_fails_verification(
    mirror: Mirror, test_matrix: Matrix, tmp_path: Path
) -> None:
    lock(test_matrix)
    cache = _cache(tmp_path)
    with pytest.raises(VerificationFailed) as info:
        provide(test_matrix.cuda[0], lock_path=lock_path_of(test_matrix), cache=cache)
    # the version check passed; the probe compile is the step that failed, with the compiler's words
    assert info.value.step.startswith("compile probe kernel (sm_75, sm_90, compute_90)")
    assert "fake-nvcc: error: this synthesized test toolkit cannot compile" in info.value.message
    assert not cache.entries.exists() or list(cache.entries.iterdir()) == []  # a failed toolchain is not kept
    assert_consistent(cache)
    # all six packages were downloaded and verified, and stay reusable
    assert len(list(cache.downloads.iterdir())) == 6


def test_unpack_layout(mirror: Mirror, test_matrix: Matrix, tmp_path: Path) -> None:
    """The relocated tree: kept files only, own profile and launcher, no link leaving the tree."""
    from wheelmatrix.toolchains.debian import DebianSource
    from wheelmatrix.toolchains.manager import fetch_files, pinned
    from wheelmatrix.toolchains.progress import Reporter

    cache = _cache(tmp_path)
    entry = pinned(test_matrix.cuda[0], None, offline=False, reporter=Reporter(enabled=False))
    fetch_files(entry, cache, offline=False, reporter=Reporter(enabled=False))
    staging = tmp_path / "staging"
    staging.mkdir()
    files = [(f, cache.download_path(f.sha256, f.filename)) for f in entry.files]
    built = DebianSource().assemble(test_matrix.cuda[0], files, staging)
    root = staging / built.root
    kept = sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())
    assert kept == [
        "bin/nvcc", "bin/nvcc.profile", "bin/nvcc.real", "bin/ptxas",
        "include/crt/host_config.h", "include/cub/cub.cuh", "include/cuda/std/version", "include/cuda_runtime.h",
        "include/thrust/version.h",
        "lib64/libcudart.so", "lib64/libcudart.so.12", "lib64/libcudart.so.12.4.127", "lib64/libcudart_static.a",
        "lib64/stubs/libcuda.so",
        "nvvm/bin/cicc", "nvvm/libdevice/libdevice.10.bc",
    ]  # fmt: skip
    assert "$(_HERE_)" in (root / "bin/nvcc.profile").read_text()
    assert not (root / "bin/nvcc.profile").is_symlink()
    out = subprocess.run([root / "bin/nvcc", "--version"], capture_output=True, text=True, check=True).stdout
    assert "release 12.4" in out  # the launcher runs nvcc.real


def test_tampered_deb_is_rejected_and_not_kept(mirror: Mirror, test_matrix: Matrix, tmp_path: Path) -> None:
    lock(test_matrix)
    deb = mirror.root / mirror.packages[PKG]["path"]
    data = bytearray(deb.read_bytes())
    data[-10] ^= 0xFF  # same size, one byte changed
    deb.write_bytes(bytes(data))
    cache = _cache(tmp_path)
    with pytest.raises(
        DownloadError, match=r"nvidia-cuda-dev.*does not match its pinned hash: SHA256 [0-9a-f]{64} instead of"
    ):
        provide(test_matrix.cuda[0], lock_path=lock_path_of(test_matrix), cache=cache)
    assert not (cache.downloads / mirror.packages[PKG]["sha256"]).exists() or not any(
        (cache.downloads / mirror.packages[PKG]["sha256"]).iterdir()
    )
    assert not cache.entries.exists()
    assert_consistent(cache)


def test_truncated_download_is_rejected(mirror: Mirror, test_matrix: Matrix, tmp_path: Path) -> None:
    lock(test_matrix)
    mirror.faults.truncate.add(mirror.packages[PKG]["path"])
    cache = _cache(tmp_path)
    with pytest.raises(DownloadError, match="nvidia-cuda-dev") as info:
        provide(test_matrix.cuda[0], lock_path=lock_path_of(test_matrix), cache=cache)
    assert "cut off" in info.value.message or "bytes instead of" in info.value.message
    assert not cache.entries.exists()
    assert_consistent(cache)


def test_tampered_index_does_not_match_release_file(mirror: Mirror, test_matrix: Matrix) -> None:
    index = mirror.root / "dists" / SUITE / "non-free/binary-amd64/Packages.xz"
    index.write_bytes(index.read_bytes() + b"\0")
    with pytest.raises(IndexError_, match=r"non-free index of wmtest .* does not match the SHA256 in its release file"):
        lock(test_matrix)
    assert not lock_path_of(test_matrix).exists()


def test_release_file_with_a_bad_signature_is_rejected(mirror: Mirror, test_matrix: Matrix) -> None:
    inrelease = mirror.root / "dists" / SUITE / "InRelease"
    inrelease.write_text(inrelease.read_text().replace("Origin: Test", "Origin: Evil"))
    with pytest.raises(IndexError_, match=r"signature of the archive.s InRelease file does not verify"):
        lock(test_matrix)


def test_unchecked_signature_is_said_clearly(
    mirror: Mirror, test_matrix: Matrix, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("WHEELMATRIX_DEBIAN_KEYRING", str(mirror.root / "no-such-keyring.gpg"))
    lock(test_matrix)
    assert "signature of wmtest was NOT checked" in caplog.text
    assert "signature NOT checked" in read_lock(lock_path_of(test_matrix))[("12.4", "debian")].indexes[0]


def test_offline_with_empty_cache_names_what_is_missing(mirror: Mirror, test_matrix: Matrix, tmp_path: Path) -> None:
    lock(test_matrix)
    requests = len(mirror.faults.requests)
    with pytest.raises(ToolchainError) as info:
        provide(test_matrix.cuda[0], lock_path=lock_path_of(test_matrix), cache=_cache(tmp_path), offline=True)
    assert "offline: the cache lacks 6 of the 6 files of CUDA 12.4" in info.value.message
    assert "nvidia-cuda-dev_12.4.99_amd64.deb" in info.value.message
    assert len(mirror.faults.requests) == requests  # offline means no request at all


def test_offline_without_lock_entry(test_matrix: Matrix, tmp_path: Path) -> None:
    with pytest.raises(ToolchainError, match=r"offline: .* pins no files for CUDA 12\.4"):
        provide(test_matrix.cuda[0], lock_path=lock_path_of(test_matrix), cache=_cache(tmp_path), offline=True)


def test_no_network_is_a_clear_error(test_matrix: Matrix, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WHEELMATRIX_DEBIAN_MIRROR", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(DownloadError, match=r"cannot fetch the release file of wmtest from http://127.0.0.1:9"):
        provide(test_matrix.cuda[0], lock_path=lock_path_of(test_matrix), cache=_cache(tmp_path))


def test_suite_without_the_version_is_refused(mirror: Mirror, tmp_path: Path) -> None:
    m = Mirror(mirror.root, mirror.gnupghome)
    m.add_suite("older", fake_toolkit("12.2"), "12.2")
    wrong = matrix(tmp_path, spec("12.4", Toolchain("debian", suite="older")))
    with pytest.raises(ToolchainError, match=r"Debian older provides CUDA 12.2.99 .* not CUDA 12.4"):
        lock(wrong)


RUNNER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    sys.path.insert(0, {tests!r})
    from toolchain_fixtures.matrices import matrix, spec
    from wheelmatrix.model import Toolchain
    from wheelmatrix.toolchains import Cache, provide, lock_path_of
    from wheelmatrix.errors import WheelmatrixError
    m = matrix(Path({folder!r}), spec("12.4", Toolchain("debian", suite={suite!r}), sass=(75, 90), ptx=(90,)))
    try:
        provide(m.cuda[0], lock_path=lock_path_of(m), cache=Cache(Path({cache!r})))
    except WheelmatrixError as exc:
        print(type(exc).__name__, exc.message, file=sys.stderr)
        sys.exit(int(exc.exit_code))
    except KeyboardInterrupt:
        sys.exit(130)
    """
)


def _runner(tmp_path: Path, cache: Path) -> str:
    return RUNNER.format(tests=str(Path(__file__).parent), folder=str(tmp_path), suite=SUITE, cache=str(cache))


def test_killed_download_leaves_no_partial_file(mirror: Mirror, test_matrix: Matrix, tmp_path: Path) -> None:
    """SIGKILL mid-download (no cleanup code runs): the next run discards the leftover."""
    lock(test_matrix)
    cache = tmp_path / "cache"
    path = mirror.packages[PKG]["path"]
    mirror.faults.stall.add(path)
    proc = subprocess.Popen([sys.executable, "-c", _runner(tmp_path, cache)], env={**os.environ})
    try:
        assert wait_for(lambda: any(cache.rglob("*.part")), 60), "the download never started"
        assert wait_for(lambda: mirror.faults.requests.count(path) == 1, 30)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert list(cache.rglob("*.part")), "the killed process left its temporary file (expected)"
    mirror.faults.stall.discard(path)
    mirror.faults.release.set()
    # the rerun downloads again, verifies, discards the stale temporary file, then fails at the
    # stand-in compiler: the cache holds complete verified downloads only and no entry
    done = subprocess.run(
        [sys.executable, "-c", _runner(tmp_path, cache)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 4, done.stderr
    assert "VerificationFailed" in done.stderr
    c = Cache(cache)
    assert_consistent(c)
    assert (c.downloads / mirror.packages[PKG]["sha256"]).is_dir()
    assert not c.entries.exists() or not any(c.entries.iterdir())


def test_full_disk_is_a_clear_error(mirror: Mirror, test_matrix: Matrix, tmp_path: Path) -> None:
    """A full disk, simulated with a file-size limit (RLIMIT_FSIZE makes write() fail with EFBIG
    like ENOSPC would; making a real full file system needs root mounts)."""
    lock(test_matrix)
    cache = tmp_path / "cache"
    code = "import resource, signal\nsignal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
    code += "resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))\n" + _runner(tmp_path, cache)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == int(EnvironmentProblem.exit_code), done.stderr
    assert "no space left on the device holding" in done.stderr
    assert_consistent(Cache(cache))


def _can_mount() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("mount") is not None


@pytest.mark.skipif(not _can_mount(), reason="mounting a small tmpfs needs root")
def test_real_full_disk(mirror: Mirror, test_matrix: Matrix, tmp_path: Path) -> None:
    """The cache on a 64 KiB tmpfs: the write fails with ENOSPC for real."""
    from wheelmatrix import _proc
    from wheelmatrix.errors import CommandFailed

    lock(test_matrix)
    small = tmp_path / "small"
    small.mkdir()
    try:
        _proc.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", small], timeout=30)
    except CommandFailed as exc:
        pytest.skip(f"this host refuses to mount a tmpfs: {exc.tail.strip()}")
    try:
        cache = Cache(small)
        with pytest.raises(EnvironmentProblem, match="no space left on the device holding") as info:
            provide(test_matrix.cuda[0], lock_path=lock_path_of(test_matrix), cache=cache)
        assert info.value.fix and "prune" in info.value.fix
        assert_consistent(cache)
    finally:
        _proc.run(["umount", small], timeout=30)


def test_concurrent_installs_share_one_download_and_one_outcome(
    mirror: Mirror, test_matrix: Matrix, tmp_path: Path
) -> None:
    lock(test_matrix)
    cache = tmp_path / "cache"
    procs = [
        subprocess.Popen([sys.executable, "-c", _runner(tmp_path, cache)], stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [4, 4], outs
    assert all("VerificationFailed" in o for o in outs)
    assert_consistent(Cache(cache))


def test_list_and_prune(mirror: Mirror, test_matrix: Matrix, tmp_path: Path) -> None:
    lock(test_matrix)
    cache = _cache(tmp_path)
    with pytest.raises(VerificationFailed):
        provide(test_matrix.cuda[0], lock_path=lock_path_of(test_matrix), cache=cache)
    (row,) = status(test_matrix, cache=cache)
    assert (row.version, row.source, row.locked, row.cached, row.verified) == (
        "12.4",
        "debian:wmtest",
        True,
        False,
        False,
    )
    assert row.download_size == sum(f.size for f in read_lock(lock_path_of(test_matrix))[("12.4", "debian")].files)
    stray = cache.downloads / ("0" * 64)
    stray.mkdir()
    (stray / "old.deb").write_bytes(b"x")
    removed = [p for p, _ in prune(test_matrix, cache=cache)]
    assert removed == [stray]  # the locked downloads stay
    removed = [p for p, _ in prune(None, cache=cache, everything=True)]
    assert len(removed) == 6


# --- the `wheelmatrix toolchain` verb, end to end through the CLI's error boundary -------------


@pytest.fixture
def cli(test_matrix: Matrix, monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[int, str, str]]:
    from wheelmatrix import cli as cli_mod
    from wheelmatrix.commands import toolchain as command

    # matrix.toml parsing is the config stage's: hand the verb the matrix built in code
    def load(path: Path) -> Matrix:
        assert path == test_matrix.path
        return test_matrix

    monkeypatch.setattr(command, "_load_matrix", load)
    monkeypatch.setattr(cli_mod, "COMMANDS", {"toolchain": "wheelmatrix.commands.toolchain"})

    def run(*argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
        code = cli_mod.main(["toolchain", "--matrix", str(test_matrix.path), *argv])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_cli_lock_list_json(
    mirror: Mirror,
    cli: Callable[..., tuple[int, str, str]],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    test_matrix: Matrix,
) -> None:
    monkeypatch.delenv("WHEELMATRIX_DEBIAN_MIRROR")
    code, _, err = cli("lock", "--mirror", "http://127.0.0.1:9", capsys=capsys)
    assert code == 4 and "http://127.0.0.1:9/dists/wmtest/InRelease" in err  # the flag is used
    code, out, _ = cli("lock", "--mirror", mirror.url, "--matrix", str(test_matrix.path), capsys=capsys)
    assert code == 0 and out.startswith("wrote ")
    code, out, _ = cli("list", "--format", "json", capsys=capsys)
    assert code == 0
    doc = json.loads(out)
    assert doc["schema_version"] == 1
    assert doc["host"]["debian_signatures_checked"] is True and doc["host"]["keyring"] == str(mirror.keyring)
    (row,) = doc["toolchains"]
    assert row["version"] == "12.4" and row["source"] == "debian:wmtest"
    assert (row["locked"], row["cached"], row["verified"], row["available"]) == (True, False, False, True)


def test_cli_errors_exit_4_with_one_message(
    mirror: Mirror, cli: Callable[..., tuple[int, str, str]], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli("install", "9.9", capsys=capsys)
    assert code == 4 and "CUDA '9.9' is not declared" in err and "Traceback" not in err
    code, _, err = cli("install", "--offline", capsys=capsys)
    assert code == 4 and err.count("offline:") == 1 and err.count("fix:") == 1
    code, _, err = cli("path", "12.4", capsys=capsys)
    assert code == 4 and "offline:" in err  # path installs nothing
    cli("lock", capsys=capsys)
    code, _, err = cli("install", capsys=capsys)
    assert code == 4 and "failed verification at step 'compile probe kernel" in err
    assert "fake-nvcc: error" in err and "Traceback" not in err
    code, out, _ = cli("prune", "--all", capsys=capsys)
    assert code == 0 and "pruned 6 items" in out


def test_damaged_cached_download_is_fetched_again(mirror: Mirror, test_matrix: Matrix, tmp_path: Path) -> None:
    """A cached download whose bytes changed on disk (same size) is not used: offline it counts
    as missing, online it is downloaded again."""
    lock(test_matrix)
    cache = _cache(tmp_path)
    with pytest.raises(VerificationFailed):
        provide(test_matrix.cuda[0], lock_path=lock_path_of(test_matrix), cache=cache)
    sha = mirror.packages[PKG]["sha256"]
    (cached,) = (cache.downloads / sha).iterdir()
    data = bytearray(cached.read_bytes())
    data[0] ^= 0xFF
    cached.write_bytes(bytes(data))
    with pytest.raises(ToolchainError, match="offline: the cache lacks 1 of the 6 files"):
        provide(test_matrix.cuda[0], lock_path=lock_path_of(test_matrix), cache=cache, offline=True)
    with pytest.raises(VerificationFailed):
        provide(test_matrix.cuda[0], lock_path=lock_path_of(test_matrix), cache=cache)
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == sha
    assert_consistent(cache)


def test_interrupt_removes_the_partial_download(mirror: Mirror, test_matrix: Matrix, tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) mid-download: the process exits 130 and the temporary file is gone,
    unlike after SIGKILL."""
    lock(test_matrix)
    cache = tmp_path / "cache"
    path = mirror.packages[PKG]["path"]
    mirror.faults.stall.add(path)
    code = _runner(tmp_path, cache)
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        assert wait_for(lambda: mirror.faults.requests.count(path) == 1 and any(cache.rglob("*.part")), 60)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    assert_consistent(Cache(cache))
    assert not list(cache.rglob("*.part"))
