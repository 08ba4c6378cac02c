"""The sim layer's own errors: misuse of the framework, Go panics, unreplayable schedules.

These stay apart from containerd's errdefs classes (``unpacksim.model.errdefs``): an errdefs
error is something containerd would return; the classes here mean the framework was used
wrongly (:class:`SimUsageError`), a schedule string cannot be read or does not fit the program
it replays (:class:`ScheduleError`), or simulated Go code did what makes Go panic
(:class:`GoPanic`: send on a closed channel, releasing more than was acquired, ...).
"""

from __future__ import annotations

__all__ = ["GoPanic", "ScheduleError", "SimUsageError"]


class SimUsageError(Exception):
    """unpacksim.sim was called wrongly; the message says what was wrong and what to do."""


class ScheduleError(SimUsageError, ValueError):
    """A schedule string is malformed, or does not fit the run that replays it."""


class GoPanic(Exception):
    """Simulated Go code panicked; the message is Go's panic text.

    A panic that a goroutine does not handle ends the run with the ``failed`` outcome, as an
    unrecovered panic ends a Go program.
    """
