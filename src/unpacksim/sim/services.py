"""Timed services: one model operation as a simulated, traced, fault-checked call.

:meth:`Services.call` turns an atomic model operation (one containerd metadata transaction,
one backend call) into what a containerd client sees over gRPC::

    info = yield from services.call(
        ctx, "content.info", lambda: store.info(ctx, dgst), args={"digest": dgst}
    )

1. the trace records ``invoke``;
2. the call takes simulated time, drawn from the :class:`LatencyModel` for ``op`` through the
   chooser: a scheduling point, where other processes may run;
3. effect sites fire here (``ctx.cancel``: the caller gives up; hooked sites such as
   ``gc.run``); if one did, a further scheduling point lets its work start first;
4. if ``ctx`` is done the call raises its error, as a gRPC call on a cancelled context does;
5. the fault plan is consulted for ``site`` (an injected errdefs error is raised);
6. ``fn()`` runs atomically, holding the metadata write lock shared if ``write=True``
   (bolt's ``DB.wlock``: writes take it shared, GC's mark and sweep take it exclusive,
   ``metadata/db.go``);
7. the trace records ``complete`` with the outcome.

Operations containerd does not perform atomically are written with :meth:`Services.call_steps`,
whose body runs :meth:`Services.atomic` steps separated by :meth:`Services.gap` scheduling
points (the metadata snapshotter's create is transaction, backend call, transaction).
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any, TypeVar

import simpy

from unpacksim.model.errdefs import Canceled
from unpacksim.sim.choose import Chooser, choose_value
from unpacksim.sim.context import Context
from unpacksim.sim.env import Environment
from unpacksim.sim.errors import SimUsageError
from unpacksim.sim.go import RWLock
from unpacksim.sim.trace import INDETERMINATE

__all__ = ["Hook", "LatencyModel", "RWLock", "Services"]

T = TypeVar("T")
Gen = Generator[simpy.Event, Any, T]
#: An effect site's action: ``hook(ctx, op)`` runs when the site fires at a call of ``op``.
Hook = Callable[[Context, str], None]


class LatencyModel:
    """Latency candidates per operation kind, in simulated seconds.

    ``table`` maps an operation (``"content.info"``) or a dotted prefix of one
    (``"content"``) to the candidate latencies; the longest matching entry wins, else
    ``default``.  The chooser picks one candidate per call (``kind="latency:<op>"``); the
    first is the nominal latency and the shrunk answer.  A single candidate costs no decision.
    """

    def __init__(
        self,
        table: Mapping[str, Sequence[float]] | None = None,
        default: Sequence[float] = (0.001,),
    ) -> None:
        self.table = {op: self._checked(op, values) for op, values in (table or {}).items()}
        self.default = self._checked("default", default)
        self._cache: dict[str, tuple[float, ...]] = {}

    @staticmethod
    def _checked(op: str, values: Sequence[float]) -> tuple[float, ...]:
        result = tuple(float(v) for v in values)
        if not result or any(v < 0 for v in result):
            raise SimUsageError(
                f"latency for {op!r} must be a non-empty list of non-negative seconds, "
                f"got {values!r}"
            )
        return result

    @classmethod
    def zero(cls) -> LatencyModel:
        """Every call takes no time (still a scheduling point)."""
        return cls(default=(0.0,))

    def candidates(self, op: str) -> tuple[float, ...]:
        """The candidate latencies of ``op``."""
        found = self._cache.get(op)
        if found is None:
            found = self.default
            name = op
            while name:
                if name in self.table:
                    found = self.table[name]
                    break
                name = name.rpartition(".")[0]
            self._cache[op] = found
        return found

    def draw(self, chooser: Chooser, op: str) -> float:
        """One latency for a call of ``op``, through ``chooser``."""
        return choose_value(chooser, self.candidates(op), f"latency:{op}")


class Services:
    """The run's timed service layer: latency, scheduling points, faults, trace, write lock.

    Attributes:
        env: the environment.
        latency: the :class:`LatencyModel`.
        lock: the metadata write lock (:class:`~unpacksim.sim.go.RWLock`), which a GC
            process takes exclusively with ``yield from services.lock.lock()``.
    """

    def __init__(
        self,
        env: Environment,
        *,
        latency: LatencyModel | None = None,
        lock: RWLock | None = None,
    ) -> None:
        self.env = env
        self.latency = latency if latency is not None else LatencyModel()
        self.lock = lock if lock is not None else RWLock(env, "metadata.wlock")
        self._hooks: dict[str, Hook] = {}

    def add_hook(self, site: str, hook: Hook) -> None:
        """Check effect site ``site`` at every call and gap; run ``hook(ctx, op)`` if it fires.

        Raises:
            SimUsageError: the site is unknown, is an error site, or already has a hook.
        """
        from unpacksim.sim.faults import get_site

        spec = get_site(site)
        if spec.is_error_site or site == "ctx.cancel":
            raise SimUsageError(f"{site!r} is not an effect site a hook can perform")
        if site in self._hooks:
            raise SimUsageError(f"effect site {site!r} already has a hook")
        self._hooks[site] = hook

    def call(
        self,
        ctx: Context,
        op: str,
        fn: Callable[[], T],
        *,
        args: Mapping[str, object] | None = None,
        site: str | None = None,
        key: str = "",
        detail: str = "",
        write: bool = False,
    ) -> Gen[T]:
        """Run the atomic ``fn()`` as the simulated call ``op`` (see the module docstring).

        ``site``/``key``/``detail`` are passed to ``env.faults.check`` before ``fn`` runs.

        Raises:
            Canceled, DeadlineExceeded: ``ctx`` was done when the call reached the service.
            ContainerdError: injected at ``site``, or raised by ``fn``.
        """

        def body() -> Gen[T]:
            return (yield from self.atomic(fn, write=write))

        return self.call_steps(ctx, op, body, args=args, site=site, key=key, detail=detail)

    def call_steps(
        self,
        ctx: Context,
        op: str,
        body: Callable[[], Gen[T]],
        *,
        args: Mapping[str, object] | None = None,
        site: str | None = None,
        key: str = "",
        detail: str = "",
    ) -> Gen[T]:
        """Like :meth:`call`, for an operation made of several atomic steps.

        ``body()`` is a generator that runs its steps with ``yield from services.atomic(...)``
        and marks the gaps between them with ``yield from services.gap(ctx, op)``.
        """
        trace = self.env.trace
        call = trace.invoke(op, args)
        try:
            yield self.env.timeout(self.latency.draw(self.env.chooser, op))
            yield from self._effects(ctx, op)
            if ctx.err is not None:
                raise ctx.error()
            if site is not None:
                self.env.faults.check(site, key=key, detail=detail)
            result = yield from body()
        except GeneratorExit:  # the process was closed mid-call: nobody knows the outcome
            if trace.is_open(call):
                trace.complete(call, INDETERMINATE)
            raise
        except BaseException as exc:
            trace.complete_error(call, exc)
            raise
        trace.complete(call)
        return result

    def atomic(self, fn: Callable[[], T], *, write: bool = False) -> Gen[T]:
        """Run ``fn()`` in one step, holding the write lock shared if ``write``."""
        if not write:
            return fn()
        yield from self.lock.rlock()
        try:
            return fn()
        finally:
            self.lock.runlock()

    def gap(self, ctx: Context, op: str) -> Gen[None]:
        """A scheduling point inside a non-atomic operation (effect sites fire here too)."""
        yield self.env.timeout(0)
        yield from self._effects(ctx, f"{op}.gap")

    def _effects(self, ctx: Context, op: str) -> Gen[None]:
        faults = self.env.faults
        fired = False
        if ctx.cancellable and ctx.err is None and faults.check("ctx.cancel", key=op):
            ctx.cancel_root(Canceled("injected at ctx.cancel", injected=True))
        for site, hook in self._hooks.items():
            if faults.check(site, key=op):
                hook(ctx, op)
                fired = True
        if fired:
            yield self.env.timeout(0)
