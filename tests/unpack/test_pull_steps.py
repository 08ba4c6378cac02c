"""Client.Pull's steps (``pull.go``, ``lease.go``, ``remotes/handlers.go``, ``content/helpers.go``):
the lease, the handler chain, image creation, the fallback unpack, and their failures."""

from __future__ import annotations

import re
from collections.abc import Generator
from typing import Any

import pytest

from unpacksim.model.builders import build_image, build_index, build_layer
from unpacksim.model.clock import format_rfc3339
from unpacksim.model.context import Ctx
from unpacksim.model.errdefs import FailedPrecondition, NotFound, Unavailable
from unpacksim.model.labels import GC_EXPIRE, snapshot_gc_label
from unpacksim.model.oci import Descriptor, Platform
from unpacksim.sim.choose import BaseChooser
from unpacksim.sim.faults import FaultPlan, Rule
from unpacksim.sim.trace import TraceEvent
from unpacksim.unpack.drive import intercept, pull_images, start_pull
from unpacksim.unpack.fetch import append_distribution_source, make_ref_key, parse_reference
from unpacksim.unpack.handlers import Handler, HandlerProcess
from unpacksim.unpack.pull import LEASE_EXPIRY
from unpacksim.unpack.results import PullOptions, PullResult
from unpacksim.unpack.world import World

RAW = Ctx("default")
IMAGE = build_image("registry.test/app:1", [build_layer({"a": b"1"}), build_layer({"b": b"2"})])


def _world(**kw: Any) -> World:
    world = World.create(**kw)
    world.push(IMAGE)
    return world


def _pull(world: World, ref: str = IMAGE.name, **kw: Any) -> PullResult:
    handle = start_pull(world, "seed", ref, **kw)
    outcome = world.run()
    assert handle.result is not None, outcome.describe()
    return handle.result


def _calls(world: World, op: str) -> list[TraceEvent]:
    return [e for e in world.env.trace.events if e.type == "complete" and e.op == op]


# --- the lease (lease.go) ---------------------------------------------------------------------


def test_pull_takes_a_24h_lease_and_deletes_it_without_collecting() -> None:
    world = _world()
    result = _pull(world)
    assert result.ok and result.lease_created and result.lease_deleted
    assert result.lease is not None and re.fullmatch(r"\d+-[A-Za-z0-9_-]{4}", result.lease)
    (create,) = _calls(world, "leases.create")
    assert create.args["id"] == result.lease
    assert create.args["labels"] == {GC_EXPIRE: format_rfc3339(0.0 + LEASE_EXPIRY)}
    assert [e.args["id"] for e in _calls(world, "leases.delete")] == [result.lease]
    assert world.db.namespace("default").leases == {}
    assert world.gc.collections == [], "no SynchronousDelete: GC is left to the scheduler"


def test_pull_under_an_existing_lease_takes_none() -> None:
    world = _world()
    world.lease_manager.create(RAW, id="mine")
    result = _pull(world, ctx=world.context().with_lease("mine"))
    assert result.ok and result.lease == "mine" and not result.lease_created
    assert _calls(world, "leases.create") == [] and _calls(world, "leases.delete") == []
    held = world.db.namespace("default").leases["mine"].resources
    for chain in IMAGE.single.chain_ids:
        assert ("snapshots/native", chain) in held
    assert ("content", IMAGE.single.layers[0].digest) in held


def test_unpack_ends_before_the_image_is_created_and_the_lease_deleted() -> None:
    world = _world()
    assert _pull(world).ok
    events = world.env.trace.events
    last_commit = max(e.seq for e in events if e.op == "snapshots.commit")
    last_label = max(e.seq for e in events if e.op == "content.update")
    image_create = min(e.seq for e in events if e.op == "images.create")
    lease_delete = min(e.seq for e in events if e.op == "leases.delete")
    assert last_commit < last_label < image_create < lease_delete


def test_a_cancelled_pull_cannot_delete_its_lease() -> None:
    # #6294: done(ctx) runs with the cancelled context; the lease lives until it expires.
    world = _world()
    ctx, cancel = world.context().with_cancel()

    def canceller() -> Generator[Any, Any, None]:
        yield world.env.timeout(0.003)
        cancel()

    world.go(canceller(), name="canceller")
    result = _pull(world, ctx=ctx)
    assert result.error_class == "Canceled" and not result.lease_deleted
    assert list(world.db.namespace("default").leases) == [result.lease]


# --- the handler chain (pull.go fetch) -------------------------------------------------------


def test_resolve_error_names_the_reference() -> None:
    result = _pull(_world(), ref="registry.test/nope:1")
    assert isinstance(result.error, NotFound)
    assert result.message == (
        'failed to resolve reference "registry.test/nope:1": registry.test/nope:1: not found'
    )
    assert not result.lease_created or result.lease_deleted


def test_manifest_fetch_error_fails_the_pull_and_still_deletes_the_lease() -> None:
    world = _world(faults=FaultPlan.scripted(Rule("fetch.error", key=IMAGE.target.digest)))
    result = _pull(world)
    assert result.error_class == "Unknown" and result.lease_deleted
    assert result.image_name is None and world.db.namespace("default").images == {}


def test_no_manifest_for_the_platform() -> None:
    index = build_index("registry.test/arm:1", {"linux/arm64": [{"a": b"1"}]})
    world = World.create()
    world.push(index)
    result = _pull(world, ref=index.name)
    assert isinstance(result.error, NotFound)
    assert result.message == "no match for platform in manifest: not found"


def test_ref_lock_unavailable_backs_off_and_retries() -> None:
    ref = make_ref_key(IMAGE.target)
    world = _world(faults=FaultPlan.scripted(Rule("content.ref_locked", key=ref, times=3)))
    result = _pull(world)
    assert result.ok
    opens = [e for e in _calls(world, "content.writer") if e.args["ref"] == ref]
    assert [e.outcome for e in opens] == ["Unavailable"] * 3 + ["ok"]


class _LongestBackoff(BaseChooser):
    """FIFO everywhere, except OpenWriter's backoff, which sleeps as long as it may."""

    def _pick(self, n: int, kind: str) -> int:
        return n - 1 if kind == "content.open_writer.backoff" else 0


def test_ref_locked_until_the_context_is_done_returns_the_lock_error() -> None:
    # Cancelled during the backoff sleep: OpenWriter returns the lock error, not Canceled.
    ref = make_ref_key(IMAGE.target)
    plan = FaultPlan.scripted(Rule("content.ref_locked", key=ref, times=None))
    world = _world(faults=plan, chooser=_LongestBackoff())
    ctx, cancel = world.context().with_cancel()

    def canceller() -> Generator[Any, Any, None]:
        yield world.env.timeout(0.04)
        cancel()

    world.go(canceller(), name="canceller")
    result = _pull(world, ctx=ctx)
    assert isinstance(result.error, Unavailable)
    assert result.message == f"ref {ref} locked: unavailable"
    opens = [e for e in _calls(world, "content.writer") if e.args["ref"] == ref]
    assert len(opens) == 2 and opens[1].time - opens[0].time >= 0.015  # 0..16 ms, drawn 15


def test_truncated_blob_fails_the_size_check_on_commit() -> None:
    config = IMAGE.single.config
    world = _world(faults=FaultPlan.scripted(Rule("fetch.truncate", key=config.digest)))
    result = _pull(world)
    assert isinstance(result.error, FailedPrecondition)
    ref = make_ref_key(config)
    # content.Copy wraps "failed commit on ref", the client's gRPC writer "commit failed"
    # (content/helpers.go, content/proxy/content_writer.go).
    assert result.message == (
        f'failed commit on ref "{ref}": commit failed: "{ref}" failed size validation: '
        f"{config.size // 2} != {config.size}: failed precondition"
    )


def test_corrupt_blob_fails_the_digest_check_on_commit() -> None:
    config = IMAGE.single.config
    world = _world(faults=FaultPlan.scripted(Rule("fetch.corrupt", key=config.digest)))
    result = _pull(world)
    assert isinstance(result.error, FailedPrecondition)
    assert result.message.startswith(f'failed commit on ref "{make_ref_key(config)}"')
    assert config.digest not in world.db.namespace("default").content


def test_an_interrupted_ingest_is_resumed_from_its_offset() -> None:
    # content.Copy seeks the fetch to the ingest's offset (a ranged request).
    world = _world()
    layer = IMAGE.single.layers[0]
    writer = world.content_store.writer(RAW, ref=make_ref_key(layer), desc=layer)
    writer.write(IMAGE.blobs[layer.digest][:10])
    writer.close()
    assert _pull(world).ok
    offsets = [r.offset for r in world.registry.fetches if r.digest == layer.digest]
    assert offsets == [0, 10]


def test_distribution_source_label_lists_every_repository() -> None:
    world = World.create()
    world.registry.put("registry.test/team/a:1", IMAGE.target, IMAGE.blobs)
    world.registry.put("registry.test/b:1", IMAGE.target, IMAGE.blobs)
    assert _pull(world, ref="registry.test/team/a:1").ok
    assert _pull(world, ref="registry.test/b:1").ok
    labels = world.db.namespace("default").content[IMAGE.target.digest].labels
    assert labels["containerd.io/distribution.source.registry.test"] == "b,team/a"


@pytest.mark.parametrize(
    ("ref", "host", "repo"),
    [
        ("docker.io/library/busybox:latest", "docker.io", "library/busybox"),
        ("localhost:5000/app@sha256:" + "a" * 64, "localhost", "app"),
        ("example.com/a/b/c:1", "example.com", "a/b/c"),
    ],
)
def test_parse_reference_for_the_distribution_label(ref: str, host: str, repo: str) -> None:
    assert parse_reference(ref) == (host, repo)


def test_append_distribution_source_sorts_and_deduplicates() -> None:
    assert append_distribution_source("", "b") == "b"
    assert append_distribution_source("c,a", "b") == "a,b,c"
    assert append_distribution_source("a,b", "a") == "a,b"


def test_the_unpack_wrapper_wraps_the_user_wrapper_and_fetches_layers_through_it() -> None:
    seen: list[str] = []

    def user_wrapper(h: Handler) -> Handler:
        def run(ctx: Any, desc: Descriptor) -> HandlerProcess:
            seen.append(desc.digest)
            return (yield from h(ctx, desc))

        return run

    world = _world()
    assert _pull(world, opts=PullOptions(handler_wrapper=user_wrapper)).ok
    image = IMAGE.single
    assert sorted(seen) == sorted(
        [IMAGE.target.digest, image.config.digest] + [d.digest for d in image.layers]
    )


def test_pull_without_unpack_fetches_every_blob_and_unpacks_nothing() -> None:
    world = _world()
    result = _pull(world, opts=PullOptions(unpack=False))
    assert result.ok and result.unpacks == ()
    ns = world.db.namespace("default")
    assert set(IMAGE.blobs) <= set(ns.content)
    assert ns.snapshotter("native") == {}


# --- image creation (createNewImage) ----------------------------------------------------------


def test_a_second_pull_updates_the_image_record() -> None:
    world = _world()
    assert _pull(world).ok
    assert _pull(world).ok
    creates = [e.outcome for e in _calls(world, "images.create")]
    updates = [e.outcome for e in _calls(world, "images.update")]
    assert creates == ["ok", "AlreadyExists"] and updates == ["ok"]


def test_an_image_deleted_between_create_and_update_is_created_again() -> None:
    world = _world()
    assert _pull(world).ok

    def deleted_meanwhile(ctx: Any, image: Any, *paths: str) -> None:
        if IMAGE.name in world.db.namespace("default").images:
            world.image_store.delete(RAW, IMAGE.name)

    intercept(world, "images", update=deleted_meanwhile)
    assert _pull(world).ok
    ops = [
        (e.op, e.outcome)
        for e in world.env.trace.events
        if e.type == "complete" and e.op.startswith("images.")
    ]
    assert ops[1:] == [
        ("images.create", "AlreadyExists"),
        ("images.update", "NotFound"),
        ("images.create", "ok"),
    ]


# --- the fallback unpack (image.Unpack) -------------------------------------------------------


def test_fallback_unpack_runs_when_no_config_with_layers_was_seen() -> None:
    empty = build_image("registry.test/empty:1", [], config_labels={"kind": "empty"})
    world = World.create()
    world.push(empty)
    result = _pull(world, ref=empty.name)
    assert result.ok and result.fallback_unpack and result.unpacks == ()
    labels = world.db.namespace("default").content[empty.single.config.digest].labels
    assert snapshot_gc_label("native") not in labels, 'the empty chain ID "" deletes the label'
    assert [e.args["digest"] for e in _calls(world, "content.update")][-1] == (
        empty.single.config.digest
    )


def test_fallback_unpack_applies_an_image_of_another_platform_order() -> None:
    # image.Unpack also walks an index to the platform's manifest (images.Manifest).
    index = build_index("registry.test/idx:1", {"linux/arm64": [], "linux/amd64": []})
    world = World.create()
    world.push(index)
    result = _pull(world, ref=index.name, opts=PullOptions(platform=Platform("linux", "amd64")))
    assert result.ok and result.fallback_unpack


def test_pulls_record_the_blobs_they_fetched() -> None:
    world = _world()
    (result,), _ = pull_images(world, "seed", [IMAGE.name])
    image = IMAGE.single
    assert result.fetched[:2] == (IMAGE.target.digest, image.config.digest)
    assert set(result.fetched) == set(IMAGE.blobs)


def _unknown_config_image(name: str) -> tuple[Descriptor, dict[str, bytes], list[Any]]:
    """A manifest whose config has a media type the unpack wrapper does not know, so no
    unpack starts and Pull falls back to image.Unpack (which reads the config anyway)."""
    from unpacksim.model.digest import digest_of
    from unpacksim.model.images import ImageConfig, Manifest
    from unpacksim.model.oci import MEDIA_TYPE_OCI_MANIFEST

    layers = [build_layer({"a": b"1"}), build_layer({"b": b"2"})]
    config_bytes = ImageConfig(tuple(layer.diff_id for layer in layers)).to_json()
    config = Descriptor(
        "application/vnd.example.config.v1+json", digest_of(config_bytes), len(config_bytes)
    )
    manifest_bytes = Manifest(config, tuple(layer.descriptor() for layer in layers)).to_json()
    manifest = Descriptor(MEDIA_TYPE_OCI_MANIFEST, digest_of(manifest_bytes), len(manifest_bytes))
    blobs = {config.digest: config_bytes, manifest.digest: manifest_bytes}
    blobs.update({layer.digest: layer.blob for layer in layers})
    return manifest, blobs, layers


def test_fallback_unpack_applies_the_layers_like_rootfs_apply_layer() -> None:
    from unpacksim.model.digest import chain_ids
    from unpacksim.model.labels import UNCOMPRESSED

    manifest, blobs, layers = _unknown_config_image("registry.test/odd:1")
    world = World.create()
    world.registry.put("registry.test/odd:1", manifest, blobs)
    # The unpack wrapper never fetches layers, so fetch them first without unpacking.
    assert _pull(world, ref="registry.test/odd:1", opts=PullOptions(unpack=False)).ok
    result = _pull(world, ref="registry.test/odd:1")
    assert result.ok and result.fallback_unpack and result.unpacks == ()
    chains = chain_ids([layer.diff_id for layer in layers])
    ns = world.db.namespace("default")
    records = ns.snapshotter("native")
    assert [records[c].parent for c in chains] == ["", chains[0]]
    assert not any(k.startswith("extract") for k in records)
    for layer in layers:
        assert ns.content[layer.digest].labels[UNCOMPRESSED] == layer.diff_id
    config = next(
        d for d in blobs if d not in {manifest.digest, *(layer.digest for layer in layers)}
    )
    assert ns.content[config].labels[snapshot_gc_label("native")] == chains[-1]
    # No snapshot.ref label: image.Unpack passes none.
    assert all("containerd.io/snapshot.ref" not in records[c].labels for c in chains)
    again = _pull(world, ref="registry.test/odd:1")
    assert again.ok and len(world.applier.applied) == 2, "existing chains are not applied again"


def test_fallback_unpack_cannot_apply_layers_the_wrapper_never_fetched() -> None:
    # The wrapper drops the layers from every manifest's children; with an unknown config
    # type no unpack fetches them, so image.Unpack finds no blob (as containerd would).
    manifest, blobs, layers = _unknown_config_image("registry.test/odd:3")
    world = World.create()
    world.registry.put("registry.test/odd:3", manifest, blobs)
    result = _pull(world, ref="registry.test/odd:3")
    assert result.fallback_unpack and isinstance(result.error, NotFound)
    assert result.message == (
        "failed to unpack image on snapshotter native: failed to extract layer "
        f"{layers[0].diff_id}: failed to get reader from content store: content digest "
        f"{layers[0].digest}: not found"
    )


def test_fallback_unpack_errors_name_the_snapshotter() -> None:
    manifest, blobs, layers = _unknown_config_image("registry.test/odd:2")
    plan = FaultPlan.scripted(Rule("diff.apply.error", key=layers[0].digest))
    world = World.create(faults=plan)
    world.registry.put("registry.test/odd:2", manifest, blobs)
    assert _pull(world, ref="registry.test/odd:2", opts=PullOptions(unpack=False)).ok
    result = _pull(world, ref="registry.test/odd:2")
    assert result.error_class == "Unknown"
    assert result.message == (
        "failed to unpack image on snapshotter native: failed to extract layer "
        f"{layers[0].diff_id}: unexpected EOF: unknown"
    )
    ns = world.db.namespace("default")
    assert not any(k.startswith("extract") for k in ns.snapshotter("native")), "key removed"


def test_a_complete_ingest_is_committed_without_fetching() -> None:
    world = _world()
    layer = IMAGE.single.layers[0]
    writer = world.content_store.writer(RAW, ref=make_ref_key(layer), desc=layer)
    writer.write(IMAGE.blobs[layer.digest])
    writer.close()
    assert _pull(world).ok
    assert world.registry.fetch_count(layer.digest) == 0
    assert layer.digest in world.db.namespace("default").content


def _fallback_world(ref: str, *rules: Rule) -> tuple[World, list[Any]]:
    manifest, blobs, layers = _unknown_config_image(ref)
    world = World.create()
    world.registry.put(ref, manifest, blobs)
    assert _pull(world, ref=ref, opts=PullOptions(unpack=False)).ok
    world.env.faults = FaultPlan.scripted(*rules)
    return world, layers


def test_fallback_wrong_diff_id_quotes_the_computed_digest() -> None:
    # rootfs.applyLayers quotes what it computed; the unpacker quotes what it expected.
    world, layers = _fallback_world("registry.test/odd:4", Rule("diff.apply.wrong_diff_id"))
    result = _pull(world, ref="registry.test/odd:4")
    (record,) = [r for r in world.applier.applied if r.digest == layers[0].digest]
    assert record.diff_id != layers[0].diff_id
    assert result.message == (
        "failed to unpack image on snapshotter native: "
        f'wrong diff id calculated on extraction "{record.diff_id}"'
    )


def test_fallback_swallows_commit_already_exists() -> None:
    from unpacksim.model.digest import chain_ids
    from unpacksim.model.labels import UNCOMPRESSED

    _, _, layers = _unknown_config_image("registry.test/odd:5")
    top = chain_ids([layer.diff_id for layer in layers])[-1]
    world, layers = _fallback_world("registry.test/odd:5", Rule("snapshots.commit.exists", key=top))
    result = _pull(world, ref="registry.test/odd:5")
    assert result.ok
    labels = world.db.namespace("default").content
    assert UNCOMPRESSED in labels[layers[0].digest].labels
    assert UNCOMPRESSED not in labels[layers[1].digest].labels, "not applied: no label"
