"""Concurrent pulls of images sharing layers end in a consistent state under every chooser.

Consistent: every pull succeeds, the state equals the oracle's (chain IDs, parents, labels,
content), each chain ID is committed by exactly one pull, no ``extract-*`` snapshot, lease or
ingest is left behind.
"""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st

from unpacksim.model.builders import BuiltImage, build_image, build_index, build_layer
from unpacksim.sim.choose import BaseChooser, Chooser, FifoChooser, PCTChooser, RandomChooser
from unpacksim.sim.services import LatencyModel
from unpacksim.unpack.drive import pull_images, world_for
from unpacksim.unpack.eras import PRESETS, preset
from unpacksim.unpack.expect import ExpectedPull, actual_state, compare, expected_state

BASE = [build_layer({"etc/os-release": b"base"}), build_layer({"lib/libc.so": b"libc"})]
APP = build_layer({"app/bin": b"app"})
IMAGES = [
    build_image("registry.test/one:1", [*BASE, APP]),
    build_image("registry.test/two:1", [*BASE, build_layer({"two": b"2"})]),
    build_image("registry.test/three:1", [BASE[0], APP, BASE[0]]),
    build_index("registry.test/multi:1", {"linux/arm64": [BASE[1]], "linux/amd64": [*BASE]}),
]
LATENCY = LatencyModel(default=(0.001, 0.0005, 0.002))


def _check_consistent(preset_name: str, chooser: Chooser, images: list[BuiltImage]) -> None:
    world = world_for(preset_name, chooser=chooser, latency=LATENCY)
    world.push(*images)
    refs = [image.name for image in images for _ in range(2)]  # twice each: commit races
    results, outcome = pull_images(world, preset_name, refs)
    assert outcome.name == "completed", outcome.describe()
    assert [r.message for r in results] == [""] * len(results)
    pulls = [ExpectedPull(image) for image in images]
    want = expected_state(pulls, preset(preset_name), distribution=False)
    assert compare(want, actual_state(world.db, distribution=False)) == []
    commits = Counter(chain for r in results for chain in r.committed)
    assert set(commits.values()) == {1}, "each chain ID is committed by exactly one pull"
    assert set(commits) == set(want.snapshots)
    ns = world.db.namespace("default")
    assert not any(k.startswith("extract") for k in ns.snapshotter("native"))
    assert ns.leases == {} and ns.ingests == {}


@pytest.mark.parametrize("preset_name", list(PRESETS))
def test_fifo(preset_name: str) -> None:
    _check_consistent(preset_name, FifoChooser(), IMAGES)


@pytest.mark.parametrize("preset_name", list(PRESETS))
@pytest.mark.parametrize("seed", range(4))
def test_random(preset_name: str, seed: int) -> None:
    _check_consistent(preset_name, RandomChooser(seed), IMAGES)


@pytest.mark.parametrize("preset_name", list(PRESETS))
@pytest.mark.parametrize("seed", range(3))
def test_pct(preset_name: str, seed: int) -> None:
    _check_consistent(preset_name, PCTChooser(seed, depth=3, max_steps=4000), IMAGES)


class _ListChooser(BaseChooser):
    """Takes its answers from a list drawn by Hypothesis up front (then FIFO).

    Drawing the schedule before the run keeps Hypothesis's draws out of the simulation; the
    list shrinks toward fewer and smaller (more FIFO) answers.
    """

    def __init__(self, picks: list[int]) -> None:
        super().__init__()
        self._picks = iter(picks)

    def _pick(self, n: int, kind: str) -> int:
        return next(self._picks, 0) % n


@given(
    picks=st.lists(st.integers(0, 3), max_size=300),
    preset_name=st.sampled_from(list(PRESETS)),
)
def test_hypothesis_drawn_schedules(picks: list[int], preset_name: str) -> None:
    _check_consistent(preset_name, _ListChooser(picks), IMAGES[:2])


def test_the_random_chooser_explores_other_orders_than_fifo() -> None:
    # Not a vacuous test: the schedules really differ (non-FIFO decisions were taken).
    chooser = RandomChooser(1)
    _check_consistent("seed", chooser, IMAGES)
    assert chooser.non_fifo > 0
