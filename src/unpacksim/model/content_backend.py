"""Content interfaces and helpers, and the backend: blobs and ingests, shared by namespaces.

:class:`Store` and its parts, :class:`Writer`, :class:`ReaderAt`, :class:`Info` and
:class:`Status` are ``content/content.go``'s interfaces and types; :func:`write_blob` and
:func:`copy_content` are ``content/helpers.go``'s ``WriteBlob`` and ``Copy``.  :class:`LocalContentStore`
mirrors ``content/local/store.go``, ``content/local/writer.go`` and ``content/local/locks.go``
at the seed, in memory.  The backend knows nothing about namespaces or labels: the metadata
store (:mod:`unpacksim.model.content`) keeps those and calls the backend with its own refs
(``<namespace>/1/<ref>``).  Backend methods take no ``ctx`` because the local store ignores it.

What the files become here:

- a blob is immutable ``bytes`` plus the time it was committed (the file's mtime);
- an ingest is its ``ref``, its ``data`` (the ``data`` file), ``total``, ``started_at`` and
  ``updated_at`` (the ``updatedat`` file, or the data file's mtime when that is later: each
  write moves it);
- ref locks are per backend (containerd's are per process, which is the same thing for one
  daemon).  :meth:`LocalContentStore.writer` tries the lock once; the seed's local store
  retries ten times with random sleeps inside the metadata transaction (the cause of
  containerd #8790), which the model leaves to the simulator's scheduling.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, cast

from unpacksim.model.clock import Clock, ManualClock
from unpacksim.model.context import ModelContext
from unpacksim.model.errdefs import (
    AlreadyExists,
    ContainerdError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unavailable,
    Unknown,
)
from unpacksim.model.filters import go_quote
from unpacksim.model.oci import Descriptor

__all__ = [
    "DEFAULT_ROOT",
    "BackendIngest",
    "BytesReaderAt",
    "Info",
    "IngestManager",
    "Ingester",
    "LocalContentStore",
    "LocalWriter",
    "Manager",
    "Provider",
    "Reader",
    "ReaderAt",
    "Status",
    "Store",
    "WalkFunc",
    "Writer",
    "copy_content",
    "write_blob",
]

#: Where containerd's content plugin keeps its files; used only to word messages as Go does.
DEFAULT_ROOT = "/var/lib/containerd/io.containerd.content.v1.content"


@dataclass(frozen=True)
class Info:
    """``content.Info``: what is known about one blob.

    As an argument to ``update`` only ``digest`` and ``labels`` are read.
    """

    digest: str
    size: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(frozen=True)
class Status:
    """``content.Status``: the progress of one ingest."""

    ref: str
    offset: int = 0
    total: int = 0
    expected: str = ""
    started_at: float = 0.0
    updated_at: float = 0.0


#: ``content.WalkFunc``; raise to stop the walk (the exception propagates).
WalkFunc = Callable[[Info], None]


class Reader(Protocol):
    """A binary reader (``io.Reader``); ``seek`` or ``read_at`` are used when present."""

    def read(self, size: int = -1, /) -> bytes: ...


class ReaderAt(Protocol):
    """``content.ReaderAt``."""

    @property
    def size(self) -> int: ...

    def read_at(self, offset: int, size: int) -> bytes: ...

    def close(self) -> None: ...


class Writer(Protocol):
    """``content.Writer``: ``write``, ``digest``, ``status``, ``truncate``, ``close``, ``commit``."""

    def write(self, data: bytes) -> int: ...

    def digest(self) -> str: ...

    def status(self) -> Status: ...

    def truncate(self, size: int) -> None: ...

    def close(self) -> None: ...

    def commit(
        self, ctx: ModelContext, size: int, expected: str, *, labels: dict[str, str] | None = None
    ) -> None: ...


class Provider(Protocol):
    """``content.Provider``."""

    def reader_at(self, ctx: ModelContext, desc: Descriptor) -> ReaderAt: ...


class Ingester(Protocol):
    """``content.Ingester``."""

    def writer(
        self, ctx: ModelContext, *, ref: str, desc: Descriptor | None = None, total: int = 0
    ) -> Writer: ...


class IngestManager(Protocol):
    """``content.IngestManager``."""

    def status(self, ctx: ModelContext, ref: str) -> Status: ...

    def list_statuses(self, ctx: ModelContext, *filters: str) -> list[Status]: ...

    def abort(self, ctx: ModelContext, ref: str) -> None: ...


class Manager(Protocol):
    """``content.Manager``."""

    def info(self, ctx: ModelContext, digest: str) -> Info: ...

    def update(self, ctx: ModelContext, info: Info, *fieldpaths: str) -> Info: ...

    def walk(self, ctx: ModelContext, fn: WalkFunc, *filters: str) -> None: ...

    def delete(self, ctx: ModelContext, digest: str) -> None: ...


class Store(Provider, Ingester, IngestManager, Manager, Protocol):
    """``content.Store``."""


class BytesReaderAt:
    """``content.ReaderAt`` over an immutable blob (an open file keeps reading after delete)."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.closed = False

    @property
    def size(self) -> int:
        return len(self._data)

    def read_at(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``offset`` (fewer at the end of the blob)."""
        if offset < 0 or size < 0:
            raise ValueError(f"read_at needs a non-negative offset and size, got {offset}, {size}")
        return self._data[offset : offset + size]

    def read_all(self) -> bytes:
        """The whole blob (``content.ReadBlob``)."""
        return self._data

    def close(self) -> None:
        self.closed = True


@dataclass
class BackendIngest:
    """An ingest directory: ``ref``, ``data``, ``total``, ``startedat`` and ``updatedat``."""

    ref: str
    data: bytearray = field(default_factory=bytearray)
    total: int = 0
    started_at: float = 0.0
    updated_at: float = 0.0


@dataclass
class _Blob:
    data: bytes
    created_at: float


class LocalContentStore:
    """``content/local`` in memory; also the GC's :class:`~unpacksim.model.db.ContentBackend`."""

    def __init__(self, clock: Clock | None = None, *, root: str = DEFAULT_ROOT) -> None:
        self.clock: Clock = clock if clock is not None else ManualClock()
        self.root = root
        self.blobs: dict[str, _Blob] = {}
        self.ingests: dict[str, BackendIngest] = {}
        self.locks: dict[str, None] = {}

    # --- paths, only for messages -----------------------------------------------------------

    def blob_path(self, digest: str) -> str:
        algorithm, _, hex_part = digest.partition(":")
        return f"{self.root}/blobs/{algorithm}/{hex_part}"

    def ingest_root(self, ref: str) -> str:
        return f"{self.root}/ingest/{hashlib.sha256(ref.encode()).hexdigest()}"

    # --- Provider and Manager ---------------------------------------------------------------

    def has_blob(self, digest: str) -> bool:
        return digest in self.blobs

    def info(self, digest: str) -> Info:
        """``store.Info``: size and commit time (the local store keeps no labels).

        Raises:
            NotFound: no such blob ("content <digest>").
        """
        blob = self.blobs.get(digest)
        if blob is None:
            raise NotFound(f"content {digest}")
        return Info(digest, len(blob.data), {}, blob.created_at, blob.created_at)

    def reader_at(self, digest: str) -> BytesReaderAt:
        """``store.ReaderAt``.

        Raises:
            NotFound: no such blob ("blob <digest> expected at <path>").
        """
        blob = self.blobs.get(digest)
        if blob is None:
            raise NotFound(f"blob {digest} expected at {self.blob_path(digest)}")
        return BytesReaderAt(blob.data)

    def delete(self, digest: str) -> None:
        """``store.Delete``: ``os.RemoveAll`` reports nothing for a missing blob."""
        self.blobs.pop(digest, None)

    # --- Ingester and IngestManager ---------------------------------------------------------

    def status(self, ref: str) -> Status:
        """``store.Status`` of the ingest ``ref``.

        Raises:
            NotFound: no such ingest (Go's "stat <path>/data: no such file or directory").
        """
        ingest = self.ingests.get(ref)
        if ingest is None:
            path = f"{self.ingest_root(ref)}/data"
            raise NotFound(f"stat {path}: no such file or directory")
        return Status(
            ref=ingest.ref,
            offset=len(ingest.data),
            total=ingest.total,
            started_at=ingest.started_at,
            updated_at=ingest.updated_at,
        )

    def abort(self, ref: str) -> None:
        """``store.Abort``: remove the ingest (``os.RemoveAll``: no error if absent)."""
        self.ingests.pop(ref, None)

    def writer(self, ref: str, *, total: int = 0, expected: str = "") -> LocalWriter:
        """``store.Writer``: lock ``ref`` and open or resume its ingest.

        Raises:
            InvalidArgument: ``ref`` is empty ("ref must not be empty").
            Unavailable: another writer holds ``ref`` ("ref <ref> locked").
            AlreadyExists: ``expected`` is already a blob ("content <digest>").
        """
        if not ref:
            raise InvalidArgument("ref must not be empty")
        if ref in self.locks:
            raise Unavailable(f"ref {ref} locked")
        if expected and expected in self.blobs:
            raise AlreadyExists(f"content {expected}")
        self.locks[ref] = None
        return LocalWriter(self, ref, self._open_ingest(ref, total))

    def _open_ingest(self, ref: str, total: int) -> BackendIngest:
        # content/local/store.go writer(): resume a valid ingest, otherwise start afresh.
        ingest = self.ingests.get(ref)
        mismatch = ingest is not None and total > 0 and ingest.total > 0 and total != ingest.total
        if ingest is not None and not mismatch:
            return ingest
        # A total that differs from the stored one makes Go log and recreate the ingest; Go
        # then overwrites the old data file in place, the model starts it empty.
        now = self.clock.now()
        ingest = BackendIngest(ref, bytearray(), max(total, 0), now, now)
        self.ingests[ref] = ingest
        return ingest

    def unlock(self, ref: str) -> None:
        self.locks.pop(ref, None)

    def commit_ingest(self, ingest: BackendIngest, digest: str) -> bool:
        """Move an ingest's data to the blob ``digest``; False if that blob already exists.

        The ingest is removed either way (``writer.Commit``'s rename or its cleanup).
        """
        if self.ingests.get(ingest.ref) is ingest:
            del self.ingests[ingest.ref]
        if digest in self.blobs:
            return False
        self.blobs[digest] = _Blob(bytes(ingest.data), self.clock.now())
        return True

    # --- ContentBackend (the GC's backend sweep) --------------------------------------------

    def backend_digests(self) -> list[str]:
        return sorted(self.blobs)

    def backend_delete(self, digest: str) -> None:
        self.delete(digest)

    def backend_ingests(self) -> list[str]:
        return sorted(self.ingests)

    def backend_abort(self, backend_ref: str) -> None:
        self.abort(backend_ref)


class LocalWriter:
    """``content/local/writer.go``: one open ingest, holding its ref lock until close or commit."""

    def __init__(self, store: LocalContentStore, ref: str, ingest: BackendIngest) -> None:
        self._store = store
        self.ref = ref
        self._ingest = ingest
        self._open = True
        self._hash = hashlib.sha256(bytes(ingest.data))
        self._started_at = ingest.started_at
        self._updated_at = ingest.updated_at

    @property
    def is_open(self) -> bool:
        return self._open

    def status(self) -> Status:
        return Status(
            ref=self.ref,
            offset=len(self._ingest.data),
            total=self._ingest.total,
            started_at=self._started_at,
            updated_at=self._updated_at,
        )

    def digest(self) -> str:
        """The digest of the bytes written so far."""
        return "sha256:" + self._hash.hexdigest()

    def write(self, data: bytes) -> int:
        """Append ``data``.

        Raises:
            Unknown: the writer is closed or committed (Go's ``os.ErrInvalid``).
        """
        if not self._open:
            raise Unknown("invalid argument")
        self._ingest.data += data
        self._hash.update(data)
        self._updated_at = self._store.clock.now()
        self._ingest.updated_at = self._updated_at  # the data file's mtime
        return len(data)

    def truncate(self, size: int) -> None:
        """Only ``Truncate(0)`` is supported.

        Raises:
            Unknown: ``size`` is not 0 ("Truncate: unsupported size"), or the writer is closed.
        """
        if size != 0:
            raise Unknown("Truncate: unsupported size")
        if not self._open:
            raise Unknown("invalid argument")
        self._ingest.data.clear()
        self._hash = hashlib.sha256()
        self._ingest.updated_at = self._store.clock.now()

    def close(self) -> None:
        """Keep the ingest for a later resume and release the ref lock."""
        if self._open:
            self._open = False
            self._ingest.updated_at = max(self._ingest.updated_at, self._updated_at)
            self._store.unlock(self.ref)

    def commit(self, size: int, expected: str) -> None:
        """Verify and move the data to a blob; the ref lock is released whatever happens.

        Raises:
            FailedPrecondition: the writer is closed ("cannot commit on closed writer"), or the
                size or digest does not match ("unexpected commit size|digest ...").
            AlreadyExists: the blob exists ("content <digest>"); the ingest is removed.  This
                wins over a vanished ingest.
            Unknown: the ingest vanished under the writer (aborted or collected meanwhile) and
                the blob does not exist.
        """
        try:
            self._commit(size, expected)
        finally:
            self._store.unlock(self.ref)

    def _commit(self, size: int, expected: str) -> None:
        if not self._open:
            raise FailedPrecondition("cannot commit on closed writer")
        self._open = False
        actual_size = len(self._ingest.data)
        if size > 0 and size != actual_size:
            raise FailedPrecondition(f"unexpected commit size {actual_size}, expected {size}")
        dgst = self.digest()
        if expected and expected != dgst:
            raise FailedPrecondition(f"unexpected commit digest {dgst}, expected {expected}")
        # content/local/writer.go checks for the target blob before it renames the ingest's
        # data file, so an existing blob wins over an ingest removed under the open writer.
        if self._store.has_blob(dgst):
            self._store.commit_ingest(self._ingest, dgst)  # removes the ingest directory
            raise AlreadyExists(f"content {dgst}")
        if self._store.ingests.get(self.ref) is not self._ingest:
            root = self._store.ingest_root(self.ref)
            target = self._store.blob_path(dgst)
            raise Unknown(f"rename {root}/data {target}: no such file or directory")
        self._store.commit_ingest(self._ingest, dgst)


# --- content/helpers.go --------------------------------------------------------------------

_COPY_BUFFER = 1 << 20  # content/helpers.go bufPool


def write_blob(
    ctx: ModelContext,
    store: Ingester,
    ref: str,
    data: bytes | Reader,
    desc: Descriptor,
    *,
    labels: dict[str, str] | None = None,
) -> None:
    """``content.WriteBlob``: write and commit ``data`` unless the namespace has it already.

    Raises:
        Any error of ``writer`` but AlreadyExists, wrapped "failed to open writer"; any error
        of :func:`copy_content`.
    """
    try:
        writer = store.writer(ctx, ref=ref, desc=desc)
    except AlreadyExists:
        return
    except ContainerdError as exc:
        raise exc.wrapped("failed to open writer") from None
    try:
        copy_content(ctx, writer, data, desc.size, desc.digest, labels=labels)
    finally:
        writer.close()


def copy_content(
    ctx: ModelContext,
    writer: Writer,
    data: bytes | Reader,
    size: int,
    expected: str,
    *,
    labels: dict[str, str] | None = None,
) -> None:
    """``content.Copy``: resume from the writer's offset, write the rest, commit.

    ``data`` is bytes or a binary reader.  A reader is moved to the writer's offset by
    ``seek`` if it has one, else through ``read_at`` if it has one and ``size`` lies past the
    offset, else by reading and discarding (``seekReader``).  AlreadyExists on commit counts
    as success.

    Raises:
        FailedPrecondition: the commit's size or digest check failed ('failed commit on ref
            "<ref>": ...').
        Unknown: the reader could not be moved to the offset ("unable to resume write to ...").
        ContainerdError: a write failed, wrapped "failed to copy" (as ``copyWithBuffer``'s
            error in ``content.Copy``).
    """
    reader: Reader = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
    status = writer.status()
    if status.offset > 0:
        try:
            reader = _seek_reader(reader, status.offset, size)
        except Unknown as exc:
            raise exc.wrapped(f"unable to resume write to {status.ref}") from None
    try:
        while chunk := reader.read(_COPY_BUFFER):
            writer.write(chunk)
    except ContainerdError as exc:
        raise exc.wrapped("failed to copy") from None
    try:
        writer.commit(ctx, size, expected, labels=labels)
    except AlreadyExists:
        return
    except ContainerdError as exc:
        raise exc.wrapped(f"failed commit on ref {go_quote(status.ref)}") from None


class _SectionReader:
    """``io.NewSectionReader`` over anything with ``read_at``."""

    def __init__(self, source: _ReadAt, offset: int, limit: int) -> None:
        self._source, self._offset, self._limit = source, offset, limit

    def read(self, size: int = -1, /) -> bytes:
        remaining = self._limit - self._offset
        size = remaining if size < 0 else min(size, remaining)
        data = self._source.read_at(self._offset, size) if size > 0 else b""
        self._offset += len(data)
        return data


class _ReadAt(Protocol):
    def read_at(self, offset: int, size: int) -> bytes: ...


def _seek_reader(reader: Reader, offset: int, size: int) -> Reader:
    """``content/helpers.go`` ``seekReader``."""
    seek = getattr(reader, "seek", None)
    if callable(seek):
        moved = seek(offset)
        if moved != offset:
            raise Unknown(f"failed to seek to offset {offset}")
        return reader
    if callable(getattr(reader, "read_at", None)) and size > offset:
        # io.NewSectionReader(readerAt, offset, size): ``size`` bytes from ``offset`` on,
        # so a source longer than ``size`` yields more than the rest of the blob.
        return _SectionReader(cast(_ReadAt, reader), offset, offset + size)
    discarded = 0
    while discarded < offset:
        chunk = reader.read(min(_COPY_BUFFER, offset - discarded))
        if not chunk:
            raise Unknown("unable to discard to offset")
        discarded += len(chunk)
    return reader
