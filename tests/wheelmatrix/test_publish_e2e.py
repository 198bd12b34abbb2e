"""The Done-when of staged publishing, for real: ``wheelmatrix release`` of kbit's own wheels against
two local indexes (pypiserver on 127.0.0.1, htpasswd, ``--disable-fallback``) standing in for
TestPyPI and PyPI. It checks the release, publishes it to the first index, verifies it there on
Python 3.9–3.13 (every one pyenv has here), publishes the byte-identical files to the second and
verifies them there too; each index's sha256 of every file must equal the local file's.

kbit's release comes from the repository's ``dist/`` when ``nox -s build`` made one (a passing check
report), else it is built here (``wheelmatrix build`` + ``assemble``, as ``nox -s build`` does).
kbit requires numpy: the "production index" for requirements is a third local pypiserver holding
numpy wheels for each Python, downloaded from PyPI once into the test cache
(``$WHEELMATRIX_TEST_CACHE_DIR``). Slow (a build when dist/ is absent, ten venv installs): CI runs it.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from filelock import FileLock
from index_servers import USER, IndexServer, indexes, no_pip_config_env, start_index, stop_index, with_publish

from build_fixtures.project import REPO
from wheelmatrix.cli import main
from wheelmatrix.index import read_project
from wheelmatrix.stages.check import find_python
from wheelmatrix.toolchains.fetch import file_sha256

pytestmark = pytest.mark.slow
PASSWORD = "wm-e2e-" + secrets.token_hex(12)
PYTHONS = ("3.9", "3.10", "3.11", "3.12", "3.13")


def _passing(dist: Path) -> bool:
    try:
        return bool(json.loads((dist / "check-report.json").read_text())["passed"])
    except (OSError, ValueError, KeyError):
        return False


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of kbit's release: the repository's dist/ (nox -s build's), else built here."""
    tmp = tmp_path_factory.mktemp("kbit-release")
    out = tmp / "dist"
    repo_dist = REPO / "dist"
    if _passing(repo_dist):
        out.mkdir()
        for p in repo_dist.iterdir():
            if p.suffix == ".whl" or p.name in ("build-record.json", "check-report.json"):
                shutil.copyfile(p, out / p.name)
        return out
    matrix, work = str(REPO / "matrix.toml"), str(tmp / "work")
    assert main(["build", "--matrix", matrix, "--work", work, "-q"]) == 0
    assert main(["assemble", "--matrix", matrix, "--work", work, "--dist", str(out), "-q"]) == 0
    return out


def _numpy_wheels() -> Path:
    """numpy wheels for every Python of the release, from PyPI once (``pip download``), then cached."""
    root = Path(os.environ.get("WHEELMATRIX_TEST_CACHE_DIR") or Path.home() / ".cache" / "wheelmatrix")
    folder = root / "test-indexes" / "numpy"
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        if folder.is_dir():
            return folder
        part = folder.with_name("numpy.part")
        shutil.rmtree(part, ignore_errors=True)
        for version in PYTHONS:
            tag = version.replace(".", "")
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                 "--index-url", "https://pypi.org/simple/", "--python-version", version, "--implementation", "cp",
                 "--abi", f"cp{tag}", "--platform", "manylinux_2_28_x86_64", "--platform", "manylinux_2_17_x86_64",
                 "--platform", "manylinux2014_x86_64", "--dest", str(part), "numpy>=1.22"],
                check=True, env=no_pip_config_env(),
            )  # fmt: skip
        part.rename(folder)
    return folder


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[list[IndexServer], IndexServer]]:
    root = tmp_path_factory.mktemp("indexes")
    deps = start_index(root, "production-deps", None, folder=_numpy_wheels())
    try:
        with indexes(root, PASSWORD) as stages:
            yield stages, deps
    finally:
        stop_index(deps)


def test_release_of_kbit_through_two_local_indexes(
    dist: Path, servers: tuple[list[IndexServer], IndexServer], tmp_path: Path
) -> None:
    stages, deps = servers
    missing = [v for v in PYTHONS if find_python(v) is None]
    assert not missing, f"Python {', '.join(missing)} not on this host (pyenv holds 3.8-3.13 here)"
    text = (REPO / "matrix.toml").read_text().replace("[project]\n", f'[project]\nsource = "{REPO}"\n', 1)
    matrix = tmp_path / "matrix.toml"
    matrix.write_text(with_publish(text, stages))
    env = no_pip_config_env()
    env.update({"TWINE_USERNAME": USER, "TWINE_PASSWORD": PASSWORD})
    argv = [sys.executable, "-m", "wheelmatrix", "release", "--matrix", str(matrix), "--dist", str(dist),
            "--work", str(tmp_path / "work"), "--deps-index-url", deps.simple]  # fmt: skip
    start = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, env=env, check=False, cwd=tmp_path)
    seconds = time.monotonic() - start
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "Traceback" not in out and PASSWORD not in out
    print(f"\nwheelmatrix release of kbit: {seconds:.1f} s\n{proc.stdout}")

    local = {p.name: file_sha256(p) for p in sorted(dist.glob("*.whl"))}
    assert local, "no wheel in the release"
    for server in stages:  # the same bytes on both indexes, nothing else
        listed = {name: f.sha256 for name, f in read_project(server.simple, "kbit").items()}
        assert listed == local, server.name
        assert server.files() == sorted(local)

    record = json.loads((dist / "publish-record.json").read_text())
    assert PASSWORD not in json.dumps(record)
    for server in stages:
        verified = record["stages"][server.name]["verified"]
        assert verified["files"] == local and verified["deps_index_url"] == deps.simple
        linux = [i for i in verified["installs"] if "manylinux" in i["file"] and "x86_64" in i["file"]]
        assert {i["python"] for i in linux if i["status"] == "passed"} == set(PYTHONS), linux
        assert all(server.simple in i["reason"] for i in linux)
