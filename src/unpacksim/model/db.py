"""The metadata database: every record the stores keep, per namespace (``metadata/db.go``).

containerd keeps content, snapshot, lease, image and container records per namespace in one
bolt database over two kinds of backends: one content store (blobs and ingests, shared by all
namespaces) and one backend per snapshotter.  This module holds those records as plain data so
that the stores, the garbage collector, the graph builder and the readback of a real daemon
share one shape.  The stores (``content``, ``snapshots``, ``leases``, ``images``) own the
operations; nothing here enforces a contract.

Iteration order is insertion order everywhere (dicts); code that makes a decision from a set of
keys sorts them first.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from unpacksim.model.clock import Clock, ManualClock
from unpacksim.model.oci import Descriptor

__all__ = [
    "DB",
    "BlobRecord",
    "ContainerRecord",
    "ContentBackend",
    "ImageRecord",
    "IngestRecord",
    "Kind",
    "LeaseRecord",
    "NamespaceRecord",
    "Resource",
    "SnapshotBackend",
    "SnapshotRecord",
]


class Kind(enum.Enum):
    """``snapshots.Kind``; the value is containerd's filter word."""

    ACTIVE = "active"
    VIEW = "view"
    COMMITTED = "committed"


@dataclass
class BlobRecord:
    """A content blob's metadata in one namespace (``bucketKeyObjectBlob``)."""

    digest: str
    size: int
    labels: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass
class IngestRecord:
    """An open or resumable ingest in one namespace (``bucketKeyObjectIngests``).

    ``expected`` is the digest the ingest shares with existing backend content, if any.
    ``expire_at`` is set for ingests created without a lease (now + 24h at the seed).
    ``backend_ref`` is the ref the content backend knows it by.
    """

    ref: str
    backend_ref: str
    expected: str = ""
    expire_at: float | None = None


@dataclass
class SnapshotRecord:
    """A snapshot's metadata in one namespace and snapshotter (``metadata/snapshot.go``).

    ``name`` is the key for an active or view snapshot and the name for a committed one;
    ``parent`` is the parent's name in the same namespace ("" for none); ``backend_key`` is
    the key the backend knows it by (``<ns>/<seq>/<name>``).
    """

    name: str
    kind: Kind
    parent: str
    backend_key: str
    labels: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0
    children: dict[str, None] = field(default_factory=dict)


#: A lease resource: (type, id).  Types are ``content``, ``ingests`` and
#: ``snapshots/<snapshotter>`` (``leases.Resource``).
Resource = tuple[str, str]


@dataclass
class LeaseRecord:
    """A lease and the resources it holds (``metadata/leases.go``)."""

    id: str
    created_at: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)
    resources: dict[Resource, None] = field(default_factory=dict)


@dataclass
class ImageRecord:
    """An image record (``images.Image``)."""

    name: str
    target: Descriptor
    labels: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass
class ContainerRecord:
    """A container record; only what GC reads (``containers.Container``)."""

    id: str
    snapshotter: str = ""
    snapshot_key: str = ""
    image: str = ""
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class NamespaceRecord:
    """Everything one namespace holds."""

    name: str
    content: dict[str, BlobRecord] = field(default_factory=dict)
    ingests: dict[str, IngestRecord] = field(default_factory=dict)
    snapshots: dict[str, dict[str, SnapshotRecord]] = field(default_factory=dict)
    leases: dict[str, LeaseRecord] = field(default_factory=dict)
    images: dict[str, ImageRecord] = field(default_factory=dict)
    containers: dict[str, ContainerRecord] = field(default_factory=dict)
    #: The last sequence number each snapshotter's bucket handed out.  ``metadata/snapshot.go``
    #: calls ``NextSequence`` on the bucket ``v1/<ns>/snapshots/<snapshotter>``, so backend
    #: keys ``<ns>/<seq>/<key>`` are numbered per namespace and snapshotter.
    snapshot_sequences: dict[str, int] = field(default_factory=dict)

    def snapshotter(self, name: str) -> dict[str, SnapshotRecord]:
        """The records of snapshotter ``name`` in this namespace (created empty on first use)."""
        return self.snapshots.setdefault(name, {})

    def next_snapshot_sequence(self, snapshotter: str) -> int:
        """Bolt's ``NextSequence`` on this namespace's bucket of ``snapshotter``.

        Call it only when the transaction that uses the number commits: a rolled-back bolt
        transaction does not use up a number.
        """
        seq = self.snapshot_sequences.get(snapshotter, 0) + 1
        self.snapshot_sequences[snapshotter] = seq
        return seq


MutationListener = Callable[[bool], None]


class ContentBackend(Protocol):
    """What the GC's backend sweep needs from the content backend (``content/local``).

    The backend is shared by all namespaces; the sweep deletes whatever no namespace's
    metadata references (``metadata/content.go`` ``garbageCollect``).
    """

    def backend_digests(self) -> list[str]:
        """Every blob digest the backend holds, in a deterministic order."""
        ...

    def backend_delete(self, digest: str) -> None:
        """Delete a blob from the backend (no error if absent)."""
        ...

    def backend_ingests(self) -> list[str]:
        """Every backend ingest ref, in a deterministic order."""
        ...

    def backend_abort(self, backend_ref: str) -> None:
        """Drop a backend ingest (no error if absent)."""
        ...


class SnapshotBackend(Protocol):
    """What the GC's backend sweep needs from a snapshotter backend.

    ``metadata/snapshot.go`` ``garbageCollect``: walk the backend, remove every snapshot no
    namespace's metadata references, children before parents.
    """

    def backend_tree(self) -> list[tuple[str, str]]:
        """Every backend snapshot as (backend key, parent backend key or ""), in the order
        the backend's Walk reports them (key order for ``snapshots/storage`` backends)."""
        ...

    def backend_remove(self, backend_key: str) -> None:
        """Remove one backend snapshot.

        The sweep also calls this for an unreferenced snapshot whose child stays: a backend
        refuses that with FailedPrecondition ("cannot remove snapshot with child", as
        ``snapshots/storage`` ``Remove`` does), and the sweep keeps the snapshot.
        """
        ...


class DB:
    """The metadata database: namespaces, the dirty state GC reads, mutation callbacks.

    ``dirty`` counts deletions since the last collection (content Delete, snapshot Remove,
    lease Delete and DeleteResource, image Delete; ``metadata/db.go``); the GC's metadata
    sweep resets it.  ``dirty_content`` and ``dirty_snapshotters`` name the backends the next
    backend sweep must visit.  Every successful write transaction ends with
    ``mutated(db.dirty > 0)``: the flag says whether any deletion happened since the last
    collection (this write's own, if it deleted, or an earlier one), not whether this write
    was a deletion.  ``metadata/db.go`` ``DB.Update`` reads ``m.dirty`` after the
    transaction commits and passes ``dirty > 0`` to every mutation callback.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock: Clock = clock if clock is not None else ManualClock()
        self.namespaces: dict[str, NamespaceRecord] = {}
        self.dirty = 0
        self.dirty_content = False
        self.dirty_snapshotters: dict[str, None] = {}
        self.listeners: list[MutationListener] = []
        # Registered by the stores when they are built over this DB.
        self.content_backend: ContentBackend | None = None
        self.snapshot_backends: dict[str, SnapshotBackend] = {}
        self._seq = 0

    def namespace(self, name: str) -> NamespaceRecord:
        """The record of namespace ``name``, created empty on first use.

        For writes that commit: bolt creates a namespace's buckets only then.
        """
        ns = self.namespaces.get(name)
        if ns is None:
            ns = self.namespaces[name] = NamespaceRecord(name)
        return ns

    def namespace_view(self, name: str) -> NamespaceRecord:
        """The record of namespace ``name`` for reading: the stored one, or an empty one that
        is not stored.  A read, or a write refused before it writes, creates no namespace
        (bolt's ``View``, or a rolled-back ``Update``)."""
        ns = self.namespaces.get(name)
        return ns if ns is not None else NamespaceRecord(name)

    def next_seq(self) -> int:
        """A fresh, increasing DB-wide number.

        Not bolt's numbering of snapshot keys: that is per namespace and snapshotter
        (:meth:`NamespaceRecord.next_snapshot_sequence`).
        """
        self._seq += 1
        return self._seq

    def now(self) -> float:
        return self.clock.now()

    def mark_dirty_content(self) -> None:
        self.dirty += 1
        self.dirty_content = True

    def mark_dirty_snapshotter(self, snapshotter: str) -> None:
        self.dirty += 1
        self.dirty_snapshotters[snapshotter] = None

    def mark_dirty(self) -> None:
        """A deletion that frees no backend object by itself (lease Delete, lease
        DeleteResource, image Delete)."""
        self.dirty += 1

    def mutated(self, dirty: bool) -> None:
        """Tell the listeners that a metadata write transaction committed.

        ``dirty`` must be ``self.dirty > 0`` read after the write (so after any
        ``mark_dirty*`` it made): whether a deletion happened since the last collection.
        ``metadata/db.go`` ``DB.Update`` passes exactly that to its mutation callbacks; the
        GC scheduler counts each such event as a deletion.
        """
        for listener in list(self.listeners):
            listener(dirty)
