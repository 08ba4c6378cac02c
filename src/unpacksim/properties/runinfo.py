"""Reading a finished run: its events by actor, its images' blobs, what disturbed a pull.

The helpers the property checks (:mod:`unpacksim.properties.checks`) share.  A run's trace
names processes; :meth:`RunResult.actor_of` maps each to the actor whose action started it,
so faults, reads and writes are judged per actor.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from unpacksim.model.clock import format_rfc3339, parse_rfc3339
from unpacksim.properties.invariants import Violation
from unpacksim.properties.scenario import DEFAULT_PLATFORM, Cancel, CreateLease, Program, Pull
from unpacksim.sim.trace import TraceEvent

if TYPE_CHECKING:
    from unpacksim.properties.program import RunResult

__all__ = [
    "CORRUPTING_SITES",
    "HARMLESS_SITES",
    "UNBACKED_SITES",
    "base_evidence",
    "corrupted_blob",
    "created_before",
    "disturbed",
    "edited_during",
    "ended",
    "faults_by_actor",
    "image_digests",
    "lease_disturbed",
    "pull_actions",
    "run_events",
    "user_lease_ok",
    "violation",
]

#: Fault sites whose firing corrupts a layer (the content or the diff ID).
CORRUPTING_SITES = ("fetch.corrupt", "fetch.truncate", "diff.apply.wrong_diff_id")
#: Fault sites whose AlreadyExists no snapshot backs: a pull that believes one skips a layer
#: nobody committed.
UNBACKED_SITES = ("snapshots.prepare.exists", "snapshots.commit.exists")
#: Fault sites that do not disturb a pull: a collection may run at any time.
HARMLESS_SITES = ("gc.run",)


def violation(
    name: str,
    message: str,
    *,
    evidence: dict[str, object],
    node: str | None = None,
    path: tuple[str, ...] = (),
) -> Violation:
    """A :class:`Violation` of property ``name`` (``evidence`` has time, process, actor)."""
    return Violation(name, message, node=node, path=path, evidence=evidence)


# --- helpers over a run ----------------------------------------------------------------------


def run_events(result: RunResult) -> list[TraceEvent]:
    """The run's trace events, in order."""
    return result.trace.events


def pull_actions(result: RunResult) -> list[Pull]:
    """The run's pull actions, in start order."""
    return result.program.pulls()


def ended(result: RunResult, actor: str) -> float:
    """When ``actor``'s action ended (the run's end if it never did)."""
    for record in result.actions:
        if record.action.actor == actor and record.ended is not None:
            return record.ended
    return result.outcome.time


def image_digests(program: Program, name: str) -> dict[str, str]:
    """The blobs of image ``name`` a ``linux/amd64`` pull needs, digest -> role."""
    built = program.image(name).build()
    image = built.platform(DEFAULT_PLATFORM)
    out = {built.target.digest: "target", image.manifest.digest: "manifest"}
    out[image.config.digest] = "config"
    for desc in image.layers:
        out.setdefault(desc.digest, "layer")
    return out


def faults_by_actor(result: RunResult) -> dict[str, list[TraceEvent]]:
    out: dict[str, list[TraceEvent]] = {}
    for event in run_events(result):
        if event.type == "fault":
            out.setdefault(result.actor_of(event.process), []).append(event)
    return out


def edited_during(result: RunResult, digests: Iterable[str], start: float, end: float) -> bool:
    wanted = set(digests)
    return any(start <= t <= end and d in wanted for t, d in result.runner.edited)


def user_lease_ok(result: RunResult, pull: Pull, until: float) -> bool:
    """Whether the user lease a pull names existed before the pull's first call and lives
    until ``until``.

    Expiry is in whole seconds (``gc.expire`` is RFC3339), as containerd writes it.
    """
    if not pull.lease:
        return True
    created = created_before(result, pull.lease, pull.actor)
    for action in result.program.actions:
        if isinstance(action, CreateLease) and action.lease == pull.lease and created:
            if action.expire_in is None:
                return True
            expire = parse_rfc3339(format_rfc3339(action.at + action.expire_in))
            return expire is not None and not until > expire
    return False


def created_before(result: RunResult, lease: str, actor: str) -> bool:
    """Whether lease ``lease`` was created (the call completed) before ``actor``'s first call."""
    for event in run_events(result):
        if event.type == "complete" and event.op == "leases.create" and event.outcome == "ok":
            if event.args.get("id") == lease:
                return True
        elif event.type == "invoke" and result.actor_of(event.process) == actor:
            return False
    return False


def lease_disturbed(result: RunResult, pull: Pull, until: float) -> str:
    """Why the pull's lease did not protect it until ``until`` ("" if it did)."""
    lease = result.runner.pull_lease(pull.actor)
    if lease is not None and lease in result.runner.revoked:
        return f"the program revoked its lease {lease}"
    if not user_lease_ok(result, pull, until):
        return f"its user lease {pull.lease} was not live throughout"
    return ""


def corrupted_blob(result: RunResult, pull: Pull) -> str:
    """A corrupting fault on a blob of the pull's image before it ended ("" if none).

    A corrupt download leaves its bytes in the shared ingest (``content/local`` keeps the
    ingest after a failed commit), so the next writer of that ref resumes from them and
    fails too: another pull's fault reaches this one.
    """
    digests = image_digests(result.program, pull.image)
    end = ended(result, pull.actor)
    for event in run_events(result):
        if event.time > end:
            break
        fetched = event.type == "fault" and event.op in CORRUPTING_SITES[:2]
        if fetched and event.args.get("key") in digests:
            return f"fault {event.op} corrupted its blob {event.args.get('key')}"
    return ""


def disturbed(result: RunResult, pull: Pull) -> str:
    """Why the program (not the implementation) may have made ``pull`` fail ("" if not)."""
    faults = [e for e in faults_by_actor(result).get(pull.actor, []) if e.op not in HARMLESS_SITES]
    if faults:
        return f"fault {faults[0].op} fired in it"
    corrupted = corrupted_blob(result, pull)
    if corrupted:
        return corrupted
    if any(isinstance(a, Cancel) and a.target == pull.actor for a in result.program.actions):
        return "it was cancelled"
    lease = lease_disturbed(result, pull, ended(result, pull.actor))
    if lease:
        return lease
    digests = image_digests(result.program, pull.image)
    if edited_during(result, digests, pull.at, ended(result, pull.actor)):
        return "the program edited the labels of its image"
    return ""


def base_evidence(result: RunResult, actor: str = "", **extra: object) -> dict[str, object]:
    """Evidence for a violation judged at the end of the run: its time, ``actor``, more."""
    return {"time": result.outcome.time, "process": "", "actor": actor, **extra}
