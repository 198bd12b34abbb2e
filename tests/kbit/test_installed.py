"""kbit as users get it: the wheel built from this repository (pip wheel, scikit-build-core,
CMake) installed into a fresh virtual environment, with a split distribution ``kbit-cu12`` built
and installed next to it as a real wheel that registers a ``kbit.libraries`` entry point.

The split wheel carries a copy of the CPU library (no CUDA library can be built in seconds here),
which is enough to prove it is found through the entry point, located without being imported, and
reported by ``python -m kbit``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SPLIT_PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "kbit-cu12"
version = "0.1.0"

[project.entry-points."kbit.libraries"]
cu12 = "kbit_cu12"

[tool.setuptools]
packages = ["kbit_cu12"]

[tool.setuptools.package-data]
kbit_cu12 = ["_lib/*"]
"""


def sh(*argv: object, cwd: Path | None = None) -> str:
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, f"{argv} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}"
    return proc.stdout


@pytest.mark.slow
def test_wheel_and_split_distribution(tmp_path: Path, kbit_library_dir: Path) -> None:
    wheels = tmp_path / "wheels"
    sh(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, ROOT)
    split = tmp_path / "split"
    (split / "kbit_cu12" / "_lib").mkdir(parents=True)
    (split / "pyproject.toml").write_text(SPLIT_PYPROJECT, encoding="utf-8")
    (split / "kbit_cu12" / "__init__.py").write_text(
        "raise RuntimeError('kbit must not import kbit_cu12')\n", encoding="utf-8"
    )
    for name in ("libkbit_cpu.so", "libkbit_cpu.json"):
        shutil.copy2(kbit_library_dir / name, split / "kbit_cu12" / "_lib" / name)
    sh(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", wheels, split)
    [kbit_wheel] = wheels.glob("kbit-*-py3-none-*.whl")
    [split_wheel] = wheels.glob("kbit_cu12-*.whl")

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True, system_site_packages=False)
    python = env_dir / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    sh(python, "-m", "pip", "install", "-q", kbit_wheel, split_wheel)

    env = {k: v for k, v in os.environ.items() if not k.startswith("KBIT_")}
    env.pop("PYTHONPATH", None)
    proc = subprocess.run(
        [str(python), "-m", "kbit", "--json"], cwd=tmp_path, env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["kbit"]["location"].startswith(str(env_dir))  # the installed copy, not src/
    sources = [(lib["source"], lib["status"]) for lib in doc["libraries"]]
    assert sources[0] == ("kbit", "selected")
    assert sources[1][0] in ("kbit_cu12 (kbit-cu12 0.1.0)", "kbit_cu12 (entry point cu12)")
    assert doc["problems"] == [] and doc["self_test"]["ok"] is True
    assert doc["status"].startswith("running on CPU: no NVIDIA driver found")
    out = subprocess.run(
        [
            str(python),
            "-c",
            (
                "import sys, numpy, kbit; kbit.quantize_4bit(numpy.ones(8, "
                "numpy.float32)); print('kbit_cu12' in sys.modules)"
            ),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == "False"
