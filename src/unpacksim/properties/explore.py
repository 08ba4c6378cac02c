"""The explorer: search for races with Hypothesis, shrink them, write them as findings.

:func:`explore` runs a Hypothesis search over the programs of a
:class:`~unpacksim.properties.spaces.SearchSpace` (which actions, their arguments and
timing), the schedules (every scheduling decision is drawn by Hypothesis before the run and
played by a :class:`~unpacksim.properties.strategies.PicksChooser`) and the fault plans (an
exploring plan whose decisions go through the same chooser).  Drawing the picks up front
(rather than one ``HypothesisChooser`` draw per decision) keeps Hypothesis out of the
simulation's processes and shrinks far better: the catalogue's counterexamples come out with
FIFO schedules, in a tenth of the runs.  Each example is one
:func:`~unpacksim.properties.program.run_program`; a violation of a checked property fails
the example, Hypothesis shrinks it (programs toward fewer, sequential actions; schedules
toward FIFO; faults toward none), and the minimal example becomes a
:class:`~unpacksim.reports.records.Finding`, written atomically the moment it is found.

Determinism: the search is seeded (``seed``); the same seed, space, implementation and
example budget give the same findings, byte for byte.  A budget in seconds only decides when
to stop starting new examples; it never changes what one run does.

Bad runs: an implementation that raises, or never returns (a deadlock, the step bound, or a
run that exceeds ``run_timeout`` seconds of wall time), stops the search with an
:class:`ImplementationFailure` naming what happened.  Ctrl-C stops it too; findings already
written stay.
"""

from __future__ import annotations

import contextlib
import math
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, MappingProxyType
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.strategies import DataObject

from unpacksim.properties import checks
from unpacksim.properties.catalogue import CatalogueEntry, Configuration
from unpacksim.properties.findings import build_finding
from unpacksim.properties.program import RunResult, run_program
from unpacksim.properties.scenario import Program
from unpacksim.properties.spaces import (
    GENERAL_SPACE,
    SearchSpace,
    draw_picks,
    draw_program,
    fault_plan,
)
from unpacksim.properties.strategies import PicksChooser
from unpacksim.reports.io import ReportFileError, write_finding, write_text_atomic
from unpacksim.reports.records import Finding
from unpacksim.unpack.interface import resolve

__all__ = [
    "GENERAL_SPACE",
    "Budget",
    "Discovery",
    "ExploreResult",
    "ImplementationFailure",
    "RunTimeout",
    "Search",
    "check_ran",
    "draw_program",
    "explore",
    "search_for",
    "watchdog",
]

#: Wall seconds one run may take before the search stops with an ImplementationFailure.
DEFAULT_RUN_TIMEOUT = 60.0


class ImplementationFailure(Exception):
    """The implementation under search raised, or never returned; the search stopped.

    ``runs`` is how many runs the search had made.
    """

    def __init__(self, message: str, *, runs: int) -> None:
        self.runs = runs
        super().__init__(message)


@dataclass(frozen=True)
class Budget:
    """How long a search may go on: ``examples`` (Hypothesis examples; the deterministic
    bound) and, optionally, ``seconds`` of wall time after which no new example starts.

    Raises (on construction):
        ValueError: a budget below 1 example or not above 0 seconds.
    """

    examples: int = 200
    seconds: float | None = None

    def __post_init__(self) -> None:
        if self.examples < 1:
            raise ValueError(f"a budget needs at least 1 example, got {self.examples}")
        if self.seconds is not None and not (self.seconds > 0 and math.isfinite(self.seconds)):
            raise ValueError(f"a budget in seconds must be above 0, got {self.seconds}")


@dataclass(frozen=True)
class Search:
    """What to search: an implementation over a space, checking some properties.

    Attributes:
        implementation: a registered name or ``module:attribute``.
        space: the workloads to draw programs from.
        properties: the properties to check (None: every registered property).
        pull_options: fields set on every drawn ``Pull`` (a catalogue configuration's).
        entry: the catalogue entry searched for, if any (its story goes into findings).
    """

    implementation: str
    space: SearchSpace
    properties: tuple[str, ...] | None = None
    pull_options: Mapping[str, Any] = field(default_factory=dict)
    entry: CatalogueEntry | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "pull_options", MappingProxyType(dict(self.pull_options)))
        if self.properties is not None:
            object.__setattr__(self, "properties", tuple(self.properties))

    def checked(self) -> list[str]:
        """The names of the properties checked, validated.

        Raises:
            ProgramError: an unknown property name.
        """
        return checks.property_names(self.properties)


def search_for(
    entry: CatalogueEntry, *, fixed: bool = False, implementation: str | None = None
) -> Search:
    """The search for catalogue ``entry``: its configuration with the race (``fixed``: the one
    without), optionally with another ``implementation`` under the same pull options."""
    config: Configuration = entry.without_race if fixed else entry.with_race
    return Search(
        implementation=implementation or config.implementation,
        space=entry.space,
        properties=entry.properties,
        pull_options=config.pull_options,
        entry=entry,
    )


# --- the search ----------------------------------------------------------------------------


class _Stop(KeyboardInterrupt):
    """Stops a Hypothesis run at once, without shrinking (Hypothesis lets KeyboardInterrupt
    through; any other exception would be taken for a failing example)."""


class _OutOfTime(_Stop):
    """The wall-clock budget is spent."""


class _Broken(_Stop):
    """The implementation raised or never returned."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RunTimeout(KeyboardInterrupt):
    """One run took more wall time than allowed (raised by :func:`watchdog`).

    A KeyboardInterrupt so that it stops a Hypothesis search at once instead of being
    shrunk as a failing example.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def check_ran(result: RunResult, name: str, where: str) -> None:
    """Raise if the implementation raised or never returned in ``result``.

    Raises:
        ImplementationFailure: a goroutine raised, or the run ended in a deadlock or at the
            step bound (the message names the process, the error and ``where``).
    """
    outcome = result.outcome
    failures = result.runner.failures
    if failures:
        failure = failures[0]
        raise ImplementationFailure(
            f"implementation {name!r} raised {type(failure.error).__name__}: "
            f"{failure.error} (in process {failure.process!r} at t={failure.time:g}; {where})",
            runs=0,
        )
    if outcome.name in ("deadlock", "step_bound"):
        blocked = ", ".join(f"{b.name} waits on {b.waits_on}" for b in outcome.blocked[:3])
        raise ImplementationFailure(
            f"implementation {name!r} never returned: the run ended in {outcome.name} at "
            f"t={outcome.time:g} after {outcome.steps} steps ({where})"
            + (f": {blocked}" if blocked else ""),
            runs=0,
        )


class _Violated(Exception):
    """A run broke a checked property (the failing example Hypothesis shrinks)."""

    def __init__(self, program: Program, result: RunResult) -> None:
        super().__init__(f"{len(result.found)} violation(s)")
        self.program = program
        self.result = result


@dataclass(frozen=True)
class Discovery:
    """A finding the search made: the record, the files written, and when it was found.

    ``runs`` counts the runs made until the finding was written (shrinking included);
    ``seconds`` is the wall time from the start of the search.
    """

    finding: Finding
    path: Path | None
    report: Path | None
    runs: int
    seconds: float


@dataclass
class ExploreResult:
    """What a search did: its findings in the order found, the runs, why it stopped.

    ``stopped`` is ``examples`` (the example budget is spent), ``seconds`` (the wall-clock
    budget is spent), ``findings`` (``max_findings`` reached) or ``interrupted`` (Ctrl-C).
    """

    search: Search
    seed: int
    budget: Budget
    runs: int = 0
    findings: list[Discovery] = field(default_factory=list)
    stopped: str = "examples"
    seconds: float = 0.0

    @property
    def found(self) -> bool:
        return bool(self.findings)


@dataclass
class _State:
    started: float
    deadline: float | None
    runs: int = 0
    failing: bool = False
    on_progress: Callable[[int, int], None] | None = None
    found_before: int = 0


def _blob(exc: BaseException) -> str | None:
    for note in getattr(exc, "__notes__", ()):
        match = re.search(r"@reproduce_failure\('[^']*', (b'[^']*')\)", note)
        if match:
            return match.group(1)
    return None


class _Explorer:
    """One search (see :func:`explore`)."""

    def __init__(
        self,
        search: Search,
        *,
        seed: int,
        budget: Budget,
        out: Path | None,
        max_findings: int,
        html: bool,
        run_timeout: float | None,
        on_progress: Callable[[int, int], None] | None,
        on_finding: Callable[[Discovery], None] | None,
    ) -> None:
        self.search = search
        self.impl = resolve(search.implementation)
        self.names = search.checked()
        self.plan = fault_plan(search.space)
        self.seed = seed
        self.budget = budget
        self.out = out
        self.max_findings = max_findings
        self.html = html
        self.run_timeout = run_timeout
        self.on_finding = on_finding
        now = time.monotonic()
        self.state = _State(
            started=now,
            deadline=None if budget.seconds is None else now + budget.seconds,
            on_progress=on_progress,
        )
        self.result = ExploreResult(search, seed, budget)

    # --- one example -------------------------------------------------------------------

    def run_example(self, data: DataObject) -> None:
        state = self.state
        if not state.failing and state.deadline is not None and time.monotonic() > state.deadline:
            raise _OutOfTime()
        if state.on_progress is not None:
            state.on_progress(state.runs, len(self.result.findings))
        state.runs += 1
        program = draw_program(self.search.space, data, self.search.pull_options)
        chooser = PicksChooser(draw_picks(self.search.space, data))
        with watchdog(self.run_timeout, self.impl.name):
            result = run_program(
                program,
                self.impl,
                chooser=chooser,
                faults=self.plan,
                max_steps=self.search.space.max_steps,
                properties=self.names,
            )
        try:
            check_ran(result, self.impl.name, f"run {state.runs}, seed {self.seed}")
        except ImplementationFailure as failure:
            raise _Broken(str(failure)) from None
        if result.found:
            state.failing = True
            raise _Violated(program, result)

    # --- rounds ------------------------------------------------------------------------

    def round(self, seed: int, examples: int) -> _Violated | None:
        @settings(
            max_examples=examples,
            database=None,
            derandomize=False,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            phases=(Phase.generate, Phase.shrink),
            report_multiple_bugs=False,
            print_blob=True,
            verbosity=Verbosity.quiet,
        )
        @hypothesis_seed(seed)
        @given(st.data())
        def search(data: DataObject) -> None:
            self.run_example(data)

        self.state.failing = False
        try:
            search()
        except _Violated as found:
            found.blob = _blob(found)  # type: ignore[attr-defined]
            return found
        return None

    def run(self) -> ExploreResult:
        result = self.result
        remaining = self.budget.examples
        round_index = 0
        try:
            while remaining > 0:
                before = self.state.runs
                found = self.round(_round_seed(self.seed, round_index), remaining)
                round_index += 1
                remaining -= max(self.state.runs - before, 1)
                if found is None:
                    break
                if self._record(found) and len(result.findings) >= self.max_findings > 0:
                    result.stopped = "findings"
                    break
        except _OutOfTime:
            result.stopped = "seconds"
        except (_Broken, RunTimeout) as broken:
            raise ImplementationFailure(broken.message, runs=self.state.runs) from None
        except KeyboardInterrupt:
            result.stopped = "interrupted"
        finally:
            result.runs = self.state.runs
            result.seconds = time.monotonic() - self.state.started
        return result

    def _record(self, found: _Violated) -> bool:
        """Write the finding; False if an identical one was already found."""
        blob: str | None = getattr(found, "blob", None)
        finding = build_finding(
            found.result,
            self.search.checked(),
            seed=self.seed,
            blob=blob,
            entry=self.search.entry,
            implementation=self.search.implementation,
        )
        if any(d.finding.id == finding.id for d in self.result.findings):
            return False
        path = report = None
        if self.out is not None:
            path = write_finding(finding, self.out)
            if self.html:
                from unpacksim.reports.formats import render

                report = write_text_atomic(path.with_suffix(".html"), render(finding, "html"))
        discovery = Discovery(
            finding, path, report, self.state.runs, time.monotonic() - self.state.started
        )
        self.result.findings.append(discovery)
        if self.on_finding is not None:
            self.on_finding(discovery)
        return True


def _round_seed(seed: int, index: int) -> int:
    """Round ``index``'s Hypothesis seed: the search's own for round 0, then derived."""
    return seed if index == 0 else (seed * 1_000_003 + index) % (2**63)


@contextlib.contextmanager
def watchdog(seconds: float | None, name: str) -> Iterator[None]:
    """Raise :class:`RunTimeout` in a run that takes more than ``seconds`` of wall time.

    Works in the main thread of a platform with ``signal.setitimer``; elsewhere (or with
    ``seconds`` None) it does nothing.
    """
    usable = (
        seconds is not None
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )
    if not usable:
        yield
        return
    assert seconds is not None

    def expired(signum: int, frame: FrameType | None) -> None:
        raise RunTimeout(
            f"implementation {name!r} never returned: one run took more than {seconds:g} s "
            "of wall time (an endless loop that never yields to the simulation?)"
        )

    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def explore(
    search: Search,
    *,
    seed: int = 0,
    budget: Budget | None = None,
    out: str | Path | None = None,
    max_findings: int = 1,
    html: bool = True,
    run_timeout: float | None = DEFAULT_RUN_TIMEOUT,
    on_progress: Callable[[int, int], None] | None = None,
    on_finding: Callable[[Discovery], None] | None = None,
) -> ExploreResult:
    """Search ``search`` for violations; write each finding to ``out`` as it is found.

    Args:
        search: the implementation, space and properties.
        seed: the search's seed (the same seed gives the same findings).
        budget: examples and optional wall seconds (default: 200 examples).
        out: a directory for ``<id>.json`` (and ``<id>.html`` with ``html``); None keeps the
            findings in memory only.
        max_findings: stop after this many distinct findings (0: search the whole budget).
        run_timeout: wall seconds one run may take (None: no limit).
        on_progress: called before each run with (runs done so far, findings so far).
        on_finding: called with each finding once it is written.

    Raises:
        ImplementationFailure: the implementation raised or never returned.
        ImplementationError: the implementation does not resolve.
        ProgramError: an unknown property name.
        ReportFileError: ``out`` cannot be written.
    """
    directory = None if out is None else Path(out)
    if directory is not None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            reason = (exc.strerror or type(exc).__name__).lower()
            problem = f"cannot create the findings directory: {reason}"
            raise ReportFileError(directory, problem) from None

    explorer = _Explorer(
        search,
        seed=seed,
        budget=budget or Budget(),
        out=directory,
        max_findings=max_findings,
        html=html,
        run_timeout=run_timeout,
        on_progress=on_progress,
        on_finding=on_finding,
    )
    return explorer.run()
