"""Finding files: atomic writes, and loads that fail with one clear line."""

from __future__ import annotations

import dataclasses
import json
import os
import stat
from pathlib import Path

import pytest

from unpacksim.reports.io import ReportFileError, load_finding, write_finding, write_text_atomic
from unpacksim.reports.records import Finding, Step, dumps


def test_write_then_load_round_trips(finding: Finding, tmp_path: Path) -> None:
    path = write_finding(finding, tmp_path / "one.json")
    assert path.read_text(encoding="utf-8") == dumps(finding)
    assert load_finding(path) == finding


def test_a_directory_target_gets_the_id_as_file_name(finding: Finding, tmp_path: Path) -> None:
    path = write_finding(finding, tmp_path)
    assert path == tmp_path / "f-0123456789ab.json"
    assert load_finding(path) == finding


def test_write_leaves_no_temporary_file_and_a_normal_mode(finding: Finding, tmp_path: Path) -> None:
    write_finding(finding, tmp_path / "a.json")
    write_finding(finding, tmp_path / "a.json")  # replace an existing file
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]
    assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644


def test_a_failed_replace_keeps_the_old_file_and_removes_the_temporary(
    finding: Finding, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "a.json"
    target.write_text("old", encoding="utf-8")

    def refuse(src: str, dst: str) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(ReportFileError, match=r"a\.json: cannot write: permission denied"):
        write_finding(finding, target)
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_writing_into_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ReportFileError, match="cannot write: no such file or directory"):
        write_text_atomic(tmp_path / "absent" / "r.html", "x")


def test_a_lone_surrogate_is_written_escaped_and_reads_back(
    finding: Finding, tmp_path: Path
) -> None:
    odd = dataclasses.replace(finding, program=(Step("pull-2", "pull", {"image": "a\ud800b"}),))
    path = write_finding(odd, tmp_path / "odd.json")
    assert "\\ud800" in path.read_text(encoding="utf-8")
    assert load_finding(path) == odd


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"", "the file is empty: not a finding"),
        (b"  \n", "the file is empty: not a finding"),
        (b'{"schema": ', "not valid JSON: Expecting value at line 1 column 12"),
        (b"\xff\xfe{}", "not UTF-8 text (byte 0)"),
        (b"[1]", "not a valid finding: field '(document)': expected a JSON object, got a list"),
        (b'{"schema": "unpacksim.finding/9"}', "version 'unpacksim.finding/9' is not supported"),
        (b"[" * 100_000, "not a finding: JSON nested too deeply"),
    ],
)
def test_corrupt_files_fail_with_one_line(tmp_path: Path, content: bytes, words: str) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(ReportFileError) as info:
        load_finding(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ")
    assert words in message
    assert "\n" not in message


def test_unknown_field_in_a_file_is_named(finding: Finding, tmp_path: Path) -> None:
    data = json.loads(dumps(finding))
    data["actors"][1]["mood"] = "x"
    path = tmp_path / "f.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(ReportFileError, match=r"field 'actors\[1\].mood': unknown field"):
        load_finding(path)


@pytest.mark.parametrize(
    ("name", "words"), [("absent.json", "no such file"), (".", "it is a directory")]
)
def test_unreadable_paths_say_why(tmp_path: Path, name: str, words: str) -> None:
    with pytest.raises(ReportFileError, match=f"cannot read: {words}"):
        load_finding(tmp_path / name)
