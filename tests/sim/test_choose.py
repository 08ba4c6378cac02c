"""Choosers and schedule strings (unpacksim.sim.choose)."""

from __future__ import annotations

import pytest

from unpacksim.sim.choose import (
    FifoChooser,
    PCTChooser,
    RandomChooser,
    ReplayChooser,
    choose_int,
    choose_value,
    format_schedule,
    parse_schedule,
)
from unpacksim.sim.errors import ScheduleError, SimUsageError


def test_schedule_round_trips_and_leaves_out_fifo_picks() -> None:
    assert format_schedule([(0, 0), (3, 1), (7, 2)]) == "3:1,7:2"
    assert parse_schedule("3:1,7:2") == {3: 1, 7: 2}
    assert parse_schedule("") == {}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("3-1", "entry 0"),
        ("3:1,x:2", "entry 1"),
        ("3:0", "picks 0"),
        ("7:1,3:2", "increase strictly"),
        ("3:1,3:2", "increase strictly"),
        ("3: 1", "entry 0"),
    ],
)
def test_malformed_schedule_is_a_clear_error(text: str, words: str) -> None:
    with pytest.raises(ScheduleError, match=words):
        ReplayChooser(text)


def test_every_chooser_records_what_replay_reproduces() -> None:
    chooser = RandomChooser(7)
    answers = [chooser.choose(n, "k") for n in (2, 1, 3, 5, 2, 4)]
    assert chooser.decisions == 5  # the question with one option is not a decision
    replay = ReplayChooser(chooser.schedule)
    assert [replay.choose(n, "k") for n in (2, 1, 3, 5, 2, 4)] == answers
    assert replay.schedule == chooser.schedule
    assert replay.unused == ""


def test_replay_that_does_not_fit_the_program_says_so() -> None:
    replay = ReplayChooser("1:4")
    assert replay.choose(3, "event") == 0
    with pytest.raises(ScheduleError, match="only 2 options"):
        replay.choose(2, "event")


def test_fifo_always_picks_zero_and_its_schedule_is_empty() -> None:
    chooser = FifoChooser()
    assert [chooser.choose(n, "k") for n in (2, 3, 9)] == [0, 0, 0]
    assert chooser.schedule == ""
    assert chooser.decisions == 3


def test_same_seed_same_choices() -> None:
    a, b = RandomChooser(3), RandomChooser(3)
    assert [a.choose(10, "k") for _ in range(50)] == [b.choose(10, "k") for _ in range(50)]
    assert len({RandomChooser(s).choose(1000, "k") for s in range(20)}) > 1


def test_choose_helpers_use_the_first_value_as_the_shrunk_answer() -> None:
    assert choose_value(FifoChooser(), [5.0, 1.0, 2.0], "latency") == 5.0
    assert choose_value(ReplayChooser("0:2"), [5.0, 1.0, 2.0], "latency") == 2.0
    assert choose_int(FifoChooser(), 3, 9, "n") == 3
    assert choose_int(ReplayChooser("0:6"), 3, 9, "n") == 9
    with pytest.raises(SimUsageError, match="empty range"):
        choose_int(FifoChooser(), 3, 2, "n")
    with pytest.raises(SimUsageError, match="at least one value"):
        choose_value(FifoChooser(), [], "latency")


def test_choose_needs_an_option() -> None:
    with pytest.raises(SimUsageError, match="at least one option"):
        FifoChooser().choose(0, "k")


def test_pct_runs_the_highest_priority_process_until_a_change_point() -> None:
    chooser = PCTChooser(seed=1, depth=1, max_steps=10)
    first = chooser.choose_owner(["a", "b", "c"])
    favourite = ["a", "b", "c"][first]
    # No change points at depth 1: the same process wins wherever it stands.
    for owners in (["c", "b", "a"], ["b", "a", "c"], ["a", "c", "b"]):
        assert owners[chooser.choose_owner(owners)] == favourite


def _first_two_winners(chooser: PCTChooser) -> tuple[str, str]:
    owners = ["a", "b"]
    return owners[chooser.choose_owner(owners)], owners[chooser.choose_owner(owners)]


def test_pct_change_point_preempts_the_running_process() -> None:
    # depth 1: no change point, the same process wins both decisions for every seed.
    assert all(w0 == w1 for w0, w1 in (_first_two_winners(PCTChooser(s, 1, 2)) for s in range(20)))
    # depth 2: one change point at decision 0 or 1; at 1 it preempts the winner of 0.
    pairs = [_first_two_winners(PCTChooser(s, 2, 2)) for s in range(20)]
    assert any(w0 != w1 for w0, w1 in pairs)


def test_pct_states_its_bound() -> None:
    chooser = PCTChooser(seed=0, depth=3, max_steps=10)
    assert chooser.bound(processes=2) == pytest.approx(1 / (2 * 10**2))
    with pytest.raises(SimUsageError, match="depth"):
        PCTChooser(seed=0, depth=0, max_steps=10)


def test_a_chooser_without_a_pick_rule_cannot_be_made() -> None:
    import pytest

    from unpacksim.sim.choose import BaseChooser

    class NoRule(BaseChooser):
        """Forgets to say how it picks."""

    with pytest.raises(TypeError, match="_pick"):
        NoRule()  # type: ignore[abstract]
