"""Invariants of containerd's GC reference graph, as named functions returning violations.

Each check returns a list of :class:`Violation` (empty when the invariant holds); a violation
carries its evidence: the node, the path from a root that kept it alive, the edge that is
missing.  They read graphs from :func:`unpacksim.properties.graph.build_graph`.

================================  ==============================================  ==========
name                              what must hold                                  when
================================  ==============================================  ==========
``gc-oracle``                     the model's mark equals graph reachability      always
``collection-kept-reachable``     a collection removes nothing reachable          per GC
``collection-removed-unreachable``  after a GC no unreachable record (and, after  after GC
                                  the backend sweep, no unreferenced backend
                                  object) remains
``metadata-backend-agree``        every record's backend object exists, with the  always
                                  record's parent as its parent
``snapshot-parents-forest``       snapshot parents form a forest of committed     always
                                  parents
``chain-id-parents``              a chain-ID snapshot's parent is the previous    always
                                  prefix's chain ID
``no-harmful-dangling``           no snapshot misses its parent, no record its    always
                                  backend object (see :func:`classify_dangling`)
================================  ==============================================  ==========

Mirrors ``metadata/gc.go``, ``metadata/snapshot.go`` and ``metadata/content.go``
(``garbageCollect``); see containerd-semantics.md sections 2 and 7.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from unpacksim.model import gc
from unpacksim.model.db import DB
from unpacksim.model.digest import chain_ids
from unpacksim.properties.graph import (
    COLLECTABLE_KINDS,
    build_graph,
    path_to,
    reachable,
    roots,
    snapshot_id,
)

__all__ = [
    "DanglingEdge",
    "Violation",
    "chain_id_parents",
    "check_state",
    "classify_dangling",
    "collection_kept_reachable",
    "collection_removed_unreachable",
    "gc_oracle",
    "metadata_backend_agree",
    "no_harmful_dangling",
    "node_id",
    "snapshot_parents_forest",
]


@dataclass(frozen=True)
class Violation:
    """One broken invariant, with its evidence.

    ``node``: the graph node at fault; ``path``: the path from a root that kept it alive (or
    a cycle); ``missing_edge``: (source, target) of an edge that should exist;
    ``evidence``: anything else, JSON-ready.
    """

    invariant: str
    message: str
    node: str | None = None
    path: tuple[str, ...] = ()
    missing_edge: tuple[str, str] | None = None
    evidence: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __str__(self) -> str:
        return f"{self.invariant}: {self.message}"

    def to_json(self) -> dict[str, Any]:
        """The violation as plain JSON data."""
        return {
            "invariant": self.invariant,
            "message": self.message,
            "node": self.node,
            "path": list(self.path),
            "missing_edge": list(self.missing_edge) if self.missing_edge else None,
            "evidence": dict(self.evidence),
        }


def node_id(node: gc.Node) -> str:
    """The graph id of a model GC node (flat nodes map to their object)."""
    plain = node.plain()
    kind = {
        gc.ResourceType.CONTENT: "content",
        gc.ResourceType.SNAPSHOT: "snapshot",
        gc.ResourceType.LEASE: "lease",
        gc.ResourceType.INGEST: "ingest",
    }.get(plain.type)
    if kind is None:
        raise ValueError(f"the reference graph has no node for GC type {plain.type!r}")
    return f"{kind}:{plain.namespace}:{plain.key}"


def _by_node(violations: list[Violation]) -> list[Violation]:
    """Violations in node order (sorting the few violations, not every node, keeps it fast)."""
    return sorted(violations, key=lambda v: (v.node or "", v.message))


def _present(graph: nx.MultiDiGraph, nid: str) -> bool:
    return nid in graph and bool(graph.nodes[nid]["present"])


# -- the GC oracle ------------------------------------------------------------------------


def gc_oracle(
    db: DB, graph: nx.MultiDiGraph | None = None, marked: gc.Marked | None = None
) -> list[Violation]:
    """``gc-oracle``: the model's mark keeps exactly what the graph reaches from its roots.

    ``graph`` and ``marked`` default to ``build_graph(db)`` and ``gc.mark(db)``; when given,
    they must describe ``db`` as it is now.  Compared are the collectable objects (content,
    snapshots, leases, ingests), including absent ones a reference names.
    """
    graph = build_graph(db) if graph is None else graph
    marked = gc.mark(db) if marked is None else marked
    pred = reachable(graph)
    kinds = graph.nodes.data("kind")
    in_graph = {n for n in pred if kinds[n] in COLLECTABLE_KINDS}
    in_model = {node_id(n) for n in marked.nodes}
    model_roots = {node_id(n) for n in marked.roots}
    out = [
        Violation(
            "gc-oracle",
            f"{nid} is reachable from a root but the model's mark does not keep it",
            node=nid,
            path=path_to(pred, nid),
            evidence={"in_model_mark": False, "in_graph_reach": True},
        )
        for nid in sorted(in_graph - in_model)
    ]
    out += [
        Violation(
            "gc-oracle",
            f"the model's mark keeps {nid} but no root reaches it in the graph",
            node=nid,
            evidence={
                "in_model_mark": True,
                "in_graph_reach": False,
                "model_root": nid in model_roots,
                "graph_roots": roots(graph)[:20],
            },
        )
        for nid in sorted(in_model - in_graph)
    ]
    return out


# -- collection -----------------------------------------------------------------------------


def _observed(graph: nx.MultiDiGraph, kind: str, key: str) -> bool:
    """Whether ``graph`` observed the backend a ``backend_*`` node of ``key`` lives in."""
    if kind == "backend_snapshot":
        names = str(graph.graph.get("snapshot_backends", "")).split(",")
        return key.split("/", 1)[0] in names
    return bool(graph.graph.get("content_backend", False))


def _kept_backends(graph: nx.MultiDiGraph, nid: str) -> list[str]:
    return [
        dst
        for _, dst, data in graph.out_edges(nid, data=True)
        if data["kind"] == "backend" and graph.nodes[dst]["present"]
    ]


def collection_kept_reachable(before: nx.MultiDiGraph, after: nx.MultiDiGraph) -> list[Violation]:
    """``collection-kept-reachable``: nothing reachable before a collection is gone after it.

    ``before`` and ``after`` are graphs taken just before and after a collection (either
    phase) with no other write in between.  Every present node reachable in ``before`` must
    be present in ``after``, and so must every backend object such a node keeps (when
    ``after`` observed that backend).  The path is the one that kept the node alive.
    """
    pred = reachable(before)
    out: list[Violation] = []
    for nid in sorted(pred):
        if not before.nodes[nid]["present"]:
            continue
        if not _present(after, nid):
            out.append(
                Violation(
                    "collection-kept-reachable",
                    f"{nid} was reachable from a root but the collection removed it",
                    node=nid,
                    path=path_to(pred, nid),
                    evidence={"kind": before.nodes[nid]["kind"]},
                )
            )
            continue
        for backend in _kept_backends(before, nid):
            data = before.nodes[backend]
            if _observed(after, data["kind"], data["key"]) and not _present(after, backend):
                out.append(
                    Violation(
                        "collection-kept-reachable",
                        f"{backend} is kept by reachable {nid} but the backend sweep removed it",
                        node=backend,
                        path=(*path_to(pred, nid), backend),
                        missing_edge=(nid, backend),
                        evidence={"kind": data["kind"]},
                    )
                )
    return out


def _unreferenced_backends(graph: nx.MultiDiGraph) -> list[Violation]:
    present = dict(graph.nodes(data="present"))
    kept = {
        dst for src, dst, kind in graph.edges(data="kind") if kind == "backend" and present[src]
    }
    out: list[Violation] = []
    for nid, data in graph.nodes(data=True):
        if not data["kind"].startswith("backend_") or not data["present"] or nid in kept:
            continue
        children = sorted(
            src
            for src, _, edata in graph.in_edges(nid, data=True)
            if edata["kind"] == "backend_parent"
        )
        out.append(
            Violation(
                "collection-removed-unreachable",
                f"{nid} is referenced by no record in any namespace but survived the sweep",
                node=nid,
                evidence={"kind": data["kind"], "backend_children": children},
            )
        )
    return _by_node(out)


def collection_removed_unreachable(
    graph: nx.MultiDiGraph, *, backends: bool = True
) -> list[Violation]:
    """``collection-removed-unreachable``: after a collection nothing unreachable remains.

    Every present content, snapshot, lease and ingest record must be reachable from a root
    (holds right after the metadata sweep).  With ``backends`` (after the backend sweep
    too), every backend object must be kept by some record in some namespace.
    """
    pred = reachable(graph)
    out: list[Violation] = []
    for nid, data in graph.nodes(data=True):
        if data["kind"] in COLLECTABLE_KINDS and data["present"] and nid not in pred:
            holders = sorted(src for src, _ in graph.in_edges(nid))
            out.append(
                Violation(
                    "collection-removed-unreachable",
                    f"{nid} is unreachable from every root but survived the collection",
                    node=nid,
                    evidence={"kind": data["kind"], "referenced_by": holders},
                )
            )
    if backends:
        out += _unreferenced_backends(graph)
    return _by_node(out)


# -- metadata and backends ------------------------------------------------------------------


def _backend_violation(nid: str, dst: str, message: str, **evidence: Any) -> Violation:
    return Violation(
        "metadata-backend-agree", message, node=nid, missing_edge=(nid, dst), evidence=evidence
    )


def _check_backend_parent(graph: nx.MultiDiGraph, nid: str, backend: str) -> Violation | None:
    record = graph.nodes[nid]
    if not record["parent"]:
        expected = ""
    else:
        parent_id = snapshot_id(record["namespace"], record["snapshotter"], record["parent"])
        expected = graph.nodes[parent_id].get("backend_key", "") if parent_id in graph else ""
    actual = graph.nodes[backend]["parent"]
    if actual == expected:
        return None
    target = f"backend_snapshot:{record['snapshotter']}/{expected}" if expected else backend
    return _backend_violation(
        nid,
        target,
        f"{nid} has parent {record['parent']!r} (backend {expected!r}) but its backend "
        f"snapshot's parent is {actual!r}",
        expected_backend_parent=expected,
        actual_backend_parent=actual,
    )


def metadata_backend_agree(graph: nx.MultiDiGraph) -> list[Violation]:
    """``metadata-backend-agree``: every record's backend object exists, shaped alike.

    For each observed backend: a content record's blob is in the content backend; a
    snapshot record's backend snapshot exists and its backend parent is the backend key of
    the record's parent.  (Ingests are left out: a shared ingest has no backend ingest.)
    """
    out: list[Violation] = []
    for nid, data in graph.nodes(data=True):
        kind = data["kind"]
        if not data["present"] or kind not in ("content", "snapshot"):
            continue
        backend_kind = "backend_" + kind
        if kind == "content":
            observed = _observed(graph, backend_kind, "")
            expected = f"backend_content:{data['key']}"
        else:
            observed = _observed(graph, backend_kind, data["key"])
            expected = f"backend_snapshot:{data['snapshotter']}/{data['backend_key']}"
        if not observed:
            continue
        if not _present(graph, expected):
            message = f"{nid} has no backend object {expected}"
            out.append(_backend_violation(nid, expected, message, backend_kind=backend_kind))
        elif kind == "snapshot":
            wrong = _check_backend_parent(graph, nid, expected)
            if wrong is not None:
                out.append(wrong)
    return _by_node(out)


# -- snapshot structure ---------------------------------------------------------------------


def _cycles(parents: dict[str, str]) -> list[list[str]]:
    sub = nx.DiGraph(list(parents.items()))
    if nx.is_directed_acyclic_graph(sub):
        return []
    cycles = []
    for cycle in nx.simple_cycles(sub):
        start = cycle.index(min(cycle))
        cycles.append(cycle[start:] + cycle[:start])
    return sorted(cycles)


def _parent_maps(graph: nx.MultiDiGraph) -> tuple[dict[str, str], list[Violation]]:
    parents: dict[str, str] = {}
    out: list[Violation] = []
    for src, dst, data in graph.edges(data=True):
        if data["kind"] not in ("parent", "backend_parent"):
            continue
        if src in parents:
            out.append(
                Violation(
                    "snapshot-parents-forest",
                    f"{src} has two parents, {parents[src]} and {dst}",
                    node=src,
                    evidence={"parents": sorted([parents[src], dst])},
                )
            )
        parents[src] = dst
    return parents, out


def snapshot_parents_forest(graph: nx.MultiDiGraph) -> list[Violation]:
    """``snapshot-parents-forest``: parents form a forest, and every parent is committed.

    Checked for metadata records and backend snapshots alike: at most one parent each, no
    cycle, and a present parent of a present snapshot record is committed (containerd
    refuses an active or view parent with InvalidArgument).
    """
    parents, out = _parent_maps(graph)
    for cycle in _cycles(parents):
        out.append(
            Violation(
                "snapshot-parents-forest",
                f"snapshot parents form a cycle: {' -> '.join([*cycle, cycle[0]])}",
                node=cycle[0],
                path=(*cycle, cycle[0]),
                evidence={"cycle_length": len(cycle)},
            )
        )
    nodes = graph.nodes
    for child in sorted(parents):
        parent = parents[child]
        if nodes[child]["kind"] != "snapshot" or not nodes[child]["present"]:
            continue
        if nodes[parent]["present"] and nodes[parent]["snapshot_kind"] != "committed":
            out.append(
                Violation(
                    "snapshot-parents-forest",
                    f"{child} has a parent that is not committed: {parent} is "
                    f"{nodes[parent]['snapshot_kind']}",
                    node=child,
                    path=(child, parent),
                    evidence={"parent_kind": nodes[parent]["snapshot_kind"]},
                )
            )
    return out


def _expected_parents(layer_stacks: Iterable[Sequence[str]]) -> dict[str, str]:
    expected: dict[str, str] = {}
    for diff_ids in layer_stacks:
        previous = ""
        for cid in chain_ids(diff_ids):
            expected[cid] = previous
            previous = cid
    return expected


def chain_id_parents(
    graph: nx.MultiDiGraph, layer_stacks: Iterable[Sequence[str]]
) -> list[Violation]:
    """``chain-id-parents``: a committed snapshot named by a chain ID has the right parent.

    ``layer_stacks`` are the diff IDs (bottom first) of the images whose chains to check;
    for each prefix, the snapshot named ``ChainID(prefix)`` must have
    ``ChainID(prefix minus its top layer)`` as parent ("" for the bottom layer).  Snapshots
    named otherwise, or by chain IDs of no given stack, are not judged.

    Raises:
        InvalidArgument: a diff ID is not a digest.
    """
    expected = _expected_parents(layer_stacks)
    out: list[Violation] = []
    for nid, data in graph.nodes(data=True):
        if data["kind"] != "snapshot" or not data["present"]:
            continue
        if data["snapshot_kind"] != "committed" or data["name"] not in expected:
            continue
        want = expected[data["name"]]
        if data["parent"] == want:
            continue
        missing = snapshot_id(data["namespace"], data["snapshotter"], want) if want else None
        out.append(
            Violation(
                "chain-id-parents",
                f"{nid} is chain ID {data['name']} but its parent is {data['parent']!r}, "
                f"not {want!r}",
                node=nid,
                missing_edge=(nid, missing) if missing else None,
                evidence={"expected_parent": want, "actual_parent": data["parent"]},
            )
        )
    return _by_node(out)


# -- dangling references --------------------------------------------------------------------

_DANGLING_REASONS = {
    "label": (False, "a label reference to an absent object keeps only its name"),
    "lease": (False, "a lease may hold a resource that does not exist"),
    "target": (False, "an image whose target is absent is incomplete, GC is unaffected"),
    "expected": (False, "an ingest expecting absent content resumes from nothing"),
    "snapshot": (False, "a container whose snapshot is absent cannot start, GC is unaffected"),
    "parent": (True, "a snapshot whose parent is gone cannot be mounted or extended"),
}


@dataclass(frozen=True)
class DanglingEdge:
    """An edge from a present node to an absent one, classified."""

    source: str
    target: str
    kind: str
    label_key: str
    harmful: bool
    reason: str


def classify_dangling(graph: nx.MultiDiGraph) -> list[DanglingEdge]:
    """Every dangling GC edge with its verdict, sorted by source, target and edge key.

    Harmless: labels, lease resources, image targets, expected digests and container
    snapshots that name absent objects (containerd tolerates all of them).  Harmful: a
    snapshot whose parent is absent.  Backend edges are judged by
    :func:`metadata_backend_agree` instead.
    """
    nodes = graph.nodes
    found: list[tuple[str, str, str, DanglingEdge]] = []
    for dst, present in graph.nodes(data="present"):
        if present:
            continue
        for src, _, key, data in graph.in_edges(dst, keys=True, data=True):
            verdict = _DANGLING_REASONS.get(data["kind"])
            if verdict is None or not nodes[src]["present"]:
                continue
            label_key = str(data.get("key", ""))
            edge = DanglingEdge(src, dst, data["kind"], label_key, verdict[0], verdict[1])
            found.append((src, dst, key, edge))
    return [edge for *_, edge in sorted(found, key=lambda item: item[:3])]


def no_harmful_dangling(graph: nx.MultiDiGraph) -> list[Violation]:
    """``no-harmful-dangling``: no dangling edge that :func:`classify_dangling` calls harmful."""
    return [
        Violation(
            "no-harmful-dangling",
            f"{edge.source} -> {edge.target} ({edge.kind}): {edge.reason}",
            node=edge.source,
            missing_edge=(edge.source, edge.target),
            evidence={"edge_kind": edge.kind},
        )
        for edge in classify_dangling(graph)
        if edge.harmful
    ]


def check_state(db: DB, graph: nx.MultiDiGraph | None = None) -> list[Violation]:
    """Every invariant that holds at every step: the oracle, agreement, the forest, and no
    harmful dangling edge.
    """
    graph = build_graph(db) if graph is None else graph
    return (
        gc_oracle(db, graph)
        + metadata_backend_agree(graph)
        + snapshot_parents_forest(graph)
        + no_harmful_dangling(graph)
    )
