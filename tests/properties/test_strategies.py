"""The public strategies: valid values, bounds checked, shrinking toward the simple case."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import find, given
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from unpacksim.model.oci import is_index_type
from unpacksim.properties.program import Cancel, ImageSpec, Program, Pull, run_program
from unpacksim.properties.strategies import (
    ERROR_SITES,
    PicksChooser,
    choosers,
    fault_plans,
    image_sets,
    images,
    latency_models,
    programs,
    schedules,
)
from unpacksim.sim.choose import ReplayChooser
from unpacksim.sim.faults import FaultPlan
from unpacksim.sim.services import LatencyModel


@given(images(min_layers=2, max_layers=3, max_platforms=2, docker=None))
def test_images_respect_their_bounds(spec: ImageSpec) -> None:
    assert spec.name == "registry.test/image:1"
    assert 2 <= len(spec.layers) <= 3 and len(spec.platforms) <= 1
    built = spec.build()
    assert is_index_type(built.target.media_type) == bool(spec.platforms)


def test_images_draw_duplicate_layers_and_indexes() -> None:
    dup = find(images(max_layers=4), lambda s: len(set(s.layers)) < len(s.layers))
    assert dup.layers == ("base", "base")
    multi = find(images(max_platforms=3), lambda s: bool(s.platforms))
    assert multi.platforms == (("linux/arm64", ("base",)),)


def test_images_shrink_to_one_base_layer() -> None:
    assert find(images(), lambda s: True) == ImageSpec("registry.test/image:1", ("base",))


@given(image_sets(min_size=2, max_size=3, shared_base=True, max_layers=3))
def test_image_sets_share_a_base_and_have_distinct_names(specs: tuple[ImageSpec, ...]) -> None:
    assert 2 <= len(specs) <= 3
    assert len({s.name for s in specs}) == len(specs)
    assert len({s.layers[0] for s in specs}) == 1
    assert all(len(s.layers) <= 3 for s in specs)


def test_fault_plans_shrink_to_no_fault_and_cover_rules_and_exploring() -> None:
    none = find(fault_plans(), lambda p: True)
    assert none.rules == () and none.explore == ()
    scripted = find(fault_plans(keys=("k1",)), lambda p: any(r.key == "k1" for r in p.rules))
    assert scripted.rules[0].site == ERROR_SITES[0]
    exploring = find(fault_plans(sites=["fetch.error"]), lambda p: bool(p.explore))
    assert exploring.explore == ("fetch.error",)
    assert repr(exploring) == "FaultPlan(explore=['fetch.error'], fire_one_in=4)"


@given(latency_models(max_candidates=2))
def test_latency_models_pick_from_the_grid(model: LatencyModel) -> None:
    for values in model.table.values():
        assert 1 <= len(values) <= 2
        assert set(values) <= {0.0005, 0.001, 0.002, 0.005}


def test_schedules_shrink_to_fifo() -> None:
    chooser = find(schedules(), lambda c: True)
    assert chooser.picks == [] and chooser.choose(3, "event") == 0


def test_a_picks_chooser_plays_its_picks_modulo_then_fifo() -> None:
    chooser = PicksChooser([5, 1])
    assert [chooser.choose(3), chooser.choose(2), chooser.choose(4)] == [2, 1, 0]
    assert chooser.schedule == "0:2,1:1"
    chooser.extend([3])
    assert chooser.choose(4) == 3 and chooser.schedule == "0:2,1:1,3:3"
    replay = ReplayChooser(chooser.schedule)
    assert [replay.choose(3), replay.choose(2), replay.choose(4), replay.choose(4)] == [2, 1, 0, 3]
    assert repr(PicksChooser([1])) == "PicksChooser([1])"
    with pytest.raises(InvalidArgument, match="non-negative"):
        PicksChooser([-1])


@given(choosers())
def test_choosers_are_choosers(chooser: Any) -> None:
    assert 0 <= chooser.choose(3, "event") < 3


@given(programs(max_actions=5, actions=("pull", "cancel", "delete_image", "gc")))
def test_programs_are_valid_and_use_only_the_kinds_asked(program: Program) -> None:
    assert 1 <= len(program.actions) <= 5
    assert {a.kind for a in program.actions} <= {"pull", "cancel", "delete_image", "gc"}
    pulls = {a.actor for a in program.actions if isinstance(a, Pull)}
    assert all(a.target in pulls for a in program.actions if isinstance(a, Cancel))
    assert Program.from_json(program.to_json()).to_json() == program.to_json()


def test_programs_shrink_to_one_pull_at_time_zero() -> None:
    program = find(programs(), lambda p: True)
    (action,) = program.actions
    assert isinstance(action, Pull) and action.at == 0.0 and action.actor == "p1"
    assert action.image == "registry.test/i0:1" and not action.discard


@given(programs(max_actions=4), schedules(max_decisions=40))
def test_drawn_programs_run_and_converge_on_v20(program: Program, chooser: PicksChooser) -> None:
    result = run_program(program, "v2.0", chooser=chooser, properties=["converges", "gc-converged"])
    assert result.found == [], result.describe()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: images(min_layers=3, max_layers=2), "max_layers=2 must be at least"),
        (lambda: images(min_layers=-1), "min_layers=-1"),
        (lambda: images(tokens=()), "tokens"),
        (lambda: image_sets(min_size=0), "min_size=0 must be at least 1"),
        (lambda: fault_plans(sites=["no.such.site"]), "unknown fault site"),
        (lambda: fault_plans(sites=()), "at least one fault site"),
        (lambda: latency_models(max_candidates=0), "max_candidates"),
        (lambda: schedules(max_decisions=-1), "at least 0"),
        (lambda: choosers(kinds=("dice",)), "unknown chooser kinds"),
        (lambda: programs(actions=("reboot",)), "unknown action kinds"),
        (lambda: programs(min_actions=3, max_actions=1), "max_actions=1"),
        (lambda: programs(snapshotters=()), "snapshotters"),
    ],
)
def test_bad_arguments_raise_invalid_argument(make: Any, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        make()


def test_strategies_compose_with_st_data() -> None:
    @given(st.data())
    def draw_everything(data: st.DataObject) -> None:
        plan = data.draw(fault_plans())
        assert isinstance(plan, FaultPlan)
        specs = data.draw(image_sets(max_size=2))
        program = data.draw(programs(images=specs, max_actions=2))
        assert program.images == specs

    draw_everything()
