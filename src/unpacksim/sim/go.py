"""Go's concurrency primitives with Go's semantics, as SimPy generator code.

- :func:`go` starts a named goroutine.  An exception it does not catch is recorded in
  ``env.failures`` and ends :func:`unpacksim.sim.run.run` with the ``failed`` outcome (Go: an
  unrecovered panic); it never escapes ``env.run()`` silently.
- :class:`ErrGroup` is ``golang.org/x/sync/errgroup``: ``with_context`` derives a context
  that the first error cancels; ``wait`` waits for every function and returns that error.
- :class:`Semaphore` is ``golang.org/x/sync/semaphore.Weighted`` (v0.1.0, as Debian builds
  containerd 1.6.20): FIFO waiters, no barging, ``acquire`` honours cancellation.
- :class:`KeyedMutex` is containerd's ``pkg/kmutex``; :class:`Mutex`, :class:`RWLock` and
  :class:`WaitGroup` are ``sync.Mutex``, ``sync.RWMutex`` and ``sync.WaitGroup``.
- :class:`~unpacksim.sim.chan.Channel` and :func:`~unpacksim.sim.chan.select` (re-exported
  here) are channels and ``select``.

Blocking operations are generators used with ``yield from``; errors are raised as Python
exceptions (a context error is ``errdefs.Canceled`` or ``errdefs.DeadlineExceeded``).  An
operation that does not block does not yield, as in Go.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, TypeVar

import simpy

from unpacksim.sim.chan import Channel, Recv, Selected, Send, select
from unpacksim.sim.context import CancelFunc, Context
from unpacksim.sim.env import Environment, Wait
from unpacksim.sim.errors import GoPanic, SimUsageError

__all__ = [
    "Channel",
    "ErrGroup",
    "Gen",
    "KeyedMutex",
    "Mutex",
    "RWLock",
    "Recv",
    "Selected",
    "Semaphore",
    "Send",
    "WaitGroup",
    "go",
    "select",
    "sleep",
]

T = TypeVar("T")
#: A simulated Go function: a generator used with ``yield from`` that returns a ``T``.
Gen = Generator[simpy.Event, Any, T]


def go(
    env: Environment, gen: Generator[simpy.Event, Any, Any], *, name: str, daemon: bool = False
) -> simpy.Process:
    """``go f()``: start ``gen`` as a goroutine called ``name`` (made unique: ``name#2``).

    ``daemon`` goroutines (a GC ticker) do not keep :func:`~unpacksim.sim.run.run` going.
    Do not read the returned process's value; return results through channels or records.
    """
    return env.start(gen, name=name, daemon=daemon, goroutine=True)


def sleep(ctx: Context, seconds: float) -> Gen[bool]:
    """``select { case <-time.After(d): case <-ctx.Done(): }``: True if the time passed.

    Returns False, without raising, when the context is done first (or already).
    """
    if ctx.err is not None:
        return False
    env = ctx.env
    wake = Wait(env, f"sleep({seconds}) or ctx.done")

    def finish(elapsed: bool) -> None:
        if not wake.triggered:
            wake.succeed(elapsed)

    timer = env.timeout(seconds)
    timer.callbacks.append(lambda _: finish(True))
    stop = ctx.after_func(lambda: finish(False))
    elapsed: bool = yield wake
    stop()
    if not elapsed:
        env.unschedule(timer)
    return elapsed


class WaitGroup:
    """``sync.WaitGroup``: ``add``, ``done``, ``yield from wait()``."""

    def __init__(self, env: Environment) -> None:
        self.env = env
        self.count = 0
        self._waiters: list[Wait] = []

    def add(self, delta: int) -> None:
        self.count += delta
        if self.count < 0:
            raise GoPanic("sync: negative WaitGroup counter")
        if self.count == 0:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.succeed()

    def done(self) -> None:
        self.add(-1)

    def wait(self) -> Gen[None]:
        """Block until the counter is zero (returns at once if it is)."""
        if self.count:
            waiter = Wait(self.env, f"WaitGroup.wait (count {self.count})")
            self._waiters.append(waiter)
            yield waiter


class ErrGroup:
    """``golang.org/x/sync/errgroup.Group``.

    ``go(fn, name=...)`` runs ``fn()`` (a generator) as a goroutine; an exception it raises
    is its error.  The first error is kept and, for a group made by :meth:`with_context`,
    cancels the group's context (with that error as the cause), so siblings waiting on it
    wake.  ``yield from wait()`` waits for every function, cancels the context (as Go's
    ``Wait`` does) and returns the first error or None.
    """

    def __init__(self, env: Environment, cancel: CancelFunc | None = None) -> None:
        self.env = env
        self.err: BaseException | None = None
        self._cancel = cancel
        self._wg = WaitGroup(env)

    @classmethod
    def with_context(cls, ctx: Context) -> tuple[ErrGroup, Context]:
        """``errgroup.WithContext``: the group and the context its first error cancels."""
        child, cancel = ctx.with_cancel()
        return cls(ctx.env, cancel), child

    def go(self, fn: Callable[[], Gen[Any]], *, name: str) -> simpy.Process:
        """``g.Go(fn)``: run ``fn()`` in a new goroutine named ``name``."""
        if not callable(fn):
            raise SimUsageError(
                f"ErrGroup.go({fn!r}): pass a function that returns a generator, "
                "e.g. group.go(lambda: fetch(ctx, desc), name='fetch')"
            )
        self._wg.add(1)
        return go(self.env, self._run(fn), name=name)

    def _run(self, fn: Callable[[], Gen[Any]]) -> Gen[None]:
        try:
            yield from fn()
        except Exception as exc:
            if self.err is None:
                self.err = exc
                if self._cancel is not None:
                    self._cancel(exc)
        finally:
            self._wg.done()

    def wait(self) -> Gen[BaseException | None]:
        """``g.Wait()``: block until every function returned; the first error or None."""
        yield from self._wg.wait()
        if self._cancel is not None:
            self._cancel()
        return self.err


class _SemWaiter:
    __slots__ = ("event", "granted", "n")

    def __init__(self, event: Wait, n: int) -> None:
        self.event = event
        self.n = n
        self.granted = False


class Semaphore:
    """``semaphore.Weighted`` (x/sync v0.1.0).

    ``yield from acquire(ctx, n)`` takes ``n`` at once when they are free and nobody queues;
    otherwise it queues (FIFO) until :meth:`release` grants it, or raises the context's error
    if the context is done first.  At v0.1.0, an acquire that need not wait succeeds even on a
    done context ("If ctx is already done, Acquire may still succeed without blocking");
    ``fail_if_done=True`` gives x/sync v0.4.0's behaviour (checks the context first).
    """

    def __init__(self, env: Environment, size: int, *, fail_if_done: bool = False) -> None:
        if size < 0:
            raise SimUsageError(f"Semaphore(size={size}): the size cannot be negative")
        self.env = env
        self.size = size
        self.cur = 0
        self.fail_if_done = fail_if_done
        self._waiters: list[_SemWaiter] = []

    def try_acquire(self, n: int = 1) -> bool:
        """``TryAcquire``: take ``n`` without blocking; False if that is not possible now."""
        if self.size - self.cur >= n and not self._waiters:
            self.cur += n
            return True
        return False

    def acquire(self, ctx: Context, n: int = 1) -> Gen[None]:
        """``Acquire(ctx, n)``.

        Raises:
            Canceled, DeadlineExceeded: the context was done before the tokens were granted.
        """
        if self.fail_if_done and ctx.err is not None:
            raise ctx.error()
        if self.try_acquire(n):
            return
        if n > self.size:  # doomed: wait for the context only (Go does the same)
            yield ctx.done
            raise ctx.error()
        waiter = _SemWaiter(Wait(self.env, f"semaphore acquire({n}) [{self.cur}/{self.size}]"), n)
        self._waiters.append(waiter)
        stop = ctx.after_func(lambda: self._cancelled(waiter))
        granted = yield waiter.event
        stop()
        if not granted:
            raise ctx.error()

    def _cancelled(self, waiter: _SemWaiter) -> None:
        if waiter.granted or waiter.event.triggered:
            return  # acquired before the cancel: Go pretends it did not notice
        front = self._waiters[0] is waiter
        self._waiters.remove(waiter)
        waiter.event.succeed(False)
        if front and self.size > self.cur:
            self._notify()

    def release(self, n: int = 1) -> None:
        """``Release(n)``; wakes queued acquirers in order while their requests fit.

        Raises:
            GoPanic: more was released than is held ("semaphore: released more than held").
        """
        self.cur -= n
        if self.cur < 0:
            self.cur += n
            raise GoPanic("semaphore: released more than held")
        self._notify()

    def _notify(self) -> None:
        while self._waiters:
            waiter = self._waiters[0]
            if self.size - self.cur < waiter.n:
                break  # no barging: later, smaller requests wait too (x/sync's comment)
            self.cur += waiter.n
            self._waiters.pop(0)
            waiter.granted = True
            waiter.event.succeed(True)


class Mutex:
    """``sync.Mutex``: ``yield from lock()``, ``unlock()``; waiters are served in order."""

    def __init__(self, env: Environment, name: str = "mutex") -> None:
        self.env = env
        self.name = name
        self.locked = False
        self._waiters: list[Wait] = []

    def lock(self) -> Gen[None]:
        if not self.locked:
            self.locked = True
            return
        waiter = Wait(self.env, f"{self.name}.lock")
        self._waiters.append(waiter)
        yield waiter

    def unlock(self) -> None:
        """Raises GoPanic on an unlocked mutex ("sync: unlock of unlocked mutex")."""
        if not self.locked:
            raise GoPanic("sync: unlock of unlocked mutex")
        if self._waiters:
            self._waiters.pop(0).succeed()  # handed over: stays locked
        else:
            self.locked = False


class RWLock:
    """``sync.RWMutex`` (bolt's ``DB.wlock`` in ``metadata/db.go``).

    Writers exclude everyone; readers share.  A waiting writer blocks new readers (Go's rule,
    so GC's exclusive lock is not starved by a stream of writes); when the writer unlocks, every
    reader that queued meanwhile is admitted before the next writer.
    """

    def __init__(self, env: Environment, name: str = "rwlock") -> None:
        self.env = env
        self.name = name
        self.readers = 0
        self.writer = False
        self._readers_waiting: list[Wait] = []
        self._writers_waiting: list[Wait] = []

    def rlock(self) -> Gen[None]:
        """``RLock``: shared."""
        if not self.writer and not self._writers_waiting:
            self.readers += 1
            return
        waiter = Wait(self.env, f"{self.name}.rlock (writer holds or waits)")
        self._readers_waiting.append(waiter)
        yield waiter

    def runlock(self) -> None:
        """``RUnlock``; raises GoPanic if no reader holds the lock."""
        if self.readers <= 0:
            raise GoPanic("sync: RUnlock of unlocked RWMutex")
        self.readers -= 1
        if self.readers == 0 and self._writers_waiting:
            self.writer = True
            self._writers_waiting.pop(0).succeed()

    def lock(self) -> Gen[None]:
        """``Lock``: exclusive."""
        if not self.writer and self.readers == 0:
            self.writer = True
            return
        waiter = Wait(self.env, f"{self.name}.lock (held by {self._holders()})")
        self._writers_waiting.append(waiter)
        yield waiter

    def unlock(self) -> None:
        """``Unlock``; raises GoPanic if no writer holds the lock."""
        if not self.writer:
            raise GoPanic("sync: Unlock of unlocked RWMutex")
        self.writer = False
        if self._readers_waiting:
            waiting, self._readers_waiting = self._readers_waiting, []
            self.readers += len(waiting)
            for waiter in waiting:
                waiter.succeed()
        elif self._writers_waiting:
            self.writer = True
            self._writers_waiting.pop(0).succeed()

    def _holders(self) -> str:
        return "a writer" if self.writer else f"{self.readers} readers"


class KeyedMutex:
    """containerd's ``pkg/kmutex``: one weight-1 semaphore per key, dropped when unused.

    ``yield from lock(ctx, key)`` raises the context's error if it is done before the lock is
    granted; ``unlock(key)`` panics on a key that is not locked, as kmutex does.
    """

    def __init__(self, env: Environment) -> None:
        self.env = env
        self._locks: dict[str, tuple[Semaphore, list[int]]] = {}

    def lock(self, ctx: Context, key: str) -> Gen[None]:
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = (Semaphore(self.env, 1), [0])
        sem, ref = entry
        ref[0] += 1
        try:
            yield from sem.acquire(ctx, 1)
        except BaseException:
            self._drop(key, ref)
            raise

    def unlock(self, key: str) -> None:
        entry = self._locks.get(key)
        if entry is None:
            raise GoPanic(f"kmutex: unlock of unlocked key {key}")
        sem, ref = entry
        sem.release(1)
        self._drop(key, ref)

    def _drop(self, key: str, ref: list[int]) -> None:
        ref[0] -= 1
        if ref[0] < 0:
            raise GoPanic(f"kmutex: released of unlocked key {key}")
        if ref[0] == 0:
            del self._locks[key]

    def locked(self, key: str) -> bool:
        """Whether ``key`` is held or awaited."""
        return key in self._locks
