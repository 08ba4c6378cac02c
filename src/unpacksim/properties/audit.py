"""The determinism audit: replay a share of the runs and compare their trace hashes.

A search is only as good as its replays: a finding that does not replay is noise.  So while
exploring, a :class:`DeterminismAudit` re-runs a deterministic share of the runs (every
``period``-th) from their program, schedule string and fault plan alone
(:func:`~unpacksim.properties.program.run_program` with a
:class:`~unpacksim.sim.choose.ReplayChooser`) and compares the SHA-256 of the two traces.
A mismatch names the first event at which the traces diverge
(:func:`unpacksim.sim.trace.first_divergence`)::

    audit = DeterminismAudit(share=0.25)
    for program, chooser in runs:
        result = run_program(program, "seed", chooser=chooser, faults=plan)
        audit.check(result, faults=plan)
    assert audit.report().deterministic, audit.report().describe()

Sources of nondeterminism it catches: iteration over sets of strings, ``id()`` order, the
wall clock, unseeded randomness, state kept between runs (a module-level cache that changes
what a run does).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from unpacksim.properties.program import RunResult, run_program
from unpacksim.sim.choose import ReplayChooser
from unpacksim.sim.errors import ScheduleError
from unpacksim.sim.faults import FaultPlan
from unpacksim.sim.trace import Divergence, first_divergence
from unpacksim.unpack.interface import Implementation

__all__ = ["AuditReport", "DeterminismAudit", "Mismatch", "replay_matches"]


@dataclass(frozen=True)
class Mismatch:
    """A run whose replay did not reproduce it.

    ``divergence`` is where the traces first differ (None if the replay could not follow the
    schedule at all; ``error`` then says why).
    """

    run: int
    implementation: str
    schedule: str
    original: str
    replayed: str
    divergence: Divergence | None
    error: str = ""

    def describe(self) -> str:
        head = (
            f"run {self.run} ({self.implementation}, schedule {self.schedule!r}) did not "
            f"replay: trace {self.original[:12]} vs {self.replayed[:12] or '-'}"
        )
        if self.error:
            return f"{head}\n  {self.error}"
        if self.divergence is not None:
            return f"{head}\n{self.divergence.describe()}"
        return head


@dataclass(frozen=True)
class AuditReport:
    """How many runs were seen and replayed, and which did not replay."""

    runs: int
    replayed: int
    mismatches: tuple[Mismatch, ...] = field(default=())

    @property
    def deterministic(self) -> bool:
        return not self.mismatches

    def describe(self) -> str:
        lines = [f"{self.replayed} of {self.runs} runs replayed, {len(self.mismatches)} differ"]
        lines += [m.describe() for m in self.mismatches]
        return "\n".join(lines)


def replay_matches(
    result: RunResult,
    implementation: str | Implementation | None = None,
    *,
    faults: FaultPlan | None = None,
    run: int = 0,
    properties: Sequence[str] | None = (),
) -> Mismatch | None:
    """Replay ``result`` from its program, schedule and ``faults``; None if the traces match.

    ``implementation`` defaults to the one that ran (by name); ``faults`` must be the plan
    the run was given.  ``properties`` are checked on the replay too (none by default: the
    audit compares traces only).
    """
    impl = implementation if implementation is not None else result.runner.impl
    original = result.trace_sha256
    try:
        again = run_program(
            result.program,
            impl,
            chooser=ReplayChooser(result.schedule),
            faults=faults,
            max_steps=result.runner.max_steps,
            properties=properties,
            heal_after=result.runner.heal_after,
        )
    except ScheduleError as exc:
        return Mismatch(run, result.implementation, result.schedule, original, "", None, str(exc))
    replayed = again.trace_sha256
    if replayed == original:
        return None
    divergence = first_divergence(result.trace, again.trace)
    return Mismatch(run, result.implementation, result.schedule, original, replayed, divergence)


class DeterminismAudit:
    """Replays every ``period``-th run it is shown (``share`` of them, rounded), deterministically.

    Args:
        share: the share of runs to replay, in (0, 1]; 0 replays none.

    Raises:
        ValueError: ``share`` outside [0, 1].
    """

    def __init__(self, share: float = 0.1) -> None:
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"DeterminismAudit(share={share}): give a share between 0 and 1")
        self.share = share
        self.period = 0 if share == 0 else max(1, round(1 / share))
        self.runs = 0
        self.replayed = 0
        self.mismatches: list[Mismatch] = []

    def selects(self, run: int) -> bool:
        """Whether run number ``run`` (counting from 0) is replayed."""
        return self.period > 0 and run % self.period == 0

    def check(
        self,
        result: RunResult,
        *,
        faults: FaultPlan | None = None,
        implementation: str | Implementation | None = None,
    ) -> Mismatch | None:
        """Count ``result``; replay it if selected; returns the mismatch, if any."""
        run = self.runs
        self.runs += 1
        if not self.selects(run):
            return None
        self.replayed += 1
        mismatch = replay_matches(result, implementation, faults=faults, run=run)
        if mismatch is not None:
            self.mismatches.append(mismatch)
        return mismatch

    def report(self) -> AuditReport:
        return AuditReport(self.runs, self.replayed, tuple(self.mismatches))
