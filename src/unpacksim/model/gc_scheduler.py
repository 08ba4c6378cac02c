"""The GC scheduler's decisions as pure functions (``gc/scheduler/scheduler.go`` at the seed).

containerd's scheduler is one goroutine looping over a timer and a channel of mutation
events.  This module keeps its state in a frozen :class:`SchedulerState` and its loop body in
three transitions, so a simulated GC process can be built on it:

- :func:`on_event` for a mutation callback (``DB.Update`` succeeded) or a trigger
  (``ScheduleAndWait``, used by ``SynchronousDelete`` of leases and images);
- :func:`on_tick` when the timer fires at ``state.next_collection``: collect or skip;
- :func:`on_collected` when a collection ends, with its pause (``GCStats.MetaD``, the
  metadata phase only).

The simulated process arms one timer at ``next_collection`` whenever a transition changes it
(containerd replaces its timer channel), delivers events that arrive during a collection only
after :func:`on_collected` (the loop is busy), and releases every ``ScheduleAndWait`` waiter
when a collection ends.  Times are simulated seconds.  A collection whose pause is zero gives
a zero interval, as in Go; a simulated collection must take time or the ticks never advance.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

__all__ = [
    "MutationEvent",
    "SchedulerConfig",
    "SchedulerState",
    "TickDecision",
    "mutation_event",
    "on_collected",
    "on_event",
    "on_tick",
    "start",
    "trigger_event",
]

_NS = 1_000_000_000


@dataclass(frozen=True)
class SchedulerConfig:
    """The scheduler plugin's configuration, with containerd's defaults.

    ``pause_threshold`` (0.02): the share of time collections may take; ``deletion_threshold``
    (0 = off): deletions that force an immediate collection; ``mutation_threshold`` (100):
    mutations that make the next tick collect; ``schedule_delay`` (0 s): delay of a
    triggered collection; ``startup_delay`` (0.1 s): the first collection.
    """

    pause_threshold: float = 0.02
    deletion_threshold: int = 0
    mutation_threshold: int = 100
    schedule_delay: float = 0.0
    startup_delay: float = 0.1

    def normalized(self) -> SchedulerConfig:
        """The limits ``newScheduler`` enforces: pause in [0, 0.5], no negative values."""
        return SchedulerConfig(
            pause_threshold=min(max(self.pause_threshold, 0.0), 0.5),
            deletion_threshold=self.deletion_threshold,
            mutation_threshold=max(self.mutation_threshold, 0),
            schedule_delay=max(self.schedule_delay, 0.0),
            startup_delay=max(self.startup_delay, 0.0),
        )


@dataclass(frozen=True)
class MutationEvent:
    """A ``mutationEvent``: its time, whether it is a mutation (False: a trigger), ``dirty``."""

    ts: float
    mutation: bool = True
    dirty: bool = False


def mutation_event(now: float, dirty: bool) -> MutationEvent:
    """The event ``DB.Update``'s callback sends; ``dirty`` is ``db.dirty > 0``."""
    return MutationEvent(ts=now, mutation=True, dirty=dirty)


def trigger_event(now: float) -> MutationEvent:
    """The event ``ScheduleAndWait`` sends before it waits for the next collection."""
    return MutationEvent(ts=now, mutation=False, dirty=False)


@dataclass(frozen=True)
class SchedulerState:
    """The variables of ``gcScheduler.run``.

    ``next_collection`` is when the armed timer fires (None: no timer); ``last_collection``
    when the last collection ended; ``interval`` the tick period (starts at 1 s);
    ``gc_time_ns`` the summed pauses in nanoseconds (Go's ``time.Duration``).
    """

    next_collection: float | None = None
    last_collection: float | None = None
    interval: float = 1.0
    gc_time_ns: int = 0
    collections: int = 0
    triggered: bool = False
    deletions: int = 0
    mutations: int = 0


class TickDecision(NamedTuple):
    """What a timer tick decided: the new state, and whether to collect now."""

    state: SchedulerState
    collect: bool


def start(config: SchedulerConfig, now: float) -> SchedulerState:
    """The state when the scheduler starts: the first tick at ``startup_delay`` if positive.

    Raises:
        TypeError: ``config`` is not a :class:`SchedulerConfig`.
    """
    if not isinstance(config, SchedulerConfig):
        raise TypeError(f"start needs a SchedulerConfig, got {type(config).__name__}")
    config = config.normalized()
    if config.startup_delay > 0:
        return SchedulerState(next_collection=now + config.startup_delay)
    return SchedulerState()


def _wants_immediate(config: SchedulerConfig, state: SchedulerState) -> bool:
    """``run``'s check whether an event should schedule a collection now."""
    if state.triggered:
        return True
    if config.deletion_threshold > 0 and state.deletions >= config.deletion_threshold:
        return True
    if state.next_collection is not None:
        return False
    return (config.deletion_threshold == 0 and state.deletions > 0) or (
        config.mutation_threshold > 0 and state.mutations >= config.mutation_threshold
    )


def on_event(
    config: SchedulerConfig, state: SchedulerState, event: MutationEvent, now: float
) -> SchedulerState:
    """Handle one mutation or trigger event received at ``now``.

    An event stamped before the last collection ended is dropped.  A dirty event counts a
    deletion, a mutation counts a mutation, a trigger sets ``triggered``.  A collection is
    then scheduled ``schedule_delay`` from now if the event asks for one (a trigger; the
    deletion threshold; before any timer is armed, any deletion when the deletion threshold
    is 0, or the mutation threshold) and no tick is due sooner.
    """
    config = config.normalized()
    if state.last_collection is not None and state.last_collection > event.ts:
        return state
    state = replace(
        state,
        deletions=state.deletions + (1 if event.dirty else 0),
        mutations=state.mutations + (1 if event.mutation else 0),
        triggered=state.triggered or not event.mutation,
    )
    if not _wants_immediate(config, state):
        return state
    due = now + config.schedule_delay
    if state.next_collection is None or state.next_collection > due:
        return replace(state, next_collection=due)
    return state


def on_tick(config: SchedulerConfig, state: SchedulerState, now: float) -> TickDecision:
    """The timer fired at ``now``: collect, or re-arm ``interval`` later and skip.

    A tick is skipped when nothing asked for a collection: not triggered, a collection has
    already run, no deletion since, and fewer mutations than the threshold (or no threshold).
    """
    config = config.normalized()
    skip = (
        not state.triggered
        and state.last_collection is not None
        and state.deletions == 0
        and (config.mutation_threshold == 0 or state.mutations < config.mutation_threshold)
    )
    if skip:
        return TickDecision(replace(state, next_collection=now + state.interval), False)
    return TickDecision(state, True)


def on_collected(
    config: SchedulerConfig, state: SchedulerState, now: float, pause: float
) -> SchedulerState:
    """A collection ended at ``now`` after a metadata pause of ``pause`` seconds.

    Counters reset; with a positive pause threshold the interval becomes the average pause
    divided by the threshold, minus the average (about 49 pauses at 0.02); the next tick is
    armed one interval from now.

    Raises:
        ValueError: ``pause`` is negative.
    """
    if pause < 0:
        raise ValueError(f"a collection's pause cannot be negative, got {pause!r}")
    config = config.normalized()
    gc_time_ns = state.gc_time_ns + round(pause * _NS)
    collections = state.collections + 1
    interval = state.interval
    if config.pause_threshold > 0.0:
        avg = gc_time_ns / collections
        # time.Duration(avg/threshold - avg) truncates to whole nanoseconds.
        interval = int(avg / config.pause_threshold - avg) / _NS
    return SchedulerState(
        next_collection=now + interval,
        last_collection=now,
        interval=interval,
        gc_time_ns=gc_time_ns,
        collections=collections,
    )
