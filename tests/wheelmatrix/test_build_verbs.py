"""The build and assemble verbs' errors, and the build record against its schema (fast)."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest

from build_fixtures.cellwheels import make_cell_wheel, make_matrix
from build_fixtures.project import REPO
from wheelmatrix.cli import main
from wheelmatrix.stages.assemble import assemble_all
from wheelmatrix.stages.cells import CellResult, write_results
from wheelmatrix.stages.record import SCHEMA, make_record

MATRIX = str(REPO / "matrix.toml")


def test_unknown_cell_is_a_usage_error_listing_the_cells(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc = main(["build", "--matrix", MATRIX, "--cell", "linux-x86_64-cuda999", "--work", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "no cell linux-x86_64-cuda999" in err and "linux-x86_64-cuda124" in err
    assert "Traceback" not in err


def test_assemble_before_build_says_what_to_run(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc = main(["assemble", "--matrix", MATRIX, "--work", str(tmp_path / "none"), "--dist", str(tmp_path / "dist")])
    err = capsys.readouterr().err
    assert rc == 5
    assert "no cell results" in err and "wheelmatrix build" in err


def test_assemble_refuses_after_a_failed_cell(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    log = tmp_path / "work" / "cells" / "linux-x86_64-cuda124" / "build.log"
    failed = CellResult(
        "linux-x86_64-cuda124", "linux-x86_64", "cuda124", "failed", "the build exited with code 1", log=str(log)
    )
    write_results(tmp_path / "work", [failed])
    rc = main(["assemble", "--matrix", MATRIX, "--work", str(tmp_path / "work"), "--dist", str(tmp_path / "dist")])
    err = capsys.readouterr().err
    assert rc == 6
    assert "linux-x86_64-cuda124" in err and str(log) in err
    assert not (tmp_path / "dist").exists()


def test_build_record_validates_against_its_schema(tmp_path: Path) -> None:
    cells = [make_cell_wheel(tmp_path, "cpu"), make_cell_wheel(tmp_path, "cuda124", pad=1000)]
    matrix = make_matrix(tmp_path)
    finals = assemble_all(matrix, cells, tmp_path / "dist")
    results = [
        CellResult(
            c.cell_id, c.platform, c.variant, "built", "built", duration=1.5, build_seconds=1.4, wheel=str(c.path)
        )
        for c in cells
    ] + [CellResult("windows-x86_64-cuda124", "windows-x86_64", "cuda124", "skipped", "needs a Windows runner")]
    record = make_record(
        matrix,
        results,
        finals,
        version="0.1.0",
        needs_other_host=[("windows-x86_64-cuda124", "needs a Windows runner")],
        cells_wall_seconds=3.0,
        assemble_seconds=1.0,
    )
    jsonschema.validate(record, SCHEMA)
    (wheel,) = record["wheels"]
    assert [lib["file"] for lib in wheel["libraries"]] == ["libkbit_cpu.so", "libkbit_cuda124.so"]
    assert wheel["libraries"][1]["cuda"] == "12.4" and wheel["libraries"][1]["sass"] == [75, 80]
    assert wheel["tag"] == "manylinux_2_28_x86_64" and wheel["repair"] == "auditwheel"
    # a record that lies about a status does not validate
    record["cells"][0]["status"] = "maybe"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(record, SCHEMA)
