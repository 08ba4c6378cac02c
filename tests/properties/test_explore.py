"""The explorer: drawing programs, determinism, findings written as found, budgets, and
implementations that raise or never return."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from unpacksim.properties.catalogue import entry
from unpacksim.properties.explore import (
    Budget,
    Discovery,
    ImplementationFailure,
    Search,
    explore,
    search_for,
)
from unpacksim.properties.scenario import Cancel, ProgramError, Pull
from unpacksim.properties.spaces import GENERAL_SPACE, SearchSpace, SpaceError, draw_program
from unpacksim.reports.io import load_finding
from unpacksim.reports.records import dumps
from unpacksim.unpack.interface import register, unregister

DUPLICATE = entry("duplicate-unpack")


class _Plugged:
    description = "a test implementation"

    def __init__(self, name: str) -> None:
        self.name = name
        self.world_options: dict[str, Any] = {}


class Raising(_Plugged):
    def pull(self, world: Any, ctx: Any, ref: str, opts: Any) -> Generator[Any, Any, Any]:
        yield world.env.timeout(0.001)
        raise RuntimeError("boom in pull")


class Hanging(_Plugged):
    def pull(self, world: Any, ctx: Any, ref: str, opts: Any) -> Generator[Any, Any, Any]:
        yield world.env.event()  # never triggered
        raise AssertionError("unreachable")


class Spinning(_Plugged):
    def pull(self, world: Any, ctx: Any, ref: str, opts: Any) -> Generator[Any, Any, Any]:
        spins = 0
        while spins >= 0:  # never yields to the simulation
            spins += 1
        yield world.env.timeout(0)


@pytest.fixture
def plugged() -> Iterator[None]:
    impls = [Raising("test-raising"), Hanging("test-hanging"), Spinning("test-spinning")]
    for impl in impls:
        register(impl, replace=True)  # type: ignore[arg-type]
    yield
    for impl in impls:
        unregister(impl.name)


# --- drawing -------------------------------------------------------------------------------


@given(st.data())
def test_drawn_programs_stay_inside_their_space(data: st.DataObject) -> None:
    space = GENERAL_SPACE
    program = draw_program(space, data, {"max_concurrent_downloads": 2})
    assert program.images == space.images
    assert len(program.actions) <= len(space.slots)
    times = [a.at for a in program.actions]
    assert times == sorted(times) and (not times or times[0] == 0.0)
    assert isinstance(program.actions[0], Pull)
    pulls = [a for a in program.actions if isinstance(a, Pull)]
    assert all(p.max_concurrent_downloads == 2 for p in pulls)
    for action in program.actions:
        if isinstance(action, Cancel):
            assert action.target in [p.actor for p in pulls]


def test_a_space_refuses_unknown_kinds_and_empty_slots() -> None:
    images = GENERAL_SPACE.images
    with pytest.raises(SpaceError, match=r"unknown action kinds \['dance'\]"):
        SearchSpace(images=images, slots=(("dance",),))
    with pytest.raises(SpaceError, match="each with at least one kind"):
        SearchSpace(images=images, slots=((),))
    with pytest.raises(SpaceError, match="at least one image"):
        SearchSpace(images=(), slots=(("pull",),))


def test_a_budget_says_what_is_wrong() -> None:
    with pytest.raises(ValueError, match="at least 1 example, got 0"):
        Budget(examples=0)
    with pytest.raises(ValueError, match="above 0, got -1"):
        Budget(seconds=-1)


# --- searching -----------------------------------------------------------------------------


def test_the_same_seed_gives_byte_identical_findings(tmp_path: Path) -> None:
    first = explore(search_for(DUPLICATE), seed=3, budget=Budget(80), out=tmp_path / "a")
    second = explore(search_for(DUPLICATE), seed=3, budget=Budget(80), out=tmp_path / "b")
    assert first.found and second.found and first.runs == second.runs
    (a,), (b,) = first.findings, second.findings
    assert a.path is not None and b.path is not None and a.path.name == b.path.name
    assert a.path.read_bytes() == b.path.read_bytes()
    assert a.finding.replay.seed == 3 and a.finding.replay.command == (
        f"unpacksim replay {a.finding.id}.json"
    )


def test_each_finding_is_on_disk_when_it_is_reported(tmp_path: Path) -> None:
    seen: list[Discovery] = []

    def on_finding(d: Discovery) -> None:
        assert d.path is not None and d.report is not None
        assert load_finding(d.path) == d.finding  # complete, valid, already there
        assert d.report.read_text().lstrip().lower().startswith("<!doctype html")
        seen.append(d)

    result = explore(search_for(DUPLICATE), budget=Budget(80), out=tmp_path, on_finding=on_finding)
    assert [d.finding.id for d in seen] == [d.finding.id for d in result.findings] != []
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"{seen[0].finding.id}.json", f"{seen[0].finding.id}.html"]
    )
    assert dumps(seen[0].finding) == seen[0].path.read_text()  # type: ignore[union-attr]


def test_without_a_directory_findings_stay_in_memory() -> None:
    result = explore(search_for(DUPLICATE), budget=Budget(80), html=False)
    assert result.found and result.findings[0].path is None
    assert result.stopped == "findings"


def test_max_findings_zero_searches_the_whole_budget() -> None:
    result = explore(search_for(DUPLICATE), budget=Budget(60), max_findings=0)
    assert result.found and result.stopped == "examples"
    ids = [d.finding.id for d in result.findings]
    assert len(ids) == len(set(ids))


def test_a_budget_in_seconds_stops_before_the_next_example() -> None:
    result = explore(search_for(DUPLICATE), budget=Budget(examples=1000, seconds=1e-9))
    assert (result.stopped, result.runs, result.found) == ("seconds", 0, False)


def test_an_interrupted_search_keeps_what_it_found(tmp_path: Path) -> None:
    count = {"found": 0}

    def progress(runs: int, findings: int) -> None:
        if findings:
            raise KeyboardInterrupt

    def on_finding(d: Discovery) -> None:
        count["found"] += 1

    result = explore(
        search_for(DUPLICATE),
        budget=Budget(200),
        out=tmp_path,
        max_findings=0,
        on_progress=progress,
        on_finding=on_finding,
    )
    assert result.stopped == "interrupted" and count["found"] == len(result.findings) == 1
    assert (tmp_path / f"{result.findings[0].finding.id}.json").is_file()


def test_an_unknown_property_is_misuse() -> None:
    search = Search("seed", GENERAL_SPACE, properties=("no-such-property",))
    with pytest.raises(ProgramError, match=r"unknown properties \['no-such-property'\]"):
        explore(search, budget=Budget(1))


@pytest.mark.usefixtures("plugged")
def test_an_implementation_that_raises_stops_the_search() -> None:
    search = Search("test-raising", DUPLICATE.space, properties=DUPLICATE.properties)
    with pytest.raises(ImplementationFailure) as caught:
        explore(search, budget=Budget(20))
    message = str(caught.value)
    assert message.startswith("implementation 'test-raising' raised RuntimeError: boom in pull")
    assert "(in process 'pull-1'" in message and "run 1, seed 0)" in message
    assert caught.value.runs == 1


@pytest.mark.usefixtures("plugged")
def test_an_implementation_that_never_returns_stops_the_search() -> None:
    search = Search("test-hanging", DUPLICATE.space, properties=DUPLICATE.properties)
    with pytest.raises(ImplementationFailure, match="'test-hanging' never returned: the run "):
        explore(search, budget=Budget(20))


@pytest.mark.usefixtures("plugged")
def test_an_implementation_that_never_yields_is_stopped_by_the_watchdog() -> None:
    search = Search("test-spinning", DUPLICATE.space, properties=DUPLICATE.properties)
    with pytest.raises(ImplementationFailure, match=r"one run took more than 0\.3 s of wall"):
        explore(search, budget=Budget(20), run_timeout=0.3)
