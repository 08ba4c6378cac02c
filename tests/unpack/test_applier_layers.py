"""The applier's pure layer logic: media types, decompression, tar parsing, whiteouts."""

from __future__ import annotations

import gzip
import io
import tarfile

import pytest

from unpacksim.model.digest import digest_of
from unpacksim.model.errdefs import NotImplementedYet, Unknown
from unpacksim.unpack.applier import (
    FsEntry,
    LayerEntry,
    Tree,
    apply_entries,
    decompress,
    diff_compression,
    read_layer,
)

OCI_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"


def make_tar(*members: tuple[str, str, bytes | str]) -> bytes:
    """A tar of (name, kind, payload) members: kind is file, dir, symlink or hardlink."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if kind == "file":
                assert isinstance(payload, bytes)
                info.size = len(payload)
                archive.addfile(info, io.BytesIO(payload))
                continue
            info.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE}.get(
                kind, tarfile.LNKTYPE
            )
            if isinstance(payload, str):
                info.linkname = payload
            archive.addfile(info)
    return out.getvalue()


@pytest.mark.parametrize(
    ("media_type", "expected"),
    [
        (OCI_TAR, ""),
        (OCI_GZIP, "gzip"),
        (OCI_TAR + "+zstd", ""),
        (OCI_TAR + "+gzip+encrypted", "gzip"),  # sorted suffixes, the last one decides
        (DOCKER_TAR, "unknown"),
        (DOCKER_GZIP, "gzip"),
        (DOCKER_GZIP + "+encrypted", ""),
        ("application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", "gzip"),
    ],
)
def test_diff_compression_follows_images_diffcompression(media_type: str, expected: str) -> None:
    assert diff_compression(media_type) == expected


def test_diff_compression_rejects_non_layer_types() -> None:
    with pytest.raises(NotImplementedYet):
        diff_compression("application/vnd.oci.image.config.v1+json")


def test_decompress_gzip_and_detection() -> None:
    tar = make_tar(("a", "file", b"hello"))
    blob = gzip.compress(tar, mtime=0)
    assert decompress(OCI_GZIP, blob) == tar
    assert decompress(DOCKER_TAR, blob) == tar  # "unknown": sniffed
    assert decompress(DOCKER_TAR, tar) == tar
    assert decompress(OCI_TAR, blob) == blob  # plain type: passed through, gzip or not
    assert decompress(OCI_GZIP, tar) == tar  # gzip type without the magic: read as is
    assert decompress(OCI_GZIP, b"") == b""


def test_decompress_concatenated_gzip_members() -> None:
    blob = gzip.compress(b"ab", mtime=0) + gzip.compress(b"cd", mtime=0)
    assert decompress(OCI_GZIP, blob) == b"abcd"


def test_decompress_unknown_media_type_has_no_processor() -> None:
    with pytest.raises(Unknown) as info:
        decompress("application/octet-stream", b"x")
    assert str(info.value) == (
        "failed to get stream processor for application/octet-stream: "
        "no processor for media-type: unknown"
    )


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b[:-5], "unexpected EOF"),
        (lambda b: b + b"\0\0", "gzip: invalid header"),
        (lambda b: b[:-8] + bytes(x ^ 0xFF for x in b[-8:-4]) + b[-4:], "gzip: invalid checksum"),
    ],
)
def test_broken_gzip_gives_go_messages(mangle: object, message: str) -> None:
    blob = gzip.compress(make_tar(("a", "file", b"hello" * 50)), mtime=0)
    assert callable(mangle)
    with pytest.raises(Unknown) as info:
        decompress(OCI_GZIP, mangle(blob))
    assert info.value.message == message


def test_read_layer_entries() -> None:
    tar = make_tar(
        ("./etc", "dir", b""),
        ("etc/hosts", "file", b"127.0.0.1"),
        ("etc/link", "symlink", "hosts"),
        ("etc/hard", "hardlink", "etc/hosts"),
        ("var/.wh.cache", "file", b""),
        ("opt/.wh..wh..opq", "file", b""),
    )
    entries = read_layer(tar)
    assert [(e.path, e.kind) for e in entries] == [
        ("etc", "dir"),
        ("etc/hosts", "file"),
        ("etc/link", "symlink"),
        ("etc/hard", "hardlink"),
        ("var/.wh.cache", "whiteout"),
        ("opt/.wh..wh..opq", "opaque"),
    ]
    assert entries[1].data == b"127.0.0.1"
    assert entries[2].link == "hosts"


def test_read_layer_empty_and_zero_blocks_are_empty_layers() -> None:
    assert read_layer(b"") == []
    assert read_layer(b"\0" * 1024) == []


def test_read_layer_garbage_and_truncation() -> None:
    with pytest.raises(Unknown) as info:
        read_layer(b"not a tar at all" * 64)
    assert info.value.message == "archive/tar: invalid tar header"
    tar = make_tar(("big", "file", b"x" * 2000))
    with pytest.raises(Unknown) as info:
        read_layer(tar[:1024])
    assert info.value.message == "unexpected EOF"


def test_read_layer_paths_never_escape_the_root() -> None:
    entries = read_layer(make_tar(("../../etc/passwd", "file", b"x"), ("/abs", "file", b"y")))
    assert [e.path for e in entries] == ["etc/passwd", "abs"]


def _files(tree: Tree) -> dict[str, bytes]:
    return {path: entry.data for path, entry in tree.items() if entry.kind == "file"}


def test_apply_entries_layers_whiteouts_and_opaque_dirs() -> None:
    tree: Tree = {}
    apply_entries(tree, read_layer(make_tar(("a/x", "file", b"1"), ("a/y", "file", b"2"))))
    apply_entries(tree, read_layer(make_tar(("b/z", "file", b"3"), ("c/w", "file", b"4"))))
    assert _files(tree) == {"a/x": b"1", "a/y": b"2", "b/z": b"3", "c/w": b"4"}
    assert tree["a"] == FsEntry("dir", mode=0o755)  # parent made by mkparent
    upper = make_tar(
        ("a/new", "file", b"5"),
        ("a/.wh..wh..opq", "file", b""),  # after a/new: out of order, a/new survives
        ("b/.wh.z", "file", b""),
        ("c/w", "file", b"6"),
    )
    apply_entries(tree, read_layer(upper))
    assert _files(tree) == {"a/new": b"5", "c/w": b"6"}
    assert "b" in tree  # a whiteout removes the named object only


def test_apply_entries_hardlink_copies_and_missing_target_fails() -> None:
    tree: Tree = {}
    apply_entries(tree, [LayerEntry("f", "file", data=b"d"), LayerEntry("g", "hardlink", link="f")])
    assert tree["g"].data == b"d"
    with pytest.raises(Unknown) as info:
        apply_entries(tree, [LayerEntry("h", "hardlink", link="nope")])
    assert info.value.message == "link nope h: no such file or directory"


def test_apply_entries_replaces_a_file_with_a_directory() -> None:
    tree: Tree = {}
    apply_entries(tree, [LayerEntry("p", "file", data=b"x")])
    apply_entries(tree, [LayerEntry("p", "dir"), LayerEntry("p/q", "file", data=b"y")])
    assert tree["p"].kind == "dir"
    assert _files(tree) == {"p/q": b"y"}


def test_diff_id_is_the_digest_of_the_decompressed_stream() -> None:
    tar = make_tar(("a", "file", b"hello"))
    assert digest_of(decompress(OCI_GZIP, gzip.compress(tar, mtime=0))) == digest_of(tar)
