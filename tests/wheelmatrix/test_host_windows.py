"""How the plan finds CPythons on Windows (`host.find_python`): the `py` launcher, actions/setup-python's
tool cache, PATH. There is no Windows host here, so Windows is stood in for: `platform.system()` and
`platform.machine()` are monkeypatched (as `host.host_platform` reads them) and the launcher is a shell
script named `py` on PATH that, like py.exe, runs the CPython registered for `-X.Y` or exits 103. The
interpreters behind the launcher and in the tool cache are this machine's real CPythons, run for real.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
from pathlib import Path

import pytest

from wheelmatrix import host
from wheelmatrix.host import Interpreter, find_free_threaded, find_python, host_platform

HERE = f"{sys.version_info[0]}.{sys.version_info[1]}"


def real_pythons() -> dict[str, Interpreter]:
    """This machine's CPythons other than the running one (the plan takes that one as it is)."""
    found = {}
    for version in ("3.9", "3.10", "3.12", "3.13"):
        interpreter = find_python(version)
        if version != HERE and interpreter is not None:
            found[version] = interpreter
    return found


@pytest.fixture(scope="module")
def pythons() -> dict[str, Interpreter]:
    found = real_pythons()
    if len(found) < 2:
        pytest.skip(f"needs two CPythons besides {HERE} on this machine (PATH, pyenv or uv); found {sorted(found)}")
    return found


def fake_launcher(bin_dir: Path, registered: dict[str, Path], log: Path) -> Path:
    """A stand-in for py.exe (no Windows host here): ``py -3.12 ARGS`` runs the CPython registered
    for 3.12 with ARGS; an unregistered version fails as py.exe does (exit 103). Each call is logged."""
    arms = "".join(f'  -{v}) shift; exec {shlex.quote(str(p))} "$@" ;;\n' for v, p in registered.items())
    script = bin_dir / "py"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$1" >> {shlex.quote(str(log))}\n'
        'case "$1" in\n'
        f"{arms}"
        "esac\n"
        "echo 'No suitable Python runtime found' >&2\n"
        "echo 'Pass --list (-0) to see all detected environments on your machine' >&2\n"
        "exit 103\n"
    )
    script.chmod(0o755)
    return script


@pytest.fixture
def windows(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """This host as a Windows x86_64 one with an empty PATH (a bin folder for the launcher) and
    neither a tool cache nor uv's Pythons; pyenv's stays, and must not be looked at."""
    monkeypatch.setattr(platform, "system", lambda: "Windows")
    monkeypatch.setattr(platform, "machine", lambda: "AMD64")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    for var in ("RUNNER_TOOL_CACHE", "AGENT_TOOLSDIRECTORY", "UV_PYTHON_INSTALL_DIR", "APPDATA"):
        monkeypatch.delenv(var, raising=False)
    return bin_dir


def test_the_stand_in_is_windows_as_the_host_reads_it(windows: Path) -> None:
    assert host.on_windows() and host_platform() == "windows-x86_64"


def test_windows_finds_each_python_through_the_py_launcher(
    windows: Path, pythons: dict[str, Interpreter], tmp_path: Path
) -> None:
    first, second, *_ = sorted(pythons)
    log = tmp_path / "launcher.log"
    fake_launcher(windows, {first: pythons[first].path}, log)
    found = find_python(first)
    assert found is not None and found.version == pythons[first].version
    assert found.path == pythons[first].path  # what the launcher ran reports itself (sys.executable)
    assert log.read_text().split() == [f"-{first}"]
    # not registered with the launcher: not found, though pyenv (a Linux place) has it
    assert find_python(second) is None
    assert log.read_text().split() == [f"-{first}", f"-{second}"]
    assert find_python(HERE) == Interpreter(Path(sys.executable), ".".join(map(str, sys.version_info[:3])))


def test_a_launcher_that_runs_another_version_is_not_taken(
    windows: Path, pythons: dict[str, Interpreter], tmp_path: Path
) -> None:
    first, second, *_ = sorted(pythons)
    fake_launcher(windows, {first: pythons[second].path}, tmp_path / "launcher.log")
    assert find_python(first) is None


def tool_cache(root: Path, version: str, python: Path, arch: str = "x64", exe: str = "python.exe") -> Path:
    """What setup-python leaves on a Windows runner: <tool cache>/Python/<X.Y.Z>/<arch>/python.exe
    (here a link to a real CPython of that version)."""
    where = root / "Python" / version / arch
    where.mkdir(parents=True)
    (where / exe).symlink_to(python)
    (root / "Python" / version / f"{arch}.complete").touch()
    return where / exe


def test_windows_finds_setup_pythons_tool_cache_without_a_launcher(
    windows: Path, pythons: dict[str, Interpreter], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second, *_ = sorted(pythons)
    cache = tmp_path / "hostedtoolcache" / "windows"
    monkeypatch.setenv("RUNNER_TOOL_CACHE", str(cache))
    full = pythons[first].version
    exe = tool_cache(cache, full, pythons[first].path)
    tool_cache(cache, pythons[second].version, pythons[second].path, arch="x86")  # another architecture
    # a newer patch whose python.exe does not run: the next one that does is taken
    broken = cache / "Python" / f"{first}.99" / "x64"
    broken.mkdir(parents=True)
    (broken / "python.exe").write_text("#!/bin/sh\nexit 1\n")
    (broken / "python.exe").chmod(0o755)
    found = find_python(first)
    assert found == Interpreter(exe, full)
    assert find_python(second) is None  # only an x86 build of it, and this host is x64


def test_windows_finds_python3_x_exe_on_path(windows: Path, pythons: dict[str, Interpreter]) -> None:
    first = sorted(pythons)[0]
    (windows / f"python{first}").symlink_to(pythons[first].path)  # shutil.which adds .exe on Windows
    found = find_python(first)
    assert found is not None and found.version == pythons[first].version


def test_free_threaded_on_windows_must_be_a_free_threaded_build(
    windows: Path, pythons: dict[str, Interpreter], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``py -3.13t`` and the tool cache's x64-freethreaded folder are asked, and a GIL build handed
    over for "t" is refused. (No free-threaded CPython exists on this machine to find one for real.)"""
    version = sorted(pythons)[-1]
    log = tmp_path / "launcher.log"
    fake_launcher(windows, {f"{version}t": pythons[version].path}, log)
    cache = tmp_path / "toolcache"
    monkeypatch.setenv("RUNNER_TOOL_CACHE", str(cache))
    tool_cache(cache, pythons[version].version, pythons[version].path, "x64-freethreaded", f"python{version}t.exe")
    assert find_free_threaded(version) is None
    assert log.read_text().split() == [f"-{version}t"]


def test_linux_never_asks_a_py_launcher(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pythons: dict[str, Interpreter]
) -> None:
    """Linux (and macOS) behaviour is unchanged: python3.X on PATH, pyenv, uv; a `py` on PATH is no
    launcher there."""
    assert not host.on_windows()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "launcher.log"
    first = sorted(pythons)[0]
    fake_launcher(bin_dir, {first: pythons[first].path}, log)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert find_python(first) == pythons[first]
    assert not log.exists()
