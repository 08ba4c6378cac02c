"""Leases: ``leases/lease.go`` and ``metadata/leases.go`` at the seed.

A lease holds resources (``content``, ``ingests``, ``snapshots/<snapshotter>``) so the garbage
collector keeps them while the lease lives.  Writes made under a lease add their objects to
it implicitly (:mod:`unpacksim.model.leasing`); :class:`LeaseManager` adds and removes them
explicitly.

``leases.SynchronousDelete`` is not an option here: the lease service runs a garbage
collection after the delete when it is given, so the caller models it by running the GC
(``unpacksim.model.gc``, or the simulator's GC process) right after :meth:`LeaseManager.delete`.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from dataclasses import dataclass, field

from unpacksim.model.clock import Clock, format_rfc3339
from unpacksim.model.context import ModelContext, namespace_of
from unpacksim.model.db import DB, LeaseRecord, NamespaceRecord, Resource
from unpacksim.model.digest import go_digest_error
from unpacksim.model.errdefs import (
    AlreadyExists,
    InvalidArgument,
    NotFound,
    NotImplementedYet,
    Unknown,
)
from unpacksim.model.filters import check_map, go_quote, parse_filters
from unpacksim.model.labels import GC_EXPIRE, GC_FLAT

__all__ = [
    "Lease",
    "LeaseManager",
    "Resource",
    "expiration_labels",
    "flat_labels",
    "validate_resource",
]


@dataclass(frozen=True)
class Lease:
    """``leases.Lease``."""

    id: str
    created_at: float = 0.0
    labels: dict[str, str] = field(default_factory=dict)


def expiration_labels(clock: Clock, seconds: float) -> dict[str, str]:
    """``leases.WithExpiration(d)``: ``containerd.io/gc.expire`` = now + ``seconds``, RFC3339."""
    return {GC_EXPIRE: format_rfc3339(clock.now() + seconds)}


def flat_labels(value: str = "true") -> dict[str, str]:
    """The label that makes a lease flat (``containerd.io/gc.flat``, any non-empty value).

    A flat lease's content and snapshots are roots that do not keep what they reference.
    """
    if not value:
        raise ValueError("a flat lease needs a non-empty containerd.io/gc.flat value")
    return {GC_FLAT: value}


def validate_resource(resource: Resource) -> Resource:
    """``parseLeaseResource``: check a (type, id) resource; return it.

    Raises:
        InvalidArgument: a malformed type ("invalid resource type <t>", "invalid snapshot
            resource type <t>") or a content id that is not a digest ("invalid content
            resource id <id>: <go-digest error>").
        NotImplementedYet: any other type ("resource type <t> not supported yet").
    """
    typ, ref = resource
    keys = typ.split("/")
    if keys[0] in ("content", "ingests"):
        if len(keys) != 1:
            raise InvalidArgument(f"invalid resource type {typ}")
        error = go_digest_error(ref) if keys[0] == "content" else None
        if error is not None:
            raise InvalidArgument(f"invalid content resource id {ref}: {error}")
    elif keys[0] == "snapshots":
        if len(keys) != 2:
            raise InvalidArgument(f"invalid snapshot resource type {typ}")
    else:
        raise NotImplementedYet(f"resource type {typ} not supported yet")
    return resource


def _resource_order(resource: Resource) -> tuple[int, str, str]:
    # bolt's order in ListResources: content, then ingests, then each snapshotter, by key.
    typ, ref = resource
    rank = {"content": 0, "ingests": 1}.get(typ, 2)
    return rank, typ, ref


def _adapt_lease(lease: Lease) -> Callable[[tuple[str, ...]], tuple[str, bool]]:
    # metadata/adaptors.go adaptLease: "id" and "labels.<key>".
    def field_of(path: tuple[str, ...]) -> tuple[str, bool]:
        if path[0] == "id":
            return lease.id, bool(lease.id)
        if path[0] == "labels":
            return check_map(path[1:], lease.labels)
        return "", False

    return field_of


def _lease(record: LeaseRecord) -> Lease:
    return Lease(record.id, record.created_at, dict(record.labels))


class LeaseManager:
    """``metadata/leases.go`` ``LeaseManager`` over ``db``."""

    def __init__(self, db: DB) -> None:
        self.db = db

    def _ns(self, ctx: ModelContext) -> NamespaceRecord:
        # Not created here: only a write that commits creates the namespace's buckets.
        return self.db.namespace_view(namespace_of(ctx))

    def _record(self, ns: NamespaceRecord, lease_id: str) -> LeaseRecord:
        record = ns.leases.get(lease_id)
        if record is None:
            raise NotFound(f"lease {go_quote(lease_id)}")
        return record

    def _committed(self) -> None:
        self.db.mutated(self.db.dirty > 0)

    def create(self, ctx: ModelContext, *, id: str, labels: dict[str, str] | None = None) -> Lease:
        """Create the lease ``id`` with ``labels`` (empty values are dropped, as bolt does).

        Raises:
            Unknown: ``id`` is empty ("lease id must be provided": a plain Go error).
            FailedPrecondition: no namespace in ``ctx``.
            AlreadyExists: the namespace has a lease ``id`` ('lease "<id>"').
        """
        if not id:
            raise Unknown("lease id must be provided")
        ns = self._ns(ctx)
        if id in ns.leases:
            raise AlreadyExists(f"lease {go_quote(id)}")
        kept = {k: v for k, v in sorted((labels or {}).items()) if v}
        ns = self.db.namespace(ns.name)
        record = ns.leases[id] = LeaseRecord(id, self.db.now(), kept)
        self._committed()
        return _lease(record)

    def delete(self, ctx: ModelContext, id: str) -> None:
        """Delete the lease record and mark the DB dirty; its resources are left to GC.

        ``leases.SynchronousDelete`` is the caller running a collection right after this.

        Raises:
            FailedPrecondition: no namespace in ``ctx``.
            NotFound: no such lease ('lease "<id>"').
        """
        ns = self._ns(ctx)
        self._record(ns, id)
        del ns.leases[id]
        self.db.mark_dirty()
        self._committed()

    def list(self, ctx: ModelContext, *filters: str) -> list[Lease]:
        """The namespace's leases that match ``filters`` (fields ``id``, ``labels.<key>``), by id.

        Raises:
            FailedPrecondition: no namespace in ``ctx``.
            InvalidArgument: a filter does not parse (Go wraps the parse error in
                InvalidArgument once more, so the message ends "invalid argument" twice).
        """
        ns = self._ns(ctx)
        try:
            flt = parse_filters(*filters)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{exc}: invalid argument") from None
        leases = [_lease(ns.leases[k]) for k in sorted(ns.leases)]
        return [lease for lease in leases if flt.match(_adapt_lease(lease))]

    def add_resource(self, ctx: ModelContext, id: str, resource: Resource) -> None:
        """Add ``resource`` (type, id) to the lease ``id``; adding it twice is fine.

        Raises:
            FailedPrecondition: no namespace in ``ctx``.
            NotFound: no such lease ('lease "<id>"').
            InvalidArgument, NotImplementedYet: as :func:`validate_resource`.
            Unknown: bolt refuses an empty name: "bucket name required" for
                ``snapshots/`` with no snapshotter, "key required" for an empty id.
        """
        record = self._record(self._ns(ctx), id)
        typ, ref = validate_resource(resource)
        # metadata/leases.go AddResource creates a bucket per type part, then puts the id:
        # bolt's CreateBucketIfNotExists("") and Put("") fail (ErrBucketNameRequired,
        # ErrKeyRequired), plain errors that reach callers as Unknown.
        if "" in typ.split("/")[1:]:
            raise Unknown("bucket name required")
        if not ref:
            raise Unknown("key required")
        record.resources[(typ, ref)] = None
        self._committed()

    def delete_resource(self, ctx: ModelContext, id: str, resource: Resource) -> None:
        """Remove ``resource`` from the lease ``id`` (absent is fine); marks the DB dirty.

        Raises:
            FailedPrecondition: no namespace in ``ctx``.
            NotFound: no such lease ('lease "<id>"').
            InvalidArgument, NotImplementedYet: as :func:`validate_resource`.
        """
        record = self._record(self._ns(ctx), id)
        record.resources.pop(validate_resource(resource), None)
        self.db.mark_dirty()
        self._committed()

    def list_resources(self, ctx: ModelContext, id: str) -> builtins.list[Resource]:
        """The lease's resources: content, then ingests, then snapshots, each by key.

        Raises:
            FailedPrecondition: no namespace in ``ctx``.
            NotFound: no such lease ('lease "<id>"').
        """
        record = self._record(self._ns(ctx), id)
        return sorted(record.resources, key=_resource_order)
