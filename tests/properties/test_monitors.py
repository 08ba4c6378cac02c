"""The monitors: the Prepare check at the moment of the Prepare, the step invariants."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

from unpacksim.model.labels import SNAPSHOT_REF
from unpacksim.properties.graph import snapshot_id
from unpacksim.properties.monitors import PARENT_PROTECTED, STATE_INVARIANTS, Monitors
from unpacksim.properties.program import (
    DeleteImage,
    HoldSnapshot,
    ImageSpec,
    Inject,
    Program,
    Pull,
)
from unpacksim.properties.runner import ProgramRunner

BASE = ImageSpec("registry.test/base:1", ("base",))
APP = ImageSpec("registry.test/app:1", ("base", "app"))
BASE_CHAIN = BASE.build().single.chain_ids[0]


def _run(impl: str, *actions: object, snapshotters: tuple[str, ...] = ("native",)) -> Monitors:
    program = Program(images=(BASE, APP), actions=(), snapshotters=snapshotters)
    runner = ProgramRunner(program, impl)
    monitors = Monitors(runner)
    for action in actions:
        runner.apply(action)  # type: ignore[arg-type]
        monitors.step()
    runner.finish()
    return monitors


STAT_SKIP = (
    Pull(at=0.0, actor="p1", image=BASE.name),
    DeleteImage(at=0.05, actor="user", image=BASE.name),
    Pull(at=0.06, actor="p2", image=APP.name),
)


def test_the_prepare_monitor_sees_the_parent_at_the_prepare() -> None:
    monitors = _run("seed", *STAT_SKIP)
    (found,) = monitors.found
    assert found.property == PARENT_PROTECTED and found.actor == "p2"
    evidence = found.violation.evidence
    assert evidence["parent"] == BASE_CHAIN and evidence["parent_present"] is True
    # Still named by the config of the deleted image, which nothing reaches any more.
    config = BASE.build().single.config.digest
    assert evidence["lease"] and evidence["referenced_by"] == [f"content:default:{config}"]
    assert evidence["time"] == found.time and found.process == evidence["process"]
    node = snapshot_id("default", "native", BASE_CHAIN)
    assert found.violation.node == node
    assert found.after is not None and found.after.nodes[node]["present"]
    # before: the graph at the step boundary (the image was still there, then deleted)
    assert found.before is not None and "image:default:registry.test/base:1" not in found.before


def test_v20_prepares_only_on_protected_parents_and_the_check_is_not_vacuous() -> None:
    monitors = _run("v2.0", *STAT_SKIP)
    assert monitors.found == []
    assert monitors.prepare.checked == 1  # p2's Prepare of the app layer was judged


def test_prepares_of_other_actors_and_of_faulted_pulls_are_not_judged() -> None:
    chain = APP.build().single.chain_ids[0]
    monitors = _run(
        "seed",
        Pull(at=0.0, actor="p1", image=APP.name),
        HoldSnapshot(at=0.1, actor="ctr", image=APP.name, container="c1"),
        Inject(at=0.1, actor="chaos", site="snapshots.commit.exists", key=chain),
        Pull(at=0.1, actor="p2", image=BASE.name),
    )
    # The container's Prepare is a client's, and the injected Commit AlreadyExists tells p2 a
    # story no snapshot backs; neither is the unpacker's race.
    assert [f for f in monitors.found if f.property == PARENT_PROTECTED] == []


def test_the_monitor_watches_every_snapshotter() -> None:
    program = Program(images=(BASE,), actions=(), snapshotters=("native", "overlay"))
    runner = ProgramRunner(program, "seed")
    Monitors(runner)
    stores = [proxy.store for proxy in runner.world.snapshotters.values()]
    assert [type(s).__name__ for s in stores] == ["_WatchedSnapshotter"] * 2
    assert stores[1].name == "overlay"  # other attributes pass through


def test_the_state_monitor_reports_a_broken_state_once() -> None:
    program = Program(images=(APP,), actions=())
    runner = ProgramRunner(program, "seed")
    monitors = Monitors(runner)
    runner.apply(Pull(at=0.0, actor="p1", image=APP.name))
    runner.advance_to(1.0)
    assert monitors.step() == []
    ns = runner.world.db.namespace("default")
    top = APP.build().single.chain_ids[-1]
    runner.world.snapshot_backends["native"].snapshots.pop(ns.snapshots["native"][top].backend_key)
    assert monitors.step() == []  # nothing happened since: the check is skipped
    runner.apply(Pull(at=1.0, actor="p2", image=APP.name))
    runner.advance_to(2.0)
    new = monitors.step()
    assert {f.violation.invariant for f in new} == {"metadata-backend-agree"}
    assert all(f.property == STATE_INVARIANTS for f in new)
    assert new[0].before is not None and new[0].after is not None
    runner.apply(Pull(at=2.0, actor="p3", image=APP.name))
    runner.advance_to(3.0)
    assert monitors.step() == []  # the same violation is not reported twice


def test_a_prepare_with_a_missing_parent_reports_it_gone() -> None:
    program = Program(images=(APP,), actions=())
    runner = ProgramRunner(program, "seed")
    monitors = Monitors(runner)
    runner.apply(Pull(at=0.0, actor="p1", image=APP.name))
    sn = runner.world.snapshotter()
    ctx = runner.world.context()

    def prepare_on_nothing() -> Generator[Any, Any, None]:
        yield from sn.prepare(ctx, "k", "sha256:gone", labels={SNAPSHOT_REF: "x"})

    runner.pull_actors.add("fake")
    proc = runner.world.go(prepare_on_nothing(), name="fake")
    runner.roots[runner.env.process_name(proc)] = "fake"
    runner.finish()
    (found,) = [f for f in monitors.found if f.actor == "fake"]
    assert "already gone" in found.violation.message
    assert found.violation.evidence["parent_present"] is False
