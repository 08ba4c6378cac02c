"""``unpacksim explore`` and ``unpacksim replay``: the main command, exit codes, messages."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from unpacksim import cli
from unpacksim.cli import INTERRUPTED, ExitCode, main
from unpacksim.reports.io import load_finding, write_finding
from unpacksim.reports.records import Finding

PLUGINS = """
class _Base:
    description = "a plugged-in test implementation"
    world_options = {}

    def __init__(self):
        self.name = type(self).__name__.lower()


class Raising(_Base):
    def pull(self, world, ctx, ref, opts):
        yield world.env.timeout(0.001)
        raise RuntimeError("boom in pull")


class Hanging(_Base):
    def pull(self, world, ctx, ref, opts):
        yield world.env.event()


NOT_AN_IMPLEMENTATION = 42
"""


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(err: str, prog: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1, f"not one line: {err!r}"
    assert err.startswith(f"{prog}: error: ") and "Traceback" not in err
    return err


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    (tmp_path / "h10_plugins.py").write_text(textwrap.dedent(PLUGINS))
    monkeypatch.syspath_prepend(str(tmp_path))
    return "h10_plugins"


def test_the_readme_command_finds_a_race_in_the_seed_and_writes_its_html(tmp_path: Path) -> None:
    # A fresh process, as a user runs it: only an output directory.
    out = tmp_path / "findings"
    done = subprocess.run(
        [sys.executable, "-m", "unpacksim.cli", "explore", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == ExitCode.FOUND, done.stderr
    (report,) = out.glob("*.html")
    (path,) = out.glob("*.json")
    finding = load_finding(path)
    assert finding.implementation == "seed" and report.stem == finding.id
    html = report.read_text()
    assert "<svg" in html and finding.id in html and "<script src" not in html
    assert f"found {finding.id}: {finding.property.name} (seed)" in done.stdout
    assert "1 finding" in done.stdout.splitlines()[-1]


def test_explore_then_replay_reproduces(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = _run(capsys, "explore", "-o", str(tmp_path), "--no-html", "--examples", "60")
    assert code == ExitCode.FOUND
    (path,) = tmp_path.glob("*.json")
    code, out, err = _run(capsys, "replay", str(path))
    assert (code, err) == (ExitCode.FOUND, "")
    finding = load_finding(path)
    assert out.startswith(f"reproduced: {finding.property.name} (seed): ")
    assert out.splitlines()[1] == "  trace: identical to the finding's"


def test_explore_json_is_a_summary_and_identical_for_the_same_seed(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    outputs = []
    for name in ("a", "b"):
        code, out, _ = _run(
            capsys, "explore", "-o", str(tmp_path / name), "--json", "--seed", "5", "--no-html"
        )
        assert code == ExitCode.FOUND
        summary = json.loads(out)
        assert summary["schema"] == "unpacksim.summary/1" and summary["status"] == "found"
        (ref,) = summary["findings"]
        outputs.append(Path(ref["file"]).read_bytes())
    assert outputs[0] == outputs[1]


def test_explore_with_the_fix_finds_nothing_and_exits_0(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = _run(
        capsys,
        "explore",
        "-o",
        str(tmp_path),
        "--impl",
        "v2.0",
        "--space",
        "stat-skip-gc-parent",
        "--property",
        "parent-protected-at-prepare",
        "--examples",
        "30",
    )
    assert (code, err) == (ExitCode.OK, "")
    assert out.endswith("stopped: examples): 0 findings\n") and not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--impl", "nope"], "unknown implementation 'nope': registered are ['seed', "),
        (["--impl", "no_such_module_h10:X"], "cannot import module 'no_such_module_h10'"),
        (["--property", "nope"], "unknown properties ['nope']; known: ['converges', "),
        (["--space", "nope"], "no catalogue entry 'nope'; entries are prepare-collision, "),
        (["--examples", "0"], "--examples must be at least 1, got 0"),
        (["--seconds", "0"], "--seconds must be above 0, got 0.0"),
        (["--examples", "x"], "argument --examples: invalid int value: 'x'"),
        (["elsewhere"], "two output directories given ('elsewhere' and -o "),
    ],
)
def test_explore_bad_usage_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, argv: list[str], message: str
) -> None:
    code, out, err = _run(capsys, "explore", "-o", str(tmp_path), *argv)
    assert (code, out) == (ExitCode.USAGE, "")
    assert message in _one_line(err, "unpacksim explore")


def test_an_output_directory_that_cannot_be_made_is_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    code, out, err = _run(capsys, "explore", str(blocker / "findings"))
    assert (code, out) == (ExitCode.USAGE, "")
    line = _one_line(err, "unpacksim explore")
    assert line.endswith(
        f"{blocker / 'findings'}: cannot create the findings directory: not a directory\n"
    )


def test_an_implementation_path_that_is_not_an_implementation(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, plugins: str
) -> None:
    code, _, err = _run(capsys, "explore", "-o", str(tmp_path), "--impl", f"{plugins}:Nope")
    assert code == ExitCode.USAGE
    assert "module 'h10_plugins' has no attribute 'Nope'" in _one_line(err, "unpacksim explore")
    code, _, err = _run(
        capsys, "explore", "-o", str(tmp_path), "--impl", f"{plugins}:NOT_AN_IMPLEMENTATION"
    )
    assert code == ExitCode.USAGE
    assert "is not an Implementation: it lacks" in _one_line(err, "unpacksim explore")


def test_an_implementation_that_raises_is_exit_2_with_its_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, plugins: str
) -> None:
    code, out, err = _run(capsys, "explore", "-o", str(tmp_path), "--impl", f"{plugins}:Raising")
    assert code == ExitCode.USAGE and "Traceback" not in out + err
    line = _one_line(err, "unpacksim explore")
    assert "implementation 'raising' raised RuntimeError: boom in pull (in process 'pull-1'" in line


def test_an_implementation_that_never_returns_is_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, plugins: str
) -> None:
    code, _, err = _run(capsys, "explore", "-o", str(tmp_path), "--impl", f"{plugins}:Hanging")
    assert code == ExitCode.USAGE
    assert "implementation 'hanging' never returned: the run ended in deadlock" in _one_line(
        err, "unpacksim explore"
    )


def _interrupt_after(monkeypatch: pytest.MonkeyPatch, when: int, *, after_finding: bool) -> None:
    def update(self: cli._Progress, runs: int, findings: int) -> None:
        if runs >= when and (findings or not after_finding):
            raise KeyboardInterrupt

    monkeypatch.setattr(cli._Progress, "update", update)


def test_an_interrupted_search_without_findings_exits_130(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _interrupt_after(monkeypatch, 3, after_finding=False)
    code, out, err = _run(capsys, "explore", "-o", str(tmp_path), "--impl", "v2.0")
    assert code == INTERRUPTED == 130
    assert err == "unpacksim explore: interrupted after 3 runs; 0 finding(s)\n"
    assert "stopped: interrupted" in out


def test_an_interrupted_search_keeps_its_findings_and_exits_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _interrupt_after(monkeypatch, 1, after_finding=True)
    code, _, err = _run(
        capsys, "explore", "-o", str(tmp_path), "--max-findings", "0", "--examples", "2000"
    )
    assert code == ExitCode.FOUND
    assert err.startswith("unpacksim explore: interrupted after ")
    assert err.endswith(f"; 1 finding(s) kept in {tmp_path}\n")
    (path,) = tmp_path.glob("*.json")
    assert load_finding(path).implementation == "seed"


# --- replay ----------------------------------------------------------------------------------


@pytest.fixture
def seed_finding(tmp_path: Path) -> Path:
    from unpacksim.properties.catalogue import entry
    from unpacksim.properties.explore import Budget, explore, search_for

    result = explore(search_for(entry("stat-skip-gc-parent")), budget=Budget(200), html=False)
    return write_finding(result.findings[0].finding, tmp_path)


def test_replay_against_the_fix_does_not_reproduce(
    capsys: pytest.CaptureFixture[str], seed_finding: Path
) -> None:
    code, out, err = _run(capsys, "replay", str(seed_finding), "--impl", "v2.0")
    assert (code, err) == (ExitCode.OK, "")
    assert out == (
        "not reproduced: parent-protected-at-prepare (v2.0): "
        "parent-protected-at-prepare held in the replay\n"
    )


def test_replay_json(capsys: pytest.CaptureFixture[str], seed_finding: Path) -> None:
    code, out, _ = _run(capsys, "replay", str(seed_finding), "--json")
    summary = json.loads(out)
    assert code == ExitCode.FOUND and summary["status"] == "reproduced" and summary["runs"] == 1
    assert summary["findings"][0]["file"] == str(seed_finding)


def _rewrite(path: Path, **changes: object) -> Path:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.parent / "missing.json", "missing.json: cannot read: no such file or dir"),
        (lambda p: (p.write_text("{not json"), p)[1], "not valid JSON: Expecting property name"),
        (lambda p: _rewrite(p, schema="unpacksim.finding/9"), "unpacksim.finding/9"),
        (
            lambda p: _rewrite(p, implementation="gone"),
            "unknown implementation 'gone': registered are",
        ),
        (lambda p: _rewrite(p, schedule="x:y"), "malformed schedule 'x:y': entry 0 is 'x:y'"),
    ],
    ids=["missing", "corrupt", "schema", "implementation", "schedule"],
)
def test_replay_bad_input_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], seed_finding: Path, make: object, message: str
) -> None:
    path = make(seed_finding)  # type: ignore[operator]
    code, out, err = _run(capsys, "replay", str(path))
    assert (code, out) == (ExitCode.USAGE, "")
    assert message in _one_line(err, "unpacksim replay")


def test_replay_of_a_program_that_cannot_run_is_exit_2(
    capsys: pytest.CaptureFixture[str], seed_finding: Path
) -> None:
    finding = load_finding(seed_finding)
    data = finding.to_json()
    program = data["program"]
    assert isinstance(program, list)
    program.append({"actor": "x", "action": "teleport", "args": {}})
    actors = data["actors"]
    assert isinstance(actors, list)
    bad = Finding.from_json({**data, "actors": [*actors, {"name": "x", "description": ""}]})
    path = write_finding(bad, seed_finding.parent / "bad.json")
    code, _, err = _run(capsys, "replay", str(path))
    assert code == ExitCode.USAGE
    assert "the finding's program cannot run: unknown action 'teleport'" in _one_line(
        err, "unpacksim replay"
    )


def test_the_progress_bar_draws_on_stderr_and_ends_its_line(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = _run(
        capsys, "explore", str(tmp_path), "--progress", "--impl", "v1.7-cri", "--examples", "5"
    )
    assert code == ExitCode.OK
    frames = err.split("\r")[1:]
    assert len(frames) >= 5 and err.endswith("\n")
    assert frames[0].startswith("[                              ] 0 runs (5 examples), 0 findings")
    assert frames[-1].startswith("[") and "0 findings" in frames[-1]
    assert "\r" not in out
