"""wheelmatrix check over real wheels: a clean one passes --strict, each bad input yields its finding.

The wheels are real: fake-kbit cell wheels with libraries compiled here (build_fixtures), assembled
and repaired by auditwheel as `wheelmatrix assemble` does, then edited the way a broken release
would be (truncated, re-tagged, re-versioned, RECORD out of date, a library that does not load).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest

from build_fixtures.cellwheels import HERE, make_cell_wheel, make_matrix
from wheelmatrix import schema
from wheelmatrix.model import CheckSpec, Matrix
from wheelmatrix.stages.assemble import assemble_all
from wheelmatrix.stages.check import (
    CODES,
    REPORT_FILE,
    CheckResult,
    check_release,
    find_secrets,
    pypi_accepts_platform,
    tag_glibc,
    unresolved_imports,
)
from wheelmatrix.wheelfile import read_wheel, write_wheel

TAG = "py3-none-manylinux_2_28_x86_64"
WHEEL = f"kbit-0.1.0-{TAG}.whl"
DESCRIBED = "Description-Content-Type: text/plain\n"


def _describe(wheel: Path) -> Path:
    """Give the fake METADATA a description content type, as a real project's readme does."""
    contents = read_wheel(wheel)
    name = f"{contents.dist_info}/METADATA"
    head, _, body = contents.text(name).partition("\n\n")
    contents.put(name, f"{head}\n{DESCRIBED}\n{body}".encode())
    return write_wheel(contents, wheel.parent)


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fake-kbit wheel as assemble writes it (CPU library, auditwheel-repaired), with a description."""
    tmp = tmp_path_factory.mktemp("clean")
    (final,) = assemble_all(make_matrix(tmp), [make_cell_wheel(tmp, "cpu")], tmp / "dist")
    assert final.path.name == WHEEL
    return _describe(final.path)


def matrix_for(tmp: Path, *, max_file_size: int | None = None, project_quota: int | None = None) -> Matrix:
    m = make_matrix(tmp)
    pk = m.packaging
    return replace(
        m,
        packaging=replace(
            pk,
            max_file_size=max_file_size or pk.max_file_size,
            project_quota=project_quota or pk.project_quota,
        ),
    )


def run_check(tmp: Path, *wheels: Path, matrix: Matrix | None = None, **kw: object) -> CheckResult:
    kw.setdefault("install", False)
    kw.setdefault("write", False)
    return check_release(
        matrix or matrix_for(tmp),
        tmp / "dist",
        list(wheels),
        strict=True,
        work=tmp / "work",
        **kw,  # type: ignore[arg-type]
    )


def codes(result: CheckResult) -> set[str]:
    return {f.code for f in result.findings}


def one(result: CheckResult, code: str) -> str:
    found = [f for f in result.findings if f.code == code]
    assert found, f"no {code} among {[(f.code, f.what) for f in result.findings]}"
    f = found[0]
    assert f.why == CODES[code].why and f.fix and f.severity == CODES[code].severity
    return f.what


def copy(src: Path, folder: Path, name: str | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(src, folder / (name or src.name)))


def rewrite(src: Path, folder: Path, *, filename: str | None = None, put: dict[str, bytes] | None = None) -> Path:
    """The wheel rewritten by wheelmatrix's writer (RECORD regenerated): a consistent but edited wheel."""
    contents = read_wheel(src)
    for name, blob in (put or {}).items():
        contents.put(name, blob)
    if filename:
        contents.filename = filename
    folder.mkdir(parents=True, exist_ok=True)
    return write_wheel(contents, folder)


def zip_edit(src: Path, folder: Path, replace_with: dict[str, bytes]) -> Path:
    """Replace entries' bytes inside the ZIP, leaving RECORD as it was (what a hand edit does)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / src.name
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info, replace_with.get(info.filename, zin.read(info)))
    return out


# ------------------------------------------------------------------------------------------ clean
def test_clean_wheel_passes_strict_installs_and_is_reported(clean: Path, tmp_path: Path) -> None:
    wheel = copy(clean, tmp_path / "dist")
    result = run_check(tmp_path, wheel, install=True, write=True, pythons=["3.11", "3.99"])
    assert result.findings == (), [(f.code, f.what) for f in result.findings]
    assert result.passed
    (f,) = result.files
    assert f.platform == "linux-x86_64" and f.tag == "manylinux_2_28_x86_64" and f.size == wheel.stat().st_size
    assert [lib.file for lib in f.libraries] == ["libkbit_cpu.so"] and f.libraries[0].backend == "cpu"
    by_python = {i.python: i for i in f.installs}
    assert by_python["3.11"].status == "passed", by_python["3.11"].reason
    assert by_python["3.99"].status == "skipped" and "not on this host" in by_python["3.99"].reason
    doc = json.loads((tmp_path / "dist" / REPORT_FILE).read_text())
    jsonschema.validate(doc, schema.committed("check-report"))
    assert doc["passed"] is True and doc["files"][0]["sha256"] == f.sha256
    assert result.html is not None and result.html.is_file()

    again = run_check(tmp_path, wheel, install=True, pythons=["3.11", "3.99"])  # unchanged bytes: both from the cache
    assert again.files[0].cached and again.files[0].installs[0].cached and again.passed


def test_warnings_fail_only_in_strict(clean: Path, tmp_path: Path) -> None:
    wheel = rewrite(clean, tmp_path / "in", put={"kbit/__pycache__/x.cpython-311.pyc": b"\x00" * 16})
    strict = run_check(tmp_path, wheel)
    lax = check_release(matrix_for(tmp_path), tmp_path / "dist", [wheel], install=False, write=False)
    assert "WM603" in codes(strict) and {f.severity for f in strict.findings} == {"warning"}
    assert not strict.passed and lax.passed


# ------------------------------------------------------------------------------------- bad inputs
def test_truncated_wheel(clean: Path, tmp_path: Path) -> None:
    wheel = copy(clean, tmp_path / "in")
    wheel.write_bytes(clean.read_bytes()[: clean.stat().st_size // 2])
    result = run_check(tmp_path, wheel)
    assert "cannot be opened as a ZIP archive" in one(result, "WM001")
    assert "cut short or damaged" in one(result, "WM001")
    assert not result.passed


def test_not_a_zip(tmp_path: Path) -> None:
    wheel = tmp_path / "in" / WHEEL
    wheel.parent.mkdir()
    wheel.write_text("<html>404 Not Found</html>\n")
    result = run_check(tmp_path, wheel)
    assert "no ZIP at all" in one(result, "WM001") and not result.passed


def test_record_with_a_wrong_hash(clean: Path, tmp_path: Path) -> None:
    wheel = zip_edit(clean, tmp_path / "in", {"kbit/__init__.py": b"print('patched after the build')\n"})
    result = run_check(tmp_path, wheel)
    assert "kbit-0.1.0.dist-info/RECORD: the hash of kbit/__init__.py differs from the bytes" in one(result, "WM011")
    assert "kbit/__init__.py" in one(result, "WM012")
    assert not result.passed


def test_file_missing_from_record_and_trailing_data(clean: Path, tmp_path: Path) -> None:
    wheel = copy(clean, tmp_path / "in")
    with zipfile.ZipFile(wheel, "a") as zf:
        zf.writestr("kbit/stray.txt", b"added by hand")
    with wheel.open("ab") as fh:
        fh.write(b"appended junk")
    result = run_check(tmp_path, wheel)
    assert "kbit/stray.txt" in one(result, "WM013")
    assert "trailing data" in one(result, "WM002")


def test_wheel_over_the_limit(clean: Path, tmp_path: Path) -> None:
    wheel = copy(clean, tmp_path / "in")
    limit = wheel.stat().st_size - 1
    result = run_check(tmp_path, wheel, matrix=matrix_for(tmp_path, max_file_size=limit, project_quota=limit))
    assert f"over the {limit / 2**20:.2f} MiB limit" in one(result, "WM301")
    assert "project quota" in one(result, "WM302")
    assert next(f for f in result.findings if f.code == "WM302").file is None


def local_version_wheel(clean: Path, folder: Path) -> Path:
    """The clean wheel as version 0.1.0+cu124, consistently (file name, .dist-info, METADATA, RECORD)."""
    contents = read_wheel(clean)
    renamed = {n.replace("kbit-0.1.0.dist-info", "kbit-0.1.0+cu124.dist-info"): b for n, b in contents.files.items()}
    meta = "kbit-0.1.0+cu124.dist-info/METADATA"
    renamed[meta] = renamed[meta].replace(b"Version: 0.1.0", b"Version: 0.1.0+cu124")
    contents.files, contents.modes = {}, {}
    for name, blob in renamed.items():
        contents.put(name, blob)
    contents.filename = f"kbit-0.1.0+cu124-{TAG}.whl"
    folder.mkdir(parents=True, exist_ok=True)
    return write_wheel(contents, folder)


def test_local_version(clean: Path, tmp_path: Path) -> None:
    wheel = local_version_wheel(clean, tmp_path / "in")
    result = run_check(tmp_path, wheel)
    assert codes(result) == {"WM102"}, [(f.code, f.what) for f in result.findings]
    assert "the version 0.1.0+cu124 carries the local segment +cu124" in one(result, "WM102")


def test_linux_x86_64_tag(clean: Path, tmp_path: Path) -> None:
    wheel = rewrite(
        clean,
        tmp_path / "in",
        filename="kbit-0.1.0-py3-none-linux_x86_64.whl",
        put={"kbit-0.1.0.dist-info/WHEEL": read_wheel(clean).files["kbit-0.1.0.dist-info/WHEEL"].replace(
            b"manylinux_2_28_x86_64", b"linux_x86_64")},
    )  # fmt: skip
    result = run_check(tmp_path, wheel)
    assert "platform tag linux_x86_64 is not one PyPI accepts" in one(result, "WM103")
    assert "auditwheel" in next(f.fix for f in result.findings if f.code == "WM103")


def test_file_name_disagreeing_with_metadata_and_wheel(clean: Path, tmp_path: Path) -> None:
    wheel = rewrite(clean, tmp_path / "in", filename=f"kbit-0.2.0-{TAG}.whl")
    result = run_check(tmp_path, wheel)
    assert "the file name says version 0.2.0, METADATA Version says 0.1.0" in one(result, "WM105")
    assert "none matches the file name" in one(result, "WM010")


def test_metadata_version_2_0_and_invalid_field(clean: Path, tmp_path: Path) -> None:
    meta = read_wheel(clean).files["kbit-0.1.0.dist-info/METADATA"]
    meta = meta.replace(b"Metadata-Version: 2.1", b"Metadata-Version: 2.0").replace(
        b"Requires-Python: >=3.9", b"Requires-Python: >=3.12\nRequires-Dist: numpy>="
    )
    wheel = rewrite(clean, tmp_path / "in", put={"kbit-0.1.0.dist-info/METADATA": meta})
    result = run_check(tmp_path, wheel)
    assert "Metadata-Version is 2.0" in one(result, "WM202")
    assert "requires-dist" in one(result, "WM201")
    assert "WM203" in codes(result)  # twine check refuses 2.0 as well


def test_requires_python_excluding_a_declared_python(clean: Path, tmp_path: Path) -> None:
    meta = read_wheel(clean).files["kbit-0.1.0.dist-info/METADATA"].replace(b">=3.9", b">=3.12")
    wheel = rewrite(clean, tmp_path / "in", put={"kbit-0.1.0.dist-info/METADATA": meta})
    result = run_check(tmp_path, wheel)  # make_matrix declares Python 3.11
    assert "Requires-Python >=3.12 excludes Python 3.11" in one(result, "WM206")


def test_lying_manylinux_tag_names_the_symbols(tmp_path: Path) -> None:
    # the library binds pthread_create@GLIBC_2.34 (this host's gcc); tagging it manylinux_2_17
    # without auditwheel's rating is the lie bitsandbytes once shipped
    cell = make_cell_wheel(tmp_path, "cpu", threads=True)
    contents = read_wheel(cell.path)
    contents.put(
        "kbit-0.1.0.dist-info/WHEEL",
        contents.files["kbit-0.1.0.dist-info/WHEEL"].replace(b"linux_x86_64", b"manylinux_2_17_x86_64"),
    )
    contents.filename = "kbit-0.1.0-py3-none-manylinux_2_17_x86_64.whl"
    (tmp_path / "in").mkdir()
    wheel = write_wheel(contents, tmp_path / "in")
    what = one(run_check(tmp_path, wheel), "WM401")
    assert "pthread_create@GLIBC_2.34 in kbit/_lib/libkbit_cpu.so" in what
    assert "manylinux_2_34" in what


def unloadable_wheel(tmp: Path) -> Path:
    """A wheel that imports, but whose library binds a symbol nothing defines: dlopen (RTLD_NOW)
    refuses it, so the fake kbit's `python -m kbit` (it loads every library) fails."""
    tmp.mkdir(parents=True, exist_ok=True)
    src = tmp / "broken.c"
    src.write_text(
        'extern int kbit_symbol_nobody_defines(void);\nconst char *kbit_backend(void) { return "cpu"; }\n'
        "int kbit_cuda_version(void) { return kbit_symbol_nobody_defines(); }\n"
    )
    lib = tmp / "libkbit_cpu.so"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O2", "-o", str(lib), str(src)], check=True)
    cell = make_cell_wheel(tmp, "cpu")
    contents = read_wheel(cell.path)
    contents.put("kbit/_lib/libkbit_cpu.so", lib.read_bytes())
    write_wheel(contents, cell.path.parent)
    (final,) = assemble_all(make_matrix(tmp), [cell], tmp / "assembled")
    return _describe(final.path)


def test_library_that_does_not_load_fails_the_smoke_command(tmp_path: Path) -> None:
    wheel = unloadable_wheel(tmp_path)
    matrix = replace(make_matrix(tmp_path), check=CheckSpec(smoke=("python", "-m", "kbit")))
    result = run_check(tmp_path, wheel, matrix=matrix, install=True, pythons=["3.11"])
    assert codes(result) == {"WM702"}, [(f.code, f.what) for f in result.findings]
    what = one(result, "WM702")
    assert "Python 3.11: `python -m kbit` exited with 1" in what
    assert "undefined symbol: kbit_symbol_nobody_defines" in what
    assert result.files[0].installs[0].status == "failed"
    assert "Traceback" not in what  # the tail is the error line, the whole output is in the log


def test_split_layout_installs_with_its_extras(tmp_path: Path) -> None:
    matrix = make_matrix(tmp_path, split="per-cuda-major")
    cells = [make_cell_wheel(tmp_path, "cpu"), make_cell_wheel(tmp_path, "cuda124")]
    finals = assemble_all(matrix, cells, tmp_path / "assembled")
    assert sorted(f.distribution for f in finals) == ["kbit", "kbit-cu12"]
    wheels = [_describe(f.path) for f in finals]
    matrix = replace(matrix, check=CheckSpec(smoke=("python", "-m", "kbit")))
    result = run_check(tmp_path, *wheels, matrix=matrix, install=True, pythons=["3.11"])
    for f in result.files:
        (install,) = f.installs
        assert install.status == "passed", install.reason
        assert "installed with [cu12] from the checked wheels" in install.reason
    # the fake CUDA library carries no CUDA code: the binary, not its manifest, decides
    assert "libkbit_cuda124.so is declared a CUDA 12.4 library but holds no CUDA code" in one(result, "WM505")


def test_hygiene_build_paths_credentials_leftovers(clean: Path, tmp_path: Path) -> None:
    token = "ghp_" + "A1b2C3d4E5" * 4  # a GitHub token's shape (not a real one)
    wheel = rewrite(
        clean,
        tmp_path / "in",
        put={
            "kbit/_data/build.txt": f"built in {tmp_path}/build/cmake\n".encode(),
            "kbit/_data/settings.ini": f"token = {token}\n".encode(),
            "kbit/tests/test_x.py": b"def test_x(): pass\n",
            "kbit/CMakeCache.txt": b"# CMake cache\n",
        },
    )
    result = run_check(tmp_path, wheel)
    assert f"kbit/_data/build.txt holds built in {tmp_path}/build/cmake" in one(result, "WM601")
    secret = one(result, "WM602")
    assert "kbit/_data/settings.ini: a GitHub token (ghp_A1b2C3…, 44 characters)" in secret
    assert token not in secret  # never printed whole
    leftovers = one(result, "WM604")
    assert "kbit/tests/test_x.py" in leftovers and "kbit/CMakeCache.txt" in leftovers


def test_check_wheel_contents_runs_for_real(clean: Path, tmp_path: Path) -> None:
    init = read_wheel(clean).files["kbit/__init__.py"]
    wheel = rewrite(clean, tmp_path / "in", put={"kbit/copy_of_init.py": init, "tests/__init__.py": b"x = 1\n"})
    whats = [f.what for f in run_check(tmp_path, wheel).findings if f.code == "WM020"]
    assert any(w.startswith("check-wheel-contents W002: Wheel contains duplicate files") for w in whats), whats
    assert any(w.startswith("check-wheel-contents W005") for w in whats), whats


def test_unreadable_binary_and_wrong_platform(clean: Path, tmp_path: Path) -> None:
    dll = read_wheel(clean).files["kbit/_lib/libkbit_cpu.so"]
    wheel = rewrite(
        clean,
        tmp_path / "in",
        put={"kbit/_lib/libkbit_cpu.so": dll[:200], "kbit/_lib/helper.dll": b"MZ" + b"\0" * 100},
    )
    result = run_check(tmp_path, wheel)
    assert "malformed" in one(result, "WM406")


# ------------------------------------------------------------------------------------------ units
@pytest.mark.parametrize(
    ("tag", "accepted"),
    [
        ("linux_x86_64", False),
        ("linux_aarch64", False),
        ("manylinux_2_28_x86_64", True),
        ("manylinux2014_aarch64", True),
        ("musllinux_1_2_x86_64", True),
        ("win_amd64", True),
        ("win_arm64", True),
        ("win32", True),
        ("macosx_11_0_arm64", True),
        ("macosx_11_1_arm64", False),  # 11 and later: minor 0 only
        ("macosx_10_9_x86_64", True),
        ("macosx_14_0_universal2", True),
        ("any", True),
        ("cygwin_x86_64", False),
    ],
)
def test_pypi_platform_tags(tag: str, accepted: bool) -> None:
    assert pypi_accepts_platform(tag) is accepted


def test_tag_glibc() -> None:
    assert tag_glibc("manylinux2014_aarch64") == (2, 17)
    assert tag_glibc("manylinux_2_28_x86_64") == (2, 28)
    assert tag_glibc("manylinux1_x86_64") == (2, 5)
    assert tag_glibc("win_amd64") is None


def test_windows_imports_resolve_to_the_wheel_or_the_system() -> None:
    needed = [
        "KERNEL32.dll",
        "api-ms-win-crt-runtime-l1-1-0.dll",
        "ucrtbase.dll",
        "nvcuda.dll",
        "zlib1.dll",
        "libfoo.dll",
    ]
    assert unresolved_imports(needed, ["kbit/_lib/zlib1.dll"], ["nvcuda.dll", "nvml.dll"]) == ["libfoo.dll"]


def test_secrets_are_found_and_redacted() -> None:
    blob = b"\x00\x01key=AKIAIOSFODNN7EXAMPLE\x00-----BEGIN OPENSSH PRIVATE KEY-----\n"
    found = find_secrets(blob)
    assert found == ["an AWS access key id (AKIAIOSFOD…, 20 characters)", "a private key (-----BEGIN…, 35 characters)"]
    assert find_secrets(b"ghp_short and AKIA lower") == []


def test_every_code_is_documented() -> None:
    docs = (HERE.parents[2] / "docs" / "check.md").read_text(encoding="utf-8")
    missing = [code for code in CODES if f"`{code}`" not in docs]
    assert not missing, f"docs/check.md does not document {missing}"


# ---------------------------------------------------------------------------------- command line
MATRIX_TOML = HERE / "kbit-release.toml"


def wm(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    matrix = tmp / "matrix.toml"
    if not matrix.exists():
        text = MATRIX_TOML.read_text().replace('max-file-size = "100 MiB"', 'max-file-size = "64 KiB"')
        matrix.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "wheelmatrix", "check", "--matrix", str(matrix), "--dist", str(tmp / "dist"),
         "--work", str(tmp / "work"), *args],
        capture_output=True, text=True, check=False, cwd=tmp,
    )  # fmt: skip


def test_cli_bad_inputs_exit_1_without_traceback(clean: Path, tmp_path: Path) -> None:
    truncated = copy(clean, tmp_path / "a")
    truncated.write_bytes(clean.read_bytes()[:300])
    wrong_hash = zip_edit(clean, tmp_path / "b", {"kbit/__init__.py": b"x = 1\n"})
    big = rewrite(clean, tmp_path / "c", put={"kbit/_data/blob.bin": os.urandom(80 * 1024)})
    linux = rewrite(clean, tmp_path / "d", filename="kbit-0.1.0-py3-none-linux_x86_64.whl")
    not_zip = tmp_path / "e" / WHEEL
    not_zip.parent.mkdir()
    not_zip.write_text("<html>404</html>\n")
    local = local_version_wheel(clean, tmp_path / "f")
    unloadable = unloadable_wheel(tmp_path / "g")  # kbit-release.toml's smoke: python -m kbit --json
    cases = [(truncated, "WM001"), (not_zip, "WM001"), (wrong_hash, "WM011"), (big, "WM301"), (local, "WM102"),
             (linux, "WM103"), (unloadable, "WM702")]  # fmt: skip
    for wheel, code in cases:
        install = ["--python", "3.11"] if code == "WM702" else ["--no-install"]
        proc = wm(tmp_path, "--strict", *install, str(wheel))
        assert proc.returncode == 1, (code, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr + proc.stdout
        assert f"\n{code} error" in proc.stdout, proc.stdout
        assert "check failed" in proc.stdout


def test_cli_json_and_no_build_record(clean: Path, tmp_path: Path) -> None:
    wheel = copy(clean, tmp_path / "dist")
    proc = wm(tmp_path, "--format", "json", "--no-install", str(wheel))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    jsonschema.validate(doc, schema.committed("check-report"))
    assert doc["strict"] is False and doc["files"][0]["file"] == WHEEL
    proc = wm(tmp_path, "--no-install")  # no WHEEL and no build record: nothing to check
    assert proc.returncode == 6 and "build-record.json does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_schema_verb_prints_the_check_report_schema() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "wheelmatrix", "schema", "check-report"], capture_output=True, text=True, check=True
    )
    assert json.loads(proc.stdout) == schema.committed("check-report")
    jsonschema.Draft202012Validator.check_schema(json.loads(proc.stdout))
