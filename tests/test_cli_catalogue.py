"""``unpacksim catalogue``, ``catalogue run``, ``presets`` and ``faults``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unpacksim.cli import ExitCode, main
from unpacksim.properties.catalogue import CATALOGUE
from unpacksim.reports.io import load_finding
from unpacksim.sim.faults import sites
from unpacksim.unpack.eras import PRESETS


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_catalogue_lists_every_race_with_both_configurations(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = _run(capsys, "catalogue")
    assert (code, err) == (ExitCode.OK, "")
    for item in CATALOGUE:
        block = out[out.index(f"{item.name}  (") :]
        assert f"has it:  {item.with_race.describe()}" in block
        assert f"without: {item.without_race.describe()}" in block
    assert "stat-skip-gc-parent  (containerd#3787, containerd#2382, containerd#10835)" in out


def test_catalogue_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "catalogue", "--json")
    data = json.loads(out)
    assert code == ExitCode.OK
    assert [e["name"] for e in data] == [e.name for e in CATALOGUE]
    assert data[1]["with_race"] == {
        "implementation": "seed",
        "pull_options": {},
        "note": CATALOGUE[1].with_race.note,
    }


def test_catalogue_run_finds_the_race_with_its_preset(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = _run(capsys, "catalogue", "run", "duplicate-unpack", "-o", str(tmp_path))
    assert (code, err) == (ExitCode.FOUND, "")
    (path,) = tmp_path.glob("*.json")
    assert (tmp_path / f"{path.stem}.html").is_file()
    finding = load_finding(path)
    assert finding.property.name == "chain-applied-once" and finding.implementation == "seed"
    assert out.startswith(f"found {finding.id}: chain-applied-once (seed)\n")


def test_catalogue_run_fixed_finds_nothing(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = _run(
        capsys, "catalogue", "run", "limiter-ineffective", "--fixed", "-o", str(tmp_path)
    )
    assert code == ExitCode.OK
    assert out.startswith("explored ") and out.endswith(": 0 findings\n")
    assert "runs of v1.6 in" in out


def test_catalogue_run_with_another_preset(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, _ = _run(
        capsys, "catalogue", "run", "limiter-ineffective", "--preset", "v1.4", "--json",
        "-o", str(tmp_path),
    )  # fmt: skip
    assert code == ExitCode.FOUND
    summary = json.loads(out)
    assert summary["command"] == "catalogue run" and summary["status"] == "found"
    assert load_finding(summary["findings"][0]["file"]).implementation == "v1.4"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "nope"], "no catalogue entry 'nope'; entries are prepare-collision, "),
        (["run", "limiter-ineffective", "--preset", "v9"], "unknown implementation 'v9'"),
        (["run"], "the following arguments are required: NAME"),
        (["run", "limiter-ineffective", "--max-findings", "-1"], "--max-findings must be 0 or"),
    ],
)
def test_catalogue_bad_usage(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], message: str
) -> None:
    code, out, err = _run(capsys, "catalogue", *argv, "-o", str(tmp_path))
    assert (code, out) == (ExitCode.USAGE, "")
    assert err.count("\n") == 1 and err.startswith("unpacksim catalogue")
    assert message in err


def test_presets_lists_each_preset_with_its_flags(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "presets")
    assert code == ExitCode.OK
    assert out.startswith("seed (default): containerd 03ab1b2cac")
    assert "stat_skip=false, lease_on_exists=true" in out.replace("\n    ", " ")
    code, out, _ = _run(capsys, "presets", "--json")
    data = json.loads(out)
    assert [p["name"] for p in data] == list(PRESETS)
    assert data[0]["default"] is True and data[4]["flags"]["stat_skip"] is False


def test_faults_lists_every_site(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _run(capsys, "faults")
    assert code == ExitCode.OK
    assert "snapshots.prepare.exists (error): Prepare finds its target" in out
    assert "    raises AlreadyExists: target snapshot {key_q}" in out
    code, out, _ = _run(capsys, "faults", "--json")
    data = json.loads(out)
    assert [s["name"] for s in data] == [s.name for s in sites()]
    gc_run = next(s for s in data if s["name"] == "gc.run")
    assert gc_run["kind"] == "effect" and gc_run["errors"] == []
