"""The release report (``dist/report.html``) from wheelmatrix.stages.report.

Fast: :func:`render` over a hand-made check report of the check stage's shape (validated against
its committed schema): hostile text is escaped and the page loads and runs nothing, a declared arch
the library lacks is marked, bar widths are proportional to bytes, the other tables hold what the
report says; :func:`write_report` reads ``dist/`` and refuses what is not a check report.
Slow: Debian's ``chromium`` renders the page headless; the bars and the grid cells have a size
after layout, and a screenshot shows the chart's and the grid's colours.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from dataclasses import dataclass, field
from html import unescape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from wheelmatrix.errors import PackageError
from wheelmatrix.stages import report as report_mod
from wheelmatrix.stages.report import human_size, render, write_report

MiB = 2**20
SCHEMA = Path(report_mod.__file__).parent.parent / "schemas" / "check-report.schema.json"
HOSTILE_WHAT = '<script>alert("what")</script>'
HOSTILE_WHY = "</td></tr></table><img src=x onerror=alert(1)>"
HOSTILE_FIX = '" onmouseover="alert(1)'
HOSTILE_REASON = "runner <iframe src=//evil.example> & friends"
LINUX = "mykernels-1.2.0-py3-none-manylinux_2_28_x86_64.whl"
WINDOWS = "mykernels-1.2.0-py3-none-win_amd64.whl"
MACOS = "mykernels-1.2.0-py3-none-macosx_11_0_arm64.whl"
SASS_GREEN = (30, 123, 79)  # td.arch-cell.sass
LIMIT_RED = (192, 57, 43)  # the limit line
CUDA_BLUE = (0, 114, 178)  # the first CUDA version's libraries' bars


def _library(file: str, cuda: str | None, compressed: int, sass: list[int], ptx: list[int]) -> dict[str, Any]:
    return {
        "file": file,
        "path": f"mykernels/_lib/{file}",
        "backend": "cuda" if cuda else "cpu",
        "cuda": cuda,
        "sass": sass,
        "ptx": ptx,
        "size": compressed * 3,
        "compressed": compressed,
    }


def _install(python: str, status: str, reason: str) -> dict[str, Any]:
    return {"python": python, "status": status, "reason": reason}


def hand_made_report() -> dict[str, Any]:
    """Three wheels: Linux with CPU + CUDA 12.4 (one arch the matrix does not declare) + CUDA 13.0 (SASS
    for sm_120 missing), Windows with CPU + CUDA 12.4, macOS CPU only; Linux aarch64's CUDA on another runner."""
    old_sass = [70, 75, 80, 86, 89, 90]
    new_sass = [75, 80, 86, 89, 90, 100, 120]
    pythons = ["3.10", "3.11", "3.12", "3.13"]
    return {
        "schema": "wheelmatrix-check-report",
        "version": 1,
        "wheelmatrix": "0.1.0",
        "project": {"name": "mykernels", "version": "1.2.0"},
        "strict": True,
        "passed": False,
        "files": [
            {
                "file": LINUX,
                "sha256": "1" * 64,
                "size": 60 * MiB,
                "platform": "linux-x86_64",
                "tag": "manylinux_2_28_x86_64",
                "limit": 100 * MiB,
                "libraries": [
                    _library("libmykernels_cpu.so", None, 1 * MiB, [], []),
                    _library("libmykernels_cuda124.so", "12.4", 20 * MiB, [*old_sass, 61], [90]),
                    _library("libmykernels_cuda130.so", "13.0", 30 * MiB, new_sass[:-1], [120]),
                ],
                "installs": [
                    _install("3.10", "passed", "python -m mykernels --json passed"),
                    _install("3.11", "passed", "python -m mykernels --json passed"),
                    _install("3.12", "failed", "OSError: libmykernels_cuda130.so: cannot open shared object file"),
                    _install("3.13", "skipped", "no Python 3.13 on this host"),
                ],
            },
            {
                "file": WINDOWS,
                "sha256": "2" * 64,
                "size": 30 * MiB,
                "platform": "windows-x86_64",
                "tag": "win_amd64",
                "limit": 100 * MiB,
                "libraries": [
                    _library("mykernels_cpu.dll", None, MiB // 2, [], []),
                    _library("mykernels_cuda124.dll", "12.4", 25 * MiB, old_sass, [90]),
                ],
                "installs": [_install(p, "skipped", "a windows-2022 runner installs it") for p in pythons],
            },
            {
                "file": MACOS,
                "sha256": "3" * 64,
                "size": 2 * MiB,
                "platform": "macos-arm64",
                "tag": "macosx_11_0_arm64",
                "limit": 100 * MiB,
                "libraries": [_library("libmykernels_cpu.dylib", None, MiB, [], [])],
                "installs": [_install(p, "skipped", "a macos-14 runner installs it") for p in pythons],
            },
        ],
        "findings": [
            {
                "code": "WM204",
                "severity": "warning",
                "file": WINDOWS,
                "what": "twine check --strict: `long_description` missing.",
                "why": "the PyPI page would render without a description",
                "fix": 'give the project a description: readme = "README.md"',
            },
            {
                "code": "WM401",
                "severity": "error",
                "file": LINUX,
                "what": HOSTILE_WHAT,
                "why": HOSTILE_WHY,
                "fix": HOSTILE_FIX,
            },
        ],
        "needs_other_host": [
            {"cell": "linux-aarch64-cuda130", "reason": HOSTILE_REASON},
            {"cell": "linux-aarch64-cuda124", "reason": "needs a linux-aarch64 runner (ubuntu-24.04-arm)"},
        ],
        "matrix": {
            "cuda": {"12.4": {"sass": old_sass, "ptx": [90]}, "13.0": {"sass": new_sass, "ptx": [120]}},
            "platforms": ["linux-x86_64", "linux-aarch64", "windows-x86_64", "macos-arm64"],
            "python": pythons,
            "max_file_size": 100 * MiB,
            "project_quota": 10 * 2**30,
        },
        "timings": {"static_seconds": 1.25, "install_seconds": 42.0},
    }


def build_record(project: str = "mykernels") -> dict[str, Any]:
    cell = {"platform": "linux-x86_64", "reason": "built", "duration": 1.0}
    return {
        "kind": "wheelmatrix-build-record",
        "version": 1,
        "wheelmatrix": "0.1.0",
        "project": {"name": project, "version": "1.2.0"},
        "host": {"platform": "Linux-x86_64", "libc": "glibc 2.36", "python": "3.11.7"},
        "cells": [
            {**cell, "cell_id": "linux-x86_64-cpu", "variant": "cpu", "status": "built"},
            {**cell, "cell_id": "linux-x86_64-cuda124", "variant": "cuda124", "status": "cached"},
            {**cell, "cell_id": "linux-x86_64-cuda130", "variant": "cuda130", "status": "built"},
            {
                **cell,
                "cell_id": "linux-x86_64-cuda128",
                "variant": "cuda128",
                "status": "failed",
                "reason": "nvcc <died>",
            },
        ],
        "wheels": [],
        "needs_other_host": [],
        "timings": {"cells_wall_seconds": 187.3, "assemble_seconds": 5.5},
    }


# ----------------------------------------------------------------------------------------- a DOM
VOID = {"meta", "br", "col", "img", "input", "link", "hr", "source", "wbr", "area", "base", "embed", "track"}


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    text: str = ""
    children: list[Node] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    def find(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> list[Node]:
        found = []
        for child in self.children:
            if (
                (tag is None or child.tag == tag)
                and (cls is None or cls in child.classes)
                and all(child.attrs.get(k.replace("_", "-")) == v for k, v in attrs.items())
            ):
                found.append(child)
            found += child.find(tag, cls, **attrs)
        return found

    def one(self, tag: str | None = None, cls: str | None = None, **attrs: str) -> Node:
        found = self.find(tag, cls, **attrs)
        assert len(found) == 1, f"{len(found)} <{tag} class={cls} {attrs}>"
        return found[0]

    def walk(self) -> list[Node]:
        return [self, *(n for child in self.children for n in child.walk())]


class _Parser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Node(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        assert tag in [n.tag for n in self.stack], f"</{tag}> closes nothing"
        while self.stack.pop().tag != tag:
            pass

    def handle_data(self, data: str) -> None:
        for node in self.stack:
            node.text += data


def parse(page: str) -> Node:
    parser = _Parser()
    parser.feed(page)
    parser.close()
    assert [n.tag for n in parser.stack] == ["#document"], "unclosed elements"
    return parser.root


def facts(dom: Node) -> dict[str, str]:
    """The summary's facts: its <dt> texts mapped to their <dd> texts."""
    listing = dom.one("header", id="summary").one("dl").children
    return {dt.text: dd.text for dt, dd in zip(listing[::2], listing[1::2], strict=True)}


def grid_cell(dom: Node, platform: str, cuda: str, arch: int) -> Node:
    return dom.one("td", "arch-cell", data_platform=platform, data_cuda=cuda, data_arch=str(arch))


# ------------------------------------------------------------------------------------------- tests
def test_hand_made_report_has_the_check_stages_shape() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(hand_made_report(), json.loads(SCHEMA.read_text()))


def test_header_says_project_verdict_and_strictness() -> None:
    dom = parse(render(hand_made_report(), None))
    summary = dom.one("header", id="summary")
    assert "mykernels 1.2.0" in summary.one("h1").text
    assert summary.one(id="verdict").classes == {"verdict", "failed"}
    assert facts(dom)["strict"] == "yes: warnings fail the check"
    assert facts(dom)["findings"] == "1 error, 1 warning"
    assert facts(dom)["check took"] == "1.2 s static, 42.0 s installs"
    passed = {**hand_made_report(), "passed": True, "strict": False}
    again = parse(render(passed, None)).one(id="verdict")
    assert again.classes == {"verdict", "passed"}
    assert again.text == "passed"


def test_hostile_text_is_escaped_and_the_page_loads_and_runs_nothing() -> None:
    report = hand_made_report()
    report["files"][0]["libraries"][0]["file"] = 'lib"><script>x()</script>.so'
    page = render(report, build_record())
    dom = parse(page)
    tags = {n.tag for n in dom.walk()}
    assert not tags & {"script", "img", "iframe", "link", "object", "embed", "base", "form"}
    assert len(dom.find("style")) == 1  # the page's own stylesheet only
    assert not [(n.tag, k) for n in dom.walk() for k in n.attrs if k.startswith("on")]
    assert "<script" not in page.lower() and "<iframe" not in page.lower()
    # the text arrives as text, whole
    finding = dom.one("tr", "error")
    assert [td.text for td in finding.find("td")][3:] == [HOSTILE_WHAT, HOSTILE_WHY, HOSTILE_FIX]
    assert HOSTILE_REASON in dom.one("table", id="other-hosts").text
    assert any(n.attrs.get("data-library") == 'lib"><script>x()</script>.so' for n in dom.find("rect"))
    # self-contained: a CSP that forbids loading and scripts; no URL but the SVG namespace and in-page anchors
    csp = dom.one("meta", http_equiv="Content-Security-Policy").attrs["content"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert set(re.findall(r"https?://[^\s\"'<>]+", page)) == {"http://www.w3.org/2000/svg"}
    assert {n.attrs["href"] for n in dom.walk() if "href" in n.attrs} <= {"#findings-section"}
    assert not [n for n in dom.walk() if "src" in n.attrs]
    assert "url(" not in page and "@import" not in page


def test_missing_and_extra_archs_are_marked_against_the_matrix() -> None:
    dom = parse(render(hand_made_report(), None))
    grid = dom.one(id="arch-grid")
    # CUDA 13.0 on Linux: the matrix declares SASS for sm_120, the library has PTX only
    missing = grid_cell(grid, "linux-x86_64", "13.0", 120)
    assert missing.classes == {"arch-cell", "ptx", "declared", "missing"}
    assert missing.text == "PTXno SASS"
    row = next(r for r in grid.find("tr", "arch-row") if missing in r.children)
    assert "missing SASS sm_120" in row.one("td", "row-note").text
    # what is there and declared
    assert grid_cell(grid, "linux-x86_64", "13.0", 100).classes == {"arch-cell", "sass", "declared"}
    assert grid_cell(grid, "linux-x86_64", "12.4", 90).classes == {"arch-cell", "sass-ptx", "declared"}
    # not declared, not there; there but not declared (a column of its own)
    assert grid_cell(grid, "linux-x86_64", "12.4", 100).classes == {"arch-cell", "none"}
    assert grid_cell(grid, "linux-x86_64", "12.4", 61).classes == {"arch-cell", "sass", "extra"}
    assert grid_cell(grid, "windows-x86_64", "12.4", 61).classes == {"arch-cell", "none"}
    # nothing is missing where the library matches the matrix
    windows = [c for c in grid.find("td", "arch-cell") if c.attrs["data-platform"] == "windows-x86_64"]
    assert windows and not [c for c in windows if "missing" in c.classes]
    # another runner's cells: drawn, declared archs outlined, the reason beside them
    other = grid_cell(grid, "linux-aarch64", "13.0", 120)
    assert other.classes == {"arch-cell", "elsewhere", "declared"}
    assert grid_cell(grid, "linux-aarch64", "13.0", 70).classes == {"arch-cell", "elsewhere"}
    assert HOSTILE_REASON in grid.one("table", data_platform="linux-aarch64").text
    # a platform with no CUDA library and no CUDA cell gets no grid, and says so
    assert not grid.find("table", data_platform="macos-arm64")
    assert "macos-arm64 (CPU only)" in grid.text
    # the columns: every arch declared or found, in order
    heads = [th.text for th in grid.one("table", data_platform="linux-x86_64").find("th", "arch")]
    assert heads == [f"sm_{a}" for a in (61, 70, 75, 80, 86, 89, 90, 100, 120)]


def test_grid_is_read_from_the_libraries_not_the_matrix() -> None:
    report = hand_made_report()
    report["files"][0]["libraries"][2]["sass"] = []  # the CUDA 13.0 library lost its SASS
    dom = parse(render(report, None))
    cells = [grid_cell(dom, "linux-x86_64", "13.0", a) for a in (75, 80, 86, 89, 90, 100)]
    assert all(c.classes == {"arch-cell", "none", "declared", "missing"} for c in cells)


def test_a_failed_cell_from_the_build_record_shows_as_a_row_with_its_archs_missing() -> None:
    report = hand_made_report()
    report["matrix"]["cuda"]["12.8"] = {"sass": [75, 120], "ptx": [120]}
    dom = parse(render(report, build_record()))
    row = dom.one("tr", "failed")
    assert "build failed" in row.text and "nvcc <died>" in row.text
    assert grid_cell(dom, "linux-x86_64", "12.8", 120).classes == {"arch-cell", "none", "declared", "missing"}
    assert facts(dom)["cells"] == "2 built, 1 cached, 1 failed"


def _bars(chart: Node) -> list[tuple[Node, list[Node]]]:
    return [(wheel, wheel.find("rect", "bar")) for wheel in chart.find("g", "wheel")]


def test_bar_widths_are_proportional_to_bytes_and_the_limit_line_sits_at_the_limit() -> None:
    report = hand_made_report()
    dom = parse(render(report, None))
    chart = dom.one("svg", id="size-chart")
    scale = int(chart.attrs["data-scale"])
    assert scale == 100 * MiB  # the largest limit: every wheel is under it
    first = _bars(chart)[0][1][0]
    left = float(first.attrs["x"])
    px_per_byte = (float(chart.attrs["width"]) - left - 40) / scale
    sizes = {f["file"]: f["size"] for f in report["files"]}
    for wheel, rects in _bars(chart):
        at = left
        for rect in rects:  # stacked: each segment starts where the last ended, width ~ its bytes
            assert float(rect.attrs["x"]) == pytest.approx(at, abs=0.002)
            assert float(rect.attrs["width"]) == pytest.approx(int(rect.attrs["data-bytes"]) * px_per_byte, abs=0.002)
            at += float(rect.attrs["width"])
        assert at - left == pytest.approx(sizes[wheel.attrs["data-file"]] * px_per_byte, abs=0.01)
        limit = wheel.one("line", "limit")
        assert float(limit.attrs["x1"]) == pytest.approx(left + 100 * MiB * px_per_byte, abs=0.01)
    linux = chart.one("g", "wheel", data_file=LINUX)
    segments = [(r.attrs["data-library"], int(r.attrs["data-bytes"])) for r in linux.find("rect", "bar")]
    assert segments == [
        ("libmykernels_cpu.so", MiB),
        ("libmykernels_cuda124.so", 20 * MiB),
        ("libmykernels_cuda130.so", 30 * MiB),
        ("rest of the wheel", 9 * MiB),
    ]
    # the 60 MiB wheel is twice the 30 MiB one
    width = {w.attrs["data-file"]: sum(float(r.attrs["width"]) for r in rects) for w, rects in _bars(chart)}
    assert width[LINUX] == pytest.approx(2 * width[WINDOWS], rel=1e-4)
    # one colour per kind of library, the same in every wheel, named in the legend
    fills = {r.attrs["data-library"]: r.attrs["fill"] for _, rects in _bars(chart) for r in rects}
    assert fills["libmykernels_cuda124.so"] == fills["mykernels_cuda124.dll"] != fills["libmykernels_cuda130.so"]
    assert "CUDA 12.4 library" in dom.one("section", id="sizes").text
    # far from the limit, no zoomed chart is needed
    assert not dom.find("svg", id="size-detail")


def test_small_wheels_get_a_zoomed_chart_on_the_largest_wheels_scale() -> None:
    report = hand_made_report()
    for entry in report["files"]:
        entry["size"] //= 64
        for lib in entry["libraries"]:
            lib["compressed"] //= 64
    dom = parse(render(report, None))
    detail = dom.one("svg", id="size-detail")
    assert int(detail.attrs["data-scale"]) == 60 * MiB // 64
    linux = detail.one("g", "wheel", data_file=LINUX).find("rect", "bar")
    left, right = float(linux[0].attrs["x"]), float(linux[-1].attrs["x"]) + float(linux[-1].attrs["width"])
    assert right - left == pytest.approx(float(detail.attrs["width"]) - left - 40, abs=0.01)  # the whole plot
    assert not detail.find("line", "limit")  # the limit is off this scale
    assert len(dom.one("svg", id="size-chart").find("line", "limit")) == 3


def test_tables_hold_installs_findings_other_hosts_and_files() -> None:
    dom = parse(render(hand_made_report(), None))
    installs = dom.one("table", id="installs")
    assert [th.text for th in installs.find("th")] == [
        "wheel",
        "Python 3.10",
        "Python 3.11",
        "Python 3.12",
        "Python 3.13",
    ]
    linux = next(tr for tr in installs.find("tr") if LINUX in tr.text)
    cells = [(c.attrs["data-python"], sorted(c.classes - {"install"})) for c in linux.find("td", "install")]
    assert cells == [("3.10 3.11", ["passed"]), ("3.12", ["failed"]), ("3.13", ["skipped"])]
    assert "cannot open shared object file" in linux.text
    windows = next(tr for tr in installs.find("tr") if WINDOWS in tr.text).one("td", "install")
    assert windows.attrs["colspan"] == "4" and "a windows-2022 runner installs it" in windows.text
    findings = dom.one("table", id="findings")
    assert [th.text for th in findings.find("th")] == ["code", "severity", "file", "what", "why", "fix"]
    assert [tr.find("td")[0].text for tr in findings.find("tr", "finding")] == ["WM401", "WM204"]  # errors first
    others = [tr.find("td")[0].text for tr in dom.one("table", id="other-hosts").find("tr", "other-host")]
    assert others == ["linux-aarch64-cuda130", "linux-aarch64-cuda124"]
    files = dom.one("table", id="files").text
    assert "1" * 64 in files and "60 MiB" in files and "60.0 %" in files


def test_an_empty_release_renders() -> None:
    report = hand_made_report()
    report.update(files=[], findings=[], needs_other_host=[], passed=True)
    dom = parse(render(report, None))
    assert dom.one(id="findings").text == "No findings."
    assert "No wheels in the check report." in dom.one("section", id="sizes").text
    assert dom.one(id="other-hosts").text == "Every cell of the matrix was built on this host."


def test_human_size() -> None:
    assert [human_size(n) for n in (0, 1023, 1024, 43_900, MiB, 1_661_740, 100 * MiB, 10 * 2**30)] == [
        "0 B",
        "1023 B",
        "1 KiB",
        "42.9 KiB",
        "1 MiB",
        "1.58 MiB",
        "100 MiB",
        "10 GiB",
    ]


def test_write_report_reads_dist_and_writes_the_page(tmp_path: Path) -> None:
    report = hand_made_report()
    (tmp_path / "check-report.json").write_text(json.dumps(report))
    out = write_report(tmp_path)
    assert out == tmp_path / "report.html"
    assert out.read_text(encoding="utf-8") == render(report, None)
    (tmp_path / "build-record.json").write_text(json.dumps(build_record()))
    summary = facts(parse(write_report(tmp_path).read_text(encoding="utf-8")))
    assert summary["build took"] == "187.3 s cells, 5.5 s assemble"
    assert summary["built on"] == "Linux-x86_64 (glibc 2.36, Python 3.11.7)"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build-record.json", "check-report.json", "report.html"]


def test_a_build_record_of_another_release_is_left_out(tmp_path: Path) -> None:
    page = render(hand_made_report(), build_record(project="otherkernels"))
    dom = parse(page)
    assert "build took" not in facts(dom)
    assert "is of otherkernels 1.2.0, not of this check" in " ".join(dom.text.split())


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no check report"),
        ("{not json", "cannot read the check report"),
        ("[]", "not a JSON object"),
        (json.dumps({"schema": "wheelmatrix-build-record", "version": 1}), "not a wheelmatrix-check-report version 1"),
        (json.dumps({**hand_made_report(), "version": 2}), "version 2"),
    ],
)
def test_write_report_refuses_what_is_not_a_check_report(tmp_path: Path, content: str | None, message: str) -> None:
    if content is not None:
        (tmp_path / "check-report.json").write_text(content)
    with pytest.raises(PackageError, match=re.escape(message)) as caught:
        write_report(tmp_path)
    assert caught.value.fix and "wheelmatrix check" in caught.value.fix
    assert not (tmp_path / "report.html").exists()


# ------------------------------------------------------------------------------- headless Chromium
CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium package (apt-get install chromium); nox -s tests installs it"
)
PROBE = """<pre id="layout-probe"></pre><script>
const box = (e) => { const r = e.getBoundingClientRect(); return [r.x, r.y, r.width, r.height]; };
const style = (e) => getComputedStyle(e);
document.getElementById("layout-probe").textContent = JSON.stringify({
  chart: box(document.getElementById("size-chart")),
  bars: [...document.querySelectorAll("#size-chart rect.bar")].map((e) => ({
    bytes: +e.getAttribute("data-bytes"), box: box(e), fill: style(e).fill })),
  cells: [...document.querySelectorAll("#arch-grid td.arch-cell")].map((e) => ({
    classes: e.className, box: box(e), background: style(e).backgroundColor,
    image: style(e).backgroundImage, shadow: style(e).boxShadow })),
});
</script>"""


def chromium(tmp_path: Path, *args: str) -> str:
    assert CHROMIUM is not None
    done = subprocess.run(
        [CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", f"--user-data-dir={tmp_path / 'profile'}", *args],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def probe_layout(tmp_path: Path, page: str, *, keep_csp: bool = False) -> dict[str, Any] | None:
    """Layout facts of ``page`` as Chromium draws it: a copy with a measuring script, its DOM dumped."""
    if not keep_csp:
        page = re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", page)
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    dom = chromium(tmp_path, "--dump-dom", probe.as_uri())
    found = re.search(r'<pre id="layout-probe">(.*?)</pre>', dom, re.DOTALL)
    assert found is not None, dom[-2000:]
    text = unescape(found[1])
    return json.loads(text) if text else None


def png_pixels(png: bytes) -> tuple[int, int, list[bytes]]:
    """Width, height and rows of RGB(A) bytes of an 8-bit truecolour PNG (what Chromium writes)."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    at, idat, header = 8, b"", b""
    while at < len(png):
        (length,) = struct.unpack(">I", png[at : at + 4])
        kind, body = png[at + 4 : at + 8], png[at + 8 : at + 8 + length]
        at += 12 + length
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    bpp = 3 if colour == 2 else 4
    raw, stride, rows = zlib.decompress(idat), width * bpp, []
    previous = bytearray(stride)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = previous[i], previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        previous = line
    return width, height, rows


@pytest.mark.slow
@needs_chromium
def test_chromium_draws_the_chart_and_the_grid(tmp_path: Path) -> None:
    report = hand_made_report()
    page = render(report, build_record())
    layout = probe_layout(tmp_path, page)
    assert layout is not None
    # the chart: laid out at its size, one bar per segment, widths proportional to bytes
    chart_width = layout["chart"][2]
    assert chart_width > 600
    dom = parse(page)
    assert len(layout["bars"]) == len(dom.one("svg", id="size-chart").find("rect", "bar")) == 9
    per_byte = [bar["box"][2] / bar["bytes"] for bar in layout["bars"]]
    assert max(per_byte) == pytest.approx(min(per_byte), rel=0.02)
    assert all(bar["box"][3] > 10 for bar in layout["bars"])
    assert {bar["fill"] for bar in layout["bars"]} >= {"rgb(95, 107, 122)", "rgb(207, 213, 221)"}
    # the grid: every cell drawn, the states in their colours
    cells = layout["cells"]
    assert len(cells) == len(dom.find("td", "arch-cell")) > 30
    assert all(cell["box"][2] > 20 and cell["box"][3] > 15 for cell in cells)
    by_state = {
        state: [c for c in cells if state in c["classes"].split()]
        for state in ("sass", "ptx", "none", "elsewhere", "missing")
    }
    assert {c["background"] for c in by_state["sass"]} == {"rgb(30, 123, 79)"}
    assert {c["background"] for c in by_state["ptx"]} == {"rgb(240, 193, 90)"}
    assert all("repeating-linear-gradient" in c["image"] for c in by_state["elsewhere"])
    assert all("rgb(208, 2, 27)" in c["shadow"] for c in by_state["missing"])
    # the page's own CSP keeps any script from running: the same probe under it measures nothing
    assert probe_layout(tmp_path, page, keep_csp=True) is None


@pytest.mark.slow
@needs_chromium
def test_chromium_screenshot_shows_the_chart_and_the_grid(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render(hand_made_report(), build_record()), encoding="utf-8")
    shot = tmp_path / "report.png"
    chromium(tmp_path, "--hide-scrollbars", "--window-size=1000,1500", f"--screenshot={shot}", page.as_uri())
    width, height, rows = png_pixels(shot.read_bytes())
    assert (width, height) == (1000, 1500)
    bpp = len(rows[0]) // width
    pixels = Counter(bytes(row[i : i + 3]) for row in rows for i in range(0, len(row), bpp))
    assert len(pixels) > 50  # not a blank page
    # more pixels of each than the legend's swatch has: the bars, the limit lines and the grid's cells
    for colour, least in ((SASS_GREEN, 5000), (CUDA_BLUE, 3000), (LIMIT_RED, 120)):
        assert pixels[bytes(colour)] >= least, f"{pixels[bytes(colour)]} pixels of {colour}"
