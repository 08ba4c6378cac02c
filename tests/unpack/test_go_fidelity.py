"""Details of the Go a line-by-line review found the port had wrong, one test each.

Each test names the containerd file and lines it holds the port to (``03ab1b2cac`` unless it
says otherwise).
"""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

import pytest

from unpacksim.model.builders import build_image, build_layer
from unpacksim.model.context import Ctx
from unpacksim.model.digest import digest_of
from unpacksim.model.errdefs import NotFound
from unpacksim.model.images import Manifest
from unpacksim.model.oci import (
    MEDIA_TYPE_OCI_CONFIG,
    MEDIA_TYPE_OCI_MANIFEST,
    Descriptor,
    Platform,
)
from unpacksim.unpack.drive import intercept, start_pull
from unpacksim.unpack.goerrors import GoError
from unpacksim.unpack.handlers import (
    child_gc_labels,
    child_labels,
    children,
    children_handler,
    set_children_labels,
)
from unpacksim.unpack.platforms import normalize, only
from unpacksim.unpack.results import PullOptions, PullResult
from unpacksim.unpack.world import World

RAW = Ctx("default")
CHECKPOINT_CONFIG = "application/vnd.containerd.container.checkpoint.config.v1+proto"


def _pull(world: World, ref: str, **kw: Any) -> PullResult:
    handle = start_pull(world, "seed", ref, **kw)
    outcome = world.run()
    assert handle.result is not None, outcome.describe()
    return handle.result


def _put(world: World, ref: str, config_bytes: bytes, config_type: str, layers: Any) -> str:
    """Serve a manifest with the given config bytes; return the config digest."""
    config = Descriptor(config_type, digest_of(config_bytes), len(config_bytes))
    manifest_bytes = Manifest(config, tuple(layer.descriptor() for layer in layers)).to_json()
    manifest = Descriptor(MEDIA_TYPE_OCI_MANIFEST, digest_of(manifest_bytes), len(manifest_bytes))
    blobs = {config.digest: config_bytes, manifest.digest: manifest_bytes}
    blobs.update({layer.digest: layer.blob for layer in layers})
    world.registry.put(ref, manifest, blobs)
    return config.digest


# --- images/mediatypes.go ChildGCLabels (c8b14ae4c L129-L145) --------------------------------


def test_typed_child_labels_call_every_known_config_a_config() -> None:
    # ChildGCLabels tests IsKnownConfig, which includes the checkpoint config type.
    kid = Descriptor(CHECKPOINT_CONFIG, "sha256:" + "1" * 64, 10)
    assert child_gc_labels(kid) == ["containerd.io/gc.ref.content.config"]
    assert list(child_labels([kid], child_gc_labels)) == ["containerd.io/gc.ref.content.config"]


# --- images/handlers.go SetChildrenMappedLabels (v1.6.20 L216-L257) --------------------------


def test_set_children_labels_updates_even_when_the_map_names_no_key() -> None:
    # `if len(children) > 0 { ... manager.Update(ctx, info, fields...) }` runs with an empty
    # field list when the map returns no key; Update then replaces the labels with none.
    image = build_image("registry.test/a:1", [build_layer({"a": b"1"})])
    world = World.create()
    world.push(image)
    assert _pull(world, image.name, opts=PullOptions(unpack=False)).ok
    manifest = image.single.manifest
    assert world.db.namespace("default").content[manifest.digest].labels != {}

    handler = set_children_labels(world, children_handler(world), lambda desc: [])

    def run() -> Generator[Any, Any, None]:
        found = yield from handler(world.context(), manifest)
        assert len(found) == 2

    world.go(run(), name="label")
    world.run()
    assert world.db.namespace("default").content[manifest.digest].labels == {}


# --- images/image.go Children (L330-L369) ----------------------------------------------------


def test_children_of_a_manifest_without_layers_is_its_config() -> None:
    # json.Unmarshal into ocispec.Manifest leaves Layers nil when "layers" is absent.
    config = Descriptor(MEDIA_TYPE_OCI_CONFIG, "sha256:" + "2" * 64, 3)
    manifest = Descriptor(MEDIA_TYPE_OCI_MANIFEST, "sha256:" + "3" * 64, 10)
    blob = json.dumps({"schemaVersion": 2, "config": config.to_json()}).encode()
    assert children(manifest, blob) == [config]
    with pytest.raises(GoError, match="cannot unmarshal"):
        children(manifest, b"[]")


def test_a_manifest_without_layers_is_pulled_through_the_fallback() -> None:
    world = World.create()
    config_bytes = json.dumps({"os": "linux", "architecture": "amd64"}).encode()
    config = Descriptor(MEDIA_TYPE_OCI_CONFIG, digest_of(config_bytes), len(config_bytes))
    manifest_bytes = json.dumps({"schemaVersion": 2, "config": config.to_json()}).encode()
    manifest = Descriptor(MEDIA_TYPE_OCI_MANIFEST, digest_of(manifest_bytes), len(manifest_bytes))
    world.registry.put(
        "registry.test/bare:1",
        manifest,
        {config.digest: config_bytes, manifest.digest: manifest_bytes},
    )
    result = _pull(world, "registry.test/bare:1")
    assert result.ok and result.fallback_unpack and result.unpacks == ()


# --- image.go getLayers (L364-L389): "failed to resolve rootfs" ----------------------------


def test_fallback_config_without_rootfs_has_no_diff_ids() -> None:
    # images.RootFS unmarshals into ocispec.Image: no rootfs is nil DiffIDs, not an error;
    # getLayers then fails on the count (L376-L378).
    world = World.create()
    layers = [build_layer({"a": b"1"}), build_layer({"b": b"2"})]
    config_bytes = json.dumps({"os": "linux", "architecture": "amd64"}).encode()
    _put(world, "registry.test/odd:1", config_bytes, "application/vnd.example.config+json", layers)
    result = _pull(world, "registry.test/odd:1")
    assert result.fallback_unpack and result.error_class == "other"
    assert result.message == (
        "failed to unpack image on snapshotter native: mismatched image rootfs and manifest layers"
    )


def test_fallback_config_read_error_is_wrapped_failed_to_resolve_rootfs() -> None:
    # getLayers wraps every error of i.i.RootFS (L372-L375), keeping its class.
    world = World.create()
    layers = [build_layer({"a": b"1"})]
    config_bytes = json.dumps({"rootfs": {"diff_ids": [layers[0].diff_id]}}).encode()
    config = _put(
        world, "registry.test/odd:2", config_bytes, "application/vnd.example.config+json", layers
    )

    def config_gone(ctx: Any, desc: Descriptor) -> None:
        if desc.digest == config:  # only the fallback reads this config
            world.content_store.delete(RAW, config)

    intercept(world, "content", read_blob=config_gone)
    result = _pull(world, "registry.test/odd:2")
    assert result.fallback_unpack and isinstance(result.error, NotFound)
    assert result.message == (
        "failed to unpack image on snapshotter native: failed to resolve rootfs: "
        f"content digest {config}: not found"
    )


# --- platforms/database.go normalizeOS, normalizeArch (L73-L117) -----------------------------


@pytest.mark.parametrize(
    ("given", "want"),
    [
        (Platform("linux", "i386"), Platform("linux", "386")),
        (Platform("linux", "x86_64", "v2"), Platform("linux", "amd64")),
        (Platform("linux", "armel"), Platform("linux", "arm", "v6")),
        (Platform("linux", "ARM64", "V8"), Platform("linux", "arm64")),
        (Platform("MacOS", "amd64"), Platform("darwin", "amd64")),
        (Platform("", "amd64"), Platform("linux", "amd64")),  # runtime.GOOS
    ],
)
def test_normalize_as_the_seed_does(given: Platform, want: Platform) -> None:
    assert normalize(given) == want


def test_only_arm_v7_accepts_armel() -> None:
    assert only(Platform("linux", "arm", "v7")).match(Platform("linux", "armel"))
