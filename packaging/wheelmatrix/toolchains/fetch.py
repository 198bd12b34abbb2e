"""Downloads: to a temporary name, verified against the pinned SHA256 and size, then renamed.

A file that fails verification is deleted; nothing half-written ever carries a final name.
"""

from __future__ import annotations

import errno
import hashlib
import os
import urllib.error
import urllib.request
from http.client import HTTPException
from pathlib import Path

from wheelmatrix.errors import EnvironmentProblem, ToolchainError
from wheelmatrix.toolchains.cache import pid_alive
from wheelmatrix.toolchains.progress import Reporter

CHUNK = 1 << 20
TIMEOUT = 60.0
USER_AGENT = "wheelmatrix-toolchains/1"


class DownloadError(ToolchainError):
    """A download failed or its bytes do not match the pinned hash."""


def disk_full(exc: OSError, where: Path) -> EnvironmentProblem:
    return EnvironmentProblem(
        f"no space left on the device holding {where} ({exc.strerror})",
        fix="free disk space (`wheelmatrix toolchain prune` drops unused toolchains) "
        "or point WHEELMATRIX_CACHE_DIR at a larger disk",
    )


def is_disk_full(exc: OSError) -> bool:
    return exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _request(url: str) -> urllib.request.Request:
    if not url.startswith(("https://", "http://")):
        raise DownloadError(f"refusing to fetch {url!r}: only http(s) URLs are fetched")
    return urllib.request.Request(url, headers={"User-Agent": USER_AGENT})  # noqa: S310 - scheme checked above


def clip(text: str, *, lines: int = 25, width: int = 400) -> str:
    """The tail of a tool's output, each line cut to ``width`` (pip can print 100 kB lines)."""
    kept = text.rstrip().splitlines()[-lines:]
    return "\n".join(line if len(line) <= width else line[:width] + " [...]" for line in kept)


def fetch_bytes(url: str, *, what: str) -> bytes:
    """Fetch a small file (an index) into memory."""
    request = _request(url)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 - http(s) only (_request)
            data: bytes = response.read()
            return data
    except urllib.error.HTTPError as exc:
        raise DownloadError(f"cannot fetch {what}: {url} answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(
            f"cannot fetch {what} from {url}: {reason}",
            fix="check the network (or the mirror URL); with a filled cache, --offline works without one",
        ) from exc


def download(url: str, dest: Path, *, sha256: str, size: int, reporter: Reporter, label: str) -> int:
    """Download ``url`` to ``dest`` unless a verified copy is there; returns the bytes downloaded."""
    if dest.is_file() and dest.stat().st_size == size and file_sha256(dest) == sha256:
        return 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_parts(dest)
    part = dest.with_name(f".{dest.name}.{os.getpid()}.part")
    digest = hashlib.sha256()
    received = 0
    request = _request(url)
    try:
        with (
            urllib.request.urlopen(request, timeout=TIMEOUT) as response,  # noqa: S310 - http(s) only (_request)
            part.open("wb") as out,
            reporter.task(label, size) as task,
        ):
            while True:
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                digest.update(chunk)
                out.write(chunk)
                received += len(chunk)
                task.advance(len(chunk))
                if received > size:
                    break
    except urllib.error.HTTPError as exc:
        part.unlink(missing_ok=True)
        raise DownloadError(f"cannot download {label}: {url} answered HTTP {exc.code}") from exc
    except OSError as exc:
        part.unlink(missing_ok=True)
        if is_disk_full(exc):
            raise disk_full(exc, dest) from exc
        reason = getattr(exc, "reason", exc)
        raise DownloadError(
            f"download of {label} from {url} failed after {received} of {size} bytes: {reason}",
            fix="check the network and run the command again (nothing partial was kept)",
        ) from exc
    except HTTPException as exc:  # IncompleteRead: the connection closed early
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"download of {label} from {url} was cut off after {received} of {size} bytes ({exc!r})",
            fix="run the command again (nothing partial was kept)",
        ) from exc
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    got = digest.hexdigest()
    if received != size or got != sha256:
        part.unlink(missing_ok=True)
        problem = f"{received} bytes instead of {size}" if received != size else f"SHA256 {got} instead of {sha256}"
        raise DownloadError(
            f"{label} from {url} does not match its pinned hash: {problem}; the file was discarded",
            fix="if the mirror serves a truncated or tampered file, try again later or another mirror; "
            "if the lock is stale, refresh it with `wheelmatrix toolchain lock`",
        )
    part.replace(dest)
    return received


def _remove_stale_parts(dest: Path) -> None:
    """Delete temporary names left by downloads whose process died (killed mid-transfer)."""
    for part in dest.parent.glob(f".{dest.name}.*.part"):
        pid = part.name[len(dest.name) + 2 : -len(".part")]
        if pid.isdigit() and not pid_alive(int(pid)):
            part.unlink(missing_ok=True)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
