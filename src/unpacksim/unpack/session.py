"""What one pull carries through the pipeline: world, era, options, log, naming.

Go threads this through a ``*Client``, a ``*RemoteContext`` and closures; the port gathers
it in one :class:`Session` so each named step takes what it needs explicitly.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING

from unpacksim.sim.go import KeyedMutex
from unpacksim.unpack.eras import Era
from unpacksim.unpack.results import PullLog, PullOptions
from unpacksim.unpack.unique import UniqueSource

if TYPE_CHECKING:
    from unpacksim.unpack.world import World

__all__ = ["Session", "shared_state"]


@dataclass
class _Shared:
    """Per-World state the pull path shares between pulls (one containerd client)."""

    unique: UniqueSource
    suppressor: KeyedMutex
    pulls: int = 0


_SHARED: weakref.WeakKeyDictionary[object, _Shared] = weakref.WeakKeyDictionary()


def shared_state(world: World) -> _Shared:
    """The state pulls into ``world`` share: unique parts, the duplication suppressor.

    The suppressor is process-wide in containerd (``kmutex``, one per CRI service), so all
    pulls into one World share it.  Kept beside the World (weakly), one per World.
    """
    state = _SHARED.get(world)
    if state is None:
        state = _SHARED[world] = _Shared(world.unique, KeyedMutex(world.env))
    return state


@dataclass
class Session:
    """One pull: where it runs, what era it follows, what it was asked, what it did."""

    world: World
    era: Era
    opts: PullOptions
    log: PullLog
    name: str  # process-name prefix, e.g. "pull-1"

    @property
    def shared(self) -> _Shared:
        return shared_state(self.world)

    def unique_part(self) -> str:
        """``uniquePart()`` from the World's deterministic source."""
        return self.shared.unique.part()
