"""Properties read from the trace: corruption, duplicated work, download limits, lost updates.

Each walks the run's history of invoke, complete and fault events once (see
:mod:`unpacksim.properties.checks` for the registry).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from unpacksim.properties.invariants import Violation
from unpacksim.properties.runinfo import (
    CORRUPTING_SITES,
    base_evidence,
    faults_by_actor,
    pull_actions,
    run_events,
    violation,
)
from unpacksim.properties.scenario import Program
from unpacksim.sim.trace import TraceEvent

if TYPE_CHECKING:
    from unpacksim.properties.program import RunResult

__all__ = [
    "chain_applied_once",
    "corrupt_layer_never_committed",
    "downloads_within_limit",
    "no_lost_update",
]


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
    events = run_events(result)
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
                violation(
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
    faults = faults_by_actor(result)
    for actor, keys in corrupted.items():
        pull = result.pulls.get(actor)
        others = [e for e in faults.get(actor, []) if e.op not in (*CORRUPTING_SITES, "gc.run")]
        if pull is None or pull.ok or others:
            continue
        if not any(_names_layer(pull.message, k, diff_ids) for k in keys):
            out.append(
                violation(
                    "corrupt-layer-never-committed",
                    f"{actor} failed after corrupt layers {sorted(set(keys))} but its error does "
                    f"not name one: {pull.message}",
                    evidence=base_evidence(result, actor, keys=sorted(set(keys))),
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
    events = run_events(result)
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
                violation(
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


def _download_spans(result: RunResult, actors: set[str]) -> dict[str, list[tuple[int, int, str]]]:
    """Per actor in ``actors``, (first seq, last seq, digest) of each layer download: from
    its process's ``layer-<digest>`` writer opening to its last call naming the layer."""
    spans: dict[tuple[str, str, str], list[int]] = {}
    layers = {d for spec in result.program.images for d in _layer_digests(spec.name, result)}
    for event in run_events(result):
        if event.type == "fault":
            continue
        ref = str(event.args.get("ref", ""))
        digest = ref[6:] if ref.startswith("layer-") else str(event.args.get("digest", ""))
        if digest not in layers:
            continue
        actor = result.actor_of(event.process)
        if actor not in actors:
            continue
        key = (actor, event.process, digest)
        opens = event.op == "content.writer" and event.type == "invoke"
        if opens or key in spans:  # a download starts at its writer
            spans.setdefault(key, []).append(event.seq)
    out: dict[str, list[tuple[int, int, str]]] = {a: [] for a in actors}
    for (actor, _, digest), seqs in spans.items():
        out[actor].append((min(seqs), max(seqs), digest))
    return {actor: sorted(found) for actor, found in out.items()}


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
    limits = {p.actor: p.max_concurrent_downloads for p in pull_actions(result)}
    limited = {actor for actor, limit in limits.items() if limit > 0}
    if not limited:
        return []
    out: list[Violation] = []
    for actor, spans in _download_spans(result, limited).items():
        limit = limits[actor]
        peak: list[str] = []
        peak_at = 0
        for start, _, _ in spans:
            running = sorted(d for s, e, d in spans if s <= start <= e)
            if len(running) > len(peak):
                peak, peak_at = running, start
        if len(peak) <= limit:
            continue
        event = run_events(result)[peak_at]
        out.append(
            violation(
                "downloads-within-limit",
                f"{actor} ran {len(peak)} layer downloads at once (limit {limit})",
                evidence={
                    "time": event.time,
                    "process": event.process,
                    "actor": actor,
                    "downloads": peak,
                    "limit": limit,
                },
            )
        )
    return sorted(out, key=lambda v: str(v.evidence["actor"]))


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
    for event in run_events(result):
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
                    violation(
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
