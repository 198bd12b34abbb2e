"""The loader's choice over a table of cases.

:func:`kbit._select.select` is pure: the installed libraries, the driver probe and the environment
are data. The driver probe is MOCKED here (this machine has no GPU and no NVIDIA driver): each case
states the driver version and GPUs it stands for. The real probe through libcuda is exercised in
test_probe.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kbit._errors import OverrideError
from kbit._manifest import CudaVersion, LibraryInfo
from kbit._probe import DriverProbe, Gpu
from kbit._select import Hints, parse_cuda_override, ptx_covers, sass_covers, select

OLD_SASS = (50, 60, 70, 75, 80, 86, 89, 90)  # matrix.toml's 11.8 / 12.4 lists
SASS_128 = (70, 75, 80, 86, 89, 90, 100, 120)
SASS_13 = (75, 80, 86, 89, 90, 100, 120)
HINTS = Hints(
    install="pip install 'kbit[cu{major}]'",
    driver_floors={"11.8": "520.61.05", "12.4": "550.54.14", "13.0": "580.65.06"},
    major_floors={"12": "525.60.13"},
)


def lib(tag: str, sass: tuple[int, ...] = (), ptx: tuple[int, ...] = (), source: str = "kbit") -> LibraryInfo:
    """A library as its manifest describes it; ``tag`` is ``cpu`` or ``124`` style."""
    cuda = None if tag == "cpu" else CudaVersion(int(tag[:-1]), int(tag[-1]))
    name = f"libkbit_{'cpu' if cuda is None else 'cuda' + tag}.so"
    return LibraryInfo(
        path=Path("/site", source, name),
        manifest=Path("/site", source, name.replace(".so", ".json")),
        backend="cpu" if cuda is None else "cuda",
        cuda=cuda,
        sass=sass,
        ptx=ptx,
        version="0.1.0",
        runtime=None if cuda is None else "static",
        source=source,
    )


CPU = lib("cpu")
CU118 = lib("118", OLD_SASS, (90,))
CU124 = lib("124", OLD_SASS, (90,))
CU128 = lib("128", SASS_128, (120,))
CU130 = lib("130", SASS_13, (120,))
ALL = (CPU, CU118, CU124, CU128, CU130)


def gpus(*archs: int) -> tuple[Gpu, ...]:
    return tuple(Gpu(i, f"GPU-sm{a}", (a // 10, a % 10)) for i, a in enumerate(archs))


NO_DRIVER = DriverProbe(
    None, None, (), "no NVIDIA driver found: libcuda.so.1: cannot open shared object file: No such file or directory"
)


def driver(version: int, *archs: int) -> DriverProbe:
    return DriverProbe("libcuda.so.1", version, gpus(*archs))


@dataclass(frozen=True)
class Case:
    id: str
    libraries: tuple[LibraryInfo, ...]
    probe: DriverProbe
    chosen: str | None  # file name of the first candidate; None: no candidate
    reason: str  # substring of Selection.reason
    warning: str | None = None  # substring of the warning; None: no warning
    env: dict[str, str] = field(default_factory=dict)
    order: tuple[str, ...] | None = None  # the full candidate order, when it matters
    rejected: tuple[str, ...] = ()  # substrings, one per rejection that must be reported


CASES = [
    Case("no-driver-cpu-only", (CPU,), NO_DRIVER, "libkbit_cpu.so", "running on CPU: no NVIDIA driver found"),
    # CUDA libraries installed (a fat wheel) on a machine without NVIDIA hardware: CPU is right,
    # no warning (python -m kbit still shows why)
    Case(
        "no-driver-cuda-installed",
        ALL,
        NO_DRIVER,
        "libkbit_cpu.so",
        "running on CPU: no NVIDIA driver found",
        rejected=("no NVIDIA driver",),
    ),
    Case(
        "kernel-module-without-libcuda",
        ALL,
        DriverProbe(None, None, (), "no NVIDIA driver found: libcuda.so.1: cannot open", kernel_driver="550.54.14"),
        "libkbit_cpu.so",
        "running on CPU: no NVIDIA driver found",
        warning="the NVIDIA kernel driver 550.54.14 is loaded but the CUDA driver library cannot "
        "be used (no NVIDIA driver found: libcuda.so.1: cannot open); install the user-space "
        "driver",
    ),
    Case(
        "driver-without-gpu",
        ALL,
        DriverProbe("libcuda.so.1", 12040, (), "cuInit failed: CUDA_ERROR_NO_DEVICE (100)"),
        "libkbit_cpu.so",
        "CUDA_ERROR_NO_DEVICE",
        warning="CUDA_ERROR_NO_DEVICE",
    ),
    Case(
        "exact-driver",
        ALL,
        driver(12040, 86),
        "libkbit_cuda124.so",
        "highest CUDA version not newer than the driver (CUDA 12.4) with SASS for every GPU",
        # 12.8 runs too under minor-version compatibility, so it is tried after 11.8
        order=("libkbit_cuda124.so", "libkbit_cuda118.so", "libkbit_cuda128.so", "libkbit_cpu.so"),
        rejected=("built with CUDA 13.0, which needs a CUDA 13.x driver",),
    ),
    Case(
        "old-driver-takes-older-build",
        ALL,
        driver(12020, 86),
        "libkbit_cuda118.so",
        "not newer than the driver (CUDA 12.2)",
    ),
    Case(
        "newer-driver-takes-newest-build",
        ALL,
        driver(13020, 90),
        "libkbit_cuda130.so",
        "CUDA 13.0: the highest CUDA version not newer than the driver (CUDA 13.2)",
        order=(
            "libkbit_cuda130.so",
            "libkbit_cuda128.so",
            "libkbit_cuda124.so",
            "libkbit_cuda118.so",
            "libkbit_cpu.so",
        ),
    ),
    Case(
        "driver-older-than-every-build",
        (CPU, CU124, CU130),
        driver(11040, 86),
        "libkbit_cpu.so",
        "no installed CUDA library can run",
        warning="upgrade the NVIDIA driver to a driver for CUDA 12.4 (cuDriverGetVersion() >= 12040, e.g. 550.54.14)",
        rejected=("needs a CUDA 12.x driver; the driver supports CUDA 11.4",),
    ),
    Case(
        "minor-version-compat-sass",
        (CPU, CU124, CU128),
        driver(12020, 86),
        "libkbit_cuda124.so",
        "minor-version compatibility",
        order=("libkbit_cuda124.so", "libkbit_cuda128.so", "libkbit_cpu.so"),
    ),
    Case(
        "minor-version-compat-needs-ptx",
        (CPU, lib("124", (80,), (80,))),
        driver(12020, 90),
        "libkbit_cpu.so",
        "no installed CUDA library can run",
        warning="kbit runs on CPU",
        rejected=("cannot do",),
    ),
    Case(
        "gpu-covered-only-by-ptx",
        (CPU, CU124),
        driver(12040, 100),
        "libkbit_cuda124.so",
        "PTX JIT for GPU-sm100 (sm_100)",
    ),
    Case(
        "gpu-newer-than-all-sass-no-ptx",
        (CPU, lib("124", OLD_SASS)),
        driver(12040, 120),
        "libkbit_cpu.so",
        "no installed CUDA library can run on GPU-sm120 (sm_120)",
        warning="no installed library has code for sm_120",
        rejected=("no code for GPU 0 GPU-sm120 (sm_120)",),
    ),
    Case(
        "gpu-newer-than-all-sass-and-ptx-major",
        (CPU, lib("124", (80, 86), (86,))),
        driver(12040, 90),
        "libkbit_cuda124.so",
        "PTX JIT for GPU-sm90",
    ),
    Case(
        "gpu-older-than-every-arch-falls-back-to-older-cuda",
        (CPU, CU124, CU130),
        driver(13000, 61),
        "libkbit_cuda124.so",
        "CUDA 12.4",
        rejected=("older than every arch",),
    ),
    Case(
        "sass-preferred-over-ptx",
        (CPU, CU128, lib("130", SASS_13[:-2], (90,))),
        driver(13000, 120),
        "libkbit_cuda128.so",
        "CUDA 12.8: SASS for every GPU, preferred to the newer CUDA 13.0 build, which would "
        "JIT-compile PTX (driver: CUDA 13.0); SASS for GPU-sm120 (sm_120)",
    ),
    Case(
        "sass-minor-rule-86-on-89",
        (CPU, lib("124", (80, 86))),
        driver(12040, 89),
        "libkbit_cuda124.so",
        "SASS for GPU-sm89",
    ),
    Case(
        "sass-minor-rule-86-not-on-90",
        (CPU, lib("124", (80, 86))),
        driver(12040, 90),
        "libkbit_cpu.so",
        "no installed CUDA library can run",
        warning="no installed library has code for sm_90",
    ),
    Case(
        "all-gpus-must-be-covered",
        (CPU, CU124, CU128),
        driver(12080, 80, 120),
        "libkbit_cuda128.so",
        "SASS for GPU-sm80 (sm_80), SASS for GPU-sm120 (sm_120)",
        order=("libkbit_cuda128.so", "libkbit_cuda124.so", "libkbit_cpu.so"),
    ),
    Case(
        "one-gpu-uncovered",
        (CPU, lib("124", (80,))),
        driver(12040, 80, 90),
        "libkbit_cpu.so",
        "no installed CUDA library can run",
        warning="CUDA_VISIBLE_DEVICES",
        rejected=("no code for GPU 1",),
    ),
    Case(
        "gpu-but-no-cuda-library",
        (CPU,),
        driver(12040, 86),
        "libkbit_cpu.so",
        "no CUDA library is installed for GPU-sm86 (sm_86)",
        warning="install one: pip install 'kbit[cu12]'",
    ),
    Case("nothing-installed", (), NO_DRIVER, None, "no CPU library is installed"),
    Case(
        "override-present",
        ALL,
        driver(13000, 90),
        "libkbit_cuda124.so",
        "forced by KBIT_CUDA_VERSION=124",
        env={"KBIT_CUDA_VERSION": "124"},
        order=("libkbit_cuda124.so",),
    ),
    Case(
        "override-dotted",
        ALL,
        driver(13000, 90),
        "libkbit_cuda118.so",
        "forced by KBIT_CUDA_VERSION=11.8",
        env={"KBIT_CUDA_VERSION": "11.8"},
    ),
    Case(
        "override-cpu",
        ALL,
        driver(13000, 90),
        "libkbit_cpu.so",
        "forced by KBIT_CUDA_VERSION=cpu",
        env={"KBIT_CUDA_VERSION": "cpu"},
    ),
    Case(
        "override-empty-is-unset",
        ALL,
        driver(12040, 90),
        "libkbit_cuda124.so",
        "highest CUDA version",
        env={"KBIT_CUDA_VERSION": " "},
    ),
    Case(
        "same-version-two-sources-keeps-discovery-order",
        (CPU, lib("124", OLD_SASS, (90,), source="kbit_cu12 (kbit-cu12 0.1.0)"), CU124),
        driver(12040, 86),
        "libkbit_cuda124.so",
        "CUDA 12.4",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_select_table(case: Case) -> None:
    selection = select(case.libraries, case.probe, case.env, HINTS)
    chosen = selection.choice
    assert (chosen.name if chosen else None) == case.chosen, selection.reason
    assert case.reason in selection.reason
    if case.warning is None:
        assert selection.warning is None
    else:
        assert selection.warning is not None and case.warning in selection.warning
    if case.order is not None:
        assert tuple(c.name for c in selection.candidates) == case.order
    reasons = " | ".join(r.reason for r in selection.rejected)
    for expected in case.rejected:
        assert expected in reasons
    # every library is either a candidate or rejected with a reason, never silently dropped,
    # unless an override narrowed the choice
    if not selection.forced:
        seen = {id(c) for c in selection.candidates} | {id(r.library) for r in selection.rejected}
        assert seen == {id(x) for x in case.libraries}


def test_same_version_two_sources_order() -> None:
    split = lib("124", OLD_SASS, (90,), source="kbit_cu12 (kbit-cu12 0.1.0)")
    selection = select((CPU, split, CU124), driver(12040, 86), {}, HINTS)
    assert selection.candidates[:2] == (split, CU124)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("118", "asks for a CUDA 11.8 library, which is not installed"),
        ("12.9", "asks for a CUDA 12.9 library, which is not installed"),
        ("12", "KBIT_CUDA_VERSION='12' is not a CUDA version"),
        ("cuda124", "KBIT_CUDA_VERSION='cuda124' is not a CUDA version"),
        ("12.4.1", "is not a CUDA version"),
        ("1240", "is not a CUDA version"),
    ],
)
def test_override_errors(value: str, message: str) -> None:
    with pytest.raises(OverrideError) as info:
        select((CPU, CU124, CU130), driver(13000, 90), {"KBIT_CUDA_VERSION": value}, HINTS)
    assert message in str(info.value)
    if "not installed" in message:  # the error lists what is installed and what to set
        assert "installed: libkbit_cpu.so (CPU, from kbit); libkbit_cuda124.so (CUDA 12.4" in str(info.value)
        assert "124, 130, cpu" in str(info.value)


def test_override_cpu_absent() -> None:
    with pytest.raises(OverrideError, match="asks for the CPU library, which is not installed"):
        select((CU124,), NO_DRIVER, {"KBIT_CUDA_VERSION": "cpu"}, HINTS)


def test_override_forcing_incompatible_library_notes_it() -> None:
    selection = select(ALL, driver(12040, 86), {"KBIT_CUDA_VERSION": "130"}, HINTS)
    assert selection.choice == CU130 and selection.forced
    assert selection.notes and "needs a CUDA 13.x driver" in selection.notes[0]
    selection = select(ALL, NO_DRIVER, {"KBIT_CUDA_VERSION": "130"}, HINTS)
    assert "no NVIDIA driver was found" in selection.notes[0]


def test_minor_compat_note_names_driver_floor() -> None:
    selection = select((CPU, CU124), driver(12020, 86), {}, HINTS)
    assert selection.notes == (
        (
            "libkbit_cuda124.so is newer than the driver (CUDA 12.2); upgrade to a driver for "
            "CUDA 12.4 (cuDriverGetVersion() >= 12040, e.g. 550.54.14) for full support"
        ),
    )


@pytest.mark.parametrize(
    ("sass", "cc", "covered"),
    [
        ((86,), (8, 6), True),
        ((86,), (8, 9), True),
        ((86,), (9, 0), False),
        ((80,), (8, 6), True),
        ((89,), (8, 6), False),
        ((90,), (10, 0), False),
        ((100,), (10, 3), True),
        ((120,), (12, 1), True),
        ((75,), (7, 0), False),
    ],
)
def test_sass_rule(sass: tuple[int, ...], cc: tuple[int, int], covered: bool) -> None:
    assert sass_covers(sass, Gpu(0, "g", cc)) is covered


@pytest.mark.parametrize(
    ("ptx", "cc", "covered"),
    [
        ((90,), (9, 0), True),
        ((90,), (10, 0), True),
        ((90,), (8, 9), False),
        ((120,), (12, 1), True),
        ((), (9, 0), False),
    ],
)
def test_ptx_rule(ptx: tuple[int, ...], cc: tuple[int, int], covered: bool) -> None:
    assert ptx_covers(ptx, Gpu(0, "g", cc)) is covered


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("124", CudaVersion(12, 4)),
        ("12.4", CudaVersion(12, 4)),
        ("118", CudaVersion(11, 8)),
        (" 130 ", CudaVersion(13, 0)),
        ("CPU", "cpu"),
    ],
)
def test_parse_override(text: str, parsed: object) -> None:
    assert parse_cuda_override(text) == parsed


# ----------------------------------------------------------------------------- properties

VERSIONS = [
    CudaVersion(11, 8),
    CudaVersion(12, 0),
    CudaVersion(12, 4),
    CudaVersion(12, 8),
    CudaVersion(13, 0),
    CudaVersion(13, 2),
]
ARCHS = [50, 60, 61, 70, 75, 80, 86, 89, 90, 100, 103, 120, 121]


@st.composite
def worlds(draw: st.DrawFn) -> tuple[tuple[LibraryInfo, ...], DriverProbe]:
    libraries = []
    if draw(st.booleans()):
        libraries.append(CPU)
    for i, version in enumerate(draw(st.lists(st.sampled_from(VERSIONS), max_size=5))):
        sass = tuple(sorted(draw(st.sets(st.sampled_from(ARCHS), max_size=6))))
        ptx = tuple(sorted(draw(st.sets(st.sampled_from(ARCHS), max_size=2))))
        if not sass and not ptx:
            sass = (80,)
        libraries.append(lib(version.tag, sass, ptx, source=f"src{i}"))
    order = draw(st.permutations(libraries))
    gpu_archs = draw(st.lists(st.sampled_from(ARCHS), min_size=1, max_size=3))
    driver = draw(st.sampled_from([11040, 11080, 12000, 12020, 12030, 12040, 12070, 12080, 13000, 13010, 13020]))
    return tuple(order), DriverProbe("libcuda.so.1", driver, gpus(*gpu_archs))


def runs(library: LibraryInfo, probe: DriverProbe) -> tuple[bool, bool, bool]:
    """The rules stated again, independently: (runs here, strictly compatible, SASS for all)."""
    assert library.cuda is not None and probe.driver is not None
    strict = probe.driver >= library.cuda.api
    same_major_newer = probe.driver // 1000 == library.cuda.major and not strict

    def sass(g: Gpu) -> bool:
        return any(a // 10 == g.cc[0] and a % 10 <= g.cc[1] for a in library.sass)

    def ptx(g: Gpu) -> bool:
        return any(a <= g.cc[0] * 10 + g.cc[1] for a in library.ptx)

    sass_all = all(sass(g) for g in probe.gpus)
    covered = all(sass(g) or ptx(g) for g in probe.gpus)
    return (strict and covered) or (same_major_newer and sass_all), strict, sass_all


@settings(max_examples=400, deadline=None)
@given(worlds())
def test_select_properties(world: tuple[tuple[LibraryInfo, ...], DriverProbe]) -> None:
    libraries, probe = world
    selection = select(libraries, probe, {}, HINTS)
    cuda = [x for x in libraries if x.cuda is not None]
    usable = [x for x in cuda if runs(x, probe)[0]]
    cpu = [x for x in libraries if x.cuda is None]
    # candidates: every usable CUDA library, then the CPU ones; nothing else, nothing twice
    assert [id(c) for c in selection.candidates[len(usable) :]] == [id(c) for c in cpu]
    assert {id(c) for c in selection.candidates[: len(usable)]} == {id(x) for x in usable}
    # every other CUDA library is rejected with a reason
    assert {id(r.library) for r in selection.rejected} == {id(x) for x in cuda} - {id(x) for x in usable}
    assert all(r.reason for r in selection.rejected)
    if not usable:
        assert selection.choice is None or selection.choice.cuda is None
        assert selection.warning is not None and selection.warning.startswith("kbit runs on CPU")
        return
    assert selection.warning is None

    def rank(x: LibraryInfo) -> tuple[bool, bool, tuple[int, int]]:
        """Strictly compatible first, then SASS for every GPU, then the highest version (under
        minor-version compatibility: the oldest, the closest to the driver)."""
        _, strict, sass_all = runs(x, probe)
        assert x.cuda is not None
        version = (x.cuda.major, x.cuda.minor) if strict else (-x.cuda.major, -x.cuda.minor)
        return strict, sass_all, version

    best = selection.candidates[0]
    assert all(rank(other) <= rank(best) for other in usable)
