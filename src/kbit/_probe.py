"""Probe the NVIDIA driver through the driver library itself (``libcuda``), with ctypes.

Never through torch, and never at import time: :func:`probe_driver` runs when the loader first
needs to choose a library (or when ``python -m kbit`` asks). The result is plain data
(:class:`DriverProbe`) so that the choice (:func:`kbit._select.select`) is a pure function of it.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from kbit._manifest import CudaVersion

# CUdevice_attribute values from cuda.h (stable since CUDA 2.x).
_ATTR_CC_MAJOR = 75
_ATTR_CC_MINOR = 76

# The few CUresult values worth naming when cuGetErrorName itself is unavailable.
_CU_ERRORS = {
    3: "CUDA_ERROR_NOT_INITIALIZED",
    35: "CUDA_ERROR_INSUFFICIENT_DRIVER",
    100: "CUDA_ERROR_NO_DEVICE",
    101: "CUDA_ERROR_INVALID_DEVICE",
    304: "CUDA_ERROR_OPERATING_SYSTEM",
    999: "CUDA_ERROR_UNKNOWN",
}


@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    cc: tuple[int, int]  # compute capability (major, minor)

    @property
    def arch(self) -> int:
        """The compute capability as an arch number: (8, 6) -> 86, (12, 0) -> 120."""
        return self.cc[0] * 10 + self.cc[1]

    def describe(self) -> str:
        return f"GPU {self.index}: {self.name} (compute capability {self.cc[0]}.{self.cc[1]})"


@dataclass(frozen=True)
class DriverProbe:
    """What the NVIDIA driver said, or why it could not be asked.

    ``library`` is None when no driver library could be opened (then ``error`` says why);
    ``driver`` is cuDriverGetVersion() (e.g. 12040); ``gpus`` is empty when cuInit or device
    enumeration failed (``error`` says why) or the driver sees no GPU. ``kernel_driver`` tells a
    machine with an NVIDIA GPU whose user-space driver (libcuda) is missing or broken apart from a
    machine without NVIDIA hardware.
    """

    library: str | None
    driver: int | None
    gpus: tuple[Gpu, ...]
    error: str | None = None
    kernel_driver: str | None = None  # the NVIDIA kernel module's release (Linux), e.g. 550.54.14

    @property
    def driver_cuda(self) -> CudaVersion | None:
        return None if self.driver is None else CudaVersion.from_api(self.driver)


def default_driver_names(platform: str = sys.platform) -> tuple[str, ...]:
    if platform.startswith("linux"):
        return ("libcuda.so.1", "libcuda.so")
    if platform == "win32":
        return ("nvcuda.dll",)
    return ()  # macOS and others: NVIDIA ships no CUDA driver


def _error_name(lib: ctypes.CDLL, status: int) -> str:
    try:
        get_name = lib.cuGetErrorName
    except AttributeError:
        return _CU_ERRORS.get(status, f"CUresult {status}")
    text = ctypes.c_char_p()
    if get_name(ctypes.c_int(status), ctypes.byref(text)) == 0 and text.value:
        return f"{text.value.decode(errors='replace')} ({status})"
    return _CU_ERRORS.get(status, f"CUresult {status}")


def _open(names: Sequence[str]) -> tuple[ctypes.CDLL | None, str]:
    errors: list[str] = []
    for name in names:
        try:
            return ctypes.CDLL(name), name
        except OSError as exc:
            errors.append(str(exc) or name)
    if not names:
        return None, f"no NVIDIA CUDA driver exists for this platform ({sys.platform})"
    return None, errors[0]  # the first name is the real one; the rest are the same story


def kernel_driver_release(path: str = "/sys/module/nvidia/version") -> str | None:
    """The loaded NVIDIA kernel module's release (Linux), or None."""
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip() or None
    except OSError:
        return None


def probe_driver(
    names: Sequence[str] | None = None, kernel_version_file: str = "/sys/module/nvidia/version"
) -> DriverProbe:
    """Ask the driver library for its version and the GPUs' compute capabilities.

    ``names`` are the library names or paths to try (default: ``libcuda.so.1`` on Linux,
    ``nvcuda.dll`` on Windows). Never raises: every failure becomes ``DriverProbe.error``.
    """
    kernel = kernel_driver_release(kernel_version_file)
    lib, name_or_error = _open(default_driver_names() if names is None else names)
    if lib is None:
        return DriverProbe(None, None, (), f"no NVIDIA driver found: {name_or_error}", kernel)
    name = name_or_error
    try:
        found = _query(lib, name)
    except AttributeError as exc:  # a library without the driver API's symbols
        found = DriverProbe(name, None, (), f"{name} is not a usable CUDA driver: {exc}")
    return DriverProbe(found.library, found.driver, found.gpus, found.error, kernel)


def _query(lib: ctypes.CDLL, name: str) -> DriverProbe:
    version = ctypes.c_int(0)
    status = lib.cuDriverGetVersion(ctypes.byref(version))
    if status != 0:
        return DriverProbe(name, None, (), f"cuDriverGetVersion failed: {_error_name(lib, status)}")
    driver = version.value
    status = lib.cuInit(ctypes.c_uint(0))
    if status != 0:
        return DriverProbe(name, driver, (), f"cuInit failed: {_error_name(lib, status)}")
    count = ctypes.c_int(0)
    status = lib.cuDeviceGetCount(ctypes.byref(count))
    if status != 0:
        return DriverProbe(name, driver, (), f"cuDeviceGetCount failed: {_error_name(lib, status)}")
    gpus: list[Gpu] = []
    for index in range(count.value):
        gpu = _query_device(lib, index)
        if isinstance(gpu, str):
            return DriverProbe(name, driver, tuple(gpus), gpu)
        gpus.append(gpu)
    return DriverProbe(name, driver, tuple(gpus), None)


def _query_device(lib: ctypes.CDLL, index: int) -> Gpu | str:
    device = ctypes.c_int(0)
    call: Callable[..., int] = lib.cuDeviceGet
    status = call(ctypes.byref(device), ctypes.c_int(index))
    if status != 0:
        return f"cuDeviceGet({index}) failed: {_error_name(lib, status)}"
    cc: list[int] = []
    for attribute in (_ATTR_CC_MAJOR, _ATTR_CC_MINOR):
        value = ctypes.c_int(0)
        status = lib.cuDeviceGetAttribute(ctypes.byref(value), ctypes.c_int(attribute), device)
        if status != 0:
            return f"cuDeviceGetAttribute({attribute}) on GPU {index} failed: {_error_name(lib, status)}"
        cc.append(value.value)
    buffer = ctypes.create_string_buffer(256)
    status = lib.cuDeviceGetName(buffer, ctypes.c_int(len(buffer)), device)
    gpu_name = buffer.value.decode(errors="replace") if status == 0 else f"GPU {index}"
    return Gpu(index, gpu_name, (cc[0], cc[1]))
