"""Channels and select with Go's semantics (unpacksim.sim.chan)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest
import simpy

from unpacksim.model.errdefs import Canceled
from unpacksim.sim.chan import DEFAULT, Channel, Recv, Selected, Send, select
from unpacksim.sim.choose import BaseChooser, FifoChooser, RandomChooser, ReplayChooser
from unpacksim.sim.context import background
from unpacksim.sim.env import Environment
from unpacksim.sim.errors import GoPanic
from unpacksim.sim.go import go
from unpacksim.sim.run import run

Gen = Generator[simpy.Event, Any, None]


def test_unbuffered_send_blocks_until_received() -> None:
    env = Environment()
    ch = Channel(env, name="c")
    log: list[tuple[str, float, Any]] = []

    def sender() -> Gen:
        yield from ch.send("x")
        log.append(("sent", env.now, None))

    def receiver() -> Gen:
        yield env.timeout(3)
        log.append(("recv", env.now, (yield from ch.recv())))

    go(env, sender(), name="sender")
    go(env, receiver(), name="receiver")
    assert run(env).name == "completed"
    assert sorted(log, key=str) == [("recv", 3, ("x", True)), ("sent", 3, None)]


def test_buffered_channel_keeps_order_and_refills_from_blocked_senders() -> None:
    env = Environment()
    ch = Channel(env, capacity=2)
    got: list[Any] = []

    def sender() -> Gen:
        for i in range(4):
            yield from ch.send(i)
        ch.close()

    def receiver() -> Gen:
        yield env.timeout(1)
        while True:
            value, ok = yield from ch.recv()
            if not ok:
                break
            got.append(value)

    go(env, sender(), name="sender")
    go(env, receiver(), name="receiver")
    assert run(env).name == "completed"
    assert got == [0, 1, 2, 3]


def test_closing_wakes_every_receiver_with_the_zero_value() -> None:
    env = Environment()
    ch = Channel(env, name="done", zero=0)
    woke: list[tuple[int, Any, bool, float]] = []

    def receiver(i: int) -> Gen:
        value, ok = yield from ch.recv()
        woke.append((i, value, ok, env.now))

    for i in range(4):
        go(env, receiver(i), name="receiver")

    def closer() -> Gen:
        yield env.timeout(2)
        ch.close()

    go(env, closer(), name="closer")
    assert run(env).name == "completed"
    assert sorted(woke) == [(i, 0, False, 2) for i in range(4)]


def test_receive_on_a_closed_channel_drains_then_returns_zero() -> None:
    env = Environment()
    ch = Channel(env, capacity=1)
    results: list[tuple[Any, bool]] = []

    def main() -> Gen:
        yield from ch.send("last")
        ch.close()
        results.append((yield from ch.recv()))
        results.append((yield from ch.recv()))

    go(env, main(), name="main")
    run(env).raise_for_failure()
    assert results == [("last", True), (None, False)]


def test_send_on_closed_and_double_close_panic() -> None:
    env = Environment()
    ch = Channel(env, capacity=1)
    ch.close()
    with pytest.raises(GoPanic, match="close of closed channel"):
        ch.close()
    with pytest.raises(GoPanic, match="send on closed channel"):
        next(ch.send(1))


def test_blocked_sender_panics_when_the_channel_is_closed() -> None:
    env = Environment()
    ch = Channel(env)

    def sender() -> Gen:
        yield from ch.send(1)

    def closer() -> Gen:
        yield env.timeout(1)
        ch.close()

    go(env, sender(), name="sender")
    go(env, closer(), name="closer")
    outcome = run(env)
    assert outcome.name == "failed"
    assert [(f.process, str(f.error)) for f in outcome.failures] == [
        ("sender", "send on closed channel")
    ]


def _select_ready(chooser: BaseChooser) -> Selected:
    """Three cases, of which the second and third are ready; returns what select took."""
    env = Environment(chooser)
    idle, a, b = Channel(env, name="idle"), Channel(env, 1, name="a"), Channel(env, 1, name="b")
    taken: list[Selected] = []

    def main() -> Gen:
        yield from a.send("from a")
        yield from b.send("from b")
        taken.append((yield from select(background(env), [Recv(idle), Recv(a), Recv(b)])))

    go(env, main(), name="main")
    run(env).raise_for_failure()
    return taken[0]


def test_select_among_ready_cases_goes_through_the_chooser() -> None:
    assert _select_ready(FifoChooser()) == Selected(1, "from a", True)
    assert _select_ready(ReplayChooser("0:1")) == Selected(2, "from b", True)
    assert {_select_ready(RandomChooser(s)).index for s in range(12)} == {1, 2}


def test_select_counts_a_done_context_as_a_ready_case() -> None:
    env = Environment(ReplayChooser("0:1"))
    ctx, cancel = background(env).with_cancel()
    cancel()
    ready = Channel(env, capacity=1)
    taken: list[Selected] = []

    def main() -> Gen:
        yield from ready.send(1)
        taken.append((yield from select(ctx, [Recv(ready)])))  # pick 1: the channel
        taken.append((yield from select(ctx, [Recv(ready)])))  # only ctx is ready now

    go(env, main(), name="main")
    run(env).raise_for_failure()
    assert taken[0] == Selected(0, 1, True)
    assert taken[1].done and isinstance(taken[1].value, Canceled)


def test_blocked_select_wakes_on_the_first_case_or_the_context() -> None:
    env = Environment()
    ctx, cancel = background(env).with_cancel()
    a, b = Channel(env, name="a"), Channel(env, name="b")
    taken: list[tuple[float, Selected]] = []

    def selector() -> Gen:
        for _ in range(2):
            selected = yield from select(ctx, [Recv(a), Send(b, "v")])
            taken.append((env.now, selected))

    def partner() -> Gen:
        yield env.timeout(1)
        got = yield from b.recv()
        assert got == ("v", True)
        yield env.timeout(1)
        cancel()

    go(env, selector(), name="selector")
    go(env, partner(), name="partner")
    assert run(env).name == "completed"
    assert taken[0] == (1, Selected(1, None, True))
    assert taken[1][0] == 2 and taken[1][1].done
    assert not a._recvq and not b._sendq  # the select's other cases were withdrawn


def test_select_default_and_blocked_deadlock_report() -> None:
    env = Environment()
    ch = Channel(env, name="nothing")
    taken: list[Selected] = []

    def main() -> Gen:
        taken.append((yield from select(None, [Recv(ch)], default=True)))
        yield from select(background(env), [Recv(ch)])

    go(env, main(), name="main")
    outcome = run(env)
    assert taken == [Selected(DEFAULT, None, False)]
    assert outcome.name == "deadlock"
    assert [(b.name, b.waits_on) for b in outcome.blocked] == [
        ("main", "select(ctx.done, recv nothing)")
    ]
