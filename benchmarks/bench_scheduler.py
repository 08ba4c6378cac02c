"""The controlled scheduler against stock SimPy on the same workloads, in one run.

Each workload is plain SimPy code (timeouts, events, processes), so it runs unchanged on
``simpy.Environment`` and on :class:`unpacksim.sim.env.Environment`.  Events per second are
the events scheduled (SimPy's event counter, the same on both) divided by the best wall time
of a few repeats; the ratio is controlled / stock (higher is better; the target is >= 0.6).

Workloads:

- ``ties``: processes sleeping 1, 2 or 3 time units in turn, so most instants have many ready
  events and the chooser is consulted at almost every step;
- ``distinct``: processes whose wake-up times never coincide, so the chooser is never
  consulted (the hot path's overhead alone);
- ``handoff``: producer/consumer pairs handing values over through triggered events at the
  same instant (process resumptions, as channels and locks cause).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import Any

import simpy

from unpacksim.sim.choose import FifoChooser, RandomChooser
from unpacksim.sim.env import Environment

Workload = Callable[[simpy.Environment, int], None]


def ties(env: simpy.Environment, size: int) -> None:
    def sleeper(i: int) -> Generator[simpy.Event, Any, None]:
        for step in range(size):
            yield env.timeout(1 + (i + step) % 3)

    for i in range(100):
        env.process(sleeper(i))


def distinct(env: simpy.Environment, size: int) -> None:
    def sleeper(i: int) -> Generator[simpy.Event, Any, None]:
        delay = 1.0 + i / 1000.0 + 1e-7 * i * i
        for _ in range(size):
            yield env.timeout(delay)

    for i in range(100):
        env.process(sleeper(i))


def handoff(env: simpy.Environment, size: int) -> None:
    def pair() -> None:
        box: list[simpy.Event] = [env.event()]

        def producer() -> Generator[simpy.Event, Any, None]:
            for n in range(size):
                yield env.timeout(1)
                box[0].succeed(n)

        def consumer() -> Generator[simpy.Event, Any, None]:
            for _ in range(size):
                yield box[0]
                box[0] = env.event()

        env.process(producer())
        env.process(consumer())

    for _ in range(50):
        pair()


WORKLOADS: dict[str, Workload] = {"ties": ties, "distinct": distinct, "handoff": handoff}


def _measure(make: Callable[[], simpy.Environment], workload: Workload, size: int) -> float:
    """Events per second, best of three."""
    best = float("inf")
    events = 0
    for _ in range(3):
        env = make()
        workload(env, size)
        start = time.perf_counter()
        env.run()
        best = min(best, time.perf_counter() - start)
        events = next(env._eid)
    return events / best


def run(quick: bool) -> str:
    """Measure every workload on stock SimPy and on the controlled environment."""
    size = 20 if quick else 400
    makers: dict[str, Callable[[], simpy.Environment]] = {
        "stock SimPy": simpy.Environment,
        "controlled, FIFO": lambda: Environment(FifoChooser()),
        "controlled, random": lambda: Environment(RandomChooser(1)),
    }
    lines = [
        f"size {size} steps per process (quick={quick}); events/s, best of 3",
        "",
        "| workload | stock SimPy | controlled FIFO | ratio | controlled random | ratio |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, workload in WORKLOADS.items():
        rates = {label: _measure(make, workload, size) for label, make in makers.items()}
        stock = rates["stock SimPy"]
        fifo, rand = rates["controlled, FIFO"], rates["controlled, random"]
        lines.append(
            f"| {name} | {stock:,.0f} | {fifo:,.0f} | {fifo / stock:.2f} "
            f"| {rand:,.0f} | {rand / stock:.2f} |"
        )
    return "\n".join(lines)
