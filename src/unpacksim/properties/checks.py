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

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from unpacksim.model.clock import format_rfc3339, parse_rfc3339
from unpacksim.model.db import Kind
from unpacksim.model.labels import snapshot_gc_label
from unpacksim.properties.graph import content_id, image_id, path_to, reachable, snapshot_id
from unpacksim.properties.invariants import (
    Violation,
    check_state,
    collection_removed_unreachable,
)
from unpacksim.properties.monitors import PARENT_PROTECTED, STATE_INVARIANTS, Found
from unpacksim.properties.scenario import (
    DEFAULT_PLATFORM,
    Cancel,
    CreateLease,
    DeleteImage,
    HoldSnapshot,
    Program,
    ProgramError,
    Pull,
    Unpack,
)
from unpacksim.sim.trace import TraceEvent

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

#: Fault sites whose firing corrupts a layer (the content or the diff ID).
CORRUPTING_SITES = ("fetch.corrupt", "fetch.truncate", "diff.apply.wrong_diff_id")
#: Fault sites that do not disturb a pull: a collection may run at any time.
HARMLESS_SITES = ("gc.run",)


@dataclass(frozen=True)
class Property:
    """A named property: what must hold, and the function that checks a run for it."""

    name: str
    description: str
    check: Callable[[RunResult], list[Violation]]


def _v(
    name: str,
    message: str,
    *,
    evidence: dict[str, object],
    node: str | None = None,
    path: tuple[str, ...] = (),
) -> Violation:
    return Violation(name, message, node=node, path=path, evidence=evidence)


# --- helpers over a run ----------------------------------------------------------------------


def _events(result: RunResult) -> list[TraceEvent]:
    return result.trace.events


def _pull_actions(result: RunResult) -> list[Pull]:
    return result.program.pulls()


def _ended(result: RunResult, actor: str) -> float:
    for record in result.actions:
        if record.action.actor == actor and record.ended is not None:
            return record.ended
    return result.outcome.time


def _image_digests(program: Program, name: str) -> dict[str, str]:
    """The blobs of image ``name`` a ``linux/amd64`` pull needs, digest -> role."""
    built = program.image(name).build()
    image = built.platform(DEFAULT_PLATFORM)
    out = {built.target.digest: "target", image.manifest.digest: "manifest"}
    out[image.config.digest] = "config"
    for desc in image.layers:
        out.setdefault(desc.digest, "layer")
    return out


def _faults_by_actor(result: RunResult) -> dict[str, list[TraceEvent]]:
    out: dict[str, list[TraceEvent]] = {}
    for event in _events(result):
        if event.type == "fault":
            out.setdefault(result.actor_of(event.process), []).append(event)
    return out


def _edited_during(result: RunResult, digests: Iterable[str], start: float, end: float) -> bool:
    wanted = set(digests)
    return any(start <= t <= end and d in wanted for t, d in result.runner.edited)


def _user_lease_ok(result: RunResult, pull: Pull, until: float) -> bool:
    """Whether the user lease a pull names existed before the pull's first call and lives
    until ``until``.

    Expiry is in whole seconds (``gc.expire`` is RFC3339), as containerd writes it.
    """
    if not pull.lease:
        return True
    created = _created_before(result, pull.lease, pull.actor)
    for action in result.program.actions:
        if isinstance(action, CreateLease) and action.lease == pull.lease and created:
            if action.expire_in is None:
                return True
            expire = parse_rfc3339(format_rfc3339(action.at + action.expire_in))
            return expire is not None and not until > expire
    return False


def _created_before(result: RunResult, lease: str, actor: str) -> bool:
    """Whether lease ``lease`` was created (the call completed) before ``actor``'s first call."""
    for event in _events(result):
        if event.type == "complete" and event.op == "leases.create" and event.outcome == "ok":
            if event.args.get("id") == lease:
                return True
        elif event.type == "invoke" and result.actor_of(event.process) == actor:
            return False
    return False


def _lease_disturbed(result: RunResult, pull: Pull, until: float) -> str:
    """Why the pull's lease did not protect it until ``until`` ("" if it did)."""
    lease = result.runner.pull_lease(pull.actor)
    if lease is not None and lease in result.runner.revoked:
        return f"the program revoked its lease {lease}"
    if not _user_lease_ok(result, pull, until):
        return f"its user lease {pull.lease} was not live throughout"
    return ""


def _corrupted_blob(result: RunResult, pull: Pull) -> str:
    """A corrupting fault on a blob of the pull's image before it ended ("" if none).

    A corrupt download leaves its bytes in the shared ingest (``content/local`` keeps the
    ingest after a failed commit), so the next writer of that ref resumes from them and
    fails too: another pull's fault reaches this one.
    """
    digests = _image_digests(result.program, pull.image)
    end = _ended(result, pull.actor)
    for event in _events(result):
        if event.time > end:
            break
        fetched = event.type == "fault" and event.op in CORRUPTING_SITES[:2]
        if fetched and event.args.get("key") in digests:
            return f"fault {event.op} corrupted its blob {event.args.get('key')}"
    return ""


def _disturbed(result: RunResult, pull: Pull) -> str:
    """Why the program (not the implementation) may have made ``pull`` fail ("" if not)."""
    faults = [e for e in _faults_by_actor(result).get(pull.actor, []) if e.op not in HARMLESS_SITES]
    if faults:
        return f"fault {faults[0].op} fired in it"
    corrupted = _corrupted_blob(result, pull)
    if corrupted:
        return corrupted
    if any(isinstance(a, Cancel) and a.target == pull.actor for a in result.program.actions):
        return "it was cancelled"
    lease = _lease_disturbed(result, pull, _ended(result, pull.actor))
    if lease:
        return lease
    digests = _image_digests(result.program, pull.image)
    if _edited_during(result, digests, pull.at, _ended(result, pull.actor)):
        return "the program edited the labels of its image"
    return ""


def _evidence(result: RunResult, actor: str = "", **extra: object) -> dict[str, object]:
    return {"time": result.outcome.time, "process": "", "actor": actor, **extra}


# --- the properties --------------------------------------------------------------------------


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
        _v(
            "converges",
            f"the run ended {outcome.name} at t={outcome.time}: "
            + "; ".join(failures or blocked or [f"{len(running)} actions never ended"]),
            evidence=_evidence(
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
                _v(
                    "pull-failure-reported",
                    f"{actor} failed with an empty message ({pull.error_class})",
                    evidence=_evidence(result, actor, error_class=pull.error_class),
                )
            )
        if pull.error is None and not pull.image_name:
            out.append(
                _v(
                    "pull-failure-reported",
                    f"{actor} reported success but names no image",
                    evidence=_evidence(result, actor),
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
    for pull in _pull_actions(result):
        record = result.pulls.get(pull.actor)
        if record is None or record.ok or _disturbed(result, pull):
            continue
        out.append(
            _v(
                "pulls-succeed-without-faults",
                f"{pull.actor} failed without a fault or interference: {record.message}",
                evidence=_evidence(
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


def state_invariants(result: RunResult) -> list[Violation]:
    """``state-invariants``: :func:`~unpacksim.properties.invariants.check_state` at every
    step boundary (found during the run) and at rest."""
    out = [f.violation for f in result.found if f.property == STATE_INVARIANTS]
    if result.final_graph is not None:
        seen = {(v.invariant, v.node, v.message) for v in out}
        for v in check_state(result.world.db, result.final_graph):
            if (v.invariant, v.node, v.message) not in seen:
                out.append(v)
    return out


def _prepared_keys(result: RunResult) -> dict[str, list[tuple[str, str]]]:
    """Per actor, the (snapshotter, key) of every Prepare that succeeded, from the trace."""
    out: dict[str, list[tuple[str, str]]] = {}
    for event in _events(result):
        if event.type == "complete" and event.op == "snapshots.prepare" and event.outcome == "ok":
            item = (str(event.args["snapshotter"]), str(event.args["key"]))
            out.setdefault(result.actor_of(event.process), []).append(item)
    return out


def failed_pull_no_extraction_left(result: RunResult) -> list[Violation]:
    """``failed-pull-no-extraction-left``: once a pull returned and a collection ran (with
    the leases as the pulls left them), no snapshot its Prepares created is still active.

    The seed leaks the ``extract-*`` snapshot when the wait for a layer ends on cancellation
    or a fetch error (no abort, containerd #6294), and it stays while the pull's lease lives
    (a cancelled pull cannot delete its lease; a user lease outlives the pull).
    """
    quiet = result.quiescence
    if quiet is None:
        return []
    out: list[Violation] = []
    for actor, keys in _prepared_keys(result).items():
        pull = result.pulls.get(actor)
        if not result.runner.is_pull(actor) or pull is None:
            continue
        for sn, key in keys:
            if key not in quiet.active.get(sn, ()):
                continue
            state = "failed" if not pull.ok else "succeeded"
            node = snapshot_id(result.world.namespace, sn, key)
            out.append(
                _v(
                    "failed-pull-no-extraction-left",
                    f"{actor} {state} ({pull.error_class}) but its extraction snapshot "
                    f"{key!r} is still active after GC",
                    node=node,
                    evidence=_evidence(
                        result, actor, key=key, leases=list(quiet.leases), message=pull.message
                    ),
                )
            )
    return out


def _interfered_after(result: RunResult, name: str, start: float) -> str:
    for action in result.program.actions:
        if action.at < start:
            continue
        if isinstance(action, DeleteImage) and action.image == name:
            return f"{action.actor} deleted it"
    digests = _image_digests(result.program, name)
    if _edited_during(result, digests, start, float("inf")):
        return "the program edited its labels"
    return ""


def _chain_problems(result: RunResult, name: str, snapshotter: str) -> list[str]:
    """What keeps image ``name`` from being usable in ``snapshotter`` at rest."""
    ns = result.world.db.namespace(result.world.namespace)
    record = ns.images.get(name)
    if record is None:
        return [f"image {name} is gone"]
    image = result.program.image(name).build().platform(DEFAULT_PLATFORM)
    config = ns.content.get(image.config.digest)
    if config is None:
        return [f"its config {image.config.digest} is gone"]
    want = image.chain_ids[-1] if image.chain_ids else ""
    label = config.labels.get(snapshot_gc_label(snapshotter), "")
    problems = [] if label == want else [f"its config labels {label!r} as rootfs, not {want!r}"]
    records = ns.snapshots.get(snapshotter, {})
    parent = ""
    for chain in image.chain_ids:
        snap = records.get(chain)
        if snap is None or snap.kind is not Kind.COMMITTED or snap.parent != parent:
            problems.append(f"snapshot {chain} is missing or not committed on {parent!r}")
        parent = chain
    graph = result.final_graph
    if (
        want
        and graph is not None
        and snapshot_id(ns.name, snapshotter, want) not in reachable(graph)
    ):
        problems.append(f"snapshot {want} is not reachable from any GC root")
    return problems


def image_usable_after_pull(result: RunResult) -> list[Violation]:
    """``image-usable-after-pull``: a successful pull leaves a usable image.

    At rest (every lease released, GC ran), for each successful pull whose image the program
    did not delete or relabel afterwards, and whose lease lived through it: the image record exists, its config labels the top
    chain ID for the pull's snapshotter, every chain-ID snapshot exists, committed on the
    previous one, and GC reaches the top one.  And an ``Unpack`` or ``HoldSnapshot`` of that
    image started after the pull ended does not fail with NotFound (containerd #8674: after
    a discarding pull and a collection the layer blobs are gone, so another snapshotter
    cannot be unpacked).
    """
    if not result.at_rest:
        return []
    out: list[Violation] = []
    for pull in _pull_actions(result):
        record = result.pulls.get(pull.actor)
        if record is None or not record.ok or _interfered_after(result, pull.image, pull.at):
            continue
        if _lease_disturbed(result, pull, _ended(result, pull.actor)):
            continue  # the program let GC take what the pull was building
        sn = pull.snapshotter or result.world.default_snapshotter
        problems = _chain_problems(result, pull.image, sn)
        problems += _failed_uses(result, pull, _ended(result, pull.actor))
        for problem in problems:
            out.append(
                _v(
                    "image-usable-after-pull",
                    f"{pull.actor} pulled {pull.image} successfully, but {problem}",
                    node=image_id(result.world.namespace, pull.image),
                    evidence=_evidence(result, pull.actor, snapshotter=sn, problem=problem),
                )
            )
    return out


def _failed_uses(result: RunResult, pull: Pull, after: float) -> list[str]:
    out = []
    for record in result.actions:
        action = record.action
        if not isinstance(action, Unpack | HoldSnapshot) or action.image != pull.image:
            continue
        if action.at >= after and record.outcome == "NotFound":
            out.append(f"{action.actor}'s {action.kind} failed: {record.message}")
    return out


def referenced_blobs_present(result: RunResult) -> list[Violation]:
    """``referenced-blobs-present``: at rest, every blob an image references is present.

    For each image record the program knows: its target, its ``linux/amd64`` manifest and
    config, and its layers must be in the namespace and the content backend, unless a pull
    of it asked to discard layer content (then the layers are exempt), the program edited
    its labels, or the program revoked (or let expire) the lease of a pull of it.  Containerd #8973: a pull whose snapshots already exist never fetches those
    layers, so when the blobs were collected the image references missing content.
    """
    if not result.at_rest:
        return []
    ns = result.world.db.namespace(result.world.namespace)
    backend = result.world.db.content_backend
    present = set(backend.backend_digests()) if backend is not None else None
    out: list[Violation] = []
    for name in list(ns.images):
        try:
            digests = _image_digests(result.program, name)
        except KeyError:
            continue
        if _edited_during(result, digests, 0.0, float("inf")):
            continue
        pulls = [p for p in _pull_actions(result) if p.image == name]
        if any(_lease_disturbed(result, p, _ended(result, p.actor)) for p in pulls):
            continue  # the program let GC take what a pull of it was building
        discard = any(p.discard for p in pulls)
        for digest, role in digests.items():
            if role == "layer" and discard:
                continue
            if digest in ns.content and (present is None or digest in present):
                continue
            out.append(
                _v(
                    "referenced-blobs-present",
                    f"image {name} references its {role} {digest}, which is not present",
                    node=content_id(ns.name, digest),
                    path=path_to(reachable(result.final_graph), content_id(ns.name, digest))
                    if result.final_graph is not None
                    else (),
                    evidence=_evidence(result, "", image=name, role=role),
                )
            )
    return out


def _after_in_process(events: list[TraceEvent], start: int, process: str) -> Iterable[TraceEvent]:
    for event in events[start + 1 :]:
        if event.process == process:
            yield event


def _names_layer(message: str, key: str, diff_ids: dict[str, str]) -> bool:
    return key in message or (key in diff_ids and diff_ids[key] in message)


def _diff_ids(program: Program) -> dict[str, str]:
    out: dict[str, str] = {}
    for spec in program.images:
        for image in spec.build().platforms.values():
            for desc, diff_id in zip(image.layers, image.diff_ids, strict=True):
                out[desc.digest] = diff_id
    return out


def _corrupt_commit(events: list[TraceEvent], i: int, event: TraceEvent) -> TraceEvent | None:
    """The commit that kept the corruption of fault ``event``, if one succeeded."""
    key = str(event.args.get("key", ""))
    for later in _after_in_process(events, i, event.process):
        if event.op == "diff.apply.wrong_diff_id":
            if later.op == "diff.apply" and later.type == "invoke":
                return None
            if later.op == "snapshots.commit" and later.type == "complete":
                return later if later.outcome == "ok" else None
        else:
            if later.op == "registry.fetch" and later.type == "invoke":
                return None
            commit = later.op == "content.commit" and later.type == "complete"
            if commit and key in str(later.args.get("ref", "")):
                return later if later.outcome == "ok" else None
    return None


def corrupt_layer_never_committed(result: RunResult) -> list[Violation]:
    """``corrupt-layer-never-committed``: a corrupt layer is never committed, and the error
    names it.

    After a corrupting fault (``fetch.corrupt``, ``fetch.truncate``: the blob's bytes;
    ``diff.apply.wrong_diff_id``: the computed diff ID) in a process, that process's next
    commit of it (the content commit of the blob; the snapshot commit after the apply) must
    fail, unless it first fetches or applies again.  A pull that failed with only corrupting
    faults fired in it must name a corrupted layer in its message: the blob digest or the
    layer's diff ID (the seed quotes the expected diff ID, containerd #3569).
    """
    events = _events(result)
    diff_ids = _diff_ids(result.program)
    out: list[Violation] = []
    corrupted: dict[str, list[str]] = {}
    for i, event in enumerate(events):
        if event.type != "fault" or event.op not in CORRUPTING_SITES:
            continue
        actor = result.actor_of(event.process)
        key = str(event.args.get("key", ""))
        corrupted.setdefault(actor, []).append(key)
        commit = _corrupt_commit(events, i, event)
        if commit is not None:
            out.append(
                _v(
                    "corrupt-layer-never-committed",
                    f"{actor} committed {commit.args.get('name') or commit.args.get('ref')} "
                    f"after {event.op} corrupted {key}",
                    evidence={
                        "time": commit.time,
                        "process": commit.process,
                        "actor": actor,
                        "fault": event.op,
                        "key": key,
                    },
                )
            )
    faults = _faults_by_actor(result)
    for actor, keys in corrupted.items():
        pull = result.pulls.get(actor)
        others = [e for e in faults.get(actor, []) if e.op not in (*CORRUPTING_SITES, "gc.run")]
        if pull is None or pull.ok or others:
            continue
        if not any(_names_layer(pull.message, k, diff_ids) for k in keys):
            out.append(
                _v(
                    "corrupt-layer-never-committed",
                    f"{actor} failed after corrupt layers {sorted(set(keys))} but its error does "
                    f"not name one: {pull.message}",
                    evidence=_evidence(result, actor, keys=sorted(set(keys))),
                )
            )
    return out


def chain_applied_once(result: RunResult) -> list[Violation]:
    """``chain-applied-once``: no pull applies a layer whose chain ID another pull commits
    first.

    Found in the trace: a ``snapshots.commit`` of a pull's process ending in AlreadyExists
    (not injected) after that process's last ``diff.apply`` succeeded, when the snapshot's
    committer was a pull too, is a layer applied twice (containerd #4937; the duplication
    suppressor of #6702 serialises the pulls).
    """
    events = _events(result)
    last_apply: dict[str, TraceEvent] = {}
    winners: dict[tuple[str, str], str] = {}  # (snapshotter, chain ID) -> actor committing it
    out: list[Violation] = []
    for event in events:
        if event.type != "complete":
            continue
        chain = str(event.args.get("name", ""))
        where = (str(event.args.get("snapshotter", "")), chain)
        if event.op == "diff.apply":
            last_apply[event.process] = event
        elif event.op == "snapshots.commit" and event.outcome == "ok":
            winners[where] = result.actor_of(event.process)
        elif event.op == "snapshots.commit" and event.outcome == "AlreadyExists":
            applied = last_apply.pop(event.process, None)
            if applied is None or applied.outcome != "ok" or event.injected:
                continue
            actor = result.actor_of(event.process)
            winner = winners.get(where, "")
            if not (result.runner.is_pull(actor) and result.runner.is_pull(winner)):
                continue  # a duplicate with a client's Unpack is not the pulls' duplicate work
            out.append(
                _v(
                    "chain-applied-once",
                    f"{actor} applied {applied.args.get('digest')} for chain {chain}, which "
                    f"{winner} committed meanwhile (Commit: already exists)",
                    evidence={
                        "time": event.time,
                        "process": event.process,
                        "actor": actor,
                        "chain_id": chain,
                        "winner": winner,
                    },
                )
            )
    return out


def _download_spans(result: RunResult, actor: str) -> list[tuple[int, int, str]]:
    """(first seq, last seq, digest) of each layer download of ``actor``, per process."""
    spans: dict[tuple[str, str], list[int]] = {}
    layers = {d for spec in result.program.images for d in _layer_digests(spec.name, result)}
    for event in _events(result):
        if event.type == "fault" or result.actor_of(event.process) != actor:
            continue
        ref = str(event.args.get("ref", ""))
        digest = ref.removeprefix("layer-") if ref.startswith("layer-") else ""
        if not digest and event.op in ("registry.fetch", "content.info", "content.update"):
            digest = str(event.args.get("digest", ""))
        if digest not in layers:
            continue
        opens = event.op == "content.writer" and event.type == "invoke"
        if opens or (event.process, digest) in spans:  # a download starts at its writer
            spans.setdefault((event.process, digest), []).append(event.seq)
    return sorted((min(s), max(s), d) for (_, d), s in spans.items())


def _layer_digests(name: str, result: RunResult) -> list[str]:
    built = result.program.image(name).build()
    return [d.digest for p in built.platforms.values() for d in p.layers]


def downloads_within_limit(result: RunResult) -> list[Violation]:
    """``downloads-within-limit``: a pull with ``max_concurrent_downloads`` = n > 0 never
    runs more than n layer downloads at once.

    A download of a layer runs, in the trace, from its first call naming the layer (opening
    the ``layer-<digest>`` writer) to its last (the distribution-source label), in one
    process of the pull.  At the seed the unpacker's fetches ignore the limit (containerd
    #6054; fixed by #6109 in 1.6).
    """
    out: list[Violation] = []
    for pull in _pull_actions(result):
        limit = pull.max_concurrent_downloads
        if limit <= 0:
            continue
        spans = _download_spans(result, pull.actor)
        peak: list[str] = []
        peak_at = 0
        for start, _, _ in spans:
            running = sorted(d for s, e, d in spans if s <= start <= e)
            if len(running) > len(peak):
                peak, peak_at = running, start
        if len(peak) <= limit:
            continue
        event = _events(result)[peak_at]
        out.append(
            _v(
                "downloads-within-limit",
                f"{pull.actor} ran {len(peak)} layer downloads at once (limit {limit})",
                evidence={
                    "time": event.time,
                    "process": event.process,
                    "actor": pull.actor,
                    "downloads": peak,
                    "limit": limit,
                },
            )
        )
    return out


def _label_effect(event: TraceEvent) -> tuple[bool, dict[str, str]]:
    """(replaces the whole map, the labels it sets) of a ``content.update`` event."""
    paths = [str(p) for p in event.args.get("fieldpaths") or []]
    labels = {str(k): str(v) for k, v in dict(event.args.get("labels") or {}).items()}
    if not paths or "labels" in paths:
        return True, {k: v for k, v in labels.items() if v}
    wanted = {p.removeprefix("labels.") for p in paths if p.startswith("labels.")}
    return False, {k: labels.get(k, "") for k in sorted(wanted)}


def no_lost_update(result: RunResult) -> list[Violation]:
    """``no-lost-update``: no label one actor wrote on a blob is silently dropped by another.

    Per blob, from the trace: an ``content.update`` that replaces the whole label map (no
    field paths, or ``labels``) by actor B drops or changes a label last written by actor A
    after B last read the blob (``content.info``): B could not have seen it, so A's write is
    lost.  Updates with ``labels.<key>`` field paths change only what they name.  (The seed's
    ``DiscardContent`` writes back the labels it read with no field path when no layer label
    matched.)
    """
    owners: dict[str, dict[str, tuple[str, int, str]]] = {}
    reads: dict[tuple[str, str], int] = {}
    out: list[Violation] = []
    for event in _events(result):
        if event.type != "complete" or event.outcome != "ok":
            continue
        digest = str(event.args.get("digest", ""))
        actor = result.actor_of(event.process)
        if event.op == "content.info":
            reads[(actor, digest)] = event.seq
        elif event.op == "content.delete":
            owners.pop(digest, None)
        elif event.op == "gc.sweep_metadata":
            owners.clear()  # forget rather than guess what the sweep removed
        elif event.op == "content.update":
            out += _apply_update(owners, reads, event, actor, digest)
    return out


def _apply_update(
    owners: dict[str, dict[str, tuple[str, int, str]]],
    reads: dict[tuple[str, str], int],
    event: TraceEvent,
    actor: str,
    digest: str,
) -> list[Violation]:
    replace, labels = _label_effect(event)
    current = owners.setdefault(digest, {})
    out: list[Violation] = []
    if replace:
        seen = reads.get((actor, digest), -1)
        for key, (writer, seq, value) in sorted(current.items()):
            if writer != actor and seq > seen and labels.get(key) != value:
                out.append(
                    _v(
                        "no-lost-update",
                        f"{actor} replaced the labels of {digest} and dropped {key}={value!r}, "
                        f"which {writer} wrote after {actor} last read them",
                        evidence={
                            "time": event.time,
                            "process": event.process,
                            "actor": actor,
                            "writer": writer,
                            "key": key,
                        },
                    )
                )
        current.clear()
    for key, value in labels.items():
        if value:
            current[key] = (actor, event.seq, value)
        else:
            current.pop(key, None)
    return out


def gc_converged(result: RunResult) -> list[Violation]:
    """``gc-converged``: at rest, after the last collection, nothing unreachable is left (in
    metadata or a backend) and no snapshot is active but a container's rootfs."""
    if not result.at_rest or result.final_graph is None:
        return []
    out = collection_removed_unreachable(result.final_graph, backends=True)
    ns = result.world.db.namespace(result.world.namespace)
    held = {(c.snapshotter, c.snapshot_key) for c in ns.containers.values()}
    for sn, records in ns.snapshots.items():
        for key, record in records.items():
            if record.kind is Kind.ACTIVE and (sn, key) not in held:
                out.append(
                    _v(
                        "gc-converged",
                        f"snapshot {key!r} ({sn}) is still active at rest",
                        node=snapshot_id(ns.name, sn, key),
                        evidence=_evidence(result),
                    )
                )
    return out


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
        for violation in PROPERTIES[name].check(result):
            found.append(_found(result, name, violation))
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
