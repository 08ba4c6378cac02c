"""Images: the image store (``metadata/images.go``), OCI documents, and ``images.Children``.

:class:`ImageStore` keeps image records per namespace with containerd's checks and errors.
:class:`Manifest`, :class:`Index` and :class:`ImageConfig` are the OCI (or Docker schema 2)
JSON documents with a deterministic ``to_json()`` (compact, fields in the Go structs' order)
and a ``from_json()``; the config carries ``rootfs.diff_ids``.  :func:`children` mirrors
``images.Children`` (``images/image.go``) given the blob's bytes.
"""

from __future__ import annotations

import builtins
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from unpacksim.model.context import ModelContext, namespace_of
from unpacksim.model.db import DB, ImageRecord, NamespaceRecord
from unpacksim.model.digest import go_digest_error
from unpacksim.model.errdefs import AlreadyExists, InvalidArgument, NotFound, Unknown
from unpacksim.model.filters import check_map, go_quote, parse_filters
from unpacksim.model.oci import (
    MEDIA_TYPE_OCI_INDEX,
    MEDIA_TYPE_OCI_MANIFEST,
    Descriptor,
    Platform,
    is_config_type,
    is_index_type,
    is_manifest_type,
)

__all__ = [
    "Image",
    "ImageConfig",
    "ImageStore",
    "Index",
    "Manifest",
    "children",
    "descriptor_from_json",
    "is_known_config",
]

_LABEL_MAX = 4096  # labels/validate.go
# images/mediatypes.go MediaTypeContainerd1Checkpoint and ...CheckpointConfig.
_CHECKPOINT = "application/vnd.containerd.container.criu.checkpoint.criu.tar"
_CHECKPOINT_CONFIG = "application/vnd.containerd.container.checkpoint.config.v1+proto"


@dataclass(frozen=True)
class Image:
    """``images.Image``: a name, the target descriptor, labels and times."""

    name: str
    target: Descriptor
    labels: dict[str, str] = field(default_factory=dict)
    created_at: float = 0.0
    updated_at: float = 0.0


# --- OCI documents ------------------------------------------------------------------------


def _dumps(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()


def _loads(data: bytes, kind: str) -> dict[str, Any]:
    try:
        doc = json.loads(data)
    except ValueError as exc:
        # Go's json.Unmarshal error is a plain error; the model has no better class.
        raise Unknown(f"failed to unmarshal {kind}: {exc}") from None
    if not isinstance(doc, dict):
        raise Unknown(f"failed to unmarshal {kind}: not a JSON object")
    return doc


def descriptor_from_json(raw: dict[str, Any]) -> Descriptor:
    """An OCI descriptor from its JSON object."""
    platform = None
    if isinstance(raw.get("platform"), dict):
        p = raw["platform"]
        platform = Platform(p.get("os", ""), p.get("architecture", ""), p.get("variant", ""))
    return Descriptor(
        media_type=raw.get("mediaType", ""),
        digest=raw["digest"],
        size=int(raw.get("size", 0)),
        annotations=dict(raw.get("annotations") or {}),
        platform=platform,
    )


@dataclass(frozen=True)
class Manifest:
    """An image manifest (``ocispec.Manifest`` or Docker schema 2)."""

    config: Descriptor
    layers: tuple[Descriptor, ...]
    media_type: str = MEDIA_TYPE_OCI_MANIFEST
    annotations: dict[str, str] = field(default_factory=dict, compare=False)

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "config": self.config.to_json(),
            "layers": [layer.to_json() for layer in self.layers],
        }
        if self.annotations:
            doc["annotations"] = dict(sorted(self.annotations.items()))
        return _dumps(doc)

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        doc = _loads(data, "manifest")
        return cls(
            config=descriptor_from_json(doc["config"]),
            layers=tuple(descriptor_from_json(d) for d in doc.get("layers") or []),
            media_type=doc.get("mediaType", MEDIA_TYPE_OCI_MANIFEST),
            annotations=dict(doc.get("annotations") or {}),
        )


@dataclass(frozen=True)
class Index:
    """An image index (``ocispec.Index``) or Docker manifest list."""

    manifests: tuple[Descriptor, ...]
    media_type: str = MEDIA_TYPE_OCI_INDEX

    def to_json(self) -> bytes:
        doc = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "manifests": [m.to_json() for m in self.manifests],
        }
        return _dumps(doc)

    @classmethod
    def from_json(cls, data: bytes) -> Index:
        doc = _loads(data, "index")
        return cls(
            manifests=tuple(descriptor_from_json(d) for d in doc.get("manifests") or []),
            media_type=doc.get("mediaType", MEDIA_TYPE_OCI_INDEX),
        )


@dataclass(frozen=True)
class ImageConfig:
    """An image config (``ocispec.Image``): the platform, ``rootfs.diff_ids``, labels."""

    diff_ids: tuple[str, ...]
    architecture: str = "amd64"
    os: str = "linux"
    variant: str = ""
    labels: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def platform(self) -> Platform:
        return Platform(self.os, self.architecture, self.variant)

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {"architecture": self.architecture}
        if self.variant:
            doc["variant"] = self.variant
        doc["os"] = self.os
        doc["config"] = {"Labels": dict(sorted(self.labels.items()))} if self.labels else {}
        doc["rootfs"] = {"type": "layers", "diff_ids": list(self.diff_ids)}
        return _dumps(doc)

    @classmethod
    def from_json(cls, data: bytes) -> ImageConfig:
        doc = _loads(data, "image config")
        rootfs = doc.get("rootfs") or {}
        return cls(
            diff_ids=tuple(rootfs.get("diff_ids") or []),
            architecture=doc.get("architecture", ""),
            os=doc.get("os", ""),
            variant=doc.get("variant", ""),
            labels=dict((doc.get("config") or {}).get("Labels") or {}),
        )


def children(desc: Descriptor, blob: bytes) -> list[Descriptor]:
    """``images.Children``: a manifest's [config, layers...], an index's manifests.

    Layers, known configs and unknown types have none (Go logs a warning for unknown ones).

    Raises:
        Unknown: the blob of a manifest or index is not valid JSON.
    """
    if is_manifest_type(desc.media_type):
        manifest = Manifest.from_json(blob)
        return [manifest.config, *manifest.layers]
    if is_index_type(desc.media_type):
        return list(Index.from_json(blob).manifests)
    return []


def is_known_config(media_type: str) -> bool:
    """``images.IsKnownConfig``: image configs and containerd's two checkpoint types."""
    return is_config_type(media_type) or media_type in (_CHECKPOINT, _CHECKPOINT_CONFIG)


# --- the image store -----------------------------------------------------------------------


def _validate_image(image: Image) -> None:
    # metadata/images.go validateImage and validateTarget.
    if not image.name:
        raise InvalidArgument("image name must not be empty")
    for key, value in sorted(image.labels.items()):
        # labels.Validate counts bytes (Go's len of a string) and shows the key's first 10.
        raw_key = key.encode()
        if len(raw_key) + len(value.encode()) > _LABEL_MAX:
            shown = raw_key[:10].decode(errors="replace")
            raise InvalidArgument(
                f"image.Labels: label key and value greater than maximum size "
                f"({_LABEL_MAX} bytes), key: {shown}"
            )
    target = image.target
    error = go_digest_error(target.digest)
    if error is not None:
        raise InvalidArgument(f"Target.Digest {go_quote(target.digest)} invalid: {error}")
    if target.size <= 0:
        raise InvalidArgument("Target.Size must be greater than zero")
    if not target.media_type:
        raise InvalidArgument("Target.MediaType must be set")


def _clean(mapping: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in sorted(mapping.items()) if v}


def _written(image: Image, now: float, created_at: float) -> Image:
    """``image`` as ``writeImage`` leaves it: empty labels and annotations dropped, times set.

    boltutil.WriteLabels and WriteAnnotations delete the empty values from the caller's maps,
    so what Create and Update return is cleaned too; the target keeps every field.
    """
    target = replace(image.target, annotations=_clean(image.target.annotations))
    return replace(
        image, target=target, labels=_clean(image.labels), created_at=created_at, updated_at=now
    )


def _record_of(image: Image) -> ImageRecord:
    """What bolt keeps: ``writeImage`` stores only the target's digest, media type, size and
    annotations, so a later Get returns no platform (``readImage``)."""
    target = replace(image.target, platform=None)
    return ImageRecord(image.name, target, dict(image.labels), image.created_at, image.updated_at)


def _image(record: ImageRecord) -> Image:
    return Image(
        record.name, record.target, dict(record.labels), record.created_at, record.updated_at
    )


def _adapt_image(image: Image) -> Callable[[tuple[str, ...]], tuple[str, bool]]:
    # metadata/adaptors.go adaptImage.
    def field_of(path: tuple[str, ...]) -> tuple[str, bool]:
        target = image.target
        if path[0] == "name":
            return image.name, bool(image.name)
        if path[0] == "target" and len(path) >= 2:
            if path[1] == "digest":
                return target.digest, bool(target.digest)
            if path[1] == "mediatype":
                return target.media_type, bool(target.media_type)
        if path[0] == "labels":
            return check_map(path[1:], image.labels)
        if path[0] == "annotations":
            return check_map(path[1:], target.annotations)
        return "", False

    return field_of


class ImageStore:
    """``metadata/images.go`` ``imageStore`` over ``db``."""

    def __init__(self, db: DB) -> None:
        self.db = db

    def _ns(self, ctx: ModelContext) -> NamespaceRecord:
        # Not created here: only a write that commits creates the namespace's buckets.
        return self.db.namespace_view(namespace_of(ctx))

    def _record(self, ns: NamespaceRecord, name: str) -> ImageRecord:
        record = ns.images.get(name)
        if record is None:
            raise NotFound(f"image {go_quote(name)}")
        return record

    def _committed(self) -> None:
        self.db.mutated(self.db.dirty > 0)

    def get(self, ctx: ModelContext, name: str) -> Image:
        """The image ``name``.

        Raises:
            FailedPrecondition: no namespace in ``ctx``.
            NotFound: no such image ('image "<name>"').
        """
        return _image(self._record(self._ns(ctx), name))

    def list(self, ctx: ModelContext, *filters: str) -> builtins.list[Image]:
        """The images matching ``filters``, by name.

        Fields: ``name``, ``target.digest``, ``target.mediatype``, ``labels.<key>``,
        ``annotations.<key>`` (the target's annotations).

        Raises:
            FailedPrecondition: no namespace in ``ctx``.
            InvalidArgument: a filter does not parse (wrapped twice, as Go does).
        """
        ns = self._ns(ctx)
        try:
            flt = parse_filters(*filters)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{exc}: invalid argument") from None
        images = [_image(ns.images[name]) for name in sorted(ns.images)]
        return [image for image in images if flt.match(_adapt_image(image))]

    def create(self, ctx: ModelContext, image: Image) -> Image:
        """Create ``image``; its times are set now.  Empty label values are dropped.

        Returns ``image`` as written (the whole target); the record keeps only the target's
        digest, media type, size and annotations.

        Raises:
            FailedPrecondition: no namespace in ``ctx``.
            InvalidArgument: an empty name, an oversized label, or an invalid target
                ("Target.Size must be greater than zero", "Target.MediaType must be set", ...).
            AlreadyExists: the namespace has an image of that name ('image "<name>"').
        """
        ns = self._ns(ctx)
        _validate_image(image)
        if image.name in ns.images:
            raise AlreadyExists(f"image {go_quote(image.name)}")
        now = self.db.now()
        created = _written(image, now, now)
        self.db.namespace(ns.name).images[image.name] = _record_of(created)
        self._committed()
        return created

    def update(self, ctx: ModelContext, image: Image, *fieldpaths: str) -> Image:
        """Update the image ``image.name`` from ``image``; returns the result.

        No field paths replace everything but the creation time.  Paths: ``labels``,
        ``labels.<key>``, ``annotations``, ``annotations.<key>`` (the target's) and
        ``target`` (replaced as a unit); a ``<key>`` absent from ``image`` is deleted.
        Returns the image as written (with the given target's fields when the target came
        from ``image``); the record keeps what :meth:`create` keeps.

        Raises:
            FailedPrecondition: no namespace in ``ctx``.
            InvalidArgument: an empty name ("image name is required for update"), another
                field path ('cannot update "<path>" field on image "<name>"'), or an
                invalid result (as :meth:`create`).
            NotFound: no such image ('image "<name>"').
        """
        ns = self._ns(ctx)
        if not image.name:
            raise InvalidArgument("image name is required for update")
        record = self._record(ns, image.name)
        updated = _apply_fieldpaths(_image(record), image, fieldpaths) if fieldpaths else image
        _validate_image(updated)
        result = _written(updated, self.db.now(), record.created_at)
        stored = _record_of(result)
        record.target, record.labels, record.updated_at = (
            stored.target,
            stored.labels,
            stored.updated_at,
        )
        self._committed()
        return result

    def delete(self, ctx: ModelContext, name: str) -> None:
        """Delete the image record and mark the DB dirty (content is left to GC).

        ``images.SynchronousDelete`` is modelled by the caller running GC afterwards.

        Raises:
            FailedPrecondition: no namespace in ``ctx``.
            NotFound: no such image ('image "<name>"').
        """
        ns = self._ns(ctx)
        self._record(ns, name)
        del ns.images[name]
        self.db.mark_dirty()
        self._committed()


def _apply_fieldpaths(current: Image, image: Image, fieldpaths: tuple[str, ...]) -> Image:
    labels = dict(current.labels)
    target = current.target
    annotations = dict(target.annotations)
    for path in fieldpaths:
        if path.startswith("labels."):
            key = path[len("labels.") :]
            labels[key] = image.labels.get(key, "")
        elif path.startswith("annotations."):
            key = path[len("annotations.") :]
            annotations[key] = image.target.annotations.get(key, "")
        elif path == "labels":
            labels = dict(image.labels)
        elif path == "target":
            target, annotations = image.target, dict(image.target.annotations)
        elif path == "annotations":
            annotations = dict(image.target.annotations)
        else:
            raise InvalidArgument(
                f"cannot update {go_quote(path)} field on image {go_quote(image.name)}"
            )
    return replace(current, labels=labels, target=replace(target, annotations=annotations))
