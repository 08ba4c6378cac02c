"""The explorer: search for races with Hypothesis, shrink them, write them as findings.

:func:`explore` runs a Hypothesis search over the programs of a
:class:`~unpacksim.properties.catalogue.SearchSpace` (which actions, their arguments and
timing), the schedules (every scheduling decision is drawn through a
:class:`~unpacksim.sim.hypothesis_chooser.HypothesisChooser`) and the fault plans (an
exploring plan whose decisions go through the same chooser).  Each example is one
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
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType, MappingProxyType
from typing import Any

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.strategies import DataObject

from unpacksim.properties import checks
from unpacksim.properties.catalogue import (
    CatalogueEntry,
    Configuration,
    SearchSpace,
)
from unpacksim.properties.findings import build_finding
from unpacksim.properties.program import RunResult, run_program
from unpacksim.properties.strategies import PicksChooser
from unpacksim.properties.scenario import (
    LABEL_SELECTORS,
    Action,
    Cancel,
    CollectGarbage,
    DeleteImage,
    DeleteLease,
    EditLabels,
    ExpireLease,
    HoldSnapshot,
    ImageSpec,
    Program,
    Pull,
    Unpack,
)
from unpacksim.reports.io import write_finding, write_text_atomic
from unpacksim.reports.records import Finding
from unpacksim.sim.faults import FaultPlan
from unpacksim.unpack.interface import resolve

__all__ = [
    "GENERAL_SPACE",
    "Budget",
    "Discovery",
    "ExploreResult",
    "ImplementationFailure",
    "Search",
    "draw_program",
    "explore",
    "search_for",
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


_GENERAL_IMAGES = (
    ImageSpec("registry.test/base:1", ("base",)),
    ImageSpec("registry.test/app:1", ("base", "app")),
    ImageSpec("registry.test/other:1", ("base", "other")),
)
_ANY = ("pull", "delete_image", "gc", "cancel", "hold_snapshot", "delete_lease", "skip")

#: The space ``unpacksim explore`` searches when no catalogue space is named: pulls of images
#: sharing a base, image and lease deletion, GC, cancellation and containers, in any order.
GENERAL_SPACE = SearchSpace(
    images=_GENERAL_IMAGES,
    slots=(("pull",), _ANY, _ANY, _ANY),
    sites=("gc.run", "fetch.error"),
)


# --- drawing programs ----------------------------------------------------------------------


class _Drawer:
    """Draws one program from a space through Hypothesis (see :func:`draw_program`)."""

    def __init__(
        self, space: SearchSpace, data: DataObject, pull_options: Mapping[str, Any]
    ) -> None:
        self.space = space
        self.data = data
        self.pull_options = dict(pull_options)
        self.images = [i.name for i in space.images]
        self.pulls: list[str] = []
        self.pulled: list[str] = []  # images pulled so far, most recent first
        self.counts: dict[str, int] = {}

    def pick(self, options: Sequence[Any], label: str) -> Any:
        if len(options) == 1:
            return options[0]
        index: int = self.data.draw(st.integers(0, len(options) - 1), label=label)
        return options[index]

    def gap(self, i: int) -> float:
        # Gap 0 of the space is drawn about half the time, and is what shrinking goes to.
        gaps = self.space.gaps
        index: int = self.data.draw(
            st.one_of(st.just(0), st.integers(0, len(gaps) - 1)), label=f"gap {i}"
        )
        return gaps[index]

    def target_image(self, label: str) -> str:
        """An image for a non-pull action: the one pulled last comes first (index 0)."""
        ordered = list(dict.fromkeys([*self.pulled, *self.images]))
        image: str = self.pick(ordered, f"{label} image")
        return image

    def numbered(self, prefix: str) -> str:
        n = self.counts.get(prefix, 0) + 1
        self.counts[prefix] = n
        return f"{prefix}-{n}"

    def action(self, kind: str, at: float, i: int) -> Action | None:
        make = getattr(self, f"_{kind}")
        result: Action | None = make(at, f"slot {i}")
        return result

    def _pull(self, at: float, label: str) -> Action:
        actor = self.numbered("pull")
        self.pulls.append(actor)
        image = self.pick(self.images, f"{label} image")
        self.pulled.insert(0, image)
        pull = Pull(at=at, actor=actor, image=image)
        return replace(pull, **self.pull_options) if self.pull_options else pull

    def _cancel(self, at: float, label: str) -> Action | None:
        if not self.pulls:
            return None
        return Cancel(at=at, actor="user", target=self.pick(self.pulls, f"{label} target"))

    def _delete_image(self, at: float, label: str) -> Action:
        image = self.target_image(label)
        return DeleteImage(at=at, actor="user", image=image, sync=self.pick((False, True), label))

    def _delete_lease(self, at: float, label: str) -> Action | None:
        if not self.pulls:
            return None
        return DeleteLease(at=at, actor="user", of_pull=self.pick(self.pulls, f"{label} pull"))

    def _expire_lease(self, at: float, label: str) -> Action | None:
        if not self.pulls:
            return None
        return ExpireLease(at=at, actor="user", of_pull=self.pick(self.pulls, f"{label} pull"))

    def _edit_labels(self, at: float, label: str) -> Action:
        return EditLabels(
            at=at,
            actor="user",
            image=self.target_image(label),
            selector=self.pick(LABEL_SELECTORS, f"{label} selector"),
        )

    def _gc(self, at: float, label: str) -> Action:
        return CollectGarbage(at=at, actor="gc", sync=self.pick((False, True), label))

    def _hold_snapshot(self, at: float, label: str) -> Action:
        container = self.numbered("container")
        image = self.target_image(label)
        return HoldSnapshot(at=at, actor=container, image=image, container=container)

    def _unpack(self, at: float, label: str) -> Action:
        snapshotters = self.space.snapshotters
        return Unpack(
            at=at,
            actor=self.numbered("unpack"),
            image=self.target_image(label),
            snapshotter=snapshotters[-1] if len(snapshotters) > 1 else None,
        )

    def _skip(self, at: float, label: str) -> None:
        return None


def draw_program(
    space: SearchSpace, data: DataObject, pull_options: Mapping[str, Any] | None = None
) -> Program:
    """One program of ``space``, drawn from ``data`` (a Hypothesis ``st.data()`` object).

    One action per slot (a ``skip`` draws none), its kind drawn among the slot's, its image
    among the space's, its target among the pulls before it; the first starts at 0 and each
    next one a drawn gap later.  ``pull_options`` are set on every pull.
    """
    drawer = _Drawer(space, data, pull_options or {})
    actions: list[Action] = []
    at = 0.0
    for i, slot in enumerate(space.slots):
        if i:
            at = round(at + drawer.gap(i), 9)
        kind = drawer.pick(slot, f"slot {i} kind")
        action = drawer.action(kind, at, i)
        if action is not None:
            actions.append(action)
    return Program(
        images=space.images,
        actions=tuple(actions),
        snapshotters=space.snapshotters,
        gc_scheduler=space.gc_scheduler,
        bandwidth=space.bandwidth,
    )


def draw_picks(space: SearchSpace, data: DataObject) -> list[int]:
    """The chooser's picks for one run, drawn before it starts (``PicksChooser``: decision
    ``i`` takes ``picks[i] % n``, FIFO after the list).

    Drawing every decision up front keeps Hypothesis's draws out of the simulation's
    processes, and the list shrinks toward fewer and smaller picks: toward FIFO.
    """
    picks: list[int] = data.draw(
        st.lists(st.integers(0, 7), max_size=space.max_decisions), label="schedule picks"
    )
    return picks


def fault_plan(space: SearchSpace) -> FaultPlan | None:
    """The exploring fault plan of ``space`` (None when it explores no site)."""
    if not space.sites:
        return None
    return FaultPlan.exploring(list(space.sites), fire_one_in=space.fire_one_in)


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
        state.runs += 1
        if state.on_progress is not None:
            state.on_progress(state.runs, len(self.result.findings))
        program = draw_program(self.search.space, data, self.search.pull_options)
        chooser = PicksChooser(draw_picks(self.search.space, data))
        with _watchdog(self.run_timeout, self.impl.name):
            result = run_program(
                program,
                self.impl,
                chooser=chooser,
                faults=self.plan,
                max_steps=self.search.space.max_steps,
                properties=self.names,
            )
        self._check_ran(result, program)
        if result.found:
            state.failing = True
            raise _Violated(program, result)

    def _check_ran(self, result: RunResult, program: Program) -> None:
        outcome = result.outcome
        failures = result.runner.failures
        if failures:
            failure = failures[0]
            raise _Broken(
                f"implementation {self.impl.name!r} raised {type(failure.error).__name__}: "
                f"{failure.error} (in process {failure.process!r} at t={failure.time:g}, "
                f"run {self.state.runs}, seed {self.seed})"
            )
        if outcome.name in ("deadlock", "step_bound"):
            blocked = ", ".join(f"{b.name} waits on {b.waits_on}" for b in outcome.blocked[:3])
            raise _Broken(
                f"implementation {self.impl.name!r} never returned: the run ended in "
                f"{outcome.name} at t={outcome.time:g} after {outcome.steps} steps "
                f"(run {self.state.runs}, seed {self.seed}){': ' + blocked if blocked else ''}"
            )

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
        except _Broken as broken:
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
def _watchdog(seconds: float | None, name: str) -> Iterator[None]:
    """Stop a run that takes more than ``seconds`` of wall time (main thread only)."""
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
        raise _Broken(
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
        on_progress: called before each run with (runs so far, findings so far).
        on_finding: called with each finding once it is written.

    Raises:
        ImplementationFailure: the implementation raised or never returned.
        ImplementationError: the implementation does not resolve.
        ProgramError: an unknown property name.
        ReportFileError: ``out`` cannot be written.
    """
    directory = None if out is None else Path(out)
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
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
