"""The reference implementation and the era presets as registered implementations.

:class:`ReferenceImplementation` runs :func:`unpacksim.unpack.pull.pull` under one
:class:`~unpacksim.unpack.eras.Era`.  Importing this module registers one per preset under the
preset's name (``seed``, ``v1.4``, ``v1.6``, ``v1.7``, ``v2.0``); see
:mod:`unpacksim.unpack.eras` for the flags each sets.  It also registers ``v1.7-cri``
(:data:`CRI_V17`): v1.7 with the duplication suppressor CRI wires in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from unpacksim.unpack.eras import PRESETS, Era
from unpacksim.unpack.interface import PullProcess, register
from unpacksim.unpack.pull import pull
from unpacksim.unpack.results import PullOptions

if TYPE_CHECKING:
    from unpacksim.sim.context import Context
    from unpacksim.unpack.world import World

__all__ = ["CRI_V17", "ReferenceImplementation"]

_DESCRIPTIONS = {
    "seed": "containerd 03ab1b2cac (2020-06): the seed unpacker, Stat skip, index child labels",
    "v1.4": "containerd v1.4.0: typed child labels, ChildLabelMap discard (c8b14ae4c)",
    "v1.6": "containerd v1.6.20 (Debian): v1.4 plus the effective download limiter (#6109)",
    "v1.7": "containerd v1.7.0: abort on cancel/fetch error (#6749), cleanup context (#7859)",
    "v2.0": "containerd v2.0.0: lease on AlreadyExists (#10187), no Stat skip (#10723)",
}


class ReferenceImplementation:
    """The port of containerd's pull and unpacker, under ``era``.

    Args:
        era: the era flags (a preset or ``preset(...).but(...)``).
        name: the registry name; defaults to the era's name.
        description: one line for reports; a summary of the flags by default.
    """

    def __init__(self, era: Era, *, name: str | None = None, description: str | None = None):
        self.era = era
        self._name = name or era.name
        self._description = description or _DESCRIPTIONS.get(
            self._name, f"the reference pull under era flags {era.flags()}"
        )

    @property
    def name(self) -> str:
        return self._name

    @property
    def description(self) -> str:
        return self._description

    @property
    def world_options(self) -> Mapping[str, Any]:
        return self.era.world_options

    def pull(self, world: World, ctx: Context, ref: str, opts: PullOptions) -> PullProcess:
        """``Client.Pull`` under this era; see :func:`unpacksim.unpack.pull.pull`."""
        return pull(world, ctx, ref, opts, self.era, implementation=self._name)

    def __repr__(self) -> str:
        return f"ReferenceImplementation({self._name!r})"


for _era in PRESETS.values():
    register(ReferenceImplementation(_era), replace=True)

#: ``Client.Pull`` as CRI calls it: v1.7.0 plus the keyed duplication suppressor (#6702), which
#: ``pkg/cri/server/image_pull.go`` passes through ``WithUnpackDuplicationSuppressor`` and
#: ``Client.Pull`` alone never installs.  Registered beside the presets, not one of them.
CRI_V17 = "v1.7-cri"

register(
    ReferenceImplementation(
        PRESETS["v1.7"].but(name=CRI_V17, dedup_keyed_lock=True),
        description="containerd v1.7.0 as CRI pulls: v1.7 plus the keyed duplication "
        "suppressor (#6702)",
    ),
    replace=True,
)
