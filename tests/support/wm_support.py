"""Helpers shared by wheelmatrix's tests (importable: pytest.ini puts tests/ on sys.path)."""

from __future__ import annotations

from pathlib import Path

from wheelmatrix.plan import Host

REPO = Path(__file__).resolve().parents[2]
MATRICES = REPO / "tests" / "wheelmatrix" / "matrices"


def linux_host(*, zig: bool = True, system_cuda: tuple[tuple[str, str], ...] = ()) -> Host:
    """A Linux x86_64 build host like this machine (injected: the plan is pure over it)."""
    return Host(platform="linux-x86_64", has_c_compiler=True, has_zig=zig, system_cuda=system_cuda, glibc=(2, 36))
