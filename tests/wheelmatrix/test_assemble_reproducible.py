"""Reproducible wheels: two runs over the same inputs are byte-identical, repair included."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from build_fixtures.cellwheels import make_cell_wheel, make_matrix
from wheelmatrix.errors import PackageError
from wheelmatrix.stages.assemble import assemble_all
from wheelmatrix.wheelfile import read_wheel, source_date_epoch, wheel_bytes


def _build(tmp: Path, name: str, *, windows: bool = False) -> list[bytes]:
    # cell wheels compiled anew in a fresh folder each time: nothing is shared between runs
    work = tmp / name
    cells = [
        make_cell_wheel(work, "cpu", windows=windows, threads=windows),
        *([] if windows else [make_cell_wheel(work, "cuda124", pad=4096)]),
    ]
    finals = assemble_all(make_matrix(work, split="per-cuda-major"), cells, work / "dist")
    return [f.path.read_bytes() for f in sorted(finals, key=lambda f: f.path.name)]


@pytest.mark.parametrize("windows", [False, True], ids=["linux-auditwheel", "windows-delvewheel"])
def test_two_runs_are_byte_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, windows: bool) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    first = _build(tmp_path, "one", windows=windows)
    second = _build(tmp_path, "two", windows=windows)
    assert len(first) == (1 if windows else 2)
    assert first == second


def test_entries_sorted_with_fixed_times_and_modes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    cell = make_cell_wheel(tmp_path, "cpu")
    data = wheel_bytes(read_wheel(cell.path))
    out = tmp_path / "w.whl"
    out.write_bytes(data)
    with zipfile.ZipFile(out) as zf:
        infos = zf.infolist()
    names = [i.filename for i in infos]
    assert names[-1] == "kbit-0.1.0.dist-info/RECORD"
    body = [n for n in names if ".dist-info/" not in n]
    assert body == sorted(body) and names[: len(body)] == body
    assert {i.date_time for i in infos} == {(2023, 11, 14, 22, 13, 20)}
    modes = {i.filename: (i.external_attr >> 16) & 0o777 for i in infos}
    assert modes["kbit/_lib/libkbit_cpu.so"] == 0o755
    assert modes["kbit/__init__.py"] == 0o644
    # another epoch gives another (still deterministic) file
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1800000000")
    assert wheel_bytes(read_wheel(cell.path)) != data


def test_bad_source_date_epoch_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    with pytest.raises(PackageError, match="SOURCE_DATE_EPOCH='yesterday'"):
        source_date_epoch()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "5")
    assert source_date_epoch() == 315532800  # clamped to what a zip can hold
