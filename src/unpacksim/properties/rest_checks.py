"""Properties that hold at rest: after convergence, the leases released and GC run.

See :mod:`unpacksim.properties.checks` for the registry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from unpacksim.model.db import Kind
from unpacksim.model.labels import snapshot_gc_label
from unpacksim.properties.graph import content_id, image_id, path_to, reachable, snapshot_id
from unpacksim.properties.invariants import (
    Violation,
    check_state,
    collection_removed_unreachable,
)
from unpacksim.properties.monitors import STATE_INVARIANTS
from unpacksim.properties.runinfo import (
    UNBACKED_SITES,
    base_evidence,
    edited_during,
    ended,
    faults_by_actor,
    image_digests,
    lease_disturbed,
    pull_actions,
    run_events,
    violation,
)
from unpacksim.properties.scenario import DEFAULT_PLATFORM, DeleteImage, HoldSnapshot, Pull, Unpack

if TYPE_CHECKING:
    from unpacksim.properties.program import RunResult

__all__ = [
    "failed_pull_no_extraction_left",
    "gc_converged",
    "image_usable_after_pull",
    "referenced_blobs_present",
    "state_invariants",
]


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
    for event in run_events(result):
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
                violation(
                    "failed-pull-no-extraction-left",
                    f"{actor} {state} ({pull.error_class}) but its extraction snapshot "
                    f"{key!r} is still active after GC",
                    node=node,
                    evidence=base_evidence(
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
    digests = image_digests(result.program, name)
    if edited_during(result, digests, start, float("inf")):
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
    did not delete or relabel afterwards, whose lease lived through it, and which no
    injected Prepare or Commit AlreadyExists misled: the image record exists, its config labels the top
    chain ID for the pull's snapshotter, every chain-ID snapshot exists, committed on the
    previous one, and GC reaches the top one.  And an ``Unpack`` or ``HoldSnapshot`` of that
    image started after the pull ended does not fail with NotFound (containerd #8674: after
    a discarding pull and a collection the layer blobs are gone, so another snapshotter
    cannot be unpacked).
    """
    if not result.at_rest:
        return []
    out: list[Violation] = []
    for pull in pull_actions(result):
        record = result.pulls.get(pull.actor)
        if record is None or not record.ok or _interfered_after(result, pull.image, pull.at):
            continue
        if lease_disturbed(result, pull, ended(result, pull.actor)):
            continue  # the program let GC take what the pull was building
        faults = faults_by_actor(result).get(pull.actor, [])
        if any(e.op in UNBACKED_SITES for e in faults):
            continue  # an injected AlreadyExists made it skip a layer nobody committed
        sn = pull.snapshotter or result.world.default_snapshotter
        problems = _chain_problems(result, pull.image, sn)
        problems += _failed_uses(result, pull, ended(result, pull.actor))
        for problem in problems:
            out.append(
                violation(
                    "image-usable-after-pull",
                    f"{pull.actor} pulled {pull.image} successfully, but {problem}",
                    node=image_id(result.world.namespace, pull.image),
                    evidence=base_evidence(result, pull.actor, snapshotter=sn, problem=problem),
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
            digests = image_digests(result.program, name)
        except KeyError:
            continue
        if edited_during(result, digests, 0.0, float("inf")):
            continue
        pulls = [p for p in pull_actions(result) if p.image == name]
        if any(lease_disturbed(result, p, ended(result, p.actor)) for p in pulls):
            continue  # the program let GC take what a pull of it was building
        discard = any(p.discard for p in pulls)
        for digest, role in digests.items():
            if role == "layer" and discard:
                continue
            if digest in ns.content and (present is None or digest in present):
                continue
            out.append(
                violation(
                    "referenced-blobs-present",
                    f"image {name} references its {role} {digest}, which is not present",
                    node=content_id(ns.name, digest),
                    path=path_to(reachable(result.final_graph), content_id(ns.name, digest))
                    if result.final_graph is not None
                    else (),
                    evidence=base_evidence(result, "", image=name, role=role),
                )
            )
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
                    violation(
                        "gc-converged",
                        f"snapshot {key!r} ({sn}) is still active at rest",
                        node=snapshot_id(ns.name, sn, key),
                        evidence=base_evidence(result),
                    )
                )
    return out
