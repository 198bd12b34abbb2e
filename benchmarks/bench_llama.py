"""Build speed on a tree of real size: llama-cpp-python's sdist from PyPI (the ggml/llama.cpp tree,
built with scikit-build-core) released through wheelmatrix with a matrix.toml of this benchmark's own.

Its CPU cell, each step timed as a whole `wheelmatrix build` command:

1. plain: `pip wheel --no-deps --no-build-isolation` of the unpacked sdist (what a user gets: a
   `linux_x86_64` wheel), with the same CMake options the matrix gives the cell;
2. cold: `wheelmatrix build` of a clean copy with an empty compiler cache (a new
   `$WHEELMATRIX_CACHE_DIR`; the build environment is prepared before the timer starts);
3. warm: another clean copy in another folder, a new work folder (no cell cache, no build tree),
   the compiler cache of step 2;
4. edit: one source file of llama.cpp edited (`vendor/llama.cpp/src/llama.cpp`) in the copy of
   step 3 and built again (the cell cache misses, the build tree is reused);
5. `wheelmatrix assemble` of step 4 (repair by auditwheel and its rating).

Each copy's pyproject.toml gets `wheel.py-api = "py3"` under [tool.scikit-build] (the toolkit
asks it of a project whose libraries are loaded with ctypes: a py3-none wheel; the compile is the
same). The matrix (written into each copy): library `llama_{variant}` in `llama_cpp/lib`. wheelmatrix
needs the library's name to differ per variant, and llama.cpp names its `libllama.so` alike for
every backend, so the cell renames every shared library through a CMake rules file
(`CMAKE_SHARED_LIBRARY_SUFFIX` = `_cpu.so`): the wheels build and repair, but llama_cpp's own
loader (which looks for `libllama.so`) would not find them. A CUDA cell (`GGML_CUDA=ON`, one arch)
is `--cuda 13.0 --arch 89`, not run by default (see docs/build.md for what was measured).

Usage: python benchmarks/bench_llama.py [--version 0.3.16] [--out bench-llama.json] [--skip-plain]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

from wheelmatrix.stages import buildenv

RULES = 'set(CMAKE_SHARED_LIBRARY_SUFFIX "_${WM_VARIANT}.so")\n'
DEFINES = {
    "GGML_NATIVE": "OFF",  # a wheel for every x86_64, not this CPU
    "LLAVA_BUILD": "OFF",
    "LLAMA_BUILD_TESTS": "OFF",
    "LLAMA_BUILD_EXAMPLES": "OFF",
    "LLAMA_BUILD_TOOLS": "OFF",
    "LLAMA_BUILD_SERVER": "OFF",
    "LLAMA_CURL": "OFF",
}


def matrix_toml(cuda: str | None, arch: int | None, rules: str = "RULES") -> str:
    defines = ", ".join(f'{k} = "{v}"' for k, v in {**DEFINES, "WM_VARIANT": "{variant}"}.items())
    text = f"""
[project]
name = "llama_cpp_python"
import-package = "llama_cpp"
library = "llama_{{variant}}"
library-dir = "lib"
exclude = ["llama_cpp/lib/*"]   # its CMake also installs the libraries into the source tree

[build]
defines = {{ {defines}, CMAKE_USER_MAKE_RULES_OVERRIDE = "{rules}" }}
cuda-defines = {{ GGML_CUDA = "ON" }}

[matrix]
platforms = ["linux-x86_64"]
cuda = [{f'"{cuda}"' if cuda else ""}]
python = ["3.11"]

[platform.linux-x86_64]
policy = "manylinux_2_39"   # this host's glibc or newer: no zig link
"""
    if cuda:
        text += f'\n[cuda."{cuda}"]\nsass = [{arch}]\nptx = []\ntoolchain = {{ source = "pypi" }}\n'
    return text


def sdist(version: str, dest: Path) -> Path:
    """The sdist from PyPI (pip checks it against the index's hash), kept in ``dest``."""
    name = f"llama_cpp_python-{version}.tar.gz"
    if not (dest / name).is_file():
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--no-binary",
                ":all:",
                "-d",
                str(dest),
                f"llama-cpp-python=={version}",
            ],
            check=True,
        )
    return dest / name


def unpack(archive: Path, dest: Path, matrix: str) -> Path:
    with tarfile.open(archive) as tf:
        tf.extractall(dest, filter="data")
    (tree,) = list(dest.iterdir())
    (tree / "matrix.toml").write_text(matrix.replace('"RULES"', json.dumps(str(tree / "wm-rules.cmake"))))
    (tree / "wm-rules.cmake").write_text(RULES)
    # its libraries are loaded with ctypes: a py3-none wheel, as wheelmatrix asks of a project
    # (the one line an adopter adds; it changes the wheel's tag, not what is compiled)
    pyproject = tree / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace("[tool.scikit-build]\n", '[tool.scikit-build]\nwheel.py-api = "py3"\n', 1)
    )
    return tree


def timed(argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> float:
    start = time.monotonic()
    with log.open("w") as fh:
        done = subprocess.run(argv, cwd=cwd, env=env, stdout=fh, stderr=subprocess.STDOUT, check=False)
    took = time.monotonic() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}); log: {log}\n{log.read_text()[-3000:]}")
    print(f"{' '.join(argv[:4])}...: {took:.1f} s", flush=True)
    return took


def cells(work: Path) -> list[dict[str, object]]:
    out: list[dict[str, object]] = json.loads((work / "cells.json").read_text())["cells"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", default="0.3.16")
    parser.add_argument("--cuda", default=None, help="also a CUDA cell of this version (e.g. 13.0)")
    parser.add_argument("--arch", type=int, default=89)
    parser.add_argument("--skip-plain", action="store_true")
    parser.add_argument("--plain-jobs", type=int, default=0, help="also time the plain build at this parallel level")
    parser.add_argument("--cold-without-cache", action="store_true", help="also a cold build with --no-compiler-cache")
    parser.add_argument("--keep", type=Path, default=None, help="work here (kept) instead of a temporary folder")
    parser.add_argument("--out", type=Path, default=Path("bench-llama.json"))
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="wm-llama-"))
    root.mkdir(parents=True, exist_ok=True)
    archive = sdist(args.version, root)
    matrix = matrix_toml(args.cuda, args.arch if args.cuda else None)
    result: dict[str, object] = {"version": args.version, "cores": os.cpu_count(), "cuda": args.cuda}
    cache = root / "wm-cache"
    shutil.rmtree(cache, ignore_errors=True)
    env = {**os.environ, "WHEELMATRIX_CACHE_DIR": str(cache), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    wm = [sys.executable, "-m", "wheelmatrix"]
    # the build environment once, before any timer
    cold_tree = unpack(archive, root / "cold", matrix)
    buildenv.prepare(cold_tree, cache / "build-envs")
    if not args.skip_plain:
        plain_tree = unpack(archive, root / "plain", matrix)
        cmake_args = " ".join(f"-D{k}={v}" for k, v in DEFINES.items())
        plain_env = {**env, "CMAKE_ARGS": cmake_args}
        python = str(buildenv.prepare(plain_tree, cache / "build-envs"))  # the same backend, the same env
        result["plain_pip_wheel"] = timed(
            [python, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(root / "plain-dist"), "."],
            plain_tree,
            plain_env,
            root / "plain.log",
        )
        result["plain_wheel"] = [p.name for p in (root / "plain-dist").glob("*.whl")]
        if args.plain_jobs:  # the same build at the toolkit's parallel level (ninja's default is cores + 2)
            shutil.rmtree(root / "plain-dist")
            result[f"plain_pip_wheel_jobs{args.plain_jobs}"] = timed(
                [
                    python,
                    "-m",
                    "pip",
                    "wheel",
                    "--no-deps",
                    "--no-build-isolation",
                    "-w",
                    str(root / "plain-dist"),
                    ".",
                ],
                plain_tree,
                {**plain_env, "CMAKE_BUILD_PARALLEL_LEVEL": str(args.plain_jobs)},
                root / "plain-jobs.log",
            )
    build = [*wm, "build", "--matrix", "matrix.toml", "--work", "build/wheelmatrix", "--no-wait"]
    if args.cold_without_cache:
        bare_tree = unpack(archive, root / "bare", matrix)
        result["cold_no_compiler_cache"] = timed([*build, "--no-compiler-cache"], bare_tree, env, root / "bare.log")
    result["cold"] = timed(build, cold_tree, env, root / "cold.log")
    result["cold_cells"] = cells(cold_tree / "build" / "wheelmatrix")
    warm_tree = unpack(archive, root / "warm", matrix)
    result["warm"] = timed(build, warm_tree, env, root / "warm.log")
    result["warm_cells"] = cells(warm_tree / "build" / "wheelmatrix")
    source = warm_tree / "vendor" / "llama.cpp" / "src" / "llama.cpp"
    # a change to the code (a comment alone preprocesses to the same text: a compiler-cache hit)
    source.write_text(source.read_text() + '\nextern "C" int wm_bench_llama_edit() { return 1; }\n')
    result["edit"] = timed(build, warm_tree, env, root / "edit.log")
    result["edit_cells"] = cells(warm_tree / "build" / "wheelmatrix")
    result["assemble"] = timed(
        [*wm, "assemble", "--matrix", "matrix.toml", "--work", "build/wheelmatrix", "--dist", "dist"],
        warm_tree,
        env,
        root / "assemble.log",
    )
    record = json.loads((warm_tree / "dist" / "build-record.json").read_text())
    result["wheels"] = [{k: w.get(k) for k in ("file", "tag", "rated", "size")} for w in record["wheels"]]
    cold = float(result["cold"])  # type: ignore[arg-type]
    result["warm_over_cold"] = float(result["warm"]) / cold  # type: ignore[arg-type]
    result["edit_over_cold"] = float(result["edit"]) / cold  # type: ignore[arg-type]
    if "plain_pip_wheel" in result:
        result["cold_over_plain"] = cold / float(result["plain_pip_wheel"])  # type: ignore[arg-type]
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if not k.endswith("_cells")}, indent=1))


if __name__ == "__main__":
    main()
