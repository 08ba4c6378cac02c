"""Scenario programs and :func:`run_program`: one deterministic run, every property checked.

A program (:class:`~unpacksim.properties.scenario.Program`) is a list of timed actions by
named actors over images the registry serves; :func:`run_program` runs it against an
implementation (a preset such as ``seed``, or any plugged-in unpacker) and returns a
:class:`RunResult`: the trace, each pull's result, the world's final state, and the
violations of the properties (:mod:`unpacksim.properties.checks`)::

    from unpacksim.properties.program import ImageSpec, Program, Pull, DeleteImage, run_program
    from unpacksim.sim import RandomChooser

    app = ImageSpec("registry.test/app:1", ("base", "app"))
    program = Program(
        images=(app,),
        actions=(
            Pull(at=0.0, actor="p1", image=app.name),
            DeleteImage(at=0.05, actor="user", image=app.name),
            Pull(at=0.05, actor="p2", image=app.name),
        ),
    )
    result = run_program(program, "seed", chooser=RandomChooser(3))
    for violation in result.violations:
        print(violation)

The run: actions start at their times (each a goroutine named after its actor, overlapping
with everything still running); monitors watch every Prepare; the step invariants run at each
action's start.  After the last action the world runs until every action has ended (faults
stay armed until a ``Heal`` action, or until then, ten simulated seconds at most), the faults
heal, a collection runs with
the leases as the pulls left them (the *quiescent* state), then every lease is deleted and a
last collection runs (the state *at rest*).  The same program,
implementation, chooser decisions and fault plan give the same trace, byte for byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import networkx as nx

from unpacksim.properties import checks
from unpacksim.properties.graph import build_graph
from unpacksim.properties.invariants import Violation
from unpacksim.properties.monitors import Found, Monitors
from unpacksim.properties.runner import (
    DEFAULT_HEAL_AFTER,
    DEFAULT_MAX_STEPS,
    ActionRecord,
    HealingFaultPlan,
    ProgramRunner,
    Quiescence,
)
from unpacksim.properties.scenario import (
    ACTIONS,
    LABEL_SELECTORS,
    Action,
    Cancel,
    CollectGarbage,
    CreateLease,
    DeleteImage,
    DeleteLease,
    EditLabels,
    ExpireLease,
    Heal,
    HoldSnapshot,
    ImageSpec,
    Inject,
    Program,
    ProgramError,
    Pull,
    Unpack,
)
from unpacksim.sim.choose import Chooser
from unpacksim.sim.faults import FaultPlan, FaultReport
from unpacksim.sim.run import RunOutcome
from unpacksim.sim.trace import Trace
from unpacksim.unpack.interface import Implementation
from unpacksim.unpack.results import PullResult
from unpacksim.unpack.world import World

__all__ = [
    "ACTIONS",
    "DEFAULT_MAX_STEPS",
    "LABEL_SELECTORS",
    "Action",
    "ActionRecord",
    "Cancel",
    "CollectGarbage",
    "CreateLease",
    "DeleteImage",
    "DeleteLease",
    "EditLabels",
    "ExpireLease",
    "Found",
    "Heal",
    "HealingFaultPlan",
    "HoldSnapshot",
    "ImageSpec",
    "Inject",
    "Program",
    "ProgramError",
    "ProgramRunner",
    "Pull",
    "Quiescence",
    "RunResult",
    "Unpack",
    "result_of",
    "run_program",
]


@dataclass
class RunResult:
    """Everything one run left: the records, the final world, what the properties found.

    Attributes:
        program: the program that ran (only the actions applied, if ``until`` cut it).
        implementation: the implementation's name.
        outcome: how the run to quiescence ended (``completed`` unless something hung,
            crashed, or hit a bound).
        pulls: each pull actor's result (None if the pull never returned).
        actions: the record of every action, in start order.
        world: the world after the run (``world.db`` holds the final state).
        quiescence: the state once everything ended and a GC ran (None if the run did not
            get there).
        quiescent_graph, final_graph: the reference graphs at quiescence and at rest.
        found: every violation found, with where and when (monitors first, then the checks).
        runner: the runner (process attribution, revoked leases, relabelled blobs).
    """

    program: Program
    implementation: str
    outcome: RunOutcome
    pulls: dict[str, PullResult | None]
    actions: list[ActionRecord]
    world: World
    quiescence: Quiescence | None
    runner: ProgramRunner
    quiescent_graph: nx.MultiDiGraph | None = field(default=None, repr=False)
    final_graph: nx.MultiDiGraph | None = field(default=None, repr=False)
    found: list[Found] = field(default_factory=list)

    @property
    def trace(self) -> Trace:
        return self.world.env.trace

    @property
    def trace_sha256(self) -> str:
        return self.trace.sha256()

    @property
    def schedule(self) -> str:
        """The chooser's non-FIFO decisions (replay with ``ReplayChooser(schedule)``)."""
        return self.world.env.chooser.schedule

    @property
    def faults(self) -> FaultReport:
        return self.runner.plan.report()

    @property
    def at_rest(self) -> bool:
        """Whether the run got to rest (every action ended, leases released, GC ran)."""
        return self.quiescence is not None and self.final_graph is not None

    @property
    def violations(self) -> list[Violation]:
        return [f.violation for f in self.found]

    @property
    def ok(self) -> bool:
        return not self.found

    def actor_of(self, process: str) -> str:
        """The actor whose action started ``process``."""
        return self.runner.actor_of(process)

    def describe(self) -> str:
        """The outcome and every violation, one per line."""
        lines = [self.outcome.describe()]
        lines += [f"{f.property}: {f.violation}" for f in self.found]
        return "\n".join(lines)


def result_of(runner: ProgramRunner, monitors: Monitors) -> RunResult:
    """The :class:`RunResult` of a finished runner (without the checks' findings)."""
    outcome = runner.outcome
    if outcome is None:
        raise ProgramError("result_of needs a finished runner: call runner.finish() first")
    final = build_graph(runner.world.db) if runner.quiescence is not None else None
    return RunResult(
        program=Program(
            images=runner.program.images,
            actions=tuple(runner.applied),
            snapshotters=runner.program.snapshotters,
            gc_scheduler=runner.program.gc_scheduler,
            latency=runner.program.latency,
            bandwidth=runner.program.bandwidth,
        ),
        implementation=runner.impl.name,
        outcome=outcome,
        pulls=dict(runner.pull_results),
        actions=list(runner.records),
        world=runner.world,
        quiescence=runner.quiescence,
        runner=runner,
        quiescent_graph=runner.quiescent_graph,
        final_graph=final,
        found=list(monitors.found),
    )


def run_program(
    program: Program,
    implementation: str | Implementation,
    *,
    chooser: Chooser | None = None,
    faults: FaultPlan | None = None,
    max_steps: int = DEFAULT_MAX_STEPS,
    until: float | None = None,
    properties: Sequence[str] | None = None,
    heal_after: float = DEFAULT_HEAL_AFTER,
) -> RunResult:
    """Run ``program`` against ``implementation``; check ``properties`` (default: all).

    ``chooser`` takes every scheduling and fault decision (FIFO if None); ``faults`` is the
    fault plan (none if None), healed at a ``Heal`` action or once every action has ended
    (``heal_after`` simulated seconds after the last action at most);
    ``max_steps`` bounds the whole run's simulation steps; ``until`` drops the actions after
    that time and stops the run there (no rest phase: the outcome is ``time_bound``).

    A containerd-level failure is a result, never an exception; an implementation that
    raises ends the run with the ``failed`` outcome, one that never returns with
    ``deadlock`` or ``step_bound`` (both reported by the ``converges`` property).

    Raises:
        ProgramError: the program is malformed, or ``properties`` names an unknown property.
        ImplementationError: ``implementation`` does not resolve or conform.
    """
    names = checks.property_names(properties)
    runner = ProgramRunner(
        program,
        implementation,
        chooser=chooser,
        faults=faults,
        max_steps=max_steps,
        heal_after=heal_after,
    )
    monitors = Monitors(runner)
    for action in program.actions:
        if until is not None and action.at > until:
            break
        runner.apply(action)
        monitors.step()
    if until is not None:
        runner.advance_to(until)
        runner.stopped = runner.stopped or "time_bound"
    runner.finish()
    if runner.quiescence is not None:
        monitors.step()
    result = result_of(runner, monitors)
    result.found = checks.check_all(result, names)
    return result
