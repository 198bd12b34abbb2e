"""The project contract over a foreign-shaped project (tests/projects/qblas, shaped like
bitsandbytes): its cache key covers every tracked file, a cell whose build ignored the settings
fails naming them, and the manifest is the toolkit's, read from the binary."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from wheelmatrix.config import load_matrix
from wheelmatrix.host import detect
from wheelmatrix.model import CudaSpec, CudaVersion, Matrix
from wheelmatrix.plan import Cell, build_spec
from wheelmatrix.stages.cells import BuildOptions, build_cells, source_digest
from wm_support import REPO

QBLAS = REPO / "tests" / "projects" / "qblas"


def _git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of qblas in a git repository of its own (one commit)."""
    root = tmp_path / "qblas"
    shutil.copytree(QBLAS, root, ignore=shutil.ignore_patterns("build", "dist", "__pycache__"))
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "qblas")
    return root


def _matrix(root: Path, **project: object) -> Matrix:
    m = load_matrix(root / "matrix.toml")
    return replace(m, project=replace(m.project, **project)) if project else m


def _cpu(m: Matrix) -> Cell:
    return Cell("linux-x86_64", "cpu", None, (), (), None, True, "this host builds it")


def test_every_tracked_file_is_an_input_and_nothing_else(project: Path) -> None:
    m = _matrix(project)
    before = source_digest(m.project)
    (project / "build").mkdir()
    (project / "build" / "junk.o").write_bytes(b"ignored by .gitignore")
    assert source_digest(m.project) == before  # ignored files are not inputs
    loader = project / "qblas" / "_loader.py"
    loader.write_text(loader.read_text() + "\n# edited\n")  # a package file outside any build folder
    edited = source_digest(m.project)
    assert edited != before
    (project / "NOTES.txt").write_text("untracked but not ignored: it could reach the wheel")
    assert source_digest(m.project) != edited
    # what the matrix excludes leaves the key alone
    excluded = _matrix(project, exclude=("NOTES.txt",))
    assert source_digest(excluded.project) == edited
    # what it includes (an ignored generated file) joins it
    included = _matrix(project, include=("build/*.o",))
    assert source_digest(included.project) != source_digest(m.project)


@pytest.mark.slow
def test_a_cell_whose_build_ignored_the_backend_fails_naming_the_settings(project: Path, tmp_path: Path) -> None:
    # the matrix names a backend variable the project does not have: CMake builds its default
    # (the CPU library) and says the variable was not used
    m = _matrix(project)
    assert m.build.backend is not None
    m = replace(m, build=replace(m.build, backend=replace(m.build.backend, variable="QBLAS_COMPUTE")))
    spec_13 = m.cuda_spec("13.0")
    cell = Cell("linux-x86_64", "cuda130", CudaVersion(13, 0), (80, 90), (90,), spec_13.toolchain, True, "here")

    @dataclass(frozen=True)
    class NoNvcc:  # the project never enables CUDA, so no compiler is run
        identity: str = "none"
        cmake_args: tuple[str, ...] = ("-DCMAKE_CUDA_COMPILER=/nonexistent/nvcc",)
        env: dict[str, str] = field(default_factory=dict)

    def provide(spec: CudaSpec) -> NoNvcc:
        return NoNvcc()

    options = BuildOptions(work=tmp_path / "work", cache=None, timeout=600)
    (result,) = build_cells([build_spec(m, cell, detect(m))], options, provide)  # type: ignore[arg-type]
    assert result.status == "failed"
    assert "has no qblas/libqblas_cuda130.so: it holds libqblas_cpu.so" in result.reason
    assert "CMake reported these settings unused by the project: QBLAS_COMPUTE" in result.reason
    assert "[build] backend" in result.tail  # the fix line names the key to correct


@pytest.mark.slow
def test_the_manifest_is_read_from_the_binary(project: Path, tmp_path: Path) -> None:
    m = _matrix(project)
    options = BuildOptions(work=tmp_path / "work", cache=None, timeout=600)
    (result,) = build_cells([build_spec(m, _cpu(m), detect(m))], options)
    assert result.status == "built", result.tail
    assert result.wheel is not None
    with zipfile.ZipFile(result.wheel) as zf:
        names = zf.namelist()
        manifest = json.loads(zf.read("qblas/libqblas_cpu.json"))
    assert "qblas/libqblas_cpu.so" in names  # in the package folder itself
    assert manifest["backend"] == "cpu" and manifest["cuda"] is None
    assert manifest["sass"] == [] and manifest["ptx"] == []
    assert manifest["library"] == "libqblas_cpu.so" and manifest["version"] == "0.3.0"
    flags = manifest["flags"]
    assert flags["machine"] == "x86_64" and flags["format"] == "elf"
    # linked by zig for the manylinux_2_28 floor: nothing newer than glibc 2.28 is needed
    major, minor = map(int, flags["glibc"].split("."))
    assert (major, minor) <= (2, 28)


@pytest.mark.slow
def test_a_project_manifest_that_disagrees_with_the_binary_fails(project: Path, tmp_path: Path) -> None:
    cmake = project / "CMakeLists.txt"
    cmake.write_text(
        cmake.read_text()
        + '\nfile(WRITE "${CMAKE_BINARY_DIR}/libqblas_cpu.json" "{\\"backend\\": \\"cuda\\", \\"sass\\": [90]}")\n'
        + 'install(FILES "${CMAKE_BINARY_DIR}/libqblas_cpu.json" DESTINATION qblas)\n'
    )
    m = _matrix(project)
    options = BuildOptions(work=tmp_path / "work", cache=None, timeout=600)
    (result,) = build_cells([build_spec(m, _cpu(m), detect(m))], options)
    assert result.status == "failed"
    assert "the project's manifest libqblas_cpu.json disagrees with its library" in result.reason
    assert "backend: the project says 'cuda', the binary shows 'cpu'" in result.reason
    assert "sass: the project says [90], the binary shows []" in result.reason
