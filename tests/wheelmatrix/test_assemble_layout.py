"""assemble: fat vs split decisions from measured sizes, metadata, RECORD, installs for real."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from build_fixtures.cellwheels import (
    fresh_venv,
    isolated_env,
    make_cell_wheel,
    make_matrix,
    pip_install,
)
from wheelmatrix.stages.assemble import WheelTooLarge, assemble_all, assemble_platform
from wheelmatrix.wheelfile import read_wheel, write_wheel

MiB = 2**20


@pytest.fixture(scope="module")
def cells(tmp_path_factory: pytest.TempPathFactory) -> list:  # type: ignore[type-arg]
    tmp = tmp_path_factory.mktemp("cells")
    return [
        make_cell_wheel(tmp, "cpu"),
        make_cell_wheel(tmp, "cuda118", pad=300_000),
        make_cell_wheel(tmp, "cuda124", pad=300_000),
        make_cell_wheel(tmp, "cuda130", pad=300_000),
    ]


def test_fat_when_it_fits(cells: list, tmp_path: Path) -> None:  # type: ignore[type-arg]
    matrix = make_matrix(tmp_path)
    assembly = assemble_platform(matrix, "linux-x86_64", cells)
    assert assembly.layout == "fat"
    (wheel,) = assembly.wheels
    libs = sorted(n for n in wheel.contents.files if n.startswith("kbit/_lib/"))
    assert libs == sorted(
        f"kbit/_lib/libkbit_{v}.{ext}" for v in ("cpu", "cuda118", "cuda124", "cuda130") for ext in ("so", "json")
    )
    # the split layout's extras exist in the fat wheel too (empty), so kbit[cu12] always installs
    assert wheel.contents.metadata_header("Provides-Extra") == ["cu11", "cu12", "cu13"]
    assert wheel.contents.metadata_header("Requires-Dist") == []
    # measured: the size is the real length of the zip we would write
    path = write_wheel(wheel.contents, tmp_path)
    assert path.stat().st_size == wheel.size


def test_tiny_limit_forces_split(cells: list, tmp_path: Path) -> None:  # type: ignore[type-arg]
    matrix = make_matrix(tmp_path, limit=700_000)  # fat is ~1 MB (3 x 300 KB random), each piece fits
    assembly = assemble_platform(matrix, "linux-x86_64", cells)
    assert assembly.layout == "split"
    assert "over the" in assembly.reason
    names = [w.filename for w in assembly.wheels]
    assert names == [
        "kbit-0.1.0-py3-none-linux_x86_64.whl",
        "kbit_cu11-0.1.0-py3-none-linux_x86_64.whl",
        "kbit_cu12-0.1.0-py3-none-linux_x86_64.whl",
        "kbit_cu13-0.1.0-py3-none-linux_x86_64.whl",
    ]
    base, _cu11, cu12, cu13 = assembly.wheels
    assert sorted(n for n in base.contents.files if "_lib/" in n) == [
        "kbit/_lib/libkbit_cpu.json",
        "kbit/_lib/libkbit_cpu.so",
    ]
    assert base.contents.metadata_header("Provides-Extra") == ["cu11", "cu12", "cu13"]
    assert 'kbit-cu12==0.1.0; extra == "cu12"' in base.contents.metadata_header("Requires-Dist")
    assert cu12.contents.metadata_header("Requires-Dist") == ["kbit==0.1.0"]
    assert cu12.contents.metadata_header("Name") == ["kbit-cu12"]
    assert sorted(n for n in cu12.contents.files if "_lib/" in n) == [
        "kbit_cu12/_lib/libkbit_cuda124.json",
        "kbit_cu12/_lib/libkbit_cuda124.so",
    ]
    ep = cu13.contents.text("kbit_cu13-0.1.0.dist-info/entry_points.txt")
    assert ep == "[kbit.libraries]\ncu13 = kbit_cu13\n"
    assert all(w.size <= 700_000 for w in assembly.wheels)


def test_split_by_policy_even_when_small(cells: list, tmp_path: Path) -> None:  # type: ignore[type-arg]
    assembly = assemble_platform(make_matrix(tmp_path, split="per-cuda-major"), "linux-x86_64", cells)
    assert assembly.layout == "split" and len(assembly.wheels) == 4


def test_over_limit_names_libraries_and_options(cells: list, tmp_path: Path) -> None:  # type: ignore[type-arg]
    with pytest.raises(WheelTooLarge) as err:
        assemble_platform(make_matrix(tmp_path, limit=700_000, split="fat"), "linux-x86_64", cells)
    text = err.value.render()
    for lib in ("libkbit_cuda118.so", "libkbit_cuda124.so", "libkbit_cuda130.so", "libkbit_cpu.so"):
        assert lib in text
    assert "per-cuda-major" in text and "max-file-size" in text


def test_split_piece_over_limit_fails_and_writes_nothing(cells: list, tmp_path: Path) -> None:  # type: ignore[type-arg]
    dist = tmp_path / "dist"
    with pytest.raises(WheelTooLarge) as err:
        assemble_all(make_matrix(tmp_path, limit=200_000), cells, dist, repair=False)
    assert "already split" in err.value.render()
    assert "libkbit_cuda118.so" in err.value.message
    assert not list(dist.glob("*.whl"))


def test_record_is_correct_and_wheel_tool_accepts_it(cells: list, tmp_path: Path) -> None:  # type: ignore[type-arg]
    finals = assemble_all(make_matrix(tmp_path, limit=700_000), cells, tmp_path / "dist", repair=False)
    for final in finals:
        read_wheel(final.path)  # verifies every RECORD hash and that RECORD lists every file
        with zipfile.ZipFile(final.path) as zf:
            assert zf.testzip() is None
            names = zf.namelist()
        assert names[-1].endswith(".dist-info/RECORD")
        unpacked = tmp_path / "unpack" / final.path.name
        # the `wheel` tool verifies RECORD hashes on unpack and fails on a mismatch
        subprocess.run(
            [sys.executable, "-m", "wheel", "unpack", "-d", str(unpacked), str(final.path)],
            check=True,
            capture_output=True,
        )


def test_split_distributions_install_together_and_are_all_found(cells: list, tmp_path: Path) -> None:  # type: ignore[type-arg]
    finals = assemble_all(make_matrix(tmp_path, limit=700_000), cells, tmp_path / "dist", repair=False)
    python = fresh_venv(tmp_path / "venv")
    pip_install(python, *(f.path for f in finals))
    out = subprocess.run(
        [str(python), "-m", "kbit"], check=True, capture_output=True, text=True, env=isolated_env()
    ).stdout
    libs = json.loads(out)["libraries"]
    assert sorted((lib["library"], lib["loaded_backend"], lib["loaded_cuda"]) for lib in libs) == [
        ("libkbit_cpu.so", "cpu", 0),
        ("libkbit_cuda118.so", "cuda", 11080),
        ("libkbit_cuda124.so", "cuda", 12040),
        ("libkbit_cuda130.so", "cuda", 13000),
    ]
    assert {lib["source"] for lib in libs} == {
        "kbit",
        "kbit_cu11 (kbit-cu11)",
        "kbit_cu12 (kbit-cu12)",
        "kbit_cu13 (kbit-cu13)",
    }
    # the exact pins hold both ways: pip check sees a consistent set
    subprocess.run(
        [str(python), "-m", "pip", "check"], check=True, capture_output=True, env={"PIP_CONFIG_FILE": "/dev/null"}
    )


def test_cells_of_different_versions_are_refused(cells: list, tmp_path: Path) -> None:  # type: ignore[type-arg]
    from dataclasses import replace

    from wheelmatrix.errors import PackageError

    odd = read_wheel(cells[1].path)
    renamed = tmp_path / "odd"
    odd.filename = odd.filename.replace("0.1.0", "0.2.0")
    path = write_wheel(odd, renamed)
    with pytest.raises(PackageError, match="disagree on name or version"):
        assemble_platform(make_matrix(tmp_path), "linux-x86_64", [cells[0], replace(cells[1], path=path)])


def test_missing_cpu_cell_is_a_clear_error(cells: list, tmp_path: Path) -> None:  # type: ignore[type-arg]
    from wheelmatrix.errors import PackageError

    with pytest.raises(PackageError, match="no cpu cell wheel for linux-x86_64"):
        assemble_platform(make_matrix(tmp_path), "linux-x86_64", cells[1:])


def test_a_misnamed_library_is_refused(cells: list, tmp_path: Path) -> None:  # type: ignore[type-arg]
    """The loader looks for lib<stem>.so on Linux (data/platforms.toml): another name is an error."""
    from dataclasses import replace

    from wheelmatrix.errors import PackageError

    cpu = cells[0]
    contents = read_wheel(cpu.path)
    contents.put("kbit/_lib/libkbit_cpu.so.1", contents.files.pop("kbit/_lib/libkbit_cpu.so"))
    renamed = replace(cpu, path=write_wheel(contents, tmp_path / "renamed"))
    with pytest.raises(PackageError) as exc:
        assemble_platform(make_matrix(tmp_path), "linux-x86_64", [renamed, *cells[1:]])
    assert "has no kbit/_lib/libkbit_cpu.so" in exc.value.message
