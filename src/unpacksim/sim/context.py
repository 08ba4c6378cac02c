"""Go's ``context.Context`` in simulated time: namespace, lease, cancellation, deadlines.

A :class:`Context` satisfies ``unpacksim.model.context.ModelContext`` (``namespace``,
``lease``), so a model store accepts it directly, and adds what Go's context adds:

- cancellation with a parent and children: cancelling a context cancels every context derived
  from it, never its parent (``context.WithCancel``); a cancel may carry a *cause*
  (``context.WithCancelCause``, Go 1.20); ``err`` is then ``errdefs.Canceled``;
- a deadline in simulated time (``context.WithDeadline``); when it passes, ``err`` is
  ``errdefs.DeadlineExceeded``.  Calling the returned cancel function stops the timer, as
  ``defer cancel()`` does in Go;
- ``done``: a SimPy event that fires when the context is cancelled; everything waiting on the
  context (a semaphore, a select, a sleep) wakes when it is.

Values (``with_lease``, ``with_namespace``, ``with_value``) share the cancellation of the
context they derive from, as Go's value contexts do.  ``background(env)`` is never cancelled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import simpy

from unpacksim.model.errdefs import Canceled, ContainerdError, DeadlineExceeded
from unpacksim.sim.env import Wait
from unpacksim.sim.errors import SimUsageError

if TYPE_CHECKING:
    from unpacksim.sim.env import Environment

__all__ = ["CancelFunc", "Context", "background"]

#: ``cancel(cause=None)``: cancels the context (idempotent).
CancelFunc = Callable[..., None]


class _Node:
    """The cancellation state shared by a context and the value contexts derived from it."""

    __slots__ = (
        "_done",
        "_listeners",
        "_next_token",
        "cancellable",
        "cause",
        "children",
        "deadline",
        "env",
        "err",
        "parent",
        "timer",
    )

    def __init__(self, env: Environment, parent: _Node | None, cancellable: bool) -> None:
        self.env = env
        self.parent = parent
        self.cancellable = cancellable
        self.children: dict[_Node, None] = {}
        self.err: ContainerdError | None = None
        self.cause: BaseException | None = None
        self.deadline: float | None = parent.deadline if parent is not None else None
        self.timer: simpy.Event | None = None
        self._done: Wait | None = None
        self._listeners: dict[int, Callable[[], None]] = {}
        self._next_token = 0

    def done_event(self) -> Wait:
        if self._done is None:
            self._done = Wait(self.env, "ctx.done" if self.cancellable else "ctx.done (never)")
            if self.err is not None:
                self._done.succeed(self.err)
        return self._done

    def cancel(self, err: ContainerdError, cause: BaseException | None) -> None:
        if self.err is not None:
            return
        self.err = err
        self.cause = cause if cause is not None else err
        if self.timer is not None:
            self.env.unschedule(self.timer)
            self.timer = None
        if self.parent is not None:
            self.parent.children.pop(self, None)
        if self._done is not None:
            self._done.succeed(err)
        listeners, self._listeners = self._listeners, {}
        for listener in listeners.values():
            listener()
        children, self.children = self.children, {}
        for child in children:
            child.cancel(err, self.cause)

    def listen(self, fn: Callable[[], None]) -> Callable[[], bool]:
        token = self._next_token
        self._next_token += 1
        self._listeners[token] = fn

        def stop() -> bool:
            return self._listeners.pop(token, None) is not None

        return stop


class Context:
    """A simulated ``context.Context`` (see the module docstring).

    Attributes:
        env: the environment the context lives in.
        namespace: the containerd namespace ("" for none).
        lease: the lease ID calls are made under, or None.
    """

    __slots__ = ("_node", "_values", "env", "lease", "namespace")

    def __init__(
        self,
        env: Environment,
        namespace: str,
        lease: str | None,
        node: _Node,
        values: dict[object, object] | None = None,
    ) -> None:
        self.env = env
        self.namespace = namespace
        self.lease = lease
        self._node = node
        self._values: dict[object, object] = values if values is not None else {}

    def __repr__(self) -> str:
        state = "live" if self._node.err is None else f"done: {self._node.err}"
        return f"<Context ns={self.namespace!r} lease={self.lease!r} {state}>"

    # --- values --------------------------------------------------------------------------

    def _derive(self, **changes: object) -> Context:
        namespace = changes.get("namespace", self.namespace)
        lease = changes.get("lease", self.lease)
        assert isinstance(namespace, str)
        assert lease is None or isinstance(lease, str)
        return Context(self.env, namespace, lease, self._node, self._values)

    def with_lease(self, lease: str | None) -> Context:
        """``leases.WithLease``: the same context with ``lease`` (None removes it)."""
        return self._derive(lease=lease)

    def with_namespace(self, namespace: str) -> Context:
        """``namespaces.WithNamespace``."""
        if not isinstance(namespace, str):
            raise SimUsageError(f"with_namespace({namespace!r}): the namespace is a string")
        return self._derive(namespace=namespace)

    def with_value(self, key: object, value: object) -> Context:
        """``context.WithValue``: a context whose :meth:`value` of ``key`` is ``value``."""
        values = dict(self._values)
        values[key] = value
        return Context(self.env, self.namespace, self.lease, self._node, values)

    def value(self, key: object) -> object | None:
        """``ctx.Value(key)``: the value set for ``key`` here or in a parent, or None."""
        return self._values.get(key)

    # --- cancellation --------------------------------------------------------------------

    def with_cancel(self) -> tuple[Context, CancelFunc]:
        """``context.WithCancel`` (with ``WithCancelCause``'s cause argument).

        Returns the child context and ``cancel(cause=None)``; cancelling the child never
        cancels this context, cancelling this context cancels the child.
        """
        node = self._child_node()

        def cancel(cause: BaseException | None = None) -> None:
            injected = bool(getattr(cause, "injected", False))
            node.cancel(Canceled(injected=injected), cause)

        return self._with_node(node), cancel

    def with_deadline(self, deadline: float) -> tuple[Context, CancelFunc]:
        """``context.WithDeadline``: cancelled with DeadlineExceeded at simulated ``deadline``.

        A parent deadline that is earlier stays in force.  Returns the child and its cancel
        function; cancelling stops the deadline timer.
        """
        ctx, cancel = self.with_cancel()
        node = ctx._node
        if node.deadline is not None and node.deadline <= deadline:
            return ctx, cancel
        node.deadline = deadline
        delay = deadline - float(self.env.now)
        if node.err is None:
            if delay <= 0:
                node.cancel(DeadlineExceeded(), None)
            else:
                timer = self.env.timeout(delay)
                timer.callbacks.append(lambda _: node.cancel(DeadlineExceeded(), None))
                node.timer = timer
        return ctx, cancel

    def with_timeout(self, timeout: float) -> tuple[Context, CancelFunc]:
        """``context.WithTimeout``: :meth:`with_deadline` at now + ``timeout``."""
        return self.with_deadline(float(self.env.now) + timeout)

    def _child_node(self) -> _Node:
        parent = self._node if self._node.cancellable else None
        node = _Node(self.env, parent, cancellable=True)
        if self._node.cancellable:
            node.deadline = self._node.deadline
        if parent is not None:
            if parent.err is not None:
                node.err, node.cause = parent.err, parent.cause
            else:
                parent.children[node] = None
        return node

    def _with_node(self, node: _Node) -> Context:
        return Context(self.env, self.namespace, self.lease, node, self._values)

    @property
    def done(self) -> simpy.Event:
        """An event that fires (with the error) when the context is cancelled."""
        return self._node.done_event()

    @property
    def err(self) -> ContainerdError | None:
        """None while live; ``errdefs.Canceled`` or ``errdefs.DeadlineExceeded`` once done."""
        return self._node.err

    @property
    def cause(self) -> BaseException | None:
        """``context.Cause``: the cancel's cause, else ``err``; None while live."""
        return self._node.cause

    @property
    def deadline(self) -> float | None:
        """The simulated time at which this context expires, or None."""
        return self._node.deadline

    @property
    def cancellable(self) -> bool:
        """False for a context that can never be done (``background``)."""
        return self._node.cancellable

    def error(self) -> ContainerdError:
        """A fresh copy of ``err`` to raise (each raise gets its own traceback).

        Raises:
            SimUsageError: the context is not done.
        """
        err = self._node.err
        if err is None:
            raise SimUsageError("ctx.error(): the context is not done; check ctx.err first")
        return type(err)(err.message, injected=err.injected)

    def err_or_canceled(self) -> ContainerdError:
        """:meth:`error` if done, else a plain ``Canceled`` (for code that must return one)."""
        return self.error() if self._node.err is not None else Canceled()

    def check(self) -> None:
        """Raise the context's error if it is done (the ``if err := ctx.Err()`` idiom)."""
        if self._node.err is not None:
            raise self.error()

    def after_func(self, fn: Callable[[], None]) -> Callable[[], bool]:
        """``context.AfterFunc``: call ``fn()`` when the context is cancelled.

        ``fn`` runs synchronously inside the cancel, so it must not block; it is how the
        primitives wake their waiters.  Returns ``stop()``, which unregisters ``fn`` and says
        whether it did so before ``fn`` ran.  If the context is already done ``fn`` runs now.
        """
        if self._node.err is not None:
            fn()
            return lambda: False
        if not self._node.cancellable:
            return lambda: True
        return self._node.listen(fn)

    def cancel_root(self, cause: BaseException | None = None) -> bool:
        """Cancel the outermost cancellable ancestor (the caller's own context).

        This is what the ``ctx.cancel`` fault site does: the client that owns the operation
        gives up.  Returns False if the context cannot be cancelled.
        """
        node = self._node
        if not node.cancellable:
            return False
        while node.parent is not None:
            node = node.parent
        injected = bool(getattr(cause, "injected", False))
        node.cancel(Canceled(injected=injected), cause)
        return True


def background(env: Environment, namespace: str = "default") -> Context:
    """``namespaces.WithNamespace(context.Background(), namespace)``: never cancelled."""
    return Context(env, namespace, None, _Node(env, None, cancellable=False))
