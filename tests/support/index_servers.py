"""Real package indexes on 127.0.0.1 for the publishing tests: pypiserver with an htpasswd file
(passlib) and ``--disable-fallback``, started and stopped by the tests themselves.

pypiserver serves the files of its folder (``simple-dir`` backend: every request reads the
folder, so a test can inspect or seed what the index holds directly on disk).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

USER = "wm-uploader"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class IndexServer:
    name: str
    folder: Path  # what the index holds
    port: int
    proc: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def simple(self) -> str:
        return f"{self.url}/simple/"

    @property
    def upload(self) -> str:
        return f"{self.url}/"

    def files(self) -> list[str]:
        return sorted(p.name for p in self.folder.iterdir() if p.is_file())

    def clear(self) -> None:
        for p in self.folder.iterdir():
            if p.is_file():
                p.unlink()


def _wait(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"pypiserver exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2):
            return
        time.sleep(0.1)
    raise RuntimeError(f"pypiserver did not answer {url} within 60 s: {log.read_text()[-2000:]}")


def start_index(root: Path, name: str, password: str | None, *, folder: Path | None = None) -> IndexServer:
    """One pypiserver; uploads need ``USER``/``password`` (None: a read-only index of ``folder``)."""
    with warnings.catch_warnings():  # passlib imports the stdlib's deprecated crypt module
        warnings.simplefilter("ignore", DeprecationWarning)
        from passlib.apache import HtpasswdFile

    root.mkdir(parents=True, exist_ok=True)
    folder = folder or root / f"{name}-packages"
    folder.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "pypiserver",
        "run",
        "-i",
        "127.0.0.1",
        "--disable-fallback",
        "--backend",
        "simple-dir",
    ]
    if password is not None:
        htpasswd = root / f"{name}.htpasswd"
        ht = HtpasswdFile(str(htpasswd), new=True)
        ht.set_password(USER, password)
        ht.save()
        argv += ["-P", str(htpasswd), "-a", "update"]
    else:
        argv += ["-P", ".", "-a", "."]
    log = root / f"{name}.log"
    for _ in range(5):  # a free port can be taken between probing and binding: retry
        port = free_port()
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [*argv, "-p", str(port), str(folder)], stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            _wait(f"http://127.0.0.1:{port}/health", proc, log)
            return IndexServer(name, folder, port, proc)
        except RuntimeError:
            stop_index(IndexServer(name, folder, port, proc))
    raise RuntimeError(f"pypiserver {name} did not start: {log.read_text()[-2000:]}")


def stop_index(server: IndexServer) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.proc.pid, signal.SIGTERM)
    try:
        server.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait()


@contextlib.contextmanager
def indexes(root: Path, password: str, names: tuple[str, ...] = ("testpypi", "pypi")) -> Iterator[list[IndexServer]]:
    servers: list[IndexServer] = []
    try:
        for name in names:
            servers.append(start_index(root, name, password))
        yield servers
    finally:
        for s in servers:
            stop_index(s)


def publish_section(servers: list[IndexServer]) -> str:
    """The ``[[publish]]`` tables of matrix.toml for ``servers``, in order."""
    return "".join(
        f'\n[[publish]]\nname = "{s.name}"\nrepository-url = "{s.upload}"\nindex-url = "{s.simple}"\n' for s in servers
    )


def with_publish(matrix_text: str, servers: list[IndexServer]) -> str:
    """``matrix_text`` with its ``[[publish]]`` tables replaced by ``servers``."""
    kept: list[str] = []
    skipping = False
    for line in matrix_text.splitlines():
        if line.strip() == "[[publish]]":
            skipping = True
            continue
        if skipping and line.startswith("["):
            skipping = False
        if not skipping:
            kept.append(line)
    return "\n".join(kept) + "\n" + publish_section(servers)


def no_pip_config_env() -> dict[str, str]:
    """The environment for a wheelmatrix run: this machine's global pip config (local find-links) left out."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "TWINE_", "WHEELMATRIX_TESTPYPI", "WHEELMATRIX_PYPI"))
    }
    env["PIP_CONFIG_FILE"] = os.devnull
    return env
