"""``unpacksim report``: every format, the exit codes, and one-line messages for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from unpacksim.cli import ExitCode, main
from unpacksim.reports.formats import FORMATS, render
from unpacksim.reports.io import write_finding
from unpacksim.reports.records import Finding, dumps


@pytest.fixture
def finding_file(finding: Finding, tmp_path: Path) -> Path:
    return write_finding(finding, tmp_path)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line_error(err: str, prog: str = "unpacksim report") -> str:
    assert err.endswith("\n") and err.count("\n") == 1, f"not one line: {err!r}"
    assert err.startswith(f"{prog}: error: ")
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("fmt", FORMATS)
def test_report_prints_each_format(
    capsys: pytest.CaptureFixture[str], finding: Finding, finding_file: Path, fmt: str
) -> None:
    code, out, err = _run(capsys, "report", str(finding_file), "--format", fmt)
    assert (code, err) == (ExitCode.OK, "")
    assert out == render(finding, fmt)


def test_report_defaults_to_text(capsys: pytest.CaptureFixture[str], finding_file: Path) -> None:
    code, out, _ = _run(capsys, "report", str(finding_file))
    assert code == 0 and out.startswith(
        "FINDING f-0123456789ab: parent_reachable_at_prepare broken"
    )


def test_report_json_is_the_canonical_finding(
    capsys: pytest.CaptureFixture[str], finding: Finding, finding_file: Path
) -> None:
    code, out, _ = _run(capsys, "report", str(finding_file), "--json")
    assert code == 0 and out == dumps(finding)


def test_report_writes_an_output_file(finding: Finding, finding_file: Path, tmp_path: Path) -> None:
    target = tmp_path / "report.html"
    assert main(["report", str(finding_file), "-f", "html", "-o", str(target)]) == 0
    assert target.read_text(encoding="utf-8") == render(finding, "html")


def test_report_graph_selects_a_stage(
    capsys: pytest.CaptureFixture[str], finding: Finding, finding_file: Path
) -> None:
    code, out, _ = _run(capsys, "report", str(finding_file), "-f", "graphml", "--graph", "after")
    assert code == 0 and out == render(finding, "graphml", graph="after")


def test_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = _run(capsys, "report", str(tmp_path / "nope.json"))
    assert (code, out) == (ExitCode.USAGE, "")
    assert _one_line_error(err).endswith("nope.json: cannot read: no such file or directory\n")


def test_corrupt_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "cut.json"
    path.write_text('{"schema": "unpacksim.finding/1", "id": ', encoding="utf-8")
    code, _, err = _run(capsys, "report", str(path))
    assert code == 2
    assert "cut.json: not valid JSON: Expecting value at line 1 column 41" in _one_line_error(err)


def test_wrong_schema_version(
    capsys: pytest.CaptureFixture[str], finding: Finding, tmp_path: Path
) -> None:
    path = tmp_path / "new.json"
    path.write_text(
        json.dumps(finding.to_json() | {"schema": "unpacksim.finding/2"}), encoding="utf-8"
    )
    code, _, err = _run(capsys, "report", str(path))
    assert code == 2
    assert "version 'unpacksim.finding/2' is not supported" in _one_line_error(err)


def test_bad_field(capsys: pytest.CaptureFixture[str], finding: Finding, tmp_path: Path) -> None:
    data = json.loads(dumps(finding))
    data["trace"][0]["kind"] = "begin"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    code, _, err = _run(capsys, "report", str(path))
    assert code == 2
    assert (
        "field 'trace[0].kind': must be 'invoke', 'complete' or 'fault', got 'begin'"
        in _one_line_error(err)
    )


def test_unknown_format(capsys: pytest.CaptureFixture[str], finding_file: Path) -> None:
    code, out, err = _run(capsys, "report", str(finding_file), "--format", "pdf")
    assert (code, out) == (2, "")
    assert "argument -f/--format: invalid choice: 'pdf'" in _one_line_error(err)
    assert "(see 'unpacksim report --help')" in err


@pytest.mark.parametrize(
    ("argv", "prog", "words"),
    [
        ([], "unpacksim", "a command is required"),
        (["bogus"], "unpacksim", "argument COMMAND: invalid choice: 'bogus'"),
        (["report"], "unpacksim report", "the following arguments are required: FINDING"),
        (
            ["report", "x.json", "--json", "-f", "md"],
            "unpacksim report",
            "not allowed with argument",
        ),
        (
            ["report", "x.json", "--graph", "after"],
            "unpacksim report",
            "--graph applies to --format dot or graphml",
        ),
    ],
)
def test_bad_usage(
    capsys: pytest.CaptureFixture[str], argv: list[str], prog: str, words: str
) -> None:
    code, out, err = _run(capsys, *argv)
    assert (code, out) == (2, "")
    assert words in _one_line_error(err, prog)


def test_unwritable_output(
    capsys: pytest.CaptureFixture[str], finding_file: Path, tmp_path: Path
) -> None:
    code, _, err = _run(capsys, "report", str(finding_file), "-o", str(tmp_path / "no" / "r.html"))
    assert code == 2
    assert "r.html: cannot write: no such file or directory" in _one_line_error(err)


def test_console_script_exit_codes(finding_file: Path, tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "unpacksim.cli", "report", str(finding_file), "-f", "md"],
        capture_output=True,
        text=True,
        encoding="utf-8",
    )
    assert ok.returncode == 0 and ok.stdout.startswith("# Finding `f-0123456789ab`")
    bad = subprocess.run(
        [sys.executable, "-m", "unpacksim.cli", "report", str(tmp_path / "gone.json")],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr.startswith("unpacksim report: error: ") and bad.stderr.count("\n") == 1
