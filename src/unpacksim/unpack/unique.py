"""Deterministic unique parts for extraction keys and lease IDs.

containerd's ``uniquePart()`` (``unpacker.go``, ``rootfs/apply.go``) and
``leases.WithRandomID()`` (``leases/id.go``) both format
``<time.Nanosecond()>-<base64url(3 bytes of math/rand)>``.  In the model the nanoseconds come
from simulated time and the three bytes from a counter, one per run (per
:class:`UniqueSource`), scrambled by an odd multiplier modulo 2**24 (a bijection), so the
first 16 million parts of a run are all different: two pulls at the same simulated instant
never collide (as they practically never do in Go) and the same run always produces the same
keys.  The 2017
collisions are modelled by :attr:`unpacksim.unpack.eras.Era.unique_keys` instead.
"""

from __future__ import annotations

import base64
from typing import Protocol

__all__ = ["UniqueSource", "format_unique"]

# An odd multiplier: multiplication by it permutes the integers modulo 2**24.
_SCRAMBLE = 0x9E3779


class _Now(Protocol):
    @property
    def now(self) -> float: ...


def format_unique(now: float, raw: bytes) -> str:
    """``fmt.Sprintf("%d-%s", t.Nanosecond(), base64.URLEncoding.EncodeToString(b))``."""
    nanos = round(now * 1_000_000_000) % 1_000_000_000
    return f"{nanos}-{base64.urlsafe_b64encode(raw).decode()}"


class UniqueSource:
    """One run's source of unique parts; ``part()`` never repeats within a source."""

    def __init__(self, env: _Now) -> None:
        self._env = env
        self._count = 0

    def part(self) -> str:
        """The next ``<nanoseconds>-<4 base64url characters>`` string."""
        self._count += 1
        value = (self._count * _SCRAMBLE) % (1 << 24)
        return format_unique(self._env.now, value.to_bytes(3, "big"))
