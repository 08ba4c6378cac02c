"""World: one run's environment, DB, stores, proxies, registry, applier and GC, wired together."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from unpacksim.model.builders import BuiltImage, build_image
from unpacksim.model.content import Info
from unpacksim.model.errdefs import AlreadyExists
from unpacksim.model.gc_scheduler import SchedulerConfig
from unpacksim.model.images import Image
from unpacksim.model.labels import SNAPSHOT_REF, UNCOMPRESSED
from unpacksim.sim.choose import RandomChooser
from unpacksim.sim.context import Context
from unpacksim.sim.env import Environment
from unpacksim.sim.go import Gen
from unpacksim.unpack.world import SnapshotterSpec, World

REF = "registry.test/library/app:1"


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


def mini_pull(world: World, ctx: Context, ref: str) -> Gen[None]:
    """A pull without the reference pipeline: every step through the world's proxies."""
    name, target = yield from world.registry.resolve(ctx, ref)
    image = next(i for i in IMAGES if i.name == ref).single
    for desc in (target, image.config, *image.layers):
        try:
            cw = yield from world.content.writer(ctx, ref=f"pull-{desc.digest}", desc=desc)
        except AlreadyExists:
            continue
        try:
            reader = yield from world.registry.fetch(ctx, desc)
            while chunk := (yield from reader.read(ctx)):
                yield from cw.write(ctx, chunk)
            yield from cw.commit(ctx, desc.size, desc.digest)
        finally:
            yield from cw.close(ctx)
    sn, parent = world.snapshotter(), ""
    for layer, chain in zip(image.layers, image.chain_ids, strict=True):
        key = f"extract-{world.unique.part()} {chain}"
        mounts = yield from sn.prepare(ctx, key, parent, labels={SNAPSHOT_REF: chain})
        diff = yield from world.applier.apply(ctx, layer, mounts)
        yield from sn.commit(ctx, chain, key)
        info = Info(layer.digest, labels={UNCOMPRESSED: diff.digest})
        yield from world.content.update(ctx, info, f"labels.{UNCOMPRESSED}")
        parent = chain
    yield from world.images.create(ctx, Image(name, target))


IMAGES: list[BuiltImage] = [
    build_image(REF, [{"etc/os": b"base"}, {"bin/app": b"\x7fELF"}, {"etc/os": b"v2"}]),
]


def test_create_wires_every_part() -> None:
    world = World.create()
    assert isinstance(world.env, Environment)
    assert world.namespace == "default" and world.default_snapshotter == "native"
    assert world.db.content_backend is world.content_store.backend
    assert world.db.snapshot_backends == {"native": world.snapshot_backends["native"]}
    assert world.content.store is world.content_store
    assert world.snapshotter().store is world.snapshot_stores["native"]
    assert world.leases.store is world.lease_manager and world.leases.gc is world.gc
    assert world.images.store is world.image_store and world.images.gc is world.gc
    assert world.registry.services is world.services is world.applier.services
    assert world.applier.content is world.content_store
    assert world.applier.keepers == [world.contents["native"]]
    assert world.gc.config is None
    assert [p.name for p in world.env.processes()] == ["gc.scheduler"]
    assert world.context().namespace == "default"
    assert world.context("other").namespace == "other"
    assert world.unique.part() != world.unique.part()


def test_the_db_clock_is_simulated_time() -> None:
    world = World.create()
    drive(world, idle(world, 2.5))
    assert world.db.now() == world.env.now == 2.5


def idle(world: World, seconds: float) -> Gen[None]:
    yield world.env.timeout(seconds)


def test_options_reach_the_parts() -> None:
    world = World.create(
        RandomChooser(3),
        snapshotters=("overlayfs", SnapshotterSpec("stargz", remote=True)),
        gc=True,
        lease_on_exists=True,
        keep_contents=False,
        namespace="k8s.io",
    )
    assert isinstance(world.env.chooser, RandomChooser)
    assert list(world.snapshotters) == ["overlayfs", "stargz"]
    assert world.default_snapshotter == "overlayfs"
    assert world.snapshot_backends["stargz"].remote
    assert not world.snapshot_backends["overlayfs"].remote
    assert all(s.lease_on_exists for s in world.snapshot_stores.values())
    assert world.contents == {} and world.applier.keepers == []
    assert world.gc.config == SchedulerConfig()
    assert world.context().namespace == "k8s.io"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"snapshotters": ()}, "needs snapshotter names"),
        ({"snapshotters": ("a", "a")}, "repeat"),
        ({"gc": "yes"}, "SchedulerConfig"),
    ],
)
def test_bad_options_are_explained(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        World.create(**kwargs)


def test_unknown_snapshotter_names_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"it has \['native'\]"):
        World.create().snapshotter("zfs")


def test_a_pull_through_the_world_leaves_the_chain_the_content_and_the_files() -> None:
    world = World.create()
    assert world.push(*IMAGES) == [REF]
    drive(world, mini_pull(world, world.context(), REF))
    image = IMAGES[0].single
    records = world.db.namespace("default").snapshotter("native")
    chain = image.chain_ids
    assert [(name, rec.parent) for name, rec in records.items()] == [
        (chain[0], ""),
        (chain[1], chain[0]),
        (chain[2], chain[1]),
    ]
    blobs = world.db.namespace("default").content
    assert set(blobs) == {IMAGES[0].target.digest, image.config.digest, *map(_digest, image.layers)}
    for layer, diff_id in zip(image.layers, image.diff_ids, strict=True):
        assert blobs[layer.digest].labels == {UNCOMPRESSED: diff_id}
    files = {p: e.data for p, e in world.tree(chain[2]).items() if e.kind == "file"}
    assert files == {"etc/os": b"v2", "bin/app": b"\x7fELF"}
    assert list(world.db.namespace("default").images) == [REF]


def _digest(desc: Any) -> str:
    return str(desc.digest)


def test_the_same_seed_gives_the_same_trace() -> None:
    def one_run(seed: int) -> str:
        world = World.create(RandomChooser(seed))
        world.push(*IMAGES)
        ctx = world.context()
        world.go(mini_pull(world, ctx, REF), name="pull-a")
        world.go(mini_pull(world, ctx.with_namespace("b"), REF), name="pull-b")
        assert world.run().ok
        return world.env.trace.sha256()

    assert one_run(11) == one_run(11)


def test_a_remote_snapshotter_serves_a_layer_itself() -> None:
    world = World.create(snapshotters=(SnapshotterSpec("stargz", remote=True),))
    chain = IMAGES[0].single.chain_ids[0]
    world.snapshot_backends["stargz"].serve_remote(chain)
    ctx = world.context()
    with pytest.raises(AlreadyExists) as info:
        drive(world, world.snapshotter().prepare(ctx, "extract-1", labels={SNAPSHOT_REF: chain}))
    assert str(info.value) == f'target snapshot "{chain}" from snapshotter: already exists'
    assert chain in world.db.namespace("default").snapshotter("stargz")


def test_tree_of_an_unknown_snapshot() -> None:
    with pytest.raises(KeyError, match="no snapshot"):
        World.create().tree("nope")
