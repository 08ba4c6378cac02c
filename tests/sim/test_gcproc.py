"""The simulated GC: phases and locks, ScheduleAndWait, the scheduler in simulated time, gc.run."""

from __future__ import annotations

import json
import math
from collections.abc import Generator
from typing import Any

import pytest

from unpacksim.model.builders import build_image, write_image
from unpacksim.model.content import Info
from unpacksim.model.errdefs import DeadlineExceeded, NotFound
from unpacksim.model.gc_scheduler import SchedulerConfig
from unpacksim.model.images import Image
from unpacksim.sim.env import Wait
from unpacksim.sim.faults import FaultPlan, Rule
from unpacksim.sim.gcproc import CollectionRecord
from unpacksim.sim.go import Gen
from unpacksim.sim.services import LatencyModel
from unpacksim.unpack.world import World

SLOW_GC = LatencyModel(
    {"gc.mark": (0.01,), "gc.sweep_metadata": (0.01,), "gc.sweep_backend": (0.01,)}
)


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


def trace(world: World) -> list[dict[str, Any]]:
    return [json.loads(line) for line in world.env.trace.lines()]


def first(world: World, op: str, kind: str, process: str | None = None) -> dict[str, Any]:
    """The first ``kind`` event of ``op`` (optionally of ``process``) in the trace."""
    for event in trace(world):
        mine = process is None or event["process"] == process
        if event["op"] == op and event["type"] == kind and mine:
            return event
    raise AssertionError(f"no {kind} of {op} in the trace")


def at(world: World, op: str, kind: str, process: str | None = None) -> float:
    """The time of :func:`first`."""
    return float(first(world, op, kind, process)["time"])


def seq(world: World, op: str, kind: str, process: str | None = None) -> int:
    """The trace position of :func:`first`."""
    return int(first(world, op, kind, process)["seq"])


def garbage(world: World) -> tuple[str, str]:
    """An unreferenced blob and an unreferenced committed snapshot ("old")."""
    ctx = world.context()
    image = build_image("registry.test/app:1", [{"a": b"1"}])
    write_image(ctx, world.content_store, image)
    world.snapshot_stores["native"].prepare(ctx, "tmp")
    world.snapshot_stores["native"].commit(ctx, "old", "tmp")
    return image.single.config.digest, "old"


def after(world: World, delay: float, gen: Generator[Any, Any, Any]) -> Gen[Any]:
    yield world.env.timeout(delay)
    return (yield from gen)


# --- one collection ---------------------------------------------------------------------------


def test_collect_runs_the_phases_in_order_and_records_them() -> None:
    world = World.create()
    blob, old = garbage(world)
    record = drive(world, world.gc.collect())
    assert isinstance(record, CollectionRecord) and world.gc.collections == [record]
    removed = {node.key for node in record.collection.metadata.removed}
    assert blob in removed and f"native/{old}" in removed
    assert record.collection.backends.removed_blobs
    assert world.snapshot_backends["native"].snapshots == {}
    ops = [(e["op"], e["type"]) for e in trace(world)]
    assert ops[:5] == [
        ("gc.collect", "invoke"),
        ("gc.mark", "invoke"),
        ("gc.mark", "complete"),
        ("gc.sweep_metadata", "invoke"),
        ("gc.sweep_metadata", "complete"),
    ]
    assert ops[-1] == ("gc.collect", "complete")
    backends = [e["args"]["backend"] for e in trace(world) if e["op"] == "gc.sweep_backend"]
    assert sorted(set(backends)) == ["content", "snapshots/native"]
    assert record.pause == pytest.approx(0.002) and record.ended > record.metadata_done


def test_a_metadata_write_waits_for_mark_and_sweep_but_a_read_does_not() -> None:
    world = World.create(latency=SLOW_GC)
    garbage(world)
    ctx = world.context()
    kept = build_image("registry.test/kept:1", [{"k": b"2"}])
    write_image(ctx, world.content_store, kept)
    world.image_store.create(ctx, Image("kept", kept.target))  # a root: survives the sweep
    digest = kept.target.digest
    world.go(world.gc.collect(), name="gc")
    world.go(after(world, 0.004, world.content.info(ctx, digest)), name="reader")
    world.go(
        after(world, 0.004, world.content.update(ctx, Info(digest, labels={"x": "y"}), "labels.x")),
        name="writer",
    )
    assert world.run().ok
    assert at(world, "content.info", "complete") == pytest.approx(0.005)
    assert at(world, "content.update", "complete") == pytest.approx(0.02)  # the lock's release
    assert at(world, "gc.sweep_metadata", "complete") == pytest.approx(0.02)


def test_a_prepare_lands_between_the_metadata_sweep_and_the_backend_sweep() -> None:
    world = World.create(latency=SLOW_GC)
    _, old = garbage(world)
    ctx = world.context()
    world.go(world.gc.collect(), name="gc")
    world.go(after(world, 0.014, world.snapshotter().prepare(ctx, "new")), name="pull")
    assert world.run().ok
    swept_metadata = seq(world, "gc.sweep_metadata", "complete")
    prepared = seq(world, "snapshots.prepare", "complete")
    backend_sweep = seq(world, "gc.sweep_backend", "invoke", process="gc.sweep.native")
    assert swept_metadata < prepared < backend_sweep
    # The Prepare held the snapshotter's lock, so the backend sweep saw its record.
    backend = world.snapshot_backends["native"].snapshots
    assert [key.rsplit("/", 1)[1] for key in backend] == ["new"]
    removed = world.gc.collections[0].collection.backends.removed_snapshots
    assert [(sn, key.rsplit("/", 1)[1]) for sn, key in removed] == [("native", old)]
    assert old not in world.db.namespace("default").snapshotter("native")


def test_a_prepare_after_the_backend_sweep_took_its_lock_waits_for_it() -> None:
    world = World.create(latency=SLOW_GC)
    garbage(world)
    ctx = world.context()
    world.go(world.gc.collect(), name="gc")
    world.go(after(world, 0.0195, world.snapshotter().prepare(ctx, "new")), name="pull")
    assert world.run().ok
    assert at(world, "gc.sweep_backend", "complete", process="gc.sweep.native") == pytest.approx(
        0.03
    )
    assert at(world, "snapshots.prepare", "complete") == pytest.approx(0.03)
    assert seq(world, "gc.sweep_backend", "complete", process="gc.sweep.native") < seq(
        world, "snapshots.prepare", "complete"
    )


def test_a_prepare_on_a_swept_parent_finds_it_gone_from_metadata_only() -> None:
    """The window containerd #3051 shows: metadata swept, backend snapshot still there."""
    world = World.create(latency=SLOW_GC)
    _, old = garbage(world)
    ctx = world.context()
    seen: dict[str, Any] = {}

    def pull() -> Gen[None]:
        yield world.env.timeout(0.02)
        seen["backend"] = len(world.snapshot_backends["native"].snapshots)
        try:
            yield from world.snapshotter().prepare(ctx, "child", old)
        except Exception as exc:
            seen["error"] = str(exc)

    world.go(world.gc.collect(), name="gc")
    world.go(pull(), name="pull")
    assert world.run().ok
    assert seen == {"backend": 1, "error": f"parent snapshot {old} does not exist: not found"}


# --- ScheduleAndWait --------------------------------------------------------------------------


def test_schedule_and_wait_runs_a_collection_and_returns_it() -> None:
    world = World.create()
    blob, _ = garbage(world)
    record = drive(world, world.gc.schedule_and_wait(world.context()))
    assert record.reason == "trigger" and world.gc.collections == [record]
    assert blob not in world.db.namespace("default").content


def test_schedule_and_wait_during_a_collection_waits_for_the_next_one() -> None:
    world = World.create(latency=SLOW_GC)
    garbage(world)
    world.go(world.gc.collect(), name="gc")
    record = drive(world, after(world, 0.005, world.gc.schedule_and_wait(world.context())))
    first, second = world.gc.collections
    assert record is second and second.started >= first.ended


def test_schedule_and_wait_honours_the_context() -> None:
    world = World.create(latency=LatencyModel({"gc.mark": (10.0,)}))
    ctx, _ = world.context().with_timeout(1.0)
    with pytest.raises(DeadlineExceeded):
        drive(world, world.gc.schedule_and_wait(ctx))


# --- the scheduler ----------------------------------------------------------------------------


def idle(world: World, seconds: float) -> Gen[None]:
    yield world.env.timeout(seconds)


def test_first_collection_at_the_startup_delay_then_the_pause_interval() -> None:
    world = World.create(gc=True)
    drive(world, idle(world, 0.5))
    (first,) = world.gc.collections
    assert first.reason == "tick" and first.started == pytest.approx(0.1)
    pause = first.pause
    assert world.gc.state.interval == pytest.approx(pause / 0.02 - pause)


def test_a_deletion_before_the_first_collection_waits_for_the_startup_tick() -> None:
    world = World.create(gc=True)
    ctx = world.context()

    def client() -> Gen[None]:
        yield from world.leases.create(ctx, id="l")
        yield from world.leases.delete(ctx, "l")
        yield world.env.timeout(0.5)

    drive(world, client())
    assert [round(c.started, 6) for c in world.gc.collections] == [0.1]


def test_without_startup_delay_a_deletion_collects_at_once() -> None:
    world = World.create(gc=SchedulerConfig(startup_delay=0))
    ctx = world.context()

    def client() -> Gen[None]:
        yield from world.leases.create(ctx, id="l")
        yield from world.leases.delete(ctx, "l")
        yield world.env.timeout(0.5)

    drive(world, client())
    assert world.gc.collections[0].started == pytest.approx(0.002)
    assert world.gc.collections[0].reason == "tick"


def test_the_mutation_threshold_schedules_a_collection() -> None:
    world = World.create(gc=SchedulerConfig(startup_delay=0, mutation_threshold=3))
    ctx = world.context()

    def client() -> Gen[None]:
        for i in range(3):
            yield from world.leases.create(ctx, id=f"l{i}")
        yield world.env.timeout(0.5)

    drive(world, client())
    assert [round(c.started, 6) for c in world.gc.collections] == [0.003]


def test_ticks_resume_on_the_tick_grid_after_an_idle_stretch() -> None:
    world = World.create(gc=True)
    ctx = world.context()

    def client() -> Gen[None]:
        yield world.env.timeout(1.0)
        yield from world.leases.create(ctx, id="l")
        yield from world.leases.delete(ctx, "l")
        yield world.env.timeout(0.5)

    drive(world, client())
    first, second = world.gc.collections
    interval = first.pause / 0.02 - first.pause
    ticks = (second.started - first.ended) / interval
    assert second.started > 1.002 and second.started - 1.002 <= interval + 1e-9
    assert math.isclose(ticks, round(ticks), abs_tol=1e-6)


def test_an_idle_scheduler_does_not_hide_a_deadlock() -> None:
    world = World.create(gc=True)

    def stuck() -> Gen[None]:
        yield Wait(world.env, "nothing")

    world.go(stuck(), name="stuck")
    outcome = world.run()
    assert outcome.name == "deadlock" and outcome.steps < 100
    assert [b.name for b in outcome.blocked if not b.daemon] == ["stuck"]


def test_manual_mode_ignores_mutations() -> None:
    world = World.create()
    ctx = world.context()

    def client() -> Gen[None]:
        yield from world.leases.create(ctx, id="l")
        yield from world.leases.delete(ctx, "l")
        yield world.env.timeout(5.0)

    drive(world, client())
    assert world.gc.collections == []


def test_start_twice_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="already"):
        World.create().gc.start()


# --- gc.run -----------------------------------------------------------------------------------


def test_gc_run_site_starts_a_collection_at_that_call() -> None:
    world = World.create(faults=FaultPlan.scripted(Rule("gc.run", key="content.info")))
    blob, _ = garbage(world)
    ctx = world.context()

    def client() -> Gen[None]:
        yield from world.content.info(ctx, blob)  # the collection starts here
        yield from world.content.update(ctx, Info(blob, labels={"a": "b"}), "labels.a")

    with pytest.raises(NotFound) as info:
        drive(world, client())  # the update waited for the sweep, which removed the blob
    assert str(info.value) == f"content digest {blob}: not found"
    (record,) = world.gc.collections
    assert record.reason == "fault at content.info"
    assert seq(world, "gc.collect", "invoke") < seq(world, "content.info", "complete")


def test_gc_run_in_a_prepare_gap_removes_an_unreferenced_parent() -> None:
    """create_begin saw the parent; a collection in the gap removed it; create_finish fails."""
    world = World.create(
        faults=FaultPlan.scripted(Rule("gc.run", key="snapshots.prepare.gap", hit=1))
    )
    _, old = garbage(world)
    with pytest.raises(NotFound) as info:
        drive(world, world.snapshotter().prepare(world.context(), "child", old))
    assert str(info.value) == f"parent snapshot {old} does not exist: not found"
    assert world.gc.collections[0].reason == "fault at snapshots.prepare.gap"
    # the failed create removed its backend snapshot; the sweep then removed the parent's
    assert world.snapshot_backends["native"].snapshots == {}
    assert world.db.namespace("default").snapshotter("native") == {}
