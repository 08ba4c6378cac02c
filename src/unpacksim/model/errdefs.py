"""containerd's error classes (``errdefs/errors.go`` at the seed, plus ``ErrCanceled``).

Every model error is a :class:`ContainerdError` subclass raised with the same class, at the
same place, as containerd raises it, with the context in the message.  An error injected by a
fault site is an ordinary instance of the same class with ``injected`` set, so a report can
tell "we injected it" from "the implementation got it wrong".
"""

from __future__ import annotations

__all__ = [
    "Aborted",
    "AlreadyExists",
    "Canceled",
    "ContainerdError",
    "DeadlineExceeded",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "NotImplementedYet",
    "Unavailable",
    "Unknown",
    "error_class",
    "wrap",
]


class ContainerdError(Exception):
    """Base of the errdefs classes.

    ``code`` is containerd's lower-case class word, the suffix containerd's messages carry
    (``...: not found``).  ``injected`` is true when a fault site raised it.
    """

    code = "unknown"

    def __init__(self, message: str = "", *, injected: bool = False) -> None:
        self.message = message
        self.injected = injected
        super().__init__(message)

    def __str__(self) -> str:
        # containerd wraps the sentinel last: "parent snapshot x does not exist: not found".
        if not self.message:
            return self.code
        if self.message.endswith(": " + self.code) or self.message == self.code:
            return self.message
        return f"{self.message}: {self.code}"

    def wrapped(self, prefix: str) -> ContainerdError:
        """Return a copy of this error whose message is ``prefix: message`` (errors.Wrap)."""
        # A bare sentinel (empty message) wraps to "prefix: <code>", as Go prints it.
        message = f"{prefix}: {self.message}" if self.message else prefix
        return type(self)(message, injected=self.injected)


class Unknown(ContainerdError):
    code = "unknown"


class InvalidArgument(ContainerdError):
    code = "invalid argument"


class NotFound(ContainerdError):
    code = "not found"


class AlreadyExists(ContainerdError):
    code = "already exists"


class FailedPrecondition(ContainerdError):
    code = "failed precondition"


class Unavailable(ContainerdError):
    code = "unavailable"


class NotImplementedYet(ContainerdError):
    """containerd's ``ErrNotImplemented``."""

    code = "not implemented"


class Aborted(ContainerdError):
    """Not in the seed's errdefs; used where later containerd returns it."""

    code = "aborted"


class Canceled(ContainerdError):
    """Go's ``context.Canceled`` as it reaches callers ("context canceled")."""

    code = "context canceled"


class DeadlineExceeded(ContainerdError):
    """Go's ``context.DeadlineExceeded`` ("context deadline exceeded")."""

    code = "context deadline exceeded"


def error_class(exc: BaseException | None) -> str:
    """The errdefs class name of ``exc`` (``"ok"`` for None, ``"other"`` for non-errdefs)."""
    if exc is None:
        return "ok"
    if isinstance(exc, ContainerdError):
        return type(exc).__name__
    return "other"


def wrap(exc: ContainerdError, prefix: str) -> ContainerdError:
    """``errors.Wrapf(err, prefix)``: same class, message prefixed."""
    return exc.wrapped(prefix)
