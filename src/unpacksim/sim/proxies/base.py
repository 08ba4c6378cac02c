"""The call shapes every proxy shares: a read, and a write under the metadata write lock."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from unpacksim.sim.context import Context
from unpacksim.sim.go import Gen, RWLock
from unpacksim.sim.services import Services

__all__ = ["Proxy", "SyncCollector"]

T = TypeVar("T")


class SyncCollector(Protocol):
    """What a synchronous delete needs from the GC (``unpacksim.sim.gcproc.GCProcess``)."""

    def schedule_and_wait(self, ctx: Context) -> Gen[Any]:
        """Trigger a collection and wait until one ends (``ScheduleAndWait``)."""
        ...


class Proxy:
    """The shared call shapes: a read, and a write that holds the write lock shared."""

    def __init__(self, services: Services) -> None:
        self.services = services

    def _read(
        self,
        ctx: Context,
        op: str,
        fn: Callable[[], T],
        args: Mapping[str, object],
        **site: Any,
    ) -> Gen[T]:
        return self.services.call(ctx, op, fn, args=args, **site)

    def _write(
        self,
        ctx: Context,
        op: str,
        fn: Callable[[], T],
        args: Mapping[str, object],
        *,
        store_lock: RWLock | None = None,
        **site: Any,
    ) -> Gen[T]:
        """A metadata write; ``store_lock`` (``s.l`` / ``cs.l``) is held shared around it."""
        if store_lock is None:
            return self.services.call(ctx, op, fn, args=args, write=True, **site)

        def body() -> Gen[T]:
            yield from store_lock.rlock()
            try:
                return (yield from self.services.atomic(fn, write=True))
            finally:
                store_lock.runlock()

        return self.services.call_steps(ctx, op, body, args=args, **site)
