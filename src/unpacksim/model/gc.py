"""containerd's metadata garbage collector at the seed commit, as separate steps.

Mirrors ``metadata/gc.go`` (``scanRoots``, ``references``, ``scanAll``, ``remove``,
``sendLabelRefs``), ``gc/gc.go`` (``Node``, ``ResourceMax``, ``Tricolor``), ``metadata/db.go``
(``GarbageCollect``) and the backend sweeps of ``metadata/content.go`` and
``metadata/snapshot.go`` (``garbageCollect``, ``walkTree``, ``pruneBranch``).

containerd collects in two phases, and the simulator may run other work between them:

1. :func:`mark` then :func:`sweep_metadata`, both under ``DB.wlock`` held exclusively, so no
   metadata write may run between the two calls (the simulator enforces that; this module
   cannot see other writers).  Reads may run.
2. :func:`sweep_backends` (or, one backend at a time, :func:`sweep_content_backend` and
   :func:`sweep_snapshot_backend`), after the write lock is released.  containerd runs each
   dirty backend's cleanup in its own goroutine, under that store's own lock.

:func:`collect` runs the three steps in order, as ``DB.GarbageCollect`` does.  Collections do
not overlap in containerd (``GarbageCollect`` returns only after its backend sweeps, and the
scheduler runs one at a time), so the next :func:`mark` must wait for the previous backend
sweep: the targets of a metadata sweep are cleared from the DB and exist only in its report.

Iteration follows bolt: namespaces and keys in byte order (sorted), so roots, references and
removals come out in the order containerd produces them.  Expiry compares against
``db.now()`` (containerd: ``time.Now()`` at the start of the root scan).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from unpacksim.model import labels as lbl
from unpacksim.model.clock import parse_rfc3339
from unpacksim.model.db import DB, NamespaceRecord
from unpacksim.model.errdefs import ContainerdError, FailedPrecondition

__all__ = [
    "RESOURCE_MAX",
    "BackendTargets",
    "Collection",
    "Marked",
    "Node",
    "ResourceType",
    "SweepReport",
    "collect",
    "label_refs",
    "lease_expired",
    "mark",
    "references",
    "remove",
    "scan_all",
    "scan_roots",
    "sweep_backends",
    "sweep_content_backend",
    "sweep_metadata",
    "sweep_snapshot_backend",
    "tricolor",
]


class ResourceType(enum.IntEnum):
    """``gc.ResourceType`` values of ``metadata/gc.go``; flat variants set bit ``0x20``."""

    UNKNOWN = 0
    CONTENT = 1
    SNAPSHOT = 2
    CONTAINER = 3
    TASK = 4
    LEASE = 5
    INGEST = 6
    CONTENT_FLAT = 0x21
    SNAPSHOT_FLAT = 0x22


#: ``gc.ResourceMax``: the marker strips the bits above it, so a flat node marks its object.
RESOURCE_MAX = 0x1F

_FLAT_TO_PLAIN = {
    ResourceType.CONTENT_FLAT: ResourceType.CONTENT,
    ResourceType.SNAPSHOT_FLAT: ResourceType.SNAPSHOT,
}


class Node(NamedTuple):
    """``gc.Node``: a resource type, its namespace and its key.

    Keys: a digest for content, ``<snapshotter>/<name>`` for snapshots, the lease ID, the
    ingest ref.  Tuple order (type, namespace, key) is the order of containerd's test helper
    ``nodeList``.
    """

    type: ResourceType
    namespace: str
    key: str

    @property
    def flat(self) -> bool:
        """True for the flat variants a ``containerd.io/gc.flat`` lease emits."""
        return self.type > RESOURCE_MAX

    def plain(self) -> Node:
        """This node with the bits above ``RESOURCE_MAX`` stripped (what the marker records)."""
        plain = _FLAT_TO_PLAIN.get(self.type)
        return self if plain is None else Node(plain, self.namespace, self.key)


_REF_PREFIX = "containerd.io/gc.ref."
_CONTENT_REF = lbl.GC_REF_CONTENT
_SNAPSHOT_REF = lbl.GC_REF_SNAPSHOT_PREFIX


def label_refs(namespace: str, labels: dict[str, str]) -> list[Node]:
    """The nodes a label map references (``sendLabelRefs``).

    ``containerd.io/gc.ref.content`` counts bare or followed by ``.`` or ``/`` and anything
    (``.0``, ``.config``, ``/x``); any other continuation (``...contentbad``) is ignored.
    ``containerd.io/gc.ref.snapshot.<snapshotter>`` references snapshot ``<value>`` in
    ``<snapshotter>``; a ``/suffix`` after the snapshotter name is dropped.  Content
    references come first, then snapshot references, each in key order (bolt's cursor).
    """
    keys = sorted(k for k in labels if k.startswith(_REF_PREFIX))
    if not keys:
        return []
    content: list[Node] = []
    snapshots: list[Node] = []
    for key in keys:
        if key.startswith(_CONTENT_REF):
            rest = key[len(_CONTENT_REF) :]
            if rest == "" or rest[0] in "./":
                content.append(Node(ResourceType.CONTENT, namespace, labels[key]))
        elif key.startswith(_SNAPSHOT_REF):
            snapshotter = key[len(_SNAPSHOT_REF) :].split("/", 1)[0]
            target = f"{snapshotter}/{labels[key]}"
            snapshots.append(Node(ResourceType.SNAPSHOT, namespace, target))
    return content + snapshots


def lease_expired(labels: dict[str, str], now: float) -> bool:
    """True if a lease's ``containerd.io/gc.expire`` lies before ``now``.

    A value that does not parse as RFC3339 is ignored (containerd logs it and keeps the
    lease); a lease expiring exactly at ``now`` is still live (``time.After`` is strict).
    """
    value = labels.get(lbl.GC_EXPIRE)
    if value is None:
        return False
    expire = parse_rfc3339(value)
    return expire is not None and now > expire


def _namespaces(db: DB) -> list[NamespaceRecord]:
    return [db.namespaces[name] for name in sorted(db.namespaces)]


def _lease_roots(ns: NamespaceRecord, now: float) -> list[Node]:
    """Unexpired leases and their resources, flat if the lease says so (``scanRoots``)."""
    out: list[Node] = []
    name = ns.name
    for lease_id in sorted(ns.leases):
        lease = ns.leases[lease_id]
        if lease_expired(lease.labels, now):
            continue
        flat = lbl.GC_FLAT in lease.labels
        out.append(Node(ResourceType.LEASE, name, lease_id))
        content_type = ResourceType.CONTENT_FLAT if flat else ResourceType.CONTENT
        snapshot_type = ResourceType.SNAPSHOT_FLAT if flat else ResourceType.SNAPSHOT
        content, snapshots, ingests = [], [], []
        for rtype, rid in lease.resources:
            if rtype == "content":
                content.append(rid)
            elif rtype == "ingests":
                ingests.append(rid)
            elif rtype.startswith("snapshots/"):
                snapshots.append((rtype[len("snapshots/") :], rid))
        out.extend(Node(content_type, name, d) for d in sorted(content))
        out.extend(Node(snapshot_type, name, f"{s}/{k}") for s, k in sorted(snapshots))
        out.extend(Node(ResourceType.INGEST, name, r) for r in sorted(ingests))
    return out


def _namespace_roots(ns: NamespaceRecord, now: float) -> list[Node]:
    out = _lease_roots(ns, now)
    name = ns.name
    for image_name in sorted(ns.images):
        image = ns.images[image_name]
        out.append(Node(ResourceType.CONTENT, name, image.target.digest))
        out.extend(label_refs(name, image.labels))
    for ref in sorted(ns.ingests):
        expire_at = ns.ingests[ref].expire_at
        if expire_at is not None and not now > expire_at:
            out.append(Node(ResourceType.INGEST, name, ref))
    for digest in sorted(ns.content):
        if lbl.GC_ROOT in ns.content[digest].labels:
            out.append(Node(ResourceType.CONTENT, name, digest))
    for cid in sorted(ns.containers):
        container = ns.containers[cid]
        if container.snapshotter:
            key = f"{container.snapshotter}/{container.snapshot_key}"
            out.append(Node(ResourceType.SNAPSHOT, name, key))
        out.extend(label_refs(name, container.labels))
    for snapshotter in sorted(ns.snapshots):
        records = ns.snapshots[snapshotter]
        for sname in sorted(records):
            if lbl.GC_ROOT in records[sname].labels:
                out.append(Node(ResourceType.SNAPSHOT, name, f"{snapshotter}/{sname}"))
    return out


def scan_roots(db: DB) -> list[Node]:
    """Every root, namespace by namespace (``metadata/gc.go`` ``scanRoots``).

    Roots: unexpired leases (the lease itself, then its content, snapshots and ingests,
    content and snapshots flat when the lease carries ``containerd.io/gc.flat``); every
    image's target and label references; ingests whose ``expire_at`` is set and not past;
    content and snapshots labelled ``containerd.io/gc.root``; every container's snapshot
    (when it names a snapshotter) and label references.  A root may name an object that does
    not exist; the marker keeps such nodes too, as containerd does.
    """
    now = db.now()
    out: list[Node] = []
    for ns in _namespaces(db):
        out.extend(_namespace_roots(ns, now))
    return out


def _split_snapshot_key(node: Node) -> tuple[str, str]:
    snapshotter, sep, name = node.key.partition("/")
    if not sep:
        # containerd: errors.Errorf("invalid snapshot gc key %s"); only a hand-made Node
        # can lack the slash, so this is a misuse of the framework.
        raise ValueError(
            f"invalid snapshot gc key {node.key!r}: a snapshot node's key is "
            "'<snapshotter>/<name>', e.g. Node(ResourceType.SNAPSHOT, 'default', 'overlay/sn1')"
        )
    return snapshotter, name


def references(db: DB, node: Node) -> list[Node]:
    """The nodes ``node`` references (``metadata/gc.go`` ``references``).

    Content: its label references.  Snapshot (plain or flat): its parent, always, with the
    same type; then its label references unless flat.  Ingest: its ``expected`` digest.  A
    node whose record is missing (a dead edge) and every other type reference nothing.

    Raises:
        ValueError: a snapshot node whose key has no ``<snapshotter>/`` part.
    """
    ns = db.namespaces.get(node.namespace)
    kind = node.type
    if kind == ResourceType.CONTENT:
        blob = ns.content.get(node.key) if ns is not None else None
        return [] if blob is None else label_refs(node.namespace, blob.labels)
    if kind == ResourceType.SNAPSHOT or kind == ResourceType.SNAPSHOT_FLAT:
        snapshotter, name = _split_snapshot_key(node)
        records = ns.snapshots.get(snapshotter) if ns is not None else None
        record = records.get(name) if records is not None else None
        if record is None:
            return []
        out = []
        if record.parent:
            out.append(Node(kind, node.namespace, f"{snapshotter}/{record.parent}"))
        if kind == ResourceType.SNAPSHOT_FLAT:
            return out
        return out + label_refs(node.namespace, record.labels)
    if kind == ResourceType.INGEST:
        ingest = ns.ingests.get(node.key) if ns is not None else None
        if ingest is not None and ingest.expected:
            return [Node(ResourceType.CONTENT, node.namespace, ingest.expected)]
    return []


def tricolor(roots: Iterable[Node], refs: Callable[[Node], Iterable[Node]]) -> frozenset[Node]:
    """Every node reachable from ``roots`` (``gc/gc.go`` ``Tricolor``).

    A depth-first grey stack with a ``seen`` set keyed by the full node (so a flat node and
    its plain twin are traversed separately); each node is recorded black with the bits above
    ``RESOURCE_MAX`` stripped.
    """
    grays = list(roots)
    seen: set[Node] = set()
    reachable: set[Node] = set()
    while grays:
        node = grays.pop()
        seen.add(node)
        for target in refs(node):
            if target not in seen:
                grays.append(target)
        reachable.add(node.plain() if node.type > RESOURCE_MAX else node)
    return frozenset(reachable)


@dataclass(frozen=True)
class Marked:
    """The result of :func:`mark`: the black set, the roots it grew from, the mark time."""

    nodes: frozenset[Node]
    roots: tuple[Node, ...]
    at: float

    def __contains__(self, node: object) -> bool:
        return node in self.nodes

    def __len__(self) -> int:
        return len(self.nodes)


def mark(db: DB) -> Marked:
    """Scan the roots and mark everything they reach (``DB.getMarked``).

    containerd marks in a read transaction while holding ``wlock``; the caller must keep
    metadata writes out until :func:`sweep_metadata` has used the result.
    """
    roots = scan_roots(db)
    nodes = tricolor(roots, lambda node: references(db, node))
    return Marked(nodes=nodes, roots=tuple(roots), at=db.now())


def scan_all(db: DB) -> list[Node]:
    """Every collectable record: leases, snapshots, ingests, content (``scanAll``)."""
    out: list[Node] = []
    for ns in _namespaces(db):
        name = ns.name
        out.extend(Node(ResourceType.LEASE, name, k) for k in sorted(ns.leases))
        for snapshotter in sorted(ns.snapshots):
            records = ns.snapshots[snapshotter]
            out.extend(
                Node(ResourceType.SNAPSHOT, name, f"{snapshotter}/{k}") for k in sorted(records)
            )
        out.extend(Node(ResourceType.INGEST, name, k) for k in sorted(ns.ingests))
        out.extend(Node(ResourceType.CONTENT, name, k) for k in sorted(ns.content))
    return out


def remove(db: DB, node: Node) -> bool:
    """Delete the record of ``node``; False if there was none (``metadata/gc.go`` ``remove``).

    Like containerd, removing a snapshot record does not touch its parent's ``children``
    links.

    Raises:
        ValueError: a snapshot node whose key has no ``<snapshotter>/`` part.
    """
    ns = db.namespaces.get(node.namespace)
    if ns is None:
        return False
    kind = node.type
    if kind == ResourceType.CONTENT:
        return ns.content.pop(node.key, None) is not None
    if kind == ResourceType.SNAPSHOT:
        snapshotter, name = _split_snapshot_key(node)
        records = ns.snapshots.get(snapshotter)
        return records is not None and records.pop(name, None) is not None
    if kind == ResourceType.LEASE:
        return ns.leases.pop(node.key, None) is not None
    if kind == ResourceType.INGEST:
        return ns.ingests.pop(node.key, None) is not None
    return False


@dataclass(frozen=True)
class BackendTargets:
    """Which backends a backend sweep visits: the content store, and snapshotters by name."""

    content: bool = False
    snapshotters: tuple[str, ...] = ()


@dataclass(frozen=True)
class SweepReport:
    """What one sweep did.

    ``removed``: metadata records deleted.  ``targets``: the backends left dirty for the
    backend sweep.  ``removed_blobs`` / ``aborted_ingests``: content backend objects dropped.
    ``removed_snapshots``: (snapshotter, backend key) removed; ``kept_snapshots``:
    unreferenced backend snapshots whose Remove the backend refused with FailedPrecondition
    (a child stays; containerd's sweep logs it and goes on).  ``errors``: backend errors that stopped
    a backend's sweep (containerd logs them; ``GarbageCollect`` still succeeds).
    """

    removed: tuple[Node, ...] = ()
    targets: BackendTargets = field(default_factory=BackendTargets)
    removed_blobs: tuple[str, ...] = ()
    aborted_ingests: tuple[str, ...] = ()
    removed_snapshots: tuple[tuple[str, str], ...] = ()
    kept_snapshots: tuple[tuple[str, str], ...] = ()
    errors: tuple[str, ...] = ()

    def merged(self, other: SweepReport) -> SweepReport:
        """Both reports' lists concatenated, in order; the targets of ``self`` are kept."""
        return SweepReport(
            removed=self.removed + other.removed,
            targets=self.targets,
            removed_blobs=self.removed_blobs + other.removed_blobs,
            aborted_ingests=self.aborted_ingests + other.aborted_ingests,
            removed_snapshots=self.removed_snapshots + other.removed_snapshots,
            kept_snapshots=self.kept_snapshots + other.kept_snapshots,
            errors=self.errors + other.errors,
        )


def sweep_metadata(db: DB, marked: Marked) -> SweepReport:
    """Delete every lease, snapshot, ingest and content record not in ``marked``.

    The write-transaction half of ``DB.GarbageCollect``: a removed snapshot marks its
    snapshotter dirty, removed content or an ingest marks the content store dirty; then the
    deletion count is reset and the dirty backends are handed over in ``targets`` (and
    cleared on the DB), as containerd does before it releases ``wlock``.  Mutation listeners
    are not called (containerd's sweep bypasses ``DB.Update``).

    Raises:
        TypeError: ``marked`` is not the result of :func:`mark`.
    """
    if not isinstance(marked, Marked):
        raise TypeError(
            f"sweep_metadata needs the Marked result of gc.mark(db), got {type(marked).__name__}"
        )
    removed: list[Node] = []
    for node in scan_all(db):
        if node in marked.nodes:
            continue
        if node.type == ResourceType.SNAPSHOT:
            db.dirty_snapshotters[node.key.split("/", 1)[0]] = None
        elif node.type in (ResourceType.CONTENT, ResourceType.INGEST):
            db.dirty_content = True
        remove(db, node)
        removed.append(node)
    targets = BackendTargets(db.dirty_content, tuple(sorted(db.dirty_snapshotters)))
    db.dirty = 0
    db.dirty_content = False
    db.dirty_snapshotters.clear()
    return SweepReport(removed=tuple(removed), targets=targets)


def sweep_content_backend(db: DB) -> SweepReport:
    """Drop backend blobs and ingests no namespace references (``contentStore.garbageCollect``).

    A blob is kept if any namespace has a record for it or an ingest expecting it; a backend
    ingest is kept if any namespace's ingest record names its backend ref.  The first backend
    error stops the sweep and is reported.  Without a registered content backend this does
    nothing.  containerd holds the content store's lock exclusively while this runs.
    """
    backend = db.content_backend
    if backend is None:
        return SweepReport()
    content_seen: set[str] = set()
    ingest_seen: set[str] = set()
    for ns in _namespaces(db):
        content_seen.update(ns.content)
        for ingest in ns.ingests.values():
            if ingest.expected:
                content_seen.add(ingest.expected)
            if ingest.backend_ref:
                ingest_seen.add(ingest.backend_ref)
    blobs: list[str] = []
    ingests: list[str] = []
    try:
        for digest in backend.backend_digests():
            if digest not in content_seen:
                backend.backend_delete(digest)
                blobs.append(digest)
        for ref in backend.backend_ingests():
            if ref not in ingest_seen:
                backend.backend_abort(ref)
                ingests.append(ref)
    except ContainerdError as exc:
        return SweepReport(
            removed_blobs=tuple(blobs),
            aborted_ingests=tuple(ingests),
            errors=(f"content garbage collection failed: {exc}",),
        )
    return SweepReport(removed_blobs=tuple(blobs), aborted_ingests=tuple(ingests))


def _backend_children(tree: list[tuple[str, str]]) -> tuple[list[str], dict[str, list[str]]]:
    """``walkTree``: the walked roots and each key's children, in walk order."""
    roots: list[str] = []
    children: dict[str, list[str]] = {}
    for key, parent in tree:
        if parent:
            children.setdefault(parent, []).append(key)
        else:
            roots.append(key)
    return roots, children


def _post_order(roots: list[str], children: dict[str, list[str]]) -> list[str]:
    """Children before parents, depth first in walk order (``pruneBranch``, iteratively)."""
    out: list[str] = []
    stack: list[tuple[str, bool]] = [(key, False) for key in reversed(roots)]
    while stack:
        key, expanded = stack.pop()
        if expanded:
            out.append(key)
            continue
        stack.append((key, True))
        stack.extend((child, False) for child in reversed(children.get(key, ())))
    return out


def sweep_snapshot_backend(db: DB, snapshotter: str) -> SweepReport:
    """Remove backend snapshots no namespace references, children first (``garbageCollect``).

    Only snapshots reachable from a walked root (a backend snapshot without parent) are
    visited, as in containerd's ``walkTree``.  Every unreferenced snapshot is handed to the
    backend's Remove, children first (``pruneBranch``): the sweep itself does not check for
    children but relies on the backend refusing to remove a snapshot that still has one
    (``snapshots/storage`` ``Remove``: FailedPrecondition "cannot remove snapshot with
    child"), which it logs and skips (``kept_snapshots``).  Any other backend error stops the
    sweep and is reported.  Without a registered backend of that name this does nothing.
    containerd holds the metadata snapshotter's lock exclusively while this runs, so no
    Prepare, Commit or Remove of that snapshotter may be in progress.
    """
    backend = db.snapshot_backends.get(snapshotter)
    if backend is None:
        return SweepReport()
    seen: set[str] = set()
    for ns in _namespaces(db):
        for record in ns.snapshots.get(snapshotter, {}).values():
            if record.backend_key:
                seen.add(record.backend_key)
    roots, children = _backend_children(backend.backend_tree())
    removed: list[tuple[str, str]] = []
    kept: list[tuple[str, str]] = []
    for key in _post_order(roots, children):
        if key in seen:
            continue
        try:
            backend.backend_remove(key)
        except FailedPrecondition:
            # pruneBranch: IsFailedPrecondition -> log "failed to remove snapshot", go on.
            kept.append((snapshotter, key))
            continue
        except ContainerdError as exc:
            message = f"snapshot garbage collection failed ({snapshotter}): {exc}"
            return SweepReport(
                removed_snapshots=tuple(removed), kept_snapshots=tuple(kept), errors=(message,)
            )
        removed.append((snapshotter, key))
    return SweepReport(removed_snapshots=tuple(removed), kept_snapshots=tuple(kept))


def sweep_backends(db: DB, targets: BackendTargets) -> SweepReport:
    """Sweep the backends named in ``targets``: each snapshotter, then the content store.

    ``targets`` is ``sweep_metadata(...).targets``: the backends that were dirty when the
    metadata sweep ran.  A backend dirtied after that waits for the next collection, as in
    containerd.

    Raises:
        TypeError: ``targets`` is not a :class:`BackendTargets`.
    """
    if not isinstance(targets, BackendTargets):
        raise TypeError(
            "sweep_backends needs the BackendTargets of a metadata sweep "
            f"(sweep_metadata(db, marked).targets), got {type(targets).__name__}"
        )
    report = SweepReport()
    for snapshotter in targets.snapshotters:
        report = report.merged(sweep_snapshot_backend(db, snapshotter))
    if targets.content:
        report = report.merged(sweep_content_backend(db))
    return report


@dataclass(frozen=True)
class Collection:
    """One whole collection: the mark, the metadata sweep, the backend sweep."""

    marked: Marked
    metadata: SweepReport
    backends: SweepReport


def collect(db: DB) -> Collection:
    """``DB.GarbageCollect``: :func:`mark`, :func:`sweep_metadata`, :func:`sweep_backends`."""
    marked = mark(db)
    metadata = sweep_metadata(db, marked)
    backends = sweep_backends(db, metadata.targets)
    return Collection(marked=marked, metadata=metadata, backends=backends)
