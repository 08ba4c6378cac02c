"""The store proxies: traced calls with outcomes, fault sites, the Prepare gaps, locks."""

from __future__ import annotations

import json
from collections.abc import Generator
from typing import Any

import pytest

from unpacksim.model.builders import build_image, write_image
from unpacksim.model.content import Info
from unpacksim.model.digest import digest_of
from unpacksim.model.errdefs import (
    AlreadyExists,
    Canceled,
    FailedPrecondition,
    NotFound,
    Unavailable,
)
from unpacksim.model.images import Image
from unpacksim.model.labels import SNAPSHOT_REF
from unpacksim.model.snapshot_api import Info as SnapshotInfo
from unpacksim.sim.faults import FaultPlan, Rule
from unpacksim.sim.go import Gen
from unpacksim.sim.proxies import LeasesProxy
from unpacksim.unpack.world import World

CHAIN = "sha256:" + "c" * 64


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


def events(world: World, op: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in world.env.trace.lines() if f'"op":"{op}"' in line]


def test_a_call_is_traced_as_invoke_then_complete_with_its_outcome() -> None:
    world = World.create()
    digest = "sha256:" + "d" * 64
    with pytest.raises(NotFound):
        drive(world, world.content.info(world.context(), digest))
    invoke, complete = events(world, "content.info")
    assert (invoke["type"], complete["type"]) == ("invoke", "complete")
    assert invoke["args"] == {"digest": digest} and invoke["process"] == "client"
    assert complete["outcome"] == "NotFound" and not complete["injected"]
    assert complete["error"] == f"content digest {digest}: not found"
    assert complete["time"] - invoke["time"] == pytest.approx(0.001)


def test_successful_writes_complete_ok() -> None:
    world = World.create()
    image = build_image("registry.test/app:1", [{"a": b"1"}])
    write_image(world.context(), world.content_store, image)
    ctx, config = world.context(), image.single.config

    def client() -> Gen[Info]:
        yield from world.content.update(ctx, Info(config.digest, labels={"x": "1"}), "labels.x")
        yield from world.images.create(ctx, Image("app", image.target))
        yield from world.images.update(ctx, Image("app", image.target, labels={"k": "v"}))
        got = yield from world.images.get(ctx, "app")
        assert got.labels == {"k": "v"}
        return (yield from world.content.info(ctx, config.digest))

    assert drive(world, client()).labels == {"x": "1"}
    ops = [(e["op"], e["outcome"]) for e in map(json.loads, world.env.trace.lines())]
    assert ops == [
        ("content.update", None),
        ("content.update", "ok"),
        ("images.create", None),
        ("images.create", "ok"),
        ("images.update", None),
        ("images.update", "ok"),
        ("images.get", None),
        ("images.get", "ok"),
        ("content.info", None),
        ("content.info", "ok"),
    ]


# --- fault sites ------------------------------------------------------------------------------


def test_ref_lock_fault_is_injected_when_a_writer_opens() -> None:
    world = World.create(faults=FaultPlan.scripted(Rule("content.ref_locked", key="layer-x")))
    with pytest.raises(Unavailable) as info:
        drive(world, world.content.writer(world.context(), ref="layer-x"))
    assert info.value.injected and str(info.value) == "ref layer-x locked: unavailable"
    fault, complete = events(world, "content.ref_locked")[0], events(world, "content.writer")[1]
    assert fault["type"] == "fault" and fault["call"] == complete["call"]
    assert complete["outcome"] == "Unavailable" and complete["injected"]
    assert "layer-x" not in world.db.namespace("default").ingests  # nothing was written


def test_ref_lock_site_is_not_reached_when_the_blob_exists() -> None:
    world = World.create(faults=FaultPlan.scripted(Rule("content.ref_locked", times=None)))
    image = build_image("registry.test/app:1", [{"a": b"1"}])
    write_image(world.context(), world.content_store, image)
    with pytest.raises(AlreadyExists):
        drive(world, world.content.writer(world.context(), ref="r", desc=image.single.config))
    assert world.env.faults.report().fired == ()


def test_prepare_exists_fault_needs_a_target_label() -> None:
    world = World.create(faults=FaultPlan.scripted(Rule("snapshots.prepare.exists", key=CHAIN)))
    sn, ctx = world.snapshotter(), world.context()
    with pytest.raises(AlreadyExists) as info:
        drive(world, sn.prepare(ctx, "extract-1", labels={SNAPSHOT_REF: CHAIN}))
    assert info.value.injected
    assert str(info.value) == f'target snapshot "{CHAIN}": already exists'
    assert world.db.namespace("default").snapshotter("native") == {}
    drive(world, sn.prepare(ctx, "plain"))  # no target: the site is not consulted
    hits = {site.site: site.hits for site in world.env.faults.report().sites}
    assert hits["snapshots.prepare.exists"] == 1


def test_commit_exists_fault_leaves_the_active_snapshot() -> None:
    world = World.create(faults=FaultPlan.scripted(Rule("snapshots.commit.exists", key=CHAIN)))
    sn, ctx = world.snapshotter(), world.context()

    def client() -> Gen[None]:
        yield from sn.prepare(ctx, "extract-1")
        yield from sn.commit(ctx, CHAIN, "extract-1")

    with pytest.raises(AlreadyExists) as info:
        drive(world, client())
    assert info.value.injected and str(info.value) == f'snapshot "{CHAIN}": already exists'
    assert list(world.db.namespace("default").snapshotter("native")) == ["extract-1"]


def test_cancel_site_cancels_the_caller_context() -> None:
    world = World.create(faults=FaultPlan.scripted(Rule("ctx.cancel", key="snapshots.stat")))
    ctx, _ = world.context().with_cancel()
    with pytest.raises(Canceled) as info:
        drive(world, world.snapshotter().stat(ctx, "x"))
    assert info.value.injected and ctx.err is not None


# --- the Prepare gaps ---------------------------------------------------------------------------


def test_another_process_runs_between_create_begin_and_create_finish() -> None:
    """Two Prepares of one key: the second passes create_begin inside the first's gaps."""
    world = World.create()
    sn, ctx = world.snapshotter(), world.context()
    results: dict[str, str] = {}

    def prepare(name: str) -> Gen[None]:
        try:
            yield from sn.prepare(ctx, "extract-k")
            results[name] = "ok"
        except AlreadyExists as exc:
            results[name] = str(exc)

    world.go(prepare("first"), name="first")
    world.go(prepare("second"), name="second")
    assert world.run().ok
    # Had create_begin..create_finish been atomic, the second would fail in create_begin,
    # before the backend: here it got through, created a backend snapshot, and lost only at
    # create_finish, which then removed that backend snapshot again.
    assert results == {"first": "ok", "second": 'snapshot "extract-k": already exists'}
    assert len(world.snapshot_backends["native"].snapshots) == 1
    first, second = (
        [e for e in events(world, "snapshots.prepare") if e["process"] == p]
        for p in ("first", "second")
    )
    assert second[0]["time"] < first[1]["time"]  # invoked before the first completed


def test_the_gap_is_visible_to_a_probe_process() -> None:
    world = World.create()
    sn, ctx = world.snapshotter(), world.context()
    backend, records = world.snapshot_backends["native"], world.db.namespace("default")
    seen: list[str] = []

    def probe() -> Gen[None]:
        yield world.env.timeout(0.001)  # arrive when the Prepare reaches the service
        for _ in range(8):
            in_backend = any(k.endswith("/k") for k in backend.snapshots)
            recorded = "k" in records.snapshotter("native")
            seen.append(f"{int(in_backend)}{int(recorded)}")
            yield world.env.timeout(0)

    world.go(sn.prepare(ctx, "k"), name="client")
    world.go(probe(), name="probe")
    assert world.run().ok
    # before, in the gap (backend snapshot, no record yet), after
    assert seen[0] == "00" and "10" in seen and seen[-1] == "11"


# --- writers, locks, synchronous deletes -------------------------------------------------------


def test_close_on_a_cancelled_context_releases_the_ref_lock() -> None:
    world = World.create()
    root = world.context()

    def client() -> Gen[int]:
        ctx, cancel = root.with_cancel()
        cw = yield from world.content.writer(ctx, ref="r")
        yield from cw.write(ctx, b"abc")
        cancel()
        yield from cw.close(ctx)
        again = yield from world.content.writer(root, ref="r")  # not locked any more
        status = yield from again.status(root)
        yield from again.close(root)
        return status.offset

    assert drive(world, client()) == 3


def test_write_on_a_cancelled_context_fails() -> None:
    world = World.create()
    root = world.context()

    def client() -> Gen[None]:
        ctx, cancel = root.with_cancel()
        cw = yield from world.content.writer(ctx, ref="r")
        cancel()
        yield from cw.write(ctx, b"abc")

    with pytest.raises(Canceled):
        drive(world, client())


def test_commit_errors_are_wrapped_commit_failed_as_the_grpc_writer_does() -> None:
    # content/proxy/content_writer.go Commit: errors.Wrap(errdefs.FromGRPC(err), "commit failed")
    world = World.create()
    root = world.context()
    wrong = "sha256:" + "e" * 64

    def client() -> Gen[None]:
        cw = yield from world.content.writer(root, ref="r")
        yield from cw.write(root, b"abc")
        try:
            yield from cw.commit(root, 3, wrong)
        finally:
            yield from cw.close(root)

    with pytest.raises(FailedPrecondition) as info:
        drive(world, client())
    assert str(info.value) == (
        f"commit failed: unexpected commit digest {digest_of(b'abc')}, expected {wrong}: "
        "failed precondition"
    )


def test_synchronous_lease_delete_collects() -> None:
    world = World.create()
    image = build_image("registry.test/app:1", [{"a": b"1"}])
    ctx = world.context().with_lease("pull")

    def client() -> Gen[None]:
        yield from world.leases.create(ctx, id="pull")
        write_image(ctx, world.content_store, image)
        yield from world.leases.delete(ctx, "pull", sync=True)

    drive(world, client())
    assert world.db.namespace("default").content == {}
    assert world.content_store.backend.backend_digests() == []
    assert len(world.gc.collections) == 1


def test_synchronous_image_delete_collects() -> None:
    world = World.create()
    image = build_image("registry.test/app:1", [{"a": b"1"}])
    ctx = world.context()
    write_image(ctx, world.content_store, image)

    def client() -> Gen[None]:
        yield from world.images.create(ctx, Image("app", image.target))
        yield from world.images.delete(ctx, "app", sync=True)

    drive(world, client())
    assert world.db.namespace("default").content == {}


def test_synchronous_delete_needs_a_gc() -> None:
    world = World.create()
    proxy = LeasesProxy(world.services, world.lease_manager)

    def client() -> Gen[None]:
        yield from proxy.create(world.context(), id="l")
        yield from proxy.delete(world.context(), "l", sync=True)

    with pytest.raises(ValueError, match="needs a GC"):
        drive(world, client())


def test_lease_resources_through_the_proxy() -> None:
    world = World.create()
    ctx = world.context()
    resource = ("snapshots/native", "k")

    def client() -> Gen[list[tuple[str, str]]]:
        yield from world.leases.create(ctx, id="l", labels={"a": "b"})
        yield from world.leases.add_resource(ctx, "l", resource)
        listed = yield from world.leases.list_resources(ctx, "l")
        yield from world.leases.delete_resource(ctx, "l", resource)
        leases = yield from world.leases.list(ctx)
        assert [lease.id for lease in leases] == ["l"]
        return listed

    assert drive(world, client()) == [resource]


def test_the_remaining_read_and_write_calls() -> None:
    world = World.create()
    image = build_image("registry.test/app:1", [{"a": b"1"}])
    ctx = world.context()
    write_image(ctx, world.content_store, image)
    sn = world.snapshotter()
    seen: list[str] = []

    def client() -> Gen[None]:
        yield from world.content.walk(ctx, lambda info: seen.append(info.digest))
        reader = yield from world.content.reader_at(ctx, image.single.config)
        assert reader.read_all() == image.blobs[image.single.config.digest]
        cw = yield from world.content.writer(ctx, ref="r", total=3)
        yield from cw.write(ctx, b"ab")
        assert (yield from cw.digest(ctx)) == digest_of(b"ab")
        yield from cw.truncate(ctx, 0)
        yield from cw.close(ctx)
        statuses = yield from world.content.list_statuses(ctx)
        assert [s.ref for s in statuses] == ["r"]
        assert (yield from world.content.status(ctx, "r")).offset == 0
        yield from world.content.abort(ctx, "r")
        yield from world.content.delete(ctx, image.single.config.digest)
        yield from sn.prepare(ctx, "a")
        yield from sn.commit(ctx, "c", "a")
        view = yield from sn.view(ctx, "v", "c")
        assert view == (yield from sn.mounts(ctx, "v"))
        assert (yield from sn.usage(ctx, "c")).size == 0
        info = yield from sn.update(ctx, SnapshotInfo("c", labels={"x": "1"}), "labels.x")
        assert info.labels == {"x": "1"}
        names: list[str] = []
        yield from sn.walk(ctx, lambda _ctx, i: names.append(i.name), "kind==committed")
        assert names == ["c"]
        yield from sn.remove(ctx, "v")
        assert (yield from world.images.list(ctx)) == []

    drive(world, client())
    assert sorted(seen) == sorted(image.blobs)
    assert all(e.type != "complete" or e.outcome == "ok" for e in world.env.trace.events)


def test_ref_lock_site_is_not_reached_for_a_shared_blob() -> None:
    world = World.create(faults=FaultPlan.scripted(Rule("content.ref_locked", times=None)))
    image = build_image("registry.test/app:1", [{"a": b"1"}])
    write_image(world.context("other"), world.content_store, image)  # in another namespace
    config = image.single.config

    def client() -> Gen[int]:
        cw = yield from world.content.writer(world.context(), ref="r", desc=config)
        status = yield from cw.status(world.context())
        yield from cw.commit(world.context(), config.size, config.digest)
        return status.offset

    assert drive(world, client()) == config.size  # starts complete, as containerd shares it
    assert world.env.faults.report().fired == ()
