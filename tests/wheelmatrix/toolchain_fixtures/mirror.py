"""A real Debian-style mirror on 127.0.0.1 for the tamper, interruption and offline tests.

It serves ``dists/<suite>/InRelease`` (clearsigned with a throw-away GPG key whose public
keyring the tests hand to wheelmatrix), ``Packages.xz`` indexes and small synthesized .deb files
(real ``ar`` archives holding ``data.tar.xz``) through :mod:`http.server` in a thread. Faults
(truncate a file, stall mid-body) are switched per path. The synthesized toolkit has a stand-in
nvcc script: it reports its release and refuses to compile, because a real CUDA toolkit is
~1 GB (the real installs are tested in test_toolchain_real.py).
"""

from __future__ import annotations

import hashlib
import io
import lzma
import os
import random
import tarfile
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from wheelmatrix import _proc

FAKE_NVCC = """#!/bin/sh
case "$1" in --version) echo "Cuda compilation tools, release {version}, V{version}.99"; exit 0;; esac
echo "fake-nvcc: error: this synthesized test toolkit cannot compile ($*)" >&2
exit 1
"""

Entry = bytes | tuple[str, str]  # file content, or ("symlink", target)


def _ar_member(name: str, data: bytes) -> bytes:
    header = f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(data):<10}`\n".encode()
    assert len(header) == 60
    return header + data + (b"\n" if len(data) % 2 else b"")


def _tar_xz(entries: Mapping[str, Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:xz") as tar:
        dirs: set[str] = set()
        for path in entries:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        for d in sorted(dirs):
            info = tarfile.TarInfo(f"./{d}/")
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            tar.addfile(info)
        for path, content in entries.items():
            info = tarfile.TarInfo(path if path.startswith(("/", "..")) else f"./{path}")
            if isinstance(content, tuple):
                info.type = tarfile.SYMTYPE
                info.linkname = content[1]
                tar.addfile(info)
            else:
                info.size = len(content)
                info.mode = 0o755 if content.startswith(b"#!") else 0o644
                tar.addfile(info, io.BytesIO(content))
    return buf.getvalue()


def build_deb(name: str, version: str, entries: Mapping[str, Entry]) -> bytes:
    control = _tar_xz({"control": f"Package: {name}\nVersion: {version}\nArchitecture: amd64\n".encode()})
    return (
        b"!<arch>\n"
        + _ar_member("debian-binary", b"2.0\n")
        + _ar_member("control.tar.xz", control)
        + _ar_member("data.tar.xz", _tar_xz(entries))
    )


def fake_toolkit(version: str) -> dict[str, dict[str, dict[str, Entry]]]:
    """component -> package -> files, with the package names data/toolchains.toml wants for 12.4."""
    nvcc = FAKE_NVCC.format(version=version).encode()
    return {
        "non-free": {
            "nvidia-cuda-toolkit": {
                "usr/lib/nvidia-cuda-toolkit/bin/nvcc": nvcc,
                "usr/lib/nvidia-cuda-toolkit/bin/nvcc.profile": ("symlink", "/etc/nvcc.profile"),
                "usr/lib/nvidia-cuda-toolkit/bin/cicc": b"#!/bin/sh\nexit 1\n",
                "usr/lib/nvidia-cuda-toolkit/libdevice/libdevice.10.bc": b"BC\xc0\xde",
                "usr/bin/ptxas": b"#!/bin/sh\nexit 1\n",
                "usr/bin/nsys": b"#!/bin/sh\nexit 1\n",  # not kept
                "usr/share/doc/nvidia-cuda-toolkit/copyright": b"(c)",  # not kept
            },
            "nvidia-cuda-dev": {
                "usr/include/cuda_runtime.h": b"/* cuda_runtime.h */\n",
                "usr/include/crt/host_config.h": b"/* host_config.h */\n",
                "usr/lib/x86_64-linux-gnu/libcudart_static.a": b"!<arch>\n",
                # not kept; incompressible, so the package needs ~100 kB on disk (full-disk test)
                "usr/lib/x86_64-linux-gnu/libcublas_static.a": b"!<arch>\n" + random.Random(7).randbytes(100_000),
                "usr/lib/x86_64-linux-gnu/stubs/libcuda.so": b"\x7fELF",
                "usr/lib/x86_64-linux-gnu/libcudart.so": ("symlink", "libcudart.so.12"),
                "usr/lib/cuda/include/evil.h": ("symlink", "../../../../../../etc/passwd"),  # not kept
            },
            "libcudart12": {
                "usr/lib/x86_64-linux-gnu/libcudart.so.12.4.127": b"\x7fELF",
                "usr/lib/x86_64-linux-gnu/libcudart.so.12": ("symlink", "libcudart.so.12.4.127"),
            },
        },
        "main": {
            "libcu++-dev": {"usr/include/cuda/std/version": b"// libcu++\n"},
            "libcub-dev": {"usr/include/cub/cub.cuh": b"// cub\n"},
            "libthrust-dev": {"usr/include/thrust/version.h": b"// thrust\n"},
        },
    }


@dataclass
class Faults:
    truncate: set[str] = field(default_factory=set)  # paths served with half their body, then closed
    stall: set[str] = field(default_factory=set)  # paths that send half their body, then hang
    requests: list[str] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


def _handler(root: Path, faults: Faults) -> type[SimpleHTTPRequestHandler]:
    class Handler(SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(root), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.lstrip("/")
            faults.requests.append(path)
            if path in faults.truncate or path in faults.stall:
                data = (root / path).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                if path in faults.stall:
                    faults.release.wait(60)
                self.close_connection = True
                return
            super().do_GET()

    return Handler


class Mirror:
    """Files of a Debian mirror in ``root``, served over HTTP while :meth:`serving` is active."""

    def __init__(self, root: Path, gnupghome: Path) -> None:
        self.root = root
        self.gnupghome = gnupghome
        self.keyring = gnupghome / "keyring.gpg"
        self.faults = Faults()
        self.url = ""
        self.packages: dict[str, dict[str, str]] = {}  # package -> {"path", "sha256"}

    def make_key(self) -> None:
        self.gnupghome.mkdir(mode=0o700, parents=True, exist_ok=True)
        env = {"GNUPGHOME": str(self.gnupghome)}
        _proc.run(
            ["gpg", "--batch", "--passphrase", "", "--quick-gen-key", "wheelmatrix test <test@example.invalid>",
             "ed25519", "sign", "never"],
            extra_env=env,
            timeout=60,
        )  # fmt: skip
        _proc.run(["gpg", "--batch", "--yes", "--output", str(self.keyring), "--export"], extra_env=env, timeout=60)

    def add_suite(self, suite: str, components: Mapping[str, Mapping[str, Mapping[str, Entry]]], version: str) -> None:
        sums = []
        for component, packages in components.items():
            stanzas = []
            for name, entries in packages.items():
                deb = build_deb(name, f"{version}.99~{version}.0-1", entries)
                rel = f"pool/{component}/{name[0]}/{name}/{name}_{version}.99_amd64.deb"
                (self.root / rel).parent.mkdir(parents=True, exist_ok=True)
                (self.root / rel).write_bytes(deb)
                sha = hashlib.sha256(deb).hexdigest()
                self.packages[name] = {"path": rel, "sha256": sha}
                stanzas.append(
                    f"Package: {name}\nVersion: {version}.99~{version}.0-1\nArchitecture: amd64\n"
                    f"Filename: {rel}\nSize: {len(deb)}\nSHA256: {sha}\nDescription: test package\n"
                )
            xz = lzma.compress("\n".join(stanzas).encode())
            index = f"{component}/binary-amd64/Packages.xz"
            path = self.root / "dists" / suite / index
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(xz)
            sums.append(f" {hashlib.sha256(xz).hexdigest()} {len(xz):>8} {index}")
        release = (
            f"Origin: Test\nSuite: {suite}\nCodename: {suite}\nDate: Sat, 21 Nov 2026 00:00:00 UTC\n"
            "Architectures: amd64\nComponents: " + " ".join(components) + "\nSHA256:\n" + "\n".join(sums) + "\n"
        )
        plain = self.root / "dists" / suite / "Release"
        plain.write_text(release)
        _proc.run(
            ["gpg", "--batch", "--yes", "--clearsign", "--output", str(plain.with_name("InRelease")), str(plain)],
            extra_env={"GNUPGHOME": str(self.gnupghome)},
            timeout=60,
        )

    @contextmanager
    def serving(self) -> Iterator[str]:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self.root, self.faults))
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        try:
            yield self.url
        finally:
            self.faults.release.set()
            server.shutdown()
            server.server_close()
            thread.join(5)


def wait_for(predicate: object, timeout: float = 30.0) -> bool:
    assert callable(predicate)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def partial_files(cache_root: Path) -> list[Path]:
    """Temporary download names and staging folders left in a cache (must be none)."""
    found = list(cache_root.rglob("*.part"))
    staging = cache_root / "toolchains" / "staging"
    if staging.is_dir():
        found += list(staging.iterdir())
    return found


def env_for(mirror: Mirror, cache: Path) -> dict[str, str]:
    return {
        **os.environ,
        "WHEELMATRIX_DEBIAN_MIRROR": mirror.url,
        "WHEELMATRIX_DEBIAN_KEYRING": str(mirror.keyring),
        "WHEELMATRIX_CACHE_DIR": str(cache),
    }
