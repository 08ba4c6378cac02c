"""The named properties of a run, as documented functions over a :class:`RunResult`.

Each property is a function ``check(result) -> list[Violation]`` (empty when it holds),
registered in :data:`PROPERTIES` with its name and one-sentence description.  They judge only
what the run asked for (a download limit applies to a pull that set one, whatever the era),
never the era the implementation claims, so the same checks catch the seed breaking them.
Where the program itself interfered (deleted a pull's lease, relabelled an image's blobs,
deleted an image), the property says which pulls it does not judge.

===================================  =========================================================
name                                 what must hold
===================================  =========================================================
``converges``                        after the faults heal, every action ends (no hang, no crash)
``pull-failure-reported``            a failed pull says so: an error with a class and a message
``pulls-succeed-without-faults``     an undisturbed pull succeeds
``parent-protected-at-prepare``      no Prepare names a parent unprotected from GC (monitor)
``failed-pull-no-extraction-left``   once a pull returned and GC ran, no extraction snapshot it
                                     prepared is left active
``image-usable-after-pull``          a successful pull leaves a usable image
``referenced-blobs-present``         at rest the blobs an image references are present, unless a
                                     pull of it asked to discard layers
``corrupt-layer-never-committed``    a corrupt layer is never committed, and the error names it
``chain-applied-once``               no unpack applies a chain ID another one then commits first
``downloads-within-limit``           no more layer downloads at once than a pull's limit
``no-lost-update``                   no actor's label write is silently lost by another's update
``state-invariants``                 the GC graph invariants hold at every step (monitor)
``gc-converged``                     at rest, after the last collection, nothing unreachable is
                                     left and no snapshot is active but a container's
===================================  =========================================================

The checks read the run's records, its trace (every store call with its process, which the
run maps to the actor that started it) and the final state; see each function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from unpacksim.properties.invariants import Violation
from unpacksim.properties.monitors import PARENT_PROTECTED, STATE_INVARIANTS, Found
from unpacksim.properties.rest_checks import (
    failed_pull_no_extraction_left,
    gc_converged,
    image_usable_after_pull,
    referenced_blobs_present,
    state_invariants,
)
from unpacksim.properties.runinfo import base_evidence, disturbed, pull_actions, violation
from unpacksim.properties.scenario import ProgramError
from unpacksim.properties.trace_checks import (
    chain_applied_once,
    corrupt_layer_never_committed,
    downloads_within_limit,
    no_lost_update,
)

if TYPE_CHECKING:
    from unpacksim.properties.program import RunResult

__all__ = [
    "MONITORED",
    "PROPERTIES",
    "Property",
    "chain_applied_once",
    "check_all",
    "converges",
    "corrupt_layer_never_committed",
    "downloads_within_limit",
    "failed_pull_no_extraction_left",
    "gc_converged",
    "image_usable_after_pull",
    "no_lost_update",
    "parent_protected_at_prepare",
    "property_names",
    "pull_failure_reported",
    "pulls_succeed_without_faults",
    "referenced_blobs_present",
    "state_invariants",
]


@dataclass(frozen=True)
class Property:
    """A named property: what must hold, and the function that checks a run for it."""

    name: str
    description: str
    check: Callable[[RunResult], list[Violation]]


# --- the properties judged over the whole run ------------------------------------------------


def converges(result: RunResult) -> list[Violation]:
    """``converges``: after the faults heal, every action ends; nothing crashes or hangs.

    A ``deadlock``, a ``step_bound`` or a ``failed`` outcome (an implementation raising an
    unexpected exception) breaks it; a ``time_bound`` the caller chose does not.
    """
    outcome = result.outcome
    if outcome.name in ("completed", "time_bound"):
        return []
    blocked = [f"{b.name} waits on {b.waits_on}" for b in outcome.blocked if not b.daemon]
    failures = [f.describe() for f in outcome.failures]
    running = [r.action.actor for r in result.actions if r.ended is None]
    return [
        violation(
            "converges",
            f"the run ended {outcome.name} at t={outcome.time}: "
            + "; ".join(failures or blocked or [f"{len(running)} actions never ended"]),
            evidence=base_evidence(
                result, outcome=outcome.name, blocked=blocked, failures=failures, running=running
            ),
        )
    ]


def pull_failure_reported(result: RunResult) -> list[Violation]:
    """``pull-failure-reported``: a pull that failed says so.

    Every pull that returned has either no error (success) or an error with a class and a
    non-empty message; a success names the image it created.
    """
    out: list[Violation] = []
    for actor, pull in result.pulls.items():
        if pull is None:
            continue
        if pull.error is not None and not pull.message.strip():
            out.append(
                violation(
                    "pull-failure-reported",
                    f"{actor} failed with an empty message ({pull.error_class})",
                    evidence=base_evidence(result, actor, error_class=pull.error_class),
                )
            )
        if pull.error is None and not pull.image_name:
            out.append(
                violation(
                    "pull-failure-reported",
                    f"{actor} reported success but names no image",
                    evidence=base_evidence(result, actor),
                )
            )
    return out


def pulls_succeed_without_faults(result: RunResult) -> list[Violation]:
    """``pulls-succeed-without-faults``: an undisturbed pull succeeds.

    Undisturbed: no fault fired in its processes (a ``gc.run`` collection does not count),
    no fault corrupted the download of one of its blobs (in any pull: the corrupt bytes stay
    in the shared ingest and a later writer resumes from them), it was not cancelled, the program did not revoke its lease, its user lease (if any) was
    created before it and lived through it, and the program did not edit its image's labels
    while it ran.  Concurrent pulls, image deletions and collections do not disturb a pull.
    """
    out: list[Violation] = []
    for pull in pull_actions(result):
        record = result.pulls.get(pull.actor)
        if record is None or record.ok or disturbed(result, pull):
            continue
        out.append(
            violation(
                "pulls-succeed-without-faults",
                f"{pull.actor} failed without a fault or interference: {record.message}",
                evidence=base_evidence(
                    result, pull.actor, error_class=record.error_class, image=pull.image
                ),
            )
        )
    return out


def parent_protected_at_prepare(result: RunResult) -> list[Violation]:
    """``parent-protected-at-prepare``: no pull's Prepare names a parent that no GC root
    reaches at that moment (found by :class:`~unpacksim.properties.monitors.PrepareMonitor`
    during the run)."""
    return [f.violation for f in result.found if f.property == PARENT_PROTECTED]


PROPERTIES: dict[str, Property] = {
    p.name: p
    for p in (
        Property("converges", "After the faults heal, every action ends.", converges),
        Property(
            "pull-failure-reported",
            "A pull that failed says so, with an error class and message.",
            pull_failure_reported,
        ),
        Property(
            "pulls-succeed-without-faults",
            "A pull no fault or interference disturbed succeeds.",
            pulls_succeed_without_faults,
        ),
        Property(
            PARENT_PROTECTED,
            "No Prepare names a parent that is unprotected from GC at that moment.",
            parent_protected_at_prepare,
        ),
        Property(
            "failed-pull-no-extraction-left",
            "Once a pull returned and GC ran, no extraction snapshot it prepared is active.",
            failed_pull_no_extraction_left,
        ),
        Property(
            "image-usable-after-pull",
            "A pull that reported success leaves a usable image.",
            image_usable_after_pull,
        ),
        Property(
            "referenced-blobs-present",
            "The blobs an image references are present, unless discard asked otherwise.",
            referenced_blobs_present,
        ),
        Property(
            "corrupt-layer-never-committed",
            "A corrupt layer is never committed, and the error names it.",
            corrupt_layer_never_committed,
        ),
        Property(
            "chain-applied-once",
            "No unpack applies a layer whose chain ID another unpack commits first.",
            chain_applied_once,
        ),
        Property(
            "downloads-within-limit",
            "No pull runs more layer downloads at once than its limit.",
            downloads_within_limit,
        ),
        Property(
            "no-lost-update",
            "No label one actor wrote is silently lost by another actor's update.",
            no_lost_update,
        ),
        Property(
            STATE_INVARIANTS,
            "The GC reference graph invariants hold at every step.",
            state_invariants,
        ),
        Property(
            "gc-converged",
            "At rest nothing unreachable is left and no snapshot is active but a container's.",
            gc_converged,
        ),
    )
}

#: Properties whose violations monitors record during the run (check_all reads them back).
MONITORED = (PARENT_PROTECTED, STATE_INVARIANTS)


def property_names(names: Sequence[str] | None) -> list[str]:
    """``names`` checked against :data:`PROPERTIES` (all of them if None), in registry order.

    Raises:
        ProgramError: an unknown name (the message lists the known ones).
    """
    if names is None:
        return list(PROPERTIES)
    unknown = [n for n in names if n not in PROPERTIES]
    if unknown:
        raise ProgramError(f"unknown properties {unknown}; known: {list(PROPERTIES)}")
    return [n for n in PROPERTIES if n in names]


def check_all(result: RunResult, names: Sequence[str] | None = None) -> list[Found]:
    """Check ``result`` for ``names`` (default: all); each violation with its graphs.

    Violations of monitored properties are the ones the monitors recorded (with the graphs
    at the step); the others get the quiescent graph as ``before`` and the final graph as
    ``after``.

    Raises:
        ProgramError: an unknown property name.
    """
    found: list[Found] = []
    for name in property_names(names):
        if name in MONITORED:
            found += [f for f in result.found if f.property == name]
            if name == STATE_INVARIANTS:
                found += _at_rest_state(result)
            continue
        for broken in PROPERTIES[name].check(result):
            found.append(_found(result, name, broken))
    return found


def _at_rest_state(result: RunResult) -> list[Found]:
    monitored = {f.violation for f in result.found if f.property == STATE_INVARIANTS}
    return [
        _found(result, STATE_INVARIANTS, v) for v in state_invariants(result) if v not in monitored
    ]


def _found(result: RunResult, name: str, violation: Violation) -> Found:
    evidence = violation.evidence
    time = evidence.get("time", result.outcome.time)
    return Found(
        name,
        violation,
        float(time) if isinstance(time, int | float) else result.outcome.time,
        actor=str(evidence.get("actor", "")),
        process=str(evidence.get("process", "")),
        before=result.quiescent_graph,
        after=result.final_graph,
    )
