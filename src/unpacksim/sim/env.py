"""The controlled SimPy environment: same-instant events form a batch; a chooser picks.

SimPy processes the events scheduled for the same instant in the order they were scheduled
(first in, first out).  Races live in exactly those orders, so :class:`Environment` keeps the
events that SimPy could legally run next (the same time and the same priority: ``URGENT``
events still run before ``NORMAL`` ones, as in SimPy) as a *batch* and asks its chooser which
one runs.  Index 0 of a batch is the event SimPy would have run, so :class:`FifoChooser`
reproduces stock SimPy exactly.

The hot path stays SimPy's: the chooser is consulted only when the head of the event queue has
a peer with the same time and priority.  Events that nobody waits on (no callbacks, not
failed) are processed as soon as they join a batch, without a decision: running them first is
one of the legal orders and has no effect, and it keeps decisions (and PCT's ``k``) for the
orders that matter.

Every process started through :meth:`Environment.process` (and :func:`unpacksim.sim.go.go`)
is registered under a unique name, which the trace, PCT and the liveness report use.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from heapq import heapify, heappop, heappush
from types import MethodType
from typing import TYPE_CHECKING, Any

import simpy
from simpy.core import BoundClass, EmptySchedule, Infinity, SimTime, StopSimulation
from simpy.events import Condition, EventPriority, Process, Timeout

from unpacksim.sim.choose import Chooser, FifoChooser
from unpacksim.sim.errors import SimUsageError
from unpacksim.sim.trace import Trace

if TYPE_CHECKING:
    from unpacksim.sim.faults import FaultPlan

__all__ = [
    "Environment",
    "GoroutineFailure",
    "ProcessInfo",
    "SimClock",
    "Wait",
    "describe_wait",
]

ProcessGenerator = Generator[simpy.Event, Any, Any]


class Wait(simpy.Event):
    """A plain event that says what its waiter waits on (shown in liveness reports)."""

    def __init__(self, env: simpy.Environment, label: str) -> None:
        super().__init__(env)
        self.label = label

    def _desc(self) -> str:
        return f"Wait({self.label})"


@dataclass(frozen=True)
class GoroutineFailure:
    """A goroutine raised an exception nobody caught (Go: an unrecovered panic)."""

    process: str
    time: float
    error: BaseException

    def describe(self) -> str:
        return f"{self.process} at t={self.time}: {type(self.error).__name__}: {self.error}"


@dataclass
class ProcessInfo:
    """What the environment knows about one process it started."""

    name: str
    daemon: bool
    goroutine: bool
    process: Process | None = None


class SimClock:
    """The environment's time as a ``unpacksim.model.clock.Clock`` (``now()`` is a method)."""

    def __init__(self, env: simpy.Environment) -> None:
        self._env = env

    def now(self) -> float:
        return float(self._env.now)


class Environment(simpy.Environment):
    """A SimPy environment whose same-instant choices are made by ``chooser``.

    Attributes:
        chooser: the :class:`~unpacksim.sim.choose.Chooser` (FIFO by default).
        trace: the run's :class:`~unpacksim.sim.trace.Trace`.
        faults: the run's :class:`~unpacksim.sim.faults.FaultPlan` (none active by default);
            assigning a plan binds it to this environment.
        failures: goroutines that raised (:class:`GoroutineFailure`), in order.
        clock: this environment's time as a model ``Clock``.
    """

    def __init__(
        self,
        chooser: Chooser | None = None,
        *,
        faults: FaultPlan | None = None,
        initial_time: SimTime = 0,
    ) -> None:
        super().__init__(initial_time)
        # simpy binds its BoundClass attributes only for the instance's own class; bind the
        # base class's too (except `process`, overridden below) so they stay fast.
        for attr, obj in simpy.Environment.__dict__.items():
            if type(obj) is BoundClass and attr != "process":
                setattr(self, attr, MethodType(obj.cls, self))
        self.chooser: Chooser = chooser if chooser is not None else FifoChooser()
        self._choose = self.chooser.choose
        self._choose_owner: Callable[[list[str], str], int] | None = None
        if getattr(self.chooser, "wants_owners", False):
            self._choose_owner = self.chooser.choose_owner  # type: ignore[attr-defined]
        self._batch: list[tuple[SimTime, EventPriority, int, simpy.Event]] = []
        self._batch_time: SimTime = initial_time
        self._batch_priority: EventPriority = EventPriority(1)
        self.trace = Trace(now=lambda: float(self._now), process=self.process_name)
        self.failures: list[GoroutineFailure] = []
        self.clock = SimClock(self)
        self._procs: dict[Process, ProcessInfo] = {}
        self._name_counts: dict[str, int] = {}
        self._live = 0
        self._faults: FaultPlan | None = None
        if faults is None:
            from unpacksim.sim.faults import FaultPlan

            faults = FaultPlan.none()
        self.faults = faults

    # --- faults --------------------------------------------------------------------------

    @property
    def faults(self) -> FaultPlan:
        assert self._faults is not None
        return self._faults

    @faults.setter
    def faults(self, plan: FaultPlan) -> None:
        plan.bind(self)
        self._faults = plan

    # --- processes -----------------------------------------------------------------------

    def process(
        self, generator: ProcessGenerator, *, name: str | None = None, daemon: bool = False
    ) -> Process:
        """Start a SimPy process registered under ``name`` (default: the generator's name).

        Unlike :func:`unpacksim.sim.go.go`, an exception the process does not catch fails the
        process event as in plain SimPy.  ``daemon`` processes do not keep a run going.
        """
        return self.start(generator, name=name, daemon=daemon, goroutine=False)

    def start(
        self, generator: ProcessGenerator, *, name: str | None, daemon: bool, goroutine: bool
    ) -> Process:
        """Register and start a process (see :func:`unpacksim.sim.go.go`)."""
        if not hasattr(generator, "throw"):
            raise SimUsageError(
                f"{generator!r} is not a generator: pass the generator object, "
                "e.g. go(env, worker(ctx), name='worker'), not the function"
            )
        base = name if name is not None else getattr(generator, "__name__", "process")
        info = ProcessInfo(self._unique_name(base), daemon, goroutine)
        proc = Process(self, self._body(generator, info))
        info.process = proc
        self._procs[proc] = info
        if not daemon:
            self._live += 1
        return proc

    def _unique_name(self, base: str) -> str:
        count = self._name_counts.get(base, 0) + 1
        self._name_counts[base] = count
        return base if count == 1 else f"{base}#{count}"

    def _body(self, generator: ProcessGenerator, info: ProcessInfo) -> ProcessGenerator:
        try:
            if not info.goroutine:
                return (yield from generator)
            try:
                return (yield from generator)
            except Exception as exc:
                # Go: an unrecovered panic ends the program; here it is recorded and the
                # run reports the `failed` outcome (sim.run), never a silent crash.
                self.failures.append(GoroutineFailure(info.name, float(self._now), exc))
                return None
        finally:
            if not info.daemon:
                self._live -= 1

    def process_name(self, proc: Process | None = None) -> str:
        """The registered name of ``proc`` (default: the active process; ``"main"`` if none)."""
        if proc is None:
            proc = self._active_proc
            if proc is None:
                return "main"
        info = self._procs.get(proc)
        if info is None:  # a Process made directly with simpy.Process(env, ...)
            info = ProcessInfo(self._unique_name(proc.name), False, False, proc)
            self._procs[proc] = info
        return info.name

    @property
    def live(self) -> int:
        """How many non-daemon processes are still running."""
        return self._live

    def processes(self) -> list[ProcessInfo]:
        """Every process started so far, in start order."""
        return list(self._procs.values())

    # --- the step loop -------------------------------------------------------------------

    def peek(self) -> SimTime:
        """The time of the next event (``Infinity`` if there is none)."""
        if self._batch:
            return self._batch[0][0]
        return self._queue[0][0] if self._queue else Infinity

    def step(self) -> None:
        """Process the next event; ask the chooser if several are ready at this instant.

        Raises:
            EmptySchedule: no event is left.
        """
        queue = self._queue
        batch = self._batch
        if batch:
            n = len(batch)
            if (
                n > 1
                and self._choose_owner is None
                and not (queue and queue[0][0] == self._batch_time)
            ):
                # The batch goes on and nothing joined it: just ask the chooser.
                event = batch.pop(self._choose(n, "event"))[3]
            else:
                picked = self._from_batch()
                if picked is None:
                    return
                event = picked
        else:
            tied = False
            n = len(queue)
            if n > 1:
                head = queue[0]
                t, p = head[0], head[1]
                peer = queue[1]
                if peer[0] == t and peer[1] == p:
                    tied = True
                elif n > 2:
                    peer = queue[2]
                    tied = peer[0] == t and peer[1] == p
            if tied:
                picked = self._from_batch()
                if picked is None:
                    return
                event = picked
            else:
                try:
                    self._now, _, _, event = heappop(queue)
                except IndexError:
                    raise EmptySchedule from None
        # From here on SimPy's Environment.step after its pop (simpy/core.py), unchanged.
        callbacks, event.callbacks = event.callbacks, None  # type: ignore[assignment]
        try:
            for callback in callbacks:
                callback(event)
        except StopSimulation:
            event.callbacks = callbacks[callbacks.index(callback) + 1 :]
            self.schedule(event, EventPriority(-1))
            raise
        if not event._ok and not hasattr(event, "_defused"):
            value = event._value
            if not isinstance(value, Exception):
                # BaseExceptions that steer the caller (Hypothesis's StopTest, KeyboardInterrupt)
                # must arrive as themselves: a copy made from their args is not recognised.
                raise value
            exc = type(value)(*value.args)
            exc.__cause__ = value
            raise exc

    def _from_batch(self) -> simpy.Event | None:
        """Fill the batch of same-instant events and take the chooser's pick from it.

        Returns None if every event that joined was one nobody waits on (processed here).
        """
        queue, batch = self._queue, self._batch
        if batch and queue and queue[0][0] == self._batch_time:
            if queue[0][1] < self._batch_priority:
                # A more urgent event arrived at this instant: it goes first, as in SimPy.
                for entry in batch:
                    heappush(queue, entry)
                batch.clear()
            elif queue[0][1] == self._batch_priority:
                self._absorb()
        if not batch:
            if not queue:
                raise EmptySchedule
            head = queue[0]
            self._now = self._batch_time = head[0]
            self._batch_priority = head[1]
            self._absorb()
        n = len(batch)
        if n == 0:
            return None
        if n == 1:
            return batch.pop()[3]
        if self._choose_owner is not None:
            return batch.pop(self._choose_owner([self._owner(e[3]) for e in batch], "event"))[3]
        return batch.pop(self._choose(n, "event"))[3]

    def _absorb(self) -> None:
        """Move the queue's events of the batch's time and priority into the batch."""
        queue, batch = self._queue, self._batch
        t, p = self._batch_time, self._batch_priority
        while queue and queue[0][0] == t and queue[0][1] == p:
            entry = heappop(queue)
            event = entry[3]
            if not event.callbacks and (event._ok or hasattr(event, "_defused")):
                event.callbacks = None  # type: ignore[assignment]  # nobody waits: no-op
            else:
                batch.append(entry)

    def _owner(self, event: simpy.Event, depth: int = 0) -> str:
        """The name of the process an event resumes ("" if none), for PCT."""
        for callback in event.callbacks or ():
            target = getattr(callback, "__self__", None)
            if isinstance(target, Process):
                return self.process_name(target)
            if isinstance(target, simpy.Event) and depth < 2:
                name = self._owner(target, depth + 1)
                if name:
                    return name
        return ""

    def unschedule(self, event: simpy.Event) -> bool:
        """Take a scheduled event out of the queue (Go's ``Timer.Stop``); True if found."""
        for i, entry in enumerate(self._batch):
            if entry[3] is event:
                del self._batch[i]
                return True
        queue = self._queue
        for i, entry in enumerate(queue):
            if entry[3] is event:
                queue[i] = queue[-1]
                queue.pop()
                heapify(queue)
                return True
        return False


def describe_wait(env: Environment, event: simpy.Event | None) -> str:
    """What a process blocked on ``event`` waits on, in words."""
    if event is None:
        return "nothing (being interrupted or finished)"
    if isinstance(event, Wait):
        return event.label
    if isinstance(event, Timeout):
        return f"timeout({event._delay})"
    if isinstance(event, Process):
        return f"process {env.process_name(event)}"
    if isinstance(event, Condition):
        parts = ", ".join(describe_wait(env, e) for e in event._events)
        return f"{type(event).__name__.lower()}({parts})"
    return type(event).__name__
