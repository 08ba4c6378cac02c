"""Driving pulls in a World: start them as goroutines, run, read the records.

::

    world = World.create(**resolve("v1.6").world_options)
    world.push(build_image("registry.test/app:1", [{"a": b"1"}]))
    handle = start_pull(world, "v1.6", "registry.test/app:1")
    outcome = world.run()
    assert handle.result is not None and handle.result.ok

:func:`pull_images` does the same for several pulls at once and checks the run ended well.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

from unpacksim.sim.context import Context
from unpacksim.sim.run import RunOutcome
from unpacksim.unpack.interface import Implementation, resolve, run_pull
from unpacksim.unpack.results import PullOptions, PullResult
from unpacksim.unpack.world import World

__all__ = [
    "Intercept",
    "PullHandle",
    "PullRunError",
    "intercept",
    "pull_images",
    "start_pull",
    "world_for",
]


class PullRunError(AssertionError):
    """A driven run did not end with every pull returning (a deadlock, a failure, a bound)."""


@dataclass
class PullHandle:
    """A pull started by :func:`start_pull`; ``result`` is set when it returns."""

    implementation: Implementation
    ref: str
    name: str
    result: PullResult | None = field(default=None)


def world_for(implementation: str | Implementation, **kwargs: Any) -> World:
    """``World.create`` with the implementation's ``world_options`` (``kwargs`` win).

    Raises:
        ImplementationError: ``implementation`` does not resolve or conform.
    """
    options = {**resolve(implementation).world_options, **kwargs}
    return World.create(**options)


def start_pull(
    world: World,
    implementation: str | Implementation,
    ref: str,
    opts: PullOptions | None = None,
    *,
    ctx: Context | None = None,
    name: str | None = None,
    delay: float = 0.0,
) -> PullHandle:
    """Start a pull of ``ref`` as a goroutine of ``world`` (after ``delay`` simulated s).

    Raises:
        ImplementationError: ``implementation`` does not resolve or conform.
    """
    impl = resolve(implementation)
    handle = PullHandle(impl, ref, name or f"pull {ref}")
    pull_ctx = ctx if ctx is not None else world.context()

    def body() -> Generator[Any, Any, None]:
        if delay:
            yield world.env.timeout(delay)
        handle.result = yield from run_pull(impl, world, pull_ctx, ref, opts)

    world.go(body(), name=handle.name)
    return handle


def pull_images(
    world: World,
    implementation: str | Implementation,
    refs: Sequence[str],
    opts: PullOptions | None = None,
    *,
    max_steps: int | None = None,
) -> tuple[list[PullResult], RunOutcome]:
    """Pull every ref concurrently, run the world, return the results in ``refs`` order.

    Raises:
        PullRunError: the run ended without every pull returning (the message says how).
    """
    handles = [
        start_pull(world, implementation, ref, opts, name=f"pull#{i} {ref}")
        for i, ref in enumerate(refs)
    ]
    outcome = world.run(max_steps=max_steps)
    results = [h.result for h in handles]
    if any(r is None for r in results) or outcome.failures:
        raise PullRunError(f"the pulls did not all return: {outcome.describe()}")
    return [r for r in results if r is not None], outcome


# --- interception: another client acting right before a call -------------------------------

#: What a hook may return: nothing, or a generator to run (``yield from``) before the call.
HookResult = Generator[Any, Any, None] | None


class Intercept:
    """A proxy wrapper that runs ``before[method](*args, **kwargs)`` before each call.

    A hook models another client acting at exactly that point (committing a snapshot,
    deleting a lease or an image, running GC), or the service failing there (it raises).  A
    hook may be a generator function; it then runs with ``yield from`` (it can wait).
    ``calls[method]`` counts the calls made through the wrapper.  Other attributes pass
    through unchanged.  Install one with :func:`intercept`.
    """

    def __init__(self, target: object, **before: Callable[..., HookResult]) -> None:
        self.target = target
        self.before = before
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.target, name)
        hook = self.before.get(name)
        if hook is None or not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Generator[Any, Any, Any]:
            self.calls[name] = self.calls.get(name, 0) + 1
            found = hook(*args, **kwargs)
            if isinstance(found, Generator):
                yield from found
            return (yield from attr(*args, **kwargs))

        return call


_PARTS = ("content", "leases", "images", "registry", "applier")


def intercept(world: World, part: str, **before: Callable[..., HookResult]) -> Intercept:
    """Wrap one part of ``world`` in an :class:`Intercept` and install it; return it.

    ``part`` is ``content``, ``leases``, ``images``, ``registry``, ``applier`` or
    ``snapshotter:<name>``.

    Raises:
        ValueError: an unknown part.
    """
    if part.startswith("snapshotter:"):
        name = part.partition(":")[2]
        wrapper = Intercept(world.snapshotter(name), **before)
        world.snapshotters[name] = wrapper  # type: ignore[assignment]
        return wrapper
    if part not in _PARTS:
        raise ValueError(
            f"cannot intercept {part!r}: give one of {list(_PARTS)} or 'snapshotter:<name>'"
        )
    wrapper = Intercept(getattr(world, part), **before)
    setattr(world, part, wrapper)
    return wrapper
