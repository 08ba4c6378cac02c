"""Implicit leasing: what every metadata write does when the context carries a lease.

``metadata/leases.go`` (``addContentLease``, ``addSnapshotLease``, ``addIngestLease`` and their
``remove*`` twins): if the context names a lease, the written object becomes one of that lease's
resources; if the lease no longer exists the write fails with NotFound "lease does not exist".
Without a lease in the context nothing happens.
"""

from __future__ import annotations

from unpacksim.model.context import ModelContext
from unpacksim.model.db import DB, Resource
from unpacksim.model.errdefs import NotFound

__all__ = ["lease_resource", "snapshot_resource", "unlease_resource"]


def snapshot_resource(snapshotter: str, key: str) -> Resource:
    """The lease resource of snapshot ``key`` in ``snapshotter`` (``snapshots/<sn>``)."""
    return (f"snapshots/{snapshotter}", key)


def lease_resource(db: DB, ctx: ModelContext, resource: Resource) -> bool:
    """Add ``resource`` to the context's lease; False if the context has no lease.

    Raises:
        NotFound: the context's lease does not exist ("lease does not exist").
    """
    if not ctx.lease:
        return False
    lease = db.namespace_view(ctx.namespace).leases.get(ctx.lease)
    if lease is None:
        raise NotFound("lease does not exist")
    lease.resources[resource] = None
    return True


def unlease_resource(db: DB, ctx: ModelContext, resource: Resource) -> bool:
    """Remove ``resource`` from the context's lease; False if there is nothing to remove.

    containerd's ``remove*Lease`` ignores a missing lease bucket, so this never raises.
    """
    if not ctx.lease:
        return False
    lease = db.namespace_view(ctx.namespace).leases.get(ctx.lease)
    if lease is None:
        return False
    return lease.resources.pop(resource, False) is None
