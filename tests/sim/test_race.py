"""A two-process race that FIFO never exposes, found by the random, PCT and Hypothesis
choosers; Hypothesis shrinks it to one non-FIFO choice, whose schedule string replays it.

The race is containerd's ``appendDistSrcLabelHandler`` (``remotes/docker/handler.go``): an
``Info`` then an ``Update`` of ``containerd.io/distribution.source.<host>``, a read-modify-write
across two calls.  Two pulls of one blob from two repositories can lose one repository.  Pull B
does one more call first, so under FIFO pull A's update always lands before B reads.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from unpacksim.model.labels import DISTRIBUTION_SOURCE_PREFIX
from unpacksim.sim.choose import BaseChooser, FifoChooser, PCTChooser, RandomChooser, ReplayChooser
from unpacksim.sim.context import Context, background
from unpacksim.sim.env import Environment
from unpacksim.sim.go import go
from unpacksim.sim.hypothesis_chooser import HypothesisChooser
from unpacksim.sim.run import run
from unpacksim.sim.services import LatencyModel, Services

LABEL = DISTRIBUTION_SOURCE_PREFIX + "docker.io"


def race(chooser: BaseChooser) -> tuple[str, Environment]:
    """Run the two pulls; return the label's final value and the environment."""
    env = Environment(chooser)
    services = Services(env, latency=LatencyModel.zero())
    labels: dict[str, str] = {}

    def append_source(ctx: Context, repo: str) -> Generator[simpy.Event, Any, None]:
        current = yield from services.call(ctx, "content.info", lambda: labels.get(LABEL, ""))
        repos = sorted({r for r in current.split(",") if r} | {repo})
        yield from services.call(
            ctx, "content.update", lambda: labels.__setitem__(LABEL, ",".join(repos)), write=True
        )

    def pull_a() -> Generator[simpy.Event, Any, None]:
        yield from append_source(background(env), "library/busybox")

    def pull_b() -> Generator[simpy.Event, Any, None]:
        ctx = background(env)
        yield from services.call(ctx, "content.status", lambda: None)
        yield from append_source(ctx, "mirror/busybox")

    go(env, pull_a(), name="pull-a")
    go(env, pull_b(), name="pull-b")
    run(env).raise_for_failure()
    return labels[LABEL], env


BOTH = "library/busybox,mirror/busybox"


def test_fifo_never_exposes_the_race() -> None:
    value, env = race(FifoChooser())
    assert value == BOTH
    assert env.chooser.decisions > 0  # there were choices; FIFO just never makes the bad one


def test_random_chooser_finds_it() -> None:
    lost = [seed for seed in range(20) if race(RandomChooser(seed))[0] != BOTH]
    assert lost


def test_pct_chooser_finds_it() -> None:
    k = race(FifoChooser())[1].chooser.decisions
    lost = [seed for seed in range(20) if race(PCTChooser(seed, depth=2, max_steps=k))[0] != BOTH]
    assert lost


def test_hypothesis_chooser_finds_it_and_shrinks_to_one_non_fifo_choice() -> None:
    schedules: list[str] = []

    @settings(database=None)
    @given(st.data())
    def no_lost_update(data: st.DataObject) -> None:
        chooser = HypothesisChooser(data)
        value, _ = race(chooser)
        schedules.append(chooser.schedule)
        assert value == BOTH

    with pytest.raises(AssertionError):
        no_lost_update()
    shrunk = schedules[-1]  # Hypothesis replays the minimal failing example last
    assert len(shrunk.split(",")) == 1 and shrunk != ""
    replayed, env = race(ReplayChooser(shrunk))
    assert replayed != BOTH
    assert env.chooser.schedule == shrunk
