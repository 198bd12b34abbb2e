"""The config stage on valid input: values, defaults, conversions."""

from __future__ import annotations

from pathlib import Path

import pytest

from wheelmatrix import config
from wheelmatrix.errors import MatrixError
from wheelmatrix.model import CudaVersion, Toolchain
from wm_support import MATRICES, REPO


def test_kbit_matrix_resolves() -> None:
    m = config.load_matrix(REPO / "matrix.toml")
    assert m.project.name == "kbit"
    assert m.project.library_stem("cuda124") == "kbit_cuda124"
    assert [str(c.version) for c in m.cuda] == ["11.8", "12.4", "12.8", "13.0", "13.2"]
    assert m.cuda_spec("11.8").toolchain == Toolchain("debian", "bookworm", None)
    assert m.cuda_spec("12.8").toolchain.source == "system"
    assert m.cuda_spec("13.0").sass == (75, 80, 86, 89, 90, 100, 120)
    assert m.cuda_spec("13.0").ptx == (120,)
    assert m.cuda_spec("11.8").facts.host_gcc_max == 11
    assert m.python == ("3.9", "3.10", "3.11", "3.12", "3.13")
    assert [p.name for p in m.platforms] == ["linux-x86_64", "linux-aarch64", "windows-x86_64", "macos-arm64"]
    linux = m.platform("linux-x86_64")
    assert linux.wheel_tag == "manylinux_2_28_x86_64"
    assert "libcuda.so*" in linux.never_vendor
    assert m.platform("windows-x86_64").repair == "delvewheel"
    assert m.packaging.max_file_size == 100 * 2**20
    assert [s.name for s in m.publish] == ["testpypi", "pypi"]


def test_defaults_fill_in(tmp_path: Path) -> None:
    m = config.load_matrix(MATRICES / "good" / "minimal.toml")
    assert m.project.library_dir == "."  # the package folder itself
    assert m.project.library_folder == f"{m.project.import_package}/"
    assert m.build.backend is None
    assert m.build.archs_variable == "CMAKE_CUDA_ARCHITECTURES"
    assert m.packaging.cuda_libraries == "depend"
    assert m.packaging.split == "auto"
    assert m.packaging.project_quota == 10 * 2**30
    assert [s.name for s in m.publish] == ["testpypi", "pypi"]
    assert m.platform("linux-x86_64").policy == "manylinux_2_28"
    assert m.rules == ()


@pytest.mark.parametrize(
    ("text", "size"),
    [("100 MiB", 100 * 2**20), ("100 MB", 10**8), ("1.5GiB", 3 * 2**29), ("512", 512), ("7 B", 7)],
)
def test_sizes(text: str, size: int, tmp_path: Path) -> None:
    src = (MATRICES / "good" / "minimal.toml").read_text() + f'\n[packaging]\nmax-file-size = "{text}"\n'
    (tmp_path / "m.toml").write_text(src)
    assert config.load_matrix(tmp_path / "m.toml").packaging.max_file_size == size


def test_integer_size(tmp_path: Path) -> None:
    src = (MATRICES / "good" / "minimal.toml").read_text() + "\n[packaging]\nmax-file-size = 4096\n"
    (tmp_path / "m.toml").write_text(src)
    assert config.load_matrix(tmp_path / "m.toml").packaging.max_file_size == 4096


def test_system_path_is_relative_to_the_matrix(tmp_path: Path) -> None:
    src = (
        (MATRICES / "good" / "minimal.toml")
        .read_text()
        .replace('{ source = "debian", suite = "trixie" }', '{ source = "system", path = "cuda" }')
    )
    (tmp_path / "m.toml").write_text(src)
    assert config.load_matrix(tmp_path / "m.toml").cuda[0].toolchain.path == tmp_path / "cuda"


@pytest.mark.parametrize(
    ("text", "ok"), [("12.4", True), ("13.0", True), ("12", False), ("12.04", False), ("a.b", False), ("1.2.3", False)]
)
def test_cuda_version_parse(text: str, ok: bool) -> None:
    if ok:
        v = CudaVersion.parse(text)
        assert str(v) == text
        assert v.api == v.major * 1000 + v.minor * 10
    else:
        with pytest.raises(ValueError):
            CudaVersion.parse(text)


def test_cuda_version_order_and_tags() -> None:
    assert sorted([CudaVersion(13, 0), CudaVersion(11, 8), CudaVersion(12, 10), CudaVersion(12, 4)]) == [
        CudaVersion(11, 8),
        CudaVersion(12, 4),
        CudaVersion(12, 10),
        CudaVersion(13, 0),
    ]
    assert CudaVersion(12, 4).variant == "cuda124"


def test_key_paths() -> None:
    assert config.key_path(["cuda", "13.0", "sass", 2]) == 'cuda."13.0".sass[2]'
    assert config.key_path(["platform", "linux-x86_64", "policy"]) == "platform.linux-x86_64.policy"
    assert config.key_path(["rules", 0]) == "rules[0]"


def test_matrix_error_attributes() -> None:
    with pytest.raises(MatrixError) as exc:
        config.parse("[project]\nnam = 1\n", "m.toml")
    assert exc.value.file == "m.toml"
    assert exc.value.key == "project.nam"
    assert exc.value.fix is not None and 'did you mean "name"?' in exc.value.fix


CONTRACT = """
[project]
name = "fancy-kernels"
import-package = "fancy"
library = "fancy_{variant}"
library-dir = "."

[build]
backend = { variable = "COMPUTE_BACKEND", cpu = "cpu", cuda = "cuda" }
defines = { FANCY_VERSION_TAG = "{variant}-{platform}" }
cuda-defines = { FANCY_CUDA = "{cuda_major}.x" }

[matrix]
platforms = ["linux-x86_64"]
cuda = ["11.7", "13.0"]
python = ["3.12"]

[cuda."11.7"]
sass = [80]
ptx = [80]
toolchain = { source = "system", path = "/opt/cuda-11.7" }
facts = { archs = [35, 50, 60, 70, 75, 80, 86], host-gcc-max = 11, driver-api = 11070, min-driver-linux = "515.43.04", min-driver-windows = "516.01" }

[cuda."13.0"]
sass = [80, 90]
ptx = [90]
toolchain = { source = "pypi" }
components = ["cublas"]
defines = { FANCY_FAST = "ON" }
"""


def test_the_project_contract_resolves_into_each_cells_defines(tmp_path: Path) -> None:
    from wheelmatrix.plan import Cell, build_spec

    path = tmp_path / "matrix.toml"
    path.write_text(CONTRACT)
    m = config.load_matrix(path)
    assert m.cuda_spec("11.7").facts.driver_api == 11070  # a version the toolkit does not know, declared
    assert m.cuda_spec("11.7").facts.runtime_soname == "libcudart.so.11.0"  # the major's facts still apply
    assert m.cuda_spec("13.0").component_names == ("cublas",)
    v = m.cuda_spec("13.0").version
    cell = Cell("linux-x86_64", "cuda130", v, (80, 90), (90,), m.cuda_spec("13.0").toolchain, True, "here")
    spec = build_spec(m, cell)
    assert dict(spec.defines) == {
        "COMPUTE_BACKEND": "cuda",
        "CMAKE_CUDA_ARCHITECTURES": "80-real;90-real;90-virtual",
        "FANCY_VERSION_TAG": "cuda130-linux-x86_64",
        "FANCY_CUDA": "13.x",
        "FANCY_FAST": "ON",
    }
    assert spec.library == "libfancy_cuda130.so"
    assert spec.manifest == "libfancy_cuda130.json"
    cpu = build_spec(m, Cell("linux-x86_64", "cpu", None, (), (), None, True, "here"))
    assert dict(cpu.defines) == {"COMPUTE_BACKEND": "cpu", "FANCY_VERSION_TAG": "cpu-linux-x86_64"}
    assert cpu.library == "libfancy_cpu.so"
