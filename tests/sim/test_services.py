"""Timed, traced, fault-checked calls (unpacksim.sim.services)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest
import simpy

from unpacksim.model.errdefs import AlreadyExists, Canceled, NotFound
from unpacksim.sim.choose import FifoChooser, RandomChooser, ReplayChooser
from unpacksim.sim.context import Context, background
from unpacksim.sim.env import Environment
from unpacksim.sim.errors import SimUsageError
from unpacksim.sim.faults import FaultPlan, Rule
from unpacksim.sim.go import go
from unpacksim.sim.run import run
from unpacksim.sim.services import LatencyModel, Services

Gen = Generator[simpy.Event, Any, None]


def summary(env: Environment) -> list[tuple[str, str, float, str, str | None, bool]]:
    return [(e.type, e.process, e.time, e.op, e.outcome, e.injected) for e in env.trace.events]


def test_call_is_invoke_latency_atomic_step_complete() -> None:
    env = Environment()
    services = Services(env, latency=LatencyModel({"content": [0.5]}))
    store = {"a": 1}
    got: list[int] = []

    def main() -> Gen:
        ctx = background(env)
        got.append(
            (yield from services.call(ctx, "content.info", lambda: store["a"], args={"key": "a"}))
        )

    go(env, main(), name="pull")
    run(env).raise_for_failure()
    assert got == [1]
    assert summary(env) == [
        ("invoke", "pull", 0.0, "content.info", None, False),
        ("complete", "pull", 0.5, "content.info", "ok", False),
    ]
    assert env.trace.events[0].args == {"key": "a"}


def test_latency_model_picks_through_the_chooser_and_longest_prefix_wins() -> None:
    model = LatencyModel({"content": [1.0, 2.0], "content.writer.commit": [3.0, 4.0, 5.0]})
    assert model.candidates("content.info") == (1.0, 2.0)
    assert model.candidates("content.writer.commit") == (3.0, 4.0, 5.0)
    assert model.candidates("snapshots.prepare") == (0.001,)
    assert model.draw(FifoChooser(), "content.info") == 1.0
    assert model.draw(ReplayChooser("0:2"), "content.writer.commit") == 5.0
    with pytest.raises(SimUsageError, match="non-negative"):
        LatencyModel({"x": [-1.0]})


def test_a_call_on_a_done_context_raises_its_error() -> None:
    env = Environment()
    services = Services(env)
    ctx, cancel = background(env).with_cancel()
    ran: list[str] = []
    errors: list[BaseException] = []

    def main() -> Gen:
        cancel()
        try:
            yield from services.call(ctx, "snapshots.stat", lambda: ran.append("ran"))
        except Canceled as exc:
            errors.append(exc)

    go(env, main(), name="main")
    run(env).raise_for_failure()
    assert ran == [] and len(errors) == 1
    assert summary(env)[-1][4] == "Canceled"


def test_fault_site_is_checked_before_the_model_operation() -> None:
    chain = "sha256:" + "1" * 64
    env = Environment(faults=FaultPlan.scripted(Rule("snapshots.prepare.exists", key=chain)))
    services = Services(env)
    ran: list[str] = []

    def prepare(ctx: Context) -> Gen:
        try:
            yield from services.call(
                ctx,
                "snapshots.prepare",
                lambda: ran.append("prepared"),
                site="snapshots.prepare.exists",
                key=chain,
                write=True,
            )
        except AlreadyExists as exc:
            assert exc.injected

    go(env, prepare(background(env)), name="p1")
    go(env, prepare(background(env)), name="p2")
    run(env).raise_for_failure()
    assert ran == ["prepared"]  # the first hit was injected, the second ran
    complete = [e for e in env.trace.events if e.type == "complete"]
    assert [(e.process, e.outcome, e.injected) for e in complete] == [
        ("p1", "AlreadyExists", True),
        ("p2", "ok", False),
    ]
    fault = next(e for e in env.trace.events if e.type == "fault")
    assert fault.call == complete[0].call  # the fault names the call it fired in


def test_model_errors_are_traced_with_their_class_and_message() -> None:
    env = Environment()
    services = Services(env)

    def missing() -> None:
        raise NotFound("content digest sha256:x")

    def main() -> Gen:
        with pytest.raises(NotFound):
            yield from services.call(background(env), "content.info", missing)

    go(env, main(), name="main")
    run(env).raise_for_failure()
    last = env.trace.events[-1]
    assert (last.outcome, last.injected, last.error) == (
        "NotFound",
        False,
        "content digest sha256:x: not found",
    )


def test_writes_wait_for_the_exclusive_lock_reads_do_not() -> None:
    env = Environment()
    services = Services(env, latency=LatencyModel.zero())
    done: list[tuple[str, float]] = []

    def gc() -> Gen:
        yield from services.lock.lock()
        yield env.timeout(5)  # mark and sweep
        services.lock.unlock()

    def client(op: str, write: bool) -> Gen:
        yield env.timeout(1)
        yield from services.call(background(env), op, lambda: None, write=write)
        done.append((op, env.now))

    go(env, gc(), name="gc")
    go(env, client("content.info", False), name="reader")
    go(env, client("content.update", True), name="writer")
    run(env).raise_for_failure()
    assert sorted(done) == [("content.info", 1), ("content.update", 5)]


def test_steps_of_a_non_atomic_operation_interleave_with_other_work() -> None:
    def scenario(seed: int) -> list[str]:
        env = Environment(RandomChooser(seed))
        services = Services(env, latency=LatencyModel.zero())
        order: list[str] = []

        def create(ctx: Context) -> Gen:
            def body() -> Gen:
                yield from services.atomic(lambda: order.append("begin"), write=True)
                yield from services.gap(ctx, "snapshots.prepare")
                yield from services.atomic(lambda: order.append("backend"))
                yield from services.gap(ctx, "snapshots.prepare")
                yield from services.atomic(lambda: order.append("finish"), write=True)

            yield from services.call_steps(ctx, "snapshots.prepare", body)

        def other(ctx: Context) -> Gen:
            yield from services.call(ctx, "snapshots.remove", lambda: order.append("other"))

        go(env, create(background(env)), name="create")
        go(env, other(background(env)), name="other")
        run(env).raise_for_failure()
        return order

    orders = {tuple(scenario(seed)) for seed in range(16)}
    assert ("begin", "other", "backend", "finish") in orders
    assert ("begin", "backend", "other", "finish") in orders


def test_hooked_effect_site_runs_its_work_before_the_call_proceeds() -> None:
    env = Environment(faults=FaultPlan.scripted(Rule("gc.run", key="snapshots.prepare")))
    services = Services(env, latency=LatencyModel.zero())
    order: list[str] = []

    def collect() -> Gen:
        yield from services.lock.lock()
        order.append("gc marks")
        yield env.timeout(1)
        services.lock.unlock()

    def start_gc(ctx: Context, op: str) -> None:
        go(env, collect(), name="gc")

    services.add_hook("gc.run", start_gc)

    def pull(ctx: Context) -> Gen:
        yield from services.call(ctx, "snapshots.stat", lambda: order.append("stat"))
        yield from services.call(
            ctx, "snapshots.prepare", lambda: order.append("prepare"), write=True
        )

    go(env, pull(background(env)), name="pull")
    run(env).raise_for_failure()
    assert order == ["stat", "gc marks", "prepare"]
    with pytest.raises(SimUsageError, match="already has a hook"):
        services.add_hook("gc.run", lambda ctx, op: None)
    with pytest.raises(SimUsageError, match="not an effect site"):
        services.add_hook("fetch.error", lambda ctx, op: None)


def test_ctx_cancel_site_cancels_the_callers_context() -> None:
    env = Environment(faults=FaultPlan.scripted(Rule("ctx.cancel", key="content.writer.commit")))
    services = Services(env)
    outer, _ = background(env).with_cancel()
    errors: list[Canceled] = []

    def pull() -> Gen:
        ctx, cancel = outer.with_lease("l").with_cancel()
        yield from services.call(ctx, "content.writer.open", lambda: None)
        try:
            yield from services.call(ctx, "content.writer.commit", lambda: None)
        except Canceled as exc:
            errors.append(exc)
        cancel()

    go(env, pull(), name="pull")
    run(env).raise_for_failure()
    assert len(errors) == 1 and errors[0].injected
    assert isinstance(outer.err, Canceled)  # the caller's own context
    assert [e.outcome for e in env.trace.events if e.type == "complete"] == ["ok", "Canceled"]


def test_calls_in_flight_when_the_run_ends_are_indeterminate() -> None:
    env = Environment()
    services = Services(env, latency=LatencyModel({"slow": [10.0]}))

    def main() -> Gen:
        yield from services.call(background(env), "slow.op", lambda: None)

    go(env, main(), name="main")
    outcome = run(env, until=5)
    assert outcome.name == "time_bound"
    assert [e.outcome for e in env.trace.events] == [None, "indeterminate"]
