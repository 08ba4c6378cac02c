"""The controlled environment (unpacksim.sim.env): batches, priorities, names, failures."""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

import pytest
import simpy

from unpacksim.sim.choose import BaseChooser, FifoChooser, RandomChooser, ReplayChooser
from unpacksim.sim.env import Environment
from unpacksim.sim.errors import SimUsageError
from unpacksim.sim.go import go

Log = list[tuple[float, str]]


class OwnerSpy(BaseChooser):
    wants_owners = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[list[str]] = []

    def _pick_owner(self, owners: Sequence[str], kind: str) -> int:
        self.seen.append(list(owners))
        return 0

    def _pick(self, n: int, kind: str) -> int:
        return 0


def workload(env: simpy.Environment, log: Log) -> None:
    """Ties, triggered events and processes started mid-instant: plain SimPy code."""
    gate = env.event()

    def sleeper(name: str, delays: list[int]) -> Generator[simpy.Event, Any, None]:
        for d in delays:
            yield env.timeout(d)
            log.append((env.now, name))
        if name == "s1":
            gate.succeed()

    def waiter(name: str) -> Generator[simpy.Event, Any, None]:
        yield gate
        log.append((env.now, name))
        env.process(sleeper(name + "-child", [0, 1]))

    for i, delays in enumerate(([1, 1, 2], [2, 1], [1, 2, 0], [3])):
        env.process(sleeper(f"s{i}", delays))
    for name in ("w1", "w2"):
        env.process(waiter(name))


def run_log(env: simpy.Environment) -> Log:
    log: Log = []
    workload(env, log)
    env.run()
    return log


def test_fifo_reproduces_stock_simpy_exactly() -> None:
    assert run_log(Environment(FifoChooser())) == run_log(simpy.Environment())


def test_other_choosers_reorder_same_instant_events_only() -> None:
    stock = run_log(simpy.Environment())
    orders = {tuple(run_log(Environment(RandomChooser(seed)))) for seed in range(10)}
    assert len(orders) > 1
    for order in orders:
        assert sorted(order) == sorted(stock)  # same events
        assert [t for t, _ in order] == sorted(t for t, _ in order)  # time never goes back


def test_replayed_pick_swaps_two_ready_events() -> None:
    def two(chooser: BaseChooser) -> list[str]:
        env = Environment(chooser)
        log: list[str] = []

        def p(name: str) -> Generator[simpy.Event, Any, None]:
            yield env.timeout(1)
            log.append(name)

        env.process(p("a"))
        env.process(p("b"))
        env.run()
        return log

    assert two(FifoChooser()) == ["a", "b"]
    assert two(ReplayChooser("1:1")) == ["b", "a"]  # decision 0 is the two starts


def test_urgent_events_run_before_the_rest_of_a_normal_batch() -> None:
    # If the child's (URGENT) start joined the NORMAL batch it would come last under FIFO.
    env = Environment(FifoChooser())
    log: list[str] = []

    def child() -> Generator[simpy.Event, Any, None]:
        log.append("child")
        yield env.timeout(0)

    def p(name: str) -> Generator[simpy.Event, Any, None]:
        yield env.timeout(1)
        log.append(name)
        if name == "a":
            env.process(child())  # its start is URGENT

    for name in ("a", "b", "c"):
        env.process(p(name))
    env.run()
    assert log == ["a", "child", "b", "c"]


def test_events_nobody_waits_on_cost_no_decision() -> None:
    env = Environment(FifoChooser())

    def p() -> Generator[simpy.Event, Any, None]:
        yield env.timeout(1)

    env.process(p())
    env.process(p())
    env.run()
    # One decision for the two starts, one for the two timeouts; the two process-exit events
    # at t=1 are waited on by nobody and are not offered to the chooser.
    assert env.chooser.decisions == 2


def test_pct_style_choosers_are_told_which_process_each_event_resumes() -> None:
    spy = OwnerSpy()
    env = Environment(spy)

    def p() -> Generator[simpy.Event, Any, None]:
        yield env.timeout(1)

    go(env, p(), name="fetch")
    go(env, p(), name="fetch")
    go(env, p(), name="gc")
    env.run()
    starts_and_wakeups = [["fetch", "fetch#2", "gc"], ["fetch#2", "gc"]] * 2
    assert spy.seen == starts_and_wakeups


def test_unschedule_takes_an_event_out() -> None:
    env = Environment()
    fired: list[float] = []
    timer = env.timeout(5)
    timer.callbacks.append(lambda _: fired.append(env.now))
    assert env.peek() == 5
    assert env.unschedule(timer)
    assert not env.unschedule(timer)
    env.run()
    assert fired == []
    assert env.now == 0


def test_goroutine_exception_is_recorded_not_raised() -> None:
    env = Environment()

    def bad() -> Generator[simpy.Event, Any, None]:
        yield env.timeout(2)
        raise KeyError("boom")

    go(env, bad(), name="bad")
    env.run()  # does not raise
    assert [(f.process, f.time, type(f.error)) for f in env.failures] == [("bad", 2.0, KeyError)]


def test_plain_process_failure_crashes_like_simpy() -> None:
    env = Environment()

    def bad() -> Generator[simpy.Event, Any, None]:
        yield env.timeout(1)
        raise ValueError("plain")

    env.process(bad())
    with pytest.raises(ValueError, match="plain"):
        env.run()


def test_misuse_of_process_is_explained() -> None:
    env = Environment()

    def gen() -> Generator[simpy.Event, Any, None]:
        yield env.timeout(1)

    not_a_generator: Any = gen  # the function, not gen()
    with pytest.raises(SimUsageError, match="not a generator"):
        go(env, not_a_generator, name="x")


def test_clock_follows_simulated_time() -> None:
    env = Environment()
    env.run(until=3.5)
    assert env.clock.now() == 3.5


class _Steering(BaseException):
    """Stands for Hypothesis's StopTest: a BaseException whose args do not rebuild it."""

    def __init__(self, counter: int) -> None:
        super().__init__(repr(counter))
        self.counter = counter


def test_base_exception_from_a_process_arrives_unchanged() -> None:

    import pytest

    from unpacksim.sim.env import Environment

    env = Environment()
    raised = _Steering(48)

    def proc() -> Generator[Any, Any, None]:
        yield env.timeout(1)
        raise raised

    env.process(proc())
    with pytest.raises(_Steering) as info:
        env.run()
    assert info.value is raised
