"""Fault-free pulls leave the state containerd leaves: chain, parents, labels, content.

The expected state comes from :mod:`unpacksim.unpack.expect`, an oracle computed from the
built images alone (not from the pipeline).
"""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from unpacksim.model.builders import BuiltImage, Layer, build_image, build_index, build_layer
from unpacksim.model.labels import GC_REF_CONTENT
from unpacksim.model.oci import Platform
from unpacksim.unpack.drive import pull_images
from unpacksim.unpack.eras import PRESETS, preset
from unpacksim.unpack.expect import ExpectedPull, actual_state, compare, expected_state
from unpacksim.unpack.interface import resolve
from unpacksim.unpack.results import PullOptions
from unpacksim.unpack.world import World

BASE = [build_layer({"etc/os-release": b"base\n"}), build_layer({"usr/lib/libc.so": b"c" * 300})]


def _layers(n: int, tag: str) -> list[Layer]:
    return [build_layer({f"{tag}/file{i}": f"{tag}-{i}".encode()}) for i in range(n)]


def _check(
    preset_name: str, images: list[BuiltImage], opts: PullOptions | None = None, **kw: object
) -> None:
    impl = resolve(preset_name)
    world = World.create(**impl.world_options)
    world.push(*images)
    results, outcome = pull_images(world, impl, [i.name for i in images], opts)
    assert [r.message for r in results] == [""] * len(images)
    assert outcome.name == "completed"
    platform = opts.platform if opts else None
    discard = opts.discard_content if opts else False
    pulls = [ExpectedPull(i, platform=platform, discard=discard) for i in images]
    want = expected_state(pulls, preset(preset_name), **kw)  # type: ignore[arg-type]
    have = actual_state(world.db, **kw)  # type: ignore[arg-type]
    assert compare(want, have) == []
    ns = world.db.namespace("default")
    assert ns.leases == {}, "the pull lease is deleted at the end"
    assert ns.ingests == {}


@pytest.mark.parametrize("preset_name", list(PRESETS))
@pytest.mark.parametrize("n_layers", [0, 1, 3, 20])
def test_single_image_leaves_chain_labels_and_content(preset_name: str, n_layers: int) -> None:
    _check(preset_name, [build_image("registry.test/app:1", _layers(n_layers, "app"))])


@pytest.mark.parametrize("preset_name", ["seed", "v1.6"])
def test_duplicate_layer_digests_in_one_image(preset_name: str) -> None:
    a, b = _layers(2, "dup")
    image = build_image("registry.test/dup:1", [a, b, a, a])
    assert len({d.digest for d in image.single.layers}) == 2
    assert len(set(image.single.chain_ids)) == 4
    _check(preset_name, [image])


@pytest.mark.parametrize("preset_name", ["seed", "v1.7", "v2.0"])
def test_images_sharing_a_base_pulled_one_after_another(preset_name: str) -> None:
    impl = resolve(preset_name)
    first = build_image("registry.test/one:1", [*BASE, *_layers(1, "one")])
    second = build_image("registry.test/two:1", [*BASE, *_layers(2, "two")])
    world = World.create(**impl.world_options)
    world.push(first, second)
    results, _ = pull_images(world, impl, [first.name])
    results += pull_images(world, impl, [second.name])[0]
    assert all(r.ok for r in results)
    # The second pull reuses the base chain: at the seed it Stats and skips it, and the lazy
    # fetch starts at the first missing layer, so the base blobs are not fetched again.
    base_chains = first.single.chain_ids[:2]
    if preset(preset_name).stat_skip:
        assert results[1].skipped == tuple((c, "stat") for c in base_chains)
        assert results[1].unpacks[0].fetch_offset == 2
    else:
        assert results[1].skipped == tuple((c, "prepare_exists") for c in base_chains)
    pulls = [ExpectedPull(first), ExpectedPull(second)]
    assert compare(expected_state(pulls, preset(preset_name)), actual_state(world.db)) == []


@pytest.mark.parametrize("preset_name", ["seed", "v1.4"])
@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_multi_platform_index_fetches_only_the_matching_manifest(
    preset_name: str, arch: str
) -> None:
    index = build_index(
        "registry.test/multi:1",
        {"linux/amd64": _layers(2, "amd"), "linux/arm64": _layers(3, "arm")},
    )
    platform = Platform("linux", arch)
    _check(preset_name, [index], PullOptions(platform=platform))


def test_index_labels_name_every_platform_manifest() -> None:
    index = build_index(
        "registry.test/multi:2", {"linux/amd64": _layers(1, "a"), "linux/arm64": _layers(1, "b")}
    )
    world = World.create()
    world.push(index)
    pull_images(world, "seed", [index.name])
    labels = world.db.namespace("default").content[index.target.digest].labels
    manifests = [p.manifest.digest for p in index.platforms.values()]
    assert [labels[f"{GC_REF_CONTENT}.{i}"] for i in range(2)] == manifests
    arm = index.platform("linux/arm64")
    assert arm.manifest.digest not in world.db.namespace("default").content


def test_docker_media_types() -> None:
    _check("seed", [build_image("registry.test/docker:1", _layers(2, "d"), docker=True)])


@pytest.mark.parametrize("preset_name", ["seed", "v1.4"])
def test_discard_content_drops_the_layer_labels_of_the_manifest(preset_name: str) -> None:
    image = build_image("registry.test/discard:1", _layers(3, "x"))
    _check(preset_name, [image], PullOptions(discard_content=True))


def test_layer_annotations_reach_the_snapshot_labels() -> None:
    layer = build_layer(
        {"a": b"1"},
        annotations={"containerd.io/snapshot/cri.layer-digest": "d", "other": "dropped"},
    )
    _check("v1.6", [build_image("registry.test/annotated:1", [layer])])


@st.composite
def _image_sets(draw: st.DrawFn) -> list[BuiltImage]:
    pool = [build_layer({f"pool/{i}": bytes([65 + i])}) for i in range(6)]
    base_len = draw(st.integers(0, 3))
    base = [pool[draw(st.integers(0, 5))] for _ in range(base_len)]
    images = []
    for i in range(draw(st.integers(1, 3))):
        extra = draw(st.lists(st.integers(0, 5), min_size=0 if base else 1, max_size=20 - base_len))
        images.append(build_image(f"registry.test/gen{i}:1", base + [pool[j] for j in extra]))
    return images


@given(images=_image_sets(), preset_name=st.sampled_from(list(PRESETS)))
def test_generated_image_sets_pulled_concurrently_match_the_oracle(
    images: list[BuiltImage], preset_name: str
) -> None:
    names = {i.name for i in images}
    impl = resolve(preset_name)
    world = World.create(**impl.world_options)
    world.push(*images)
    results, _ = pull_images(world, impl, sorted(names))
    assert all(r.ok for r in results), [r.message for r in results]
    pulls = [ExpectedPull(i) for i in images]
    want = expected_state(pulls, preset(preset_name), distribution=False)
    assert compare(want, actual_state(world.db, distribution=False)) == []
