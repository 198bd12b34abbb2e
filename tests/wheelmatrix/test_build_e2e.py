"""The main job end to end, for real: kbit's cells built (CPU, CUDA from PyPI and Debian, Windows
CPU cross-built with zig), assembled, repaired by auditwheel and delvewheel, rated by
auditwheel, installed with pip into fresh venvs where kbit's own loader reports every library.

Slow (toolchain downloads on a fresh machine, nvcc for every CUDA version): marked ``slow``; CI
runs them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from build_fixtures.cellwheels import isolated_env
from build_fixtures.project import REPO
from wheelmatrix.cli import main
from wheelmatrix.config import load_matrix
from wheelmatrix.stages.assemble import CellWheel, assemble_all
from wheelmatrix.stages.cells import read_results
from wheelmatrix.stages.record import SCHEMA
from wheelmatrix.stages.repair import glibc_of, rate

pytestmark = pytest.mark.slow
MATRIX = REPO / "matrix.toml"


def _wm(*args: str) -> int:
    return main([*args])


@pytest.fixture(scope="module")
def full(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("e2e")
    work, dist = tmp / "work", tmp / "dist"
    start = time.monotonic()
    assert _wm("build", "--matrix", str(MATRIX), "--work", str(work), "-q") == 0
    built = time.monotonic() - start
    assert _wm("assemble", "--matrix", str(MATRIX), "--work", str(work), "--dist", str(dist), "-q") == 0
    record = json.loads((dist / "build-record.json").read_text())
    return {"tmp": tmp, "work": work, "dist": dist, "record": record, "build_seconds": built}


def _venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    return path / "bin" / "python"


def _pip(python: Path, *wheels: Path) -> None:
    env = {**isolated_env(), "PIP_CONFIG_FILE": "/dev/null", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run([str(python), "-m", "pip", "install", "-q", *map(str, wheels)], check=True, env=env)


def _kbit_json(python: Path) -> dict[str, Any]:
    out = subprocess.run(
        [str(python), "-m", "kbit", "--json"], check=False, capture_output=True, text=True, env=isolated_env()
    )
    doc: dict[str, Any] = json.loads(out.stdout)
    return doc


def test_linux_wheel_holds_every_library_and_meets_the_policy(full: dict[str, Any]) -> None:
    matrix = load_matrix(MATRIX)
    buildable = sorted(c["cell_id"] for c in full["record"]["cells"] if c["status"] in ("built", "cached"))
    linux_variants = sorted(c.split("linux-x86_64-")[1] for c in buildable if c.startswith("linux-x86_64-"))
    assert {"cpu", "cuda118", "cuda124", "cuda130"} <= set(linux_variants)
    (wheel,) = [w for w in full["record"]["wheels"] if w["platform"] == "linux-x86_64"]
    assert wheel["file"] == "kbit-0.1.0-py3-none-manylinux_2_28_x86_64.whl"
    assert wheel["layout"] == "fat"
    assert sorted(lib["file"] for lib in wheel["libraries"]) == sorted(f"libkbit_{v}.so" for v in linux_variants)
    # auditwheel, run again here, rates it within the declared policy
    rating = rate(full["dist"] / wheel["file"])
    policy = glibc_of(matrix.platform("linux-x86_64").policy)
    got = glibc_of(rating.overall_tag.removesuffix("_x86_64"))
    assert policy is not None and got is not None and got <= policy, rating
    assert wheel["size"] <= wheel["limit"]


def test_build_record_is_valid_against_its_schema(full: dict[str, Any]) -> None:
    import jsonschema

    jsonschema.validate(full["record"], SCHEMA)
    other = {c["cell"] for c in full["record"]["needs_other_host"]}
    assert other >= {"linux-aarch64-cuda130", "windows-x86_64-cuda130"}
    # the CPU cells of every platform are cross-built here with zig
    assert not other & {"linux-aarch64-cpu", "windows-x86_64-cpu", "macos-arm64-cpu"}


def test_installed_wheel_lists_every_library_with_its_archs(full: dict[str, Any]) -> None:
    matrix = load_matrix(MATRIX)
    python = _venv(full["tmp"] / "venv-fat")
    _pip(python, full["dist"] / "kbit-0.1.0-py3-none-manylinux_2_28_x86_64.whl")
    doc = _kbit_json(python)
    libs = {lib["file"]: lib for lib in doc["libraries"]}
    (wheel,) = [w for w in full["record"]["wheels"] if w["platform"] == "linux-x86_64"]
    assert set(libs) == {lib["file"] for lib in wheel["libraries"]}
    for spec in matrix.cuda:
        name = f"libkbit_{spec.variant}.so"
        if name in libs:
            assert libs[name]["cuda"] == str(spec.version)
            assert libs[name]["sass"] == list(spec.sass)
            assert libs[name]["ptx"] == list(spec.ptx)
    assert libs["libkbit_cpu.so"]["status"] == "selected"  # no GPU here: CPU, with the reason


def test_windows_wheel_is_cross_built_and_repaired_by_delvewheel(full: dict[str, Any]) -> None:
    (wheel,) = [w for w in full["record"]["wheels"] if w["platform"] == "windows-x86_64"]
    assert wheel["file"] == "kbit-0.1.0-py3-none-win_amd64.whl"
    assert wheel["repair"] == "delvewheel"
    assert [lib["file"] for lib in wheel["libraries"]] == ["libkbit_cpu.dll"]
    import zipfile

    with zipfile.ZipFile(full["dist"] / wheel["file"]) as zf:
        dll = zf.read("kbit/_lib/libkbit_cpu.dll")
    assert dll[:2] == b"MZ"  # a real PE file


def test_pip_installs_the_windows_wheel_for_win_amd64(full: dict[str, Any], tmp_path: Path) -> None:
    """pip itself (not our reader) accepts the Windows wheel: its tags, METADATA and RECORD.

    A Windows interpreter cannot run here, so pip installs for win_amd64 into a fresh target folder
    (the wine test in tests/kbit runs the DLL itself)."""
    import csv
    import zipfile

    (entry,) = [w for w in full["record"]["wheels"] if w["platform"] == "windows-x86_64"]
    wheel = full["dist"] / entry["file"]
    target = tmp_path / "site-packages"
    env = {**isolated_env(), "PIP_CONFIG_FILE": "/dev/null", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--only-binary=:all:", "--platform",
         "win_amd64", "--target", str(target), str(wheel)],
        check=True,
        env=env,
    )  # fmt: skip
    assert (target / "kbit" / "_lib" / "libkbit_cpu.dll").read_bytes()[:2] == b"MZ"
    assert json.loads((target / "kbit" / "_lib" / "libkbit_cpu.json").read_text())["backend"] == "cpu"
    with zipfile.ZipFile(wheel) as zf:
        (record_name,) = [n for n in zf.namelist() if n.endswith(".dist-info/RECORD")]
        recorded = {row[0] for row in csv.reader(zf.read(record_name).decode().splitlines())}
    installed = {p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file()}
    assert {n for n in recorded if not n.endswith("RECORD")} <= installed | {"kbit-0.1.0.dist-info/INSTALLER"}


def test_forced_split_installs_together_and_the_loader_finds_all(full: dict[str, Any]) -> None:
    matrix = load_matrix(MATRIX)
    results = [r for r in read_results(full["work"]) if r.ok and r.platform == "linux-x86_64" and r.wheel]
    cells = [CellWheel(r.cell_id, r.platform, r.variant, Path(r.wheel or "")) for r in results]
    # a limit every per-major piece fits under but the fat wheel does not
    per_major: dict[str, int] = {}
    for c in cells:
        per_major[c.variant[4:-1] or "cpu"] = per_major.get(c.variant[4:-1] or "cpu", 0) + c.path.stat().st_size
    limit = int(max(per_major.values()) * 1.25)
    assert limit < sum(per_major.values())
    tiny = replace(matrix, packaging=replace(matrix.packaging, max_file_size=limit))
    finals = assemble_all(tiny, cells, full["tmp"] / "dist-split")
    names = sorted(f.path.name for f in finals)
    majors = sorted({r.variant[4:-1] for r in results if r.variant != "cpu"})
    assert names == sorted(
        ["kbit-0.1.0-py3-none-manylinux_2_28_x86_64.whl"]
        + [f"kbit_cu{m}-0.1.0-py3-none-manylinux_2_28_x86_64.whl" for m in majors]
    )
    python = _venv(full["tmp"] / "venv-split")
    _pip(python, *(f.path for f in finals))
    doc = _kbit_json(python)
    found = {lib["file"]: lib["source"] for lib in doc["libraries"]}
    assert set(found) == {f"libkbit_{r.variant}.so" for r in results}
    for m in majors:
        assert any(src.startswith(f"kbit_cu{m} (kbit-cu{m} 0.1.0)") for src in found.values()), found


def test_second_build_rebuilds_nothing(full: dict[str, Any]) -> None:
    start = time.monotonic()
    assert _wm("build", "--matrix", str(MATRIX), "--work", str(full["work"]), "-q") == 0
    seconds = time.monotonic() - start
    statuses = {r.cell_id: r.status for r in read_results(full["work"])}
    assert set(statuses.values()) <= {"cached", "skipped"}, statuses
    assert seconds < 30, f"a no-op build took {seconds:.1f} s"


def test_two_clean_builds_are_byte_identical(full: dict[str, Any]) -> None:
    work2, dist2 = full["tmp"] / "work2", full["tmp"] / "dist2"
    assert _wm("build", "--matrix", str(MATRIX), "--work", str(work2), "--no-cache", "-q") == 0
    assert _wm("assemble", "--matrix", str(MATRIX), "--work", str(work2), "--dist", str(dist2), "-q") == 0
    first = sorted(p.name for p in full["dist"].glob("*.whl"))
    assert first == sorted(p.name for p in dist2.glob("*.whl"))
    for name in first:
        assert (full["dist"] / name).read_bytes() == (dist2 / name).read_bytes(), name
    shutil.rmtree(work2)
