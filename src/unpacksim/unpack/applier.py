"""The diff applier: ``diff.Applier.Apply(ctx, desc, mounts)`` over real tar bytes.

Mirrors ``diff/apply/apply.go`` (``fsApplier.Apply``), ``diff/stream.go`` (the processor
chain and ``compressedHandler``), ``archive/compression/compression.go``
(``DecompressStream``: gzip detected by its magic, anything else read as plain tar),
``images/mediatypes.go`` (``DiffCompression``) and ``archive/tar.go`` (``applyNaive``, the
whiteout handling the native snapshotter gets) at the seed.

The applier runs inside the daemon: it reads the blob through the content store's
``ReaderAt`` (``NotFound`` "content digest ...", wrapped "failed to get reader from content
store"), decompresses by media type, hashes the *decompressed* stream (the diff ID), extracts
the tar into the snapshot's in-memory contents when the snapshotter keeps contents (otherwise
it only checks that the tar is well formed) and returns the diff descriptor
(``application/vnd.oci.image.layer.v1.tar``, uncompressed size, diff ID).

Errors reach the unpacker through the diff service's gRPC boundary (``errdefs.ToGRPC`` /
``FromGRPC``): errdefs classes survive, plain Go errors (a bad tar, a bad gzip stream) arrive
as ``Unknown`` with Go's message.  The pure functions below (:func:`diff_compression`,
:func:`decompress`, :func:`read_layer`, :func:`apply_entries`) carry no simulation and can be
used on their own.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from unpacksim.model.digest import digest_of
from unpacksim.model.errdefs import ContainerdError, NotImplementedYet, Unknown
from unpacksim.model.oci import MEDIA_TYPE_OCI_LAYER, Descriptor
from unpacksim.model.snapshot_api import Mount
from unpacksim.model.snapshot_backend import MemorySnapshotter
from unpacksim.sim.go import Gen

if TYPE_CHECKING:
    from unpacksim.model.content import ContentStore
    from unpacksim.sim.context import Context
    from unpacksim.sim.services import Services

__all__ = [
    "ApplyRecord",
    "ContentsKeeper",
    "DiffApplier",
    "FsEntry",
    "LayerEntry",
    "MemoryContents",
    "Tree",
    "apply_entries",
    "decompress",
    "diff_compression",
    "read_layer",
]

_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
_DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar"
_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
_DOCKER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
_OCI_LAYER_NONDIST = "application/vnd.oci.image.layer.nondistributable.v1.tar"
_GZIP_MAGIC = b"\x1f\x8b\x08"
_WHITEOUT_PREFIX = ".wh."
_WHITEOUT_OPAQUE = ".wh..wh..opq"


# --- media types and decompression -----------------------------------------------------------


def diff_compression(media_type: str) -> str:
    """``images.DiffCompression``: ``"gzip"``, ``""`` (plain) or ``"unknown"`` (detect).

    A Docker layer type with a ``+suffix`` is "wrapped" (``""``); an OCI layer is gzip only
    when its last sorted ``+suffix`` is ``gzip``.

    Raises:
        NotImplementedYet: ``media_type`` is not a layer diff type.
    """
    base, *ext = media_type.split("+") if media_type else [""]
    ext.sort()
    if base in (_DOCKER_LAYER, _DOCKER_FOREIGN):
        return "" if ext else "unknown"
    if base in (_DOCKER_LAYER_GZIP, _DOCKER_FOREIGN_GZIP):
        return "" if ext else "gzip"
    if base in (MEDIA_TYPE_OCI_LAYER, _OCI_LAYER_NONDIST):
        return "gzip" if ext and ext[-1] == "gzip" else ""
    raise NotImplementedYet()


def decompress(media_type: str, blob: bytes) -> bytes:
    """The uncompressed layer stream of ``blob`` (``diff.GetProcessor`` + ``DecompressStream``).

    With compression ``gzip`` or ``unknown`` the stream is sniffed: the gzip magic means
    gzip, anything else (including an empty blob) is read as it is.  With ``""`` the bytes
    pass through untouched, gzip or not.

    Raises:
        Unknown: no processor for ``media_type`` ("failed to get stream processor for <mt>:
            no processor for media-type"), or the gzip stream is broken (Go's gzip/flate
            messages).
    """
    try:
        compression = diff_compression(media_type)
    except NotImplementedYet:
        raise Unknown(
            f"failed to get stream processor for {media_type}: no processor for media-type"
        ) from None
    if compression == "" or not blob.startswith(_GZIP_MAGIC):
        return blob
    return _gunzip(blob)


def _gunzip(blob: bytes) -> bytes:
    """Go's multistream ``gzip.Reader``: members back to back, anything else is a bad header."""
    out = bytearray()
    rest = blob
    while rest:
        if not rest.startswith(_GZIP_MAGIC):
            raise Unknown("gzip: invalid header")
        inflater = zlib.decompressobj(wbits=31)
        try:
            out += inflater.decompress(rest)
        except zlib.error as exc:
            raise Unknown(_go_inflate_error(str(exc))) from None
        if not inflater.eof:
            raise Unknown("unexpected EOF")
        rest = inflater.unused_data
    return bytes(out)


def _go_inflate_error(zlib_message: str) -> str:
    """Go's wording for what zlib reports (compress/gzip, compress/flate)."""
    if "check" in zlib_message and "header" not in zlib_message:
        return "gzip: invalid checksum"  # incorrect data check / incorrect length check
    if "header" in zlib_message or "compression method" in zlib_message:
        return "gzip: invalid header"
    # Go reports the input offset; zlib does not tell it, so the model omits it.
    return "flate: corrupt input"


# --- the tar stream ----------------------------------------------------------------------------

EntryKind = Literal["file", "dir", "symlink", "hardlink", "whiteout", "opaque"]


@dataclass(frozen=True)
class LayerEntry:
    """One tar entry as ``applyNaive`` sees it (path cleaned, relative to the root)."""

    path: str
    kind: EntryKind
    data: bytes = b""
    link: str = ""
    mode: int = 0o644


@dataclass(frozen=True)
class FsEntry:
    """One object in a snapshot's in-memory filesystem."""

    kind: Literal["file", "dir", "symlink"]
    data: bytes = b""
    link: str = ""
    mode: int = 0o644


#: A snapshot's contents: cleaned relative path -> object, e.g. ``{"etc": dir, "etc/x": file}``.
Tree = dict[str, FsEntry]


def _clean(name: str) -> str:
    """``filepath.Clean`` joined to the root: never escapes, no leading slash; "" is the root."""
    return posixpath.normpath("/" + name).lstrip("/")


def read_layer(stream: bytes) -> list[LayerEntry]:
    """Parse an uncompressed layer tar the way Go's ``archive/tar`` reader accepts it.

    An empty stream is an empty layer (``DecompressStream`` tolerates it, docker/docker#18170).

    Raises:
        Unknown: the tar is malformed ("archive/tar: invalid tar header") or cut short
            ("unexpected EOF").
    """
    if not stream:
        return []
    entries: list[LayerEntry] = []
    try:
        with tarfile.open(fileobj=io.BytesIO(stream), mode="r:") as archive:
            for member in archive:
                entry = _entry(archive, member)
                if entry is not None:
                    entries.append(entry)
    except tarfile.ReadError as exc:
        raise Unknown(_go_tar_error(str(exc))) from None
    return entries


def _go_tar_error(message: str) -> str:
    if "unexpected end" in message or "truncated" in message or message == "empty file":
        return "unexpected EOF"
    return "archive/tar: invalid tar header"


def _entry(archive: tarfile.TarFile, member: tarfile.TarInfo) -> LayerEntry | None:
    path = _clean(member.name)
    if not path:
        return None  # "file %q ignored: resolved to root"
    base = posixpath.basename(path)
    if base == _WHITEOUT_OPAQUE:
        return LayerEntry(path, "opaque")
    if base.startswith(_WHITEOUT_PREFIX):
        return LayerEntry(path, "whiteout")
    mode = member.mode
    if member.isdir():
        return LayerEntry(path, "dir", mode=mode)
    if member.issym():
        return LayerEntry(path, "symlink", link=member.linkname, mode=mode)
    if member.islnk():
        return LayerEntry(path, "hardlink", link=_clean(member.linkname), mode=mode)
    if member.isfile():
        extracted = archive.extractfile(member)
        data = extracted.read() if extracted is not None else b""
        if len(data) != member.size:
            raise tarfile.ReadError("unexpected end of data")
        return LayerEntry(path, "file", data=data, mode=mode)
    return None  # devices and fifos: skipped, as skipFile does without privileges


def apply_entries(tree: Tree, entries: Sequence[LayerEntry]) -> None:
    """Apply one layer's entries onto ``tree`` in place (``archive.applyNaive``).

    Whiteouts ``dir/.wh.name`` remove ``dir/name`` and everything below it; an opaque marker
    ``dir/.wh..wh..opq`` removes whatever under ``dir`` this layer has not written (markers
    may come out of order).  Parent directories are created as needed; an existing object is
    replaced unless both are directories (then they merge).
    """
    unpacked: dict[str, None] = {}
    for entry in entries:
        parent = posixpath.dirname(entry.path)
        _make_parents(tree, parent)
        if entry.kind == "opaque":
            _remove_under(tree, parent, keep=unpacked)
            continue
        if entry.kind == "whiteout":
            target = posixpath.join(parent, posixpath.basename(entry.path)[len(_WHITEOUT_PREFIX) :])
            _remove_tree(tree, target)
            continue
        existing = tree.get(entry.path)
        if existing is not None and not (existing.kind == "dir" and entry.kind == "dir"):
            _remove_tree(tree, entry.path)
        tree[entry.path] = _fs_entry(tree, entry)
        unpacked[entry.path] = None


def _fs_entry(tree: Tree, entry: LayerEntry) -> FsEntry:
    if entry.kind == "hardlink":
        target = tree.get(entry.link)
        if target is None:
            # os.Link fails: "link <old> <new>: no such file or directory"
            raise Unknown(f"link {entry.link} {entry.path}: no such file or directory")
        return target
    if entry.kind == "symlink":
        return FsEntry("symlink", link=entry.link, mode=entry.mode)
    if entry.kind == "dir":
        return FsEntry("dir", mode=entry.mode)
    return FsEntry("file", data=entry.data, mode=entry.mode)


def _make_parents(tree: Tree, directory: str) -> None:
    while directory and directory not in tree:
        tree[directory] = FsEntry("dir", mode=0o755)
        directory = posixpath.dirname(directory)


def _remove_tree(tree: Tree, path: str) -> None:
    prefix = path + "/"
    for key in [k for k in tree if k == path or k.startswith(prefix)]:
        del tree[key]


def _remove_under(tree: Tree, directory: str, *, keep: Mapping[str, None]) -> None:
    prefix = directory + "/" if directory else ""
    for key in [k for k in tree if k.startswith(prefix) and k != directory]:
        if key not in keep:
            del tree[key]


# --- snapshot contents -------------------------------------------------------------------------


class ContentsKeeper(Protocol):
    """A snapshotter that keeps file contents: the tree an Apply onto ``mounts`` writes into."""

    def tree_for(self, mounts: Sequence[Mount]) -> Tree | None:
        """The writable tree behind ``mounts``; None if these mounts are not this keeper's."""
        ...


class MemoryContents:
    """File contents for a :class:`~unpacksim.model.snapshot_backend.MemorySnapshotter`.

    The backend keeps no files; this keeper holds one tree per backend snapshot ID (the ID
    the bind mount source ``<root>/snapshots/<id>`` names, unchanged by Commit).  An active
    snapshot starts as a copy of its parent's tree, as the native snapshotter copies the
    parent directory on Prepare.  Read-only mounts (views) are not written.
    """

    def __init__(self, backend: MemorySnapshotter) -> None:
        self.backend = backend
        self.trees: dict[int, Tree] = {}

    def tree_for(self, mounts: Sequence[Mount]) -> Tree | None:
        if len(mounts) != 1 or "ro" in mounts[0].options:
            return None
        prefix = f"{self.backend.root}/snapshots/"
        source = mounts[0].source
        if not source.startswith(prefix) or not source[len(prefix) :].isdigit():
            return None
        return self._tree_of_id(int(source[len(prefix) :]))

    def tree(self, backend_key: str) -> Tree:
        """A copy of the contents of backend snapshot ``backend_key``.

        Raises:
            KeyError: the backend has no such snapshot.
        """
        snap = self.backend.snapshots[backend_key]
        return dict(self._tree_of_id(snap.id))

    def _tree_of_id(self, snapshot_id: int) -> Tree:
        tree = self.trees.get(snapshot_id)
        if tree is not None:
            return tree
        tree = {}
        for snap in self.backend.snapshots.values():
            if snap.id == snapshot_id and snap.parent:
                parent = self.backend.snapshots.get(snap.parent)
                if parent is not None:
                    tree = dict(self._tree_of_id(parent.id))
                break
        self.trees[snapshot_id] = tree
        return tree


# --- the applier -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApplyRecord:
    """One Apply: the layer blob, when it ended, its outcome and the diff ID it returned."""

    digest: str
    time: float
    outcome: str
    diff_id: str = ""


class DiffApplier:
    """``diff.Applier`` of the daemon's diff service, in simulated time.

    ``content`` is the daemon's (metadata) content store, read directly as the diff service
    does; ``rate`` is how many blob bytes per simulated second Apply processes (decompress,
    hash, extract); ``keepers`` are the snapshotters that keep file contents.
    """

    def __init__(
        self,
        services: Services,
        content: ContentStore,
        *,
        rate: float = 256 * 1024 * 1024,
        keepers: Sequence[ContentsKeeper] = (),
    ) -> None:
        if rate <= 0:
            raise ValueError(f"DiffApplier needs a positive rate in bytes per second, got {rate}")
        self.services = services
        self.content = content
        self.rate = rate
        self.keepers = list(keepers)
        self.applied: list[ApplyRecord] = []

    def apply(self, ctx: Context, desc: Descriptor, mounts: Sequence[Mount]) -> Gen[Descriptor]:
        """``Apply(ctx, desc, mounts)``: the diff descriptor of layer ``desc`` applied on ``mounts``.

        The result has media type ``application/vnd.oci.image.layer.v1.tar``, the size of the
        decompressed stream and its digest (the diff ID).  Fault sites: ``diff.apply.error``
        (key: the blob digest) fails the call; ``diff.apply.wrong_diff_id`` returns another
        digest.

        Raises:
            NotFound: the blob is not in the namespace ("failed to get reader from content
                store: content digest <digest>").
            Unknown: a bad media type, gzip stream or tar (Go's messages), or injected.
            Canceled, DeadlineExceeded: ``ctx`` was done before or during the apply.
        """

        def body() -> Gen[Descriptor]:
            blob = self._read(ctx, desc)
            yield self.services.env.timeout(len(blob) / self.rate)
            if ctx.err is not None:
                raise ctx.error()  # archive.Apply checks ctx.Done between entries
            return self._extract(desc, blob, mounts)

        args = {"digest": desc.digest, "media_type": desc.media_type, "mounts": len(mounts)}
        try:
            result = yield from self.services.call_steps(
                ctx,
                "diff.apply",
                body,
                args=args,
                site="diff.apply.error",
                key=desc.digest,
                detail=desc.media_type,
            )
        except ContainerdError as exc:
            self._record(desc, type(exc).__name__)
            raise
        self._record(desc, "ok", result.digest)
        return result

    def _read(self, ctx: Context, desc: Descriptor) -> bytes:
        try:
            reader = self.content.reader_at(ctx, desc)
        except ContainerdError as exc:
            raise exc.wrapped("failed to get reader from content store") from None
        try:
            return reader.read_all()
        finally:
            reader.close()

    def _extract(self, desc: Descriptor, blob: bytes, mounts: Sequence[Mount]) -> Descriptor:
        stream = decompress(desc.media_type, blob)
        entries = read_layer(stream)
        tree = self._tree(mounts)
        if tree is not None:
            apply_entries(tree, entries)
        diff_id = digest_of(stream)
        faults = self.services.env.faults
        if faults.check("diff.apply.wrong_diff_id", key=desc.digest, detail=desc.media_type):
            diff_id = digest_of(b"wrong diff id for " + diff_id.encode())
        return Descriptor(MEDIA_TYPE_OCI_LAYER, diff_id, len(stream))

    def _tree(self, mounts: Sequence[Mount]) -> Tree | None:
        for keeper in self.keepers:
            tree = keeper.tree_for(mounts)
            if tree is not None:
                return tree
        return None

    def _record(self, desc: Descriptor, outcome: str, diff_id: str = "") -> None:
        now = float(self.services.env.now)
        self.applied.append(ApplyRecord(desc.digest, now, outcome, diff_id))
