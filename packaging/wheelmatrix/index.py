"""An index's view of a project: which files it holds, with their sha256, read over HTTP.

PEP 691 JSON (``Accept: application/vnd.pypi.simple.v1+json``) where the index speaks it, the
PEP 503 HTML page (``#sha256=`` fragments) otherwise. Only the standard library: the publish
and verify stages read the index before and after every upload, never trusting an upload tool's
word about what the index holds.
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

from packaging.utils import canonicalize_name

from wheelmatrix.errors import PublishError

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"
ACCEPT = f"{JSON_TYPE}, {HTML_TYPE};q=0.2, text/html;q=0.01"
CHUNK = 1 << 20


@dataclass(frozen=True)
class IndexFile:
    """One file as an index lists it."""

    filename: str
    url: str  # absolute
    sha256: str | None  # None: the index gave no sha256 for it
    size: int | None = None
    upload_time: str | None = None  # PEP 700, ISO 8601 (JSON only)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[tuple[str, str]] = []  # (href, text)
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href") or ""
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.hrefs.append((self._href, "".join(self._text).strip()))
            self._href = None


def _unreachable(index_url: str, why: object) -> PublishError:
    return PublishError(
        f"the index {index_url} cannot be reached: {why}",
        fix="check the URL in [[publish]] of matrix.toml and that the index is up, then run the same command again "
        "(nothing is lost: files already there are skipped)",
    )


def project_url(index_url: str, project: str) -> str:
    return f"{index_url.rstrip('/')}/{canonicalize_name(project)}/"


def _parse_json(page_url: str, body: bytes) -> dict[str, IndexFile]:
    doc = json.loads(body)
    files: dict[str, IndexFile] = {}
    for f in doc.get("files", []):
        hashes = f.get("hashes") or {}
        size = f.get("size")
        files[str(f["filename"])] = IndexFile(
            filename=str(f["filename"]),
            url=urllib.parse.urljoin(page_url, str(f["url"])).split("#", 1)[0],
            sha256=str(hashes["sha256"]).lower() if "sha256" in hashes else None,
            size=int(size) if isinstance(size, int) else None,
            upload_time=str(f["upload-time"]) if f.get("upload-time") else None,
        )
    return files


def _parse_html(page_url: str, body: bytes) -> dict[str, IndexFile]:
    parser = _Links()
    parser.feed(body.decode("utf-8", "replace"))
    files: dict[str, IndexFile] = {}
    for href, text in parser.hrefs:
        url = urllib.parse.urljoin(page_url, href)
        base, _, fragment = url.partition("#")
        name = text or urllib.parse.unquote(base.rsplit("/", 1)[-1])
        algo, _, digest = fragment.partition("=")
        files[name] = IndexFile(name, base, digest.lower() if algo == "sha256" and digest else None)
    return files


def read_project(index_url: str, project: str, *, timeout: float = 60) -> dict[str, IndexFile]:
    """Every file ``index_url`` lists for ``project`` (empty when the index does not know it)."""
    url = project_url(index_url, project)
    # http(s) only: config.py refuses other schemes in [[publish]]
    request = urllib.request.Request(url, headers={"Accept": ACCEPT, "Cache-Control": "max-age=0"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            body = response.read()
            kind = response.headers.get_content_type()
            final = response.geturl()
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return {}
        raise _unreachable(index_url, f"HTTP {exc.code} {exc.reason} for {url}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise _unreachable(index_url, getattr(exc, "reason", exc)) from exc
    try:
        if kind == JSON_TYPE:
            return _parse_json(final, body)
        return _parse_html(final, body)
    except (ValueError, KeyError, TypeError) as exc:
        raise PublishError(
            f"the index {index_url} answered {url} with a page that is not a simple index ({kind}): {exc}",
            fix="correct index-url in [[publish]] of matrix.toml (it is the /simple/ index pip uses)",
        ) from exc


def download(file: IndexFile, dest: Path, *, timeout: float = 300) -> str:
    """Download ``file`` into the folder ``dest``; return its sha256 (the caller compares)."""
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / file.filename
    digest = hashlib.sha256()
    try:
        with urllib.request.urlopen(file.url, timeout=timeout) as response, out.open("wb") as fh:  # noqa: S310
            while chunk := response.read(CHUNK):
                digest.update(chunk)
                fh.write(chunk)
    except (urllib.error.URLError, OSError) as exc:
        raise _unreachable(file.url, getattr(exc, "reason", exc)) from exc
    return digest.hexdigest()
