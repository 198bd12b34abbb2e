"""The ``debian`` source: CUDA from Debian's non-free archive, fetched and unpacked without apt.

The index chain is read here (see :mod:`debarchive`); only the parts needed to compile are kept,
laid out like NVIDIA's CUDA tree, with a profile relative to ``$(_HERE_)`` and a launcher. A
CUDA version that needs an older host compiler (11.8: gcc <= 11) gets one from the archive too.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from wheelmatrix.errors import ToolchainError
from wheelmatrix.model import CudaSpec, SourceKind
from wheelmatrix.toolchains import components, data
from wheelmatrix.toolchains.base import Assembled, LockedFile, LockEntry
from wheelmatrix.toolchains.debarchive import KeepRule, SuiteIndex, unpack_deb
from wheelmatrix.toolchains.progress import Reporter

NVCC_PROFILE = """\
# Written by wheelmatrix: the Debian package's profile is a symlink to /etc/nvcc.profile with
# absolute /usr paths; this one is relative to the folder of nvcc, so the tree can live anywhere.
TOP              = $(_HERE_)/..
NVVMIR_LIBRARY_DIR = $(TOP)/nvvm/libdevice
LD_LIBRARY_PATH += $(TOP)/lib64:
PATH            += $(TOP)/nvvm/bin:$(_HERE_):
INCLUDES        +=  "-I$(TOP)/include" $(_SPACE_)
LIBRARIES        =+ $(_SPACE_) "-L$(TOP)/lib64/stubs" "-L$(TOP)/lib64"
CUDAFE_FLAGS    +=
PTXAS_FLAGS     +=
"""

# nvcc reads nvcc.profile from the folder of argv[0]; the real binary is bin/nvcc.real and
# bin/nvcc runs it. With a private host compiler, the launcher passes it as -ccbin unless the
# caller names one (-ccbin, --compiler-bindir, or NVCC_CCBIN, which nvcc 11.8 itself ignores).
LAUNCHER = """\
#!/bin/sh
# Written by wheelmatrix: runs the relocated nvcc{ccbin_note}.
here=$(dirname "$(readlink -f "$0")")
{body}"""
PLAIN = """exec "$here/nvcc.real" "$@"
"""
CCBIN = """\
for arg in "$@"; do
  case "$arg" in -ccbin|-ccbin=*|--compiler-bindir|--compiler-bindir=*) exec "$here/nvcc.real" "$@";; esac
done
exec "$here/nvcc.real" -ccbin "${{NVCC_CCBIN:-$here/{rel}}}" "$@"
"""


def mirror() -> str:
    return os.environ.get("WHEELMATRIX_DEBIAN_MIRROR", str(data.table()["debian"]["mirror"])).rstrip("/")


def keyring() -> Path | None:
    value = os.environ.get("WHEELMATRIX_DEBIAN_KEYRING", str(data.table()["debian"]["keyring"]))
    return Path(value) if value else None


def _rules(key: str) -> tuple[KeepRule, ...]:
    return tuple(KeepRule(r["from"], r["to"], tuple(r["files"])) for r in data.table()["debian"][key])


LIB_FROM, LIB_TO = "usr/lib/x86_64-linux-gnu/", "lib64/"


def _component_rule(spec: CudaSpec) -> KeepRule | None:
    """The keep rule the requested components add: their shared libraries and .so links."""
    names = components.needed_libraries(spec)
    return KeepRule(LIB_FROM, LIB_TO, tuple(f"lib{n}.so*" for n in names)) if names else None


class DebianSource:
    kind: SourceKind = "debian"

    def __init__(self, reporter: Reporter | None = None) -> None:
        self.reporter = reporter or Reporter(enabled=False)

    @staticmethod
    def _config(spec: CudaSpec) -> dict[str, Any] | None:
        versions: dict[str, dict[str, Any]] = data.table()["debian"]["versions"]
        return versions.get(str(spec.version))

    def unavailable(self, spec: CudaSpec) -> str | None:
        cfg = self._config(spec)
        if cfg is None:
            known = ", ".join(data.table()["debian"]["versions"])
            return f"wheelmatrix knows Debian's CUDA packages for {known} only (data/toolchains.toml)"
        if not spec.toolchain.suite:
            return "the matrix names no Debian suite for it (toolchain suite = ...)"
        for c in spec.components:
            if c.name not in cfg.get("components", {}):
                return f"wheelmatrix knows no Debian package of the component {c.name} for CUDA {spec.version}"
        return None

    def recipe(self, spec: CudaSpec) -> Mapping[str, object]:
        cfg = self._config(spec) or {}
        gcc = cfg.get("host-gcc")
        out: dict[str, object] = {
            "keep": data.table()["debian"]["keep"],
            "keep-gcc": data.table()["debian"]["keep-gcc"] if gcc else None,
            "host-gcc": data.table()["debian"]["host-gcc"].get(gcc) if gcc else None,
            "profile": NVCC_PROFILE,
            "launcher": LAUNCHER + PLAIN + CCBIN,
        }
        rule = _component_rule(spec)
        if rule is not None:  # a toolchain without components keeps its cache key
            out["components"] = components.recipe(spec)
            out["component-packages"] = list(self.component_packages(spec))
            out["keep-components"] = {"from": rule.src, "to": rule.dst, "files": list(rule.files)}
        return out

    def component_packages(self, spec: CudaSpec) -> tuple[str, ...]:
        """The non-free packages the requested components add, in order, none twice."""
        cfg = self._config(spec) or {}
        table: dict[str, list[str]] = cfg.get("components", {})
        base = {n for group in cfg.get("packages", {}).values() for n in group}
        return tuple(dict.fromkeys(n for c in spec.components for n in table.get(c.name, []) if n not in base))

    def package_names(self, spec: CudaSpec) -> frozenset[str]:
        cfg = self._config(spec) or {}
        names = {n for group in cfg.get("packages", {}).values() for n in group}
        names |= set(self.component_packages(spec))
        gcc = cfg.get("host-gcc")
        if gcc:
            names |= {n for group in data.table()["debian"]["host-gcc"][gcc]["packages"].values() for n in group}
        return frozenset(names)

    def resolve(self, spec: CudaSpec) -> LockEntry:
        reason = self.unavailable(spec)
        if reason:
            raise ToolchainError(f"the debian source cannot provide CUDA {spec.version}: {reason}")
        cfg = self._config(spec) or {}
        arch = str(data.table()["debian"]["arch"])
        suite = str(spec.toolchain.suite)
        indexes: dict[str, SuiteIndex] = {}

        def index(name: str) -> SuiteIndex:
            if name not in indexes:
                indexes[name] = SuiteIndex(mirror(), name, arch, keyring())
            return indexes[name]

        files: list[LockedFile] = []

        def take(suite_name: str, packages: Mapping[str, list[str]], role: str) -> None:
            for component, names in packages.items():
                available = index(suite_name).packages(component)
                for name in names:
                    pkg = available.get(name)
                    if pkg is None:
                        raise ToolchainError(
                            f"Debian {suite_name}/{component} has no package {name} (needed for CUDA {spec.version})",
                            fix="check the suite named in matrix.toml, or the package list in data/toolchains.toml",
                        )
                    files.append(
                        LockedFile(
                            pkg.name,
                            pkg.version,
                            pkg.filename.rsplit("/", 1)[-1],
                            pkg.filename,
                            pkg.sha256,
                            pkg.size,
                            role,
                        )
                    )

        take(suite, cfg["packages"], "cuda")
        if spec.components:
            take(suite, {"non-free": list(self.component_packages(spec))}, "component")
        toolkit = next(f for f in files if f.name == cfg["toolkit"])
        if not toolkit.version.startswith(f"{spec.version}."):
            raise ToolchainError(
                f"Debian {suite} provides CUDA {toolkit.version.split('~')[0]} ({toolkit.name} {toolkit.version}), "
                f"not CUDA {spec.version}",
                fix="name the suite that carries this version in matrix.toml (11.8: bookworm, 12.4: trixie), "
                "or choose another source",
            )
        gcc = cfg.get("host-gcc")
        if gcc:
            gcfg = data.table()["debian"]["host-gcc"][gcc]
            take(str(gcfg["suite"]), gcfg["packages"], "host-gcc")
        described = [f"debian:{i.suite} {i.describe()}" for i in indexes.values()]
        for i in indexes.values():
            if i.release is not None and not i.release.signed:
                self.reporter.warn(
                    f"the InRelease signature of {i.suite} was NOT checked (gpgv or the keyring {keyring()} is "
                    "missing): only the hash chain from InRelease to each .deb was checked"
                )
        return LockEntry(spec.version, "debian", spec.toolchain.describe(), tuple(files), tuple(described))

    def assemble(self, spec: CudaSpec, files: Sequence[tuple[LockedFile, Path]], staging: Path) -> Assembled:
        cfg = self._config(spec) or {}
        root = staging / "cuda"
        cuda_rules = _rules("keep")
        rule = _component_rule(spec)
        if rule is not None:
            cuda_rules = (*cuda_rules, rule)
        gcc_rules = _rules("keep-gcc")
        with self.reporter.task(f"unpacking CUDA {spec.version}", len(files), unit="packages") as task:
            for locked, path in files:
                if locked.role == "host-gcc":
                    unpack_deb(path, staging / "gcc", gcc_rules)
                else:
                    unpack_deb(path, root, cuda_rules)
                task.advance(1)
        bin_dir = root / "bin"
        real = bin_dir / "nvcc"
        if not real.is_file():
            raise ToolchainError(f"the Debian packages of CUDA {spec.version} held no nvcc (is the keep list right?)")
        real.replace(bin_dir / "nvcc.real")
        (bin_dir / "nvcc.profile").write_text(NVCC_PROFILE)
        host_cxx: str | None = None
        body = PLAIN
        note = ""
        gcc = cfg.get("host-gcc")
        if gcc:
            gcfg = data.table()["debian"]["host-gcc"][gcc]
            self._fix_gcc(staging / "gcc", gcfg)
            host_cxx = f"gcc/{gcfg['cxx']}"
            rel = os.path.relpath(staging / host_cxx, bin_dir)
            body = CCBIN.format(rel=rel)
            note = f" with g++-{gcc} as host compiler unless -ccbin or NVCC_CCBIN says otherwise"
        launcher = bin_dir / "nvcc"
        launcher.write_text(LAUNCHER.format(body=body, ccbin_note=note))
        launcher.chmod(0o755)
        # FindCUDAToolkit wants libcudart.so even when linking the static runtime
        lib = root / "lib64"
        if not (lib / "libcudart.so").exists():
            versioned = sorted(p.name for p in lib.glob("libcudart.so.*"))
            if versioned:
                (lib / "libcudart.so").unlink(missing_ok=True)
                (lib / "libcudart.so").symlink_to(versioned[0])
        if spec.components:
            names = components.needed_libraries(spec)
            components.drop_dangling(lib, names)
            components.link_unversioned(lib, names)
            components.check_assembled(spec, root, f"the Debian packages of CUDA {spec.version}")
        env = {"NVCC_CCBIN": "{entry}/" + host_cxx} if host_cxx else {}
        return Assembled(root="cuda", nvcc="bin/nvcc", host_cxx=host_cxx, env=env)

    @staticmethod
    def _fix_gcc(tree: Path, gcfg: Mapping[str, Any]) -> None:
        cxx = tree / str(gcfg["cxx"])
        if not cxx.is_file():
            raise ToolchainError(f"the host compiler packages held no {gcfg['cxx']}")
        link = tree / str(gcfg["libstdcxx-link"])
        system = next((p for p in gcfg["libstdcxx-system"] if Path(p).exists()), None)
        if system is None:
            raise ToolchainError(
                "this host has no libstdc++.so.6 in " + ", ".join(gcfg["libstdcxx-system"]),
                fix="install the C++ runtime (Debian: libstdc++6)",
            )
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to(system)
