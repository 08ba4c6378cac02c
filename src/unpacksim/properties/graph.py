"""The GC reference graph: any model state as a networkx ``MultiDiGraph``.

Nodes are stable strings ``<kind>:<namespace>:<key>`` for metadata objects and
``<kind>:<key>`` for backend objects:

=================  ==========================================  ==============================
kind               id                                          what
=================  ==========================================  ==============================
content            ``content:<ns>:<digest>``                   a blob record
snapshot           ``snapshot:<ns>:<snapshotter>/<name>``      a snapshot record
lease              ``lease:<ns>:<id>``                         a lease
image              ``image:<ns>:<name>``                       an image record
ingest             ``ingest:<ns>:<ref>``                       an ingest record
container          ``container:<ns>:<id>``                     a container record
backend_content    ``backend_content:<digest>``                a blob in the content backend
backend_snapshot   ``backend_snapshot:<snapshotter>/<key>``    a snapshot in a backend
backend_ingest     ``backend_ingest:<backend ref>``            an ingest in the content backend
=================  ==========================================  ==============================

Every node has ``kind``, ``present`` (False for the target of a dangling edge), ``key``,
``namespace`` ("" for backend objects), ``root`` and ``root_reason`` (why containerd's root
scan would emit it: ``lease``, ``image``, ``container``, ``gc.root``, ``ingest``; "" if not).
Edges carry ``kind``: ``label`` (with the label ``key``), ``parent``, ``lease`` (with
``flat``), ``target`` (image to its target), ``snapshot`` (container to its snapshot),
``expected`` (ingest to the content it shares), and, for backend objects, ``backend``
(record to the backend object it keeps) and ``backend_parent``.

Roots and label references are computed here independently of ``unpacksim.model.gc``, so the
graph can serve as an oracle for the model's mark (``properties.invariants.gc_oracle``).
Mirrors ``metadata/gc.go`` (``scanRoots``, ``references``, ``sendLabelRefs``).
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from typing import Any

import networkx as nx

from unpacksim.model import labels as lbl
from unpacksim.model.clock import parse_rfc3339
from unpacksim.model.db import (
    DB,
    ContainerRecord,
    ImageRecord,
    IngestRecord,
    LeaseRecord,
    NamespaceRecord,
    SnapshotRecord,
)

__all__ = [
    "BACKEND_KINDS",
    "COLLECTABLE_KINDS",
    "GC_EDGE_KINDS",
    "backend_content_id",
    "backend_ingest_id",
    "backend_snapshot_id",
    "build_graph",
    "container_id",
    "content_id",
    "image_id",
    "ingest_id",
    "lease_id",
    "path_to",
    "reachable",
    "roots",
    "snapshot_id",
    "to_dot",
    "to_graphml",
]

#: Node kinds the collector deletes records of.
COLLECTABLE_KINDS = ("content", "snapshot", "lease", "ingest")
#: Node kinds that stand for backend objects.
BACKEND_KINDS = ("backend_content", "backend_snapshot", "backend_ingest")
#: Edge kinds the collector's mark follows.
GC_EDGE_KINDS = ("label", "parent", "lease", "target", "snapshot", "expected")

# Independent of model.gc: the label grammar of sendLabelRefs as regular expressions.
_CONTENT_LABEL = re.compile(r"containerd\.io/gc\.ref\.content(?:[./].*)?", re.DOTALL)
_SNAPSHOT_LABEL = re.compile(r"containerd\.io/gc\.ref\.snapshot\.([^/]*)(?:/.*)?", re.DOTALL)


_GC_EDGES = frozenset(GC_EDGE_KINDS)


def content_id(namespace: str, digest: str) -> str:
    return f"content:{namespace}:{digest}"


def snapshot_id(namespace: str, snapshotter: str, name: str) -> str:
    return f"snapshot:{namespace}:{snapshotter}/{name}"


def lease_id(namespace: str, lease: str) -> str:
    return f"lease:{namespace}:{lease}"


def image_id(namespace: str, name: str) -> str:
    return f"image:{namespace}:{name}"


def ingest_id(namespace: str, ref: str) -> str:
    return f"ingest:{namespace}:{ref}"


def container_id(namespace: str, cid: str) -> str:
    return f"container:{namespace}:{cid}"


def backend_content_id(digest: str) -> str:
    return f"backend_content:{digest}"


def backend_snapshot_id(snapshotter: str, key: str) -> str:
    return f"backend_snapshot:{snapshotter}/{key}"


def backend_ingest_id(ref: str) -> str:
    return f"backend_ingest:{ref}"


def _node_id(kind: str, namespace: str, key: str) -> str:
    return f"{kind}:{key}" if kind in BACKEND_KINDS else f"{kind}:{namespace}:{key}"


def _lease_expired(labels: dict[str, str], now: float) -> bool:
    value = labels.get(lbl.GC_EXPIRE)
    expire = parse_rfc3339(value) if value is not None else None
    return expire is not None and now > expire


class _Edge:
    __slots__ = ("attrs", "dst", "dst_key", "dst_kind", "dst_namespace", "key", "src")

    def __init__(
        self, src: str, kind: str, dst_kind: str, namespace: str, key: str, attrs: dict[str, Any]
    ) -> None:
        self.src = src
        self.dst = _node_id(dst_kind, namespace, key)
        self.key = f"label:{attrs['key']}" if kind == "label" else kind
        self.attrs = {"kind": kind, **attrs}
        self.dst_kind = dst_kind
        self.dst_namespace = namespace
        self.dst_key = key


class _Builder:
    """Adds records as nodes; edges wait until every record is in, to spot dangling targets."""

    def __init__(self, db: DB, backends: bool) -> None:
        self.db = db
        self.now = db.now()
        self.content_backend = backends and db.content_backend is not None
        self.snapshot_backends = dict(db.snapshot_backends) if backends else {}
        # Which backends this graph observed, so checks know what absence means.
        self.graph = nx.MultiDiGraph(
            now=self.now,
            content_backend=self.content_backend,
            snapshot_backends=",".join(sorted(self.snapshot_backends)),
        )
        self.nodes: dict[str, dict[str, Any]] = {}
        self.edges: list[_Edge] = []

    def add(self, kind: str, namespace: str, key: str, root_reason: str, **attrs: Any) -> str:
        nid = _node_id(kind, namespace, key)
        self.nodes[nid] = {
            "kind": kind,
            "present": True,
            "namespace": namespace,
            "key": key,
            "root": bool(root_reason),
            "root_reason": root_reason,
            **attrs,
        }
        return nid

    def link(
        self, src: str, kind: str, dst_kind: str, dst_namespace: str, dst_key: str, **attrs: Any
    ) -> None:
        self.edges.append(_Edge(src, kind, dst_kind, dst_namespace, dst_key, attrs))

    def labels(self, src: str, namespace: str, labels: dict[str, str]) -> None:
        """``sendLabelRefs``: one ``label`` edge per reference label, in key order."""
        for key in sorted(k for k in labels if k.startswith("containerd.io/gc.ref.")):
            if _CONTENT_LABEL.fullmatch(key):
                self.link(src, "label", "content", namespace, labels[key], key=key)
                continue
            match = _SNAPSHOT_LABEL.fullmatch(key)
            if match is not None:
                target = f"{match.group(1)}/{labels[key]}"
                self.link(src, "label", "snapshot", namespace, target, key=key)

    def finish(self) -> nx.MultiDiGraph:
        nodes = self.nodes
        for edge in self.edges:
            if edge.dst not in nodes:
                nodes[edge.dst] = {
                    "kind": edge.dst_kind,
                    "present": False,
                    "namespace": edge.dst_namespace,
                    "key": edge.dst_key,
                    "root": False,
                    "root_reason": "",
                }
        self.graph.add_nodes_from(nodes.items())
        # add_edges_from, because an edge attribute is called "key" (the label key).
        self.graph.add_edges_from((e.src, e.dst, e.key, e.attrs) for e in self.edges)
        return self.graph


def _add_content(b: _Builder, ns: NamespaceRecord) -> None:
    for digest, blob in ns.content.items():
        reason = "gc.root" if lbl.GC_ROOT in blob.labels else ""
        nid = b.add("content", ns.name, digest, reason, size=blob.size)
        b.labels(nid, ns.name, blob.labels)
        if b.content_backend:
            b.link(nid, "backend", "backend_content", "", digest)


def _add_snapshot(b: _Builder, ns: str, snapshotter: str, record: SnapshotRecord) -> None:
    key = f"{snapshotter}/{record.name}"
    reason = "gc.root" if lbl.GC_ROOT in record.labels else ""
    nid = b.add(
        "snapshot",
        ns,
        key,
        reason,
        snapshotter=snapshotter,
        name=record.name,
        snapshot_kind=record.kind.value,
        parent=record.parent,
        backend_key=record.backend_key,
    )
    if record.parent:
        b.link(nid, "parent", "snapshot", ns, f"{snapshotter}/{record.parent}")
    b.labels(nid, ns, record.labels)
    if record.backend_key and snapshotter in b.snapshot_backends:
        b.link(nid, "backend", "backend_snapshot", "", f"{snapshotter}/{record.backend_key}")


def _add_lease(b: _Builder, ns: str, lease: LeaseRecord) -> None:
    expired = _lease_expired(lease.labels, b.now)
    flat = lbl.GC_FLAT in lease.labels
    nid = b.add("lease", ns, lease.id, "" if expired else "lease", expired=expired, flat=flat)
    for rtype, rid in lease.resources:
        if rtype == "content":
            b.link(nid, "lease", "content", ns, rid, flat=flat, resource=rtype)
        elif rtype == "ingests":
            b.link(nid, "lease", "ingest", ns, rid, flat=False, resource=rtype)
        elif rtype.startswith("snapshots/"):
            target = f"{rtype[len('snapshots/') :]}/{rid}"
            b.link(nid, "lease", "snapshot", ns, target, flat=flat, resource=rtype)


def _add_image(b: _Builder, ns: str, image: ImageRecord) -> None:
    nid = b.add("image", ns, image.name, "image", target=image.target.digest)
    b.link(nid, "target", "content", ns, image.target.digest)
    b.labels(nid, ns, image.labels)


def _add_ingest(b: _Builder, ns: str, ingest: IngestRecord) -> None:
    live = ingest.expire_at is not None and not b.now > ingest.expire_at
    attrs: dict[str, Any] = {"backend_ref": ingest.backend_ref, "expected": ingest.expected}
    if ingest.expire_at is not None:
        attrs["expire_at"] = ingest.expire_at
    nid = b.add("ingest", ns, ingest.ref, "ingest" if live else "", **attrs)
    if ingest.expected:
        b.link(nid, "expected", "content", ns, ingest.expected)
    if b.content_backend:
        # The content sweep keeps a backend ingest by ref and the blob an ingest expects.
        if ingest.backend_ref:
            b.link(nid, "backend", "backend_ingest", "", ingest.backend_ref)
        if ingest.expected:
            b.link(nid, "backend", "backend_content", "", ingest.expected)


def _add_container(b: _Builder, ns: str, container: ContainerRecord) -> None:
    nid = b.add(
        "container",
        ns,
        container.id,
        "container",
        snapshotter=container.snapshotter,
        snapshot_key=container.snapshot_key,
    )
    if container.snapshotter:
        target = f"{container.snapshotter}/{container.snapshot_key}"
        b.link(nid, "snapshot", "snapshot", ns, target)
    b.labels(nid, ns, container.labels)


def _add_namespace(b: _Builder, ns: NamespaceRecord) -> None:
    _add_content(b, ns)
    for snapshotter, records in ns.snapshots.items():
        for record in records.values():
            _add_snapshot(b, ns.name, snapshotter, record)
    for lease in ns.leases.values():
        _add_lease(b, ns.name, lease)
    for image in ns.images.values():
        _add_image(b, ns.name, image)
    for ingest in ns.ingests.values():
        _add_ingest(b, ns.name, ingest)
    for container in ns.containers.values():
        _add_container(b, ns.name, container)


def _add_backends(b: _Builder) -> None:
    backend = b.db.content_backend
    if b.content_backend and backend is not None:
        for digest in backend.backend_digests():
            b.add("backend_content", "", digest, "")
        for ref in backend.backend_ingests():
            b.add("backend_ingest", "", ref, "")
    for snapshotter in sorted(b.snapshot_backends):
        for key, parent in b.snapshot_backends[snapshotter].backend_tree():
            nid = b.add(
                "backend_snapshot",
                "",
                f"{snapshotter}/{key}",
                "",
                snapshotter=snapshotter,
                backend_key=key,
                parent=parent,
            )
            if parent:
                b.link(nid, "backend_parent", "backend_snapshot", "", f"{snapshotter}/{parent}")


def build_graph(db: DB, *, backends: bool = True) -> nx.MultiDiGraph:
    """The reference graph of ``db`` at ``db.now()`` (see the module docstring for its shape).

    With ``backends`` (the default), the registered content and snapshot backends become
    nodes too, linked from the records that keep them; a store without a registered backend
    gets no backend edges.  The graph attribute ``now`` records the time roots were judged at.

    Raises:
        TypeError: ``db`` is not a :class:`~unpacksim.model.db.DB`.
    """
    if not isinstance(db, DB):
        raise TypeError(f"build_graph needs a unpacksim.model.db.DB, got {type(db).__name__}")
    builder = _Builder(db, backends)
    for name in sorted(db.namespaces):
        _add_namespace(builder, db.namespaces[name])
    _add_backends(builder)
    return builder.finish()


def roots(graph: nx.MultiDiGraph) -> list[str]:
    """The nodes containerd's root scan starts from, sorted."""
    return sorted(n for n, root in graph.nodes(data="root") if root)


def reachable(graph: nx.MultiDiGraph) -> dict[str, str | None]:
    """Every node the collector keeps, each with the node it was reached from (None: a root).

    Breadth first from :func:`roots` over the GC edges.  A ``flat`` lease edge starts a
    second traversal that follows ``parent`` edges only (a flat lease keeps its snapshots'
    parents but no label references).  Backend edges are not followed.
    """
    succ = graph.succ
    pred: dict[str, str | None] = dict.fromkeys(roots(graph))
    flat: dict[str, str | None] = {}
    queue = deque(pred)
    while queue:
        node = queue.popleft()
        for target, edges in succ[node].items():
            for data in edges.values():
                kind = data["kind"]
                if kind == "lease" and data["flat"]:
                    flat.setdefault(target, node)
                elif kind in _GC_EDGES and target not in pred:
                    pred[target] = node
                    queue.append(target)
    queue = deque(n for n in flat if n not in pred)
    flat = {n: flat[n] for n in queue}
    while queue:
        node = queue.popleft()
        for target, edges in succ[node].items():
            if target in pred or target in flat:
                continue
            if any(data["kind"] == "parent" for data in edges.values()):
                flat[target] = node
                queue.append(target)
    pred.update(flat)
    return pred


def path_to(pred: dict[str, str | None], node: str) -> tuple[str, ...]:
    """The path from a root to ``node`` recorded by :func:`reachable` (empty if unreached)."""
    if node not in pred:
        return ()
    path = [node]
    step = pred[node]
    while step is not None:
        path.append(step)
        step = pred[step]
    return tuple(reversed(path))


def _sorted_copy(graph: nx.MultiDiGraph) -> nx.MultiDiGraph:
    out = nx.MultiDiGraph(**dict(sorted(graph.graph.items())))
    out.add_nodes_from(sorted(graph.nodes(data=True), key=lambda item: item[0]))
    edges = sorted(graph.edges(keys=True, data=True), key=lambda e: (e[0], e[1], e[2]))
    out.add_edges_from(edges)
    return out


def to_graphml(graph: nx.MultiDiGraph) -> str:
    """GraphML of ``graph``, nodes and edges sorted, so equal graphs give equal text."""
    return "\n".join(nx.generate_graphml(_sorted_copy(graph))) + "\n"


def _dot_quote(value: object) -> str:
    if isinstance(value, bool):
        value = "true" if value else "false"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


def _dot_attrs(attrs: Iterable[tuple[str, object]]) -> str:
    return ", ".join(f"{name}={_dot_quote(value)}" for name, value in attrs)


_SHAPES = {
    "content": "note",
    "snapshot": "box",
    "lease": "hexagon",
    "image": "house",
    "ingest": "cds",
    "container": "component",
}


def _dot_node(nid: str, data: dict[str, Any]) -> str:
    style = [("label", f"{data['kind']}\n{data['namespace']}\n{data['key']}".strip())]
    style.append(("shape", _SHAPES.get(data["kind"], "ellipse")))
    line = "solid" if data["present"] else "dashed"
    style.append(("style", ("bold," if data["root"] else "") + line))
    extra = [(f"x_{k}", v) for k, v in sorted(data.items())]
    return f"  {_dot_quote(nid)} [{_dot_attrs(style + extra)}];"


def to_dot(graph: nx.MultiDiGraph) -> str:
    """Graphviz DOT of ``graph``, nodes and edges sorted; data attributes as ``x_<name>``.

    Roots are bold, dangling targets dashed; edges are labelled with their kind (and label
    key).
    """
    lines = ["digraph gc {"]
    if graph.graph:
        lines.append(
            f"  graph [{_dot_attrs((f'x_{k}', v) for k, v in sorted(graph.graph.items()))}];"
        )
    for nid in sorted(graph.nodes):
        lines.append(_dot_node(nid, graph.nodes[nid]))
    for src, dst, key, data in sorted(graph.edges(keys=True, data=True), key=lambda e: e[:3]):
        attrs = [("label", key), ("id", f"{src}->{dst}#{key}")]
        attrs += [(f"x_{k}", v) for k, v in sorted(data.items())]
        lines.append(f"  {_dot_quote(src)} -> {_dot_quote(dst)} [{_dot_attrs(attrs)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"
