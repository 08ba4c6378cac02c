"""run_program: actions overlap in simulated time, runs are deterministic, misuse is refused."""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any

import pytest

from unpacksim.model.db import Kind
from unpacksim.model.errdefs import Canceled, Unknown
from unpacksim.model.labels import GC_REF_CONTENT
from unpacksim.properties.program import (
    CollectGarbage,
    CreateLease,
    DeleteImage,
    DeleteLease,
    EditLabels,
    ExpireLease,
    Heal,
    HoldSnapshot,
    ImageSpec,
    Inject,
    Program,
    ProgramError,
    Pull,
    Unpack,
    run_program,
)
from unpacksim.sim.choose import RandomChooser, ReplayChooser
from unpacksim.sim.context import Context
from unpacksim.sim.faults import FaultPlan, Rule
from unpacksim.unpack.interface import ImplementationError
from unpacksim.unpack.results import PullOptions, PullResult
from unpacksim.unpack.world import World

APP = ImageSpec("registry.test/app:1", ("base", "app"))
BIG = ImageSpec("registry.test/big:1", ("big-a", "big-b"), layer_bytes=200_000)


def _program(*actions: Any, images: tuple[ImageSpec, ...] = (APP,), **kw: Any) -> Program:
    return Program(images=images, actions=tuple(actions), **kw)


def test_the_same_program_and_seed_give_the_same_trace() -> None:
    program = _program(
        Pull(at=0.0, actor="p1", image=APP.name),
        Pull(at=0.0, actor="p2", image=APP.name),
        DeleteImage(at=0.01, actor="user", image=APP.name),
    )
    first = run_program(program, "seed", chooser=RandomChooser(5))
    second = run_program(program, "seed", chooser=RandomChooser(5))
    assert first.trace_sha256 == second.trace_sha256
    assert first.schedule == second.schedule != ""
    replay = run_program(program, "seed", chooser=ReplayChooser(first.schedule))
    assert replay.trace_sha256 == first.trace_sha256


def test_actions_overlap_in_simulated_time() -> None:
    program = _program(
        Pull(at=0.0, actor="p1", image=BIG.name),
        CollectGarbage(at=0.005, actor="gc", sync=False),
        images=(BIG,),
        bandwidth=1_000_000.0,
    )
    result = run_program(program, "seed")
    pull, gc = result.actions
    assert pull.outcome == gc.outcome == "ok"
    assert gc.ended is not None and pull.ended is not None
    assert pull.started < gc.started < gc.ended < pull.ended
    assert (
        result.actor_of("pull-1/fetch-layer:" + BIG.build().single.layers[0].digest[7:19]) == "p1"
    )


def test_each_pull_result_and_action_record_is_kept() -> None:
    result = run_program(_program(Pull(at=0.0, actor="p1", image=APP.name)), "v1.6")
    assert result.ok and result.outcome.name == "completed"
    pull = result.pulls["p1"]
    assert pull is not None and pull.ok and pull.image_name == APP.name
    assert result.actions[0].to_json()["outcome"] == "ok"
    assert result.quiescence is not None and result.quiescence.leases == ()
    assert result.at_rest and result.final_graph is not None


def test_cancel_fails_the_pull_with_canceled() -> None:
    program = _program(
        Pull(at=0.0, actor="p1", image=BIG.name),
        DeleteLease(at=0.001, actor="user", of_pull="p1"),
        images=(BIG,),
        bandwidth=1_000_000.0,
    )
    result = run_program(program, "seed")
    assert result.actions[1].outcome == "ok"
    assert result.runner.revoked  # the pull's lease, found from the trace

    from unpacksim.properties.program import Cancel

    cancelled = run_program(
        _program(
            Pull(at=0.0, actor="p1", image=BIG.name),
            Cancel(at=0.01, actor="kubelet", target="p1"),
            images=(BIG,),
            bandwidth=1_000_000.0,
        ),
        "seed",
    )
    pull = cancelled.pulls["p1"]
    assert pull is not None and isinstance(pull.error, Canceled)
    assert cancelled.actions[0].outcome == "Canceled"


def test_expire_lease_puts_its_expiry_in_the_past_so_gc_takes_it() -> None:
    program = _program(
        CreateLease(at=0.0, actor="user", lease="l1"),
        CreateLease(at=0.0, actor="user", lease="l2"),
        ExpireLease(at=0.01, actor="clock", lease="l1"),
    )
    result = run_program(program, "seed", properties=[])
    assert [r.outcome for r in result.actions] == ["ok", "ok", "ok"]
    expire = next(e for e in result.trace.events if e.op == "leases.expire")
    assert expire.args == {"id": "l1"}
    assert result.quiescence is not None and result.quiescence.leases == ("l2",)
    missing = run_program(_program(ExpireLease(at=0.0, actor="clock", lease="l9")), "seed")
    assert missing.actions[0].outcome == "NotFound"
    assert missing.actions[0].message == 'lease "l9": not found'


def test_edit_labels_removes_what_it_selects_and_skips_when_nothing_matches() -> None:
    manifest = APP.build().single.manifest.digest
    program = _program(
        EditLabels(at=0.0, actor="early", image=APP.name, selector="manifest.layers"),
        Pull(at=0.0, actor="p1", image=APP.name),
        EditLabels(at=0.1, actor="user", image=APP.name, selector="manifest.layers"),
        EditLabels(at=0.2, actor="again", image=APP.name, selector="manifest.layers"),
    )
    result = run_program(program, "seed", properties=[])
    early, _, user, again = result.actions
    assert early.outcome == "NotFound"  # the manifest is not there yet
    assert user.outcome == "ok" and again.outcome == "skipped"
    assert again.message == "no matching label"
    labels = result.world.db.namespace("default").content[manifest].labels
    assert [k for k in labels if k.startswith(GC_REF_CONTENT)] == [GC_REF_CONTENT + ".0"]


def test_a_held_snapshot_outlives_the_image_and_an_unpack_fills_another_snapshotter() -> None:
    top = APP.build().single.chain_ids[-1]
    program = _program(
        Pull(at=0.0, actor="p1", image=APP.name),
        HoldSnapshot(at=0.1, actor="ctr", image=APP.name, container="c1"),
        Unpack(at=0.1, actor="client", image=APP.name, snapshotter="overlay"),
        DeleteImage(at=0.2, actor="user", image=APP.name, sync=True),
        snapshotters=("native", "overlay"),
    )
    result = run_program(program, "seed", properties=[])
    assert [r.outcome for r in result.actions] == ["ok"] * 4
    ns = result.world.db.namespace("default")
    assert ns.containers["c1"].snapshot_key == "c1"
    assert ns.snapshots["native"]["c1"].kind is Kind.ACTIVE
    assert ns.snapshots["native"]["c1"].parent == top
    assert top in ns.snapshots["native"]  # kept by the container at rest
    assert top not in ns.snapshots["overlay"]  # only the image kept it: collected


def test_inject_fires_the_next_matching_hit_once() -> None:
    layer = APP.build().single.layers[1].digest
    program = _program(
        Inject(at=0.0, actor="chaos", site="fetch.error", key=layer),
        Pull(at=0.0, actor="p1", image=APP.name),
        Pull(at=0.1, actor="p2", image=APP.name),
    )
    result = run_program(program, "seed")
    p1, p2 = result.pulls["p1"], result.pulls["p2"]
    assert p1 is not None and isinstance(p1.error, Unknown) and p1.error.injected
    assert p2 is not None and p2.ok
    (fired,) = [e for e in result.trace.events if e.type == "fault"]
    assert fired.args["key"] == layer and result.actor_of(fired.process) == "p1"


def test_after_heal_no_fault_fires() -> None:
    program = _program(
        Pull(at=0.0, actor="p1", image=APP.name),
        Heal(at=0.2, actor="chaos"),
        Pull(at=0.2, actor="p2", image=APP.name),
    )
    plan = FaultPlan.exploring(["fetch.error"], fire_one_in=2)
    fired_before = 0
    for seed in range(4):
        result = run_program(program, "seed", chooser=RandomChooser(seed), faults=plan)
        p2 = result.pulls["p2"]
        assert p2 is not None and p2.ok
        times = [e.time for e in result.trace.events if e.type == "fault"]
        assert all(t < 0.2 for t in times)
        fired_before += bool(times)
    assert fired_before > 0  # not vacuous: the plan did fire before the heal
    assert result.runner.heal_time == 0.2


def test_a_fault_that_fires_forever_heals_after_heal_after() -> None:
    program = _program(Pull(at=0.0, actor="p1", image=APP.name))
    forever = FaultPlan.scripted(Rule("content.ref_locked", times=None))
    result = run_program(program, "seed", faults=forever, heal_after=2.0)
    pull = result.pulls["p1"]
    assert pull is not None and pull.ok  # OpenWriter retried until the lock "freed"
    assert result.runner.heal_time is not None and result.runner.heal_time == 2.0
    assert result.found == []


def test_until_cuts_the_program_and_skips_the_rest_phase() -> None:
    program = _program(
        Pull(at=0.0, actor="p1", image=APP.name),
        Pull(at=0.5, actor="p2", image=APP.name),
    )
    result = run_program(program, "seed", until=0.01)
    assert result.outcome.name == "time_bound"
    assert [a.actor for a in result.program.actions] == ["p1"]
    assert not result.at_rest and result.quiescence is None
    assert result.violations == []  # a bound the caller chose is not a violation


def test_the_step_bound_stops_a_run_and_breaks_converges() -> None:
    result = run_program(_program(Pull(at=0.0, actor="p1", image=APP.name)), "seed", max_steps=5)
    assert result.outcome.name == "step_bound"
    assert [f.property for f in result.found] == ["converges"]


class _Raising:
    name = "raising"
    description = "raises a plain exception mid-pull"
    world_options: Mapping[str, Any] = {}

    def pull(
        self, world: World, ctx: Context, ref: str, opts: PullOptions
    ) -> Generator[Any, Any, PullResult]:
        yield from world.registry.resolve(ctx, ref)
        raise RuntimeError("the implementation crashed")


class _Hanging(_Raising):
    name = "hanging"
    description = "waits forever"

    def pull(
        self, world: World, ctx: Context, ref: str, opts: PullOptions
    ) -> Generator[Any, Any, PullResult]:
        yield world.env.event()
        raise AssertionError("never resumed")


def test_an_implementation_that_raises_ends_the_run_failed_not_crashed() -> None:
    result = run_program(_program(Pull(at=0.0, actor="p1", image=APP.name)), _Raising())
    assert result.outcome.name == "failed"
    assert result.pulls["p1"] is None
    (found,) = result.found
    assert found.property == "converges"
    assert "the implementation crashed" in found.violation.message


def test_an_implementation_that_never_returns_is_a_deadlock() -> None:
    result = run_program(_program(Pull(at=0.0, actor="p1", image=APP.name)), _Hanging())
    assert result.outcome.name == "deadlock"
    assert any("p1" in b.name for b in result.outcome.blocked)
    assert [f.property for f in result.found] == ["converges"]
    assert all(e.outcome != "indeterminate" or e.type == "complete" for e in result.trace.events)


def test_misuse_is_refused_with_a_clear_error() -> None:
    program = _program(Pull(at=0.0, actor="p1", image=APP.name))
    with pytest.raises(ProgramError, match="unknown properties"):
        run_program(program, "seed", properties=["no-such-property"])
    with pytest.raises(ImplementationError, match="unknown implementation"):
        run_program(program, "v9.9")
    bad = _program(Pull(at=0.0, actor="p1", image=APP.name, implementation="nope"))
    with pytest.raises(ImplementationError):
        run_program(bad, "seed")


def test_properties_restrict_what_is_checked() -> None:
    program = _program(
        Pull(at=0.0, actor="p1", image=APP.name),
        Pull(at=0.0, actor="p2", image=APP.name),
    )
    every = run_program(program, "seed")
    assert "chain-applied-once" in {f.property for f in every.found}
    chosen = run_program(program, "seed", properties=["converges"])
    assert chosen.found == []
