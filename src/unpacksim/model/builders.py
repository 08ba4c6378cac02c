"""Deterministic images from real tar layers.

A layer spec maps file paths to bytes (a path ending in ``/`` is a directory).  The layer tar
is written with :mod:`tarfile` (sorted entries, parent directories added, mtime 0, uid and gid
0, mode 0644 for files and 0755 for directories); the blob is that tar gzip-compressed with
mtime 0 (or the tar itself for an uncompressed layer); the diff ID is the sha256 of the tar.
The config lists the diff IDs, a manifest references the config and the layers, and an index
(OCI) or manifest list (Docker) references one manifest per platform.  The same input always
gives the same bytes.

>>> from unpacksim.model.builders import build_image
>>> image = build_image("example.com/app:1", [{"etc/hostname": b"base\\n"}, {"app": b"x"}])
>>> len(image.single.diff_ids), image.target.media_type.endswith("manifest.v1+json")
(2, True)

:func:`write_image` writes a built image into a content store (for tests).
"""

from __future__ import annotations

import gzip
import io
import posixpath
import tarfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from unpacksim.model.content_backend import Ingester, write_blob
from unpacksim.model.context import ModelContext
from unpacksim.model.digest import chain_ids, digest_of
from unpacksim.model.images import Image, ImageConfig, Index, Manifest
from unpacksim.model.labels import GC_REF_CONTENT
from unpacksim.model.oci import (
    MEDIA_TYPE_DOCKER_CONFIG,
    MEDIA_TYPE_DOCKER_LAYER_GZIP,
    MEDIA_TYPE_DOCKER_MANIFEST,
    MEDIA_TYPE_DOCKER_MANIFEST_LIST,
    MEDIA_TYPE_OCI_CONFIG,
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_LAYER,
    MEDIA_TYPE_OCI_LAYER_GZIP,
    MEDIA_TYPE_OCI_MANIFEST,
    Descriptor,
    Platform,
    is_index_type,
    is_manifest_type,
)

__all__ = [
    "BuiltImage",
    "Layer",
    "LayerSpec",
    "PlatformImage",
    "build_image",
    "build_index",
    "build_layer",
    "make_tar",
    "write_image",
]

#: File paths (``/``-separated, relative) to their bytes; a path ending in ``/`` is a directory.
LayerSpec = Mapping[str, bytes]

_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"


def _clean_path(path: str) -> str:
    clean = posixpath.normpath(path.strip().lstrip("/"))
    if not path.strip() or clean in (".", "") or clean == ".." or clean.startswith("../"):
        raise ValueError(
            f"layer path {path!r} does not name a file inside the layer: use a relative path "
            "such as 'etc/hostname'"
        )
    return clean


def _tar_info(name: str, *, directory: bool, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.size = size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def make_tar(files: LayerSpec) -> bytes:
    """The layer tar of ``files``: sorted entries, parent directories, fixed metadata.

    Raises:
        ValueError: a path is absolute-only, empty or escapes the layer, a path is given twice,
            or a directory path (ending in ``/``) has content.
    """
    entries: dict[str, bytes | None] = {}
    for raw, data in files.items():
        if not isinstance(data, bytes | bytearray):
            raise TypeError(f"layer file {raw!r} must map to bytes, got {type(data).__name__}")
        directory = raw.endswith("/")
        if directory and data:
            raise ValueError(f"layer path {raw!r} ends in '/' (a directory) but has content")
        path = _clean_path(raw)
        if path in entries:
            raise ValueError(f"layer path {raw!r} is given twice (as {path!r})")
        entries[path] = None if directory else bytes(data)
    for path in list(entries):
        parent = posixpath.dirname(path)
        while parent:
            entries.setdefault(parent, None)
            parent = posixpath.dirname(parent)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for path in sorted(entries):
            content = entries[path]
            if content is None:
                archive.addfile(_tar_info(path, directory=True))
            else:
                info = _tar_info(path, directory=False, size=len(content))
                archive.addfile(info, io.BytesIO(content))
    return out.getvalue()


@dataclass(frozen=True)
class Layer:
    """One built layer: the tar, the blob (gzip or the tar), its diff ID and annotations."""

    tar: bytes
    blob: bytes
    compressed: bool = True
    annotations: dict[str, str] = field(default_factory=dict, compare=False)

    @property
    def diff_id(self) -> str:
        """The sha256 of the uncompressed tar."""
        return digest_of(self.tar)

    @property
    def digest(self) -> str:
        return digest_of(self.blob)

    def descriptor(self, *, docker: bool = False) -> Descriptor:
        """The layer's descriptor in an OCI (or Docker) manifest."""
        if docker:
            media_type = MEDIA_TYPE_DOCKER_LAYER_GZIP if self.compressed else _DOCKER_LAYER
        else:
            media_type = MEDIA_TYPE_OCI_LAYER_GZIP if self.compressed else MEDIA_TYPE_OCI_LAYER
        return Descriptor(media_type, self.digest, len(self.blob), dict(self.annotations))


def build_layer(
    files: LayerSpec, *, compressed: bool = True, annotations: Mapping[str, str] | None = None
) -> Layer:
    """A layer from ``files``; ``compressed`` makes the blob gzip (mtime 0), else the tar.

    ``annotations`` go on the layer's descriptor (``containerd.io/snapshot/*`` keys reach
    the snapshotter as labels).
    """
    tar = make_tar(files)
    blob = gzip.compress(tar, mtime=0) if compressed else tar
    return Layer(tar, blob, compressed, dict(annotations or {}))


@dataclass(frozen=True)
class PlatformImage:
    """One platform's manifest, config and layers, with their diff IDs and chain IDs."""

    platform: Platform
    manifest: Descriptor
    manifest_doc: Manifest
    config: Descriptor
    config_doc: ImageConfig
    layers: tuple[Descriptor, ...]
    diff_ids: tuple[str, ...]
    chain_ids: tuple[str, ...]


@dataclass(frozen=True)
class BuiltImage:
    """A built image: its name, target descriptor, every blob by digest, and per platform."""

    name: str
    target: Descriptor
    blobs: dict[str, bytes]
    platforms: dict[str, PlatformImage]

    @property
    def single(self) -> PlatformImage:
        """The one platform image of a single-platform build.

        Raises:
            ValueError: the image has several platforms (use :meth:`platform`).
        """
        if len(self.platforms) != 1:
            raise ValueError(
                f"image {self.name!r} has {len(self.platforms)} platforms "
                f"({', '.join(self.platforms)}): use .platform('<os>/<arch>')"
            )
        return next(iter(self.platforms.values()))

    def platform(self, platform: Platform | str) -> PlatformImage:
        """The platform image for ``platform`` ("linux/amd64" or a :class:`Platform`).

        Raises:
            KeyError: the image has no such platform (the message lists those it has).
        """
        key = str(platform)
        if key not in self.platforms:
            raise KeyError(
                f"image {self.name!r} has no platform {key!r}: it has {list(self.platforms)}"
            )
        return self.platforms[key]

    def image(self) -> Image:
        """The image record to create in an image store (name and target)."""
        return Image(self.name, self.target)


def _as_layer(spec: LayerSpec | Layer) -> Layer:
    return spec if isinstance(spec, Layer) else build_layer(spec)


def _build_platform(
    layers: Sequence[LayerSpec | Layer],
    platform: Platform,
    docker: bool,
    config_labels: Mapping[str, str] | None,
    blobs: dict[str, bytes],
) -> tuple[PlatformImage, list[Layer]]:
    built = [_as_layer(spec) for spec in layers]
    diff_ids = tuple(layer.diff_id for layer in built)
    config_doc = ImageConfig(
        diff_ids, platform.architecture, platform.os, platform.variant, dict(config_labels or {})
    )
    config_bytes = config_doc.to_json()
    config_type = MEDIA_TYPE_DOCKER_CONFIG if docker else MEDIA_TYPE_OCI_CONFIG
    config = Descriptor(config_type, digest_of(config_bytes), len(config_bytes))
    layer_descs = tuple(layer.descriptor(docker=docker) for layer in built)
    manifest_type = MEDIA_TYPE_DOCKER_MANIFEST if docker else MEDIA_TYPE_OCI_MANIFEST
    manifest_doc = Manifest(config, layer_descs, manifest_type)
    manifest_bytes = manifest_doc.to_json()
    manifest = Descriptor(manifest_type, digest_of(manifest_bytes), len(manifest_bytes))
    blobs.setdefault(manifest.digest, manifest_bytes)
    blobs.setdefault(config.digest, config_bytes)
    found = PlatformImage(
        platform,
        manifest,
        manifest_doc,
        config,
        config_doc,
        layer_descs,
        diff_ids,
        tuple(chain_ids(diff_ids)),
    )
    return found, built


def build_image(
    name: str,
    layers: Sequence[LayerSpec | Layer],
    *,
    platform: Platform | None = None,
    docker: bool = False,
    config_labels: Mapping[str, str] | None = None,
) -> BuiltImage:
    """A single-platform image whose target is its manifest.

    Layers may repeat (the same digest twice in one manifest) and may be shared with other
    images (pass the same :class:`Layer`, or equal specs).  ``config_labels`` go into the
    config (``config.Labels``), which makes otherwise equal configs differ.
    """
    blobs: dict[str, bytes] = {}
    found, built = _build_platform(layers, platform or Platform(), docker, config_labels, blobs)
    for layer in built:
        blobs.setdefault(layer.digest, layer.blob)
    return BuiltImage(name, found.manifest, blobs, {str(found.platform): found})


def build_index(
    name: str,
    platforms: Mapping[Platform | str, Sequence[LayerSpec | Layer]],
    *,
    docker: bool = False,
    config_labels: Mapping[str, str] | None = None,
) -> BuiltImage:
    """A multi-platform image: an OCI index (or Docker manifest list) of one manifest each.

    Keys are :class:`Platform` or "os/arch[/variant]" strings, in the index's order.

    Raises:
        ValueError: no platforms, a malformed platform string, or a platform given twice.
    """
    if not platforms:
        raise ValueError(f"build_index({name!r}) needs at least one platform")
    blobs: dict[str, bytes] = {}
    found: dict[str, PlatformImage] = {}
    layers: list[Layer] = []
    for key, specs in platforms.items():
        platform = key if isinstance(key, Platform) else _parse_platform(key)
        if str(platform) in found:
            raise ValueError(f"build_index({name!r}) got platform {str(platform)!r} twice")
        image, built = _build_platform(specs, platform, docker, config_labels, blobs)
        found[str(platform)] = image
        layers.extend(built)
    for layer in layers:
        blobs.setdefault(layer.digest, layer.blob)
    manifests = tuple(
        Descriptor(p.manifest.media_type, p.manifest.digest, p.manifest.size, platform=p.platform)
        for p in found.values()
    )
    index_type = MEDIA_TYPE_DOCKER_MANIFEST_LIST if docker else MEDIA_TYPE_OCI_INDEX
    index_bytes = Index(manifests, index_type).to_json()
    target = Descriptor(index_type, digest_of(index_bytes), len(index_bytes))
    return BuiltImage(name, target, {target.digest: index_bytes, **blobs}, found)


def _parse_platform(text: str) -> Platform:
    parts = text.split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError(f"platform {text!r} is not 'os/arch' or 'os/arch/variant'")
    return Platform(*parts)


def _ref_key(desc: Descriptor) -> str:
    # remotes.MakeRefKey.
    if is_manifest_type(desc.media_type):
        return f"manifest-{desc.digest}"
    if is_index_type(desc.media_type):
        return f"index-{desc.digest}"
    if desc.media_type in (MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_DOCKER_CONFIG):
        return f"config-{desc.digest}"
    return f"layer-{desc.digest}"


def write_image(
    ctx: ModelContext, store: Ingester, image: BuiltImage, *, gc_labels: bool = False
) -> None:
    """Write every blob of ``image`` into ``store`` (children first), for tests.

    With ``gc_labels`` the index and manifests get the seed's child labels
    (``containerd.io/gc.ref.content.<i>``), so the garbage collector sees the image's tree.
    """
    writes: dict[str, tuple[Descriptor, dict[str, str]]] = {}
    for p in image.platforms.values():
        for layer in p.layers:
            writes.setdefault(layer.digest, (layer, {}))
        writes.setdefault(p.config.digest, (p.config, {}))
        kids = [p.config, *p.layers]
        writes.setdefault(p.manifest.digest, (p.manifest, _child_labels(kids, gc_labels)))
    if is_index_type(image.target.media_type):
        kids = [p.manifest for p in image.platforms.values()]
        writes[image.target.digest] = (image.target, _child_labels(kids, gc_labels))
    for digest, (desc, labels) in writes.items():
        write_blob(ctx, store, _ref_key(desc), image.blobs[digest], desc, labels=labels or None)


def _child_labels(kids: Sequence[Descriptor], enabled: bool) -> dict[str, str]:
    if not enabled:
        return {}
    return {f"{GC_REF_CONTENT}.{i}": kid.digest for i, kid in enumerate(kids)}
