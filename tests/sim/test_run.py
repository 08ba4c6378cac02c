"""Runs end with a named outcome, never a hang (unpacksim.sim.run)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest
import simpy

from unpacksim.sim.choose import RandomChooser
from unpacksim.sim.context import background
from unpacksim.sim.env import Environment
from unpacksim.sim.go import Channel, Semaphore, go
from unpacksim.sim.run import check_determinism, run
from unpacksim.sim.services import Services
from unpacksim.sim.trace import Trace

Gen = Generator[simpy.Event, Any, None]


def test_completed() -> None:
    env = Environment()

    def worker() -> Gen:
        yield env.timeout(2)

    go(env, worker(), name="w")
    outcome = run(env)
    assert (outcome.name, outcome.time, outcome.blocked, outcome.ok) == ("completed", 2, (), True)


def test_deadlock_lists_each_blocked_process_and_what_it_waits_on() -> None:
    env = Environment()
    ch = Channel(env, name="fetchErr")
    sem = Semaphore(env, 1)

    def hog() -> Gen:
        yield from sem.acquire(background(env), 1)
        yield from ch.send("never received")  # unbuffered, and nobody receives

    def starved() -> Gen:
        yield env.timeout(1)
        yield from sem.acquire(background(env), 1)

    go(env, starved(), name="starved")
    go(env, hog(), name="hog")
    outcome = run(env)
    assert outcome.name == "deadlock"
    assert [(b.name, b.waits_on) for b in outcome.blocked] == [
        ("starved", "semaphore acquire(1) [1/1]"),
        ("hog", "send on fetchErr"),
    ]
    assert "starved waits on semaphore acquire(1) [1/1]" in outcome.describe()


def test_step_and_time_bounds() -> None:
    def ticker(env: Environment) -> Gen:
        while True:
            yield env.timeout(1)

    env = Environment()
    go(env, ticker(env), name="ticker")
    outcome = run(env, max_steps=50)
    assert (outcome.name, outcome.steps) == ("step_bound", 50)
    assert [(b.name, b.waits_on) for b in outcome.blocked] == [("ticker", "timeout(1)")]

    env = Environment()
    go(env, ticker(env), name="ticker")
    outcome = run(env, until=10.5)
    assert (outcome.name, outcome.time) == ("time_bound", 10.5)


def test_daemons_do_not_keep_a_run_going() -> None:
    env = Environment()

    def ticker() -> Gen:
        while True:
            yield env.timeout(1)

    def job() -> Gen:
        yield env.timeout(3.5)

    go(env, ticker(), name="gc-ticker", daemon=True)
    go(env, job(), name="pull")
    outcome = run(env)
    assert (outcome.name, outcome.time) == ("completed", 3.5)
    assert [(b.name, b.daemon) for b in outcome.blocked] == [("gc-ticker", True)]


def test_failed_names_the_goroutine_and_stops() -> None:
    env = Environment()

    def bad() -> Gen:
        yield env.timeout(1)
        raise RuntimeError("bug in the unpacker")

    def long() -> Gen:
        yield env.timeout(100)

    go(env, bad(), name="unpack")
    go(env, long(), name="long")
    outcome = run(env)
    assert (outcome.name, outcome.time) == ("failed", 1)
    assert [f.process for f in outcome.failures] == ["unpack"]
    with pytest.raises(RuntimeError, match="bug in the unpacker"):
        outcome.raise_for_failure()


def test_plain_process_failure_is_reported_as_failed() -> None:
    env = Environment()

    def bad() -> Gen:
        yield env.timeout(1)
        raise ValueError("plain process")

    env.process(bad(), name="plain")
    outcome = run(env)
    assert outcome.name == "failed"
    assert [f.process for f in outcome.failures] == ["plain"]


def test_check_determinism_names_the_first_divergence() -> None:
    def scenario(seed: int) -> Trace:
        env = Environment(RandomChooser(seed))
        services = Services(env)
        for i in range(3):

            def worker(i: int = i) -> Gen:
                yield from services.call(background(env), "op", lambda: None, args={"i": i})

            go(env, worker(), name=f"w{i}")
        run(env)
        return env.trace

    same = check_determinism(lambda: scenario(1), runs=3)
    assert same.deterministic and len(set(same.hashes)) == 1
    seeds = iter(range(100))
    varying = check_determinism(lambda: scenario(next(seeds)), runs=5)
    assert not varying.deterministic
    assert varying.divergence is not None
    assert "diverge at event" in varying.describe()
