"""ctypes bindings of one native kbit library (the ABI in csrc/include/kbit.h)."""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kbit._errors import KbitValueError, KernelError, LibraryLoadError
from kbit._manifest import CudaVersion, LibraryInfo

ABI_VERSION = 1

# enum values from kbit.h
DTYPES = {"float32": 0, "float16": 1, "bfloat16": 2}
CODES8 = {"dynamic": 0, "linear": 1}
CODES4 = {"nf4": 0, "fp4": 1}
STATUS = {
    1: "KBIT_ERR_INVALID_ARGUMENT",
    2: "KBIT_ERR_UNSUPPORTED",
    3: "KBIT_ERR_CUDA",
    4: "KBIT_ERR_NO_DEVICE",
    5: "KBIT_ERR_OUT_OF_MEMORY",
}

_c_int = ctypes.c_int
_c_ptr = ctypes.c_void_p
_c_i64 = ctypes.c_int64
_KERNEL_ARGS = [_c_int, _c_int, _c_ptr, _c_ptr, _c_ptr, _c_i64, _c_int]


@dataclass(frozen=True)
class Identity:
    """What the library says about itself (read through the ABI, not the manifest)."""

    abi: int
    version: str
    backend: str
    cuda: CudaVersion | None
    cuda_runtime: CudaVersion | None
    sass: tuple[int, ...]
    ptx: tuple[int, ...]


def _archs(text: str) -> tuple[int, ...]:
    return tuple(sorted({int(p) for p in text.replace(",", ";").split(";") if p.strip()}))


def nvidia_roots() -> list[Path]:
    """Folders of the ``nvidia`` namespace package (NVIDIA's runtime wheels), found, not imported."""
    import importlib.util

    try:
        spec = importlib.util.find_spec("nvidia")
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    return [Path(p) for p in spec.submodule_search_locations]


def dll_search_dirs(info: LibraryInfo, roots: Sequence[Path]) -> list[Path]:
    """Windows: where a library's DLL dependencies are (Python 3.8+ ignores PATH for them): its own
    folder, and for a shared CUDA runtime the ``bin`` folders of NVIDIA's runtime wheels
    (``nvidia/cu13/bin`` from CUDA 13, ``nvidia/cuda_runtime/bin`` before). On Linux the library's
    RUNPATH does this job."""
    dirs = [info.path.parent]
    if info.runtime == "shared" and info.cuda is not None:
        for root in roots:
            for sub in (root / f"cu{info.cuda.major}" / "bin", root / "cuda_runtime" / "bin"):
                if sub.is_dir():
                    dirs.append(sub)
    return dirs


class NativeLibrary:
    """A loaded library: its manifest, its identity and its four kernels."""

    def __init__(self, info: LibraryInfo) -> None:
        self.info = info
        self._dll_dirs: list[Any] = []
        if sys.platform == "win32":
            for d in dll_search_dirs(info, nvidia_roots()):
                self._dll_dirs.append(os.add_dll_directory(str(d)))
        try:
            self._lib = ctypes.CDLL(str(info.path))
        except OSError as exc:
            raise LibraryLoadError(
                str(info.path),
                str(exc) or type(exc).__name__,
                fix=f"reinstall the package that provides it ({info.source}), or remove it",
            ) from None
        try:
            self._bind()
        except AttributeError as exc:
            raise LibraryLoadError(str(info.path), f"not a kbit library (missing symbol: {exc})") from None
        self.identity = self._identity()
        self._check_identity()

    def _bind(self) -> None:
        lib = self._lib
        for name in ("kbit_abi_version", "kbit_cuda_version", "kbit_cuda_runtime_version", "kbit_device_count"):
            getattr(lib, name).restype = _c_int
            getattr(lib, name).argtypes = []
        for name in ("kbit_version", "kbit_backend", "kbit_sass_archs", "kbit_ptx_archs", "kbit_last_error"):
            getattr(lib, name).restype = ctypes.c_char_p
            getattr(lib, name).argtypes = []
        for name in (
            "kbit_quantize_blockwise",
            "kbit_dequantize_blockwise",
            "kbit_quantize_4bit",
            "kbit_dequantize_4bit",
        ):
            getattr(lib, name).restype = _c_int
            getattr(lib, name).argtypes = _KERNEL_ARGS

    def _text(self, name: str) -> str:
        value = getattr(self._lib, name)()
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else ""

    def _identity(self) -> Identity:
        abi = int(self._lib.kbit_abi_version())
        if abi != ABI_VERSION:
            raise LibraryLoadError(
                str(self.info.path),
                f"ABI version {abi}, this kbit needs ABI {ABI_VERSION}",
                fix="install matching versions of kbit and its library packages",
            )
        cuda = int(self._lib.kbit_cuda_version())
        runtime = int(self._lib.kbit_cuda_runtime_version())
        return Identity(
            abi=abi,
            version=self._text("kbit_version"),
            backend=self._text("kbit_backend"),
            cuda=CudaVersion.from_api(cuda) if cuda else None,
            cuda_runtime=CudaVersion.from_api(runtime) if runtime else None,
            sass=_archs(self._text("kbit_sass_archs")),
            ptx=_archs(self._text("kbit_ptx_archs")),
        )

    def _check_identity(self) -> None:
        ident, info = self.identity, self.info
        mismatches = []
        if ident.backend != info.backend:
            mismatches.append(f"backend {ident.backend!r} (manifest {info.backend!r})")
        if ident.cuda != info.cuda:
            mismatches.append(f"CUDA {ident.cuda} (manifest {info.cuda})")
        if ident.sass != info.sass or ident.ptx != info.ptx:
            mismatches.append(
                f"archs SASS {list(ident.sass)} PTX {list(ident.ptx)} "
                f"(manifest SASS {list(info.sass)} PTX {list(info.ptx)})"
            )
        if mismatches:
            raise LibraryLoadError(
                str(info.path),
                "the library does not match its manifest: reports " + ", ".join(mismatches),
                fix=f"reinstall the package that provides it ({info.source})",
            )

    def device_count(self) -> int:
        return int(self._lib.kbit_device_count())

    def last_error(self) -> str:
        return self._text("kbit_last_error")

    def call(self, function: str, dtype: str, code: int, a: int, b: int, c: int, n: int, blocksize: int) -> None:
        """Run one kernel (pointers as ints); raise :class:`KernelError` on a non-zero status."""
        status = int(getattr(self._lib, function)(DTYPES[dtype], code, a, b, c, n, blocksize))
        if status != 0:
            detail = self.last_error()
            name = STATUS.get(status, "unknown status")
            if status == 1:
                raise KbitValueError(f"{function}: {detail or name}")
            raise KernelError(function, status, f"{name}: {detail}" if detail else name)
