"""The simulated diff applier: real diff IDs, content store reads, faults, contents, time."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from unpacksim.model.builders import BuiltImage, build_image, build_layer, write_image
from unpacksim.model.digest import digest_of
from unpacksim.model.errdefs import Canceled, NotFound, Unknown
from unpacksim.model.oci import MEDIA_TYPE_OCI_LAYER, Descriptor
from unpacksim.model.snapshot_api import Mount
from unpacksim.sim.faults import FaultPlan, Rule
from unpacksim.sim.go import Gen
from unpacksim.unpack.applier import DiffApplier, MemoryContents
from unpacksim.unpack.world import World

REF = "registry.test/app:1"


def drive(world: World, gen: Generator[Any, Any, Any]) -> Any:
    box: dict[str, Any] = {}

    def body() -> Gen[None]:
        try:
            box["value"] = yield from gen
        except Exception as exc:
            box["error"] = exc

    world.go(body(), name="client")
    outcome = world.run()
    assert outcome.ok, outcome.describe()
    if "error" in box:
        raise box["error"]
    return box["value"]


def loaded(layers: list[Any], **kwargs: Any) -> tuple[World, BuiltImage]:
    """A world whose content store already holds ``image`` (no registry involved)."""
    world = World.create(**kwargs)
    image = build_image(REF, layers)
    write_image(world.context(), world.content_store, image)
    return world, image


def prepare_apply(world: World, image: BuiltImage, index: int = 0) -> Gen[Descriptor]:
    """Prepare on the chain so far, apply layer ``index``, commit; return the diff."""
    ctx, sn, single = world.context(), world.snapshotter(), image.single
    parent = single.chain_ids[index - 1] if index else ""
    key = f"extract-{index}"
    mounts = yield from sn.prepare(ctx, key, parent)
    diff = yield from world.applier.apply(ctx, single.layers[index], mounts)
    yield from sn.commit(ctx, single.chain_ids[index], key)
    return diff


def test_apply_returns_the_real_diff_id_of_a_gzip_layer() -> None:
    world, image = loaded([{"etc/hostname": b"box\n"}])
    diff = drive(world, prepare_apply(world, image))
    layer = build_layer({"etc/hostname": b"box\n"})
    assert diff == Descriptor(MEDIA_TYPE_OCI_LAYER, layer.diff_id, len(layer.tar))
    assert diff.digest == image.single.diff_ids[0] == digest_of(layer.tar)
    assert [(r.digest, r.outcome) for r in world.applier.applied] == [
        (image.single.layers[0].digest, "ok")
    ]


def test_apply_of_an_uncompressed_layer() -> None:
    layer = build_layer({"bin/sh": b"#!"}, compressed=False)
    world, image = loaded([layer])
    diff = drive(world, prepare_apply(world, image))
    assert diff.digest == layer.diff_id == image.single.layers[0].digest


def test_layers_stack_into_the_snapshot_contents() -> None:
    world, image = loaded(
        [{"etc/a": b"1", "etc/b": b"2"}, {"etc/.wh.a": b"", "etc/c": b"3"}, {"etc/b": b"4"}]
    )

    def all_layers() -> Gen[None]:
        for index in range(3):
            yield from prepare_apply(world, image, index)

    drive(world, all_layers())
    top = world.tree(image.single.chain_ids[2])
    assert {p: e.data for p, e in top.items() if e.kind == "file"} == {
        "etc/b": b"4",
        "etc/c": b"3",
    }
    base = world.tree(image.single.chain_ids[0])
    assert {p: e.data for p, e in base.items() if e.kind == "file"} == {
        "etc/a": b"1",
        "etc/b": b"2",
    }


def test_without_kept_contents_the_tar_is_only_verified() -> None:
    world, image = loaded([{"a": b"x"}], keep_contents=False)
    assert drive(world, prepare_apply(world, image)).digest == image.single.diff_ids[0]
    with pytest.raises(KeyError, match="keep_contents=True"):
        world.tree(image.single.chain_ids[0])


def test_missing_blob_is_wrapped_as_containerd_does() -> None:
    world = World.create()
    missing = build_layer({"x": b"y"}).descriptor()

    def client() -> Gen[Descriptor]:
        mounts = yield from world.snapshotter().prepare(world.context(), "k")
        return (yield from world.applier.apply(world.context(), missing, mounts))

    with pytest.raises(NotFound) as info:
        drive(world, client())
    assert str(info.value) == (
        f"failed to get reader from content store: content digest {missing.digest}: not found"
    )
    assert world.applier.applied[-1].outcome == "NotFound"


def test_a_blob_that_is_not_a_tar_fails_with_go_s_tar_error() -> None:
    world = World.create()
    ctx = world.context()
    junk = b"this is not a tar archive" * 40
    desc = Descriptor(MEDIA_TYPE_OCI_LAYER, digest_of(junk), len(junk))
    cw = world.content_store.writer(ctx, ref="junk-ingest", desc=desc)
    cw.write(junk)
    cw.commit(ctx, len(junk), desc.digest)
    with pytest.raises(Unknown) as info:
        drive(world, world.applier.apply(ctx, desc, []))
    assert str(info.value) == "archive/tar: invalid tar header: unknown"


def test_apply_error_site_fails_the_apply() -> None:
    world, image = loaded([{"a": b"x"}])
    world.env.faults = FaultPlan.scripted(
        Rule("diff.apply.error", key=image.single.layers[0].digest)
    )
    with pytest.raises(Unknown) as info:
        drive(world, prepare_apply(world, image))
    assert info.value.injected
    assert world.applier.applied[-1].outcome == "Unknown"


def test_wrong_diff_id_site_returns_another_digest() -> None:
    world, image = loaded([{"a": b"x"}])
    world.env.faults = FaultPlan.scripted(Rule("diff.apply.wrong_diff_id"))
    diff = drive(world, prepare_apply(world, image))
    assert diff.digest != image.single.diff_ids[0]
    assert diff.size == len(build_layer({"a": b"x"}).tar)
    assert world.env.faults.report().fired_sites == ["diff.apply.wrong_diff_id"]


def test_apply_time_is_proportional_to_the_blob_size() -> None:
    world, image = loaded([{"big": bytes(range(256)) * 400}], apply_rate=1000.0)
    ctx = world.context()
    layer = image.single.layers[0]

    def client() -> Gen[float]:
        mounts = yield from world.snapshotter().prepare(ctx, "k")
        start = world.env.now
        yield from world.applier.apply(ctx, layer, mounts)
        return world.env.now - start

    latency = 0.001  # the default latency model's one call
    assert drive(world, client()) == pytest.approx(layer.size / 1000.0 + latency)


def test_cancellation_during_apply_is_reported() -> None:
    world, image = loaded([{"big": bytes(range(256)) * 400}], apply_rate=1000.0)
    layer = image.single.layers[0]

    def client() -> Gen[None]:
        ctx, cancel = world.context().with_cancel()
        mounts = yield from world.snapshotter().prepare(ctx, "k")
        world.env.process(later(cancel))
        yield from world.applier.apply(ctx, layer, mounts)

    def later(cancel: Any) -> Gen[None]:
        yield world.env.timeout(0.05)
        cancel()

    with pytest.raises(Canceled):
        drive(world, client())


def test_memory_contents_ignore_foreign_and_read_only_mounts() -> None:
    world = World.create()
    keeper = world.contents["native"]
    assert keeper.tree_for([Mount("bind", "/elsewhere/snapshots/1", ("rw", "rbind"))]) is None
    assert keeper.tree_for([Mount("bind", "/native/snapshots/1", ("ro", "rbind"))]) is None
    assert keeper.tree_for([]) is None
    assert isinstance(keeper, MemoryContents)


def test_applier_rejects_a_bad_rate() -> None:
    world = World.create()
    with pytest.raises(ValueError, match="positive rate"):
        DiffApplier(world.services, world.content_store, rate=0)
