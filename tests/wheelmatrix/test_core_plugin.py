"""The core + plugin layout ([packaging] split = "core-plugin"): config, the oracle, assemble's split.

Unit tests over the extension test project's matrix (tests/projects/qext) switched to core-plugin,
with injected hosts and cell wheels written here (their binaries are stand-ins: assemble reads names
and bytes, never loads them). The real build of the layout is tests/wheelmatrix/test_core_plugin_e2e.py.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import replace
from pathlib import Path

import pytest

from wheelmatrix import config
from wheelmatrix.errors import MatrixError, PackageError
from wheelmatrix.plan import expected_wheels, make_plan
from wheelmatrix.stages.assemble import CoreFilesDiffer, merge_cores, split_core_plugin
from wheelmatrix.stages.check import _context, _Target, static_checks
from wheelmatrix.wheelfile import WheelContents, read_wheel, write_wheel
from wm_support import REPO, linux_host

QEXT = REPO / "tests" / "projects" / "qext" / "matrix.toml"
CORE_PLUGIN = '[packaging]\nsplit = "core-plugin"\ncore-files = ["libqext_kernels_*.so*"]'


def _matrix(tmp_path: Path, packaging: str = CORE_PLUGIN, *, old: str = "", new: str = "") -> Path:
    text = QEXT.read_text()
    head = text.index("[packaging]")
    end = text.index("[check]")
    text = text[:head] + packaging + "\n\n" + text[end:]
    text = text.replace('library-dir = "."', f'library-dir = "."\nsource = "{QEXT.parent}"')  # its version
    if old:
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "matrix.toml"
    path.write_text(text)
    return path


def test_core_plugin_matrix_resolves_with_defaults(tmp_path: Path) -> None:
    m = config.load_matrix(_matrix(tmp_path, '[packaging]\nsplit = "core-plugin"'))
    assert m.packaging.split == "core-plugin" and m.packaging.per_distribution
    assert m.packaging.core_files == ("lib*.so*", "*.dll", "*.dylib")
    assert m.packaging.core("qext-cuda13x") == "qext-cuda13x-core"
    m = config.load_matrix(_matrix(tmp_path, CORE_PLUGIN + '\ncore-name = "{dist}-pjrt"'))
    assert m.packaging.core("qext") == "qext-pjrt" and m.packaging.core_files == ("libqext_kernels_*.so*",)


@pytest.mark.parametrize(
    ("packaging", "edit", "key", "problem"),
    [
        (CORE_PLUGIN, ('python-api = "abi3"\nabi3-floor = "3.12"', ""), "packaging.split",
         'python-api = "none" builds no per-Python part'),
        (CORE_PLUGIN + '\ncore-name = "core-of-it"', ("", ""), "packaging.core-name", "does not name the core after"),
        (CORE_PLUGIN + '\ncore-name = "{dist}"', ("", ""), "packaging.core-name", "does not name the core after"),
        (CORE_PLUGIN + '\ncore-name = "{name}-core"', ("", ""), "packaging.core-name", "{name} is not a placeholder"),
        (CORE_PLUGIN + '\ncore-name = "{dist} core"', ("", ""), "packaging.core-name", "does not make a distribution"),
        ('[packaging]\nsplit = "core-plugin"\ncore-files = []', ("", ""), "packaging.core-files", "is empty"),
        ('[packaging]\nsplit = "core-plugin"\ncore-files = ["../lib*.so"]', ("", ""), "packaging.core-files[0]",
         "is not a glob inside the import package"),
    ],
)  # fmt: skip
def test_core_plugin_errors_name_key_and_fix(
    tmp_path: Path, packaging: str, edit: tuple[str, str], key: str, problem: str
) -> None:
    with pytest.raises(MatrixError) as err:
        config.load_matrix(_matrix(tmp_path, packaging, old=edit[0], new=edit[1]))
    assert err.value.key == key
    assert problem in err.value.problem
    assert err.value.fix


def test_oracle_lists_one_py3_none_core_per_distribution_and_platform_and_a_plugin_per_tag(tmp_path: Path) -> None:
    m = config.load_matrix(_matrix(tmp_path))
    host = replace(linux_host(), pythons=(("3.10", "/p/3.10"), ("3.11", "/p/3.11"), ("3.12", "/p/3.12")))
    plan = make_plan(m, host)
    wheels = expected_wheels(plan)
    assert wheels is not None
    names = [w.filename for w in wheels]
    tail = "0.1.0-{}-manylinux_2_28_x86_64.whl"
    plugins = [f"{d}-{tail.format(t)}" for d in ("qext", "qext_cuda13x")
               for t in ("cp310-cp310", "cp311-cp311", "cp312-abi3", "cp39-cp39")]  # fmt: skip
    cores = [f"{d}-{tail.format('py3-none')}" for d in ("qext_core", "qext_cuda13x_core")]
    assert names == sorted(plugins + cores)
    core = next(w for w in wheels if w.distribution == "qext-cuda13x-core")
    # the core is made from every cell of its distribution; the cp39 cell needs another runner here
    assert core.cells == tuple(c.id for c in plan.cells if c.variant == "cuda130")
    assert not core.buildable
    assert [w.buildable for w in wheels if w.distribution == "qext"] == [True, True, True, False]


def _repaired(
    folder: Path, dist: str, tag: str, module: str, kernels: bytes, *, vendored: bool = False
) -> WheelContents:
    """A repaired cell wheel of ``dist`` as assemble_standalone and the repair leave it."""
    escaped = dist.replace("-", "_")
    info = f"{escaped}-0.1.0.dist-info"
    variant = "cuda130" if "cuda" in dist else "cpu"
    contents = WheelContents(f"{escaped}-0.1.0-{tag}-manylinux_2_28_x86_64.whl", {}, {})
    contents.put("qext/__init__.py", b"# the package\n")
    contents.put(f"qext/{module}", b"\x7fELF module of " + tag.encode())
    contents.put(f"qext/{module.rsplit('.', 1)[0]}.json", json.dumps(
        {"cuda": "13.0" if variant != "cpu" else None, "flags": {"components": ["cublas"] if variant != "cpu" else []}}
    ).encode())  # fmt: skip
    contents.put(f"qext/libqext_kernels_{variant}.so", kernels, 0o755)
    if vendored:
        contents.put(f"{escaped}.libs/libgomp-a34b3233.so.1.0.0", b"\x7fELF vendored")
    contents.put(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\nRequires-Python: "
                 ">=3.9\n\nreadme\n".encode())  # fmt: skip
    contents.put(
        f"{info}/WHEEL", f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: {tag}-manylinux_2_28_x86_64\n".encode()
    )
    return read_wheel(write_wheel(contents, folder / tag))


@pytest.mark.parametrize("extra", ["", "ctk"])
def test_split_moves_the_kernels_and_nvidia_requirements_to_the_core(tmp_path: Path, extra: str) -> None:
    text = CORE_PLUGIN + (f'\ncuda-extra = "{extra}"' if extra else "")
    m = config.load_matrix(_matrix(tmp_path, text))
    wheel = _repaired(
        tmp_path, "qext-cuda13x", "cp312-abi3", "_qext_cuda130.abi3.so", b"\x7fELF kernels", vendored=True
    )
    split = split_core_plugin(m, wheel, "linux-x86_64-cuda130-cp312-abi3", "_qext_cuda130.abi3.so")
    core, plugin = split.core, split.plugin
    assert core.filename == "qext_cuda13x_core-0.1.0-py3-none-manylinux_2_28_x86_64.whl"
    assert plugin.filename == wheel.filename
    assert split.core_files == ("qext/libqext_kernels_cuda130.so", "qext_cuda13x.libs/libgomp-a34b3233.so.1.0.0")
    assert core.files["qext/libqext_kernels_cuda130.so"] == b"\x7fELF kernels"
    assert core.modes["qext/libqext_kernels_cuda130.so"] == 0o755
    assert not set(split.core_files) & set(plugin.files), "no file in both"
    assert "qext/_qext_cuda130.abi3.so" in plugin.files and "qext/__init__.py" in plugin.files
    core_meta = core.text(f"{core.dist_info}/METADATA")
    plugin_meta = plugin.text(f"{plugin.dist_info}/METADATA")
    assert "Name: qext-cuda13x-core\nVersion: 0.1.0\n" in core_meta
    assert "Requires-Python: >=3.9" in core_meta
    assert "Tag: py3-none-manylinux_2_28_x86_64\n" in core.text(f"{core.dist_info}/WHEEL")
    assert "Requires-Dist: qext-cuda13x-core==0.1.0\n" in plugin_meta and plugin_meta.endswith("\n\nreadme\n")
    assert "nvidia" not in plugin_meta
    if extra:
        assert 'Provides-Extra: ctk\nRequires-Dist: nvidia-cublas==13.*; extra == "ctk"' in core_meta
        assert 'Requires-Dist: qext-cuda13x-core[ctk]==0.1.0; extra == "ctk"' in plugin_meta
    else:
        assert "Requires-Dist: nvidia-cublas==13.*" in core_meta and "Provides-Extra" not in core_meta
    # the CPU distribution's core declares nothing of NVIDIA's
    cpu = _repaired(tmp_path, "qext", "cp311-cp311", "_qext_cpu.cpython-311-x86_64-linux-gnu.so", b"\x7fELF cpu")
    cpu_split = split_core_plugin(m, cpu, "linux-x86_64-cpu-cp311", "_qext_cpu.cpython-311-x86_64-linux-gnu.so")
    assert cpu_split.core.filename == "qext_core-0.1.0-py3-none-manylinux_2_28_x86_64.whl"
    assert "Requires-Dist" not in cpu_split.core.text("qext_core-0.1.0.dist-info/METADATA")


def test_cores_of_every_cell_must_be_byte_identical(tmp_path: Path) -> None:
    m = config.load_matrix(_matrix(tmp_path))
    a = _repaired(
        tmp_path, "qext-cuda13x", "cp311-cp311", "_qext_cuda130.cpython-311-x86_64-linux-gnu.so", b"\x7fELF k"
    )
    b = _repaired(tmp_path, "qext-cuda13x", "cp312-abi3", "_qext_cuda130.abi3.so", b"\x7fELF k")
    sa = split_core_plugin(m, a, "c311", "_qext_cuda130.cpython-311-x86_64-linux-gnu.so")
    sb = split_core_plugin(m, b, "c312", "_qext_cuda130.abi3.so")
    assert merge_cores("linux-x86_64", [("c311", sa), ("c312", sb)]) is sa.core  # one core for both
    c = _repaired(tmp_path / "c", "qext-cuda13x", "cp312-abi3", "_qext_cuda130.abi3.so", b"\x7fELF k, other")
    sc = split_core_plugin(m, c, "c312", "_qext_cuda130.abi3.so")
    with pytest.raises(CoreFilesDiffer) as err:
        merge_cores("linux-x86_64", [("c311", sa), ("c312", sc)])
    message = err.value.message
    assert "qext/libqext_kernels_cuda130.so" in message and "c311" in message and "c312" in message
    assert hashlib.sha256(b"\x7fELF k").hexdigest() in message
    assert hashlib.sha256(b"\x7fELF k, other").hexdigest() in message
    assert err.value.fix and "core-files" in err.value.fix


def test_core_files_matching_nothing_or_the_module_are_refused(tmp_path: Path) -> None:
    m = config.load_matrix(_matrix(tmp_path, '[packaging]\nsplit = "core-plugin"\ncore-files = ["libother*.so"]'))
    wheel = _repaired(tmp_path, "qext-cuda13x", "cp312-abi3", "_qext_cuda130.abi3.so", b"\x7fELF k")
    with pytest.raises(PackageError) as err:
        split_core_plugin(m, wheel, "cell", "_qext_cuda130.abi3.so")
    assert "['libother*.so'] match no file" in err.value.message
    assert "qext/libqext_kernels_cuda130.so" in err.value.message and "qext/_qext_cuda130.abi3.so" in err.value.message
    m = config.load_matrix(_matrix(tmp_path, '[packaging]\nsplit = "core-plugin"\ncore-files = ["*.so"]'))
    with pytest.raises(PackageError) as err:
        split_core_plugin(m, wheel, "cell", "_qext_cuda130.abi3.so")
    assert "match the extension module _qext_cuda130.abi3.so" in err.value.message


def test_check_names_a_plugin_without_its_exact_core_requirement(tmp_path: Path) -> None:
    """WM805: the plugin as assemble writes it passes; one whose requirement was dropped or loosened fails."""
    m = config.load_matrix(_matrix(tmp_path))
    wheel = _repaired(tmp_path, "qext-cuda13x", "cp312-abi3", "_qext_cuda130.abi3.so", b"\x7fELF k")
    split = split_core_plugin(m, wheel, "cell", "_qext_cuda130.abi3.so")
    ctx = _context(m, None)

    def codes(contents: WheelContents, folder: str) -> list[str]:
        path = write_wheel(contents, tmp_path / folder)
        st = static_checks(ctx, _Target(path, None), hashlib.sha256(path.read_bytes()).hexdigest())
        return [f.code for f in st.findings if f.code == "WM805"]

    assert codes(split.plugin, "good") == []
    assert codes(split.core, "core") == []  # a core requires no core
    meta = f"{split.plugin.dist_info}/METADATA"
    for folder, replacement in (("none", ""), ("loose", "Requires-Dist: qext-cuda13x-core>=0.1.0\n"),
                                ("other", "Requires-Dist: qext-cuda13x-core==0.0.9\n")):  # fmt: skip
        bad = WheelContents(split.plugin.filename, dict(split.plugin.files), dict(split.plugin.modes))
        bad.put(
            meta, split.plugin.text(meta).replace("Requires-Dist: qext-cuda13x-core==0.1.0\n", replacement).encode()
        )
        assert codes(bad, folder) == ["WM805"], folder


def _cell(folder: Path, variant: str, tag: str, kernels: bytes) -> Path:
    """A cell wheel as the cell stage leaves it: the module, its manifest, the kernels library beside it."""
    module = f"_qext_{variant}." + ("abi3.so" if tag.endswith("abi3") else "cpython-311-x86_64-linux-gnu.so")
    contents = WheelContents(f"qext-0.1.0-{tag}-linux_x86_64.whl", {}, {})
    contents.put("qext/__init__.py", b"")
    contents.put(f"qext/{module}", b"\x7fELF module " + tag.encode())
    components = ["cublas"] if variant != "cpu" else []
    manifest = {"cuda": "13.0" if variant != "cpu" else None, "flags": {"components": components}}
    contents.put(f"qext/{module.rsplit('.', 1)[0]}.json", json.dumps(manifest).encode())
    contents.put(f"qext/libqext_kernels_{variant}.so", kernels)
    contents.put("qext-0.1.0.dist-info/METADATA", b"Metadata-Version: 2.1\nName: qext\nVersion: 0.1.0\n\nreadme\n")
    contents.put("qext-0.1.0.dist-info/WHEEL", f"Wheel-Version: 1.0\nRoot-Is-Purelib: false\nTag: {tag}-x\n".encode())
    return write_wheel(contents, folder / variant / tag)


def test_assemble_all_writes_one_core_per_distribution_and_a_plugin_per_cell(tmp_path: Path) -> None:
    """The whole assemble stage without a repair tool (repair = "none" copies the wheels): what reaches
    dist/, and a core over max-file-size refused by name."""
    from wheelmatrix.stages.assemble import CellWheel, WheelTooLarge, assemble_all

    m = config.load_matrix(_matrix(tmp_path))
    m = replace(m, platforms=tuple(replace(p, repair="none", policy="linux_x86_64") for p in m.platforms))
    cells = [
        CellWheel(f"linux-x86_64-{v}-{t}", "linux-x86_64", v, _cell(tmp_path / "cells", v, t, b"\x7fELF " + v.encode()))
        for v in ("cpu", "cuda130")
        for t in ("cp311-cp311", "cp312-abi3")
    ]
    finals = assemble_all(m, cells, tmp_path / "dist", repair=False)
    by_name = {f.path.name: f for f in finals}
    assert sorted(by_name) == sorted(p.name for p in (tmp_path / "dist").glob("*.whl"))
    core = by_name["qext_cuda13x_core-0.1.0-py3-none-linux_x86_64.whl"]
    assert core.layout == "core-plugin" and core.libraries == ("libqext_kernels_cuda130.so",)
    assert core.cells == ("linux-x86_64-cuda130-cp311-cp311", "linux-x86_64-cuda130-cp312-abi3")
    assert sorted(by_name) == sorted([
        "qext-0.1.0-cp311-cp311-linux_x86_64.whl", "qext-0.1.0-cp312-abi3-linux_x86_64.whl",
        "qext_core-0.1.0-py3-none-linux_x86_64.whl", "qext_cuda13x-0.1.0-cp311-cp311-linux_x86_64.whl",
        "qext_cuda13x-0.1.0-cp312-abi3-linux_x86_64.whl", "qext_cuda13x_core-0.1.0-py3-none-linux_x86_64.whl",
    ])  # fmt: skip
    plugin = read_wheel(by_name["qext_cuda13x-0.1.0-cp312-abi3-linux_x86_64.whl"].path)
    assert "Requires-Dist: qext-cuda13x-core==0.1.0\n" in plugin.text(f"{plugin.dist_info}/METADATA")
    # the plugins fit, the core does not: it is refused by name (the whole cell wheel is never sized)
    small = replace(m, packaging=replace(m.packaging, max_file_size=4000))
    big = random.Random(17).randbytes(8000)
    cells = [replace(c, path=_cell(tmp_path / "big", c.variant, c.cell_id.split("-", 3)[3], big)) if c.variant == "cpu"
             else c for c in cells]  # fmt: skip
    with pytest.raises(WheelTooLarge) as err:
        assemble_all(small, cells, tmp_path / "dist2", repair=False)
    assert err.value.message.startswith("qext_core-0.1.0-py3-none-linux_x86_64.whl would be")
    assert "qext/libqext_kernels_cpu.so" in err.value.message


def test_the_cell_check_reads_the_archs_of_the_library_a_module_links() -> None:
    """finish: a module holding no CUDA code is read with the archs of the in-wheel library it links
    (the core's kernels library); a module with CUDA code of its own keeps its own."""
    from wheelmatrix.binaries import BinaryInfo
    from wheelmatrix.stages.finish import with_linked_code

    module = BinaryInfo("elf", "x86_64", needed=("libqext_kernels_cuda130.so", "libc.so.6"))
    kernels = BinaryInfo("elf", "x86_64", needed=("libcublas.so.13",), sass=(75, 90), ptx=(90,))
    read = with_linked_code(module, {"qext/libqext_kernels_cuda130.so": kernels})
    assert (read.sass, read.ptx, read.needed) == ((75, 90), (90,), module.needed)
    own = BinaryInfo("elf", "x86_64", sass=(80,))
    assert with_linked_code(own, {"qext/libqext_kernels_cuda130.so": kernels}) is own
    assert not with_linked_code(module, {}).has_cuda_code  # nothing linked: still a CPU library (the cell fails)
