"""repair: auditwheel and delvewheel run for real over wheels with real compiled libraries."""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from build_fixtures.cellwheels import (
    HERE,
    fresh_venv,
    isolated_env,
    make_cell_wheel,
    make_matrix,
    pip_install,
)
from wheelmatrix.stages.assemble import assemble_all
from wheelmatrix.stages.repair import PolicyViolation, rate
from wheelmatrix.wheelfile import read_wheel, write_wheel


def _names(path: Path) -> list[str]:
    with zipfile.ZipFile(path) as zf:
        return zf.namelist()


def test_rated_newer_than_policy_fails_naming_the_symbols(tmp_path: Path) -> None:
    # gcc on this glibc 2.36 host binds pthread_create to GLIBC_2.34: auditwheel rates it 2_34
    cells = [make_cell_wheel(tmp_path, "cpu", threads=True)]
    dist = tmp_path / "dist"
    with pytest.raises(PolicyViolation) as err:
        assemble_all(make_matrix(tmp_path, policy="manylinux_2_28"), cells, dist)
    text = err.value.render()
    assert "manylinux_2_34_x86_64" in text  # auditwheel's real rating
    assert "pthread_create@GLIBC_2.34 in kbit/_lib/libkbit_cpu.so" in text
    assert "manylinux_2_28" in text and "zig" in text
    assert not list(dist.glob("*.whl"))  # nothing written


def test_same_wheel_passes_a_policy_it_meets(tmp_path: Path) -> None:
    cells = [make_cell_wheel(tmp_path, "cpu", threads=True)]
    (final,) = assemble_all(make_matrix(tmp_path, policy="manylinux_2_34"), cells, tmp_path / "dist")
    assert final.path.name == "kbit-0.1.0-py3-none-manylinux_2_34_x86_64.whl"
    assert final.rated == "manylinux_2_34_x86_64"


def test_within_policy_is_repaired_tagged_and_installs(tmp_path: Path) -> None:
    cells = [make_cell_wheel(tmp_path, "cpu"), make_cell_wheel(tmp_path, "cuda124")]
    (final,) = assemble_all(make_matrix(tmp_path, policy="manylinux_2_28"), cells, tmp_path / "dist")
    assert final.path.name == "kbit-0.1.0-py3-none-manylinux_2_28_x86_64.whl"
    assert final.tag == "manylinux_2_28_x86_64"
    rating = rate(final.path)  # rated again, independently
    assert rating.overall_tag in {"manylinux_2_5_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64"}
    assert final.libraries == ("libkbit_cpu.so", "libkbit_cuda124.so")
    python = fresh_venv(tmp_path / "venv")
    pip_install(python, final.path)
    out = json.loads(
        subprocess.run(
            [str(python), "-m", "kbit"], check=True, capture_output=True, text=True, env=isolated_env()
        ).stdout
    )
    assert [lib["library"] for lib in out["libraries"]] == ["libkbit_cpu.so", "libkbit_cuda124.so"]


def _wheel_linking(tmp_path: Path, *needed: str) -> Path:
    """A cell wheel whose CUDA library links a stub driver (libcuda.so.1) and a real helper lib."""
    objs = tmp_path / "objs"
    objs.mkdir(parents=True, exist_ok=True)
    (objs / "stub.c").write_text(
        "int cuDriverGetVersion(int *v) { *v = 0; return 0; }\nint kbit_helper(void) { return 7; }\n"
    )
    libs = []
    for soname in needed:
        stub = objs / soname
        subprocess.run(
            ["gcc", "-shared", "-fPIC", f"-Wl,-soname,{soname}", "-o", str(stub), str(objs / "stub.c")], check=True
        )
        link = objs / (soname.split(".so")[0] + ".so")
        if not link.exists():
            link.symlink_to(stub.name)
        libs.append("-l" + soname.split(".so")[0].removeprefix("lib"))
    lib = objs / "libkbit_cuda124.so"
    subprocess.run(
        [
            "gcc",
            "-shared",
            "-fPIC",
            "-o",
            str(lib),
            str(HERE / "fakelib.c"),
            "-DKBIT_CUDA=12040",
            '-DKBIT_BACKEND="cuda"',
            f"-L{objs}",
            "-Wl,--no-as-needed",
            *libs,
        ],
        check=True,
    )
    cpu = make_cell_wheel(tmp_path, "cpu")
    contents = read_wheel(cpu.path)
    contents.files = {n: d for n, d in contents.files.items() if "libkbit_cpu" not in n}
    contents.put("kbit/_lib/libkbit_cuda124.so", lib.read_bytes())
    contents.put(
        "kbit/_lib/libkbit_cuda124.json",
        json.dumps({"schema": 1, "library": lib.name, "backend": "cuda", "cuda": "12.4"}).encode(),
    )
    return write_wheel(contents, tmp_path / "w")


def test_driver_is_never_vendored_but_other_dependencies_are(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from wheelmatrix.stages.assemble import CellWheel

    wheel = _wheel_linking(tmp_path, "libcuda.so.1", "libhelper.so.3")
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path / "objs"))  # auditwheel finds both here
    cpu = make_cell_wheel(tmp_path / "c", "cpu")
    cell = CellWheel("linux-x86_64-cuda124", "linux-x86_64", "cuda124", wheel)
    (final,) = assemble_all(make_matrix(tmp_path), [cpu, replace(cell)], tmp_path / "dist")
    names = _names(final.path)
    vendored = [n for n in names if n.startswith("kbit.libs/")]
    assert any("libhelper" in n for n in vendored), names
    assert not any("libcuda" in n for n in names if not n.startswith("kbit/_lib/libkbit_cuda")), names
    assert any("libhelper" in v for v in final.vendored)


def test_declared_dependency_library_is_excluded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from wheelmatrix.stages.assemble import CellWheel

    wheel = _wheel_linking(tmp_path, "libcudart.so.12")
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path / "objs"))
    cpu = make_cell_wheel(tmp_path / "c", "cpu")
    cell = CellWheel("linux-x86_64-cuda124", "linux-x86_64", "cuda124", wheel)
    (final,) = assemble_all(make_matrix(tmp_path), [cpu, cell], tmp_path / "dist", exclude=["libcudart.so.12"])
    assert not [n for n in _names(final.path) if n.startswith("kbit.libs/")]
    assert "libcudart.so.12" in final.excluded and "libcuda.so*" in final.excluded
    # the control: without the exclusion auditwheel vendors it
    (vendoring,) = assemble_all(make_matrix(tmp_path), [cpu, cell], tmp_path / "dist2")
    assert any("libcudart" in n for n in vendoring.vendored)


def test_windows_wheel_is_repaired_by_delvewheel(tmp_path: Path) -> None:
    # zig links winpthread statically for -pthread: delvewheel (it runs on Linux) finds every DLL
    # the library imports among the system's, and vendors nothing
    cells = [make_cell_wheel(tmp_path, "cpu", windows=True, threads=True)]
    (final,) = assemble_all(make_matrix(tmp_path), cells, tmp_path / "dist")
    assert final.path.name == "kbit-0.1.0-py3-none-win_amd64.whl"
    assert final.repair_tool == "delvewheel"
    names = _names(final.path)
    assert not any(".libs/" in n for n in names), names
    assert final.vendored == ()
    assert "kbit/_lib/libkbit_cpu.dll" in names
    read_wheel(final.path)  # RECORD consistent after our normalisation
