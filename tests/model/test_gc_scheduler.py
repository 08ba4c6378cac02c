"""The GC scheduler's decisions, replaying containerd's ``gc/scheduler/scheduler_test.go``
(TestPauseThreshold, TestDeletionThreshold, TestTrigger, TestStartupDelay) in simulated time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from unpacksim.model import gc_scheduler as gs

MS = 0.001
US = 0.000001


@dataclass
class Run:
    """A tiny event loop over the pure transitions: one timer, events, collections."""

    config: gs.SchedulerConfig
    pause: float
    duration: float = 0.0
    state: gs.SchedulerState = field(default_factory=gs.SchedulerState)
    collections: list[float] = field(default_factory=list)

    def play(self, events: list[gs.MutationEvent], until: float) -> None:
        self.state = gs.start(self.config, 0.0)
        pending = sorted(events, key=lambda e: e.ts)
        while True:
            tick = self.state.next_collection
            nxt = pending[0].ts if pending else None
            if nxt is not None and (tick is None or nxt <= tick) and nxt <= until:
                event = pending.pop(0)
                self.state = gs.on_event(self.config, self.state, event, event.ts)
            elif tick is not None and tick <= until:
                self._tick(tick, pending)
            else:
                return

    def _tick(self, now: float, pending: list[gs.MutationEvent]) -> None:
        decision = gs.on_tick(self.config, self.state, now)
        self.state = decision.state
        if not decision.collect:
            return
        self.collections.append(now)
        end = now + self.duration
        self.state = gs.on_collected(self.config, self.state, end, self.pause)
        # events sent while the loop was busy are received after the collection
        while pending and pending[0].ts < end:
            event = pending.pop(0)
            self.state = gs.on_event(self.config, self.state, event, end)


ZERO = gs.SchedulerConfig(0.0, 0, 0, 0.0, 0.0)  # Go's &config{}: every field zero


def test_defaults_are_containerds() -> None:
    assert gs.SchedulerConfig() == gs.SchedulerConfig(0.02, 0, 100, 0.0, 0.1)


def test_pause_threshold_limits_collections() -> None:
    # TestPauseThreshold: 100us pauses at 0.02 collect about every 5ms, at most 4 in 15ms
    config = gs.SchedulerConfig(0.02, 0, 0, 0.0, 0.0)
    run = Run(config, pause=100 * US, duration=100 * US)
    events = [gs.mutation_event(i * 100 * US, dirty=True) for i in range(1, 150)]
    run.play(events, until=15 * MS)
    assert 1 < len(run.collections) <= 4
    assert run.state.interval == pytest.approx(4.9 * MS)


def test_deletion_threshold_collects_at_the_fifth_deletion() -> None:
    # TestDeletionThreshold
    config = gs.SchedulerConfig(0.001, 5, 0, 0.0, 0.0)
    run = Run(config, pause=1.0)
    events = [gs.mutation_event(i * MS, dirty=True) for i in range(1, 5)]
    run.play(events, until=30 * MS)
    assert run.collections == []
    run.play([*events, gs.mutation_event(5 * MS, dirty=True)], until=30 * MS)
    assert run.collections == [5 * MS]


def test_trigger_collects_once() -> None:
    # TestTrigger: ScheduleAndWait with a zero config
    run = Run(ZERO, pause=10 * MS)
    run.play([gs.trigger_event(1 * MS)], until=10 * MS)
    assert run.collections == [1 * MS]
    assert run.state.gc_time_ns == 10_000_000 and run.state.collections == 1


def test_startup_delay_runs_the_first_collection() -> None:
    # TestStartupDelay: one collection at 1ms with no mutation at all
    config = gs.SchedulerConfig(0.001, 0, 0, 0.0, 1 * MS)
    run = Run(config, pause=1.0)
    run.play([], until=30 * MS)
    assert run.collections == [1 * MS]
    assert run.state.interval == pytest.approx(999.0)


def test_default_config_first_deletion_waits_for_startup_tick() -> None:
    run = Run(gs.SchedulerConfig(), pause=1 * MS)
    run.play([gs.mutation_event(10 * MS, dirty=True)], until=1.0)
    assert run.collections == [100 * MS]  # a timer is armed, so no immediate collection


def test_no_startup_delay_first_deletion_collects_immediately() -> None:
    config = gs.SchedulerConfig(startup_delay=0.0)
    run = Run(config, pause=1 * MS)
    run.play([gs.mutation_event(10 * MS, dirty=False), gs.mutation_event(20 * MS, True)], 1.0)
    assert run.collections == [20 * MS]


def test_tick_is_skipped_without_reason_and_rearmed() -> None:
    config = gs.SchedulerConfig()
    state = gs.SchedulerState(next_collection=5.0, last_collection=1.0, interval=2.0)
    decision = gs.on_tick(config, state, 5.0)
    assert not decision.collect and decision.state.next_collection == 7.0
    busy = gs.SchedulerState(next_collection=5.0, last_collection=1.0, mutations=100)
    assert gs.on_tick(config, busy, 5.0).collect  # the mutation threshold was reached
    dirty = gs.SchedulerState(next_collection=5.0, last_collection=1.0, deletions=1)
    assert gs.on_tick(config, dirty, 5.0).collect


def test_events_before_last_collection_are_dropped() -> None:
    config = gs.SchedulerConfig()
    state = gs.SchedulerState(next_collection=9.0, last_collection=5.0)
    assert gs.on_event(config, state, gs.mutation_event(4.9, True), 5.1) == state
    counted = gs.on_event(config, state, gs.mutation_event(5.0, True), 5.1)
    assert counted.deletions == 1 and counted.mutations == 1


def test_trigger_reschedules_only_if_sooner() -> None:
    config = gs.SchedulerConfig(schedule_delay=0.5)
    far = gs.SchedulerState(next_collection=9.0, last_collection=1.0)
    assert gs.on_event(config, far, gs.trigger_event(2.0), 2.0).next_collection == 2.5
    near = gs.SchedulerState(next_collection=2.2, last_collection=1.0)
    after = gs.on_event(config, near, gs.trigger_event(2.0), 2.0)
    assert after.next_collection == 2.2 and after.triggered


def test_collection_resets_counters_and_truncates_interval() -> None:
    config = gs.SchedulerConfig(pause_threshold=0.03)
    state = gs.SchedulerState(triggered=True, deletions=3, mutations=7)
    after = gs.on_collected(config, state, 10.0, 1e-9 * 7)
    assert (after.triggered, after.deletions, after.mutations) == (False, 0, 0)
    assert after.interval == 226e-9  # 7/0.03 - 7 = 226.33ns, truncated
    assert after.last_collection == 10.0 and after.next_collection == 10.0 + 226e-9


def test_config_is_clamped_like_new_scheduler() -> None:
    wild = gs.SchedulerConfig(0.9, 0, -1, -1.0, -1.0).normalized()
    assert wild == gs.SchedulerConfig(0.5, 0, 0, 0.0, 0.0)
    assert gs.start(gs.SchedulerConfig(startup_delay=-3.0), 1.0).next_collection is None


def test_misuse_is_explained() -> None:
    with pytest.raises(TypeError, match="needs a SchedulerConfig"):
        gs.start(None, 0.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pause cannot be negative"):
        gs.on_collected(gs.SchedulerConfig(), gs.SchedulerState(), 1.0, -1.0)
