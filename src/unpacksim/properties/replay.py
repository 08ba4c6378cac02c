"""Replaying a finding: re-run its program exactly and say whether the violation reproduces.

A finding file holds everything a run needs: the program (images, daemon configuration,
actions), the implementation's name, the fault plan and the schedule string.
:func:`replay` rebuilds the run with a :class:`~unpacksim.sim.choose.ReplayChooser` (the same
decisions, FIFO elsewhere), checks the finding's property, and compares the trace with the
finding's event by event.

A replay that no longer reproduces is an answer, not an error (an implementation was fixed,
the schedule no longer fits its decisions); a finding that cannot be run at all (an unknown
implementation or site, a malformed program or schedule) is a :class:`ReplayError`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from unpacksim.properties import catalogue as _catalogue  # registers the catalogue's variants
from unpacksim.properties.explore import (
    DEFAULT_RUN_TIMEOUT,
    ImplementationFailure,
    RunTimeout,
    check_ran,
    watchdog,
)
from unpacksim.properties.findings import FindingsError, fault_plan_of, trace_events
from unpacksim.properties.program import RunResult, run_program
from unpacksim.properties.scenario import Program, ProgramError, Pull
from unpacksim.reports.records import Finding
from unpacksim.sim.choose import ReplayChooser
from unpacksim.sim.errors import ScheduleError
from unpacksim.unpack.interface import ImplementationError, resolve

__all__ = ["ReplayError", "ReplayOutcome", "program_of", "replay"]

assert _catalogue.CATALOGUE  # imported for its registrations


class ReplayError(ValueError):
    """A finding that cannot be replayed: the message says which part is wrong."""


@dataclass(frozen=True)
class ReplayOutcome:
    """What a replay saw.

    Attributes:
        finding: the finding replayed.
        implementation: the implementation it ran against.
        reproduced: the finding's property broke again.
        message: the violation's message, or why it did not reproduce.
        trace_matches: the replayed trace is the finding's, event for event.
        divergence: where the traces first differ ("" when they match).
        result: the run (None when it could not run to a result).
    """

    finding: Finding
    implementation: str
    reproduced: bool
    message: str
    trace_matches: bool
    divergence: str
    result: RunResult | None


def program_of(finding: Finding, pull_options: Mapping[str, Any] | None = None) -> Program:
    """The program a finding's steps describe, with ``pull_options`` set on every pull.

    Raises:
        ReplayError: the steps do not make a valid program, or a pull option is unknown.
    """
    steps: list[dict[str, Any]] = [
        {"actor": s.actor, "action": s.action, "args": dict(s.args)} for s in finding.program
    ]
    try:
        program = Program.from_json(steps)
        if not pull_options:
            return program
        actions = tuple(
            replace(a, **pull_options) if isinstance(a, Pull) else a for a in program.actions
        )
        return replace(program, actions=actions)
    except ProgramError as exc:
        raise ReplayError(f"the finding's program cannot run: {exc}") from None
    except TypeError as exc:
        raise ReplayError(f"bad pull options {dict(pull_options or {})}: {exc}") from None


def _divergence(finding: Finding, result: RunResult) -> str:
    mine = [json.dumps(e.__dict__, sort_keys=True) for e in trace_events(result.trace)]
    theirs = [json.dumps(e.__dict__, sort_keys=True) for e in finding.trace]
    for index in range(max(len(mine), len(theirs))):
        left = theirs[index] if index < len(theirs) else None
        right = mine[index] if index < len(mine) else None
        if left != right:
            if right is None:
                return f"the replay ended after {len(mine)} of the finding's {len(theirs)} events"
            if left is None:
                return f"the replay has {len(mine) - len(theirs)} events more than the finding"
            return f"the traces differ from event {index} on"
    return ""


def replay(
    finding: Finding,
    *,
    implementation: str | None = None,
    pull_options: Mapping[str, Any] | None = None,
    run_timeout: float | None = DEFAULT_RUN_TIMEOUT,
) -> ReplayOutcome:
    """Re-run ``finding`` exactly (against ``implementation``, with ``pull_options`` set on
    every pull, if given) and check its property.

    Raises:
        ReplayError: the finding names an unknown implementation, property or fault site, or
            its program or schedule is malformed.
        ImplementationFailure: the implementation raised or never returned.
    """
    name = implementation or finding.implementation
    try:
        impl = resolve(name)
        chooser = ReplayChooser(finding.schedule)
        plan = fault_plan_of(finding.fault_plan)
    except (ImplementationError, ScheduleError, FindingsError) as exc:
        raise ReplayError(str(exc)) from None
    program = program_of(finding, pull_options)
    prop = finding.property.name
    try:
        with watchdog(run_timeout, impl.name):
            result = run_program(program, impl, chooser=chooser, faults=plan, properties=[prop])
    except ProgramError as exc:
        raise ReplayError(str(exc)) from None
    except RunTimeout as exc:
        raise ImplementationFailure(exc.message, runs=1) from None
    misfit = [f for f in result.runner.failures if isinstance(f.error, ScheduleError)]
    if misfit:
        return ReplayOutcome(
            finding,
            impl.name,
            False,
            f"the schedule no longer fits: {misfit[0].error}",
            False,
            "the run stopped where the schedule no longer fit",
            result,
        )
    check_ran(result, impl.name, "the replay")
    found = [f for f in result.found if f.property == prop]
    divergence = _divergence(finding, result)
    message = found[0].violation.message if found else f"{prop} held in the replay"
    return ReplayOutcome(
        finding, impl.name, bool(found), message, not divergence, divergence, result
    )
