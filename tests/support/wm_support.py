"""Helpers shared by wheelmatrix's tests (importable: pytest.ini puts tests/ on sys.path)."""

from __future__ import annotations

from pathlib import Path

from wheelmatrix.plan import Host
from wheelmatrix.wheelfile import read_wheel, write_wheel

REPO = Path(__file__).resolve().parents[2]
MATRICES = REPO / "tests" / "wheelmatrix" / "matrices"


def linux_host(*, zig: bool = True, system_cuda: tuple[tuple[str, str], ...] = ()) -> Host:
    """A Linux x86_64 build host like this machine (injected: the plan is pure over it)."""
    return Host(platform="linux-x86_64", has_c_compiler=True, has_zig=zig, system_cuda=system_cuda, glibc=(2, 36))


def drop_metadata_line(wheel: Path, line: str) -> None:
    """Rewrite ``wheel`` in place with ``line`` (a whole METADATA line, newline included) removed;
    the line must be there (a broken wheel for the check's negative tests)."""
    contents = read_wheel(wheel)
    meta = f"{contents.dist_info}/METADATA"
    text = contents.text(meta)
    assert line in text
    contents.put(meta, text.replace(line, "").encode())
    wheel.unlink()
    write_wheel(contents, wheel.parent)
