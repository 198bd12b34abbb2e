"""Stage 1: read ``matrix.toml``, validate it once, and resolve it into the frozen :class:`Matrix`.

Two steps: a generic conversion of TOML into the raw tables of :mod:`wheelmatrix.settings`
(unknown keys with did-you-mean, wrong types), then :func:`resolve`, which checks everything that
needs facts (CUDA arch tables, platforms, rules) and builds :mod:`wheelmatrix.model` objects.
Every problem is one :class:`MatrixError` naming the file, the key path, what is wrong and the fix.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import sys
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from wheelmatrix import data, settings
from wheelmatrix.errors import MatrixError
from wheelmatrix.model import (
    PLATFORMS,
    Backend,
    BuildContract,
    CheckSpec,
    Component,
    CudaFacts,
    CudaSpec,
    CudaVersion,
    Matrix,
    Packaging,
    PlatformName,
    PlatformSpec,
    Project,
    PublishStage,
    PythonAxis,
    RepairTool,
    Rule,
    Toolchain,
)
from wheelmatrix.settings import Size

T = TypeVar("T")

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*$")
_UNITS = {None: 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}  # fmt: skip
_PY_VERSION = re.compile(r"^3\.(\d+)$")
_CMAKE_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DEFINE_FIELDS = ("variant", "platform", "cuda", "cuda_major", "cuda_tag")
# CMake variables the toolkit itself sets for every cell, and where a matrix says what they hold
_TOOLKIT_DEFINES = {
    "CMAKE_TOOLCHAIN_FILE": "wheelmatrix writes one per cell (compilers, glibc floor, cross target)",
    "CMAKE_CUDA_COMPILER": "the cell's toolchain provides nvcc",
    "CMAKE_CUDA_HOST_COMPILER": "the cell's toolchain provides the host compiler",
    "CUDAToolkit_ROOT": "the cell's toolchain provides the CUDA root",
}
_NAME = re.compile(r"^([A-Z0-9]|[A-Z0-9][A-Z0-9._-]*[A-Z0-9])$", re.IGNORECASE)


def key_path(parts: Sequence[str | int]) -> str:
    """Render a key path as TOML would: ``cuda."13.0".sass[2]``."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if _BARE_KEY.match(part) else f'"{part}"'
            out += f".{text}" if out else text
    return out


def toml_key(name: str) -> str:
    return name.replace("_", "-")


def did_you_mean(word: str, choices: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return matches[0] if matches else None


def version_ranges(versions: Sequence[CudaVersion]) -> str:
    """Say a set of known CUDA versions compactly: "11.8 to 12.9" when they are contiguous."""
    known = sorted(data.cuda_facts())
    runs: list[list[CudaVersion]] = []
    for v in versions:
        if runs and known.index(v) == known.index(runs[-1][-1]) + 1:
            runs[-1].append(v)
        else:
            runs.append([v])
    return ", ".join(f"{r[0]} to {r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in runs)


def _quote(value: object) -> str:
    return (
        f'"{value}"' if isinstance(value, str) else repr(value) if not isinstance(value, bool) else str(value).lower()
    )


def _toml_type(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def describe(tp: Any) -> str:
    """Say what a field expects, in TOML words."""
    origin = get_origin(tp)
    if tp is str:
        return "a string"
    if tp is int:
        return "an integer"
    if tp is bool:
        return "true or false"
    if tp is Size:
        return 'a size (bytes, or a string like "100 MiB")'
    if origin is Literal:
        return "one of " + ", ".join(_quote(a) for a in get_args(tp))
    if origin in (tuple, list):
        inner = describe(get_args(tp)[0])
        return "an array of " + (
            inner[2:] + "s" if inner.startswith("a ") else inner[3:] + "s" if inner.startswith("an ") else inner
        )
    if origin in (dict, Mapping):
        return "a table"
    if dataclasses.is_dataclass(tp):
        return "a table"
    if origin in (Union, types.UnionType):
        return " or ".join(describe(a) for a in get_args(tp) if a is not type(None))
    return str(tp)


class _Converter:
    def __init__(self, file: str) -> None:
        self.file = file

    def fail(self, path: Sequence[str | int], problem: str, fix: str | None = None) -> typing.NoReturn:
        raise MatrixError(self.file, key_path(path), problem, fix=fix)

    def convert(self, tp: Any, value: Any, path: list[str | int]) -> Any:
        origin = get_origin(tp)
        if origin in (Union, types.UnionType):
            args = [a for a in get_args(tp) if a is not type(None)]
            return self.convert(args[0], value, path)
        if dataclasses.is_dataclass(tp):
            return self.table(typing.cast("type[Any]", tp), value, path)
        if tp is Size:
            return self.size(value, path)
        if origin is Literal:
            choices = get_args(tp)
            if value not in choices:
                hint = did_you_mean(value, choices) if isinstance(value, str) else None
                fix = f"did you mean {_quote(hint)}?" if hint else "use " + describe(tp)
                self.fail(path, f"{_quote(value)} is not allowed (expected {describe(tp)})", fix)
            return value
        if origin in (tuple, list):
            inner = get_args(tp)[0]
            if not isinstance(value, list):
                item = value if inner is not int or not str(value).isdigit() else int(value)
                example = f"{path[-1]} = [{_quote(item)}]" if not isinstance(value, dict) else f"{path[-1]} = [...]"
                self.fail(path, f"expected {describe(tp)}, got {_toml_type(value)} ({_quote(value)})",
                          f"write it as an array, e.g. {example}")  # fmt: skip
            return tuple(self.convert(inner, v, [*path, i]) for i, v in enumerate(value))
        if origin in (dict, Mapping):
            if not isinstance(value, dict):
                self.fail(path, f"expected a table, got {_toml_type(value)}", f"write it as a [{key_path(path)}] table")
            inner = get_args(tp)[1]
            return {k: self.convert(inner, v, [*path, k]) for k, v in value.items()}
        ok = (tp is int and isinstance(value, int) and not isinstance(value, bool)) or (
            tp is not int and isinstance(value, tp)
        )
        if not ok:
            self.fail(path, f"expected {describe(tp)}, got {_toml_type(value)} ({_quote(value)})",
                      f"write {describe(tp)} there")  # fmt: skip
        return value

    def size(self, value: Any, path: list[str | int]) -> Size:
        fix = 'write a number of bytes or a size like "100 MiB" (units: B, KB, MB, GB, KiB, MiB, GiB)'
        if isinstance(value, int) and not isinstance(value, bool):
            if value <= 0:
                self.fail(path, f"{value} is not a positive size", fix)
            return Size(value)
        if isinstance(value, str):
            m = _SIZE.match(value)
            if m:
                number = float(m.group(1)) * _UNITS[m.group(2)]
                if number >= 1:
                    return Size(int(number))
        self.fail(path, f"{_quote(value)} is not a size", fix)

    def table(self, cls: type[T], value: Any, path: list[str | int]) -> T:
        if not isinstance(value, dict):
            self.fail(path, f"expected a table, got {_toml_type(value)} ({_quote(value)})",
                      f"write it as a [{key_path(path)}] table")  # fmt: skip
        assert dataclasses.is_dataclass(cls)
        hints = get_type_hints(cls, include_extras=False)
        fields = {toml_key(f.name): f for f in dataclasses.fields(cls)}
        for key in value:
            if key not in fields:
                hint = did_you_mean(key, fields) or did_you_mean(key.replace("_", "-"), fields)
                allowed = ", ".join(fields)
                fix = f"did you mean {_quote(hint)}? (allowed: {allowed})" if hint else f"allowed keys: {allowed}"
                self.fail([*path, key], "unknown key", fix)
        kwargs: dict[str, Any] = {}
        for key, f in fields.items():
            if key in value:
                kwargs[f.name] = self.convert(hints[f.name], value[key], [*path, key])
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                if dataclasses.is_dataclass(hints[f.name]):
                    self.fail([*path, key], "missing", f"add a [{key_path([*path, key])}] table")
                where = f"[{key_path(path)}]" if path else "the top level"
                self.fail([*path, key], "missing", f"add {key} = <{describe(hints[f.name])}> to {where}")
        return typing.cast("T", cls(**kwargs))


def platform_spec(
    name: str, *, policy: str | None = None, repair: str | None = None, never_vendor: Sequence[str] = ()
) -> PlatformSpec:
    """A platform's spec from wheelmatrix's facts (data/platforms.toml), with matrix.toml's choices
    laid over them; ``name`` and ``policy`` must already be valid."""
    f = data.platform_facts()[name]
    return PlatformSpec(
        name=typing.cast("PlatformName", name),
        policy=policy or f.default_policy,
        repair=typing.cast("RepairTool", repair or f.repair),
        never_vendor=tuple(dict.fromkeys((*f.never_vendor, *never_vendor))),
        wheel_arch=f.wheel_arch,
        runner=f.runner,
        library_pattern=f.library,
        cuda_providers=f.cuda_providers,
    )


def _static_version(pyproject: Path) -> str | None:
    """The project's ``[project] version`` when its pyproject.toml states it (None when dynamic or absent)."""
    try:
        doc = tomllib.loads(pyproject.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    project = doc.get("project")
    version = project.get("version") if isinstance(project, dict) else None
    return version if isinstance(version, str) else None


def parse(text: str, file: str) -> settings.MatrixFile:
    """TOML text -> raw tables (types and keys checked, nothing resolved)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise MatrixError(file, "", f"not valid TOML: {exc}", fix="correct the TOML syntax at that line") from None
    return _Converter(file).table(settings.MatrixFile, raw, [])


def load_matrix(path: Path) -> Matrix:
    """Read, validate and resolve ``path`` (the one entry point of the config stage)."""
    try:
        text = path.read_text("utf-8")
    except FileNotFoundError:
        raise MatrixError(str(path), "", "not found", fix="run from the project root or pass --matrix PATH") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MatrixError(str(path), "", f"cannot be read: {exc}") from None
    return resolve(parse(text, str(path)), path)


def resolve(raw: settings.MatrixFile, path: Path) -> Matrix:
    return _Resolver(raw, path).matrix()


class _Resolver:
    def __init__(self, raw: settings.MatrixFile, path: Path) -> None:
        self.raw = raw
        self.path = path
        self.file = str(path)

    def fail(self, parts: Sequence[str | int], problem: str, fix: str | None = None) -> typing.NoReturn:
        raise MatrixError(self.file, key_path(parts), problem, fix=fix)

    def matrix(self) -> Matrix:
        project = self.project()
        build = self.build()
        platforms = self.platforms()
        cuda = self.cuda()
        python = self.python()
        packaging = self.packaging()
        publish = self.publish()
        rules = self.rules(platforms, cuda)
        project = dataclasses.replace(project, python=self.python_axis(python, packaging, cuda))
        return Matrix(
            path=self.path,
            project=project,
            platforms=platforms,
            cuda=cuda,
            python=python,
            rules=rules,
            packaging=packaging,
            publish=publish,
            toolchain_lock=self.path.parent / "toolchains.lock",
            build=build,
            check=self.check(python),
        )

    def project(self) -> Project:
        p = self.raw.project
        if not _NAME.match(p.name):
            self.fail(["project", "name"], f"{_quote(p.name)} is not a valid distribution name",
                      "use letters, digits, '.', '_' and '-' (PEP 508), e.g. \"mykernels\"")  # fmt: skip
        if not p.import_package.isidentifier():
            self.fail(["project", "import-package"], f"{_quote(p.import_package)} is not a Python identifier",
                      "use letters, digits and '_' (not starting with a digit)")  # fmt: skip
        placeholders = set(re.findall(r"{([^{}]*)}", p.library))
        unknown = sorted(placeholders - {"variant", "cuda_tag", "cuda_major"})
        if unknown:
            self.fail(["project", "library"], f"{{{unknown[0]}}} is not a placeholder",
                      'use {variant}, {cuda_tag} or {cuda_major}, e.g. "mykernels_{variant}"')  # fmt: skip
        if "variant" not in placeholders and self.raw.packaging.split not in ("standalone", "core-plugin"):
            self.fail(["project", "library"], f"{_quote(p.library)} lacks {{variant}}: every variant's library "
                      "would have the same name and they could not share a wheel",
                      f'e.g. "{p.library}_{{variant}}" (libraries named {p.library}_cpu, {p.library}_cuda124, ...)')  # fmt: skip
        example = p.library.format(variant="cuda124", cuda_tag="124", cuda_major="12")
        if not re.fullmatch(r"[A-Za-z0-9_.+-]+", example):
            self.fail(["project", "library"], f"{_quote(p.library)} does not make a file name ({_quote(example)})",
                      "use letters, digits, '_', '-', '.' and the placeholders")  # fmt: skip
        d = p.library_dir
        if d != "." and (
            not d or "\\" in d or d.startswith(("/", ".")) or any(part in ("", "..") for part in d.split("/"))
        ):
            self.fail(["project", "library-dir"], f"{_quote(d)} is not a folder inside the package",
                      'use "." (the package folder itself) or a relative folder such as "_lib"')  # fmt: skip
        return Project(
            name=p.name,
            import_package=p.import_package,
            library=p.library,
            library_dir=d.strip("/") if d != "." else ".",
            source=(self.path.parent / p.source).resolve(),
            exclude=p.exclude,
            include=p.include,
            version=_static_version((self.path.parent / p.source).resolve() / "pyproject.toml"),
        )

    def python_axis(self, python: tuple[str, ...], packaging: Packaging, cuda: tuple[CudaSpec, ...]) -> PythonAxis:
        """[project] python-api, abi3-floor and free-threaded, checked against matrix.python and the layout."""
        p = self.raw.project
        where = ["project"]
        if p.abi3_floor is not None and p.python_api != "abi3":
            self.fail([*where, "abi3-floor"], f'only applies to python-api = "abi3" (this one is "{p.python_api}")',
                      'remove abi3-floor, or set python-api = "abi3"')  # fmt: skip
        if p.python_api == "abi3":
            if p.abi3_floor is None:
                self.fail([*where, "abi3-floor"], 'missing: python-api = "abi3" needs the oldest Python of the wheel',
                          f'add abi3-floor = "{python[-1]}" (nanobind targets the stable ABI from "3.12")')  # fmt: skip
            if p.abi3_floor not in python:
                self.fail([*where, "abi3-floor"], f"{_quote(p.abi3_floor)} is not one of matrix.python: no "
                          "interpreter of the matrix would build the abi3 wheel",
                          f"use one of {', '.join(python)}")  # fmt: skip
        for i, version in enumerate(p.free_threaded):
            if p.python_api == "none":
                self.fail([*where, "free-threaded"], 'only applies to extension modules (python-api = "per-version" '
                          'or "abi3"): a py3-none wheel serves free-threaded CPython as it is',
                          'remove free-threaded, or set python-api = "per-version" or "abi3"')  # fmt: skip
            if version not in python:
                self.fail([*where, "free-threaded", i], f"{_quote(version)} is not one of matrix.python",
                          f"use one of {', '.join(python)}")  # fmt: skip
            if _PY_VERSION.match(version) and int(version.split(".")[1]) < 13:
                self.fail([*where, "free-threaded", i], f"CPython {version} has no free-threaded build",
                          'free-threaded CPython starts at "3.13"')  # fmt: skip
        if p.python_api != "none" and not packaging.per_distribution:
            self.fail(["packaging", "split"], f'{_quote(packaging.split)} merges the variants\' libraries into one '
                      f'distribution, which extension modules (python-api = "{p.python_api}") cannot share',
                      'set split = "standalone" in [packaging]: a CPU distribution and one per CUDA major')  # fmt: skip
        if p.python_api == "none" and packaging.split == "core-plugin":
            self.fail(["packaging", "split"], '"core-plugin" splits each distribution into a py3-none core and a '
                      'per-Python plugin, but python-api = "none" builds no per-Python part (py3-none wheels only)',
                      'set [project] python-api = "per-version" or "abi3" for an extension module, or use split = '
                      '"standalone" (or "per-cuda-major") for a py3-none project')  # fmt: skip
        if packaging.per_distribution:
            majors = [c.version.major for c in cuda]
            twice = sorted({m for m in majors if majors.count(m) > 1})
            if twice:
                listed = ", ".join(str(c.version) for c in cuda if c.version.major == twice[0])
                self.fail(["matrix", "cuda"], f'CUDA {listed} would both be the distribution '
                          f'{_quote(packaging.distribution(p.name, twice[0]))} (split = "{packaging.split}")',
                          f"keep one minor of CUDA {twice[0]} (the newest serves every driver of the major "
                          "through minor-version compatibility)")  # fmt: skip
        return PythonAxis(api=p.python_api, abi3_floor=p.abi3_floor, free_threaded=p.free_threaded)

    def check(self, python: tuple[str, ...]) -> CheckSpec:
        c = self.raw.check
        for i, version in enumerate(c.python):
            if version not in python:
                self.fail(["check", "python", i], f"{_quote(version)} is not one of matrix.python",
                          f"use one of {', '.join(python)}")  # fmt: skip
        if c.smoke and not c.smoke[0]:
            self.fail(["check", "smoke", 0], "is empty", 'name the program, e.g. ["python", "-m", "mykernels"]')
        return CheckSpec(smoke=c.smoke, python=c.python)

    def build(self) -> BuildContract:
        b = self.raw.build
        for key, table in (("defines", b.defines), ("cpu-defines", b.cpu_defines), ("cuda-defines", b.cuda_defines)):
            self._defines(["build", key], table)
        names = [b.archs_variable] + ([b.backend.variable] if b.backend else [])
        for key, name in zip(("archs-variable", "backend"), names, strict=False):
            if not _CMAKE_VAR.match(name):
                where = ["build", key] if key != "backend" else ["build", "backend", "variable"]
                self.fail(where, f"{_quote(name)} is not a CMake variable name", "use letters, digits and '_'")
        backend = Backend(b.backend.variable, b.backend.cpu, b.backend.cuda) if b.backend else None
        return BuildContract(
            backend=backend,
            archs_variable=b.archs_variable,
            defines=tuple(b.defines.items()),
            cpu_defines=tuple(b.cpu_defines.items()),
            cuda_defines=tuple(b.cuda_defines.items()),
            memory_per_compile=int(b.memory_per_compile) if b.memory_per_compile is not None else None,
        )

    def _defines(self, where: list[str | int], table: Mapping[str, str]) -> None:
        for name, value in table.items():
            if not _CMAKE_VAR.match(name):
                self.fail([*where, name], f"{_quote(name)} is not a CMake variable name", "use letters, digits and '_'")
            if name in _TOOLKIT_DEFINES:
                self.fail([*where, name], f"{name} is set by wheelmatrix for every cell",
                          f"remove it; {_TOOLKIT_DEFINES[name]}")  # fmt: skip
            unknown = sorted(set(re.findall(r"{([^{}]*)}", value)) - set(_DEFINE_FIELDS))
            if unknown:
                self.fail([*where, name], f"{{{unknown[0]}}} is not a placeholder",
                          "use " + ", ".join("{" + f + "}" for f in _DEFINE_FIELDS))  # fmt: skip

    def platforms(self) -> tuple[PlatformSpec, ...]:
        facts = data.platform_facts()
        names = self.raw.matrix.platforms
        if not names:
            self.fail(["matrix", "platforms"], "is empty: the release has no platform",
                      f"list at least one of {', '.join(PLATFORMS)}")  # fmt: skip
        seen: set[str] = set()
        for i, name in enumerate(names):
            if name not in facts:
                hint = did_you_mean(name, facts)
                fix = f"did you mean {_quote(hint)}?" if hint else f"use one of {', '.join(PLATFORMS)}"
                self.fail(["matrix", "platforms", i], f"unknown platform {_quote(name)}", fix)
            if name in seen:
                self.fail(["matrix", "platforms", i], f"{_quote(name)} is listed twice", "list each platform once")
            seen.add(name)
        for name in self.raw.platform:
            if name not in facts:
                hint = did_you_mean(name, facts)
                self.fail(["platform", name], f"unknown platform {_quote(name)}",
                          f"did you mean {_quote(hint)}?" if hint else f"use one of {', '.join(PLATFORMS)}")  # fmt: skip
            if name not in seen:
                self.fail(["platform", name], "is not one of matrix.platforms",
                          f"add {_quote(name)} to matrix.platforms or remove this table")  # fmt: skip
        out = []
        for name in names:
            f = facts[name]
            table = self.raw.platform.get(name, settings.PlatformTable())
            policy = table.policy or f.default_policy
            if policy not in f.policies:
                self.fail(["platform", name, "policy"], f"{_quote(policy)} is not a wheel policy for {name}",
                          f"use one of {', '.join(f.policies)}")  # fmt: skip
            self._defines(["platform", name, "defines"], table.defines)
            spec = platform_spec(name, policy=policy, repair=table.repair, never_vendor=table.never_vendor)
            out.append(dataclasses.replace(spec, defines=tuple(table.defines.items())))
        return tuple(out)

    def cuda(self) -> tuple[CudaSpec, ...]:
        facts = data.cuda_facts()
        sources = data.cuda_sources()
        versions: list[CudaVersion] = []
        for i, text in enumerate(self.raw.matrix.cuda):
            try:
                v = CudaVersion.parse(text)
            except ValueError:
                self.fail(
                    ["matrix", "cuda", i], f"{_quote(text)} is not a CUDA version", 'write MAJOR.MINOR, e.g. "12.4"'
                )
            table = self.raw.cuda.get(str(v))
            if v not in facts and (table is None or table.facts is None):
                known = ", ".join(str(k) for k in sorted(facts))
                self.fail(["matrix", "cuda", i], f"CUDA {v} is not a version wheelmatrix knows",
                          f'use one of {known}, or declare its facts in [cuda."{v}".facts] (archs, host-gcc-max, '
                          "driver-api, min-driver-linux, min-driver-windows)")  # fmt: skip
            if v in versions:
                self.fail(["matrix", "cuda", i], f"CUDA {v} is listed twice", "list each CUDA version once")
            versions.append(v)
        listed = {str(v) for v in versions}
        for text in self.raw.cuda:
            if text not in listed:
                self.fail(["cuda", text], "is not one of matrix.cuda",
                          f"add {_quote(text)} to matrix.cuda or remove this table")  # fmt: skip
        out = []
        for v in sorted(versions):
            table = self.raw.cuda.get(str(v))
            if table is None:
                self.fail(["matrix", "cuda"], f"CUDA {v} has no [cuda.\"{v}\"] table",
                          f'add [cuda."{v}"] with sass, ptx and toolchain')  # fmt: skip
            base: list[str | int] = ["cuda", str(v)]
            f = self._facts(v, facts.get(v), table.facts, base)
            for kind, archs in (("sass", table.sass), ("ptx", table.ptx)):
                self._archs(v, kind, archs, f.archs, base)
            if not table.sass and not table.ptx:
                self.fail([*base, "sass"], f"CUDA {v} declares no arch: a library with no code",
                          "list at least one SASS or PTX arch")  # fmt: skip
            self._defines([*base, "defines"], table.defines)
            if table.fatbin_compression == "size" and not f.compress_size:
                self.fail([*base, "fatbin-compression"], f"CUDA {v}'s nvcc has no --compress-mode=size (12.8 and newer)",
                          'use "standard" (-Xfatbin -compress-all) or "auto"')  # fmt: skip
            out.append(CudaSpec(version=v, sass=table.sass, ptx=table.ptx,
                                toolchain=self._toolchain(v, table.toolchain, sources.get(v, ()), base), facts=f,
                                components=self._components(table.components, [*base, "components"]),
                                defines=tuple(table.defines.items()),
                                fatbin_compression=table.fatbin_compression))  # fmt: skip
        return tuple(out)

    def _facts(self, v: CudaVersion, known: CudaFacts | None, table: settings.CudaFactsTable | None,
               base: list[str | int]) -> CudaFacts:  # fmt: skip
        if table is None:
            assert known is not None
            return known
        where = [*base, "facts"]
        family = data.family_facts(v.major)
        if known is None:
            for key in ("archs", "host_gcc_max", "driver_api", "min_driver_linux", "min_driver_windows"):
                if getattr(table, key) is None:
                    self.fail([*where, toml_key(key)], f"missing: CUDA {v} is not a version wheelmatrix knows",
                              f"add {toml_key(key)} (see wheelmatrix/data/cuda.toml for the meaning and examples)")  # fmt: skip
            if family is None:
                self.fail(where, f"CUDA {v.major}.x is not a CUDA major wheelmatrix knows (driver floors, runtime)",
                          "use a CUDA major listed in wheelmatrix/data/cuda.toml [majors]")  # fmt: skip
        if table.archs is not None and (not table.archs or list(table.archs) != sorted(set(table.archs))):
            self.fail([*where, "archs"], "must be a non-empty ascending list of compute capabilities",
                      f"write them sorted and once each: {sorted(set(table.archs))}")  # fmt: skip
        if table.driver_api is not None and table.driver_api // 1000 != v.major:
            self.fail([*where, "driver-api"], f"{table.driver_api} is not a CUDA {v.major}.x driver API version",
                      f"write major*1000 + minor*10, e.g. {v.api}")  # fmt: skip
        if known is not None:
            return dataclasses.replace(
                known,
                archs=table.archs if table.archs is not None else known.archs,
                host_gcc_max=table.host_gcc_max if table.host_gcc_max is not None else known.host_gcc_max,
                driver_api=table.driver_api if table.driver_api is not None else known.driver_api,
                min_driver_linux=table.min_driver_linux or known.min_driver_linux,
                min_driver_windows=table.min_driver_windows or known.min_driver_windows,
            )
        assert family is not None and table.archs is not None and table.host_gcc_max is not None
        assert table.driver_api is not None and table.min_driver_linux and table.min_driver_windows
        return CudaFacts(
            archs=table.archs,
            host_gcc_max=table.host_gcc_max,
            driver_api=table.driver_api,
            min_driver_linux=table.min_driver_linux,
            min_driver_windows=table.min_driver_windows,
            family_min_driver_linux=family["min-driver-linux"],
            family_min_driver_windows=family["min-driver-windows"],
            runtime_soname=family["runtime-soname"],
            compress=("-Xfatbin", "-compress-all"),
        )

    def _components(self, names: tuple[str, ...], where: list[str | int]) -> tuple[Component, ...]:
        known = data.components()
        out: list[Component] = []
        for i, name in enumerate(names):
            if name not in known:
                hint = did_you_mean(name, known)
                self.fail([*where, i], f"unknown CUDA component {_quote(name)}",
                          f"did you mean {_quote(hint)}?" if hint else f"use one of {', '.join(sorted(known))}")  # fmt: skip
            if name in names[:i]:
                self.fail([*where, i], f"{_quote(name)} is listed twice", "list each component once")
            out.append(known[name])
        return tuple(out)

    def _archs(self, v: CudaVersion, kind: str, archs: tuple[int, ...], supported: tuple[int, ...],
               base: list[str | int]) -> None:  # fmt: skip
        prefix = "sm" if kind == "sass" else "compute"
        seen: set[int] = set()
        for i, arch in enumerate(archs):
            if arch in seen:
                self.fail([*base, kind, i], f"{prefix}_{arch} is listed twice", "list each arch once")
            seen.add(arch)
            if arch not in supported:
                others = version_ranges(
                    [k for k, fv in sorted(data.cuda_facts().items()) if arch in fv.archs and k != v]
                )
                where = f"it targets {prefix}_{supported[0]} to {prefix}_{supported[-1]}"
                fix = (f"remove {arch}, or build {prefix}_{arch} with CUDA {others}" if others
                       else f"remove {arch}: no CUDA version wheelmatrix knows targets it")  # fmt: skip
                self.fail([*base, kind, i], f"{prefix}_{arch} cannot be targeted by CUDA {v} ({where})", fix)
        if list(archs) != sorted(archs):
            self.fail([*base, kind], "archs are not in ascending order", f"write them sorted: {sorted(archs)}")

    def _toolchain(self, v: CudaVersion, t: settings.ToolchainTable, providers: tuple[str, ...],
                   base: list[str | int]) -> Toolchain:  # fmt: skip
        where = [*base, "toolchain"]
        if t.source != "debian" and t.suite is not None:
            self.fail(
                [*where, "suite"], f'only applies to source = "debian" (this one is "{t.source}")', "remove suite"
            )
        if t.source != "system" and t.path is not None:
            self.fail([*where, "path"], f'only applies to source = "system" (this one is "{t.source}")', "remove path")
        can = ", ".join(providers) or 'none: use source = "system"'
        if t.source == "pypi" and "pypi" not in providers:
            self.fail([*where, "source"], f"PyPI has no nvcc for CUDA {v} (NVIDIA's cu11/cu12 wheels hold no nvcc)",
                      f"registry sources for CUDA {v}: {can}")  # fmt: skip
        if t.source == "debian":
            if t.suite is None:
                self.fail([*where, "suite"], 'missing: source = "debian" needs the suite that has this CUDA version',
                          f"registry sources for CUDA {v}: {can}")  # fmt: skip
            if f"debian:{t.suite}" not in providers:
                self.fail([*where, "suite"], f"Debian {t.suite} (non-free) does not provide CUDA {v}",
                          f"registry sources for CUDA {v}: {can}")  # fmt: skip
        path = (self.path.parent / t.path) if t.path is not None else None
        return Toolchain(source=t.source, suite=t.suite, path=path)

    def python(self) -> tuple[str, ...]:
        versions = self.raw.matrix.python
        if not versions:
            self.fail(["matrix", "python"], "is empty: installs would be tested on no Python",
                      'list the Python versions to test installs on, e.g. ["3.12"]')  # fmt: skip
        for i, text in enumerate(versions):
            m = _PY_VERSION.match(text)
            if not m or int(m.group(1)) < 8:
                self.fail(["matrix", "python", i], f"{_quote(text)} is not a supported Python version",
                          'write 3.MINOR with MINOR >= 8, e.g. "3.12"')  # fmt: skip
            if text in versions[:i]:
                self.fail(["matrix", "python", i], f"{_quote(text)} is listed twice", "list each version once")
        return versions

    def packaging(self) -> Packaging:
        p = self.raw.packaging
        for key, template, allowed in (("split-name", p.split_name, {"name", "major"}),
                                       ("extra-name", p.extra_name, {"major"}),
                                       ("cuda-name", p.cuda_name, {"name", "major"})):  # fmt: skip
            fields = set(re.findall(r"{([^{}]*)}", template))
            example = {"split-name": "{name}-cu{major}", "cuda-name": "{name}-cuda{major}x"}.get(key, "cu{major}")
            usable = " and ".join("{" + a + "}" for a in sorted(allowed, reverse=True))
            unknown = sorted(fields - allowed)
            if unknown:
                self.fail(
                    ["packaging", key], f"{{{unknown[0]}}} is not a placeholder", f'use {usable}, e.g. "{example}"'
                )
            if "major" not in fields:
                self.fail(["packaging", key], f"{_quote(template)} lacks {{major}}: split names would collide",
                          f'e.g. "{example}"')  # fmt: skip
        if p.cuda_libraries == "vendor":
            self.fail(["packaging", "cuda-libraries"], '"vendor" is not supported yet: the repair step cannot find the '
                      "toolchain's CUDA libraries, and cuBLAS alone would take 400 MiB of a 100 MiB wheel",
                      'use "depend" (the default): NVIDIA\'s runtime wheels are declared as dependencies')  # fmt: skip
        if p.cuda_extra and not _NAME.match(p.cuda_extra):
            self.fail(["packaging", "cuda-extra"], f"{_quote(p.cuda_extra)} is not a valid extra name",
                      'use letters, digits, ".", "_" and "-", e.g. "ctk"')  # fmt: skip
        if p.cuda_extra and p.split not in ("standalone", "core-plugin"):
            self.fail(["packaging", "cuda-extra"], 'only applies to split = "standalone" or "core-plugin"',
                      'remove cuda-extra (the split layout has extra-name), or set split = "standalone"')  # fmt: skip
        self._core(p)
        if p.max_file_size > p.project_quota:
            self.fail(["packaging", "max-file-size"], "is larger than packaging.project-quota",
                      "lower max-file-size or raise project-quota")  # fmt: skip
        return Packaging(
            int(p.max_file_size),
            int(p.project_quota),
            p.split,
            p.split_name,
            p.extra_name,
            p.cuda_libraries,
            cuda_name=p.cuda_name,
            cuda_extra=p.cuda_extra,
            core_name=p.core_name,
            core_files=p.core_files,
        )

    def _core(self, p: settings.PackagingTable) -> None:
        """core-name and core-files of split = "core-plugin"."""
        fields = set(re.findall(r"{([^{}]*)}", p.core_name))
        unknown = sorted(fields - {"dist"})
        if unknown:
            self.fail(["packaging", "core-name"], f"{{{unknown[0]}}} is not a placeholder",
                      'use {dist} (the distribution the core belongs to), e.g. "{dist}-core"')  # fmt: skip
        if "dist" not in fields or p.core_name == "{dist}":
            self.fail(["packaging", "core-name"], f"{_quote(p.core_name)} does not name the core after its "
                      "distribution ({dist}) apart from it: cores and plugins would collide",
                      'e.g. "{dist}-core" (qext-cuda13x-core beside the plugin qext-cuda13x)')  # fmt: skip
        example = p.core_name.format(dist="mykernels-cuda13x")
        if not _NAME.match(example):
            self.fail(["packaging", "core-name"], f"{_quote(p.core_name)} does not make a distribution name "
                      f"({_quote(example)})", 'use letters, digits, ".", "_", "-" and {dist}, e.g. "{dist}-core"')  # fmt: skip
        if p.split == "core-plugin" and not p.core_files:
            self.fail(["packaging", "core-files"], 'is empty: split = "core-plugin" would make cores with no file',
                      'list the globs of the core\'s libraries, e.g. core-files = ["lib*_kernels*.so*"]')  # fmt: skip
        for i, glob in enumerate(p.core_files):
            if not glob or glob.startswith(("/", "\\")) or ".." in glob.split("/"):
                self.fail(["packaging", "core-files", i], f"{_quote(glob)} is not a glob inside the import package",
                          'write it relative to the import package folder, e.g. "lib*_kernels*.so*"')  # fmt: skip

    def publish(self) -> tuple[PublishStage, ...]:
        names: set[str] = set()
        for i, stage in enumerate(self.raw.publish):
            if stage.name in names:
                self.fail(
                    ["publish", i, "name"],
                    f"stage {_quote(stage.name)} is declared twice",
                    "give each stage its own name",
                )
            names.add(stage.name)
            for key, url in (("repository-url", stage.repository_url), ("index-url", stage.index_url)):
                if not re.match(r"^https?://[^\s/]+", url):
                    self.fail(["publish", i, key], f"{_quote(url)} is not an http(s) URL",
                              'e.g. "https://test.pypi.org/legacy/"')  # fmt: skip
        if not self.raw.publish:
            self.fail(["publish"], "is empty: nothing would be published", "remove it to get testpypi then pypi")
        return tuple(PublishStage(s.name, s.repository_url, s.index_url) for s in self.raw.publish)

    def rules(self, platforms: tuple[PlatformSpec, ...], cuda: tuple[CudaSpec, ...]) -> tuple[Rule, ...]:
        names = [p.name for p in platforms]
        variants = ["cpu", *(c.variant for c in cuda)]
        out = []
        for i, r in enumerate(self.raw.rules):
            rule = Rule(action=r.action, platforms=r.platforms, variants=r.variants, reason=r.reason, index=i)
            if not r.platforms or not r.variants:
                self.fail(["rules", i], "has an empty pattern list", 'use ["*"] to match everything')
            if not any(rule.matches(p, v) for p in names for v in variants):
                self.fail(["rules", i], f"matches no cell (platforms {json.dumps(list(r.platforms))}, "
                          f"variants {json.dumps(list(r.variants))})",
                          f"patterns apply to platforms {json.dumps(names)} and variants {json.dumps(variants)}")  # fmt: skip
            if r.action == "exclude" and any(fnmatchcase("cpu", v) for v in r.variants):
                self.fail(["rules", i, "variants"], "excludes the cpu variant: every wheel carries the CPU library",
                          'narrow variants to CUDA ones, e.g. ["cuda*"], or drop the platform from matrix.platforms')  # fmt: skip
            out.append(rule)
        return tuple(out)
