"""Go's primitives with Go's semantics (unpacksim.sim.go)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest
import simpy

from unpacksim.model.errdefs import Canceled, DeadlineExceeded, NotFound
from unpacksim.sim.context import Context, background
from unpacksim.sim.env import Environment
from unpacksim.sim.errors import GoPanic
from unpacksim.sim.go import (
    ErrGroup,
    KeyedMutex,
    Mutex,
    RWLock,
    Semaphore,
    WaitGroup,
    go,
    sleep,
)
from unpacksim.sim.run import run

Gen = Generator[simpy.Event, Any, None]


def test_errgroup_first_error_cancels_siblings_and_wait_returns_it() -> None:
    env = Environment()
    group, gctx = ErrGroup.with_context(background(env))
    events: list[tuple[str, float, str]] = []
    result: list[BaseException | None] = []

    def failing() -> Gen:
        yield env.timeout(2)
        raise NotFound("blob sha256:1")

    def sibling(name: str) -> Gen:
        err = yield gctx.done  # blocks until the group's context is cancelled
        events.append((name, env.now, type(err).__name__))

    def later_failure() -> Gen:
        yield env.timeout(5)
        raise NotFound("second error is dropped")

    def main() -> Gen:
        group.go(failing, name="failing")
        group.go(lambda: sibling("s1"), name="s1")
        group.go(lambda: sibling("s2"), name="s2")
        group.go(later_failure, name="later")
        result.append((yield from group.wait()))
        events.append(("wait", env.now, ""))

    go(env, main(), name="main")
    assert run(env).name == "completed"
    assert sorted(events[:2]) == [("s1", 2.0, "Canceled"), ("s2", 2.0, "Canceled")]
    assert events[2] == ("wait", 5.0, "")  # Wait waits for every function
    assert isinstance(result[0], NotFound) and str(result[0]) == "blob sha256:1: not found"
    assert gctx.cause is result[0]


def test_errgroup_without_error_returns_none_and_cancels_its_context() -> None:
    env = Environment()
    group, gctx = ErrGroup.with_context(background(env))
    result: list[BaseException | None] = []

    def ok() -> Gen:
        yield env.timeout(1)

    def main() -> Gen:
        group.go(ok, name="ok")
        group.go(ok, name="ok")
        result.append((yield from group.wait()))

    go(env, main(), name="main")
    run(env)
    assert result == [None]
    assert isinstance(gctx.err, Canceled)  # Go's Wait cancels the derived context


def test_acquire_on_a_cancelled_context_fails_while_waiting() -> None:
    env = Environment()
    sem = Semaphore(env, 1)
    ctx, cancel = background(env).with_cancel()
    outcome: list[str] = []

    def holder() -> Gen:
        yield from sem.acquire(background(env), 1)
        yield env.timeout(10)
        sem.release(1)

    def blocked() -> Gen:
        try:
            yield from sem.acquire(ctx, 1)
            outcome.append("acquired")
        except Canceled:
            outcome.append(f"canceled at {env.now:g}")

    def canceller() -> Gen:
        yield env.timeout(3)
        cancel()

    go(env, holder(), name="holder")
    go(env, blocked(), name="blocked")
    go(env, canceller(), name="canceller")
    assert run(env).name == "completed"
    assert outcome == ["canceled at 3"]
    assert sem.cur == 0


def test_acquire_on_an_already_done_context() -> None:
    env = Environment()
    done, cancel = background(env).with_cancel()
    cancel()
    sem = Semaphore(env, 2)
    outcome: list[str] = []

    def main() -> Gen:
        yield from sem.acquire(done, 1)  # x/sync v0.1.0: free tokens are taken anyway
        outcome.append("took a free token")
        yield from sem.acquire(background(env), 1)
        try:
            yield from sem.acquire(done, 1)  # must wait: fails with the context's error
        except Canceled:
            outcome.append("waiting acquire failed")
        strict = Semaphore(env, 2, fail_if_done=True)  # x/sync v0.4.0
        try:
            yield from strict.acquire(done, 1)
        except Canceled:
            outcome.append("strict acquire failed")

    go(env, main(), name="main")
    run(env).raise_for_failure()
    assert outcome == ["took a free token", "waiting acquire failed", "strict acquire failed"]


def test_semaphore_serves_waiters_in_order_without_barging() -> None:
    env = Environment()
    sem = Semaphore(env, 3)
    order: list[str] = []

    def user(name: str, n: int, start: float, hold: float) -> Gen:
        yield env.timeout(start)
        yield from sem.acquire(background(env), n)
        order.append(name)
        yield env.timeout(hold)
        sem.release(n)

    go(env, user("a", 2, 0, 5), name="a")
    go(env, user("big", 3, 1, 1), name="big")  # waits for all 3
    go(env, user("small", 1, 2, 1), name="small")  # 1 is free, but "big" is first in line
    run(env)
    assert order == ["a", "big", "small"]


def test_doomed_acquire_waits_for_the_context() -> None:
    env = Environment()
    ctx, _ = background(env).with_timeout(4)
    sem = Semaphore(env, 1)
    outcome: list[tuple[str, float]] = []

    def main() -> Gen:
        try:
            yield from sem.acquire(ctx, 2)
        except DeadlineExceeded:
            outcome.append(("deadline", env.now))

    go(env, main(), name="main")
    run(env)
    assert outcome == [("deadline", 4.0)]


def test_release_more_than_held_panics() -> None:
    env = Environment()
    with pytest.raises(GoPanic, match="semaphore: released more than held"):
        Semaphore(env, 1).release(1)


def test_cancelled_front_waiter_lets_the_next_one_in() -> None:
    env = Environment()
    sem = Semaphore(env, 2)
    ctx, cancel = background(env).with_cancel()
    got: list[str] = []

    def main() -> Gen:
        yield from sem.acquire(background(env), 1)  # 1 of 2 held

        def front() -> Gen:
            try:
                yield from sem.acquire(ctx, 2)
            except Canceled:
                got.append("front canceled")

        def second() -> Gen:
            yield from sem.acquire(background(env), 1)
            got.append(f"second at {env.now:g}")

        go(env, front(), name="front")
        yield env.timeout(1)
        go(env, second(), name="second")  # queues behind "front"
        yield env.timeout(1)
        cancel()

    go(env, main(), name="main")
    run(env)
    assert got == ["front canceled", "second at 2"]


def test_keyed_mutex_serialises_one_key_and_not_others() -> None:
    env = Environment()
    km = KeyedMutex(env)
    spans: list[tuple[str, float, float]] = []

    def user(name: str, key: str) -> Gen:
        yield from km.lock(background(env), key)
        start = env.now
        yield env.timeout(2)
        spans.append((name, start, env.now))
        km.unlock(key)

    for name, key in (("a1", "a"), ("a2", "a"), ("b1", "b")):
        go(env, user(name, key), name=name)
    run(env)
    assert sorted(spans) == [("a1", 0.0, 2.0), ("a2", 2.0, 4.0), ("b1", 0.0, 2.0)]
    assert not km.locked("a") and not km.locked("b")
    with pytest.raises(GoPanic, match="kmutex: unlock of unlocked key a"):
        km.unlock("a")


def test_keyed_mutex_lock_honours_cancellation() -> None:
    env = Environment()
    km = KeyedMutex(env)
    ctx, _ = background(env).with_timeout(1)
    outcome: list[str] = []

    def holder() -> Gen:
        yield from km.lock(background(env), "k")
        yield env.timeout(5)
        km.unlock("k")

    def waiter() -> Gen:
        try:
            yield from km.lock(ctx, "k")
        except DeadlineExceeded:
            outcome.append(f"gave up at {env.now:g}")

    go(env, holder(), name="holder")
    go(env, waiter(), name="waiter")
    run(env)
    assert outcome == ["gave up at 1"]
    assert not km.locked("k")


def test_rwlock_writer_excludes_and_blocks_new_readers() -> None:
    env = Environment()
    lock = RWLock(env, "wlock")
    log: list[tuple[str, float]] = []

    def reader(name: str, start: float) -> Gen:
        yield env.timeout(start)
        yield from lock.rlock()
        log.append((name, env.now))
        yield env.timeout(2)
        lock.runlock()

    def writer() -> Gen:
        yield env.timeout(1)
        yield from lock.lock()
        log.append(("writer", env.now))
        yield env.timeout(3)
        lock.unlock()

    go(env, reader("r1", 0), name="r1")
    go(env, writer(), name="writer")
    go(env, reader("r2", 1.5), name="r2")  # a writer waits: r2 waits too
    run(env)
    assert log == [("r1", 0.0), ("writer", 2.0), ("r2", 5.0)]
    with pytest.raises(GoPanic, match="RUnlock of unlocked RWMutex"):
        lock.runlock()


def test_mutex_and_waitgroup() -> None:
    env = Environment()
    mu = Mutex(env)
    wg = WaitGroup(env)
    log: list[tuple[str, float]] = []

    def worker(name: str) -> Gen:
        yield from mu.lock()
        yield env.timeout(1)
        mu.unlock()
        wg.done()
        log.append((name, env.now))

    def main() -> Gen:
        wg.add(3)
        for i in range(3):
            go(env, worker(f"w{i}"), name="worker")
        yield from wg.wait()
        log.append(("all done", env.now))

    go(env, main(), name="main")
    run(env)
    assert log == [("w0", 1.0), ("w1", 2.0), ("w2", 3.0), ("all done", 3.0)]
    with pytest.raises(GoPanic, match="unlock of unlocked mutex"):
        mu.unlock()
    with pytest.raises(GoPanic, match="negative WaitGroup counter"):
        wg.done()


def test_sleep_returns_early_when_the_context_is_done() -> None:
    env = Environment()
    ctx, cancel = background(env).with_cancel()
    results: list[tuple[bool, float]] = []

    def sleeper(c: Context, seconds: float) -> Gen:
        results.append(((yield from sleep(c, seconds)), env.now))

    def canceller() -> Gen:
        yield env.timeout(2)
        cancel()

    go(env, sleeper(background(env), 1), name="short")
    go(env, sleeper(ctx, 10), name="long")
    go(env, canceller(), name="canceller")
    outcome = run(env)
    assert results == [(True, 1.0), (False, 2.0)]
    assert outcome.time == 2.0  # the cancelled sleep's timer does not linger
