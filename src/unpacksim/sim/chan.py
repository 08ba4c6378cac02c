"""Go channels and ``select`` (the runtime's ``chan.go`` and ``select.go`` semantics).

- ``yield from ch.send(v)``: hands ``v`` to a waiting receiver, else buffers it if there is
  room, else blocks until a receiver takes it.  Sending on a closed channel panics
  (:class:`~unpacksim.sim.errors.GoPanic` "send on closed channel"), also for a sender that
  was blocked when the channel was closed.
- ``value, ok = yield from ch.recv()``: takes from the buffer (refilling it from a blocked
  sender), else from a blocked sender, else returns ``(zero, False)`` if the channel is
  closed, else blocks.  Closing wakes every blocked receiver with ``(zero, False)``.
- ``ch.close()``: closing a closed channel panics ("close of closed channel").
- ``yield from select(ctx, cases)``: if several cases are ready (``ctx.Done()`` counts as a
  case, listed first) the environment's chooser picks one (``kind="select"``; index 0 is the
  first ready case in order); if none is ready it blocks until one is, or returns at once with
  ``default=True``.  Go picks uniformly at random among ready cases; here the chooser does,
  so FIFO picks the first and a random chooser is uniform.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import simpy

from unpacksim.sim.env import Wait
from unpacksim.sim.errors import GoPanic, SimUsageError

if TYPE_CHECKING:
    from unpacksim.sim.context import Context
    from unpacksim.sim.env import Environment

__all__ = ["DEFAULT", "DONE", "Channel", "Recv", "Selected", "Send", "select"]

#: :attr:`Selected.index` when the context's ``Done`` case was chosen.
DONE = -1
#: :attr:`Selected.index` when nothing was ready and ``default=True``.
DEFAULT = -2


class _Select:
    """One blocked operation (a plain send/recv is a select of one case).

    Firing it takes its other waiting cases off every channel at once, so no channel ever
    holds a case of a select that already went another way.
    """

    __slots__ = ("channels", "done", "event")

    def __init__(self, event: Wait, channels: list[Channel]) -> None:
        self.event = event
        self.channels = channels
        self.done = False

    def fire(self, case: int, value: Any, ok: bool) -> None:
        if self.done:
            return
        self.done = True
        for channel in self.channels:
            channel._forget(self)
        self.event.succeed((case, value, ok))


class _Sudog:
    __slots__ = ("case", "sel", "value")

    def __init__(self, sel: _Select, case: int, value: Any = None) -> None:
        self.sel = sel
        self.case = case
        self.value = value


class Channel:
    """A Go channel of capacity ``capacity`` (0: unbuffered) whose zero value is ``zero``."""

    def __init__(
        self, env: Environment, capacity: int = 0, *, name: str = "chan", zero: Any = None
    ) -> None:
        if capacity < 0:
            raise SimUsageError(f"Channel(capacity={capacity}): capacity cannot be negative")
        self.env = env
        self.capacity = capacity
        self.name = name
        self.zero = zero
        self.closed = False
        self._buf: deque[Any] = deque()
        self._recvq: list[_Sudog] = []
        self._sendq: list[_Sudog] = []

    def __len__(self) -> int:
        """``len(ch)``: values buffered now."""
        return len(self._buf)

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Channel {self.name} {len(self._buf)}/{self.capacity} {state}>"

    # --- non-blocking halves (shared by the operations and select) ------------------------

    def _recv_ready(self) -> bool:
        return bool(self._buf) or bool(self._sendq) or self.closed

    def _send_ready(self) -> bool:
        return self.closed or bool(self._recvq) or len(self._buf) < self.capacity

    def _try_recv(self) -> tuple[Any, bool] | None:
        if self._buf:
            value = self._buf.popleft()
            if self._sendq:
                sender = self._sendq.pop(0)
                self._buf.append(sender.value)
                sender.sel.fire(sender.case, None, True)
            return value, True
        if self._sendq:
            sender = self._sendq.pop(0)
            sender.sel.fire(sender.case, None, True)
            return sender.value, True
        if self.closed:
            return self.zero, False
        return None

    def _try_send(self, value: Any) -> bool:
        if self.closed:
            raise GoPanic("send on closed channel")
        if self._recvq:
            receiver = self._recvq.pop(0)
            receiver.sel.fire(receiver.case, value, True)
            return True
        if len(self._buf) < self.capacity:
            self._buf.append(value)
            return True
        return False

    def _forget(self, sel: _Select) -> None:
        self._recvq = [s for s in self._recvq if s.sel is not sel]
        self._sendq = [s for s in self._sendq if s.sel is not sel]

    # --- operations ------------------------------------------------------------------------

    def send(self, value: Any) -> Generator[simpy.Event, Any, None]:
        """``ch <- value``.

        Raises:
            GoPanic: the channel is closed, or was closed while this send was blocked.
        """
        if self._try_send(value):
            return
        sel = _Select(Wait(self.env, f"send on {self.name}"), [self])
        self._sendq.append(_Sudog(sel, 0, value))
        _, _, ok = yield sel.event
        if not ok:
            raise GoPanic("send on closed channel")

    def recv(self) -> Generator[simpy.Event, Any, tuple[Any, bool]]:
        """``value, ok := <-ch``: ``(zero, False)`` once the channel is closed and drained."""
        got = self._try_recv()
        if got is not None:
            return got
        sel = _Select(Wait(self.env, f"recv on {self.name}"), [self])
        self._recvq.append(_Sudog(sel, 0))
        _, value, ok = yield sel.event
        return value, ok

    def close(self) -> None:
        """``close(ch)``: wakes every blocked receiver with ``(zero, False)``.

        Raises:
            GoPanic: the channel is already closed ("close of closed channel").
        """
        if self.closed:
            raise GoPanic("close of closed channel")
        self.closed = True
        receivers, self._recvq = self._recvq, []
        for receiver in receivers:
            receiver.sel.fire(receiver.case, self.zero, False)
        senders, self._sendq = self._sendq, []
        for sender in senders:
            sender.sel.fire(sender.case, None, False)


@dataclass(frozen=True)
class Recv:
    """A receive case of :func:`select`: ``case v, ok := <-channel``."""

    channel: Channel


@dataclass(frozen=True)
class Send:
    """A send case of :func:`select`: ``case channel <- value``."""

    channel: Channel
    value: Any


@dataclass(frozen=True)
class Selected:
    """The case :func:`select` took.

    ``index`` is the position in ``cases``, :data:`DONE` for the context (``value`` is then
    the context's error, to raise or handle) or :data:`DEFAULT`.  For a receive, ``value`` and
    ``ok`` are what ``v, ok := <-ch`` gives; for a send, ``value`` is None and ``ok`` True.
    """

    index: int
    value: Any = None
    ok: bool = True

    @property
    def done(self) -> bool:
        """True when the context's ``Done`` case was taken."""
        return self.index == DONE


def _ready(case: Recv | Send) -> bool:
    if isinstance(case, Recv):
        return case.channel._recv_ready()
    if isinstance(case, Send):
        return case.channel._send_ready()
    raise SimUsageError(f"select case {case!r} is neither Recv(channel) nor Send(channel, value)")


def _complete(case: Recv | Send, index: int) -> Selected:
    if isinstance(case, Recv):
        got = case.channel._try_recv()
        assert got is not None
        return Selected(index, got[0], got[1])
    sent = case.channel._try_send(case.value)
    assert sent
    return Selected(index)


def select(
    ctx: Context | None,
    cases: Sequence[Recv | Send],
    *,
    default: bool = False,
) -> Generator[simpy.Event, Any, Selected]:
    """Go's ``select`` over ``cases``, with ``case <-ctx.Done():`` first if ``ctx`` is given.

    Raises:
        GoPanic: the chosen case sends on a closed channel.
        SimUsageError: a case is not a :class:`Recv` or :class:`Send`, or there is no case.
    """
    ready = [i for i, case in enumerate(cases) if _ready(case)]
    if ctx is not None and ctx.err is not None:
        ready.insert(0, DONE)
    if ready:
        env = ctx.env if ctx is not None else cases[0].channel.env
        index = ready[env.chooser.choose(len(ready), "select")]
        if index == DONE:
            assert ctx is not None
            return Selected(DONE, ctx.error(), False)
        return _complete(cases[index], index)
    if default:
        return Selected(DEFAULT, None, False)
    if not cases and (ctx is None or not ctx.cancellable):
        raise SimUsageError("select with no case blocks forever; give a case or a context")
    return (yield from _block(ctx, cases))


def _block(ctx: Context | None, cases: Sequence[Recv | Send]) -> Generator[Any, Any, Selected]:
    env = ctx.env if ctx is not None else cases[0].channel.env
    label = ", ".join(
        f"{'recv' if isinstance(c, Recv) else 'send'} {c.channel.name}" for c in cases
    )
    prefix = "ctx.done, " if ctx is not None else ""
    channels: list[Channel] = []
    for case in cases:
        if not any(case.channel is seen for seen in channels):
            channels.append(case.channel)
    sel = _Select(Wait(env, f"select({prefix}{label})"), channels)
    for i, case in enumerate(cases):
        if isinstance(case, Recv):
            case.channel._recvq.append(_Sudog(sel, i))
        else:
            case.channel._sendq.append(_Sudog(sel, i, case.value))
    stop = ctx.after_func(lambda: sel.fire(DONE, None, False)) if ctx is not None else None
    index, value, ok = yield sel.event
    if stop is not None:
        stop()
    if index == DONE:
        assert ctx is not None
        return Selected(DONE, ctx.error(), False)
    if isinstance(cases[index], Send) and not ok:
        raise GoPanic("send on closed channel")
    return Selected(index, value, ok)
