"""One prepared build environment, reused by every cell, instead of a fresh isolated one per cell.

``python -m build`` makes a new virtual environment for every wheel and installs the project's
build requirements into it (PEP 517 isolation): seconds per cell, over and over. The toolkit makes
that environment once per (Python, build requirements) under ``<root>/<key>/`` (the toolkit's cache:
``$WHEELMATRIX_CACHE_DIR/build-envs``), with ``build`` and what the backend asks for
(``get_requires_for_build_wheel``: scikit-build-core adds ``cmake``/``ninja`` only where none is
found), and builds every cell in it with ``python -m build --no-isolation``. It is as isolated
from the toolkit's own environment as before: only the project's build requirements are in it.

In that environment the cell calls the backend's ``build_wheel`` hook itself, in one process
(:func:`backend_argv`): what ``python -m build --no-isolation`` does, less its own start, its
dependency check (the environment was made from those requirements) and a second process per hook.

Made in a staging folder and renamed into place under a file lock, so concurrent builds make it
once and a killed one leaves no half-made environment behind.

Per-Python cells (``[project] python-api`` other than ``none``) are built by their own CPython,
each in its variant's one build tree, so they cannot use an environment of the toolkit's Python:
they share **one folder** of the project's build requirements (plus ``build``), installed once by
the oldest CPython of the plan with ``pip install --target`` and put on ``PYTHONPATH`` for every
interpreter (:func:`prepare_shared`). One folder for every Python matters: scikit-build-core
clears a build tree whose scikit-build-core moved, so an environment per interpreter would
recompile the kernels for each Python.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from filelock import FileLock

from wheelmatrix import _proc
from wheelmatrix.errors import BuildError, WheelmatrixError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

READY = "wheelmatrix-env.json"
FORMAT = 1
_REQUIRES = """
import json, sys
from build import ProjectBuilder
builder = ProjectBuilder(sys.argv[1])
print(json.dumps(sorted(builder.get_requires_for_build("wheel"))))
"""


# the PEP 517 build_wheel hook, called in the prepared environment (argv: outdir, source, settings)
_BUILD_WHEEL = """
import importlib, json, os, sys
try:
    import tomllib
except ImportError:
    import tomli as tomllib
out, source, settings = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
with open(os.path.join(source, "pyproject.toml"), "rb") as fh:
    system = tomllib.load(fh).get("build-system", {})
for extra in reversed(system.get("backend-path", [])):
    sys.path.insert(0, os.path.join(source, extra))
module, _, attr = system.get("build-backend", "setuptools.build_meta:__legacy__").partition(":")
backend = importlib.import_module(module)
for part in filter(None, attr.split(".")):
    backend = getattr(backend, part)
os.chdir(source)
print("* built " + backend.build_wheel(out, settings), flush=True)
"""


def backend_argv(python: str, source: Path, outdir: Path, settings: list[str]) -> list[str]:
    """The command that builds ``source``'s wheel into ``outdir`` with the config ``settings``
    (``KEY=VALUE``, as ``python -m build -C``) in the prepared environment of ``python``."""
    config: dict[str, str | list[str]] = {}
    for item in settings:
        key, _, value = item.partition("=")
        old = config.get(key)
        config[key] = value if old is None else [*(old if isinstance(old, list) else [old]), value]
    outdir.mkdir(parents=True, exist_ok=True)
    script = Path(python).parent.parent / "wheelmatrix_build_wheel.py"
    if not script.is_file() or script.read_text() != _BUILD_WHEEL:
        tmp = script.with_name(f"{script.name}.{os.getpid()}.{threading.get_ident()}")
        tmp.write_text(_BUILD_WHEEL)
        tmp.replace(script)
    return [python, str(script), str(outdir), str(source), json.dumps(config)]


def build_requires(source: Path) -> list[str]:
    """``[build-system] requires`` of the project's pyproject.toml (PEP 518's default without one)."""
    path = source / "pyproject.toml"
    try:
        doc = tomllib.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BuildError(f"cannot read the build requirements of {path}: {exc}") from exc
    requires = doc.get("build-system", {}).get("requires", ["setuptools>=40.8.0"])
    return sorted(str(r) for r in requires)


def _python_identity(python: str) -> str:
    done = _proc.run([python, "-c", "import sys; print(sys.version); print(sys.prefix)"], timeout=60)
    return done.output.strip()


def env_python(env: Path) -> Path:
    return env / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def prepare(source: Path, root: Path, *, python: str = sys.executable, timeout: float = 1800) -> Path:
    """The Python of the prepared build environment for ``source``'s project (made once)."""
    requires = build_requires(source)
    key = hashlib.sha256(
        json.dumps({"format": FORMAT, "requires": requires, "python": _python_identity(python)}).encode()
    ).hexdigest()[:16]
    env = root / key
    root.mkdir(parents=True, exist_ok=True)
    with FileLock(str(root / f"{key}.lock"), thread_local=False):
        if (env / READY).is_file():
            return env_python(env)
        staging = Path(tempfile.mkdtemp(prefix=f"{key}.", dir=root))
        try:
            # venv's python is a link to the base interpreter: the folder may be renamed after
            _proc.run([python, "-m", "venv", staging], timeout=timeout)
            exe = str(env_python(staging))
            pip = [exe, "-m", "pip", "install", "--disable-pip-version-check", "-q"]
            _proc.run([*pip, "build>=1.2", *requires], timeout=timeout)
            done = _proc.run([exe, "-c", _REQUIRES, source], timeout=timeout)
            dynamic = json.loads(done.output.strip().splitlines()[-1])
            if dynamic:
                _proc.run([*pip, *dynamic], timeout=timeout)
            (staging / READY).write_text(json.dumps({"requires": requires, "dynamic": dynamic}) + "\n")
            shutil.rmtree(env, ignore_errors=True)
            staging.rename(env)
        except (subprocess.SubprocessError, ValueError, IndexError) as exc:
            raise BuildError(f"cannot prepare the build environment {env}: {exc}") from exc
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return env_python(env)


def shared_requires(source: Path) -> list[str]:
    """What the per-Python cells' shared folder holds: ``[build-system] requires`` plus ``build``."""
    return sorted({*build_requires(source), "build>=1.2"})


def prepare_shared(work: Path, source: Path, oldest: str, timeout: float) -> Path:
    """The folder of build requirements every per-Python cell puts on PYTHONPATH, installed once by
    the oldest interpreter (so its environment markers hold) under ``<work>/buildenv/<key>``."""
    requires = shared_requires(source)
    key = hashlib.sha256(json.dumps([requires, oldest]).encode()).hexdigest()[:16]
    folder = work.resolve() / "buildenv" / key
    if (folder / "complete").is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    log = folder.parent / f"{key}.log"
    try:
        _proc.run(
            [oldest, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target", folder, *requires],
            timeout=timeout,
            log_file=log,
        )
    except WheelmatrixError as exc:
        raise BuildError(
            f"the build environment of the per-Python cells ({', '.join(requires)}) did not install with {oldest}: "
            f"{exc.message.splitlines()[0]} (log: {log})",
            fix="check that the index (PyPI) is reachable and that [build-system] requires of the project's "
            "pyproject.toml installs on the oldest Python of [matrix] python",
        ) from exc
    (folder / "complete").write_text(json.dumps(requires) + "\n")
    return folder
