"""The plan stage: cells, rules, buildability; property tests over generated matrices."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from wheelmatrix import config, data, schema
from wheelmatrix import settings as raw
from wheelmatrix.errors import MatrixError
from wheelmatrix.model import PLATFORMS, CudaVersion
from wheelmatrix.plan import Host, Plan, github_matrix, make_plan, plan_document
from wm_support import MATRICES, linux_host


def release_plan(host: Host) -> Plan:
    return make_plan(config.load_matrix(MATRICES / "good" / "release.toml"), host)


def test_release_plan_on_this_kind_of_host() -> None:
    plan = release_plan(linux_host())
    ids = [c.id for c in plan.cells]
    assert len(ids) == len(set(ids)) == 19  # 4 platforms x 6 variants - 5 CUDA cells on macOS
    assert {c.id for c in plan.buildable} == {
        "linux-x86_64-cpu",
        "linux-x86_64-cuda118",
        "linux-x86_64-cuda124",
        "linux-x86_64-cuda130",
        "linux-x86_64-cuda132",
        "windows-x86_64-cpu",
        "linux-aarch64-cpu",
        "macos-arm64-cpu",
    }
    reasons = {c.id: c.reason for c in plan.cells}
    assert reasons["windows-x86_64-cuda124"].startswith(
        "CUDA 12.4: source 'debian' cannot provide windows-x86_64 on any runner"
    )
    assert reasons["windows-x86_64-cuda130"] == "CUDA on Windows needs a Windows runner (windows-2022); CI builds it"
    # "CI builds it" only where a GitHub-hosted runner can: never for a system toolkit (no runner
    # carries one) nor for the debian source off amd64
    assert reasons["linux-x86_64-cuda128"] == (
        "CUDA 12.8: no system CUDA at /usr/local/cuda-12.8 on this host, and no GitHub-hosted runner carries one; "
        "build it where one is installed or exclude the cell with a rule"
    )
    assert reasons["linux-aarch64-cuda128"].startswith(
        "CUDA 12.8: needs a linux-aarch64 machine with a system CUDA at /usr/local/cuda-12.8, which no GitHub-hosted"
    )
    assert reasons["linux-aarch64-cuda118"].startswith("CUDA 11.8: the debian source provides amd64 only, so no")
    assert [c for c, r in reasons.items() if r.endswith("CI builds it")] == [
        "linux-aarch64-cuda130",
        "linux-aarch64-cuda132",
        "windows-x86_64-cuda130",
        "windows-x86_64-cuda132",
    ]
    assert reasons["windows-x86_64-cpu"] == "CPU library cross-built with zig (x86_64-windows-gnu)"
    assert reasons["macos-arm64-cpu"] == "CPU library cross-built with zig (aarch64-macos.11.0)"
    assert reasons["linux-aarch64-cpu"] == "CPU library cross-built with zig (aarch64-linux-gnu.2.28)"
    assert reasons["linux-aarch64-cuda130"] == "needs a linux-aarch64 runner (ubuntu-24.04-arm); CI builds it"
    assert reasons["linux-x86_64-cuda118"] == "CUDA 11.8 from Debian bookworm (non-free)"
    assert {(e.platform, e.variant) for e in plan.excluded} == {
        ("macos-arm64", v) for v in ("cuda118", "cuda124", "cuda128", "cuda130", "cuda132")
    }
    assert all(e.reason == "no CUDA on macOS" for e in plan.excluded)


def test_cell_carries_archs_and_toolchain() -> None:
    cell = release_plan(linux_host()).cell("linux-x86_64-cuda118")
    assert cell.cuda == CudaVersion(11, 8)
    assert cell.sass == (50, 60, 70, 75, 80, 86, 89, 90)
    assert cell.ptx == (90,)
    assert cell.toolchain is not None and cell.toolchain.describe() == "debian:bookworm"


@pytest.mark.parametrize("cell_id", ["windows-x86_64-cpu", "linux-aarch64-cpu", "macos-arm64-cpu"])
def test_without_zig_the_cross_built_cells_say_how(cell_id: str) -> None:
    cell = release_plan(linux_host(zig=False)).cell(cell_id)
    assert not cell.buildable
    assert cell.reason.startswith("pip install ziglang (wheelmatrix[build]) to cross-build it here")


def test_system_cuda_makes_its_cell_buildable() -> None:
    plan = release_plan(linux_host(system_cuda=(("12.8", "/usr/local/cuda-12.8"),)))
    cell = plan.cell("linux-x86_64-cuda128")
    assert cell.buildable
    assert cell.reason == "CUDA 12.8 from the system (/usr/local/cuda-12.8)"


def test_on_an_arm_host_only_arm_cells_build() -> None:
    host = Host(platform="linux-aarch64", has_c_compiler=True, has_zig=False)
    plan = release_plan(host)
    built = {c.id for c in plan.buildable}
    assert built == {"linux-aarch64-cpu", "linux-aarch64-cuda130", "linux-aarch64-cuda132"}
    assert plan.cell("linux-aarch64-cuda124").reason.startswith("CUDA 12.4: the debian source provides amd64 only")
    assert "CI builds it" not in plan.cell("linux-aarch64-cuda124").reason


def test_github_matrix_lists_every_cell_with_its_runner() -> None:
    plan = release_plan(linux_host())
    gh = github_matrix(plan)
    include = gh["include"]
    assert isinstance(include, list)
    assert [e["cell"] for e in include] == [c.id for c in plan.cells]
    runners = {e["platform"]: e["runner"] for e in include}
    assert runners == {
        "linux-x86_64": "ubuntu-24.04",
        "linux-aarch64": "ubuntu-24.04-arm",
        "windows-x86_64": "windows-2022",
        "macos-arm64": "macos-14",
    }


# ---- property tests over generated matrices -------------------------------------------------

FACTS = data.cuda_facts()
SOURCES = data.cuda_sources()


@st.composite
def cuda_tables(draw: st.DrawFn, version: CudaVersion) -> raw.CudaTable:
    archs = FACTS[version].archs
    sass = tuple(sorted(draw(st.sets(st.sampled_from(archs), min_size=1, max_size=4))))
    ptx = tuple(sorted(draw(st.sets(st.sampled_from(archs), max_size=2))))
    provided = SOURCES[version]
    choices = [raw.ToolchainTable("system", None, None)]
    choices += [raw.ToolchainTable("pypi") for s in provided if s == "pypi"]
    choices += [raw.ToolchainTable("debian", s.split(":")[1]) for s in provided if s.startswith("debian:")]
    return raw.CudaTable(sass=sass, ptx=ptx, toolchain=draw(st.sampled_from(choices)))


PATTERNS_P = st.sampled_from(["*", "linux-*", "windows-*", "macos-*", *PLATFORMS])
PATTERNS_V = st.sampled_from(["cuda*", "cuda11*", "cuda12*", "cuda13*", "cuda124", "cuda130", "cpu", "*"])


@st.composite
def matrix_files(draw: st.DrawFn) -> raw.MatrixFile:
    platforms = tuple(draw(st.lists(st.sampled_from(PLATFORMS), min_size=1, max_size=4, unique=True)))
    versions = sorted(draw(st.sets(st.sampled_from(sorted(FACTS)), max_size=4)))
    cuda = {str(v): draw(cuda_tables(v)) for v in versions}
    rules = tuple(
        raw.RuleTable(
            action=draw(st.sampled_from(["include", "exclude"])),
            platforms=tuple(draw(st.lists(PATTERNS_P, min_size=1, max_size=2))),
            variants=tuple(draw(st.lists(PATTERNS_V, min_size=1, max_size=2))),
            reason=draw(st.sampled_from(["", "why not"])),
        )
        for _ in range(draw(st.integers(0, 3)))
    )
    return raw.MatrixFile(
        project=raw.ProjectTable("demo", "demo", "demo_{variant}"),
        matrix=raw.AxesTable(platforms=platforms, cuda=tuple(map(str, versions)), python=("3.12",)),
        cuda=cuda,
        rules=rules,
    )


def resolve_or_reject(m: raw.MatrixFile) -> Plan:
    try:
        matrix = config.resolve(m, Path("generated.toml"))
    except MatrixError as exc:
        rejected = exc
    else:
        return make_plan(matrix, linux_host())
    # generated rules may be invalid (match nothing, exclude cpu): those are rejected, never planned
    assert rejected.key.startswith("rules["), rejected.render()
    assume(False)
    raise AssertionError("unreachable")


def expected_membership(m: raw.MatrixFile, platform: str, variant: str) -> bool:
    from fnmatch import fnmatchcase

    keep = True
    for r in m.rules:
        if any(fnmatchcase(platform, p) for p in r.platforms) and any(fnmatchcase(variant, v) for v in r.variants):
            keep = r.action == "include"
    return keep


PROPS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])


@PROPS
@given(matrix_files())
def test_no_duplicate_cells_and_rules_obeyed(m: raw.MatrixFile) -> None:
    plan = resolve_or_reject(m)
    ids = [c.id for c in plan.cells]
    assert len(ids) == len(set(ids))
    variants = ["cpu", *(CudaVersion.parse(v).variant for v in m.matrix.cuda)]
    for p in m.matrix.platforms:
        for v in variants:
            planned = f"{p}-{v}" in ids
            excluded = any((e.platform, e.variant) == (p, v) for e in plan.excluded)
            assert planned != excluded, "every cell is either planned or excluded"
            assert planned == expected_membership(m, p, v)
        assert f"{p}-cpu" in ids, "the CPU variant is always present"
    for c in plan.cells:
        if c.cuda is not None:
            spec = plan.matrix.cuda_spec(c.cuda)
            assert (c.sass, c.ptx, c.toolchain) == (spec.sass, spec.ptx, spec.toolchain)
        assert c.reason


@PROPS
@given(matrix_files(), PATTERNS_P, PATTERNS_V)
def test_exclude_then_include_is_identity(m: raw.MatrixFile, p: str, v: str) -> None:
    assume(v not in {"cpu", "*"})
    base = resolve_or_reject(m)
    ex = raw.RuleTable("exclude", (p,), (v,))
    inc = raw.RuleTable("include", (p,), (v,))
    try:
        both = make_plan(config.resolve(replace(m, rules=(*m.rules, ex, inc)), Path("g.toml")), linux_host())
        only_ex = make_plan(config.resolve(replace(m, rules=(*m.rules, ex)), Path("g.toml")), linux_host())
    except MatrixError:
        assume(False)
        raise
    # a trailing include of X re-adds exactly what the exclude of X removed: back to the original
    # for cells matching X, and cells not matching X are untouched by both rules
    from fnmatch import fnmatchcase

    matches = {c.id for c in both.cells if fnmatchcase(c.platform, p) and fnmatchcase(c.variant, v)}
    assert {c.id for c in only_ex.cells} == {c.id for c in both.cells} - matches
    assert {c.id for c in both.cells} >= {c.id for c in base.cells}


@PROPS
@given(matrix_files())
def test_json_round_trips_and_validates(m: raw.MatrixFile) -> None:
    plan = resolve_or_reject(m)
    doc = plan_document(plan)
    text = json.dumps(doc)
    assert json.loads(text) == doc
    jsonschema.validate(doc, schema.committed("plan"))
    jsonschema.validate(github_matrix(plan), schema.committed("github-matrix"))
    assert [c["id"] for c in doc["cells"]] == [c.id for c in plan.cells]  # type: ignore[index,union-attr]
