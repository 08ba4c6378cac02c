"""Go's plain errors and ``%w`` wrapping, as the pull path uses them.

containerd's unpacker returns two kinds of errors: errdefs errors, possibly wrapped with
``errors.Wrapf`` / ``fmt.Errorf("...: %w", err)`` (the class survives: ``errdefs.IsNotFound``
still holds), and plain errors made with ``errors.Errorf`` / ``fmt.Errorf`` without ``%w``
(no class: "number of layers and diffIDs don't match", "wrong diff id calculated on
extraction").  :class:`GoError` is the second kind; :func:`wrap` is the first.
"""

from __future__ import annotations

from unpacksim.model.errdefs import ContainerdError

__all__ = ["ErrSkipDesc", "ErrStopHandler", "GoError", "wrap"]


class GoError(Exception):
    """A Go error with no errdefs class; ``str()`` is exactly Go's message."""

    def __init__(self, message: str, *, injected: bool = False) -> None:
        self.message = message
        self.injected = injected
        super().__init__(message)

    def __str__(self) -> str:
        return self.message


class ErrSkipDesc(Exception):
    """``images.ErrSkipDesc``: do not descend into this descriptor's children."""

    def __str__(self) -> str:
        return "skip descriptor"


class ErrStopHandler(Exception):
    """``images.ErrStopHandler``: stop the remaining handlers for this descriptor."""

    def __str__(self) -> str:
        return "stop handler"


def wrap(err: BaseException, prefix: str) -> BaseException:
    """``fmt.Errorf(prefix + ": %w", err)``: the same class, the message prefixed.

    An errdefs error keeps its class and its ``injected`` mark; a :class:`GoError` stays a
    GoError; any other exception (a bug, not a Go error) is returned unchanged so it is not
    disguised.
    """
    if isinstance(err, ContainerdError):
        return err.wrapped(prefix)
    if isinstance(err, GoError):
        return GoError(f"{prefix}: {err.message}", injected=err.injected)
    return err
