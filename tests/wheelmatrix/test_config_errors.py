"""Every malformed matrix gives one exact error (file, key path, problem, fix) and exit code 3.

Each case is a file under matrices/bad/ with its expected stderr next to it (<name>.err).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from wheelmatrix.cli import main
from wheelmatrix.errors import ExitCode
from wm_support import MATRICES

BAD = MATRICES / "bad"
CASES = sorted(p.stem for p in BAD.glob("*.toml"))


def test_there_are_enough_cases() -> None:
    assert len(CASES) >= 25
    assert all((BAD / f"{c}.err").is_file() for c in CASES)


@pytest.mark.parametrize("case", CASES)
def test_malformed_matrix_exact_error(
    case: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(BAD)
    code = main(["plan", "--matrix", f"{case}.toml"])
    out, err = capsys.readouterr()
    assert code == ExitCode.MATRIX == 3
    assert out == ""
    assert err == (BAD / f"{case}.err").read_text()
    assert err.startswith(f"error: {case}.toml: ")
    assert "\n  fix: " in err


@pytest.mark.parametrize("case", ["not_toml", "unknown_top_key", "sm50_on_cuda13"])
def test_no_traceback_in_a_real_process(case: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "wheelmatrix", "plan", "--matrix", f"{case}.toml"],
        cwd=BAD,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 3
    assert "Traceback" not in proc.stderr
    assert proc.stderr == (BAD / f"{case}.err").read_text()


def test_missing_matrix_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["plan"]) == 3
    assert capsys.readouterr().err == (
        "error: matrix.toml: not found\n  fix: run from the project root or pass --matrix PATH\n"
    )


def test_unknown_verb_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["plna"])
    assert exc.value.code == ExitCode.USAGE
    assert "invalid choice: 'plna'" in capsys.readouterr().err
