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

from __future__ import annotations

import builtins
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from unpacksim.model.content import ContentStore, ContentWriter, Info, Status, WalkFunc
from unpacksim.model.content_backend import BytesReaderAt
from unpacksim.model.images import Image, ImageStore
from unpacksim.model.labels import SNAPSHOT_REF
from unpacksim.model.leases import Lease, LeaseManager
from unpacksim.model.oci import Descriptor
from unpacksim.model.snapshot_api import Info as SnapshotInfo
from unpacksim.model.snapshot_api import Mount, Usage
from unpacksim.model.snapshot_api import WalkFunc as SnapshotWalkFunc
from unpacksim.model.snapshots import MetadataSnapshotter
from unpacksim.sim.context import Context, background
from unpacksim.sim.go import Gen, RWLock
from unpacksim.sim.services import Services

if TYPE_CHECKING:
    from unpacksim.model.db import Resource

__all__ = [
    "ContentProxy",
    "ImagesProxy",
    "LeasesProxy",
    "SnapshotterProxy",
    "SyncCollector",
    "WriterProxy",
]

T = TypeVar("T")


class SyncCollector(Protocol):
    """What a synchronous delete needs from the GC (``unpacksim.sim.gcproc.GCProcess``)."""

    def schedule_and_wait(self, ctx: Context) -> Gen[Any]:
        """Trigger a collection and wait until one ends (``ScheduleAndWait``)."""
        ...


class _Proxy:
    """The shared call shapes: a read, and a write that holds the write lock shared."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def _read(
        self,
        ctx: Context,
        op: str,
        fn: Callable[[], T],
        args: Mapping[str, object],
        **site: Any,
    ) -> Gen[T]:
        return self.services.call(ctx, op, fn, args=args, **site)

    def _write(
        self,
        ctx: Context,
        op: str,
        fn: Callable[[], T],
        args: Mapping[str, object],
        *,
        store_lock: RWLock | None = None,
        **site: Any,
    ) -> Gen[T]:
        """A metadata write; ``store_lock`` (``s.l`` / ``cs.l``) is held shared around it."""
        if store_lock is None:
            return self.services.call(ctx, op, fn, args=args, write=True, **site)

        def body() -> Gen[T]:
            yield from store_lock.rlock()
            try:
                return (yield from self.services.atomic(fn, write=True))
            finally:
                store_lock.runlock()

        return self.services.call_steps(ctx, op, body, args=args, **site)


# --- content -----------------------------------------------------------------------------


class ContentProxy(_Proxy):
    """The content store as a client sees it (``content.Store`` over gRPC).

    ``lock`` is the content store's ``cs.l`` (shared here, exclusive in the GC's content
    sweep).
    """

    def __init__(self, services: Services, store: ContentStore, lock: RWLock) -> None:
        super().__init__(services)
        self.store = store
        self.lock = lock

    def info(self, ctx: Context, digest: str) -> Gen[Info]:
        """``Info``.

        Raises:
            NotFound, InvalidArgument, FailedPrecondition: as ``ContentStore.info``.
            Canceled, DeadlineExceeded: ``ctx`` was done.
        """
        return self._read(
            ctx, "content.info", lambda: self.store.info(ctx, digest), {"digest": digest}
        )

    def update(self, ctx: Context, info: Info, *fieldpaths: str) -> Gen[Info]:
        """``Update`` (holds ``cs.l`` shared).

        Raises:
            NotFound, InvalidArgument, FailedPrecondition: as ``ContentStore.update``.
            Canceled, DeadlineExceeded: ``ctx`` was done.
        """
        args = {"digest": info.digest, "fieldpaths": list(fieldpaths), "labels": info.labels}
        return self._write(
            ctx,
            "content.update",
            lambda: self.store.update(ctx, info, *fieldpaths),
            args,
            store_lock=self.lock,
        )

    def walk(self, ctx: Context, fn: WalkFunc, *filters: str) -> Gen[None]:
        """``Walk`` (``fn`` runs inside the one simulated call).

        Raises:
            InvalidArgument, FailedPrecondition: as ``ContentStore.walk``.
        """
        return self._read(
            ctx, "content.walk", lambda: self.store.walk(ctx, fn, *filters), {"filters": filters}
        )

    def delete(self, ctx: Context, digest: str) -> Gen[None]:
        """``Delete`` (holds ``cs.l`` shared).

        Raises:
            NotFound, InvalidArgument, FailedPrecondition: as ``ContentStore.delete``.
        """
        return self._write(
            ctx,
            "content.delete",
            lambda: self.store.delete(ctx, digest),
            {"digest": digest},
            store_lock=self.lock,
        )

    def reader_at(self, ctx: Context, desc: Descriptor) -> Gen[BytesReaderAt]:
        """``ReaderAt``: the reader of an immutable blob (reads are then local).

        Raises:
            NotFound, FailedPrecondition: as ``ContentStore.reader_at``.
        """
        return self._read(
            ctx,
            "content.reader_at",
            lambda: self.store.reader_at(ctx, desc),
            {"digest": desc.digest},
        )

    def read_blob(self, ctx: Context, desc: Descriptor) -> Gen[bytes]:
        """``content.ReadBlob``: the whole blob in one call.

        Raises:
            NotFound, FailedPrecondition: as ``ContentStore.read_blob``.
        """
        return self._read(
            ctx, "content.read", lambda: self.store.read_blob(ctx, desc), {"digest": desc.digest}
        )

    def status(self, ctx: Context, ref: str) -> Gen[Status]:
        """``Status`` of ingest ``ref``.

        Raises:
            NotFound, FailedPrecondition: as ``ContentStore.status``.
        """
        return self._read(ctx, "content.status", lambda: self.store.status(ctx, ref), {"ref": ref})

    def list_statuses(self, ctx: Context, *filters: str) -> Gen[list[Status]]:
        """``ListStatuses``.

        Raises:
            InvalidArgument, FailedPrecondition: as ``ContentStore.list_statuses``.
        """
        return self._read(
            ctx,
            "content.list_statuses",
            lambda: self.store.list_statuses(ctx, *filters),
            {"filters": filters},
        )

    def abort(self, ctx: Context, ref: str) -> Gen[None]:
        """``Abort`` ingest ``ref`` (holds ``cs.l`` shared).

        Raises:
            NotFound, FailedPrecondition: as ``ContentStore.abort``.
        """
        return self._write(
            ctx,
            "content.abort",
            lambda: self.store.abort(ctx, ref),
            {"ref": ref},
            store_lock=self.lock,
        )

    def writer(
        self, ctx: Context, *, ref: str, desc: Descriptor | None = None, total: int = 0
    ) -> Gen[WriterProxy]:
        """``Writer``: open or resume ingest ``ref`` (holds ``cs.l`` shared while opening).

        Fault site ``content.ref_locked`` (key ``ref``) is consulted after the AlreadyExists
        check, where containerd tries the ref lock.

        Raises:
            InvalidArgument, FailedPrecondition, AlreadyExists, NotFound, Unavailable: as
                ``ContentStore.writer`` (Unavailable also when injected).
        """

        def open_writer() -> WriterProxy:
            self._check_ref_lock(ctx, ref, desc)
            model = self.store.writer(ctx, ref=ref, desc=desc, total=total)
            return WriterProxy(self.services, model, ref)

        args: dict[str, object] = {"ref": ref}
        if desc is not None:
            args.update(digest=desc.digest, size=desc.size)
        return self._write(ctx, "content.writer", open_writer, args, store_lock=self.lock)

    def _check_ref_lock(self, ctx: Context, ref: str, desc: Descriptor | None) -> None:
        if not ref or not ctx.namespace:
            return  # the model raises InvalidArgument / FailedPrecondition first
        ns = self.store.db.namespaces.get(ctx.namespace)
        if desc is not None and ns is not None and desc.digest in ns.content:
            return  # AlreadyExists comes before the lock
        self.services.env.faults.check("content.ref_locked", key=ref)


class WriterProxy(_Proxy):
    """An open content writer (``content.Writer`` over the gRPC write stream).

    The model writer does the work; each method is one simulated call.  :meth:`close` runs
    even on a cancelled context: a cancelled stream ends the server's handler, which closes
    the writer and releases the ref lock (``services/content/contentserver``).
    """

    def __init__(self, services: Services, writer: ContentWriter, ref: str) -> None:
        super().__init__(services)
        self.writer = writer
        self.ref = ref

    def write(self, ctx: Context, data: bytes) -> Gen[int]:
        """Append ``data``; returns the bytes written.

        Raises:
            Unavailable, Unknown: as ``ContentWriter.write``.
        """
        return self._read(
            ctx,
            "content.write",
            lambda: self.writer.write(data),
            {"ref": self.ref, "size": len(data)},
        )

    def status(self, ctx: Context) -> Gen[Status]:
        """The ingest's progress."""
        return self._read(ctx, "content.writer_status", self.writer.status, {"ref": self.ref})

    def digest(self, ctx: Context) -> Gen[str]:
        """The digest of what was written so far."""
        return self._read(ctx, "content.writer_digest", self.writer.digest, {"ref": self.ref})

    def truncate(self, ctx: Context, size: int) -> Gen[None]:
        """Restart the ingest at ``size``.

        Raises:
            Unknown, Unavailable: as ``ContentWriter.truncate``.
        """
        return self._read(
            ctx,
            "content.truncate",
            lambda: self.writer.truncate(size),
            {"ref": self.ref, "size": size},
        )

    def commit(
        self, ctx: Context, size: int, expected: str, *, labels: dict[str, str] | None = None
    ) -> Gen[None]:
        """Commit the ingest (a metadata write: ``wlock`` shared, no ``cs.l``).

        Raises:
            FailedPrecondition, AlreadyExists, NotFound, Unknown: as ``ContentWriter.commit``.
        """
        args = {"ref": self.ref, "size": size, "expected": expected}
        return self._write(
            ctx,
            "content.commit",
            lambda: self.writer.commit(ctx, size, expected, labels=labels),
            args,
        )

    def close(self, ctx: Context) -> Gen[None]:
        """Close the writer: release the ref lock, keep the ingest resumable.

        Never fails for a done ``ctx`` (see the class docstring).
        """
        quiet = background(ctx.env, ctx.namespace).with_lease(ctx.lease)
        return self._read(quiet, "content.close", self.writer.close, {"ref": self.ref})


# --- snapshots ---------------------------------------------------------------------------


class SnapshotterProxy(_Proxy):
    """A metadata snapshotter as a client sees it; ``lock`` is its ``s.l``."""

    def __init__(self, services: Services, store: MetadataSnapshotter, lock: RWLock) -> None:
        super().__init__(services)
        self.store = store
        self.lock = lock

    @property
    def name(self) -> str:
        """The snapshotter's name (``native``, ...)."""
        return self.store.name

    def _args(self, **args: object) -> dict[str, object]:
        return {"snapshotter": self.store.name, **args}

    def stat(self, ctx: Context, key: str) -> Gen[SnapshotInfo]:
        """``Stat``.

        Raises:
            NotFound, FailedPrecondition: as ``MetadataSnapshotter.stat``.
        """
        return self._read(
            ctx, "snapshots.stat", lambda: self.store.stat(ctx, key), self._args(key=key)
        )

    def update(self, ctx: Context, info: SnapshotInfo, *fieldpaths: str) -> Gen[SnapshotInfo]:
        """``Update`` (holds ``s.l`` shared).

        Raises:
            NotFound, InvalidArgument, FailedPrecondition: as ``MetadataSnapshotter.update``.
        """
        args = self._args(key=info.name, fieldpaths=list(fieldpaths), labels=info.labels)
        return self._write(
            ctx,
            "snapshots.update",
            lambda: self.store.update(ctx, info, *fieldpaths),
            args,
            store_lock=self.lock,
        )

    def usage(self, ctx: Context, key: str) -> Gen[Usage]:
        """``Usage``.

        Raises:
            NotFound, FailedPrecondition: as ``MetadataSnapshotter.usage``.
        """
        return self._read(
            ctx, "snapshots.usage", lambda: self.store.usage(ctx, key), self._args(key=key)
        )

    def mounts(self, ctx: Context, key: str) -> Gen[list[Mount]]:
        """``Mounts``.

        Raises:
            NotFound, FailedPrecondition: as ``MetadataSnapshotter.mounts``.
        """
        return self._read(
            ctx, "snapshots.mounts", lambda: self.store.mounts(ctx, key), self._args(key=key)
        )

    def walk(self, ctx: Context, fn: SnapshotWalkFunc, *filters: str) -> Gen[None]:
        """``Walk`` (``fn`` runs inside the one simulated call).

        Raises:
            InvalidArgument, FailedPrecondition: as ``MetadataSnapshotter.walk``.
        """
        return self._read(
            ctx,
            "snapshots.walk",
            lambda: self.store.walk(ctx, fn, *filters),
            self._args(filters=list(filters)),
        )

    def prepare(
        self, ctx: Context, key: str, parent: str = "", *, labels: Mapping[str, str] | None = None
    ) -> Gen[list[Mount]]:
        """``Prepare``: create_begin, gap, create_backend, gap, create_finish (``s.l`` held).

        Fault site ``snapshots.prepare.exists`` (key: the target chain ID) is consulted when
        ``labels`` carry ``containerd.io/snapshot.ref``.

        Raises:
            AlreadyExists, NotFound, InvalidArgument, FailedPrecondition, Unknown: as
                ``MetadataSnapshotter.prepare`` (AlreadyExists also when injected).
        """
        return self._create(ctx, "snapshots.prepare", key, parent, labels, readonly=False)

    def view(
        self, ctx: Context, key: str, parent: str = "", *, labels: Mapping[str, str] | None = None
    ) -> Gen[list[Mount]]:
        """``View``: the same three steps as :meth:`prepare` (no fault site).

        Raises:
            The same as :meth:`prepare`.
        """
        return self._create(ctx, "snapshots.view", key, parent, labels, readonly=True)

    def _create(
        self,
        ctx: Context,
        op: str,
        key: str,
        parent: str,
        labels: Mapping[str, str] | None,
        *,
        readonly: bool,
    ) -> Gen[list[Mount]]:
        store, services = self.store, self.services
        target = (labels or {}).get(SNAPSHOT_REF, "")
        site = "snapshots.prepare.exists" if target and not readonly else None

        def body() -> Gen[list[Mount]]:
            yield from self.lock.rlock()
            try:
                pending = yield from services.atomic(
                    lambda: store.create_begin(ctx, key, parent, labels=labels, readonly=readonly),
                    write=True,
                )
                yield from services.gap(ctx, op)
                yield from services.atomic(lambda: store.create_backend(ctx, pending))
                yield from services.gap(ctx, op)
                return (
                    yield from services.atomic(
                        lambda: store.create_finish(ctx, pending), write=True
                    )
                )
            finally:
                self.lock.runlock()

        args = self._args(key=key, parent=parent, labels=dict(labels or {}))
        return services.call_steps(ctx, op, body, args=args, site=site, key=target)

    def commit(
        self, ctx: Context, name: str, key: str, *, labels: Mapping[str, str] | None = None
    ) -> Gen[None]:
        """``Commit`` ``key`` as ``name`` (holds ``s.l`` shared).

        Fault site ``snapshots.commit.exists`` (key: ``name``).

        Raises:
            AlreadyExists, NotFound, InvalidArgument, FailedPrecondition: as
                ``MetadataSnapshotter.commit`` (AlreadyExists also when injected).
        """
        return self._write(
            ctx,
            "snapshots.commit",
            lambda: self.store.commit(ctx, name, key, labels=labels),
            self._args(name=name, key=key, labels=dict(labels or {})),
            store_lock=self.lock,
            site="snapshots.commit.exists",
            key=name,
        )

    def remove(self, ctx: Context, key: str) -> Gen[None]:
        """``Remove`` the record (holds ``s.l`` shared); the backend waits for GC.

        Raises:
            NotFound, FailedPrecondition: as ``MetadataSnapshotter.remove``.
        """
        return self._write(
            ctx,
            "snapshots.remove",
            lambda: self.store.remove(ctx, key),
            self._args(key=key),
            store_lock=self.lock,
        )


# --- leases and images -------------------------------------------------------------------


class LeasesProxy(_Proxy):
    """The lease manager as a client sees it; ``gc`` serves ``SynchronousDelete``."""

    def __init__(
        self, services: Services, store: LeaseManager, gc: SyncCollector | None = None
    ) -> None:
        super().__init__(services)
        self.store = store
        self.gc = gc

    def create(self, ctx: Context, *, id: str, labels: dict[str, str] | None = None) -> Gen[Lease]:
        """``Create``.

        Raises:
            AlreadyExists, Unknown, FailedPrecondition: as ``LeaseManager.create``.
        """
        return self._write(
            ctx,
            "leases.create",
            lambda: self.store.create(ctx, id=id, labels=labels),
            {"id": id, "labels": dict(labels or {})},
        )

    def delete(self, ctx: Context, id: str, *, sync: bool = False) -> Gen[None]:
        """``Delete``; with ``sync`` (``leases.SynchronousDelete``) wait for a collection.

        Raises:
            NotFound, FailedPrecondition: as ``LeaseManager.delete``.
            ValueError: ``sync`` without a GC attached to this proxy.
        """
        yield from self._write(
            ctx, "leases.delete", lambda: self.store.delete(ctx, id), {"id": id, "sync": sync}
        )
        if sync:
            yield from _sync_collect(self.gc, ctx, "leases.delete")

    def list(self, ctx: Context, *filters: str) -> Gen[list[Lease]]:
        """``List``.

        Raises:
            InvalidArgument, FailedPrecondition: as ``LeaseManager.list``.
        """
        return self._read(
            ctx, "leases.list", lambda: self.store.list(ctx, *filters), {"filters": filters}
        )

    def add_resource(self, ctx: Context, id: str, resource: Resource) -> Gen[None]:
        """``AddResource``.

        Raises:
            NotFound, InvalidArgument, NotImplementedYet: as ``LeaseManager.add_resource``.
        """
        return self._write(
            ctx,
            "leases.add_resource",
            lambda: self.store.add_resource(ctx, id, resource),
            {"id": id, "resource": list(resource)},
        )

    def delete_resource(self, ctx: Context, id: str, resource: Resource) -> Gen[None]:
        """``DeleteResource``.

        Raises:
            NotFound, InvalidArgument, NotImplementedYet: as ``LeaseManager.delete_resource``.
        """
        return self._write(
            ctx,
            "leases.delete_resource",
            lambda: self.store.delete_resource(ctx, id, resource),
            {"id": id, "resource": list(resource)},
        )

    def list_resources(self, ctx: Context, id: str) -> Gen[builtins.list[Resource]]:
        """``ListResources``.

        Raises:
            NotFound, FailedPrecondition: as ``LeaseManager.list_resources``.
        """
        return self._read(
            ctx, "leases.list_resources", lambda: self.store.list_resources(ctx, id), {"id": id}
        )


class ImagesProxy(_Proxy):
    """The image store as a client sees it; ``gc`` serves ``SynchronousDelete``."""

    def __init__(
        self, services: Services, store: ImageStore, gc: SyncCollector | None = None
    ) -> None:
        super().__init__(services)
        self.store = store
        self.gc = gc

    def get(self, ctx: Context, name: str) -> Gen[Image]:
        """``Get``.

        Raises:
            NotFound, FailedPrecondition: as ``ImageStore.get``.
        """
        return self._read(ctx, "images.get", lambda: self.store.get(ctx, name), {"name": name})

    def list(self, ctx: Context, *filters: str) -> Gen[list[Image]]:
        """``List``.

        Raises:
            InvalidArgument, FailedPrecondition: as ``ImageStore.list``.
        """
        return self._read(
            ctx, "images.list", lambda: self.store.list(ctx, *filters), {"filters": filters}
        )

    def create(self, ctx: Context, image: Image) -> Gen[Image]:
        """``Create``.

        Raises:
            AlreadyExists, InvalidArgument, FailedPrecondition: as ``ImageStore.create``.
        """
        return self._write(
            ctx, "images.create", lambda: self.store.create(ctx, image), _image_args(image)
        )

    def update(self, ctx: Context, image: Image, *fieldpaths: str) -> Gen[Image]:
        """``Update``.

        Raises:
            NotFound, InvalidArgument, FailedPrecondition: as ``ImageStore.update``.
        """
        args = {**_image_args(image), "fieldpaths": list(fieldpaths)}
        return self._write(
            ctx, "images.update", lambda: self.store.update(ctx, image, *fieldpaths), args
        )

    def delete(self, ctx: Context, name: str, *, sync: bool = False) -> Gen[None]:
        """``Delete``; with ``sync`` (``images.SynchronousDelete``) wait for a collection.

        Raises:
            NotFound, FailedPrecondition: as ``ImageStore.delete``.
            ValueError: ``sync`` without a GC attached to this proxy.
        """
        yield from self._write(
            ctx,
            "images.delete",
            lambda: self.store.delete(ctx, name),
            {"name": name, "sync": sync},
        )
        if sync:
            yield from _sync_collect(self.gc, ctx, "images.delete")


def _image_args(image: Image) -> dict[str, object]:
    return {"name": image.name, "target": image.target.digest, "labels": image.labels}


def _sync_collect(gc: SyncCollector | None, ctx: Context, op: str) -> Gen[None]:
    if gc is None:
        raise ValueError(
            f"{op}(sync=True) needs a GC: build the proxy with gc=<GCProcess> "
            "(World.create does this)"
        )
    yield from gc.schedule_and_wait(ctx)
