"""Every branch of the Go unpack code (``reference/unpacker.go``), each driven by a test.

Faults come from scripted fault plans (``Rule``); another client acting at a precise point is
an :func:`~unpacksim.unpack.drive.intercept` hook writing through the raw model stores.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Generator
from typing import Any

from unpacksim.model.builders import BuiltImage, PlatformImage, build_image, build_layer
from unpacksim.model.context import Ctx
from unpacksim.model.db import Kind
from unpacksim.model.errdefs import AlreadyExists, Canceled, NotFound, Unknown
from unpacksim.model.labels import SNAPSHOT_REF, UNCOMPRESSED, snapshot_gc_label
from unpacksim.model.oci import Descriptor
from unpacksim.sim.choose import BaseChooser, FifoChooser
from unpacksim.sim.faults import FaultPlan, Rule
from unpacksim.sim.run import RunOutcome
from unpacksim.unpack.drive import intercept, start_pull
from unpacksim.unpack.eras import preset
from unpacksim.unpack.goerrors import ErrSkipDesc, GoError
from unpacksim.unpack.handlers import Handler, HandlerProcess
from unpacksim.unpack.interface import Implementation, resolve
from unpacksim.unpack.reference import ReferenceImplementation
from unpacksim.unpack.registry import Network
from unpacksim.unpack.results import PullOptions, PullResult
from unpacksim.unpack.world import World

REF = "registry.test/app:1"
RAW = Ctx("default")


def noise(n: int, seed: int) -> bytes:
    """``n`` incompressible, deterministic bytes."""
    out = b""
    block = str(seed).encode()
    while len(out) < n:
        block = hashlib.sha256(block).digest()
        out += block
    return out[:n]


@functools.cache
def built(n_layers: int = 2, big: bool = False) -> BuiltImage:
    """The image most tests pull: ``n_layers`` layers of one file each."""
    size = 20_000 if big else 1
    layers = [build_layer({f"layer{i}/data": noise(size, i)}) for i in range(n_layers)]
    return build_image(REF, layers)


def make_world(
    impl: str | Implementation = "seed",
    n_layers: int = 2,
    *,
    big: bool = False,
    **kw: Any,
) -> tuple[World, PlatformImage]:
    impl = resolve(impl)
    world = World.create(**{**impl.world_options, **kw})
    image = built(n_layers, big)
    world.push(image)
    return world, image.single


def pull(
    world: World, impl: str | Implementation = "seed", **kw: Any
) -> tuple[PullResult, RunOutcome]:
    handle = start_pull(world, impl, REF, **kw)
    outcome = world.run()
    assert handle.result is not None, outcome.describe()
    return handle.result, outcome


def snapshots(world: World) -> dict[str, Kind]:
    return {n: r.kind for n, r in world.db.namespace("default").snapshotter("native").items()}


def commit_chain(world: World, chain: str, parent: str = "") -> None:
    """Another client commits ``chain`` (through the raw store, outside the pull)."""
    store = world.snapshot_stores["native"]
    key = f"other-client {chain}"
    store.prepare(RAW, key, parent, labels={SNAPSHOT_REF: chain})
    store.commit(RAW, chain, key, labels={SNAPSHOT_REF: chain})


def extraction_keys(world: World) -> list[str]:
    return [n for n in snapshots(world) if n.startswith("extract")]


# --- Stat by chain ID ------------------------------------------------------------------------


def test_stat_found_skips_the_layer_without_fetching_it() -> None:
    world, image = make_world()
    commit_chain(world, image.chain_ids[0])
    result, _ = pull(world)
    assert result.ok
    assert result.skipped == ((image.chain_ids[0], "stat"),)
    assert result.unpacks[0].fetch_offset == 1
    assert world.registry.fetch_count(image.layers[0].digest) == 0  # #8973
    assert result.committed == (image.chain_ids[1],)


def test_stat_error_other_than_not_found_fails_the_unpack() -> None:
    world, image = make_world()

    def broken(ctx: object, key: str) -> None:
        raise Unknown("metadata store is sick")

    intercept(world, "snapshotter:native", stat=broken)
    result, _ = pull(world)
    assert isinstance(result.error, Unknown)
    assert result.message == (
        f"failed to stat snapshot {image.chain_ids[0]}: metadata store is sick: unknown"
    )
    assert result.prepared == ()


# --- Prepare, three tries -----------------------------------------------------------------


def test_prepare_already_exists_then_chain_found_skips_the_layer() -> None:
    world, image = make_world()
    first = image.chain_ids[0]

    def other_client_wins(ctx: object, key: str, parent: str = "", **kw: Any) -> None:
        if parent == "" and first not in snapshots(world):
            commit_chain(world, first)  # between our Stat and our Prepare

    intercept(world, "snapshotter:native", prepare=other_client_wins)
    result, _ = pull(world)
    assert result.ok
    attempts = result.unpacks[0].prepare_attempts
    assert [(c, o) for c, _, o in attempts][:1] == [(first, "AlreadyExists")]
    assert result.skipped == ((first, "prepare_exists"),)
    assert result.unpacks[0].fetch_offset == 1
    assert result.committed == (image.chain_ids[1],)


def test_prepare_already_exists_chain_not_found_retries_with_a_new_key() -> None:
    world, image = make_world(
        faults=FaultPlan.scripted(Rule("snapshots.prepare.exists", key=chain_id(0), times=1))
    )
    result, _ = pull(world)
    assert result.ok
    attempts = [a for a in result.unpacks[0].prepare_attempts if a[0] == image.chain_ids[0]]
    assert [o for _, _, o in attempts] == ["AlreadyExists", "ok"]
    assert attempts[0][1] != attempts[1][1], "each try has a new unique key"


def chain_id(i: int) -> str:
    return built().single.chain_ids[i]


def test_three_prepare_already_exists_then_failure() -> None:
    chain = chain_id(0)
    world, _ = make_world(
        faults=FaultPlan.scripted(Rule("snapshots.prepare.exists", key=chain, times=3))
    )
    result, _ = pull(world)
    assert isinstance(result.error, AlreadyExists) and result.error.injected
    assert result.message == (
        f'unable to prepare extraction snapshot: target snapshot "{chain}": already exists'
    )
    attempts = result.unpacks[0].prepare_attempts
    assert len(attempts) == 3 and len({k for _, k, _ in attempts}) == 3
    assert result.unpacks[0].fetch_offset is None, "nothing was fetched"


def test_prepare_already_exists_then_stat_error_fails() -> None:
    chain = chain_id(0)
    world, _ = make_world(
        faults=FaultPlan.scripted(Rule("snapshots.prepare.exists", key=chain, times=1))
    )
    stats = {"n": 0}

    def second_stat_fails(ctx: object, key: str) -> None:
        stats["n"] += 1
        if stats["n"] == 2:  # the Stat after AlreadyExists
            raise Unknown("stat failed")

    intercept(world, "snapshotter:native", stat=second_stat_fails)
    result, _ = pull(world)
    assert result.message == f"failed to stat snapshot {chain}: stat failed: unknown"


def test_prepare_other_error_fails_naming_the_key() -> None:
    # The #3787 symptom: the parent vanished between its commit and the child's Prepare.
    world, image = make_world()
    parent = image.chain_ids[0]

    def parent_removed(ctx: object, key: str, parent_key: str = "", **kw: Any) -> None:
        if parent_key == parent:
            world.snapshot_stores["native"].remove(RAW, parent)

    intercept(world, "snapshotter:native", prepare=parent_removed)
    result, _ = pull(world)
    assert isinstance(result.error, NotFound)
    (key,) = [k for c, k, o in result.unpacks[0].prepare_attempts if c == image.chain_ids[1]]
    assert result.message == (
        f'failed to prepare extraction snapshot "{key}": '
        f"parent snapshot {parent} does not exist: not found"
    )


# --- the lazy fetch and the wait --------------------------------------------------------------


def test_layers_from_the_fetch_offset_are_fetched_even_if_their_chain_exists() -> None:
    world, image = make_world(n_layers=3)
    c0, c1, _ = image.chain_ids

    def commit_c1_first(ctx: object, key: str) -> None:
        if key == c1 and c1 not in snapshots(world):
            commit_chain(world, c1, c0)

    intercept(world, "snapshotter:native", stat=commit_c1_first)
    result, _ = pull(world)
    assert result.ok
    assert result.unpacks[0].fetch_offset == 0
    assert set(result.unpacks[0].fetched) == {d.digest for d in image.layers}
    assert result.skipped == ((c1, "stat"),)
    assert world.registry.fetch_count(image.layers[1].digest) == 1


def test_each_layer_waits_only_for_its_own_download() -> None:
    # The small first layer is applied while the big second one is still downloading.
    layers = [build_layer({"small": b"1"}), build_layer({"big": noise(40_000, 1)})]
    image = build_image(REF, layers).single
    world = World.create(network=Network(bandwidth=20_000))
    world.push(build_image(REF, layers))
    result, _ = pull(world)
    assert result.ok
    applied = {r.digest: r.time for r in world.applier.applied}
    commits = [
        e
        for e in world.env.trace.events
        if e.type == "complete"
        and e.op == "content.commit"
        and e.args.get("ref") == f"layer-{image.layers[1].digest}"
    ]
    assert applied[image.layers[0].digest] < commits[0].time < applied[image.layers[1].digest]


def _cancel_at(world: World, t: float) -> Any:
    ctx, cancel = world.context().with_cancel()

    def canceller() -> Generator[Any, Any, None]:
        yield world.env.timeout(t)
        cancel()

    world.go(canceller(), name="canceller")
    return ctx


def test_cancellation_while_waiting_returns_without_abort_at_the_seed() -> None:
    world, _ = make_world(big=True, network=Network(bandwidth=10_000))
    result, _ = pull(world, ctx=_cancel_at(world, 1.0))
    assert isinstance(result.error, Canceled) and result.message == "context canceled"
    assert result.aborted == ()
    (key,) = result.extraction_keys
    assert snapshots(world)[key] is Kind.ACTIVE, "the extract-* snapshot leaks"
    assert not result.lease_deleted, "done(ctx) on a cancelled context fails: the lease stays"
    assert result.lease in world.db.namespace("default").leases


def test_cancellation_while_waiting_aborts_with_a_cleanup_context_from_v17() -> None:
    world, _ = make_world("v1.7", big=True, network=Network(bandwidth=10_000))
    result, _ = pull(world, "v1.7", ctx=_cancel_at(world, 1.0))
    assert isinstance(result.error, Canceled)
    (record,) = result.unpacks[0].aborted
    assert record.outcome == "ok"
    assert extraction_keys(world) == []


def test_abort_on_cancellation_without_the_cleanup_context_fails() -> None:
    # 8017daa12 before 0bc9f7b54 (#7859): abort(ctx) with the cancelled ctx.
    era = preset("v1.7").but(cleanup_ctx_detached=False)
    impl = ReferenceImplementation(era, name="v1.7-no-cleanup-ctx")
    world, _ = make_world(impl, big=True, network=Network(bandwidth=10_000))
    result, _ = pull(world, impl, ctx=_cancel_at(world, 1.0))
    (record,) = result.unpacks[0].aborted
    assert record.outcome == "Canceled"
    assert len(extraction_keys(world)) == 1


def test_fetch_error_while_waiting_returns_it_without_abort_at_the_seed() -> None:
    plan = FaultPlan.scripted(Rule("fetch.error", key=built().single.layers[0].digest))
    world, _ = make_world(faults=plan)
    result, _ = pull(world)
    assert isinstance(result.error, Unknown) and result.error.injected
    assert result.message.startswith("unexpected status code")
    assert result.aborted == ()
    assert len(extraction_keys(world)) == 1
    assert result.unpacks[0].fetched == ()


def test_fetch_error_while_waiting_aborts_from_v17() -> None:
    plan = FaultPlan.scripted(Rule("fetch.error", key=built().single.layers[0].digest))
    world, _ = make_world("v1.7", faults=plan)
    result, _ = pull(world, "v1.7")
    assert isinstance(result.error, Unknown)
    assert [a.outcome for a in result.unpacks[0].aborted] == ["ok"]
    assert extraction_keys(world) == []


class _PickSecondReadyCase(BaseChooser):
    """FIFO, except that a select with two ready cases takes the second."""

    def _pick(self, n: int, kind: str) -> int:
        return 1 if kind == "select" and n == 2 else 0


def _done_and_error_both_ready(chooser: BaseChooser) -> tuple[PullResult, PlatformImage]:
    # Layer 2 is truncated (its commit fails after the download) and layer 0's Apply is slow,
    # so when the unpacker reaches layer 1's select, layer 1's done and the fetch error are
    # both ready.
    layers = [build_layer({f"l{i}": bytes([i])}) for i in range(2)]
    layers.append(build_layer({"big": noise(40_000, 2)}))
    built = build_image(REF, layers)
    plan = FaultPlan.scripted(Rule("fetch.truncate", key=built.single.layers[2].digest))
    world = World.create(
        chooser=chooser, faults=plan, apply_rate=20.0, network=Network(bandwidth=20_000)
    )
    world.push(built)
    result, _ = pull(world)
    return result, built.single


def test_select_with_done_and_fetch_error_ready_goes_through_the_chooser() -> None:
    fifo, image = _done_and_error_both_ready(FifoChooser())
    assert fifo.error_class == "FailedPrecondition"
    assert fifo.applied == image.chain_ids[:1], "FIFO takes the first ready case: the error"
    other, _ = _done_and_error_both_ready(_PickSecondReadyCase())
    assert other.error_class == "FailedPrecondition"
    assert other.applied == image.chain_ids[:2], "the other order applies layer 1 first"
    assert other.message == fifo.message


# --- Apply with the diff ID check -----------------------------------------------------------


def test_apply_error_aborts_and_names_the_diff_id() -> None:
    world, image = make_world(faults=FaultPlan.scripted(Rule("diff.apply.error")))
    result, _ = pull(world)
    assert isinstance(result.error, Unknown) and result.error.injected
    assert result.message == (
        f"failed to extract layer {image.diff_ids[0]}: unexpected EOF: unknown"
    )
    assert [a.outcome for a in result.unpacks[0].aborted] == ["ok"]
    assert extraction_keys(world) == []


def test_apply_of_a_vanished_blob_says_content_digest_not_found() -> None:
    world, image = make_world()
    layer = image.layers[0].digest

    def blob_deleted(ctx: Any, desc: Any, mounts: Any) -> None:
        world.content_store.delete(RAW, layer)

    intercept(world, "applier", apply=blob_deleted)
    result, _ = pull(world)
    assert isinstance(result.error, NotFound)
    assert result.message == (
        f"failed to extract layer {image.diff_ids[0]}: failed to get reader from content "
        f"store: content digest {layer}: not found"
    )


def test_wrong_diff_id_aborts_and_quotes_the_expected_id() -> None:
    world, image = make_world(faults=FaultPlan.scripted(Rule("diff.apply.wrong_diff_id")))
    result, _ = pull(world)
    assert isinstance(result.error, GoError) and result.error_class == "other"
    assert result.message == f'wrong diff id calculated on extraction "{image.diff_ids[0]}"'
    assert [a.key for a in result.unpacks[0].aborted] == list(result.extraction_keys)
    assert image.chain_ids[0] not in snapshots(world), "a corrupt layer is never committed"


# --- Commit, AlreadyExists tolerated ----------------------------------------------------------


def test_commit_already_exists_aborts_and_continues() -> None:
    chain = chain_id(1)
    world, image = make_world(faults=FaultPlan.scripted(Rule("snapshots.commit.exists", key=chain)))
    result, _ = pull(world)
    assert result.ok
    assert result.skipped == ((chain, "commit_exists"),)
    assert [a.chain_id for a in result.unpacks[0].aborted] == [chain]
    assert result.committed == (image.chain_ids[0],)
    labels = world.db.namespace("default").content
    assert UNCOMPRESSED not in labels[image.layers[1].digest].labels, "only applied+committed"
    assert labels[image.config.digest].labels[snapshot_gc_label("native")] == chain


def test_commit_other_error_fails_naming_the_key() -> None:
    world, _ = make_world()

    def lease_deleted(ctx: Any, name: str, key: str, **kw: Any) -> None:
        world.lease_manager.delete(RAW, ctx.lease)

    intercept(world, "snapshotter:native", commit=lease_deleted)
    result, _ = pull(world)
    assert isinstance(result.error, NotFound)
    (key,) = result.extraction_keys
    assert result.message == (f"failed to commit snapshot {key}: lease does not exist: not found")
    assert [a.outcome for a in result.unpacks[0].aborted] == ["ok"]


# --- the labels after the layers -------------------------------------------------------------


def test_uncompressed_label_failure_fails_but_the_snapshot_stays_committed() -> None:
    world, image = make_world(n_layers=1)
    layer = image.layers[0].digest

    def blob_gone(ctx: Any, info: Any, *paths: str) -> None:
        if f"labels.{UNCOMPRESSED}" in paths:
            world.content_store.delete(RAW, layer)

    intercept(world, "content", update=blob_gone)
    result, _ = pull(world)
    assert isinstance(result.error, NotFound)
    assert result.message == f"content digest {layer}: not found"
    assert snapshots(world)[image.chain_ids[0]] is Kind.COMMITTED


def test_config_label_is_written_even_when_every_layer_was_skipped() -> None:
    layers = [build_layer({"shared": b"1"})]
    first = build_image("registry.test/first:1", layers)
    second = build_image("registry.test/second:1", layers, config_labels={"v": "2"})
    world = World.create()
    world.push(first, second)
    start_pull(world, "seed", first.name)
    world.run()
    handle = start_pull(world, "seed", second.name)
    world.run()
    assert handle.result is not None and handle.result.ok
    assert handle.result.committed == ()
    labels = world.db.namespace("default").content[second.single.config.digest].labels
    assert labels[snapshot_gc_label("native")] == second.single.chain_ids[-1]  # #2876


def test_layer_and_diff_id_counts_must_match() -> None:
    from unpacksim.model.digest import digest_of
    from unpacksim.model.images import ImageConfig, Manifest
    from unpacksim.model.oci import MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_OCI_MANIFEST, Descriptor

    layer = build_layer({"a": b"1"})
    config_bytes = ImageConfig((layer.diff_id, layer.diff_id)).to_json()
    config = Descriptor(MEDIA_TYPE_OCI_CONFIG, digest_of(config_bytes), len(config_bytes))
    manifest_bytes = Manifest(config, (layer.descriptor(),)).to_json()
    manifest = Descriptor(MEDIA_TYPE_OCI_MANIFEST, digest_of(manifest_bytes), len(manifest_bytes))
    world = World.create()
    blobs = {config.digest: config_bytes, manifest.digest: manifest_bytes, layer.digest: layer.blob}
    world.registry.put("registry.test/odd:1", manifest, blobs)
    handle = start_pull(world, "seed", "registry.test/odd:1")
    world.run()
    assert handle.result is not None
    assert handle.result.message == "number of layers and diffIDs don't match: 1 != 2"
    assert handle.result.error_class == "other"


# --- reading the config ------------------------------------------------------------------


def test_config_read_error_is_returned_as_is() -> None:
    world, image = make_world()
    config = image.config.digest
    reads = {"n": 0}

    def config_gone(ctx: Any, desc: Any) -> None:
        if desc.digest == config:
            reads["n"] += 1
            if reads["n"] == 1:  # the unpacker's ReadBlob (the fetch never reads a config)
                world.content_store.delete(RAW, config)

    intercept(world, "content", read_blob=config_gone)
    result, _ = pull(world)
    assert isinstance(result.error, NotFound)
    assert result.message == f"content digest {config}: not found"
    assert result.unpacks[0].prepare_attempts == ()


def test_a_config_that_is_not_json_fails_to_unmarshal() -> None:
    from unpacksim.model.digest import digest_of
    from unpacksim.model.images import Manifest
    from unpacksim.model.oci import MEDIA_TYPE_OCI_CONFIG, MEDIA_TYPE_OCI_MANIFEST, Descriptor

    layer = build_layer({"a": b"1"})
    config_bytes = b"{not json"
    config = Descriptor(MEDIA_TYPE_OCI_CONFIG, digest_of(config_bytes), len(config_bytes))
    manifest_bytes = Manifest(config, (layer.descriptor(),)).to_json()
    manifest = Descriptor(MEDIA_TYPE_OCI_MANIFEST, digest_of(manifest_bytes), len(manifest_bytes))
    world = World.create()
    blobs = {config.digest: config_bytes, manifest.digest: manifest_bytes, layer.digest: layer.blob}
    world.registry.put("registry.test/bad:1", manifest, blobs)
    handle = start_pull(world, "seed", "registry.test/bad:1")
    world.run()
    assert handle.result is not None and handle.result.error_class == "other"
    assert handle.result.message.startswith("unmarshal image config: ")


# --- the rest of the wait and the fetch -------------------------------------------------------


class _RecordingFifo(BaseChooser):
    """FIFO that remembers how many cases were ready at each select."""

    def __init__(self) -> None:
        super().__init__()
        self.selects: list[int] = []

    def _pick(self, n: int, kind: str) -> int:
        if kind == "select":
            self.selects.append(n)
        return 0


def test_a_nil_receive_from_the_closed_fetch_error_falls_through_to_apply() -> None:
    # Once every download succeeded fetchErr is closed; FIFO then takes that case (index 0)
    # at a later layer's select, receives nil, and goes on to Apply.
    chooser = _RecordingFifo()
    world, image = make_world(n_layers=3, chooser=chooser, apply_rate=200.0)
    result, _ = pull(world)
    assert result.ok and result.applied == image.chain_ids
    assert 2 in chooser.selects, "a select saw the closed fetchErr and a closed done together"


def test_limiter_acquire_fails_when_the_unpack_is_cancelled() -> None:
    # v1.6: the second layer waits for the limiter (MaxConcurrentDownloads=1); cancelling
    # makes Acquire fail and fetch returns at once.
    world, _ = make_world("v1.6", big=True, network=Network(bandwidth=10_000))
    result, _ = pull(
        world,
        "v1.6",
        opts=PullOptions(max_concurrent_downloads=1),
        ctx=_cancel_at(world, 1.0),
    )
    assert isinstance(result.error, Canceled)
    assert result.unpacks[0].fetched == ()


def test_err_skip_desc_from_a_layer_handler_counts_as_fetched() -> None:
    world, image = make_world(n_layers=1)

    def skip_layers(h: Handler) -> Handler:
        def run(ctx: Any, desc: Descriptor) -> HandlerProcess:
            if desc.media_type.startswith("application/vnd.oci.image.layer"):
                raise ErrSkipDesc()
            return (yield from h(ctx, desc))

        return run

    result, _ = pull(world, opts=PullOptions(handler_wrapper=skip_layers))
    layer = image.layers[0].digest
    assert result.unpacks[0].fetched == (layer,)
    assert isinstance(result.error, NotFound)  # done closed, but the blob never came
    assert result.message.endswith(f"content digest {layer}: not found")


def test_config_label_failure_is_returned_as_is() -> None:
    world, image = make_world(n_layers=1)
    config = image.config.digest

    def config_gone(ctx: Any, info: Any, *paths: str) -> None:
        if info.digest == config and f"labels.{snapshot_gc_label('native')}" in paths:
            world.content_store.delete(RAW, config)

    intercept(world, "content", update=config_gone)
    result, _ = pull(world)
    assert isinstance(result.error, NotFound)
    assert result.message == f"content digest {config}: not found"
    assert result.committed == image.chain_ids
