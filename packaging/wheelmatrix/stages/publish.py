"""The publish stage: the checked files of a release, uploaded to one ``[[publish]]`` stage with
the same bytes, resumably, never half a release.

Gates, enforced here and not by convention:

- only the files of a passing ``dist/check-report.json`` go up, and only while their sha256 is
  the one checked (a file changed after check is refused, naming it); every file the build record
  lists must be in that report and in ``dist/``; a wheel in ``dist/`` that the report does not list
  is refused too (nothing is published beside the release);
- PyPI's upload rules the local test servers lack: the per-file size limit
  (``[packaging] max-file-size``), no local versions, only platform tags PyPI accepts, no file name
  reused with other bytes, no new files for a release older than 14 days;
- a stage after the first is published only once the stage before it was verified with exactly
  these bytes (``dist/publish-record.json``), and that stage's index still serves them.

Uploads are idempotent: the index's view of the project is read first (:mod:`wheelmatrix.index`);
a file there with the same sha256 is done, one with another sha256 is a hard error naming both,
a missing one is uploaded by twine (one file per run, through ``_proc.run``), then read back.
PEP 740 attestations go with the uploads when ``dist/`` holds them (``<file>.publish.attestation``,
as ``python -m pypi_attestations sign`` writes them): for every file of the release, each naming
the checked sha256, or for none (:func:`release_attestations`); twine gets ``--attestations``.
Credentials are twine's (``TWINE_USERNAME``/``TWINE_PASSWORD``, ``WHEELMATRIX_<STAGE>_USERNAME``/
``..._PASSWORD`` per stage, a keyring, a ``.pypirc`` section named after the stage, or Trusted
Publishing in CI); wheelmatrix never reads, prints or writes the password.
"""

from __future__ import annotations

import base64
import configparser
import datetime as dt
import glob
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion

from wheelmatrix import __version__, _proc
from wheelmatrix.errors import PublishError
from wheelmatrix.index import IndexFile, read_project
from wheelmatrix.model import Matrix, PublishStage
from wheelmatrix.stages.check import REPORT_FILE, pypi_accepts_platform, read_build_record
from wheelmatrix.stages.record import RECORD_FILE
from wheelmatrix.stages.repair import tool, tool_path
from wheelmatrix.toolchains.fetch import file_sha256

log = logging.getLogger("wheelmatrix")

PUBLISH_RECORD = "publish-record.json"
PUBLISH_KIND = "wheelmatrix-publish-record"
PUBLISH_VERSION = 1
TWINE_FIX = "pip install 'wheelmatrix[publish]' (it brings twine)"
RELEASE_WINDOW_DAYS = 14  # PyPI accepts no new file for a release older than this
_CHECK = "run `wheelmatrix check` (it rewrites dist/check-report.json), then publish again"


# ------------------------------------------------------------------------------------ the release
@dataclass(frozen=True)
class ReleaseFile:
    file: str
    path: Path
    sha256: str
    size: int
    distribution: str  # the normalized distribution name of the file

    @property
    def short(self) -> str:
        return self.sha256[:12]


@dataclass(frozen=True)
class Release:
    """The files of one release as ``wheelmatrix check`` passed them, still byte-identical."""

    project: str
    version: str
    files: tuple[ReleaseFile, ...]
    dist: Path
    elsewhere: tuple[tuple[str, str], ...] = ()  # cells whose wheels another host builds (cell, reason)

    @property
    def hashes(self) -> dict[str, str]:
        return {f.file: f.sha256 for f in self.files}

    @property
    def distributions(self) -> tuple[str, ...]:
        return tuple(sorted({f.distribution for f in self.files}))


def _listing(names: Sequence[str]) -> str:
    return ", ".join(names)


def load_release(matrix: Matrix, dist: Path) -> Release:
    """The release in ``dist``: the files of its passing check report, each gated (see the module)."""
    report_path = dist / REPORT_FILE
    try:
        report = json.loads(report_path.read_text())
    except FileNotFoundError:
        raise PublishError(
            f"{report_path} does not exist: only checked files are published",
            fix="run `wheelmatrix check` (after `wheelmatrix build && wheelmatrix assemble`)",
        ) from None
    except (OSError, ValueError) as exc:
        raise PublishError(f"{report_path} is not readable JSON: {exc}", fix=_CHECK) from exc
    if not isinstance(report, dict) or report.get("schema") != "wheelmatrix-check-report":
        raise PublishError(f"{report_path} is not a wheelmatrix check report", fix=_CHECK)
    if not report.get("passed"):
        failing = sorted({str(f.get("code")) for f in report.get("findings", []) if isinstance(f, dict)})
        raise PublishError(
            f"{report_path} records a failed check ({_listing(failing) or 'see the report'}): nothing is published",
            fix="correct the findings (`wheelmatrix check` prints each with its fix), rebuild, check again",
        )
    project = str(report.get("project", {}).get("name", matrix.project.name))
    version = str(report.get("project", {}).get("version", ""))
    entries = [f for f in report.get("files", []) if isinstance(f, dict)]
    if not entries:
        raise PublishError(f"{report_path} lists no files", fix=_CHECK)
    checked = {str(f["file"]): str(f["sha256"]) for f in entries}
    build_record = read_build_record(dist)
    listed = sorted(str(w["file"]) for w in (build_record or {}).get("wheels", []) if isinstance(w, dict))
    unchecked = [name for name in listed if name not in checked]
    if unchecked:
        raise PublishError(
            f"{dist / RECORD_FILE} lists {len(unchecked)} file(s) of the release that {REPORT_FILE} did not check: "
            f"{_listing(unchecked)}",
            fix="run `wheelmatrix check` on the whole release (no WHEEL arguments), then publish again",
        )
    missing = sorted(name for name in checked if not (dist / name).is_file())
    if missing:
        raise PublishError(
            f"{len(missing)} file(s) of the release are missing from {dist}: {_listing(missing)}",
            fix="put the release back together (`wheelmatrix assemble`, or download every build artifact into "
            "dist/), run `wheelmatrix check`, then publish again",
        )
    strays = sorted(p.name for p in dist.iterdir() if p.suffix == ".whl" or p.name.endswith(".tar.gz"))
    strays = [name for name in strays if name not in checked]
    if strays:
        raise PublishError(
            f"{dist} holds {len(strays)} file(s) that are not part of the checked release: {_listing(strays)}",
            fix="remove them from dist/, or run `wheelmatrix check` so that they are checked as part of the release",
        )
    files: list[ReleaseFile] = []
    changed: list[str] = []
    for name, sha in sorted(checked.items()):
        path = dist / name
        now = file_sha256(path)
        if now != sha:
            changed.append(f"{name} (checked {sha[:12]}…, now {now[:12]}…)")
            continue
        files.append(ReleaseFile(name, path, sha, path.stat().st_size, _distribution(name)))
    if changed:
        raise PublishError(
            f"{len(changed)} file(s) changed after `wheelmatrix check`: {_listing(changed)}",
            fix="never edit a wheel after check: rebuild it (`wheelmatrix build && wheelmatrix assemble`) and run "
            "`wheelmatrix check` again",
        )
    _pypi_rules(matrix, files)
    elsewhere = tuple(
        (str(c["cell"]), str(c["reason"])) for c in report.get("needs_other_host", []) if isinstance(c, dict)
    )
    return Release(project, version or _version_of(files[0].file), tuple(files), dist, elsewhere)


def _distribution(filename: str) -> str:
    if filename.endswith(".whl"):
        try:
            return str(parse_wheel_filename(filename)[0])
        except InvalidWheelFilename:
            pass
    return str(canonicalize_name(re.split(r"-\d", filename, maxsplit=1)[0]))


def _version_of(filename: str) -> str:
    try:
        return str(parse_wheel_filename(filename)[1])
    except InvalidWheelFilename:
        return ""


def _pypi_rules(matrix: Matrix, files: Sequence[ReleaseFile]) -> None:
    """PyPI's upload rules a local index does not enforce, checked before anything goes up."""
    limit = matrix.packaging.max_file_size
    big = [f"{f.file} ({f.size / 2**20:.1f} MiB)" for f in files if f.size > limit]
    if big:
        raise PublishError(
            f"{_listing(big)} exceed(s) the {limit / 2**20:.0f} MiB per-file limit ([packaging] max-file-size)",
            fix="split the release (`[packaging] split`), drop archs, or get a larger limit from the index and raise "
            "[packaging] max-file-size",
        )
    local: list[str] = []
    tags: list[str] = []
    for f in files:
        if not f.file.endswith(".whl"):
            continue
        try:
            _, version, _, file_tags = parse_wheel_filename(f.file)
        except (InvalidWheelFilename, InvalidVersion):
            raise PublishError(f"{f.file} is not a valid wheel file name", fix=_CHECK) from None
        if version.local is not None:
            local.append(f.file)
        refused = sorted({t.platform for t in file_tags if not pypi_accepts_platform(t.platform)})
        if refused:
            tags.append(f"{f.file} ({', '.join(refused)})")
    if local:
        raise PublishError(
            f"PyPI refuses local versions (+...): {_listing(local)}",
            fix="give the release a public version (no +local part) in the project's metadata and rebuild",
        )
    if tags:
        raise PublishError(
            f"PyPI refuses these platform tags: {_listing(tags)}",
            fix="repair the wheels (`wheelmatrix assemble` runs auditwheel: manylinux_*), then check again",
        )


# ------------------------------------------------------------------------------ the publish record
@dataclass
class StageRecord:
    index_url: str
    repository_url: str
    published: dict[str, str] = field(default_factory=dict)  # file -> sha256, read back from the index
    verified: dict[str, Any] | None = None  # {"files": {file: sha256}, "pythons": [...], "installs": [...], "at"}

    def to_json(self) -> dict[str, Any]:
        return {
            "index_url": self.index_url,
            "repository_url": self.repository_url,
            "published": dict(sorted(self.published.items())),
            "verified": self.verified,
        }


@dataclass
class PublishRecord:
    """``dist/publish-record.json``: what each stage holds and what was verified, kept with the release."""

    project: str
    version: str
    stages: dict[str, StageRecord] = field(default_factory=dict)

    def stage(self, stage: PublishStage) -> StageRecord:
        rec = self.stages.get(stage.name)
        if rec is None or rec.index_url != stage.index_url:
            rec = StageRecord(stage.index_url, stage.repository_url)
            self.stages[stage.name] = rec
        return rec

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": PUBLISH_KIND,
            "version": PUBLISH_VERSION,
            "wheelmatrix": __version__,
            "project": {"name": self.project, "version": self.version},
            "stages": {name: rec.to_json() for name, rec in self.stages.items()},
        }


def read_publish_record(release: Release) -> PublishRecord:
    """The release's record; a fresh one when there is none or it belongs to another release."""
    path = release.dist / PUBLISH_RECORD
    fresh = PublishRecord(release.project, release.version)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return fresh
    except (OSError, ValueError) as exc:
        raise PublishError(
            f"{path} is not readable JSON: {exc}",
            fix=f"delete {path}: the next `wheelmatrix verify` writes it again",
        ) from exc
    if doc.get("schema") != PUBLISH_KIND or doc.get("project") != {"name": release.project, "version": release.version}:
        return fresh
    record = PublishRecord(release.project, release.version)
    for name, st in dict(doc.get("stages", {})).items():
        record.stages[str(name)] = StageRecord(
            str(st["index_url"]),
            str(st["repository_url"]),
            {str(k): str(v) for k, v in dict(st.get("published", {})).items()},
            st.get("verified"),
        )
    return record


def write_publish_record(release: Release, record: PublishRecord) -> Path:
    path = release.dist / PUBLISH_RECORD
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(record.to_json(), indent=1) + "\n")
    tmp.replace(path)
    return path


# ------------------------------------------------------------------------------- the index's view
def stage_named(matrix: Matrix, name: str) -> tuple[int, PublishStage]:
    for i, stage in enumerate(matrix.publish):
        if stage.name == name:
            return i, stage
    raise PublishError(
        f"matrix.toml declares no publish stage {name!r}",
        fix=f"use one of: {', '.join(s.name for s in matrix.publish)} ([[publish]] in matrix.toml)",
    )


def index_view(stage: PublishStage, release: Release) -> dict[str, IndexFile]:
    """Every file the stage's index lists for the release's distributions."""
    view: dict[str, IndexFile] = {}
    for dist_name in release.distributions:
        view.update(read_project(stage.index_url, dist_name))
    return view


def compare_with_index(
    stage: PublishStage, release: Release, view: Mapping[str, IndexFile]
) -> tuple[list[str], list[str]]:
    """(files already there with our bytes, files missing); a file there with other bytes is fatal."""
    done: list[str] = []
    missing: list[str] = []
    for f in release.files:
        there = view.get(f.file)
        if there is None:
            missing.append(f.file)
            continue
        if there.sha256 is None:
            raise PublishError(
                f"{stage.index_url} lists {f.file} without a sha256, so its bytes cannot be compared",
                fix="use an index that gives hashes (PEP 503 #sha256= or PEP 691 JSON)",
            )
        if there.sha256 != f.sha256:
            raise PublishError(
                f"{f.file} is already on {stage.name} ({stage.index_url}) with other bytes: the index has sha256 "
                f"{there.sha256}, the checked file is {f.sha256}",
                fix="a file name can never be reused with other bytes (PyPI forbids it even after deletion): bump the "
                "version, rebuild, check and publish the new release",
            )
        done.append(f.file)
    return done, missing


def _release_age_days(release: Release, view: Mapping[str, IndexFile]) -> float | None:
    times = []
    for f in view.values():
        if f.upload_time and _version_of(f.filename) == release.version:
            try:
                times.append(dt.datetime.fromisoformat(f.upload_time.replace("Z", "+00:00")))
            except ValueError:
                continue
    if not times:
        return None
    return (dt.datetime.now(dt.timezone.utc) - min(times)).total_seconds() / 86400


# --------------------------------------------------------------------------------- attestations
ATTESTATION_SUFFIX = ".publish.attestation"  # what `python -m pypi_attestations sign FILE` writes next to FILE
_SIGN = "python -m pypi_attestations sign dist/*.whl"


def attestations_of(f: ReleaseFile) -> tuple[Path, ...]:
    """The attestation sidecars of ``f`` in its folder: ``<file>.<kind>.attestation``, the files twine's
    ``--attestations`` attaches to ``f`` (``<file>.publish.attestation`` from pypi_attestations)."""
    return tuple(sorted(f.path.parent.glob(glob.escape(f.file) + ".*.attestation")))


def attested_sha256(path: Path) -> str | None:
    """The sha256 the attestation's in-toto statement names as its one subject; None when ``path`` is not
    a PEP 740 attestation (JSON with ``envelope.statement``, base64 of the statement)."""
    try:
        doc = json.loads(path.read_bytes())
        statement = json.loads(base64.b64decode(doc["envelope"]["statement"], validate=True))
        (subject,) = statement["subject"]
        digest = subject["digest"]["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return digest if isinstance(digest, str) else None


def release_attestations(release: Release) -> dict[str, tuple[Path, ...]]:
    """file -> its attestation sidecars, for every file of the release or for none (``{}``).

    Refused before anything goes up: some files attested and others not (an index never lets an
    attestation be added to a file after its upload), and an attestation that is not for the checked
    bytes (the index would refuse that upload halfway through the release).
    """
    found = {f.file: attestations_of(f) for f in release.files}
    attested = [name for name, paths in found.items() if paths]
    if not attested:
        return {}
    bare = [name for name, paths in found.items() if not paths]
    if bare:
        raise PublishError(
            f"{len(attested)} of {len(found)} file(s) of the release in {release.dist} have attestations "
            f"(<file>{ATTESTATION_SUFFIX}), {_listing(bare)} none; a file uploaded without one never gets it",
            fix=f"sign every file ({_SIGN}), or remove the *.attestation files to publish without attestations",
        )
    wrong: list[str] = []
    for f in release.files:
        for path in found[f.file]:
            digest = attested_sha256(path)
            if digest != f.sha256:
                what = "not a PEP 740 attestation" if digest is None else f"names sha256 {digest[:12]}…"
                wrong.append(f"{path.name} ({what}; the checked file is {f.short}…)")
    if wrong:
        raise PublishError(
            f"{len(wrong)} attestation(s) in {release.dist} are not for the checked files: {_listing(wrong)}",
            fix=f"sign the checked files again ({_SIGN}) after the last `wheelmatrix check`, then publish again",
        )
    return found


# ---------------------------------------------------------------------------------------- twine
def stage_env_prefix(stage: PublishStage) -> str:
    """``WHEELMATRIX_TESTPYPI`` for stage ``testpypi``: its credentials are ``<prefix>_USERNAME``/``_PASSWORD``."""
    return "WHEELMATRIX_" + re.sub(r"[^A-Za-z0-9]", "_", stage.name).upper()


def _pypirc_section(stage: PublishStage) -> str | None:
    """The .pypirc section named after the stage, when its repository is the stage's (twine reads it)."""
    path = Path(os.environ.get("HOME", str(Path.home()))) / ".pypirc"
    parser = configparser.RawConfigParser()
    try:
        parser.read(path)
    except configparser.Error:
        return None
    if not parser.has_section(stage.name):
        return None
    defaults = {"pypi": "https://upload.pypi.org/legacy/", "testpypi": "https://test.pypi.org/legacy/"}
    url = parser.get(stage.name, "repository", fallback=defaults.get(stage.name, ""))
    return stage.name if url.rstrip("/") == stage.repository_url.rstrip("/") else None


def _twine_argv(stage: PublishStage, path: Path, attestations: Sequence[Path] = ()) -> tuple[list[str], dict[str, str]]:
    """twine's command line and environment for one upload to ``stage``: no secret in the arguments.
    With ``attestations``, ``--attestations`` and the sidecar files (twine pairs them with ``path``)."""
    twine = tool("twine", TWINE_FIX)
    argv = [twine, "upload", "--non-interactive", "--disable-progress-bar"]
    env = {"NO_COLOR": "1", "TERM": "dumb", "COLUMNS": "10000", "PATH": tool_path()}
    prefix = stage_env_prefix(stage)
    user, password = os.environ.get(f"{prefix}_USERNAME"), os.environ.get(f"{prefix}_PASSWORD")
    section = None
    if password is not None:
        env["TWINE_USERNAME"] = user or "__token__"
        env["TWINE_PASSWORD"] = password
    elif "TWINE_PASSWORD" not in os.environ:
        section = _pypirc_section(stage)
    if section is not None:
        argv += ["--repository", section]
        env["TWINE_REPOSITORY_URL"] = ""
    else:
        argv += ["--repository-url", stage.repository_url]
    if attestations:
        argv.append("--attestations")
    return [*argv, str(path), *map(str, attestations)], env


def _twine_failure(stage: PublishStage, file: str, output: str) -> PublishError:
    text = " ".join(output.split())
    prefix = stage_env_prefix(stage)
    creds = (
        f"give the credentials of {stage.name} as twine reads them: {prefix}_USERNAME/{prefix}_PASSWORD (this stage "
        "only), TWINE_USERNAME/TWINE_PASSWORD, a keyring, a .pypirc section [" + stage.name + "], or Trusted "
        "Publishing in CI; then run the same command again"
    )
    if re.search(r"\b(401|403)\b", text) or "Invalid or non-existent authentication" in text:
        return PublishError(
            f"{stage.name} ({stage.repository_url}) refused the credentials while uploading {file} (HTTP "
            f"{'403' if '403' in text else '401'}); nothing more was uploaded",
            fix=creds,
        )
    if "could not determine credentials" in text or "Credential not found" in text or "Enter your" in text:
        return PublishError(f"no credentials for {stage.name} ({stage.repository_url})", fix=creds)
    if re.search(r"ConnectionError|Connection refused|Max retries exceeded|NameResolutionError", text):
        return PublishError(
            f"{stage.name} ({stage.repository_url}) cannot be reached while uploading {file}",
            fix="check repository-url in [[publish]] of matrix.toml and that the index is up, then run the same "
            "command again (files already there are skipped)",
        )
    tail = text[-400:]
    return PublishError(
        f"twine could not upload {file} to {stage.name} ({stage.repository_url}): {tail}",
        fix="read twine's message; once it is fixed, run the same command again (files already there are skipped)",
    )


# -------------------------------------------------------------------------------------- publish
@dataclass(frozen=True)
class PublishResult:
    stage: str
    index_url: str
    skipped: tuple[str, ...]  # already there with the same sha256
    uploaded: tuple[str, ...]
    seconds: float
    record: Path
    attested: tuple[str, ...] = ()  # uploaded with their attestations (twine --attestations)


def require_previous_verified(matrix: Matrix, release: Release, index: int, record: PublishRecord) -> None:
    """The gate before stage ``index``: the stage before it verified these exact bytes and still serves them."""
    if index == 0:
        return
    stage = matrix.publish[index]
    prev = matrix.publish[index - 1]
    verified = record.stage(prev).verified
    todo = f"run `wheelmatrix publish --to {prev.name}` and `wheelmatrix verify --from {prev.name}` first"
    if not verified:
        raise PublishError(
            f"{stage.name} comes after {prev.name}, and {prev.name} has not been verified for "
            f"{release.project} {release.version} ({release.dist / PUBLISH_RECORD} has no verification)",
            fix=todo,
        )
    files = {str(k): str(v) for k, v in dict(verified.get("files", {})).items()}
    if files != release.hashes:
        differ = sorted(set(files.items()) ^ set(release.hashes.items()))
        names = sorted({name for name, _ in differ})
        raise PublishError(
            f"{prev.name} was verified with other files than the release in {release.dist}: {_listing(names)}",
            fix=todo,
        )
    view = index_view(prev, release)
    gone = [f.file for f in release.files if f.file not in view]
    if gone:
        raise PublishError(
            f"{prev.name} ({prev.index_url}) no longer lists {_listing(gone)}, verified there before",
            fix=todo,
        )
    compare_with_index(prev, release, view)  # other bytes there now: a hard error naming both hashes


def publish(
    matrix: Matrix,
    dist: Path,
    stage_name: str,
    *,
    release: Release | None = None,
    progress: Callable[[str], None] | None = None,
    timeout: float = 3600,
) -> PublishResult:
    """Publish the checked release in ``dist`` to ``stage_name``: gates, plan, uploads, read-back."""
    say = progress or log.info
    start = time.monotonic()
    index, stage = stage_named(matrix, stage_name)
    release = release or load_release(matrix, dist)
    attestations = release_attestations(release)
    record = read_publish_record(release)
    require_previous_verified(matrix, release, index, record)
    view = index_view(stage, release)
    done, missing = compare_with_index(stage, release, view)
    srec = record.stage(stage)
    srec.published.update({name: release.hashes[name] for name in done})
    if missing:
        age = _release_age_days(release, view)
        if age is not None and age > RELEASE_WINDOW_DAYS:
            raise PublishError(
                f"{release.project} {release.version} was first uploaded to {stage.name} {age:.0f} days ago; the "
                f"index accepts no new files after {RELEASE_WINDOW_DAYS} days, so {_listing(missing)} cannot be added",
                fix="publish a new version (a post release) with every file",
            )
    say(
        f"{stage.name}: {len(done)} of {len(release.files)} file(s) already there with the same sha256, "
        f"{len(missing)} to upload"
    )
    uploaded: list[str] = []
    by_name = {f.file: f for f in release.files}
    for n, name in enumerate(missing, 1):
        f = by_name[name]
        sidecars = attestations.get(name, ())
        with_ = f", with {len(sidecars)} attestation(s)" if sidecars else ""
        size = f"{f.size / 2**20:.1f} MiB" if f.size >= 2**20 else f"{f.size / 2**10:.0f} KiB"
        say(f"{stage.name}: uploading {name} ({size}{with_}, {n}/{len(missing)})")
        argv, env = _twine_argv(stage, f.path, sidecars)
        outcome = _proc.run(argv, check=False, timeout=timeout, extra_env=env)
        failed_output = outcome.output if outcome.returncode != 0 else None
        log.debug("twine said: %s", outcome.output.strip())  # -v shows it (twine never prints a password)
        after = index_view(stage, release)
        there = after.get(name)
        if failed_output is not None and (there is None or there.sha256 != f.sha256):
            write_publish_record(release, record)
            err = _twine_failure(stage, name, failed_output)
            left = [m for m in missing if m not in uploaded]
            err.message += (
                f"\n  {stage.name} holds {len(done) + len(uploaded)} of {len(release.files)} file(s); missing: "
                f"{_listing(left)}"
            )
            raise err
        if failed_output is not None:
            say(
                f"{stage.name}: twine failed on {name} but the index lists it with the checked sha256 (the upload "
                "went through, its answer was lost): counted as uploaded"
            )
        if there is None:
            raise PublishError(
                f"twine reported {name} uploaded, but {stage.index_url} does not list it",
                fix="check that index-url and repository-url in [[publish]] name the same index, then run the same "
                "command again",
            )
        compare_with_index(stage, release, {name: there})
        srec.published[name] = there.sha256 or ""
        write_publish_record(release, record)
        uploaded.append(name)
    final = index_view(stage, release)
    done_after, still_missing = compare_with_index(stage, release, final)
    srec.published = {name: release.hashes[name] for name in done_after}
    path = write_publish_record(release, record)
    if still_missing:
        raise PublishError(
            f"{stage.name} is missing {len(still_missing)} file(s) of the release after the uploads: "
            f"{_listing(still_missing)}",
            fix=f"run `wheelmatrix publish --to {stage.name}` again (files already there are skipped)",
        )
    attested = tuple(name for name in uploaded if attestations.get(name))
    return PublishResult(
        stage.name, stage.index_url, tuple(done), tuple(uploaded), time.monotonic() - start, path, attested
    )
