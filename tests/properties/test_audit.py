"""The determinism audit replays a share of runs and names the first divergence."""

from __future__ import annotations

from collections.abc import Generator, Mapping
from typing import Any

import pytest

from unpacksim.properties.audit import DeterminismAudit, replay_matches
from unpacksim.properties.program import DeleteImage, ImageSpec, Program, Pull, run_program
from unpacksim.sim.choose import RandomChooser
from unpacksim.sim.context import Context
from unpacksim.sim.faults import FaultPlan
from unpacksim.unpack.interface import resolve
from unpacksim.unpack.results import PullOptions, PullResult
from unpacksim.unpack.world import World

APP = ImageSpec("registry.test/app:1", ("base", "app"))
PROGRAM = Program(
    images=(APP,),
    actions=(
        Pull(at=0.0, actor="p1", image=APP.name),
        Pull(at=0.0, actor="p2", image=APP.name),
        DeleteImage(at=0.02, actor="user", image=APP.name),
    ),
)


class Forgetful:
    """Keeps state between runs: in every other run (world) it resolves the reference twice."""

    name = "forgetful"
    description = "nondeterministic across runs"
    world_options: Mapping[str, Any] = {}

    def __init__(self) -> None:
        self.worlds: list[World] = []

    def pull(
        self, world: World, ctx: Context, ref: str, opts: PullOptions
    ) -> Generator[Any, Any, PullResult]:
        if not any(w is world for w in self.worlds):
            self.worlds.append(world)
        if len(self.worlds) % 2 == 0:
            yield from world.registry.resolve(ctx, ref)
        result: PullResult = yield from resolve("seed").pull(world, ctx, ref, opts)
        return result


def test_deterministic_runs_replay_to_the_same_trace() -> None:
    audit = DeterminismAudit(share=0.5)
    plan = FaultPlan.exploring(["fetch.error", "snapshots.commit.exists"], fire_one_in=4)
    for seed in range(6):
        result = run_program(PROGRAM, "seed", chooser=RandomChooser(seed), faults=plan)
        assert audit.check(result, faults=plan) is None
    report = audit.report()
    assert (report.runs, report.replayed, report.deterministic) == (6, 3, True)
    assert report.describe() == "3 of 6 runs replayed, 0 differ"
    assert [audit.selects(i) for i in range(4)] == [True, False, True, False]


def test_state_kept_between_runs_is_caught_with_the_first_divergence() -> None:
    impl = Forgetful()
    result = run_program(PROGRAM, impl, chooser=RandomChooser(3))
    mismatch = replay_matches(result, impl)
    assert mismatch is not None and mismatch.divergence is not None
    assert mismatch.original == result.trace_sha256 != mismatch.replayed
    left = mismatch.divergence.left or ""
    right = mismatch.divergence.right or ""
    assert left != right and ("registry.resolve" in left + right)
    assert "did not replay" in mismatch.describe()
    assert "traces diverge at event" in mismatch.describe()


def test_an_audit_share_of_zero_replays_nothing_and_bad_shares_are_refused() -> None:
    audit = DeterminismAudit(share=0.0)
    result = run_program(PROGRAM, "seed")
    assert audit.check(result) is None and audit.report().replayed == 0
    with pytest.raises(ValueError, match="between 0 and 1"):
        DeterminismAudit(share=1.5)
