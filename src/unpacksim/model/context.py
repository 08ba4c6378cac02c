"""What a model operation needs from Go's ``context.Context``.

containerd passes the namespace and the lease in the context (``namespaces.WithNamespace``,
``leases.WithLease``).  Model operations take ``ctx`` as their explicit first argument and read
only these two attributes; the simulator's context (``unpacksim.sim.context``) satisfies the same
protocol and adds cancellation and deadlines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from unpacksim.model.errdefs import FailedPrecondition

__all__ = ["Ctx", "ModelContext", "namespace_of"]


class ModelContext(Protocol):
    """The namespace and lease a call runs under."""

    @property
    def namespace(self) -> str:
        """The containerd namespace; "" means none was set."""
        ...

    @property
    def lease(self) -> str | None:
        """The lease ID the call is made under, or None."""
        ...


@dataclass(frozen=True)
class Ctx:
    """A plain context for synchronous use of the model."""

    namespace: str = "default"
    lease: str | None = None

    def with_lease(self, lease: str | None) -> Ctx:
        return Ctx(self.namespace, lease)


def namespace_of(ctx: ModelContext) -> str:
    """``namespaces.NamespaceRequired``: the namespace, or FailedPrecondition if none is set."""
    if not ctx.namespace:
        raise FailedPrecondition("namespace is required")
    return ctx.namespace
