"""Running an environment to a named outcome, and checking that a run is deterministic.

:func:`run` steps the environment until one of these, never hanging:

- ``completed``: every non-daemon process finished;
- ``deadlock``: nothing is scheduled but processes are still blocked;
- ``step_bound`` / ``time_bound``: the step or simulated-time bound was reached first;
- ``failed``: a goroutine raised an exception nobody caught (or a plain process's failure
  reached the environment).

The outcome lists every process still blocked and what it waits on, the goroutine failures,
and the fault report; calls still in flight are completed in the trace as ``indeterminate``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from simpy.core import EmptySchedule

from unpacksim.sim.env import Environment, GoroutineFailure, describe_wait
from unpacksim.sim.faults import FaultReport
from unpacksim.sim.trace import Divergence, Trace, first_divergence

__all__ = [
    "DEFAULT_MAX_STEPS",
    "OUTCOMES",
    "BlockedProcess",
    "DeterminismReport",
    "RunOutcome",
    "check_determinism",
    "run",
]

#: The step bound used when ``run`` is given none: a run that long is treated as a livelock.
DEFAULT_MAX_STEPS = 1_000_000
OUTCOMES = ("completed", "deadlock", "step_bound", "time_bound", "failed")


@dataclass(frozen=True)
class BlockedProcess:
    """A process alive when the run ended, and what it was waiting on."""

    name: str
    waits_on: str
    daemon: bool = False


@dataclass(frozen=True)
class RunOutcome:
    """How a run ended (``name`` is one of :data:`OUTCOMES`)."""

    name: str
    time: float
    steps: int
    blocked: tuple[BlockedProcess, ...] = ()
    failures: tuple[GoroutineFailure, ...] = ()
    faults: FaultReport | None = None
    schedule: str = ""

    @property
    def ok(self) -> bool:
        return self.name == "completed"

    def describe(self) -> str:
        lines = [f"{self.name} at t={self.time} after {self.steps} steps"]
        lines += [f"  blocked: {b.name} waits on {b.waits_on}" for b in self.blocked]
        lines += [f"  failed: {f.describe()}" for f in self.failures]
        if self.schedule:
            lines.append(f"  schedule: {self.schedule}")
        return "\n".join(lines)

    def raise_for_failure(self) -> None:
        """Re-raise the first goroutine failure, if any (for tests that expect none)."""
        if self.failures:
            raise self.failures[0].error


def run(
    env: Environment, *, until: float | None = None, max_steps: int | None = None
) -> RunOutcome:
    """Step ``env`` to a named outcome (see the module docstring).

    ``until`` bounds simulated time (events after it are not run; time is left at ``until``);
    ``max_steps`` bounds the steps (default :data:`DEFAULT_MAX_STEPS`).
    """
    limit = DEFAULT_MAX_STEPS if max_steps is None else max_steps
    steps = 0
    name = "completed"
    while True:
        if env.failures:
            name = "failed"
            break
        next_time = env.peek()
        if env.live == 0 and next_time != env.now:
            break  # (events left at this instant still run: a process's failure among them)
        if next_time == float("inf"):
            name = "deadlock"
            break
        if until is not None and next_time > until:
            env._now = until
            name = "time_bound"
            break
        if steps >= limit:
            name = "step_bound"
            break
        try:
            env.step()
        except EmptySchedule:
            continue
        except Exception as exc:  # a plain process failed and nobody waited on it
            env.failures.append(GoroutineFailure(_failed_process(env, exc), env.now, exc))
        steps += 1
    return _outcome(env, name, steps)


def _failed_process(env: Environment, exc: BaseException) -> str:
    cause = exc.__cause__
    for info in env.processes():
        proc = info.process
        if proc is not None and not proc.is_alive and proc._value is cause:
            return info.name
    return "?"


def _outcome(env: Environment, name: str, steps: int) -> RunOutcome:
    blocked = tuple(
        BlockedProcess(info.name, describe_wait(env, info.process.target), info.daemon)
        for info in env.processes()
        if info.process is not None and info.process.is_alive
    )
    env.trace.close_open()
    return RunOutcome(
        name=name,
        time=float(env.now),
        steps=steps,
        blocked=blocked,
        failures=tuple(env.failures),
        faults=env.faults.report(),
        schedule=env.chooser.schedule,
    )


@dataclass(frozen=True)
class DeterminismReport:
    """The result of running the same scenario several times."""

    hashes: tuple[str, ...]
    divergence: Divergence | None

    @property
    def deterministic(self) -> bool:
        return self.divergence is None

    def describe(self) -> str:
        if self.divergence is None:
            return f"deterministic over {len(self.hashes)} runs ({self.hashes[0]})"
        return self.divergence.describe()


def check_determinism(scenario: Callable[[], Trace], runs: int = 2) -> DeterminismReport:
    """Run ``scenario`` (which builds a fresh environment, runs it, returns its trace)
    ``runs`` times; name the first divergence from the first run, if any."""
    first = scenario()
    hashes = [first.sha256()]
    for _ in range(runs - 1):
        trace = scenario()
        hashes.append(trace.sha256())
        divergence = first_divergence(first, trace)
        if divergence is not None:
            return DeterminismReport(tuple(hashes), divergence)
    return DeterminismReport(tuple(hashes), None)
