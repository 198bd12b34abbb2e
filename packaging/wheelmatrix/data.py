"""Read wheelmatrix's fact tables (``data/*.toml``). Read lazily, once, never at import time."""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from importlib import resources
from typing import Any, cast

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from wheelmatrix.model import Component, CudaFacts, CudaVersion, SourceKind


def _load(name: str) -> dict[str, Any]:
    text = resources.files("wheelmatrix").joinpath(f"data/{name}").read_text("utf-8")
    loaded: dict[str, Any] = tomllib.loads(text)
    return loaded


@dataclass(frozen=True)
class PlatformFacts:
    name: str
    wheel_arch: str
    policies: tuple[str, ...]
    default_policy: str
    repair: str
    never_vendor: tuple[str, ...]
    runner: str
    host: tuple[str, str]
    library: str
    cuda_providers: tuple[SourceKind, ...]


@functools.cache
def cuda_facts() -> dict[CudaVersion, CudaFacts]:
    raw = _load("cuda.toml")
    majors = raw["majors"]
    out: dict[CudaVersion, CudaFacts] = {}
    for text, entry in raw["versions"].items():
        v = CudaVersion.parse(text)
        family = majors[str(v.major)]
        out[v] = CudaFacts(
            archs=tuple(entry["archs"]),
            host_gcc_max=entry["host-gcc-max"],
            driver_api=entry["driver-api"],
            min_driver_linux=entry["min-driver-linux"],
            min_driver_windows=entry["min-driver-windows"],
            family_min_driver_linux=family["min-driver-linux"],
            family_min_driver_windows=family["min-driver-windows"],
            runtime_soname=family["runtime-soname"],
            compress=tuple(entry["compress"]),
            compress_size=tuple(entry.get("compress-size", ())),
            compress_size_default=bool(entry.get("compress-size-default", False)),
        )
    return out


@functools.cache
def cuda_sources() -> dict[CudaVersion, tuple[str, ...]]:
    """Which registry sources can provide each CUDA version ("pypi", "debian:<suite>")."""
    raw = _load("cuda.toml")
    return {CudaVersion.parse(k): tuple(v.get("sources", ())) for k, v in raw["versions"].items()}


@functools.cache
def platform_facts() -> dict[str, PlatformFacts]:
    raw = _load("platforms.toml")
    return {
        name: PlatformFacts(
            name=name,
            wheel_arch=e["wheel-arch"],
            policies=tuple(e["policies"]),
            default_policy=e["default-policy"],
            repair=e["repair"],
            never_vendor=tuple(e["never-vendor"]),
            runner=e["runner"],
            host=cast("tuple[str, str]", tuple(e["host"])),
            library=e["library"],
            cuda_providers=tuple(e["cuda-providers"]),
        )
        for name, e in raw.items()
    }


@functools.cache
def components() -> dict[str, Component]:
    """The CUDA components a matrix may ask for (data/cuda.toml [components])."""
    raw = _load("cuda.toml").get("components", {})
    return {
        name: Component(
            name=name,
            libraries=tuple(e["libraries"]),
            runtime_wheels=tuple(sorted((int(k), str(v)) for k, v in e["runtime-wheels"].items())),
            wheel_lib_dirs=tuple(sorted((int(k), str(v)) for k, v in e["wheel-lib-dirs"].items())),
        )
        for name, e in raw.items()
    }


def family_facts(major: int) -> dict[str, str] | None:
    """The per-major facts (driver floors, runtime soname) of data/cuda.toml [majors], or None."""
    family = _load("cuda.toml")["majors"].get(str(major))
    return dict(family) if family is not None else None
