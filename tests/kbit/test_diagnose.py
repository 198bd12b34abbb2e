"""``python -m kbit``: run for real as a subprocess on this GPU-less machine, and through
:func:`kbit._diagnose.collect` with a MOCKED probe for the GPU cases (no GPU here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kbit._diagnose import SCHEMA, collect, render
from kbit._probe import DriverProbe, Gpu
from test_loader import copy_cpu, corrupt_cuda, manifest

NO_DRIVER = DriverProbe(None, None, (), "no NVIDIA driver found: libcuda.so.1: cannot open")
A100 = DriverProbe("libcuda.so.1", 12040, (Gpu(0, "NVIDIA A100 (mocked)", (8, 0)),))


def run_kbit(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("KBIT_")}
    full.update(env)
    return subprocess.run([sys.executable, "-m", "kbit", *args], env=full, capture_output=True, text=True, check=False)


def test_cpu_only_machine_is_healthy(kbit_library_dir: Path) -> None:
    proc = run_kbit(env={"KBIT_LIBRARY_DIR": str(kbit_library_dir)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert proc.stderr == ""  # no traceback, no warning: CPU is right on a machine without GPU
    assert "driver       none: no NVIDIA driver found" in out
    assert "GPUs         none" in out
    assert "  * libkbit_cpu" in out
    assert "self-test    ok" in out
    last = out.strip().splitlines()[-1]
    assert last.startswith("status       healthy: running on CPU: no NVIDIA driver found")
    assert "libc         glibc" in out or not sys.platform.startswith("linux")
    assert "KBIT_LIBRARY_DIR=" in out and "KBIT_CUDA_VERSION (unset)" in out


def test_json_document(kbit_library_dir: Path) -> None:
    proc = run_kbit("--json", env={"KBIT_LIBRARY_DIR": str(kbit_library_dir)})
    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    assert doc["schema"] == SCHEMA == 1
    assert doc["healthy"] is True
    assert doc["driver"]["found"] is False and doc["gpus"] == []
    assert doc["selected"]["backend"] == "cpu" and doc["selected"]["cuda"] is None
    assert [lib["status"] for lib in doc["libraries"]] == ["selected"]
    assert {f["name"]: f["available"] for f in doc["features"]}["CUDA kernels"] is False
    assert doc["environment"]["KBIT_LIBRARY_DIR"] == str(kbit_library_dir)
    assert doc["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert set(doc) == {
        "schema",
        "kbit",
        "platform",
        "python",
        "libc",
        "driver",
        "gpus",
        "libraries",
        "problems",
        "selected",
        "load_failures",
        "error",
        "warning",
        "features",
        "environment",
        "self_test",
        "healthy",
        "status",
    }


def test_corrupt_forced_library_is_unhealthy(kbit_library_dir: Path, tmp_path: Path) -> None:
    copy_cpu(kbit_library_dir, tmp_path)
    bad = corrupt_cuda(tmp_path)
    proc = run_kbit(env={"KBIT_LIBRARY_DIR": str(tmp_path), "KBIT_CUDA_VERSION": "124"})
    assert proc.returncode == 1 and proc.stderr == ""
    assert f"load failed  {bad}: cannot load {bad}:" in proc.stdout
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("status       UNHEALTHY: no kbit library could be loaded: forced by KBIT_CUDA_VERSION=124")


def test_malformed_override_is_unhealthy_without_traceback(kbit_library_dir: Path) -> None:
    proc = run_kbit(env={"KBIT_LIBRARY_DIR": str(kbit_library_dir), "KBIT_CUDA_VERSION": "12"})
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    assert "UNHEALTHY: KBIT_CUDA_VERSION='12' is not a CUDA version" in proc.stdout
    assert "fix: set KBIT_CUDA_VERSION to a CUDA version like 124 or 12.4" in proc.stdout


def test_bad_command_line() -> None:
    proc = run_kbit("--bogus", env={})
    assert proc.returncode == 2 and "unrecognized arguments: --bogus" in proc.stderr


def test_gpu_without_cuda_library_is_unhealthy(kbit_library_dir: Path) -> None:
    doc = collect({"KBIT_LIBRARY_DIR": str(kbit_library_dir)}, A100, self_test=False)
    assert doc["healthy"] is False
    assert doc["status"].startswith("running on CPU: no CUDA library is installed for NVIDIA A100")
    assert "pip install 'kbit[cu12]'" in doc["status"]
    assert doc["gpus"] == [{"index": 0, "name": "NVIDIA A100 (mocked)", "compute_capability": "8.0", "arch": 80}]
    text = render(doc)
    assert "GPU 0        NVIDIA A100 (mocked), compute capability 8.0 (sm_80)" in text
    assert "driver       CUDA 12.4 (cuDriverGetVersion 12040" in text


def test_gpu_forced_to_cpu_is_healthy(kbit_library_dir: Path) -> None:
    doc = collect({"KBIT_LIBRARY_DIR": str(kbit_library_dir), "KBIT_CUDA_VERSION": "cpu"}, A100, self_test=False)
    assert doc["healthy"] is True and doc["selected"]["forced"] is True


def test_rejected_and_problem_libraries_are_listed(kbit_library_dir: Path, tmp_path: Path) -> None:
    copy_cpu(kbit_library_dir, tmp_path)
    corrupt_cuda(tmp_path, "libkbit_cuda130")
    manifest(tmp_path, "libkbit_cuda130", cuda="13.0")
    (tmp_path / "libkbit_cuda118.json").write_text("{", encoding="utf-8")
    doc = collect({"KBIT_LIBRARY_DIR": str(tmp_path)}, A100, self_test=False)
    by_file = {lib["file"]: lib for lib in doc["libraries"]}
    assert by_file["libkbit_cuda130.so"]["status"] == "rejected"
    assert "needs a CUDA 13.x driver" in by_file["libkbit_cuda130.so"]["reason"]
    assert doc["problems"][0]["problem"].startswith("the manifest is not valid JSON")
    assert doc["healthy"] is False and doc["status"].startswith("broken installation:")
    text = render(doc)
    assert "      rejected: built with CUDA 13.0, which needs a CUDA 13.x driver" in text
    assert "libkbit_cuda118.json: the manifest is not valid JSON" in text


@pytest.mark.parametrize("probe", [NO_DRIVER, A100])
def test_render_names_every_section(kbit_library_dir: Path, probe: DriverProbe) -> None:
    text = render(collect({"KBIT_LIBRARY_DIR": str(kbit_library_dir)}, probe, self_test=False))
    for head in (
        "kbit ",
        "platform",
        "python",
        "libc",
        "driver",
        "libraries",
        "selected",
        "unavailable",
        "environment",
        "status",
    ):
        assert any(line.startswith(head) for line in text.splitlines()), head


SCHEMA_FILE = Path(__file__).resolve().parents[2] / "src" / "kbit" / "_data" / "diagnose.schema.json"


@pytest.mark.parametrize("probe", [NO_DRIVER, A100])
def test_document_matches_its_schema(kbit_library_dir: Path, tmp_path: Path, probe: DriverProbe) -> None:
    import jsonschema

    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator.check_schema(schema)
    copy_cpu(kbit_library_dir, tmp_path)
    corrupt_cuda(tmp_path)
    (tmp_path / "libkbit_cuda118.json").write_text("{", encoding="utf-8")
    for env in (
        {"KBIT_LIBRARY_DIR": str(tmp_path)},
        {"KBIT_LIBRARY_DIR": str(tmp_path), "KBIT_CUDA_VERSION": "124"},
        {"KBIT_LIBRARY_DIR": str(tmp_path), "KBIT_CUDA_VERSION": "x"},
        {"KBIT_LIBRARY_DIR": str(kbit_library_dir)},
    ):
        doc = collect(env, probe, self_test=False)
        jsonschema.validate(json.loads(json.dumps(doc)), schema)
    assert schema["properties"]["schema"]["const"] == SCHEMA


def test_kernel_module_without_libcuda_is_shown(kbit_library_dir: Path) -> None:
    probe = DriverProbe(None, None, (), "no NVIDIA driver found: libcuda.so.1: cannot open", kernel_driver="550.54.14")
    doc = collect({"KBIT_LIBRARY_DIR": str(kbit_library_dir)}, probe, self_test=False)
    assert doc["driver"]["release"] == "550.54.14" and doc["driver"]["found"] is False
    assert "(the NVIDIA kernel module 550.54.14 is loaded)" in render(doc)
    assert doc["warning"] is not None and "install the user-space driver" in doc["warning"]
