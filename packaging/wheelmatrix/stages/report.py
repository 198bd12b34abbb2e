"""The release report: ``dist/report.html``, one self-contained page a person reads before a release.

:func:`render` turns the check report (``dist/check-report.json``, written by the check stage) and,
when there is one, the build record (``dist/build-record.json``) into HTML; :func:`write_report`
reads both from ``dist/`` and writes the page beside them. The page needs nothing but itself: its
charts are inline SVG drawn here, its CSS is inline, and its Content-Security-Policy lets it load
nothing and run no script. Every text taken from the reports goes through :func:`html.escape`.

Sections, each with a stable id (tests and links use them):

``summary``      project, version, passed/failed, strict, counts and timings
``size-chart``   each wheel's size against its per-file limit, one bar per wheel split by library
                 (``rect.bar.lib``, ``rect.bar.rest``, ``line.limit``); ``size-detail`` repeats the
                 bars on the scale of the largest wheel when the limit would leave them too thin to read
``arch-grid``    per platform, CUDA version x GPU arch read from the libraries (``td.arch-cell`` with
                 ``sass``, ``ptx``, ``sass-ptx``, ``none`` or ``elsewhere``; ``declared``, ``missing``
                 and ``extra`` compare it with the matrix)
``other-hosts``  the cells another runner builds, and why
``installs``     each wheel x Python: passed, failed or skipped
``findings``     code, severity, file, what, why, fix
``files``        each file's platform, tag, size and sha256
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

from wheelmatrix.errors import PackageError
from wheelmatrix.stages.record import RECORD_FILE

# The check stage's document (stages/check.py, which imports this module: its names are not imported back).
CHECK_REPORT_FILE = "check-report.json"
CHECK_REPORT_SCHEMA = "wheelmatrix-check-report"
CHECK_REPORT_VERSION = 1
REPORT_FILE = "report.html"

# Colour-blind-safe hues (Okabe & Ito) for the libraries; CPU libraries are slate, the rest of a wheel grey.
_CPU_COLOUR = "#5f6b7a"
_LIBRARY_COLOURS = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#8c6d1f", "#3b3b98")
_REST_COLOUR = "#cfd5dd"
_LIMIT_COLOUR = "#c0392b"

_CHART_WIDTH = 960
_PAD = 14  # left of the plot
_PAD_RIGHT = 40  # right of it: room for the last tick's label
_LABEL_H = 20  # the wheel's name above its bar
_BAR_H = 20
_ROW_GAP = 12
_AXIS_H = 30
_DETAIL_BELOW = 0.25  # draw the zoomed chart when the largest wheel uses less than this share of its limit

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

_STYLE = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, "DejaVu Sans", sans-serif; color: #1d232b; background: #fff;
       margin: 0 auto; padding: 20px 28px 40px; max-width: 1120px; }
h1 { font-size: 22px; margin: 0 0 6px; }
h2 { font-size: 17px; margin: 30px 0 8px; padding-bottom: 4px; border-bottom: 1px solid #dde2e8; }
h3 { font-size: 14px; margin: 16px 0 6px; }
p.note, .muted { color: #5b6572; }
code, .mono { font-family: "DejaVu Sans Mono", ui-monospace, monospace; font-size: 12.5px; }
.verdict { display: inline-block; padding: 2px 10px; border-radius: 4px; font-weight: 700; color: #fff;
           letter-spacing: .03em; }
.verdict.passed { background: #1e7b4f; } .verdict.failed { background: #b3261e; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 10px 0 0; }
dl.facts dt { color: #5b6572; } dl.facts dd { margin: 0; }
table { border-collapse: collapse; margin: 6px 0; }
th, td { border: 1px solid #dde2e8; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f3f5f8; font-weight: 600; }
svg { max-width: 100%; height: auto; display: block; }
svg text { font-family: system-ui, "DejaVu Sans", sans-serif; fill: #1d232b; }
svg .axis text, svg text.size { fill: #5b6572; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 18px; margin: 6px 0 4px; font-size: 13px; }
.legend span.key { display: inline-flex; align-items: center; gap: 6px; }
.swatch { display: inline-block; width: 14px; height: 14px; border-radius: 2px; border: 1px solid rgba(0,0,0,.15); }
.swatch.line { width: 3px; height: 16px; border: 0; }
table.arch-grid th { white-space: nowrap; }
table.arch-grid th.arch { text-align: center; min-width: 50px; padding: 4px; }
table.arch-grid td.arch-cell { text-align: center; font-size: 12px; font-weight: 600; height: 22px; padding: 4px; }
td.arch-cell.sass { background: #1e7b4f; color: #fff; }
td.arch-cell.ptx { background: #f0c15a; color: #3d2c00; }
td.arch-cell.sass-ptx { background: #1f5fa8; color: #fff; }
td.arch-cell.none { background: #f6f7f9; color: #a0a8b3; font-weight: 400; }
td.arch-cell.elsewhere { background: repeating-linear-gradient(135deg, #eef0f3 0 6px, #dfe3e8 6px 12px);
                         color: #5b6572; font-weight: 400; }
td.arch-cell.declared { box-shadow: inset 0 0 0 2px #1d232b; }
td.arch-cell.elsewhere.declared { box-shadow: inset 0 0 0 2px #8a939e; }
td.arch-cell.missing { box-shadow: inset 0 0 0 3px #d0021b; }
td.arch-cell.none.missing { background: #fde3e3; color: #b3261e; }
td.arch-cell.extra { box-shadow: inset 0 0 0 3px #e69f00; }
td.arch-cell .flag { display: block; font-size: 10px; font-weight: 700; }
td.row-note { font-size: 12.5px; color: #3b4450; min-width: 16em; }
td.row-note .bad { color: #b3261e; font-weight: 600; }
.legend .swatch.sass { background: #1e7b4f; } .legend .swatch.ptx { background: #f0c15a; }
.legend .swatch.sass-ptx { background: #1f5fa8; } .legend .swatch.none { background: #f6f7f9; }
.legend .swatch.elsewhere { background: repeating-linear-gradient(135deg, #eef0f3 0 3px, #c9ced5 3px 6px); }
.legend .swatch.declared { background: #fff; box-shadow: inset 0 0 0 2px #1d232b; }
.legend .swatch.missing { background: #fde3e3; box-shadow: inset 0 0 0 3px #d0021b; }
.legend .swatch.extra { background: #fff; box-shadow: inset 0 0 0 3px #e69f00; }
td.install.passed { background: #e3f3ea; color: #145c3a; }
td.install.failed { background: #fde3e3; color: #8c1d18; }
td.install.skipped { background: #f3f5f8; color: #5b6572; }
td.install.unchecked { color: #a0a8b3; }
table#installs { table-layout: fixed; width: 100%; } table#installs col.wheel { width: 30%; }
table#installs td { overflow-wrap: anywhere; font-size: 13px; }
td.install .reason, td .reason { display: block; font-size: 12px; color: #5b6572; }
table#findings { table-layout: fixed; width: 100%; }
table#findings td, table#files td { overflow-wrap: anywhere; }
table#findings td { font-size: 13px; }
table#findings col.code { width: 62px; } table#findings col.severity { width: 84px; }
table#findings col.file { width: 19%; } table#findings col.what { width: 31%; }
tr.finding.error td.severity { color: #b3261e; font-weight: 700; }
tr.finding.warning td.severity { color: #8a5a00; font-weight: 700; }
"""


def _e(value: object) -> str:
    """Text from a report, made safe for HTML text and attribute values alike."""
    return html.escape(str(value), quote=True)


def _items(mapping: Mapping[str, Any] | None, key: str) -> list[Mapping[str, Any]]:
    if not mapping:
        return []
    value = mapping.get(key)
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def human_size(n: int) -> str:
    """``1.58 MiB``, ``42.6 KiB``, ``100 MiB``: binary units, as PyPI states its limits."""
    for unit, scale, digits in (("GiB", 2**30, 2), ("MiB", 2**20, 2), ("KiB", 2**10, 1)):
        if n >= scale:
            return f"{n / scale:.{digits}f}".rstrip("0").rstrip(".") + f" {unit}"
    return f"{n} B"


def _percent(part: int, whole: int) -> str:
    if not whole:
        return "-"
    share = 100.0 * part / whole
    return f"{share:.2f} %" if share < 10 else f"{share:.1f} %"


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else 0 for p in version.split("."))


# ------------------------------------------------------------------------------------------ size chart
@dataclass(frozen=True)
class _Segment:
    label: str  # the library's file, or "rest of the wheel"
    key: str  # what picks its colour: "CPU", "CUDA 13.0", "rest"
    size: int


@dataclass(frozen=True)
class _Bar:
    file: str
    size: int
    limit: int
    segments: tuple[_Segment, ...]


def _library_key(library: Mapping[str, Any]) -> str:
    if library.get("backend") == "cuda":
        return f"CUDA {library.get('cuda')}" if library.get("cuda") else "CUDA"
    return str(library.get("backend") or "library").upper()


def _bars(files: Sequence[Mapping[str, Any]]) -> list[_Bar]:
    bars = []
    for entry in files:
        size = _int(entry.get("size"))
        segments = [
            _Segment(str(lib.get("file")), _library_key(lib), _int(lib.get("compressed")))
            for lib in _items(entry, "libraries")
        ]
        rest = max(0, size - sum(s.size for s in segments))
        segments.append(_Segment("rest of the wheel", "rest", rest))
        bars.append(_Bar(str(entry.get("file")), size, _int(entry.get("limit")), tuple(segments)))
    return bars


def _colours(bars: Iterable[_Bar]) -> dict[str, str]:
    """One colour per kind of library, the same in every wheel: CPU first, then CUDA versions in order."""
    keys = {s.key for bar in bars for s in bar.segments if s.key != "rest"}

    def order(key: str) -> tuple[int, tuple[int, ...], str]:
        if key.startswith("CUDA "):
            return (1, _version_key(key[5:]), key)
        return (0 if key == "CPU" else 2, (), key)

    colours = {"rest": _REST_COLOUR}
    others = iter(_LIBRARY_COLOURS * (1 + len(keys) // len(_LIBRARY_COLOURS)))
    for key in sorted(keys, key=order):
        colours[key] = _CPU_COLOUR if key == "CPU" else next(others)
    return colours


def _ticks(scale: int) -> list[int]:
    """Round axis ticks (1, 2, 2.5 or 5 times a power of ten in the axis's unit) from 0 to ``scale``."""
    if scale <= 0:
        return [0]
    unit = 2**20 if scale >= 2**20 else 2**10 if scale >= 2**10 else 1
    raw = scale / unit / 5
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw) * unit
    count = int(scale // step)
    return [round(i * step) for i in range(count + 1)]


def _size_chart(bars: Sequence[_Bar], colours: Mapping[str, str], *, scale: int, chart_id: str, title: str) -> str:
    """One horizontal stacked bar per wheel on a linear scale where ``scale`` bytes fill the plot."""
    plot = _CHART_WIDTH - _PAD - _PAD_RIGHT
    row = _LABEL_H + _BAR_H + _ROW_GAP
    height = 8 + row * len(bars) + _AXIS_H

    def x(n: int) -> float:
        return _PAD + plot * n / scale if scale else _PAD

    out = [
        f'<svg id="{_e(chart_id)}" class="size-chart" xmlns="http://www.w3.org/2000/svg" width="{_CHART_WIDTH}" '
        f'height="{height}" viewBox="0 0 {_CHART_WIDTH} {height}" role="img" aria-label="{_e(title)}" '
        f'data-scale="{scale}">',
        f"<title>{_e(title)}</title>",
    ]
    ticks = _ticks(scale)
    axis_y = 8 + row * len(bars)
    out.append('<g class="axis">')
    for tick in ticks:
        out.append(
            f'<line x1="{x(tick):.2f}" x2="{x(tick):.2f}" y1="4" y2="{axis_y}" stroke="#e6e9ee" stroke-width="1"/>'
            f'<text x="{x(tick):.2f}" y="{axis_y + 16}" text-anchor="middle" font-size="11">{_e(human_size(tick))}</text>'
        )
    out.append("</g>")
    for index, bar in enumerate(bars):
        top = 8 + row * index
        bar_y = top + _LABEL_H
        limit_note = f" of the {human_size(bar.limit)} limit" if bar.limit else ""
        out.append(
            f'<g class="wheel" id="{_e(chart_id)}-wheel-{index}" data-file="{_e(bar.file)}" data-size="{bar.size}" '
            f'data-limit="{bar.limit}">'
            f'<text x="{_PAD}" y="{top + 14}" font-size="13">{_e(bar.file)}'
            f'<tspan class="size" dx="10" fill="#5b6572">{_e(human_size(bar.size))}, '
            f"{_e(_percent(bar.size, bar.limit))}{_e(limit_note)}</tspan></text>"
            f'<rect class="track" x="{_PAD}" y="{bar_y}" width="{plot}" height="{_BAR_H}" fill="#f6f7f9"/>'
        )
        at = 0
        for segment in bar.segments:
            kind = "rest" if segment.key == "rest" else "lib"
            if segment.size <= 0 and kind == "rest":
                continue
            out.append(
                f'<rect class="bar {kind}" x="{x(at):.3f}" y="{bar_y}" width="{x(at + segment.size) - x(at):.3f}" '
                f'height="{_BAR_H}" fill="{colours[segment.key]}" data-bytes="{segment.size}" '
                f'data-library="{_e(segment.label)}"><title>{_e(segment.label)}: {_e(human_size(segment.size))} '
                f"compressed ({_e(_percent(segment.size, bar.size))} of the wheel)</title></rect>"
            )
            at += segment.size
        if bar.limit and bar.limit <= scale:
            lx = x(bar.limit)
            out.append(
                f'<line class="limit" x1="{lx:.2f}" x2="{lx:.2f}" y1="{bar_y - 4}" y2="{bar_y + _BAR_H + 4}" '
                f'stroke="{_LIMIT_COLOUR}" stroke-width="3" data-bytes="{bar.limit}">'
                f"<title>per-file limit: {_e(human_size(bar.limit))}</title></line>"
            )
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def _size_legend(colours: Mapping[str, str]) -> str:
    keys = [k for k in colours if k != "rest"] + ["rest"]
    parts = [
        f'<span class="key"><span class="swatch" style="background:{colours[k]}"></span>'
        f"{_e('rest of the wheel (Python files, metadata, ZIP overhead)' if k == 'rest' else k + ' library')}</span>"
        for k in keys
    ]
    parts.append(
        f'<span class="key"><span class="swatch line" style="background:{_LIMIT_COLOUR}"></span>per-file limit</span>'
    )
    return f'<div class="legend">{"".join(parts)}</div>'


def _size_section(files: Sequence[Mapping[str, Any]], matrix: Mapping[str, Any]) -> str:
    bars = _bars(files)
    if not bars:
        return '<section id="sizes"><h2>Wheel sizes</h2><p class="note">No wheels in the check report.</p></section>'
    colours = _colours(bars)
    largest = max(bar.size for bar in bars)
    limit = max(bar.limit for bar in bars)
    total = sum(bar.size for bar in bars)
    quota = _int(matrix.get("project_quota"))
    parts = [
        '<section id="sizes"><h2>Wheel sizes</h2>',
        '<p class="note">Each bar is one wheel on a linear scale: its libraries\' compressed bytes, then the rest of '
        "the wheel; the red line is the per-file limit. Hover a segment for its size.</p>",
        _size_chart(
            bars,
            colours,
            scale=max(limit, largest),
            chart_id="size-chart",
            title="Each wheel's size against the per-file limit, split by library",
        ),
        _size_legend(colours),
    ]
    if limit and largest < _DETAIL_BELOW * limit:
        parts += [
            f"<h3>The same wheels, scaled to the largest ({_e(human_size(largest))}; the limit is off this scale)</h3>",
            _size_chart(
                bars, colours, scale=largest, chart_id="size-detail", title="Each wheel's size split by library, zoomed"
            ),
        ]
    quota_text = f", {_e(_percent(total, quota))} of the {_e(human_size(quota))} project quota" if quota else ""
    parts.append(f'<p class="note">The release: {len(bars)} files, {_e(human_size(total))}{quota_text}.</p></section>')
    return "".join(parts)


# ------------------------------------------------------------------------------------------- arch grid
_CELL_ID = re.compile(r"^(?P<platform>.+)-cuda(?P<digits>[0-9]+)$")


def _cuda_of_cell(cell: str, versions: Iterable[str]) -> tuple[str, str] | None:
    """``linux-x86_64-cuda124`` -> ``("linux-x86_64", "12.4")``; ``None`` for a CPU cell."""
    match = _CELL_ID.match(cell)
    if not match:
        return None
    digits = match["digits"]
    version = next((v for v in versions if v.replace(".", "") == digits), f"{digits[:-1]}.{digits[-1]}")
    return match["platform"], version


def _archs(values: object) -> set[int]:
    return {a for a in values if isinstance(a, int)} if isinstance(values, list) else set()


@dataclass
class _Row:
    platform: str
    cuda: str
    sass: set[int]
    ptx: set[int]
    libraries: list[str]
    elsewhere: str | None = None  # why another runner builds it
    failed: str | None = None  # why its build failed (from the build record)


def _arch_rows(report: Mapping[str, Any], record: Mapping[str, Any] | None) -> dict[tuple[str, str], _Row]:
    matrix = report.get("matrix") or {}
    known = set((matrix.get("cuda") or {}).keys())
    rows: dict[tuple[str, str], _Row] = {}

    def row(platform: str, cuda: str) -> _Row:
        return rows.setdefault((platform, cuda), _Row(platform, cuda, set(), set(), []))

    for entry in _items(report, "files"):
        for lib in _items(entry, "libraries"):
            if lib.get("backend") != "cuda" or not lib.get("cuda"):
                continue
            found = row(str(entry.get("platform")), str(lib.get("cuda")))
            found.sass |= _archs(lib.get("sass"))
            found.ptx |= _archs(lib.get("ptx"))
            found.libraries.append(str(lib.get("file")))
    known |= {cuda for _, cuda in rows}
    for other in _items(report, "needs_other_host") or _items(record, "needs_other_host"):
        where = _cuda_of_cell(str(other.get("cell")), known)
        if where and where not in rows:  # a library in the wheels wins over a stale note
            row(*where).elsewhere = str(other.get("reason") or "another runner builds it")
    for cell in _items(record, "cells"):
        where = _cuda_of_cell(str(cell.get("cell_id")), known)
        if where and cell.get("status") == "failed" and where not in rows:
            row(*where).failed = str(cell.get("reason") or "the build failed")
    return rows


def _arch_cell(row: _Row, arch: int, want_sass: set[int], want_ptx: set[int]) -> str:
    has_sass, has_ptx = arch in row.sass, arch in row.ptx
    declared = [k for k, want in (("SASS", want_sass), ("PTX", want_ptx)) if arch in want]
    classes = ["arch-cell"]
    flag = ""
    if row.elsewhere is not None:
        classes.append("elsewhere")
        text = ""
        state = "built on another runner"
    else:
        state_class, text = (
            ("sass-ptx", "SASS+PTX")
            if has_sass and has_ptx
            else ("sass", "SASS")
            if has_sass
            else ("ptx", "PTX")
            if has_ptx
            else ("none", "–")
        )
        classes.append(state_class)
        state = text if state_class != "none" else "no code"
        missing = [
            k
            for k, want, have in (("SASS", want_sass, row.sass), ("PTX", want_ptx, row.ptx))
            if arch in want and arch not in have
        ]
        extra = [
            k
            for k, want, have in (("SASS", want_sass, row.sass), ("PTX", want_ptx, row.ptx))
            if arch in have and arch not in want
        ]
        if missing:
            classes.append("missing")
            flag = f'<span class="flag">no {_e("+".join(missing))}</span>'
        if extra:
            classes.append("extra")
            flag += f'<span class="flag">{_e("+".join(extra))} undeclared</span>'
    if declared:
        classes.append("declared")
    title = (
        f"{row.platform}, CUDA {row.cuda}, sm_{arch}: {state}; the matrix declares {'+'.join(declared) or 'nothing'}"
    )
    return (
        f'<td class="{" ".join(classes)}" data-arch="{arch}" data-cuda="{_e(row.cuda)}" '
        f'data-platform="{_e(row.platform)}" title="{_e(title)}">{_e(text)}{flag}</td>'
    )


def _row_note(row: _Row, want_sass: set[int], want_ptx: set[int]) -> str:
    if row.elsewhere is not None:
        return _e(row.elsewhere)
    problems = []
    for kind, want, have in (("SASS", want_sass, row.sass), ("PTX", want_ptx, row.ptx)):
        if want - have:
            problems.append(f"missing {kind} " + ", ".join(f"sm_{a}" for a in sorted(want - have)))
        if have - want:
            problems.append(f"{kind} not declared " + ", ".join(f"sm_{a}" for a in sorted(have - want)))
    text = _e(", ".join(row.libraries)) if row.libraries else '<span class="bad">no library in the wheels</span>'
    if row.failed is not None:
        text = f'<span class="bad">build failed</span>: {_e(row.failed)}'
    if problems:
        text += f'<br><span class="bad">{_e("; ".join(problems))}</span>'
    return text


def _grid_legend() -> str:
    keys = (
        ("sass", "SASS (machine code)"),
        ("ptx", "PTX (JIT-compiled by the driver)"),
        ("sass-ptx", "SASS+PTX"),
        ("none", "none"),
        ("declared", "declared by the matrix"),
        ("missing", "declared but missing"),
        ("extra", "present but not declared"),
        ("elsewhere", "built on another runner"),
    )
    spans = "".join(f'<span class="key"><span class="swatch {k}"></span>{_e(label)}</span>' for k, label in keys)
    return f'<div class="legend">{spans}</div>'


def _arch_section(report: Mapping[str, Any], record: Mapping[str, Any] | None) -> str:
    matrix = report.get("matrix") or {}
    declared = {
        str(v): (_archs(spec.get("sass")), _archs(spec.get("ptx")))
        for v, spec in (matrix.get("cuda") or {}).items()
        if isinstance(spec, Mapping)
    }
    rows = _arch_rows(report, record)
    archs = sorted(set[int]().union(*(s | p for s, p in declared.values()), *(r.sass | r.ptx for r in rows.values())))
    platforms = [str(p) for p in matrix.get("platforms") or []]
    platforms += sorted({str(f.get("platform")) for f in _items(report, "files")} - set(platforms))
    platforms += sorted({p for p, _ in rows} - set(platforms))
    parts = [
        '<section id="archs"><h2>GPU code per CUDA version</h2>',
        '<p class="note">Read from the libraries in the wheels: for each platform, which GPU archs each CUDA '
        "version's library carries as SASS and as PTX. A dark outline marks what the matrix declares, a red one "
        "what it declares and the library lacks.</p>",
        _grid_legend(),
        '<div id="arch-grid">',
    ]
    cpu_only = []
    for platform in platforms:
        mine = sorted((r for r in rows.values() if r.platform == platform), key=lambda r: _version_key(r.cuda))
        if not mine:
            cpu_only.append(platform)
            continue
        head = "".join(f'<th class="arch" scope="col">sm_{a}</th>' for a in archs)
        body = []
        for r in mine:
            want_sass, want_ptx = declared.get(r.cuda, (set(), set()))
            cells = "".join(_arch_cell(r, a, want_sass, want_ptx) for a in archs)
            state = "elsewhere" if r.elsewhere is not None else "failed" if r.failed is not None else "built"
            body.append(
                f'<tr class="arch-row {state}"><th scope="row">CUDA {_e(r.cuda)}</th>{cells}'
                f'<td class="row-note">{_row_note(r, want_sass, want_ptx)}</td></tr>'
            )
        parts.append(
            f'<h3>{_e(platform)}</h3><table class="arch-grid" data-platform="{_e(platform)}">'
            f'<thead><tr><th scope="col">CUDA</th>{head}<th scope="col">library / note</th></tr></thead>'
            f"<tbody>{''.join(body)}</tbody></table>"
        )
    if cpu_only:
        parts.append(f'<p class="note">No CUDA library in this release for: {_e(", ".join(cpu_only))} (CPU only).</p>')
    parts.append("</div></section>")
    return "".join(parts)


# ---------------------------------------------------------------------------------------------- tables
def _table(table_id: str, headers: Sequence[str], rows: Sequence[str], empty: str) -> str:
    if not rows:
        return f'<p class="note" id="{_e(table_id)}">{_e(empty)}</p>'
    cols = "".join(f'<col class="{_e(re.sub(r"[^a-z0-9]+", "-", h.lower()))}">' for h in headers)  # for CSS widths
    head = "".join(f'<th scope="col">{_e(h)}</th>' for h in headers)
    return (
        f'<table id="{_e(table_id)}"><colgroup>{cols}</colgroup><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def _other_hosts_section(report: Mapping[str, Any], record: Mapping[str, Any] | None) -> str:
    others = _items(report, "needs_other_host") or _items(record, "needs_other_host")
    rows = [
        f'<tr class="other-host"><td><code>{_e(o.get("cell"))}</code></td><td>{_e(o.get("reason"))}</td></tr>'
        for o in others
    ]
    return (
        '<section id="other-hosts-section"><h2>Cells another runner builds</h2>'
        + _table("other-hosts", ("cell", "why"), rows, "Every cell of the matrix was built on this host.")
        + "</section>"
    )


def _installs_section(files: Sequence[Mapping[str, Any]], matrix: Mapping[str, Any]) -> str:
    declared = {str(p) for p in matrix.get("python") or []}
    pythons = sorted(declared | {str(i.get("python")) for f in files for i in _items(f, "installs")}, key=_version_key)
    rows = []
    for entry in files:
        results = {
            str(i.get("python")): (str(i.get("status")), str(i.get("reason") or "")) for i in _items(entry, "installs")
        }
        outcomes = [(python, results.get(python, ("not checked", ""))) for python in pythons]
        cells = []
        # Neighbouring Pythons with the same outcome share one cell: "skipped: not this host's platform" once.
        for (status, reason), same in groupby(outcomes, key=lambda item: item[1]):
            group = [python for python, _ in same]
            kind = status if status in ("passed", "failed", "skipped") else "unchecked"
            span = f' colspan="{len(group)}"' if len(group) > 1 else ""
            note = f'<span class="reason">{_e(reason)}</span>' if reason else ""
            cells.append(
                f'<td class="install {kind}"{span} data-python="{_e(" ".join(group))}">{_e(status)}{note}</td>'
            )
        rows.append(f"<tr><td><code>{_e(entry.get('file'))}</code></td>{''.join(cells)}</tr>")
    headers = ["wheel", *(f"Python {p}" for p in pythons)]
    return (
        '<section id="installs-section"><h2>Installs</h2>'
        '<p class="note">Each wheel installed into a fresh virtual environment from an index holding only '
        "<code>dist/</code>, then the project's smoke command run.</p>"
        + _table("installs", headers, rows if pythons else [], "No install was checked.")
        + "</section>"
    )


def _findings_section(findings: Sequence[Mapping[str, Any]]) -> str:
    ordered = sorted(findings, key=lambda f: f.get("severity") != "error")
    rows = []
    for f in ordered:
        severity = str(f.get("severity"))
        kind = severity if severity in ("error", "warning") else "warning"
        file = f.get("file")
        rows.append(
            f'<tr class="finding {kind}"><td><code>{_e(f.get("code"))}</code></td>'
            f'<td class="severity">{_e(severity)}</td><td>{_e(file) if file else "<span class=muted>release</span>"}</td>'
            f"<td>{_e(f.get('what'))}</td><td>{_e(f.get('why'))}</td><td>{_e(f.get('fix'))}</td></tr>"
        )
    table = _table("findings", ("code", "severity", "file", "what", "why", "fix"), rows, "No findings.")
    return f'<section id="findings-section"><h2>Findings</h2>{table}</section>'


def _files_section(files: Sequence[Mapping[str, Any]]) -> str:
    rows = [
        f"<tr><td><code>{_e(f.get('file'))}</code></td><td>{_e(f.get('platform'))}</td><td>{_e(f.get('tag'))}</td>"
        f"<td>{_e(human_size(_int(f.get('size'))))}</td>"
        f"<td>{_e(_percent(_int(f.get('size')), _int(f.get('limit'))))}</td>"
        f'<td class="mono">{_e(f.get("sha256"))}</td></tr>'
        for f in files
    ]
    return (
        '<section id="files-section"><h2>Files</h2>'
        '<p class="note">The publish stage uploads only files with exactly these bytes.</p>'
        + _table("files", ("file", "platform", "tag", "size", "of limit", "sha256"), rows, "No files.")
        + "</section>"
    )


def _summary(report: Mapping[str, Any], record: Mapping[str, Any] | None) -> str:
    project = report.get("project") or {}
    passed = bool(report.get("passed"))
    findings = _items(report, "findings")
    errors = sum(1 for f in findings if f.get("severity") == "error")
    facts: list[tuple[str, str]] = [
        ("strict", "yes: warnings fail the check" if report.get("strict") else "no: only errors fail the check"),
        ("findings", f"{_count(errors, 'error')}, {_count(len(findings) - errors, 'warning')}"),
        ("files", str(len(_items(report, "files")))),
        ("toolkit", f"wheelmatrix {report.get('wheelmatrix')}"),
    ]
    timings = report.get("timings") or {}
    if timings:
        facts.append(
            (
                "check took",
                f"{float(timings.get('static_seconds') or 0):.1f} s static, "
                f"{float(timings.get('install_seconds') or 0):.1f} s installs",
            )
        )
    if record is not None:
        statuses: dict[str, int] = {}
        for cell in _items(record, "cells"):
            statuses[str(cell.get("status"))] = statuses.get(str(cell.get("status")), 0) + 1
        facts.append(("cells", ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))))
        host = record.get("host") or {}
        if host:
            facts.append(("built on", f"{host.get('platform')} ({host.get('libc')}, Python {host.get('python')})"))
        build = record.get("timings") or {}
        if build:
            facts.append(
                (
                    "build took",
                    f"{float(build.get('cells_wall_seconds') or 0):.1f} s cells, "
                    f"{float(build.get('assemble_seconds') or 0):.1f} s assemble",
                )
            )
    verdict = "passed" if passed else "failed"
    rows = "".join(
        f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>"
        if k != "findings"
        else f'<dt>findings</dt><dd><a href="#findings-section">{_e(v)}</a></dd>'
        for k, v in facts
    )
    return (
        f'<header id="summary"><h1>{_e(project.get("name"))} {_e(project.get("version"))}: release check '
        f'<span class="verdict {verdict}" id="verdict">{verdict}</span></h1>'
        f'<dl class="facts">{rows}</dl></header>'
    )


def render(check_report: Mapping[str, Any], build_record: Mapping[str, Any] | None) -> str:
    """The release report page for ``check_report`` (and the build record, if any) as one HTML string."""
    project = check_report.get("project") or {}
    record = build_record
    note = ""
    if record is not None and (record.get("project") or {}) != project:
        other = record.get("project") or {}
        note = (
            f'<p class="note">The build record in <code>dist/</code> is of {_e(other.get("name"))} '
            f"{_e(other.get('version'))}, not of this check: its build facts are left out.</p>"
        )
        record = None
    files = _items(check_report, "files")
    title = f"{project.get('name')} {project.get('version')}: release report"
    body = [
        _summary(check_report, record),
        note,
        _size_section(files, check_report.get("matrix") or {}),
        _arch_section(check_report, record),
        _other_hosts_section(check_report, record),
        _installs_section(files, check_report.get("matrix") or {}),
        _findings_section(_items(check_report, "findings")),
        _files_section(files),
    ]
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
        + "\n".join(part for part in body if part)
        + "\n</body></html>\n"
    )


# ------------------------------------------------------------------------------------------------ files
def _read_json(path: Path, *, what: str, fix: str) -> Mapping[str, Any]:
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise PackageError(f"{path}: no {what}", fix=fix) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise PackageError(f"{path}: cannot read the {what}: {error}", fix=fix) from error
    if not isinstance(document, Mapping):
        raise PackageError(f"{path}: the {what} is not a JSON object", fix=fix)
    return document


def write_report(dist: Path) -> Path:
    """Write ``dist/report.html`` from ``dist/check-report.json`` (and ``dist/build-record.json`` if present)."""
    fix = "run `wheelmatrix check` first: it writes the check report the release report is drawn from"
    report = _read_json(dist / CHECK_REPORT_FILE, what="check report", fix=fix)
    if report.get("schema") != CHECK_REPORT_SCHEMA or report.get("version") != CHECK_REPORT_VERSION:
        raise PackageError(
            f"{dist / CHECK_REPORT_FILE}: not a {CHECK_REPORT_SCHEMA} version {CHECK_REPORT_VERSION} document "
            f"(schema {report.get('schema')!r}, version {report.get('version')!r})",
            fix=fix,
        )
    record: Mapping[str, Any] | None = None
    if (dist / RECORD_FILE).is_file():
        record = _read_json(dist / RECORD_FILE, what="build record", fix="run `wheelmatrix assemble` again")
    out = dist / REPORT_FILE
    partial = out.with_name(f".{out.name}.partial")
    partial.write_text(render(report, record), encoding="utf-8")
    partial.replace(out)
    return out
