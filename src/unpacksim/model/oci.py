"""OCI descriptors, media types and platforms (``image-spec/specs-go/v1``, ``images/mediatypes.go``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from unpacksim.model.digest import validate_digest

__all__ = [
    "MEDIA_TYPE_DOCKER_CONFIG",
    "MEDIA_TYPE_DOCKER_LAYER_GZIP",
    "MEDIA_TYPE_DOCKER_MANIFEST",
    "MEDIA_TYPE_DOCKER_MANIFEST_LIST",
    "MEDIA_TYPE_OCI_CONFIG",
    "MEDIA_TYPE_OCI_INDEX",
    "MEDIA_TYPE_OCI_LAYER",
    "MEDIA_TYPE_OCI_LAYER_GZIP",
    "MEDIA_TYPE_OCI_MANIFEST",
    "Descriptor",
    "Platform",
    "is_config_type",
    "is_index_type",
    "is_layer_type",
    "is_manifest_type",
]

MEDIA_TYPE_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_TYPE_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_TYPE_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_TYPE_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_TYPE_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_TYPE_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_TYPE_DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_TYPE_DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
MEDIA_TYPE_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
_DOCKER_FOREIGN = "application/vnd.docker.image.rootfs.foreign.diff.tar"
_DOCKER_FOREIGN_GZIP = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"


@dataclass(frozen=True, order=True)
class Platform:
    """An OCI platform; ``str()`` is containerd's ``platforms.Format``."""

    os: str = "linux"
    architecture: str = "amd64"
    variant: str = ""

    def __str__(self) -> str:
        parts = [self.os, self.architecture] + ([self.variant] if self.variant else [])
        return "/".join(parts)

    def to_json(self) -> dict[str, str]:
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict, compare=False, hash=False)
    platform: Platform | None = None

    def __post_init__(self) -> None:
        validate_digest(self.digest)
        if self.size < 0:
            raise ValueError(f"descriptor size must not be negative, got {self.size}")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            out["annotations"] = dict(sorted(self.annotations.items()))
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        return out


def _strip_suffix(media_type: str) -> str:
    return media_type.split("+", 1)[0]


def is_layer_type(media_type: str) -> bool:
    """``images.IsLayerType``: OCI layers of any kind, Docker layers with any ``+suffix`` stripped."""
    if media_type.startswith("application/vnd.oci.image.layer."):
        return True
    return _strip_suffix(media_type) in {
        _DOCKER_LAYER,
        _DOCKER_FOREIGN,
    } or media_type in {MEDIA_TYPE_DOCKER_LAYER_GZIP, _DOCKER_FOREIGN_GZIP}


def is_manifest_type(media_type: str) -> bool:
    return media_type in {MEDIA_TYPE_OCI_MANIFEST, MEDIA_TYPE_DOCKER_MANIFEST}


def is_index_type(media_type: str) -> bool:
    return media_type in {MEDIA_TYPE_OCI_INDEX, MEDIA_TYPE_DOCKER_MANIFEST_LIST}


def is_config_type(media_type: str) -> bool:
    return media_type in {MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_DOCKER_CONFIG}
