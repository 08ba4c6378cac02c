"""Go's context in simulated time (unpacksim.sim.context)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest
import simpy

from unpacksim.model.context import ModelContext
from unpacksim.model.errdefs import Canceled, DeadlineExceeded, NotFound
from unpacksim.sim.context import Context, background
from unpacksim.sim.env import Environment
from unpacksim.sim.errors import SimUsageError
from unpacksim.sim.go import go
from unpacksim.sim.run import run


def test_context_is_a_model_context_with_namespace_and_lease() -> None:
    env = Environment()
    ctx: ModelContext = background(env, "k8s.io").with_lease("pull-1")
    assert (ctx.namespace, ctx.lease) == ("k8s.io", "pull-1")
    other = background(env).with_namespace("moby")
    assert (other.namespace, other.lease) == ("moby", None)


def test_cancel_reaches_children_not_parents() -> None:
    env = Environment()
    root, cancel_root = background(env).with_cancel()
    child, cancel_child = root.with_cancel()
    grandchild, _ = child.with_lease("l").with_cancel()
    sibling, _ = root.with_cancel()
    cancel_child()
    assert isinstance(child.err, Canceled) and isinstance(grandchild.err, Canceled)
    assert root.err is None and sibling.err is None
    cancel_root()
    assert isinstance(sibling.err, Canceled)
    assert str(root.err) == "context canceled"


def test_cause_is_kept_and_err_stays_canceled() -> None:
    env = Environment()
    ctx, cancel = background(env).with_cancel()
    cause = NotFound("blob sha256:x")
    cancel(cause)
    cancel(NotFound("second cancel is a no-op"))
    assert isinstance(ctx.err, Canceled)
    assert ctx.cause is cause
    derived, _ = ctx.with_cancel()  # derived from a done context: done at once
    assert isinstance(derived.err, Canceled) and derived.cause is cause


def test_value_contexts_share_cancellation() -> None:
    env = Environment()
    ctx, cancel = background(env).with_cancel()
    leased = ctx.with_lease("l1").with_value("k", 1)
    cancel()
    assert isinstance(leased.err, Canceled)
    assert leased.value("k") == 1 and ctx.value("k") is None


def test_background_is_never_done() -> None:
    env = Environment()
    ctx = background(env)
    assert not ctx.cancellable and ctx.err is None
    with pytest.raises(SimUsageError, match="not done"):
        ctx.error()
    assert not ctx.cancel_root()


def test_deadline_cancels_with_deadline_exceeded_at_that_time() -> None:
    env = Environment()
    ctx, _ = background(env).with_deadline(5.0)
    seen: list[tuple[float, str]] = []

    def waiter() -> Generator[simpy.Event, Any, None]:
        err = yield ctx.done
        seen.append((env.now, type(err).__name__))

    go(env, waiter(), name="waiter")
    assert run(env).name == "completed"
    assert seen == [(5.0, "DeadlineExceeded")]
    assert isinstance(ctx.err, DeadlineExceeded)
    assert str(ctx.err) == "context deadline exceeded"


def test_earlier_parent_deadline_wins_and_cancel_stops_the_timer() -> None:
    env = Environment()
    parent, _ = background(env).with_timeout(2.0)
    child, _ = parent.with_deadline(10.0)
    assert child.deadline == 2.0
    other, cancel = background(env).with_deadline(7.0)
    cancel()
    env.run()
    assert env.now == 2.0  # the cancelled 7.0 timer was taken out of the queue
    assert isinstance(child.err, DeadlineExceeded) and isinstance(other.err, Canceled)


def test_a_past_deadline_is_done_at_once() -> None:
    env = Environment()
    ctx, _ = background(env).with_deadline(0.0)
    assert isinstance(ctx.err, DeadlineExceeded)


def test_cancelling_wakes_everything_that_waits() -> None:
    env = Environment()
    ctx, cancel = background(env).with_cancel()
    woke: list[tuple[str, float]] = []

    def waiter(name: str, c: Context) -> Generator[simpy.Event, Any, None]:
        yield c.done
        woke.append((name, env.now))

    def canceller() -> Generator[simpy.Event, Any, None]:
        yield env.timeout(3)
        cancel()

    for i in range(3):
        go(env, waiter(f"w{i}", ctx.with_lease(f"l{i}")), name=f"w{i}")
    go(env, waiter("child", ctx.with_cancel()[0]), name="child")
    go(env, canceller(), name="canceller")
    assert run(env).name == "completed"
    assert sorted(woke) == [("child", 3.0), ("w0", 3.0), ("w1", 3.0), ("w2", 3.0)]


def test_after_func_runs_on_cancel_unless_stopped() -> None:
    env = Environment()
    ctx, cancel = background(env).with_cancel()
    calls: list[str] = []
    ctx.after_func(lambda: calls.append("a"))
    stop = ctx.after_func(lambda: calls.append("b"))
    assert stop()
    cancel()
    ctx.after_func(lambda: calls.append("late"))  # already done: runs now
    assert calls == ["a", "late"]


def test_cancel_root_cancels_the_outermost_cancellable_context() -> None:
    env = Environment()
    outer, _ = background(env).with_cancel()
    inner, _ = outer.with_lease("l").with_cancel()
    assert inner.cancel_root(Canceled("injected", injected=True))
    assert isinstance(outer.err, Canceled) and outer.err.injected
    assert inner.error().injected
