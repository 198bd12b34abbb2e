"""Verification of a toolchain: the version nvcc reports, and a probe kernel compiled for the
lowest and highest SASS arch and the PTX archs declared, linked into a shared library; then, per
CUDA component the matrix asks for, a probe calling it linked against its libraries."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from wheelmatrix import _proc
from wheelmatrix.errors import CommandFailed, EnvironmentProblem, ToolchainError
from wheelmatrix.model import CudaSpec
from wheelmatrix.toolchains import components
from wheelmatrix.toolchains.fetch import clip

STEP_TIMEOUT = 600.0

# Host code uses <random>: CUDA 11.8 with gcc 12 passes trivial code but fails there.
PROBE = r"""
#include <cuda_runtime.h>
#include <random>
#include <vector>

__global__ void wm_probe_kernel(float* out, const float* in, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = in[i] * 2.0f + 1.0f;
}

extern "C" int wm_probe_launch(float* out, const float* in, int n) {
    wm_probe_kernel<<<(n + 255) / 256, 256>>>(out, in, n);
    return static_cast<int>(cudaGetLastError());
}

extern "C" float wm_probe_host(unsigned seed) {
    std::mt19937 gen(seed);
    std::uniform_real_distribution<float> dist(0.0f, 1.0f);
    std::vector<float> v(4);
    for (auto& x : v) x = dist(gen);
    return v[0] + v[3];
}
"""


class VerificationFailed(ToolchainError):
    def __init__(
        self, version: str, step: str, output: str, *, fix: str | None = None, component: str | None = None
    ) -> None:
        tail = "\n".join("    " + line for line in clip(output, lines=30).splitlines())
        super().__init__(
            f"CUDA {version} toolchain failed verification at step '{step}':\n{tail}",
            fix=fix or "the toolchain was not used; see the compiler's message above",
        )
        self.step = step
        self.component = component  # the CUDA component whose probe failed, if any


@dataclass(frozen=True)
class Verification:
    nvcc_version: str
    sass: tuple[int, ...]
    ptx: tuple[int, ...]
    library_size: int
    components: tuple[str, ...] = ()  # the CUDA components whose probes linked

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"nvcc_version": self.nvcc_version, "sass": list(self.sass), "ptx": list(self.ptx)}
        if self.components:  # records without components keep their old shape
            out["components"] = list(self.components)
        return out


def covers(record: Mapping[str, object], spec: CudaSpec) -> bool:
    """Whether a verification record was made for the archs and components ``spec`` asks for."""
    sass, ptx = probe_archs(spec)
    return (
        record.get("sass") == list(sass)
        and record.get("ptx") == list(ptx)
        and sorted(components.names_of(record)) == sorted(spec.component_names)
    )


def probe_archs(spec: CudaSpec) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The SASS archs the probe compiles (lowest and highest declared) and the PTX archs."""
    sass = tuple(sorted({min(spec.sass), max(spec.sass)})) if spec.sass else ()
    return sass, tuple(sorted(spec.ptx))


def nvcc_release(output: str) -> tuple[str, str] | None:
    """("13.0", "13.0.88") from ``nvcc --version`` output."""
    m = re.search(r"release (\d+\.\d+), V(\d+\.\d+\.\d+)", output)
    return (m.group(1), m.group(2)) if m else None


def verify(spec: CudaSpec, nvcc: Path, env: Mapping[str, str]) -> Verification:
    version = str(spec.version)

    def step(name: str, argv: list[str], cwd: Path | None = None, *, component: str | None = None) -> str:
        fix = None
        if component is not None:
            fix = (
                f"the toolchain's {component} (a CUDA component the matrix asks for) cannot be linked; the "
                "toolchain was not used (see the compiler's message above)"
            )
        try:
            return _proc.run(argv, cwd=cwd, extra_env=env, timeout=STEP_TIMEOUT).output
        except CommandFailed as exc:
            raise VerificationFailed(version, name, exc.tail, fix=fix, component=component) from exc
        except EnvironmentProblem as exc:
            raise VerificationFailed(version, name, exc.message, fix=fix, component=component) from exc

    out = step("nvcc --version", [str(nvcc), "--version"])
    found = nvcc_release(out)
    if found is None or found[0] != version:
        raise VerificationFailed(
            version,
            "nvcc --version",
            f"expected release {version}, nvcc reported:\n{out}",
            fix=f"point the toolchain at a CUDA {version} nvcc",
        )
    sass, ptx = probe_archs(spec)
    gencode = [f"-gencode=arch=compute_{a},code=sm_{a}" for a in sass]
    gencode += [f"-gencode=arch=compute_{a},code=compute_{a}" for a in ptx]
    archs = ", ".join([f"sm_{a}" for a in sass] + [f"compute_{a}" for a in ptx])
    with tempfile.TemporaryDirectory(prefix=f"wm-probe-{version}-") as tmp:
        work = Path(tmp)
        (work / "probe.cu").write_text(PROBE)
        step(
            f"compile probe kernel ({archs})",
            [str(nvcc), "-c", "probe.cu", "-o", "probe.o", "-Xcompiler", "-fPIC", *gencode],
            cwd=work,
        )
        step("link probe into a shared library", [str(nvcc), "-shared", "probe.o", "-o", "libwmprobe.so"], cwd=work)
        lib = work / "libwmprobe.so"
        blob = lib.read_bytes() if lib.is_file() else b""
        if b".nv_fatbin" not in blob:
            raise VerificationFailed(
                version, "link probe into a shared library", "the library has no .nv_fatbin section"
            )
        # each component: a probe calling it, linked with -l<library> into a shared library;
        # --no-undefined makes a symbol the libraries lack fail the link (a plain -shared link
        # would leave it for the loader)
        for c in components.of(spec):
            source = work / f"component_{c.name}.cpp"
            source.write_text(f'#include <{c.header}>\n\nextern "C" {{\n{c.probe.strip()}\n}}\n')
            obj, so = f"component_{c.name}.o", f"libwmprobe_{c.name}.so"
            step(
                f"compile probe of component {c.name} (#include <{c.header}>)",
                [str(nvcc), "-c", source.name, "-o", obj, "-Xcompiler", "-fPIC"],
                cwd=work,
                component=c.name,
            )
            step(
                f"link probe of component {c.name} ({' '.join(c.link_flags)})",
                [str(nvcc), "-shared", obj, "-o", so, *c.link_flags, "-Xlinker", "--no-undefined"],
                cwd=work,
                component=c.name,
            )
        return Verification(found[1], sass, ptx, len(blob), spec.component_names)
