"""The garbage collector as a simulated process.

Built on the synchronous steps of :mod:`unpacksim.model.gc` and the scheduler decisions of
:mod:`unpacksim.model.gc_scheduler`, in simulated time:

- :meth:`GCProcess.collect` is ``DB.GarbageCollect`` (``metadata/db.go``): take the metadata
  write lock exclusively, mark, sweep the metadata, release the lock, then sweep each dirty
  backend in its own goroutine under that store's own lock held exclusively (``s.l`` of the
  metadata snapshotter, ``cs.l`` of the content store), and wait for them.  Each phase takes
  simulated time (the latency model's ``gc.mark``, ``gc.sweep_metadata``,
  ``gc.sweep_backend``), so other processes run between the phases: a Prepare can land
  between the metadata sweep and the backend sweep, as in containerd.
- the scheduler loop (``gc/scheduler/scheduler.go`` ``run``) is a daemon goroutine: mutation
  callbacks (``DB.Update``) and triggers are its events, its timer ticks at
  ``next_collection``.  Ticks that would be skipped while nothing happens are not simulated
  one by one: the loop sleeps until the next event and resumes on the same tick grid, which
  decides exactly as ticking would and lets a run with blocked processes end as a deadlock.
- :meth:`GCProcess.schedule_and_wait` is ``ScheduleAndWait`` (``SynchronousDelete`` of leases
  and images): a waiter that arrives during a collection waits for the next one, because
  containerd holds the waiter lock while it collects.
- fault site ``gc.run`` (a hooked effect site of :class:`~unpacksim.sim.services.Services`):
  when a plan fires it at a service call or gap, a collection starts right there.

Without a :class:`~unpacksim.model.gc_scheduler.SchedulerConfig` (``config=None``, "manual")
mutations do not schedule anything: collections happen only through :meth:`collect`,
:meth:`schedule_and_wait` and ``gc.run``.

Every collection is traced (``gc.collect`` with nested ``gc.mark``, ``gc.sweep_metadata`` and
one ``gc.sweep_backend`` per backend) and recorded in :attr:`GCProcess.collections`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TypeVar

import simpy

from unpacksim.model import gc as model_gc
from unpacksim.model.db import DB
from unpacksim.model.gc_scheduler import (
    MutationEvent,
    SchedulerConfig,
    SchedulerState,
    mutation_event,
    on_collected,
    on_event,
    on_tick,
    start,
    trigger_event,
)
from unpacksim.sim.context import Context
from unpacksim.sim.env import Environment, Wait
from unpacksim.sim.go import Gen, Mutex, RWLock, WaitGroup, go
from unpacksim.sim.services import Services

__all__ = ["MIN_PAUSE", "CollectionRecord", "GCProcess"]

T = TypeVar("T")

#: The smallest pause a collection reports to the scheduler: a zero pause gives a zero tick
#: interval, and a simulated scheduler would then tick forever at one instant.
MIN_PAUSE = 1e-6


@dataclass(frozen=True)
class CollectionRecord:
    """One collection: why it ran, its times, and what the model's steps did.

    ``started`` is when the write lock was taken; ``pause`` is how long it was held
    (``GCStats.MetaD``, what the scheduler averages); ``ended`` is when the backend sweeps
    finished.
    """

    reason: str
    started: float
    metadata_done: float
    ended: float
    collection: model_gc.Collection

    @property
    def pause(self) -> float:
        return self.metadata_done - self.started


class GCProcess:
    """The GC of one simulated daemon (see the module docstring).

    Args:
        env: the environment.
        db: the metadata database.
        services: the run's services (write lock, latency model, hooks).
        content_lock: the content store's ``cs.l``.
        snapshot_locks: each metadata snapshotter's ``s.l``, by snapshotter name.
        config: the scheduler configuration; None for manual collections only.
    """

    def __init__(
        self,
        env: Environment,
        db: DB,
        services: Services,
        *,
        content_lock: RWLock,
        snapshot_locks: Mapping[str, RWLock],
        config: SchedulerConfig | None = None,
    ) -> None:
        self.env = env
        self.db = db
        self.services = services
        self.content_lock = content_lock
        self.snapshot_locks = dict(snapshot_locks)
        self.config = config.normalized() if config is not None else None
        self.state: SchedulerState = start(self.config or SchedulerConfig(startup_delay=0), 0.0)
        self.collections: list[CollectionRecord] = []
        self._events: list[MutationEvent] = []
        self._wake: Wait | None = None
        self._mutex = Mutex(env, "gc.collection")
        self._collecting = False
        self._waiters: list[Wait] = []
        self._idle: list[Wait] = []
        self._started = False

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the scheduler loop (a daemon goroutine) and hook the ``gc.run`` site.

        Raises:
            RuntimeError: started twice.
        """
        if self._started:
            raise RuntimeError("GCProcess.start() was already called for this process")
        self._started = True
        if self.config is not None:
            self.state = start(self.config, float(self.env.now))
            self.db.listeners.append(self._on_mutation)
        self.services.add_hook("gc.run", self._on_fault)
        go(self.env, self._loop(), name="gc.scheduler", daemon=True)

    def _on_mutation(self, dirty: bool) -> None:
        # DB.Update's callback: a goroutine sends the event to the loop.
        self._post(mutation_event(float(self.env.now), dirty))

    def _on_fault(self, ctx: Context, op: str) -> None:
        go(self.env, self.collect(f"fault at {op}"), name="gc.run")

    def _post(self, event: MutationEvent) -> None:
        self._events.append(event)
        self._notify()

    def _notify(self) -> None:
        if self._wake is not None and not self._wake.triggered:
            self._wake.succeed()

    # --- one collection ------------------------------------------------------------------

    def collect(self, reason: str = "manual") -> Gen[CollectionRecord]:
        """Run one collection (``DB.GarbageCollect``); returns its record.

        Collections do not overlap: one that is asked for while another runs starts after it.
        Waiters of :meth:`schedule_and_wait` registered before it started are released at its
        end.
        """
        yield from self._mutex.lock()
        self._collecting = True
        waiters, self._waiters = self._waiters, []
        try:
            record = yield from self._phases(reason)
        finally:
            self._collecting = False
            self._mutex.unlock()
        self.collections.append(record)
        self._scheduled(record)
        for waiter in waiters:
            waiter.succeed(record)
        idle, self._idle = self._idle, []
        for event in idle:
            event.succeed()
        return record

    def _phases(self, reason: str) -> Gen[CollectionRecord]:
        env, trace, db = self.env, self.env.trace, self.db
        call = trace.invoke("gc.collect", {"reason": reason})
        lock = self.services.lock
        yield from lock.lock()
        started = float(env.now)  # GarbageCollect's t1: once the write lock is held
        try:
            marked = yield from self._step("gc.mark", lambda: model_gc.mark(db), {})
            metadata = yield from self._step(
                "gc.sweep_metadata", lambda: model_gc.sweep_metadata(db, marked), {}
            )
        finally:
            lock.unlock()
        metadata_done = float(env.now)
        backends = yield from self._sweep_backends(metadata.targets)
        trace.complete(call)
        collection = model_gc.Collection(marked=marked, metadata=metadata, backends=backends)
        return CollectionRecord(reason, started, metadata_done, float(env.now), collection)

    def _step(self, op: str, fn: Callable[[], T], args: Mapping[str, object]) -> Gen[T]:
        trace = self.env.trace
        call = trace.invoke(op, args)
        yield self.env.timeout(self.services.latency.draw(self.env.chooser, op))
        result = fn()
        trace.complete(call)
        return result

    def _sweep_backends(self, targets: model_gc.BackendTargets) -> Gen[model_gc.SweepReport]:
        # containerd starts one goroutine per dirty backend and waits for them all.
        reports: dict[str, model_gc.SweepReport] = {}
        group = WaitGroup(self.env)
        for name in targets.snapshotters:
            group.add(1)
            go(self.env, self._sweep_snapshots(name, reports, group), name=f"gc.sweep.{name}")
        if targets.content:
            group.add(1)
            go(self.env, self._sweep_content(reports, group), name="gc.sweep.content")
        yield from group.wait()
        report = model_gc.SweepReport(targets=targets)
        for name in [*targets.snapshotters, *(["content"] if targets.content else [])]:
            report = report.merged(reports[name])
        return report

    def _sweep_snapshots(
        self, name: str, reports: dict[str, model_gc.SweepReport], group: WaitGroup
    ) -> Gen[None]:
        lock = self.snapshot_locks.get(name)
        try:
            if lock is not None:
                yield from lock.lock()
            try:
                reports[name] = yield from self._step(
                    "gc.sweep_backend",
                    lambda: model_gc.sweep_snapshot_backend(self.db, name),
                    {"backend": f"snapshots/{name}"},
                )
            finally:
                if lock is not None:
                    lock.unlock()
        finally:
            group.done()

    def _sweep_content(
        self, reports: dict[str, model_gc.SweepReport], group: WaitGroup
    ) -> Gen[None]:
        try:
            yield from self.content_lock.lock()
            try:
                reports["content"] = yield from self._step(
                    "gc.sweep_backend",
                    lambda: model_gc.sweep_content_backend(self.db),
                    {"backend": "content"},
                )
            finally:
                self.content_lock.unlock()
        finally:
            group.done()

    def _scheduled(self, record: CollectionRecord) -> None:
        """The scheduler's bookkeeping after a collection (``on_collected``)."""
        pause = max(record.pause, MIN_PAUSE)
        config = self.config or SchedulerConfig()
        state = on_collected(config, self.state, float(self.env.now), pause)
        if self.config is None:
            state = replace(state, next_collection=None)
        self.state = state
        self._notify()

    # --- ScheduleAndWait -----------------------------------------------------------------

    def schedule_and_wait(self, ctx: Context) -> Gen[CollectionRecord]:
        """``ScheduleAndWait``: trigger a collection and wait until the next one ends.

        Raises:
            Canceled, DeadlineExceeded: ``ctx`` was done before the collection ended.
        """
        while self._collecting:
            # containerd's waiter lock is held during a collection.
            idle = Wait(self.env, "gc collection in progress")
            self._idle.append(idle)
            yield idle
        waiter = Wait(self.env, "gc.schedule_and_wait")
        self._waiters.append(waiter)
        self._post(trigger_event(float(self.env.now)))
        yield simpy.AnyOf(self.env, [waiter, ctx.done])
        if not waiter.triggered:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            raise ctx.error()
        record = waiter.value
        assert isinstance(record, CollectionRecord)
        return record

    # --- the scheduler loop --------------------------------------------------------------

    def _loop(self) -> Gen[None]:
        env = self.env
        while True:
            self._drain_events()
            due = self.state.next_collection
            now = float(env.now)
            if due is not None and due <= now:
                decision = on_tick(self.config or SchedulerConfig(), self.state, now)
                self.state = decision.state
                if decision.collect:
                    yield from self.collect("trigger" if self.state.triggered else "tick")
                continue
            yield from self._wait_for_work(due)

    def _drain_events(self) -> None:
        config = self.config or SchedulerConfig()
        while self._events:
            event = self._events.pop(0)
            if self.config is None and event.mutation:
                continue  # manual: only triggers count
            self.state = on_event(config, self.state, event, float(self.env.now))

    def _wait_for_work(self, due: float | None) -> Gen[None]:
        """Sleep until the next tick or event; skip ticks that would change nothing."""
        env = self.env
        self._wake = Wait(env, "gc scheduler: next event or tick")
        if due is None or self._tick_would_skip():
            yield self._wake
            self._wake = None
            self._fast_forward()
            return
        timer = env.timeout(due - float(env.now))
        yield simpy.AnyOf(env, [self._wake, timer])
        self._wake = None
        if not timer.processed:
            env.unschedule(timer)

    def _tick_would_skip(self) -> bool:
        state, config = self.state, self.config or SchedulerConfig()
        return (
            not state.triggered
            and state.last_collection is not None
            and state.deletions == 0
            and (config.mutation_threshold == 0 or state.mutations < config.mutation_threshold)
        )

    def _fast_forward(self) -> None:
        """Move a stale tick time onto the first grid tick at or after now."""
        due, interval = self.state.next_collection, self.state.interval
        now = float(self.env.now)
        if due is None or due >= now or interval <= 0:
            return
        steps = math.ceil((now - due) / interval)
        self.state = replace(self.state, next_collection=due + steps * interval)
