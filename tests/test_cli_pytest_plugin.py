"""The pytest plugin: ``--unpacksim-impl``, findings as files and in the terminal summary.

Each test runs pytest in a fresh process in a temporary directory, as a user would.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from unpacksim.reports.io import load_finding

USER_TEST = """
from unpacksim.properties.catalogue import entry
from unpacksim.properties.explore import Budget, explore, search_for


def test_my_own_search(unpacksim_impl, unpacksim_findings):
    assert unpacksim_impl == "seed"
    result = explore(search_for(entry("duplicate-unpack")), budget=Budget(60))
    for found in result.findings:
        unpacksim_findings.record(found.finding)
    assert result.found
"""


def _pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_an_unknown_implementation_is_a_usage_error(tmp_path: Path) -> None:
    done = _pytest(tmp_path, "--unpacksim-impl", "nope")
    assert done.returncode == 4  # pytest's usage error
    assert "--unpacksim-impl nope: unknown implementation 'nope': registered are" in done.stderr
    done = _pytest(tmp_path, "--unpacksim-impl", "seed", "--unpacksim-examples", "0")
    assert done.returncode == 4
    assert "--unpacksim-examples must be at least 1, got 0" in done.stderr


def test_the_suite_runs_against_the_implementation_and_writes_findings(tmp_path: Path) -> None:
    done = _pytest(
        tmp_path, "--unpacksim-impl", "seed", "-k", "test_catalogue and duplicate", "-rN"
    )
    assert done.returncode == 1, done.stdout + done.stderr
    (path,) = (tmp_path / "unpacksim-findings").glob("*.json")
    finding = load_finding(path)
    assert finding.implementation == "seed" and finding.property.name == "chain-applied-once"
    assert (path.parent / f"{finding.id}.html").is_file()
    assert "unpacksim: 1 finding" in done.stdout
    assert f"{finding.id}  chain-applied-once  (seed)  {path}" in done.stdout
    assert "1 failed" in done.stdout


def test_an_implementation_without_the_race_passes(tmp_path: Path) -> None:
    out = tmp_path / "elsewhere"
    done = _pytest(
        tmp_path,
        "--unpacksim-impl",
        "v1.7-cri",
        "--unpacksim-findings",
        str(out),
        "-k",
        "test_catalogue and duplicate",
        "--unpacksim-examples",
        "40",
    )
    assert done.returncode == 0, done.stdout
    assert "1 passed" in done.stdout and not out.exists()


def test_own_tests_record_findings_through_the_fixture(tmp_path: Path) -> None:
    (tmp_path / "test_mine.py").write_text(textwrap.dedent(USER_TEST))
    done = _pytest(tmp_path, "test_mine.py")
    assert done.returncode == 0, done.stdout
    assert "unpacksim: 1 finding" in done.stdout
    assert len(list((tmp_path / "unpacksim-findings").glob("*.json"))) == 1
