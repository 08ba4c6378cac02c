"""The v1.6 preset reproduces the label layout a real containerd 1.6.20 leaves.

``../shared/vectors/containerd-1.6.20-chainids.json`` was observed on a real daemon after
importing and unpacking a three-layer OCI image into ``native``.  We cannot rebuild that image
byte for byte, so the comparison is of the layout: label keys per blob kind, which label
points at what, and the snapshot chain; the chain ID arithmetic is checked on the real digests.
"""

from __future__ import annotations

from typing import Any

from unpacksim.model.builders import build_image, build_layer
from unpacksim.model.digest import chain_ids
from unpacksim.model.labels import DISTRIBUTION_SOURCE_PREFIX
from unpacksim.unpack.drive import pull_images
from unpacksim.unpack.interface import resolve
from unpacksim.unpack.world import World


def _by_kind(vectors: dict[str, Any]) -> dict[str, list[dict[str, str]]]:
    kinds: dict[str, list[dict[str, str]]] = {}
    for key, labels in vectors["content_labels"].items():
        kinds.setdefault(key.split(" ", 1)[0], []).append(labels)
    return kinds


def _pull_three_layers(preset_name: str) -> tuple[World, Any]:
    image = build_image(
        "registry.test/vectors:1", [build_layer({f"layer{i}/file": bytes([i])}) for i in range(3)]
    )
    world = World.create(**resolve(preset_name).world_options)
    world.push(image)
    (result,), _ = pull_images(world, preset_name, [image.name])
    assert result.ok
    return world, image.single


def test_chain_ids_of_the_real_diff_ids(chainid_vectors: dict[str, Any]) -> None:
    assert chain_ids(chainid_vectors["diff_ids"]) == chainid_vectors["chain_ids"]
    snapshots = chainid_vectors["snapshots"]
    assert [s["parent"] for s in snapshots] == ["", *chainid_vectors["chain_ids"][:-1]]


def test_v16_label_layout_matches_the_real_daemon(chainid_vectors: dict[str, Any]) -> None:
    world, image = _pull_three_layers("v1.6")
    ns = world.db.namespace("default")

    def labels(digest: str) -> dict[str, str]:
        found = ns.content[digest].labels
        # an import sets no distribution source; a pull does
        return {k: v for k, v in found.items() if not k.startswith(DISTRIBUTION_SOURCE_PREFIX)}

    real = _by_kind(chainid_vectors)
    manifest = labels(image.manifest.digest)
    assert sorted(manifest) == sorted(real["manifest"][0])
    assert manifest["containerd.io/gc.ref.content.config"] == image.config.digest
    assert [manifest[f"containerd.io/gc.ref.content.l.{i}"] for i in range(3)] == [
        d.digest for d in image.layers
    ]
    config = labels(image.config.digest)
    assert sorted(config) == sorted(real["config"][0])
    assert config["containerd.io/gc.ref.snapshot.native"] == image.chain_ids[-1]
    for layer, diff_id in zip(image.layers, image.diff_ids, strict=True):
        assert labels(layer.digest) == {"containerd.io/uncompressed": diff_id}
        assert sorted(labels(layer.digest)) == sorted(real["layer"][0])
    snapshots = ns.snapshotter("native")
    want = [(s["parent"] != "", s["kind"]) for s in chainid_vectors["snapshots"]]
    have = [(bool(snapshots[c].parent), snapshots[c].kind.value) for c in image.chain_ids]
    assert have == want
    assert list(snapshots) == list(image.chain_ids)


def test_the_seed_writes_index_keys_instead(chainid_vectors: dict[str, Any]) -> None:
    world, image = _pull_three_layers("seed")
    manifest = world.db.namespace("default").content[image.manifest.digest].labels
    keys = sorted(k for k in manifest if k.startswith("containerd.io/gc.ref.content."))
    assert keys == [f"containerd.io/gc.ref.content.{i}" for i in range(4)]
    assert keys != sorted(_by_kind(chainid_vectors)["manifest"][0])
