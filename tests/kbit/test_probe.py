"""The driver probe, run for real through ctypes.

This machine has no NVIDIA driver: the "no driver" case below is the real one. The cases with a
driver load a stand-in libcuda compiled from fake_libcuda/fake_libcuda.c (the real driver needs a
GPU): the probe's ctypes calls run for real, only the driver's answers are scripted.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from kbit._probe import DriverProbe, Gpu, default_driver_names, probe_driver


def test_no_driver_on_this_machine() -> None:
    probe = probe_driver()
    if probe.library is not None:  # pragma: no cover - only on a machine with a driver
        assert probe.driver is not None
        return
    assert probe == DriverProbe(None, None, (), probe.error)
    assert probe.error is not None and probe.error.startswith("no NVIDIA driver found: ")
    assert "libcuda.so.1" in probe.error


def test_missing_library_reports_the_first_name(tmp_path: Path) -> None:
    probe = probe_driver(
        [str(tmp_path / "nope.so"), str(tmp_path / "nope2.so")], kernel_version_file=str(tmp_path / "absent")
    )
    assert probe.kernel_driver is None
    assert probe.library is None and probe.error is not None
    assert probe.error == (
        f"no NVIDIA driver found: {tmp_path / 'nope.so'}: cannot open shared object file: No such file or directory"
    )


def test_not_a_driver(tmp_path: Path) -> None:
    import ctypes.util

    libm = ctypes.util.find_library("m")
    assert libm is not None
    probe = probe_driver([libm])
    assert probe.library == libm and probe.driver is None
    assert probe.error is not None and "is not a usable CUDA driver" in probe.error


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"FAKE_CUDA_DRIVER": "12040", "FAKE_CUDA_GPUS": "86"}, (12040, ((8, 6),), None)),
        ({"FAKE_CUDA_DRIVER": "13000", "FAKE_CUDA_GPUS": "90,120,61"}, (13000, ((9, 0), (12, 0), (6, 1)), None)),
        ({"FAKE_CUDA_DRIVER": "12080", "FAKE_CUDA_GPUS": ""}, (12080, (), None)),
        (
            {"FAKE_CUDA_DRIVER": "12040", "FAKE_CUDA_INIT": "100", "FAKE_CUDA_GPUS": "86"},
            (12040, (), "cuInit failed: CUDA_ERROR_NO_DEVICE (100)"),
        ),
        (
            {"FAKE_CUDA_DRIVER": "11080", "FAKE_CUDA_INIT": "35", "FAKE_CUDA_GPUS": "86"},
            (11080, (), "cuInit failed: CUDA_ERROR_INSUFFICIENT_DRIVER"),
        ),
    ],
    ids=["one-gpu", "three-gpus", "no-gpu", "no-device", "insufficient-driver"],
)
def test_fake_driver(
    fake_libcuda: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    env: dict[str, str],
    expected: tuple[object, ...],
) -> None:
    for key in ("FAKE_CUDA_DRIVER", "FAKE_CUDA_INIT", "FAKE_CUDA_GPUS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    release = tmp_path / "version"
    release.write_text("550.54.14\n")
    probe = probe_driver([str(fake_libcuda)], kernel_version_file=str(release))
    assert probe.kernel_driver == "550.54.14"
    driver, ccs, error = expected
    assert probe.library == str(fake_libcuda)
    assert probe.driver == driver
    assert tuple(g.cc for g in probe.gpus) == ccs
    assert [g.name for g in probe.gpus] == [f"Fake GPU sm_{c[0]}{c[1]}" for c in ccs]
    assert probe.error == error


def test_gpu_arch() -> None:
    assert Gpu(0, "x", (8, 6)).arch == 86
    assert Gpu(0, "x", (12, 0)).arch == 120
    assert Gpu(0, "x", (10, 3)).describe() == "GPU 0: x (compute capability 10.3)"


def test_default_driver_names() -> None:
    assert default_driver_names("linux") == ("libcuda.so.1", "libcuda.so")
    assert default_driver_names("win32") == ("nvcuda.dll",)
    assert default_driver_names("darwin") == ()
    probe = probe_driver([])
    assert probe.error is not None and "no NVIDIA CUDA driver exists for this platform" in probe.error
