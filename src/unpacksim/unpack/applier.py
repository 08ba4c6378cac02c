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
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from unpacksim.model.digest import digest_of
from unpacksim.model.errdefs import ContainerdError, NotImplementedYet, Unknown
from unpacksim.model.oci import MEDIA_TYPE_OCI_LAYER, Descriptor

if TYPE_CHECKING:
    from unpacksim.unpack.world import World

__all__ = [
    "ApplyResult",
    "DiffApplier",
    "FsEntry",
    "LayerEntry",
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
