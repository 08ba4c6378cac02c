"""A mixed simulation used by the determinism tests (loaded by path, also in subprocesses).

Goroutines, an errgroup, a semaphore, channels with select, a keyed mutex, timed service calls
with latency choices, an exploring fault plan and a deadline: every source of choice the sim
has, all driven by one seeded random chooser.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import simpy

from unpacksim.model.errdefs import ContainerdError
from unpacksim.sim.chan import Channel, Recv, select
from unpacksim.sim.choose import RandomChooser
from unpacksim.sim.context import Context, background
from unpacksim.sim.env import Environment
from unpacksim.sim.faults import FaultPlan
from unpacksim.sim.go import ErrGroup, KeyedMutex, Semaphore, go
from unpacksim.sim.run import run
from unpacksim.sim.services import LatencyModel, Services

Gen = Generator[simpy.Event, Any, None]
SITES = ["fetch.error", "snapshots.prepare.exists", "ctx.cancel"]


def run_mixed(seed: int) -> str:
    """Run the scenario under ``RandomChooser(seed)``; return the trace's JSON Lines."""
    env = Environment(RandomChooser(seed), faults=FaultPlan.exploring(SITES, fire_one_in=4))
    latency = LatencyModel({"fetch": [0.01, 0.02, 0.05], "snapshots": [0.001, 0.002]})
    services = Services(env, latency=latency)
    limiter = Semaphore(env, 2)
    locks = KeyedMutex(env)
    state: dict[str, str] = {}
    root, cancel = background(env, "k8s.io").with_timeout(5.0)

    def layer(ctx: Context, i: int, done: Channel) -> Gen:
        digest = f"sha256:{i:064x}"
        yield from limiter.acquire(ctx, 1)
        try:
            yield from services.call(
                ctx,
                "fetch.blob",
                lambda: None,
                args={"digest": digest, "tags": {"b", "a"}},
                site="fetch.error",
                key=digest,
            )
        finally:
            limiter.release(1)
        chain = f"chain-{i % 3}"
        yield from locks.lock(ctx, chain)
        try:
            yield from services.call(
                ctx,
                "snapshots.prepare",
                lambda: state.setdefault(chain, digest),
                args={"chain": chain},
                site="snapshots.prepare.exists",
                key=chain,
                write=True,
            )
        finally:
            locks.unlock(chain)
        done.close()

    def pull(name: str, count: int) -> Gen:
        group, ctx = ErrGroup.with_context(root.with_lease(name))
        done = [Channel(env, name=f"{name}/done{i}") for i in range(count)]

        def task(i: int) -> Callable[[], Gen]:
            return lambda: layer(ctx, i, done[i])

        for i in range(count):
            group.go(task(i), name=f"{name}/layer")
        for ch in done:
            yield from select(ctx, [Recv(ch)])
        err = yield from group.wait()
        try:
            yield from services.call(
                root, "images.create", lambda: None, args={"name": name, "error": str(err)}
            )
        except ContainerdError:
            return  # the pull failed; its trace says how

    for name, count in (("pull-a", 4), ("pull-b", 3), ("pull-c", 2)):
        go(env, pull(name, count), name=name)
    outcome = run(env, max_steps=10_000)
    cancel()
    assert outcome.name == "completed", outcome.describe()
    return env.trace.jsonl()
