"""Each era flag changes behaviour where its containerd change did.

One test (or pair) per flag, each showing the behaviour before and after the change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator
from typing import Any

from unpacksim.model.builders import BuiltImage, build_image, build_layer
from unpacksim.model.context import Ctx
from unpacksim.model.errdefs import AlreadyExists, NotFound
from unpacksim.sim.faults import FaultPlan, Rule
from unpacksim.unpack.drive import pull_images, start_pull, world_for
from unpacksim.unpack.eras import preset
from unpacksim.unpack.interface import Implementation, resolve
from unpacksim.unpack.reference import CRI_V17, ReferenceImplementation
from unpacksim.unpack.registry import Network
from unpacksim.unpack.results import PullOptions, PullResult
from unpacksim.unpack.world import World

RAW = Ctx("default")


def _noise(n: int, seed: int) -> bytes:
    out, block = b"", str(seed).encode()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return out[:n]


def _image(name: str, *layers: bytes) -> BuiltImage:
    return build_image(name, [build_layer({f"f{i}": data}) for i, data in enumerate(layers)])


def _pull(world: World, impl: str | Implementation, ref: str, **kw: Any) -> PullResult:
    handle = start_pull(world, impl, ref, **kw)
    outcome = world.run()
    assert handle.result is not None, outcome.describe()
    return handle.result


# --- limiter_effective (535191abf, #6109) ----------------------------------------------------


def _max_parallel_layer_downloads(preset_name: str) -> int:
    image = _image("registry.test/big:1", *(_noise(20_000, i) for i in range(3)))
    world = world_for(preset_name, network=Network(bandwidth=50_000))
    world.push(image)
    (result,), _ = pull_images(
        world, preset_name, [image.name], PullOptions(max_concurrent_downloads=1)
    )
    assert result.ok
    layers = {d.digest for d in image.single.layers}
    spans: dict[str, list[float]] = {}
    for e in world.env.trace.events:
        if e.op == "registry.fetch" and e.type == "invoke" and e.args["digest"] in layers:
            spans.setdefault(str(e.args["digest"]), []).append(e.time)
        if e.op == "content.commit" and e.type == "complete":
            digest = str(e.args["ref"]).removeprefix("layer-")
            if digest in spans:
                spans[digest].append(e.time)
    return max(sum(1 for s, t in spans.values() if s <= at < t) for at, _ in spans.values())


def test_the_seed_ignores_max_concurrent_downloads_for_layers() -> None:
    assert _max_parallel_layer_downloads("seed") == 3  # #6054


def test_from_v16_the_limiter_bounds_layer_downloads() -> None:
    assert _max_parallel_layer_downloads("v1.6") == 1


# --- dedup_keyed_lock (811375856, #6702) -----------------------------------------------------


def _applies_of_concurrent_pulls(impl: str | Implementation) -> tuple[list[PullResult], int]:
    image = _image("registry.test/dup:1", b"a", b"b", b"c")
    world = world_for(impl)
    world.push(image)
    results, _ = pull_images(world, impl, [image.name] * 3)
    return results, len(world.applier.applied)


def test_the_seed_unpacks_the_same_chain_in_every_concurrent_pull() -> None:
    results, applies = _applies_of_concurrent_pulls("seed")
    assert all(r.ok for r in results)
    assert applies == 9, "every pull applies every layer; the losers get Commit AlreadyExists"
    losers = [r for r in results if r.skipped]
    assert len(losers) == 2
    assert all(reason == "commit_exists" for r in losers for _, reason in r.skipped)


#: A pull as CRI makes it (pkg/cri/server/image_pull.go passes WithUnpackDuplicationSuppressor).
V17_CRI = resolve(CRI_V17)


def test_the_duplication_suppressor_applies_each_chain_once() -> None:
    results, applies = _applies_of_concurrent_pulls(V17_CRI)
    assert all(r.ok for r in results)
    assert applies == 3
    assert sorted(len(r.committed) for r in results) == [0, 0, 3]


def test_client_pull_in_v17_has_no_suppressor() -> None:
    # v1.7.0 pull.go adds WithDuplicationSuppressor only if UnpackConfig has one (ctr does not).
    results, applies = _applies_of_concurrent_pulls("v1.7")
    assert all(r.ok for r in results)
    assert applies == 9


# --- unique_keys (597d0d76a, #1480) ----------------------------------------------------------


def test_without_unique_keys_concurrent_pulls_collide_on_prepare() -> None:
    impl = ReferenceImplementation(preset("seed").but(unique_keys=False), name="2017-keys")
    image = _image("registry.test/k:1", b"a")
    world = world_for(impl)
    world.push(image)
    results, _ = pull_images(world, impl, [image.name] * 2)
    chain = image.single.chain_ids[0]
    failed = [r for r in results if not r.ok]
    assert len(failed) == 1 and isinstance(failed[0].error, AlreadyExists)
    assert failed[0].message == (
        f'unable to prepare extraction snapshot: snapshot "extract {chain}": already exists'
    )
    seed_results, _ = pull_images(world_pushed("seed", image), "seed", [image.name] * 2)
    assert all(r.ok for r in seed_results)


def world_pushed(impl: str, image: BuiltImage) -> World:
    world = world_for(impl)
    world.push(image)
    return world


# --- lease_on_exists (c7fb8a925, #10187) and stat_skip (d7f83034c, #10723) ------------------


def _leased_chains(impl: str | Implementation) -> tuple[PullResult, set[str]]:
    image = _image("registry.test/l:1", b"a", b"b")
    world = world_for(impl)
    world.push(image)
    assert _pull(world, impl, image.name).ok
    world.lease_manager.create(RAW, id="user")
    result = _pull(world, impl, image.name, ctx=world.context().with_lease("user"))
    held = world.db.namespace("default").leases["user"].resources
    return result, {key for kind, key in held if kind == "snapshots/native"}


def test_the_seed_skips_existing_snapshots_without_leasing_them() -> None:
    result, leased = _leased_chains("seed")
    assert [reason for _, reason in result.skipped] == ["stat", "stat"]
    assert leased == set()


def test_v20_prepares_existing_snapshots_and_leases_them() -> None:
    result, leased = _leased_chains("v2.0")
    assert [reason for _, reason in result.skipped] == ["prepare_exists", "prepare_exists"]
    assert leased == {c for c, _ in result.skipped}


def test_lease_on_exists_leases_the_winner_of_a_commit_race() -> None:
    image = _image("registry.test/race:1", b"a")
    chain = image.single.chain_ids[0]
    for era, expect_leased in (
        (preset("seed"), False),
        (preset("seed").but(lease_on_exists=True), True),
    ):
        impl = ReferenceImplementation(era, name=f"race-{expect_leased}")
        world = world_for(impl)
        world.push(image)
        world.lease_manager.create(RAW, id="loser")
        first = start_pull(world, impl, image.name)
        second = start_pull(world, impl, image.name, ctx=world.context().with_lease("loser"))
        world.run()
        assert first.result is not None and second.result is not None
        assert second.result.skipped == ((chain, "commit_exists"),)
        held = world.db.namespace("default").leases["loser"].resources
        assert (("snapshots/native", chain) in held) is expect_leased


def _stat_skip_gc_race(impl: str, prepare_hit: int) -> PullResult:
    # #3787: a chain kept only by a deleted image is skipped (seed) and collected before the
    # Prepare of the layer above it.
    base = _image("registry.test/base:1", b"base")
    app = build_image(
        "registry.test/app:1", [build_layer({"f0": b"base"}), build_layer({"x": b"x"})]
    )
    world = world_for(impl)
    world.push(base, app)
    assert _pull(world, impl, base.name).ok
    world.image_store.delete(RAW, base.name)
    # From here on, a GC starts at the prepare_hit-th Prepare call.
    world.env.faults = FaultPlan.scripted(Rule("gc.run", key="snapshots.prepare", hit=prepare_hit))
    result = _pull(world, impl, app.name)
    assert len(world.gc.collections) == 1
    return result


def test_stat_skip_lets_gc_take_the_parent_at_the_seed() -> None:
    result = _stat_skip_gc_race("seed", prepare_hit=1)  # the Prepare of the top layer
    assert isinstance(result.error, NotFound)
    ((_, key, outcome),) = result.unpacks[0].prepare_attempts
    assert outcome == "NotFound"
    parent = result.unpacks[0].chain_ids[0]
    assert result.skipped == ((parent, "stat"),)
    assert result.message == (
        f'failed to prepare extraction snapshot "{key}": '
        f"parent snapshot {parent} does not exist: not found"
    )


def test_v20_leases_the_parent_so_the_same_gc_cannot_take_it() -> None:
    result = _stat_skip_gc_race("v2.0", prepare_hit=2)  # the Prepare of the top layer
    assert result.ok
    assert [reason for _, reason in result.skipped] == ["prepare_exists"]


# --- abort_on_cancel_or_fetch_err / cleanup_ctx_detached: see test_unpacker_branches.py ------


# --- discard_mode and typed_child_labels (the seed, c8b14ae4c) -------------------------------


def _discard_then_collect(impl: str, discard: bool) -> tuple[World, BuiltImage]:
    image = _image("registry.test/d:1", b"a", b"b")
    world = world_for(impl)
    world.push(image)
    assert _pull(world, impl, image.name, opts=PullOptions(discard_content=discard)).ok

    def collect() -> Generator[Any, Any, None]:
        yield from world.gc.collect()

    world.go(collect(), name="collect")
    world.run()
    return world, image


def test_discarded_layer_blobs_are_collected_and_the_snapshots_stay() -> None:
    # containerd's TestImagePullWithDiscardContent, for both mechanisms.
    for impl in ("seed", "v1.4"):
        world, image = _discard_then_collect(impl, discard=True)
        ns = world.db.namespace("default")
        single = image.single
        assert all(d.digest not in ns.content for d in single.layers), impl
        assert single.config.digest in ns.content and single.manifest.digest in ns.content
        assert set(single.chain_ids) <= set(ns.snapshotter("native"))


def test_without_discard_gc_keeps_the_layer_blobs() -> None:
    world, image = _discard_then_collect("seed", discard=False)
    ns = world.db.namespace("default")
    assert all(d.digest in ns.content for d in image.single.layers)


def test_seed_discard_strips_labels_after_the_unpack_v14_never_writes_them() -> None:
    for impl, strip_update in (("seed", True), ("v1.4", False)):
        image = _image(f"registry.test/{impl.replace('.', '')}:1", b"a")
        world = world_for(impl)
        world.push(image)
        assert _pull(world, impl, image.name, opts=PullOptions(discard_content=True)).ok
        manifest = image.single.manifest.digest
        updates = [
            e
            for e in world.env.trace.events
            if e.type == "invoke" and e.op == "content.update" and e.args["digest"] == manifest
        ]
        blanked = [e for e in updates if "" in dict(e.args["labels"]).values()]
        assert bool(blanked) is strip_update, impl


def test_a_fetch_waiting_for_the_blob_lock_gives_up_on_cancellation() -> None:
    # v1.7 as CRI pulls: two images share a big layer at different chain positions, so both
    # unpacks fetch it; the second fetch waits on blob://<digest> and its pull is cancelled.
    shared = build_layer({"big": _noise(20_000, 7)})
    first = build_image("registry.test/f:1", [shared])
    second = build_image("registry.test/s:1", [build_layer({"x": b"x"}), shared])
    world = world_for(V17_CRI, network=Network(bandwidth=10_000))
    world.push(first, second)
    ctx, cancel = world.context().with_cancel()

    def canceller() -> Generator[Any, Any, None]:
        yield world.env.timeout(1.0)
        cancel()

    world.go(canceller(), name="canceller")
    winner = start_pull(world, V17_CRI, first.name)
    loser = start_pull(world, V17_CRI, second.name, ctx=ctx)
    world.run()
    assert winner.result is not None and winner.result.ok
    assert loser.result is not None and loser.result.error_class == "Canceled"
    assert shared.digest not in loser.result.unpacks[0].fetched
