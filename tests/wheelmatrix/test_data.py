"""Invariants of wheelmatrix's fact tables (data/cuda.toml, data/platforms.toml)."""

from __future__ import annotations

import itertools
import re

from packaging.version import Version

from wheelmatrix import data
from wheelmatrix.model import PLATFORMS, CudaVersion


def test_arch_lists_are_sorted_unique_and_plausible() -> None:
    for v, f in data.cuda_facts().items():
        assert list(f.archs) == sorted(set(f.archs)), v
        assert all(30 <= a <= 130 for a in f.archs), v


def test_arch_floors_and_ceilings() -> None:
    facts = data.cuda_facts()
    for v, f in facts.items():
        if v.major >= 13:
            assert min(f.archs) == 75, f"CUDA {v} dropped everything below sm_75"
        if v < CudaVersion(12, 8):
            assert max(f.archs) == 90, f"sm_100/sm_120 need 12.8+ ({v})"
        else:
            assert {100, 120} <= set(f.archs), v


def test_versions_increase_monotonically() -> None:
    ordered = sorted(data.cuda_facts().items())
    for (v1, f1), (v2, f2) in itertools.pairwise(ordered):
        assert f1.host_gcc_max <= f2.host_gcc_max, (v1, v2)
        assert f1.driver_api < f2.driver_api, (v1, v2)
        assert Version(f1.min_driver_linux) <= Version(f2.min_driver_linux), (v1, v2)
        assert Version(f1.min_driver_windows) <= Version(f2.min_driver_windows), (v1, v2)


def test_driver_api_encodes_the_version() -> None:
    for v, f in data.cuda_facts().items():
        assert f.driver_api == v.api
        assert Version(f.family_min_driver_linux) <= Version(f.min_driver_linux)
        assert f.runtime_soname.startswith("libcudart.so.")


def test_measured_host_compiler_limits() -> None:
    # ../shared/notes/toolchains.md: 11.8 <= 11, 12.1 <= 12, 12.4 <= 13, 12.8 <= 14, 13.0 <= 15
    facts = data.cuda_facts()
    expected = {"11.8": 11, "12.1": 12, "12.4": 13, "12.8": 14, "13.0": 15}
    for text, gcc in expected.items():
        assert facts[CudaVersion.parse(text)].host_gcc_max == gcc


def test_sources_are_well_formed() -> None:
    for v, sources in data.cuda_sources().items():
        for s in sources:
            assert s == "pypi" or re.fullmatch(r"debian:[a-z]+", s), (v, s)
        if "pypi" in sources:
            assert v.major >= 13, "only CUDA 13.x wheels on PyPI hold nvcc"


def test_platform_table() -> None:
    facts = data.platform_facts()
    assert tuple(facts) == PLATFORMS
    for name, f in facts.items():
        assert f.default_policy in f.policies, name
        assert "{name}" in f.library, name
        assert f.repair in {"auditwheel", "delvewheel", "delocate"}, name
        if name.startswith("linux"):
            versions = [tuple(map(int, p.split("_")[1:])) for p in f.policies]
            assert versions == sorted(versions), "policies oldest first"
            assert any(g.startswith("libcuda.so") for g in f.never_vendor), "the driver is never vendored"
        if name.startswith("windows"):
            assert "nvcuda.dll" in f.never_vendor
        if name.startswith("macos"):
            assert f.cuda_providers == ()
