"""assemble is content-addressed like the cells: unchanged inputs keep the wheels, any change re-runs."""

from __future__ import annotations

import json
from pathlib import Path

from build_fixtures.cellwheels import make_cell_wheel, make_matrix
from wheelmatrix.plan import Cell, Host, Plan
from wheelmatrix.stages.cells import CellResult, write_results
from wheelmatrix.stages.release import assemble_release


def _plan(tmp: Path) -> Plan:
    matrix = make_matrix(tmp)
    matrix.path.write_text("# stands for the matrix file: its bytes are part of the key\n")
    cell = Cell("linux-x86_64", "cpu", None, (), (), None, True, "here")
    return Plan(matrix, Host("linux-x86_64", True, True), (cell,), ())


def _results(work: Path, wheel: Path) -> None:
    import hashlib

    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    write_results(work, [CellResult("linux-x86_64-cpu", "linux-x86_64", "cpu", "built", "built", wheel=str(wheel),
                                    wheel_sha256=sha)])  # fmt: skip


def test_unchanged_inputs_keep_the_wheels_and_a_change_reassembles(tmp_path: Path) -> None:
    plan = _plan(tmp_path)
    cell = make_cell_wheel(tmp_path / "cells", "cpu")
    work, dist = tmp_path / "work", tmp_path / "dist"
    _results(work, cell.path)
    first = assemble_release(plan, work, dist)
    assert not first.reused
    (wheel,) = first.wheels
    stamp = wheel.path.stat().st_mtime_ns
    again = assemble_release(plan, work, dist)
    assert again.reused and again.wheels[0].sha256 == wheel.sha256
    assert wheel.path.stat().st_mtime_ns == stamp  # not rewritten: no tool ran
    assert json.loads(again.record.read_text())["wheels"][0]["sha256"] == wheel.sha256
    # a wheel in dist that was changed by hand is not trusted
    wheel.path.write_bytes(wheel.path.read_bytes() + b"x")
    assert not assemble_release(plan, work, dist).reused
    # another cell wheel (a source change) re-assembles
    other = make_cell_wheel(tmp_path / "cells2", "cpu", pad=1024)
    _results(work, other.path)
    changed = assemble_release(plan, work, dist)
    assert not changed.reused and changed.wheels[0].sha256 != wheel.sha256
    # so does a changed matrix file
    plan.matrix.path.write_text("# edited\n")
    assert not assemble_release(plan, work, dist).reused
