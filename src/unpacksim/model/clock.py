"""Simulated time for the model.

The model never reads the wall clock.  Time is a float of seconds since an arbitrary, fixed
epoch (``EPOCH``); RFC3339 strings (lease ``containerd.io/gc.expire``, ``gc.root`` values) are
rendered from and parsed to that scale, so runs are deterministic.
"""

from __future__ import annotations

import datetime as _dt
from typing import Protocol

__all__ = ["EPOCH", "Clock", "ManualClock", "format_rfc3339", "parse_rfc3339"]

# The seed commit's date: simulated time 0.
EPOCH = _dt.datetime(2020, 6, 21, 0, 0, 0, tzinfo=_dt.UTC)


class Clock(Protocol):
    """Anything with a ``now()`` in simulated seconds (the SimPy environment is one)."""

    def now(self) -> float:
        """The current simulated time in seconds since ``EPOCH``."""
        ...


class ManualClock:
    """A clock that moves only when told to; the default for synchronous model use."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (must not be negative)."""
        if seconds < 0:
            raise ValueError(f"cannot move a clock backwards (advance({seconds!r}))")
        self._now += seconds


def format_rfc3339(t: float) -> str:
    """Render simulated time ``t`` as RFC3339 (Go's ``time.RFC3339``, UTC, whole seconds)."""
    moment = EPOCH + _dt.timedelta(seconds=int(t))
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(value: str) -> float | None:
    """Parse an RFC3339 string to simulated seconds; None if it does not parse (as Go logs)."""
    try:
        moment = _dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return (moment - EPOCH).total_seconds()
