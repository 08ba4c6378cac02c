"""Timed, traced, fault-checked proxies of the model stores.

A client of containerd reaches every store through gRPC: each call takes time, may find the
caller's context cancelled, and can meet a fault.  The proxies here give each model store
method that shape: a generator, called with ``yield from``, with ``ctx`` first and the same
names and keyword arguments as the model method::

    info = yield from world.content.info(ctx, digest)
    mounts = yield from world.snapshotter("native").prepare(ctx, key, parent, labels=labels)

Every call goes through :meth:`unpacksim.sim.services.Services.call` (trace, latency,
scheduling point, cancellation, fault site, the atomic model operation).  What containerd
does not do atomically keeps its gaps:

- Prepare and View (``metadata/snapshot.go`` ``createSnapshot``) run ``create_begin`` (a
  transaction), a scheduling point, ``create_backend``, a scheduling point, ``create_finish``
  (a transaction), all under the snapshotter's read lock ``s.l``;
- content writers open (taking the ref lock), write, and commit in separate calls.

Locks, as ``metadata/db.go``, ``metadata/snapshot.go`` and ``metadata/content.go`` take them:
every metadata write holds ``DB.wlock`` shared for its transaction (``write=True``; the GC
holds it exclusively for mark and metadata sweep), reads take nothing.  Snapshot Prepare, View,
Commit, Remove and Update also hold their snapshotter's ``s.l`` shared for the whole call, and
content Update, Delete, Abort and Writer hold the content store's ``cs.l`` shared; the GC's
backend sweeps take those exclusively.  Writer commits take only ``wlock``, as in containerd.

Fault sites consulted here (``unpacksim.sim.faults``): ``content.ref_locked`` when a writer
opens (key: the ref; only when the blob is not already in the namespace, since containerd
answers AlreadyExists before it locks), ``snapshots.prepare.exists`` when a Prepare carries a
target ``containerd.io/snapshot.ref`` (key: the target), ``snapshots.commit.exists`` at Commit
(key: the name).  ``ctx.cancel`` and hooked effect sites (``gc.run``) fire at every call and gap.
"""

from unpacksim.sim.proxies.base import SyncCollector
from unpacksim.sim.proxies.content import ContentProxy, WriterProxy
from unpacksim.sim.proxies.metadata import ImagesProxy, LeasesProxy
from unpacksim.sim.proxies.snapshots import SnapshotterProxy

__all__ = [
    "ContentProxy",
    "ImagesProxy",
    "LeasesProxy",
    "SnapshotterProxy",
    "SyncCollector",
    "WriterProxy",
]
