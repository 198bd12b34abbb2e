"""``wheelmatrix toolchain``: list, install, path, verify, prune and lock the CUDA toolchains
the matrix needs. The build stage calls the same functions (:mod:`wheelmatrix.toolchains`)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

from wheelmatrix import toolchains
from wheelmatrix.commands import add_action
from wheelmatrix.errors import ToolchainError, WheelmatrixError
from wheelmatrix.model import Matrix
from wheelmatrix.toolchains import debian, registry
from wheelmatrix.toolchains.progress import human_size

HELP = "provide, verify and list the CUDA toolchains the matrix needs (pypi, debian, system)"
JSON_SCHEMA_VERSION = 1


def register(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        return add_action(sub, name, help)

    def offline(p: argparse.ArgumentParser) -> None:
        p.add_argument("--offline", action="store_true", help="use only the cache; say what is missing")
        p.add_argument(
            "--mirror", metavar="URL", help="Debian mirror (default: deb.debian.org; env WHEELMATRIX_DEBIAN_MIRROR)"
        )

    p = add("list", "what the matrix needs, what is cached and verified, what this host can provide")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p = add("install", "provide and verify toolchains (all the matrix needs by default)")
    p.add_argument("versions", nargs="*", metavar="VERSION")
    offline(p)
    p = add("path", "print the nvcc path of an installed toolchain (installs nothing)")
    p.add_argument("version", metavar="VERSION")
    p = add("verify", "verify toolchains again: nvcc version, probe kernel, shared library link")
    p.add_argument("versions", nargs="*", metavar="VERSION")
    offline(p)
    p = add("prune", "remove cached toolchains and downloads no project using this cache pins")
    p.add_argument("--all", action="store_true", help="remove every cached toolchain and download")
    p = add("lock", "resolve the newest files of each toolchain and write toolchains.lock")
    p.add_argument("versions", nargs="*", metavar="VERSION")
    p.add_argument("--mirror", metavar="URL", help="Debian mirror (default: deb.debian.org)")


def _load_matrix(path: Path) -> Matrix:
    from wheelmatrix.config import load_matrix  # noqa: PLC0415 - tests replace this loader

    return load_matrix(path)


def run(args: argparse.Namespace) -> int:
    if getattr(args, "mirror", None):
        os.environ["WHEELMATRIX_DEBIAN_MIRROR"] = args.mirror
    reporter = toolchains.Reporter(enabled=None if not getattr(args, "quiet", False) else False)
    matrix_path: Path = args.matrix
    cache = toolchains.Cache()
    if args.action == "prune":
        return _prune(_load_matrix(matrix_path) if not args.all else None, cache)
    matrix = _load_matrix(matrix_path)
    lock_path = toolchains.lock_path_of(matrix)
    if args.action in ("install", "verify", "path"):  # so that `prune` from other projects spares it
        registry.record(cache, matrix)
    if args.action == "list":
        return _list(matrix, cache, args.format)
    if args.action == "lock":
        toolchains.lock(matrix, args.versions, reporter=reporter)
        print(f"wrote {lock_path}")
        return 0
    if args.action == "path":
        spec = toolchains.select(matrix, [args.version])[0]
        installed = toolchains.provide(spec, lock_path=lock_path, offline=True, cache=cache, reporter=reporter)
        print(installed.nvcc)
        return 0
    # install / verify: every named toolchain is tried; failures are reported together
    failures: list[tuple[str, WheelmatrixError]] = []
    for spec in toolchains.select(matrix, args.versions):
        if not args.versions and spec.toolchain.source == "system":
            # a system toolkit the host lacks is the plan's business (its cells are not buildable
            # here); named explicitly, it is an error like any other
            reason = toolchains.get_source("system").unavailable(spec)
            if reason:
                print(f"CUDA {spec.version} ({spec.toolchain.describe()}): skipped, not on this host: {reason}")
                continue
        try:
            installed = toolchains.provide(
                spec,
                lock_path=lock_path,
                offline=args.offline,
                cache=cache,
                reporter=reporter,
                reverify=args.action == "verify",
            )
        except WheelmatrixError as exc:
            failures.append((str(spec.version), exc))
            continue
        print(
            f"CUDA {spec.version} ({spec.toolchain.describe()}): nvcc {installed.nvcc_version} "
            f"{'verified' if installed.verified else 'NOT verified'} at {installed.nvcc} ({human_size(installed.size)})"
        )
    if len(failures) == 1:
        raise failures[0][1]
    if failures:  # each error once, then one summary carrying the exit code
        for _, failure in failures:
            print(failure.render(), file=sys.stderr)
        versions = ", ".join(v for v, _ in failures)
        raise ToolchainError(f"{len(failures)} toolchains could not be provided: CUDA {versions} (see above)")
    return 0


def _prune(matrix: Matrix | None, cache: toolchains.Cache) -> int:
    """Remove what no project pins (everything without a matrix: ``--all``); say what stays and why."""
    result = toolchains.prune(matrix, cache=cache, everything=matrix is None)
    assert isinstance(result, registry.Pruned)
    for line in result.dropped:
        print(line)
    for path, size in result:
        print(f"removed {path} ({human_size(size)})")
    for kept in result.kept:
        print(f"kept {path_in(cache, kept.path)} ({human_size(kept.size)}): used by {', '.join(kept.users)}")
    freed = human_size(sum(s for _, s in result))
    projects = len({u for k in result.kept for u in k.users})
    summary = f"pruned {len(result)} items, {freed} freed"
    if result.kept:
        summary += (
            f"; kept {len(result.kept)} items, {human_size(sum(k.size for k in result.kept))}, "
            f"used by {projects} project{'s' if projects != 1 else ''}"
        )
    print(summary)
    return 0


def path_in(cache: toolchains.Cache, path: Path) -> str:
    """``entries/<name>`` or ``downloads/<sha256>/<file>``: short, and says what a kept item is."""
    shown = path.relative_to(cache.root) if path.is_relative_to(cache.root) else path
    files = sorted(p.name for p in path.iterdir()) if path.parent == cache.downloads and path.is_dir() else []
    return f"{shown}/{files[0]}" if len(files) == 1 else str(shown)


def _list(matrix: Matrix, cache: toolchains.Cache, fmt: str) -> int:
    rows = toolchains.status(matrix, cache=cache)
    keyring = debian.keyring()
    gpgv = shutil.which("gpgv")
    signatures = bool(gpgv and keyring and keyring.is_file())
    if fmt == "json":
        doc = {
            "schema_version": JSON_SCHEMA_VERSION,
            "matrix": str(matrix.path),
            "lock": str(toolchains.lock_path_of(matrix)),
            "cache": str(cache.root),
            "host": {
                "debian_mirror": debian.mirror(),
                "debian_signatures_checked": signatures,
                "gpgv": gpgv,
                "keyring": str(keyring) if keyring else None,
            },
            "toolchains": [r.to_json() for r in rows],
        }
        json.dump(doc, sys.stdout, indent=2)
        print()
        return 0
    print(f"{'CUDA':<6} {'source':<30} {'locked':<7} {'state':<12} {'size':>10}  nvcc")
    for r in rows:
        if not r.available:
            state = "unavailable"
        elif r.verified:
            state = "verified"
        elif r.cached:
            state = "unverified"
        else:
            state = "not cached"
        size = human_size(r.size) if r.size else (f"~{human_size(r.download_size)}" if r.download_size else "-")
        extra = r.nvcc or (r.reason or "")
        if not r.needed:
            extra = f"(this matrix does not pin it; `prune` removes it unless another project pins it) {r.entry}"
        source = r.source + (f" +{','.join(r.components)}" if r.components else "")
        print(f"{r.version:<6} {source:<30} {'yes' if r.locked else 'no':<7} {state:<12} {size:>10}  {extra}")
    print(f"cache: {cache.root}")
    if signatures:
        print(f"Debian archive ({debian.mirror()}): InRelease signatures checked with {gpgv} against {keyring}")
    else:
        print(
            f"Debian archive ({debian.mirror()}): InRelease signatures NOT checked (gpgv or the keyring "
            f"{keyring} is missing); only the hash chain from InRelease to each .deb is checked"
        )
    return 0
