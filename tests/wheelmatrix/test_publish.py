"""Staged publishing for real: two pypiserver indexes on 127.0.0.1 stand in for TestPyPI and PyPI
(htpasswd, ``--disable-fallback``); twine, pip and wheelmatrix talk to them over HTTP.

The release is real too: fake-kbit wheels for Linux (auditwheel-repaired) and Windows (zig +
delvewheel) as ``wheelmatrix assemble`` writes them, passed by the real ``wheelmatrix check``.
Every command runs as a subprocess (``python -m wheelmatrix``), as a maintainer or CI runs it; each
fault case asserts the exit code, the one error line, no traceback and what the indexes hold.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import jsonschema
import pytest
from index_servers import USER, IndexServer, free_port, indexes, no_pip_config_env, with_publish

from build_fixtures.cellwheels import HERE, make_cell_wheel, make_matrix
from wheelmatrix import schema
from wheelmatrix.index import read_project
from wheelmatrix.model import CheckSpec
from wheelmatrix.stages.assemble import assemble_all
from wheelmatrix.stages.check import InstallSource, check_installs_from_index, check_release
from wheelmatrix.stages.publish import PUBLISH_RECORD
from wheelmatrix.stages.record import make_record, write_record

PASSWORD = "wm-pw-" + secrets.token_hex(12)
OUTPUTS: list[str] = []  # every output of every command of this module: grepped for the password
MATRIX_TOML = HERE / "kbit-release.toml"
LINUX = "kbit-0.1.0-py3-none-manylinux_2_28_x86_64.whl"
WINDOWS = "kbit-0.1.0-py3-none-win_amd64.whl"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[IndexServer]]:
    with indexes(tmp_path_factory.mktemp("indexes"), PASSWORD) as started:
        yield started


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dist/ of a checked two-file release (2 MB wheels: an upload takes a moment, long enough to kill)."""
    tmp = tmp_path_factory.mktemp("release")
    matrix = make_matrix(tmp)
    cells = [make_cell_wheel(tmp, "cpu", pad=2_000_000), make_cell_wheel(tmp, "cpu", windows=True, pad=2_000_000)]
    finals = assemble_all(matrix, cells, tmp / "dist")
    assert sorted(f.path.name for f in finals) == [LINUX, WINDOWS]
    record = make_record(
        matrix, [], finals, version="0.1.0", needs_other_host=(), cells_wall_seconds=0, assemble_seconds=0
    )
    write_record(tmp / "dist", record)
    result = check_release(matrix, tmp / "dist", install=False, work=tmp / "work")
    assert result.passed, result.findings
    (tmp / "dist" / "report.html").unlink()
    return tmp / "dist"


class Stage:
    """One test's copy of the release, its matrix.toml naming both indexes, and a runner."""

    def __init__(self, tmp: Path, release: Path, servers: list[IndexServer], *, smoke: str | None = None) -> None:
        self.tmp = tmp
        self.dist = tmp / "dist"
        shutil.copytree(release, self.dist)
        self.testpypi, self.pypi = servers
        for s in servers:
            s.clear()
        text = MATRIX_TOML.read_text().replace('python = ["3.9", "3.10", "3.11", "3.12", "3.13"]', 'python = ["3.11"]')
        if smoke is not None:
            text = text.replace('smoke = ["python", "-m", "kbit", "--json"]', f"smoke = {smoke}")
        self.matrix = tmp / "matrix.toml"
        self.matrix.write_text(with_publish(text, servers))

    def env(self, **extra: str) -> dict[str, str]:
        env = no_pip_config_env()
        env.update({"TWINE_USERNAME": USER, "TWINE_PASSWORD": PASSWORD, "HOME": str(self.tmp)})
        env.update(extra)
        return {k: v for k, v in env.items() if v != ""}

    def popen_args(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "wheelmatrix", *args, "--matrix", str(self.matrix), "--dist", str(self.dist)]

    def wm(self, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        argv = self.popen_args(*args)
        if args[0] in ("verify", "release"):
            argv += ["--work", str(self.tmp / "work")]
        proc = subprocess.run(argv, capture_output=True, text=True, env=env or self.env(), cwd=self.tmp, check=False)
        OUTPUTS.append(proc.stdout + proc.stderr)
        return proc

    def local(self) -> dict[str, str]:
        return {p.name: sha(p) for p in sorted(self.dist.glob("*.whl"))}


@pytest.fixture
def stage(tmp_path: Path, release: Path, servers: list[IndexServer]) -> Stage:
    return Stage(tmp_path, release, servers)


def refused(proc: subprocess.CompletedProcess[str], code: int, words: str) -> str:
    """The one error line of a refused command (exit ``code``, no traceback), containing ``words``."""
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    out = proc.stdout + proc.stderr
    assert "Traceback" not in out
    errors = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, out
    assert words in errors[0], errors[0]
    assert "\n  fix: " in proc.stderr
    return errors[0]


def index_hashes(server: IndexServer) -> dict[str, str]:
    return {name: str(f.sha256) for name, f in read_project(server.simple, "kbit").items()}


# ------------------------------------------------------------------------------------ the happy path
def test_testpypi_then_verify_then_pypi_with_the_same_bytes(stage: Stage) -> None:
    local = stage.local()
    proc = stage.wm("publish", "--to", "testpypi")
    assert proc.returncode == 0, proc.stderr
    assert "2 uploaded, 0 already there" in proc.stdout
    assert stage.testpypi.files() == sorted(local) and stage.pypi.files() == []
    assert index_hashes(stage.testpypi) == local

    refused(stage.wm("publish", "--to", "pypi"), 7, "testpypi has not been verified")
    assert stage.pypi.files() == []

    proc = stage.wm("verify", "--from", "testpypi")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"{LINUX} Python 3.11: passed" in proc.stdout
    assert f"installed from {stage.testpypi.simple}" in proc.stdout
    assert f"{WINDOWS} Python 3.11: skipped" in proc.stdout  # a win_amd64 wheel does not run here
    record = json.loads((stage.dist / PUBLISH_RECORD).read_text())
    jsonschema.validate(record, schema.committed("publish-record"))
    assert record["stages"]["testpypi"]["verified"]["files"] == local

    # per-stage credentials: pypi's own variables, no TWINE_* at all
    env = stage.env(
        TWINE_USERNAME="", TWINE_PASSWORD="", WHEELMATRIX_PYPI_USERNAME=USER, WHEELMATRIX_PYPI_PASSWORD=PASSWORD
    )
    proc = stage.wm("publish", "--to", "pypi", env=env)
    assert proc.returncode == 0, proc.stderr
    assert index_hashes(stage.pypi) == local  # the second index's sha256 of every file is the local file's

    proc = stage.wm("publish", "--to", "pypi", env=env)  # idempotent: nothing to do, nothing duplicated
    assert proc.returncode == 0 and "0 uploaded, 2 already there" in proc.stdout
    assert stage.pypi.files() == sorted(local)

    # the verified stage is re-read before the next one: other bytes there now are a hard error
    (stage.testpypi.folder / LINUX).write_bytes(b"not the checked wheel")
    line = refused(stage.wm("publish", "--to", "pypi", env=env), 7, "is already on testpypi (")
    assert "with other bytes" in line
    assert hashlib.sha256(b"not the checked wheel").hexdigest() in line and local[LINUX] in line


def test_release_command_runs_every_stage_and_resumes(stage: Stage) -> None:
    proc = stage.wm("release", env=stage.env(TWINE_PASSWORD="not-the-password"))
    refused(proc, 7, "testpypi (" + stage.testpypi.upload + ") refused the credentials")
    assert "check: every file of the release" in proc.stderr  # the check ran and passed first
    then = "  then: `wheelmatrix publish --to testpypi`, then `wheelmatrix verify --from testpypi`, then "
    assert then + "`wheelmatrix publish --to pypi` and `wheelmatrix verify --from pypi`" in proc.stderr
    assert stage.testpypi.files() == [] and stage.pypi.files() == []

    proc = stage.wm("release")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "released kbit 0.1.0 to testpypi, pypi" in proc.stdout
    assert index_hashes(stage.testpypi) == stage.local() == index_hashes(stage.pypi)
    record = json.loads((stage.dist / PUBLISH_RECORD).read_text())
    assert all(record["stages"][s]["verified"] for s in ("testpypi", "pypi"))


# ------------------------------------------------------------------------------------- fault cases
def test_wrong_password_uploads_nothing(stage: Stage) -> None:
    proc = stage.wm("publish", "--to", "testpypi", env=stage.env(TWINE_PASSWORD="not-the-password"))
    refused(proc, 7, "testpypi (" + stage.testpypi.upload + ") refused the credentials")
    assert stage.testpypi.files() == []
    assert "WHEELMATRIX_TESTPYPI_USERNAME/WHEELMATRIX_TESTPYPI_PASSWORD" in proc.stderr


def test_credentials_from_a_pypirc_section_named_after_the_stage(stage: Stage) -> None:
    no_creds = stage.env(TWINE_USERNAME="", TWINE_PASSWORD="")
    refused(stage.wm("publish", "--to", "testpypi", env=no_creds), 7, "no credentials for testpypi")
    assert stage.testpypi.files() == []
    pypirc = stage.tmp / ".pypirc"  # HOME is the test's folder
    pypirc.write_text(
        f"[distutils]\nindex-servers = testpypi\n\n[testpypi]\nrepository = {stage.testpypi.upload}\n"
        f"username = {USER}\npassword = {PASSWORD}\n"
    )
    proc = stage.wm("publish", "--to", "testpypi", env=no_creds)
    assert proc.returncode == 0, proc.stderr
    assert index_hashes(stage.testpypi) == stage.local()


class _LostResponse(http.server.BaseHTTPRequestHandler):
    """Forwards an upload to the real index, then drops the connection without an answer: an upload
    that succeeded but whose response never came back (a timeout after success, twine#199)."""

    target = ""
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization")}
        request = urllib.request.Request(self.target, data=body, headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=60):
            pass
        self.close_connection = True  # no status line: the client sees the connection drop

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_an_upload_whose_answer_was_lost_is_read_back_and_counted(stage: Stage) -> None:
    _LostResponse.target = stage.testpypi.upload
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _LostResponse)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        upload = f"http://127.0.0.1:{proxy.server_address[1]}/"
        text = stage.matrix.read_text().replace(
            f'repository-url = "{stage.testpypi.upload}"', f'repository-url = "{upload}"'
        )
        stage.matrix.write_text(text)
        proc = stage.wm("publish", "--to", "testpypi")
    finally:
        proxy.shutdown()
        proxy.server_close()
    assert proc.returncode == 0, proc.stderr  # twine failed every time; the index's read-back decides
    assert "2 uploaded, 0 already there" in proc.stdout
    assert proc.stderr.count("the upload went through, its answer was lost") == 2
    assert index_hashes(stage.testpypi) == stage.local()


def test_index_down(stage: Stage) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    text = stage.matrix.read_text().replace(stage.testpypi.url, dead)
    stage.matrix.write_text(text)
    line = refused(stage.wm("publish", "--to", "testpypi"), 7, f"the index {dead}/simple/ cannot be reached")
    assert "refused" in line.lower()
    assert stage.testpypi.files() == []


def _children(pid: int) -> list[int]:
    found: list[int] = []
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return found
    for kid in map(int, kids):
        found += [kid, *_children(kid)]
    return found


def test_killed_mid_upload_resumes_without_duplicate_or_missing_file(stage: Stage) -> None:
    proc = subprocess.Popen(
        stage.popen_args("publish", "--to", "testpypi"),
        env=stage.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 120
    while not stage.testpypi.files() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    tree = _children(proc.pid)
    for pid in [proc.pid, *tree]:  # the machine dies: wheelmatrix and its twine at once
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()
    if proc.stdout is not None:
        OUTPUTS.append(proc.stdout.read().decode())
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL, "the publish finished before it could be killed"
    half = stage.testpypi.files()
    assert 1 <= len(half) < 2, half  # killed halfway: one file up, the other not

    resumed = stage.wm("publish", "--to", "testpypi")
    assert resumed.returncode == 0, resumed.stderr
    assert "1 uploaded, 1 already there" in resumed.stdout
    assert stage.testpypi.files() == sorted(stage.local())  # no duplicate, none missing
    assert index_hashes(stage.testpypi) == stage.local()


def test_a_file_already_there_with_other_bytes_names_both_hashes(stage: Stage) -> None:
    other = b"other bytes under the same name"
    (stage.testpypi.folder / WINDOWS).write_bytes(other)
    line = refused(stage.wm("publish", "--to", "testpypi"), 7, f"{WINDOWS} is already on testpypi (")
    assert "with other bytes" in line
    assert hashlib.sha256(other).hexdigest() in line and stage.local()[WINDOWS] in line
    assert stage.testpypi.files() == [WINDOWS]  # nothing uploaded beside it


def test_a_wheel_edited_after_check_is_refused(stage: Stage) -> None:
    wheel = stage.dist / LINUX
    wheel.write_bytes(wheel.read_bytes() + b"\0")
    line = refused(stage.wm("publish", "--to", "testpypi"), 7, "changed after `wheelmatrix check`")
    assert LINUX in line
    assert stage.testpypi.files() == []


def test_pypi_before_testpypi_is_verified_is_refused(stage: Stage) -> None:
    refused(stage.wm("publish", "--to", "pypi"), 7, "pypi comes after testpypi, and testpypi has not been verified")
    assert stage.wm("publish", "--to", "testpypi").returncode == 0
    refused(stage.wm("publish", "--to", "pypi"), 7, "testpypi has not been verified")  # published is not verified
    assert stage.pypi.files() == []


def test_a_dist_missing_a_wheel_of_the_release_is_refused(stage: Stage) -> None:
    (stage.dist / WINDOWS).unlink()
    line = refused(stage.wm("publish", "--to", "testpypi"), 7, "missing from")
    assert WINDOWS in line
    assert stage.testpypi.files() == []
    shutil.copyfile(stage.dist / LINUX, stage.dist / "kbit-0.1.0-py3-none-win_amd64.whl")  # back, with other bytes
    refused(stage.wm("publish", "--to", "testpypi"), 7, "changed after `wheelmatrix check`")
    (stage.dist / WINDOWS).unlink()


def test_a_wheel_beside_the_release_is_refused(stage: Stage) -> None:
    shutil.copyfile(stage.dist / LINUX, stage.dist / "kbit-0.1.0-py3-none-manylinux_2_17_x86_64.whl")
    line = refused(stage.wm("publish", "--to", "testpypi"), 7, "not part of the checked release")
    assert "manylinux_2_17" in line
    assert stage.testpypi.files() == []


def test_no_check_report_and_a_failed_one(stage: Stage) -> None:
    report = stage.dist / "check-report.json"
    doc = json.loads(report.read_text())
    report.write_text(json.dumps({**doc, "passed": False}))
    refused(stage.wm("publish", "--to", "testpypi"), 7, "records a failed check")
    report.unlink()
    refused(stage.wm("publish", "--to", "testpypi"), 7, "only checked files are published")
    assert stage.testpypi.files() == []


def test_unknown_stage(stage: Stage) -> None:
    line = refused(stage.wm("publish", "--to", "staging"), 7, "declares no publish stage 'staging'")
    assert line


def test_verify_fails_when_the_smoke_fails_and_pypi_stays_closed(
    tmp_path: Path, release: Path, servers: list[IndexServer]
) -> None:
    stage = Stage(tmp_path, release, servers, smoke='["python", "-c", "raise SystemExit(3)"]')
    assert stage.wm("publish", "--to", "testpypi").returncode == 0
    line = refused(stage.wm("verify", "--from", "testpypi"), 7, "verification of testpypi failed")
    assert "exited with 3" in line
    refused(stage.wm("publish", "--to", "pypi"), 7, "testpypi has not been verified")
    assert stage.pypi.files() == []


def test_verify_of_a_stage_missing_a_file(stage: Stage) -> None:
    assert stage.wm("publish", "--to", "testpypi").returncode == 0
    (stage.testpypi.folder / WINDOWS).unlink()
    line = refused(stage.wm("verify", "--from", "testpypi"), 7, "is missing 1 file(s)")
    assert WINDOWS in line


def test_verify_installs_the_split_layout_with_its_extras_from_the_index_alone(
    tmp_path: Path, servers: list[IndexServer]
) -> None:
    """kbit + kbit-cu12 (split per CUDA major): ``kbit[cu12]`` resolves both from the stage's index.
    The fake CUDA library carries no CUDA code, so `wheelmatrix check` would fail it (WM505): the
    install step of verify is called directly, on files put on the index by hand."""
    matrix = make_matrix(tmp_path, split="per-cuda-major")
    cells = [make_cell_wheel(tmp_path, "cpu"), make_cell_wheel(tmp_path, "cuda124")]
    finals = assemble_all(matrix, cells, tmp_path / "assembled")
    assert sorted(f.distribution for f in finals) == ["kbit", "kbit-cu12"]
    matrix = replace(matrix, check=CheckSpec(smoke=("python", "-m", "kbit")))
    index = servers[0]
    index.clear()
    for f in finals:
        shutil.copyfile(f.path, index.folder / f.path.name)
    source = InstallSource(index_url=index.simple, deps_index_url=index.simple, logs="verify")
    wheels = [f.path for f in finals]
    installs, findings = check_installs_from_index(matrix, wheels, ["3.11"], source=source, work=tmp_path / "w")
    assert not findings, findings
    for results in installs.values():
        (result,) = results
        assert result.status == "passed", result.reason
        assert f"installed with [cu12] from {index.simple}" in result.reason
    # the split distribution comes from the index, never from the local files: gone there, the install fails
    (index.folder / next(f.path.name for f in finals if f.distribution == "kbit-cu12")).unlink()
    installs, findings = check_installs_from_index(matrix, wheels, ["3.11"], source=source, work=tmp_path / "w")
    assert findings and all(f.code == "WM701" for f in findings)
    assert f"could not install it from {index.simple} alone" in findings[0].what


# ------------------------------------------------------------------------------- the index reader
class _JSONIndex(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self) -> None:
        wants_json = "application/vnd.pypi.simple.v1+json" in self.headers.get("Accept", "")
        if self.path != "/simple/kbit/" or not wants_json:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/vnd.pypi.simple.v1+json")
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_index_reader_speaks_pep691_json_and_pep503_html(stage: Stage) -> None:
    assert stage.wm("publish", "--to", "testpypi").returncode == 0
    html = read_project(stage.testpypi.simple, "KBit")  # PEP 503 page, names normalized
    assert {n: f.sha256 for n, f in html.items()} == stage.local()
    doc = {
        "meta": {"api-version": "1.1"},
        "name": "kbit",
        "files": [
            {"filename": LINUX, "url": f"../../files/{LINUX}", "hashes": {"sha256": "AB" * 32}, "size": 7,
             "upload-time": "2026-01-01T00:00:00Z"},
            {"filename": WINDOWS, "url": "https://files.example/w.whl", "hashes": {}},
        ],
    }  # fmt: skip
    _JSONIndex.body = json.dumps(doc).encode()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _JSONIndex)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/simple/"
        files = read_project(base, "kbit")
        assert read_project(base, "other") == {}
    finally:
        server.shutdown()
        server.server_close()
    linux = files[LINUX]
    assert linux.sha256 == "ab" * 32 and linux.size == 7 and linux.upload_time == "2026-01-01T00:00:00Z"
    assert linux.url == f"http://127.0.0.1:{server.server_address[1]}/files/{LINUX}"
    assert files[WINDOWS].sha256 is None


def test_a_release_older_than_14_days_gets_no_new_file(stage: Stage) -> None:
    """PyPI accepts no new file for a release more than 14 days after its first upload; the local
    servers do not say when a file was uploaded, so a PEP 691 index with PEP 700 upload times does."""
    doc = {
        "meta": {"api-version": "1.1"},
        "name": "kbit",
        "files": [{"filename": LINUX, "url": LINUX, "hashes": {"sha256": stage.local()[LINUX]},
                   "upload-time": "2026-01-01T00:00:00Z"}],
    }  # fmt: skip
    _JSONIndex.body = json.dumps(doc).encode()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _JSONIndex)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        simple = f"http://127.0.0.1:{server.server_address[1]}/simple/"
        text = stage.matrix.read_text().replace(stage.testpypi.simple, simple)
        stage.matrix.write_text(text)
        line = refused(stage.wm("publish", "--to", "testpypi"), 7, "accepts no new files after 14 days")
    finally:
        server.shutdown()
        server.server_close()
    assert WINDOWS in line
    assert stage.testpypi.files() == []


# ----------------------------------------------------------------------------- attestations (PEP 740)
def fake_attestation(wheel: Path, sha256: str) -> Path:
    """``<wheel>.publish.attestation`` shaped as ``python -m pypi_attestations sign`` writes it: its
    in-toto statement (base64 in ``envelope.statement``) names ``sha256``. The certificate and the
    signature are not real (signing needs a CI's OIDC identity); neither twine nor pypiserver checks them."""
    statement = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": wheel.name, "digest": {"sha256": sha256}}],
        "predicateType": "https://docs.pypi.org/attestations/publish/v1",
        "predicate": None,
    }
    doc = {
        "version": 1,
        "verification_material": {"certificate": base64.b64encode(b"no cert").decode(), "transparency_entries": [{}]},
        "envelope": {
            "statement": base64.b64encode(json.dumps(statement).encode()).decode(),
            "signature": base64.b64encode(b"no signature").decode(),
        },
    }
    path = wheel.with_name(wheel.name + ".publish.attestation")
    path.write_text(json.dumps(doc))
    return path


def twine_runs(output: str) -> list[list[str]]:
    """The twine command lines ``wheelmatrix -v`` echoed (``$ .../twine upload ...``)."""
    runs = [shlex.split(line[2:]) for line in output.splitlines() if line.startswith("$ ")]
    return [argv for argv in runs if Path(argv[0]).name == "twine"]


TWINE_ATTESTATION_WARNING = "Only PyPI and TestPyPI support attestations"  # twine says it only with --attestations


def test_attestations_in_dist_go_to_twine_with_their_wheel(stage: Stage) -> None:
    """A sidecar per wheel: each wheel's twine run gets ``--attestations`` and that wheel's sidecar.

    What this can prove: pypiserver ignores the ``attestations`` form field, so it cannot show they
    arrived. It shows what twine was given (the command lines ``-v`` echoes) and that twine took them:
    twine warns that only PyPI and TestPyPI support attestations, which it says only with the flag,
    and it fails an upload whose wheel has no sidecar among its arguments (the next test runs that
    for real), so each upload passing means twine paired a sidecar with its wheel. PyPI's acceptance
    of signed attestations is proven only by a real release (docs/ci.md, section 7)."""
    local = stage.local()
    sidecars = {name: fake_attestation(stage.dist / name, digest) for name, digest in local.items()}
    proc = stage.wm("publish", "--to", "testpypi", "-v")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    runs = twine_runs(out)
    assert len(runs) == 2
    for argv in runs:
        wheel = Path(argv[-2])
        assert "--attestations" in argv and argv[-1] == str(sidecars[wheel.name]), argv
    assert sorted(Path(argv[-2]).name for argv in runs) == sorted(local)
    assert out.count(TWINE_ATTESTATION_WARNING) == 2
    assert "with 1 attestation(s)" in proc.stderr
    assert f"uploaded with their attestations (twine --attestations): {LINUX}, {WINDOWS}" in proc.stdout
    assert index_hashes(stage.testpypi) == local  # the wheels' own bytes; the sidecars are no files of the index
    assert stage.testpypi.files() == sorted(local)


def test_without_attestations_twine_gets_no_flag(stage: Stage) -> None:
    proc = stage.wm("publish", "--to", "testpypi", "-v")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    runs = twine_runs(out)
    assert len(runs) == 2 and not any("--attestations" in argv for argv in runs)
    assert TWINE_ATTESTATION_WARNING not in out and "uploaded with their attestations" not in proc.stdout
    assert index_hashes(stage.testpypi) == stage.local()
    # why the flag goes only with sidecars: the real twine fails an --attestations upload without one
    stage.testpypi.clear()
    env = stage.env(NO_COLOR="1", TERM="dumb", COLUMNS="10000")
    argv = [*runs[0][:-1], "--attestations", runs[0][-1]]
    twine = subprocess.run(argv, capture_output=True, text=True, env=env, check=False)
    said = " ".join((twine.stdout + twine.stderr).split())
    assert twine.returncode != 0 and "Upload with attestations requested, but" in said, said
    assert said.endswith("has no associated attestations"), said  # (rich wraps the long path: not compared)
    assert stage.testpypi.files() == []


def test_attestations_for_some_files_only_are_refused(stage: Stage) -> None:
    fake_attestation(stage.dist / LINUX, stage.local()[LINUX])
    line = refused(stage.wm("publish", "--to", "testpypi"), 7, "1 of 2 file(s) of the release in")
    assert f"{WINDOWS} none" in line
    assert stage.testpypi.files() == []


def test_an_attestation_of_other_bytes_is_refused_before_any_upload(stage: Stage) -> None:
    local = stage.local()
    fake_attestation(stage.dist / LINUX, local[LINUX])
    stale = hashlib.sha256(b"an earlier build").hexdigest()
    fake_attestation(stage.dist / WINDOWS, stale)
    line = refused(stage.wm("publish", "--to", "testpypi"), 7, "1 attestation(s) in")
    assert f"{WINDOWS}.publish.attestation (names sha256 {stale[:12]}" in line and local[WINDOWS][:12] in line
    (stage.dist / (WINDOWS + ".publish.attestation")).write_text("{not json")
    line = refused(stage.wm("publish", "--to", "testpypi"), 7, "are not for the checked files")
    assert "(not a PEP 740 attestation;" in line
    assert stage.testpypi.files() == []


# ------------------------------------------------------------------------------------------ secrets
def test_the_password_is_in_no_output_report_or_record(stage: Stage) -> None:
    # run once more with the password in every place twine reads it from
    stage.wm("publish", "--to", "testpypi", env=stage.env(WHEELMATRIX_TESTPYPI_PASSWORD=PASSWORD))
    assert len(OUTPUTS) > 20, "the module's commands ran first"
    leaked = [out for out in OUTPUTS if PASSWORD in out]
    assert not leaked
    tmp_root = stage.tmp.parent
    for path in tmp_root.rglob("*"):
        if path.is_file() and path.suffix in {".json", ".log", ".html", ".txt", ".toml"}:
            assert PASSWORD.encode() not in path.read_bytes(), path
