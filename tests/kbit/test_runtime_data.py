"""src/kbit/_data/runtime.json: the driver floors in kbit's messages agree with the toolkit's CUDA
fact table (packaging/wheelmatrix/data/cuda.toml), and the install hint names the extra that
matrix.toml's packaging policy creates (``cu{major}``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from kbit._loader import load_hints

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "src" / "kbit" / "_data" / "runtime.json"


def _toml(path: Path) -> dict[str, object]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # a test dependency before 3.11
        import tomli as tomllib
    return tomllib.loads(path.read_text(encoding="utf-8"))


def test_driver_floors_match_cuda_toml() -> None:
    data = json.loads(DATA.read_text(encoding="utf-8"))
    cuda = _toml(ROOT / "packaging" / "wheelmatrix" / "data" / "cuda.toml")
    versions = cuda["versions"]
    majors = cuda["majors"]
    assert isinstance(versions, dict) and isinstance(majors, dict)
    assert set(data["versions"]) == set(versions)
    for version, floors in data["versions"].items():
        assert floors == {
            "linux": versions[version]["min-driver-linux"],
            "windows": versions[version]["min-driver-windows"],
        }, version
    for major, floors in data["majors"].items():
        assert floors == {"linux": majors[major]["min-driver-linux"], "windows": majors[major]["min-driver-windows"]}, (
            major
        )


def test_hints_loaded_per_platform() -> None:
    linux, windows = load_hints("linux"), load_hints("win32")
    assert linux.driver_floors["12.4"] == "550.54.14"
    assert windows.driver_floors["12.4"] == "551.61"
    assert linux.install_for(12) == "pip install 'kbit[cu12]'"


def test_version_matches_pyproject() -> None:
    import re

    import kbit

    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    found = re.search(r'^\[project\][^[]*?^version = "([^"]+)"', text, re.MULTILINE | re.DOTALL)
    assert found is not None
    assert kbit.__version__ == found.group(1)  # the library reports it too (test_loader)
