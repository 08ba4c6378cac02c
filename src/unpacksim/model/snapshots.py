"""The metadata snapshotter: namespaced snapshot records over a backend (``metadata/snapshot.go``).

:class:`MetadataSnapshotter` mirrors containerd's metadata snapshotter at the seed commit.  Each
namespace has its own records (``db.namespace(ns).snapshotter(name)``) naming backend snapshots
``<ns>/<seq>/<key>``.  One method call is one bolt transaction, except Prepare and View, which
containerd does in three steps that are not atomic together; they are exposed as
:meth:`~MetadataSnapshotter.create_begin`, :meth:`~MetadataSnapshotter.create_backend` and
:meth:`~MetadataSnapshotter.create_finish` so a simulator can run other work in the gaps.
Remove deletes only the record: the backend snapshot stays until the GC's backend sweep.

containerd holds the snapshotter's read lock (``s.l``) from the first create step to the last,
and over Commit, Remove and Update; the GC's backend sweep takes it exclusively.  A simulator
interleaving the steps must model that lock, or a sweep in the gap would remove the backend
snapshot that create_finish is about to record.

Backend keys are ``<ns>/<seq>/<key>`` with ``seq`` from bolt's ``NextSequence`` on the bucket
``v1/<ns>/snapshots/<snapshotter>``: one counter per namespace and snapshotter
(:meth:`~unpacksim.model.db.NamespaceRecord.next_snapshot_sequence`).  Create's first
transaction takes a number when it commits (even if the backend call then fails); Commit takes
one only if its whole transaction, backend commit included, commits.

Era flag ``lease_on_exists`` models containerd #10187 (``c7fb8a925``): every AlreadyExists from
Prepare/View (target or key) and from Commit first adds the existing snapshot to the context's
lease, and that transaction commits.

The backend types and :class:`MemorySnapshotter` are re-exported here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from unpacksim.model.context import ModelContext, namespace_of
from unpacksim.model.db import DB, Kind, SnapshotBackend, SnapshotRecord
from unpacksim.model.errdefs import (
    AlreadyExists,
    ContainerdError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unknown,
    wrap,
)
from unpacksim.model.filters import parse_filters
from unpacksim.model.labels import SNAPSHOT_REF, filter_inherited_labels
from unpacksim.model.leasing import lease_resource, snapshot_resource, unlease_resource
from unpacksim.model.snapshot_api import (
    Info,
    Mount,
    Snapshotter,
    Usage,
    WalkFunc,
    adapt_snapshot,
    go_quote,
    update_labels,
    validate_labels,
    write_labels,
)
from unpacksim.model.snapshot_backend import MemorySnapshotter

__all__ = [
    "BackendSnapshotter",
    "Info",
    "Kind",
    "MemorySnapshotter",
    "MetadataSnapshotter",
    "Mount",
    "PendingCreate",
    "Snapshotter",
    "Usage",
    "WalkFunc",
]

# metadata/snapshot.go Walk reads records in batches of this size between callbacks.
_WALK_BATCH = 100


class BackendSnapshotter(Snapshotter, SnapshotBackend, Protocol):
    """A backend the metadata layer can use: a Snapshotter the GC can sweep."""


@dataclass
class PendingCreate:
    """One Prepare or View between its three steps (``createSnapshot``).

    ``create_begin`` fills the request and the backend key and parent; ``create_backend`` the
    mounts, ``created`` (the backend key this call created, "" if none), the timestamps and, on
    the remote path, the adopted target (``key`` becomes the target, ``error`` the
    AlreadyExists to report after the record is written).
    """

    namespace: str
    key: str
    parent: str
    readonly: bool
    labels: dict[str, str]
    target: str
    backend_key: str
    backend_parent: str
    kind: Kind = Kind.ACTIVE
    mounts: list[Mount] = field(default_factory=list)
    created: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    error: ContainerdError | None = None
    stage: str = "begun"


class MetadataSnapshotter:
    """containerd's metadata snapshotter named ``name`` over ``backend`` (see the module doc).

    Building one registers the backend in ``db.snapshot_backends[name]`` for the GC sweep.
    """

    def __init__(
        self,
        db: DB,
        name: str,
        backend: BackendSnapshotter,
        *,
        lease_on_exists: bool = False,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"a snapshotter needs a non-empty name, got {name!r}")
        registered = db.snapshot_backends.get(name)
        if registered is not None and registered is not backend:
            raise ValueError(
                f"snapshotter {name!r} already has another backend in this DB; build every "
                "MetadataSnapshotter for one name over the same backend object"
            )
        self.db = db
        self.name = name
        self.backend = backend
        self.lease_on_exists = lease_on_exists
        db.snapshot_backends[name] = backend

    # -- Prepare / View, in containerd's three steps ---------------------------------------

    def prepare(
        self,
        ctx: ModelContext,
        key: str,
        parent: str = "",
        *,
        labels: Mapping[str, str] | None = None,
    ) -> list[Mount]:
        """Create active snapshot ``key``: the three create steps in order.

        Raises:
            FailedPrecondition: the context has no namespace.
            InvalidArgument: a label is too large; the backend refuses ``parent`` (not
                committed); or "mismatched parent".
            AlreadyExists: "target snapshot %q" (the target exists here, or the backend
                provided it: "... from snapshotter") or "snapshot %q" (``key`` exists).
            NotFound: "parent snapshot %v does not exist"; "lease does not exist";
                "target snapshot %q in backend".
            Unknown: the backend said AlreadyExists without a target; ``key`` is empty
                (bolt's "bucket name required", or "key required" under a lease).
        """
        pending = self.create_begin(ctx, key, parent, labels=labels)
        self.create_backend(ctx, pending)
        return self.create_finish(ctx, pending)

    def view(
        self,
        ctx: ModelContext,
        key: str,
        parent: str = "",
        *,
        labels: Mapping[str, str] | None = None,
    ) -> list[Mount]:
        """Create view ``key``: the three create steps in order.

        Raises:
            The same as :meth:`prepare`.
        """
        pending = self.create_begin(ctx, key, parent, labels=labels, readonly=True)
        self.create_backend(ctx, pending)
        return self.create_finish(ctx, pending)

    def create_begin(
        self,
        ctx: ModelContext,
        key: str,
        parent: str = "",
        *,
        labels: Mapping[str, str] | None = None,
        readonly: bool = False,
    ) -> PendingCreate:
        """Transaction 1 of ``createSnapshot``: check, then allocate the backend key.

        Raises:
            FailedPrecondition: the context has no namespace.
            InvalidArgument: a label is too large.
            AlreadyExists: "target snapshot %q" (a record named by the
                ``containerd.io/snapshot.ref`` label exists) or "snapshot %q" (``key`` exists).
            NotFound: "parent snapshot %v does not exist"; with ``lease_on_exists``, "lease
                does not exist" on the AlreadyExists paths.
        """
        if not isinstance(key, str) or not isinstance(parent, str):
            raise TypeError(f"snapshot keys are strings, got key={key!r} parent={parent!r}")
        ns = namespace_of(ctx)
        base = dict(labels or {})
        validate_labels(base)
        target = base.get(SNAPSHOT_REF, "")
        records = self._records(ns) or {}
        if target and target in records:
            self._exists(ctx, target, AlreadyExists(f"target snapshot {go_quote(target)}"))
        if key in records:
            self._exists(ctx, key, AlreadyExists(f"snapshot {go_quote(key)}"))
        backend_parent = ""
        if parent:
            backend_parent = self._parent(records, parent).backend_key
        namespace = self.db.namespace(ns)
        namespace.snapshotter(self.name)  # createSnapshotterBucket
        # metadata/snapshot.go createSnapshot: bkt.NextSequence() on this namespace's bucket.
        backend_key = f"{ns}/{namespace.next_snapshot_sequence(self.name)}/{key}"
        self._committed()
        kind = Kind.VIEW if readonly else Kind.ACTIVE
        return PendingCreate(
            ns, key, parent, readonly, base, target, backend_key, backend_parent, kind
        )

    def create_backend(self, ctx: ModelContext, pending: PendingCreate) -> None:
        """The backend Prepare or View between the two transactions (no lock on the DB).

        Only inherited labels reach the backend.  A backend AlreadyExists with a target is the
        remote-snapshotter path: find the backend's committed snapshot with that ref and parent
        and adopt it (:meth:`create_finish` then reports AlreadyExists "target snapshot %q from
        snapshotter").

        Raises:
            NotFound: "target snapshot %q in backend"; any backend NotFound.
            Unknown: "unexpected error from snapshotter" (backend AlreadyExists, no target).
            ContainerdError: any other backend error, as the backend raised it.
        """
        self._advance(pending, "begun", "create_backend", "create_begin")
        create = self.backend.view if pending.readonly else self.backend.prepare
        inherited = filter_inherited_labels(pending.labels)
        try:
            pending.mounts = create(
                ctx, pending.backend_key, pending.backend_parent, labels=inherited
            )
        except AlreadyExists as exc:
            if not pending.target:
                # The key is new by construction: not the caller's AlreadyExists to handle.
                raise Unknown(f"unexpected error from snapshotter: {exc}") from exc
            self._adopt(ctx, pending)
        else:
            pending.created_at = pending.updated_at = self.db.now()
            pending.created = pending.backend_key
        pending.stage = "backend"

    def create_finish(self, ctx: ModelContext, pending: PendingCreate) -> list[Mount]:
        """Transaction 2 of ``createSnapshot``: lease, record, child link; clean up on failure.

        If this fails (or reports the adopted target) after the backend created a snapshot,
        that backend snapshot is removed again.

        Raises:
            NotFound: "lease does not exist"; "parent snapshot %v does not exist" (removed in
                the gap).
            InvalidArgument: "mismatched parent %s from target %s".
            AlreadyExists: "snapshot %q" (``key`` recorded in the gap) or the adopted target's
                "target snapshot %q from snapshotter".
            Unknown: ``key`` is empty: bolt's "key required" (under a lease) or "bucket name
                required"; the backend snapshot is removed again.
        """
        self._advance(pending, "backend", "create_finish", "create_backend")
        pending.stage = "done"
        try:
            self._record(ctx, pending)
        except ContainerdError as exc:
            pending.error = exc
        if pending.error is not None:
            if pending.created:
                self._cleanup(ctx, pending.created)
            raise pending.error
        return list(pending.mounts)

    # -- Commit / Remove -------------------------------------------------------------------

    def commit(
        self,
        ctx: ModelContext,
        name: str,
        key: str,
        *,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        """Commit ``key`` as ``name`` (one transaction; the backend commit runs inside it).

        Leases ``name``, moves the parent's child link, deletes the ``key`` record, unleases
        ``key``.  The committed record's labels are ``labels`` alone.

        Raises:
            FailedPrecondition: no namespace; the backend refuses (``key`` not active).
            InvalidArgument: a label is too large.
            AlreadyExists: "snapshot %q" (``name`` exists; leased first with
                ``lease_on_exists``).
            NotFound: "snapshot %v does not exist" (``key``); "lease does not exist"; "parent
                snapshot %v does not exist"; "can not find snapshotter %q".
            Unknown: ``name`` is empty ("bucket name required", as bolt says).
        """
        ns = namespace_of(ctx)
        validate_labels(labels)
        base = write_labels(labels)
        records = self._records(ns)
        if records is None:
            raise NotFound(f"can not find snapshotter {go_quote(self.name)}")
        if self.lease_on_exists:
            self._require_lease(ctx)
            _require_bolt_name(name, leased=bool(ctx.lease))
        _require_bolt_name(name, leased=False)  # bkt.CreateBucket(name)
        if name in records:
            self._exists(ctx, name, AlreadyExists(f"snapshot {go_quote(name)}"))
        self._require_lease(ctx)
        active = records.get(key)
        if active is None:
            raise NotFound(f"snapshot {key} does not exist")
        parent = self._parent(records, active.parent) if active.parent else None
        # NextSequence on this namespace's bucket: a backend error rolls it back too.
        namespace = self.db.namespace(ns)
        seq = namespace.snapshot_sequences.get(self.name, 0) + 1
        name_key = f"{ns}/{seq}/{name}"
        now = self.db.now()
        # Inside the transaction: a backend error rolls everything back.
        self.backend.commit(ctx, name_key, active.backend_key, labels=filter_inherited_labels(base))
        namespace.next_snapshot_sequence(self.name)
        records[name] = SnapshotRecord(
            name, Kind.COMMITTED, active.parent, name_key, base, now, now
        )
        del records[key]
        if parent is not None:
            parent.children.pop(key, None)
            parent.children[name] = None
        lease_resource(self.db, ctx, snapshot_resource(self.name, name))
        unlease_resource(self.db, ctx, snapshot_resource(self.name, key))
        self._committed()

    def remove(self, ctx: ModelContext, key: str) -> None:
        """Delete the record of ``key`` and unlease it; the backend snapshot stays for GC.

        Marks the snapshotter dirty so the next GC sweeps its backend.

        Raises:
            FailedPrecondition: no namespace; "cannot remove snapshot with child".
            NotFound: "snapshot %v does not exist"; "parent snapshot %v does not exist".
        """
        ns = namespace_of(ctx)
        records = self._records(ns) or {}
        record = self._record_of(records, key)
        if record.children:
            raise FailedPrecondition("cannot remove snapshot with child")
        if record.parent:
            self._parent(records, record.parent).children.pop(key, None)
        del records[key]
        unlease_resource(self.db, ctx, snapshot_resource(self.name, key))
        self.db.mark_dirty_snapshotter(self.name)
        self._committed()

    # -- reads and Update ------------------------------------------------------------------

    def stat(self, ctx: ModelContext, key: str) -> Info:
        """The record's info overlaid on the backend's (kind from the backend).

        Raises:
            FailedPrecondition: no namespace.
            NotFound: "snapshot %v does not exist"; the backend's NotFound if the backend
                snapshot is gone.
        """
        record = self._record_of(self._records(namespace_of(ctx)) or {}, key)
        backend_info = self.backend.stat(ctx, record.backend_key)
        return _overlay(backend_info, _local_info(record))

    def update(self, ctx: ModelContext, info: Info, *fieldpaths: str) -> Info:
        """Update labels (rules of ``update_labels``); the backend gets the inherited ones.

        Raises:
            FailedPrecondition: no namespace.
            InvalidArgument: ``info.name`` is empty; an immutable field path ("cannot update
                %q field on snapshot %q"); a label is too large.
            NotFound: "snapshot %v does not exist".
        """
        ns = namespace_of(ctx)
        if not info.name:
            # errors.Wrap(errdefs.ErrInvalidArgument, "") prints ": invalid argument".
            raise InvalidArgument(": invalid argument")
        record = self._record_of(self._records(ns) or {}, info.name)
        labels = update_labels(record.labels, info, fieldpaths, info.name)
        validate_labels(labels)
        labels = write_labels(labels)
        now = self.db.now()
        inner = Info(record.backend_key, labels=filter_inherited_labels(labels))
        # Inside the transaction: a backend error rolls the record back.
        backend_info = self.backend.update(ctx, inner, *fieldpaths)
        record.labels = labels
        record.updated_at = now
        self._committed()
        return _overlay(backend_info, _local_info(record))

    def usage(self, ctx: ModelContext, key: str) -> Usage:
        """The backend's usage of ``key``.

        Raises:
            FailedPrecondition: no namespace.
            NotFound: "snapshot %v does not exist"; the backend's NotFound.
        """
        return self.backend.usage(ctx, self._resolve(ctx, key))

    def mounts(self, ctx: ModelContext, key: str) -> list[Mount]:
        """The backend's mounts of ``key``.

        Raises:
            FailedPrecondition: no namespace; ``key`` is committed (from the backend).
            NotFound: "snapshot %v does not exist"; the backend's NotFound.
        """
        return self.backend.mounts(ctx, self._resolve(ctx, key))

    def walk(self, ctx: ModelContext, fn: WalkFunc, *filters: str) -> None:
        """Records in name order, in batches of 100, each overlaid on a backend Stat.

        A record whose backend snapshot is gone is skipped.  ``fn`` runs outside the read
        transaction, so it may call Stat (or anything else).

        Raises:
            FailedPrecondition: no namespace.
            InvalidArgument: a filter does not parse.
        """
        ns = namespace_of(ctx)
        matcher = parse_filters(*filters)
        last = ""
        while True:
            batch, last = self._walk_batch(ns, last)
            for backend_key, local in batch:
                try:
                    backend_info = self.backend.stat(ctx, backend_key)
                except NotFound:
                    continue
                info = _overlay(backend_info, local)
                if matcher.match(adapt_snapshot(info)):
                    fn(ctx, info)
            if not last:
                return

    def close(self) -> None:
        """Close the backend (not the DB)."""
        self.backend.close()

    # -- internals -------------------------------------------------------------------------

    def _records(self, ns: str) -> dict[str, SnapshotRecord] | None:
        """The records of this snapshotter in ``ns`` without creating anything."""
        namespace = self.db.namespaces.get(ns)
        return None if namespace is None else namespace.snapshots.get(self.name)

    def _record_of(self, records: dict[str, SnapshotRecord], key: str) -> SnapshotRecord:
        record = records.get(key)
        if record is None:
            raise NotFound(f"snapshot {key} does not exist")
        return record

    def _parent(self, records: dict[str, SnapshotRecord], parent: str) -> SnapshotRecord:
        record = records.get(parent)
        if record is None:
            raise NotFound(f"parent snapshot {parent} does not exist")
        return record

    def _resolve(self, ctx: ModelContext, key: str) -> str:
        """``resolveKey``: the backend key of ``key``."""
        return self._record_of(self._records(namespace_of(ctx)) or {}, key).backend_key

    def _committed(self) -> None:
        """A write transaction committed: ``DB.Update``'s mutation callback."""
        self.db.mutated(self.db.dirty > 0)

    def _require_lease(self, ctx: ModelContext) -> None:
        """``addSnapshotLease``'s failure, checked before anything is written."""
        if not ctx.lease:
            return
        namespace = self.db.namespaces.get(ctx.namespace)
        if namespace is None or ctx.lease not in namespace.leases:
            raise NotFound("lease does not exist")

    def _exists(self, ctx: ModelContext, key: str, error: AlreadyExists) -> None:
        """Raise ``error``; with ``lease_on_exists`` lease ``key`` first and commit (#10187)."""
        if self.lease_on_exists:
            lease_resource(self.db, ctx, snapshot_resource(self.name, key))
            self._committed()
        raise error

    def _advance(self, pending: PendingCreate, stage: str, step: str, before: str) -> None:
        if not isinstance(pending, PendingCreate):
            raise TypeError(f"{step}() takes the PendingCreate create_begin() returned")
        if pending.stage != stage:
            raise RuntimeError(
                f"{step}() called on a create that is at stage {pending.stage!r}: call "
                f"{before}() first, and each step once per create"
            )
        pending.stage = "failed"  # until the step succeeds

    def _adopt(self, ctx: ModelContext, pending: PendingCreate) -> None:
        """The remote path: adopt the backend's committed snapshot for the target."""
        target, parent = pending.target, pending.backend_parent
        found: list[Info] = []

        def pick(_: ModelContext, info: Info) -> None:
            # Re-check what the filter asked for: a backend may not respect it.
            if (
                not found
                and info.kind is Kind.COMMITTED
                and info.labels.get(SNAPSHOT_REF) == target
                and info.parent == parent
            ):
                found.append(info)

        query = f'labels."{SNAPSHOT_REF}"=={target},parent=={go_quote(parent)}'
        try:
            self.backend.walk(ctx, pick, query)
        except ContainerdError as exc:
            raise wrap(exc, "failed walking backend snapshots") from exc
        if not found:
            raise NotFound(f"target snapshot {go_quote(target)} in backend")
        adopted = found[0]
        pending.key = target
        pending.backend_key = adopted.name
        pending.backend_parent = adopted.parent
        pending.kind = adopted.kind
        pending.created_at, pending.updated_at = adopted.created, adopted.updated
        for label, value in adopted.labels.items():
            pending.labels.setdefault(label, value)
        pending.error = AlreadyExists(f"target snapshot {go_quote(target)} from snapshotter")

    def _record(self, ctx: ModelContext, pending: PendingCreate) -> None:
        """The body of transaction 2 (checks first, then every write)."""
        records = self._records(pending.namespace)
        if records is None:
            raise NotFound(f"can not find snapshotter {go_quote(self.name)}")
        self._require_lease(ctx)
        _require_bolt_name(pending.key, leased=bool(ctx.lease))
        resource = snapshot_resource(self.name, pending.key)
        if pending.key in records:
            # The bucket appeared in the gap: the lease is still added and the txn commits.
            lease_resource(self.db, ctx, resource)
            if pending.error is None:
                pending.error = AlreadyExists(f"snapshot {go_quote(pending.key)}")
            self._committed()
            return
        parent = None
        if pending.parent:
            parent = self._parent(records, pending.parent)
            if parent.backend_key != pending.backend_parent:
                raise InvalidArgument(
                    f"mismatched parent {pending.parent} from target {pending.target}"
                )
        lease_resource(self.db, ctx, resource)
        if parent is not None:
            parent.children[pending.key] = None
        records[pending.key] = SnapshotRecord(
            name=pending.key,
            kind=pending.kind,
            parent=pending.parent,
            backend_key=pending.backend_key,
            labels=write_labels(pending.labels),
            created_at=pending.created_at,
            updated_at=pending.updated_at,
        )
        self._committed()

    def _cleanup(self, ctx: ModelContext, backend_key: str) -> None:
        """Remove a backend snapshot nothing records; containerd only logs a failure."""
        with contextlib.suppress(ContainerdError):
            self.backend.remove(ctx, backend_key)

    def _walk_batch(self, ns: str, start: str) -> tuple[list[tuple[str, Info]], str]:
        """Up to 100 records from ``start`` (cursor Seek) and the key the next batch seeks."""
        records = self._records(ns) or {}
        names = [n for n in sorted(records) if n >= start]
        batch = [(records[n].backend_key, _local_info(records[n])) for n in names[:_WALK_BATCH]]
        following = names[_WALK_BATCH] if len(names) > _WALK_BATCH else ""
        return batch, following


def _require_bolt_name(name: str, *, leased: bool) -> None:
    """Bolt's refusal of an empty name: the lease's ``Put`` ("key required") if ``leased``,
    else ``CreateBucket`` ("bucket name required"); plain errors, so Unknown to callers."""
    if not name:
        raise Unknown("key required" if leased else "bucket name required")


def _local_info(record: SnapshotRecord) -> Info:
    return Info(
        record.name,
        record.parent,
        record.kind,
        dict(record.labels),
        record.created_at,
        record.updated_at,
    )


def _overlay(info: Info, local: Info) -> Info:
    """``overlayInfo``: name, parent and times from the record; labels merged over the backend's."""
    return Info(
        local.name,
        local.parent,
        info.kind,
        {**info.labels, **local.labels},
        local.created,
        local.updated,
    )
