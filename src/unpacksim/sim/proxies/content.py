"""The content store proxy and its writers (``content.Store`` over gRPC)."""

from __future__ import annotations

from unpacksim.model.content import ContentStore, ContentWriter, Info, Status, WalkFunc
from unpacksim.model.content_backend import BytesReaderAt
from unpacksim.model.errdefs import ContainerdError
from unpacksim.model.oci import Descriptor
from unpacksim.sim.context import Context, background
from unpacksim.sim.go import Gen, RWLock
from unpacksim.sim.proxies.base import Proxy
from unpacksim.sim.services import Services

__all__ = ["ContentProxy", "WriterProxy"]


class ContentProxy(Proxy):
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

        Fault site ``content.ref_locked`` (key ``ref``) is consulted where containerd tries
        the ref lock: after the AlreadyExists check, and not for a blob another namespace
        shares (no backend writer is opened for it).

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
        if desc is not None and self._no_lock_taken(ctx, desc):
            return
        self.services.env.faults.check("content.ref_locked", key=ref)

    def _no_lock_taken(self, ctx: Context, desc: Descriptor) -> bool:
        """AlreadyExists comes before the lock; a shared blob opens no backend writer."""
        ns = self.store.db.namespaces.get(ctx.namespace)
        if ns is not None and desc.digest in ns.content:
            return True
        backend = self.store.backend
        if not self.store.shared or not backend.has_blob(desc.digest):
            return False
        return desc.size in (0, backend.info(desc.digest).size)


class WriterProxy(Proxy):
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

        The client's writer is the gRPC proxy (``content/proxy/content_writer.go`` ``Commit``,
        the seed and 1.6.20 alike), which wraps every error of the daemon's commit as
        ``commit failed: <error>``; the class survives (``errdefs.FromGRPC``).

        Raises:
            FailedPrecondition, AlreadyExists, NotFound, Unknown: as ``ContentWriter.commit``,
                wrapped ``commit failed``.
        """
        args = {"ref": self.ref, "size": size, "expected": expected}

        def commit() -> None:
            try:
                self.writer.commit(ctx, size, expected, labels=labels)
            except ContainerdError as exc:
                raise exc.wrapped("commit failed") from None

        return self._write(ctx, "content.commit", commit, args)

    def close(self, ctx: Context) -> Gen[None]:
        """Close the writer: release the ref lock, keep the ingest resumable.

        Never fails for a done ``ctx`` (see the class docstring).
        """
        quiet = background(ctx.env, ctx.namespace).with_lease(ctx.lease)
        return self._read(quiet, "content.close", self.writer.close, {"ref": self.ref})
