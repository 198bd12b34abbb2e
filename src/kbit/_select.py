"""The choice of a native library: a pure function of what is installed, the driver and the env.

:func:`select` takes the installed libraries (from their manifests), the driver probe and the
environment as data, touches nothing else, and returns a :class:`Selection`: the candidates in the
order the loader tries them, the reason for the first, why every other library was set aside, and
the one warning to show when kbit ends up on CPU although a CUDA path was expected.

Rules (docs/kbit-runtime.md, "Decision rules"):

1. ``KBIT_CUDA_VERSION`` (``124``, ``12.4`` or ``cpu``) forces that library; when it is not
   installed the error lists what is; a malformed value is an error.
2. A CUDA library built with CUDA X.Y runs when the driver reports ``cuDriverGetVersion() >=
   X*1000 + Y*10`` (a newer driver runs older CUDA, across majors too).
3. Each GPU must be covered: by SASS (``sm_XY`` runs on compute capability X.m with m >= Y, same
   major) or by PTX (``compute_XY`` JIT-compiles for any compute capability >= XY).
4. Among libraries that qualify, the first tried is the one whose SASS covers every GPU, then the
   highest CUDA version; ties keep discovery order (KBIT_LIBRARY_DIR, kbit itself, split
   distributions).
5. CUDA minor-version compatibility: when no library qualifies under rule 2, a library of the
   driver's own CUDA major but a newer minor is accepted if its SASS covers every GPU (NVIDIA's
   minor-version compatibility; PTX from a newer toolkit cannot be JIT-compiled by an older driver).
6. CPU libraries come last, as the fallback.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from kbit._errors import OverrideError
from kbit._manifest import CudaVersion, LibraryInfo
from kbit._probe import DriverProbe, Gpu

ENV_CUDA_VERSION = "KBIT_CUDA_VERSION"


@dataclass(frozen=True)
class Hints:
    """Data used only to word advice: the install command and driver floors per CUDA version."""

    install: str = "pip install 'kbit[cu{major}]'"  # {major} is replaced
    driver_floors: Mapping[str, str] = field(default_factory=dict)  # "12.4" -> "550.54.14"
    major_floors: Mapping[str, str] = field(default_factory=dict)  # "12" -> "525.60.13"

    def install_for(self, major: int) -> str:
        return self.install.format(major=major)

    def driver_for(self, version: CudaVersion) -> str:
        floor = self.driver_floors.get(str(version))
        api = f"cuDriverGetVersion() >= {version.api}"
        return f"a driver for CUDA {version} ({api}{', e.g. ' + floor if floor else ''})"


@dataclass(frozen=True)
class Rejection:
    library: LibraryInfo
    reason: str


@dataclass(frozen=True)
class Selection:
    """The loader's plan: try ``candidates`` in order (the first is the choice, ``reason`` says
    why); ``rejected`` says why each other CUDA library cannot run here; ``warning`` is the one
    warning to show when kbit runs on CPU although a GPU or CUDA libraries are present;
    ``forced`` is set when ``KBIT_CUDA_VERSION`` decided."""

    candidates: tuple[LibraryInfo, ...]
    reason: str
    rejected: tuple[Rejection, ...] = ()
    warning: str | None = None
    forced: bool = False
    notes: tuple[str, ...] = ()  # caveats about the choice (e.g. a forced library the driver may not run)

    @property
    def choice(self) -> LibraryInfo | None:
        return self.candidates[0] if self.candidates else None


def parse_cuda_override(value: str) -> CudaVersion | str:
    """``"124"`` or ``"12.4"`` -> CudaVersion(12, 4); ``"cpu"`` -> ``"cpu"``.

    Raises :class:`OverrideError` for anything else.
    """
    text = value.strip()
    if text.lower() == "cpu":
        return "cpu"
    m = re.fullmatch(r"(\d{2})(\d)", text) or re.fullmatch(r"(\d{1,2})\.(\d)", text)
    if m is None:
        raise OverrideError(
            f"{ENV_CUDA_VERSION}={value!r} is not a CUDA version",
            fix=f"set {ENV_CUDA_VERSION} to a CUDA version like 124 or 12.4, to cpu, or unset it to let kbit choose",
        )
    return CudaVersion(int(m.group(1)), int(m.group(2)))


def _installed(libraries: Sequence[LibraryInfo]) -> str:
    if not libraries:
        return "no kbit library is installed"
    return "installed: " + "; ".join(lib.describe() for lib in libraries)


def sass_covers(sass: Sequence[int], gpu: Gpu) -> bool:
    """SASS for sm_XY runs on compute capability X.m for m >= Y (same major only)."""
    major, minor = gpu.cc
    return any(a // 10 == major and a % 10 <= minor for a in sass)


def ptx_covers(ptx: Sequence[int], gpu: Gpu) -> bool:
    """PTX for compute_XY JIT-compiles for any GPU of compute capability >= X.Y."""
    return any(a <= gpu.arch for a in ptx)


@dataclass(frozen=True)
class _Fit:
    library: LibraryInfo
    all_sass: bool
    minor_compat: bool
    how: str


def _fit(lib: LibraryInfo, driver: int, gpus: Sequence[Gpu]) -> _Fit | str:
    """How ``lib`` runs on this driver and these GPUs, or why it cannot (a sentence)."""
    assert lib.cuda is not None
    version = lib.cuda
    driver_cuda = CudaVersion.from_api(driver)
    if driver < version.major * 1000:
        return (
            f"built with CUDA {version}, which needs a CUDA {version.major}.x driver; "
            f"the driver supports CUDA {driver_cuda}"
        )
    strict = driver >= version.api
    uses: list[str] = []
    all_sass = True
    for gpu in gpus:
        label = f"{gpu.name} (sm_{gpu.arch})"
        if sass_covers(lib.sass, gpu):
            uses.append(f"SASS for {label}")
            continue
        all_sass = False
        if not ptx_covers(lib.ptx, gpu):
            newest = max(lib.sass + lib.ptx)
            return (
                f"no code for GPU {gpu.index} {label}: SASS "
                f"{' '.join(map(str, lib.sass)) or 'none'}, PTX {' '.join(map(str, lib.ptx)) or 'none'}"
                + (
                    " (the GPU is older than every arch)"
                    if gpu.arch < min(lib.sass + lib.ptx)
                    else f" (nothing for its major; newest arch {newest})"
                )
            )
        if not strict:
            return (
                f"built with CUDA {version}, newer than the driver (CUDA {driver_cuda}); "
                f"GPU {gpu.index} {label} would need its PTX JIT-compiled, which an older driver "
                "cannot do"
            )
        uses.append(f"PTX JIT for {label}")
    how = ", ".join(uses)
    if strict:
        return _Fit(lib, all_sass, False, how)
    return _Fit(lib, all_sass, True, how)


def select(
    libraries: Sequence[LibraryInfo],
    probe: DriverProbe,
    env: Mapping[str, str],
    hints: Hints | None = None,
) -> Selection:
    """Choose the library to load; see the module docstring for the rules.

    Pure: reads only its arguments. Raises :class:`OverrideError` when ``KBIT_CUDA_VERSION`` is
    malformed or names a library that is not installed.
    """
    hints = hints or Hints()
    cpu_libs = tuple(lib for lib in libraries if lib.cuda is None)
    cuda_libs = tuple(lib for lib in libraries if lib.cuda is not None)

    raw = env.get(ENV_CUDA_VERSION, "")
    if raw.strip():
        return _forced(parse_cuda_override(raw), raw, libraries, cpu_libs, cuda_libs, probe)

    driver_cuda = probe.driver_cuda
    gpus = probe.gpus
    if probe.driver is None or driver_cuda is None:
        why = probe.error or "no NVIDIA driver found"
        reason = f"running on CPU: {why}"
        rejected = tuple(Rejection(lib, "no NVIDIA driver") for lib in cuda_libs)
        warning = None
        if probe.kernel_driver is not None:
            # NVIDIA hardware and kernel module, but no usable user-space driver: the classic
            # silent fallback (a container without GPU access, a half-installed driver).
            warning = (
                f"kbit runs on CPU: the NVIDIA kernel driver {probe.kernel_driver} is loaded but "
                f"the CUDA driver library cannot be used ({why}); install the user-space driver "
                "that matches it (libcuda), or give this container GPU access"
            )
        return _with_cpu(cpu_libs, reason, rejected, warning, libraries)
    if not gpus:
        why = probe.error or "the driver sees no GPU"
        reason = f"running on CPU: the NVIDIA driver (CUDA {driver_cuda}) is present but {why}"
        rejected = tuple(Rejection(lib, "no usable GPU") for lib in cuda_libs)
        warning = f"kbit runs on CPU: NVIDIA driver present (CUDA {driver_cuda}) but {why}"
        if not cuda_libs:
            warning = None
        return _with_cpu(cpu_libs, reason, rejected, warning, libraries)

    fits: list[_Fit] = []
    rejected_list: list[Rejection] = []
    for lib in cuda_libs:
        fit = _fit(lib, probe.driver, gpus)
        if isinstance(fit, str):
            rejected_list.append(Rejection(lib, fit))
        else:
            fits.append(fit)
    strict = [f for f in fits if not f.minor_compat]
    minor = [f for f in fits if f.minor_compat]  # _fit admits these with SASS for every GPU only
    gpu_text = ", ".join(f"{g.name} (sm_{g.arch})" for g in gpus)
    if strict:
        # Stable sort: every-GPU SASS first, then the highest CUDA version.
        ranked = sorted(strict, key=lambda f: (not f.all_sass, _neg(f.library.cuda)))
        best = ranked[0]
        highest = max(f.library.cuda or CudaVersion(0, 0) for f in strict)
        if best.library.cuda == highest:
            reason = (
                f"CUDA {best.library.cuda}: the highest CUDA version not newer than the driver "
                f"(CUDA {driver_cuda})" + (" with SASS for every GPU" if best.all_sass else "") + f"; {best.how}"
            )
        else:
            reason = (
                f"CUDA {best.library.cuda}: SASS for every GPU, preferred to the newer CUDA "
                f"{highest} build, which would JIT-compile PTX (driver: CUDA {driver_cuda}); "
                f"{best.how}"
            )
        others = [f.library for f in ranked[1:]]
        for f in minor:  # strictly compatible libraries were preferred
            others.append(f.library)
        return Selection((best.library, *others, *cpu_libs), reason, tuple(rejected_list))
    if minor:
        ranked = sorted(minor, key=lambda f: f.library.cuda or CudaVersion(0, 0))  # oldest first
        best = ranked[0]
        reason = (
            f"CUDA {best.library.cuda} under CUDA minor-version compatibility: no installed library "
            f"is as old as the driver (CUDA {driver_cuda}) and this one has SASS for every GPU "
            f"({best.how})"
        )
        note = (
            f"{best.library.name} is newer than the driver (CUDA {driver_cuda}); "
            f"upgrade to {hints.driver_for(best.library.cuda or CudaVersion(0, 0))} "
            "for full support"
        )
        return Selection(
            (best.library, *(f.library for f in ranked[1:]), *cpu_libs),
            reason,
            tuple(rejected_list),
            notes=(note,),
        )

    # No CUDA library can run: say why and what would help.
    if not cuda_libs:
        why = f"no CUDA library is installed for {gpu_text}"
        fix = f"install one: {hints.install_for(driver_cuda.major)}"
    else:
        why = f"no installed CUDA library can run on {gpu_text} with the driver (CUDA {driver_cuda})"
        fix = _advice(cuda_libs, probe, hints)
    reason = f"running on CPU: {why}"
    warning = f"kbit runs on CPU: {why}; {fix}"
    return _with_cpu(cpu_libs, reason + f" ({fix})", tuple(rejected_list), warning, libraries)


def _neg(version: CudaVersion | None) -> tuple[int, int]:
    assert version is not None
    return (-version.major, -version.minor)


def _advice(cuda_libs: Sequence[LibraryInfo], probe: DriverProbe, hints: Hints) -> str:
    """What to do when CUDA libraries are installed but none fits."""
    assert probe.driver is not None
    versions = sorted({lib.cuda for lib in cuda_libs if lib.cuda is not None})
    oldest = versions[0]
    driver_cuda = CudaVersion.from_api(probe.driver)
    if probe.driver < oldest.api:
        return (
            f"upgrade the NVIDIA driver to {hints.driver_for(oldest)}, "
            f"or install a kbit build for CUDA {driver_cuda.major}.x "
            f"no newer than {driver_cuda} ({hints.install_for(driver_cuda.major)})"
        )
    uncovered = [
        g
        for g in probe.gpus
        if not any(
            sass_covers(lib.sass, g) or ptx_covers(lib.ptx, g)
            for lib in cuda_libs
            if lib.cuda is not None and probe.driver >= lib.cuda.api
        )
    ]
    if uncovered:
        names = ", ".join(f"sm_{g.arch}" for g in uncovered)
        return (
            f"no installed library has code for {names}; install a kbit build that targets it "
            f"(newer CUDA, {hints.install_for(driver_cuda.major)}), or hide that GPU with "
            "CUDA_VISIBLE_DEVICES"
        )
    return f"upgrade the NVIDIA driver to {hints.driver_for(versions[-1])}"


def _with_cpu(
    cpu_libs: tuple[LibraryInfo, ...],
    reason: str,
    rejected: tuple[Rejection, ...],
    warning: str | None,
    libraries: Sequence[LibraryInfo],
) -> Selection:
    if not cpu_libs:
        reason = f"{reason}; and no CPU library is installed ({_installed(libraries)})"
    return Selection(cpu_libs, reason, rejected, warning)


def _tags(libraries: Sequence[LibraryInfo]) -> list[str]:
    tags = sorted({lib.cuda for lib in libraries if lib.cuda is not None})
    return [t.tag for t in tags] + (["cpu"] if any(lib.cuda is None for lib in libraries) else [])


def _forced(
    wanted: CudaVersion | str,
    raw: str,
    libraries: Sequence[LibraryInfo],
    cpu_libs: tuple[LibraryInfo, ...],
    cuda_libs: tuple[LibraryInfo, ...],
    probe: DriverProbe,
) -> Selection:
    setting = f"{ENV_CUDA_VERSION}={raw.strip()}"
    if wanted == "cpu":
        if not cpu_libs:
            raise OverrideError(
                f"{setting} asks for the CPU library, which is not installed ({_installed(libraries)})",
                fix=f"unset {ENV_CUDA_VERSION} or reinstall kbit",
            )
        return Selection(cpu_libs[:1], f"forced by {setting}", forced=True)
    assert isinstance(wanted, CudaVersion)
    matching = tuple(lib for lib in cuda_libs if lib.cuda == wanted)
    if not matching:
        raise OverrideError(
            f"{setting} asks for a CUDA {wanted} library, which is not installed ({_installed(libraries)})",
            fix=f"set {ENV_CUDA_VERSION} to one of the installed versions "
            f"({', '.join(_tags(libraries)) or 'none'}) or unset it",
        )
    chosen = matching[0]
    notes: list[str] = []
    if probe.driver is None:
        notes.append(f"{setting} forces {chosen.name} but no NVIDIA driver was found")
    else:
        fit = _fit(chosen, probe.driver, probe.gpus) if probe.gpus else "the driver sees no GPU"
        if isinstance(fit, str):
            notes.append(f"{setting} forces {chosen.name} although {fit}")
    return Selection((chosen,), f"forced by {setting}", forced=True, notes=tuple(notes))
