"""Search spaces: the kind of workload a race lives in, and drawing programs from one.

A :class:`SearchSpace` says which images the registry serves, which actions a program may
take in which order (one *slot* per action, each with the kinds it may be), how far apart
they start, and which fault sites may fire.  :func:`draw_program` draws one concrete
:class:`~unpacksim.properties.scenario.Program` from it through Hypothesis, and
:func:`draw_picks` the scheduling decisions for a
:class:`~unpacksim.properties.strategies.PicksChooser`; everything shrinks toward fewer
actions, actions one after another, FIFO schedules and no faults.

:data:`GENERAL_SPACE` is what ``unpacksim explore`` searches by default; the race catalogue
(:mod:`unpacksim.properties.catalogue`) gives each race its own, narrower space.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from hypothesis import strategies as st
from hypothesis.strategies import DataObject

from unpacksim.properties.scenario import (
    LABEL_SELECTORS,
    Action,
    Cancel,
    CollectGarbage,
    DeleteImage,
    DeleteLease,
    EditLabels,
    ExpireLease,
    HoldSnapshot,
    ImageSpec,
    Program,
    ProgramError,
    Pull,
    Unpack,
)
from unpacksim.sim.faults import FaultPlan

__all__ = [
    "GENERAL_SPACE",
    "KINDS",
    "SearchSpace",
    "SpaceError",
    "draw_picks",
    "draw_program",
    "fault_plan",
]


class SpaceError(ProgramError):
    """A search space that is not well formed (the message says what to change)."""


#: The action kinds a search space may use (``skip``: no action in that slot).
KINDS = (
    "pull",
    "cancel",
    "delete_image",
    "delete_lease",
    "expire_lease",
    "edit_labels",
    "gc",
    "hold_snapshot",
    "unpack",
    "skip",
)


@dataclass(frozen=True)
class SearchSpace:
    """The kind of workload a race lives in; the explorer draws concrete programs from it.

    A drawn program has one action per slot (``skip`` draws none), each a kind from the
    slot's alternatives, its arguments drawn from the images and the actors before it, and
    a start time a drawn gap after the previous one.  Gap 0 of :attr:`gaps` is drawn most
    often and is what shrinking goes to: with the default, actions run one after another
    unless the search decides they overlap.

    Attributes:
        images: the images the registry serves.
        slots: per action, the kinds it may be (from :data:`KINDS`).
        gaps: the simulated seconds between the starts of consecutive actions.
        sites: fault sites the chooser may activate (an exploring fault plan).
        fire_one_in: an active site fires on one in this many hits.
        snapshotters: the daemon's snapshotters (the first is the default).
        gc_scheduler: run containerd's GC scheduler.
        bandwidth: the registry link in bytes per simulated second (None: the default).
        max_decisions: chooser decisions drawn per run (later ones are FIFO).
        max_steps: the simulation's step bound per run.
    """

    images: tuple[ImageSpec, ...]
    slots: tuple[tuple[str, ...], ...]
    gaps: tuple[float, ...] = (1.0, 0.0, 0.001, 0.005, 0.02)
    sites: tuple[str, ...] = ()
    fire_one_in: int = 2
    snapshotters: tuple[str, ...] = ("native",)
    gc_scheduler: bool = True
    bandwidth: float | None = None
    max_decisions: int = 300
    max_steps: int = 50_000

    def __post_init__(self) -> None:
        if not self.images:
            raise SpaceError("a search space needs at least one image")
        if not self.slots or any(not s for s in self.slots):
            raise SpaceError("a search space needs slots, each with at least one kind")
        for slot in self.slots:
            unknown = [k for k in slot if k not in KINDS]
            if unknown:
                raise SpaceError(f"unknown action kinds {unknown}; kinds are {KINDS}")
        if not self.gaps or any(g < 0 for g in self.gaps):
            raise SpaceError("gaps must be a non-empty tuple of times >= 0")

    def to_json(self) -> dict[str, Any]:
        return {
            "images": [i.to_json() for i in self.images],
            "slots": [list(s) for s in self.slots],
            "gaps": list(self.gaps),
            "sites": list(self.sites),
            "fire_one_in": self.fire_one_in,
            "snapshotters": list(self.snapshotters),
            "gc_scheduler": self.gc_scheduler,
            "bandwidth": self.bandwidth,
            "max_decisions": self.max_decisions,
            "max_steps": self.max_steps,
        }


_GENERAL_IMAGES = (
    ImageSpec("registry.test/base:1", ("base",)),
    ImageSpec("registry.test/app:1", ("base", "app")),
    ImageSpec("registry.test/other:1", ("base", "other")),
)
_ANY = ("skip", "pull", "delete_image", "gc", "cancel", "hold_snapshot", "delete_lease")

#: The space ``unpacksim explore`` searches when no catalogue space is named: pulls of images
#: sharing a base, image and lease deletion, GC, cancellation and containers, in any order.
GENERAL_SPACE = SearchSpace(
    images=_GENERAL_IMAGES,
    slots=(("pull",), _ANY, _ANY, _ANY),
    sites=("gc.run", "fetch.error"),
)


# --- drawing programs ----------------------------------------------------------------------


class _Drawer:
    """Draws one program from a space through Hypothesis (see :func:`draw_program`)."""

    def __init__(
        self, space: SearchSpace, data: DataObject, pull_options: Mapping[str, Any]
    ) -> None:
        self.space = space
        self.data = data
        self.pull_options = dict(pull_options)
        self.images = [i.name for i in space.images]
        self.pulls: list[str] = []
        self.pulled: list[str] = []  # images pulled so far, most recent first
        self.counts: dict[str, int] = {}

    def pick(self, options: Sequence[Any], label: str) -> Any:
        if len(options) == 1:
            return options[0]
        index: int = self.data.draw(st.integers(0, len(options) - 1), label=label)
        return options[index]

    def gap(self, i: int) -> float:
        # Gap 0 of the space is drawn about half the time, and is what shrinking goes to.
        gaps = self.space.gaps
        index: int = self.data.draw(
            st.one_of(st.just(0), st.integers(0, len(gaps) - 1)), label=f"gap {i}"
        )
        return gaps[index]

    def target_image(self, label: str) -> str:
        """An image for a non-pull action: one of those pulled so far, the last one first
        (acting on an image nobody pulled only meets NotFound); any image if none was."""
        ordered = list(dict.fromkeys(self.pulled)) or self.images
        image: str = self.pick(ordered, f"{label} image")
        return image

    def numbered(self, prefix: str) -> str:
        n = self.counts.get(prefix, 0) + 1
        self.counts[prefix] = n
        return f"{prefix}-{n}"

    def action(self, kind: str, at: float, i: int) -> Action | None:
        make = getattr(self, f"_{kind}")
        result: Action | None = make(at, f"slot {i}")
        return result

    def _pull(self, at: float, label: str) -> Action:
        actor = self.numbered("pull")
        self.pulls.append(actor)
        image = self.pick(self.images, f"{label} image")
        self.pulled.insert(0, image)
        pull = Pull(at=at, actor=actor, image=image)
        return replace(pull, **self.pull_options) if self.pull_options else pull

    def _cancel(self, at: float, label: str) -> Action | None:
        if not self.pulls:
            return None
        return Cancel(at=at, actor="user", target=self.pick(self.pulls, f"{label} target"))

    def _delete_image(self, at: float, label: str) -> Action:
        image = self.target_image(label)
        return DeleteImage(at=at, actor="user", image=image, sync=self.pick((False, True), label))

    def _delete_lease(self, at: float, label: str) -> Action | None:
        if not self.pulls:
            return None
        return DeleteLease(at=at, actor="user", of_pull=self.pick(self.pulls, f"{label} pull"))

    def _expire_lease(self, at: float, label: str) -> Action | None:
        if not self.pulls:
            return None
        return ExpireLease(at=at, actor="user", of_pull=self.pick(self.pulls, f"{label} pull"))

    def _edit_labels(self, at: float, label: str) -> Action:
        return EditLabels(
            at=at,
            actor="user",
            image=self.target_image(label),
            selector=self.pick(LABEL_SELECTORS, f"{label} selector"),
        )

    def _gc(self, at: float, label: str) -> Action:
        return CollectGarbage(at=at, actor="gc", sync=self.pick((False, True), label))

    def _hold_snapshot(self, at: float, label: str) -> Action:
        container = self.numbered("container")
        image = self.target_image(label)
        return HoldSnapshot(at=at, actor=container, image=image, container=container)

    def _unpack(self, at: float, label: str) -> Action:
        snapshotters = self.space.snapshotters
        return Unpack(
            at=at,
            actor=self.numbered("unpack"),
            image=self.target_image(label),
            snapshotter=snapshotters[-1] if len(snapshotters) > 1 else None,
        )

    def _skip(self, at: float, label: str) -> None:
        return None


def draw_program(
    space: SearchSpace, data: DataObject, pull_options: Mapping[str, Any] | None = None
) -> Program:
    """One program of ``space``, drawn from ``data`` (a Hypothesis ``st.data()`` object).

    One action per slot (a ``skip`` draws none), its kind drawn among the slot's, its image
    among the space's, its target among the pulls before it; the first starts at 0 and each
    next one a drawn gap later.  ``pull_options`` are set on every pull.
    """
    drawer = _Drawer(space, data, pull_options or {})
    actions: list[Action] = []
    at = 0.0
    for i, slot in enumerate(space.slots):
        if i:
            at = round(at + drawer.gap(i), 9)
        kind = drawer.pick(slot, f"slot {i} kind")
        action = drawer.action(kind, at, i)
        if action is not None:
            actions.append(action)
    return Program(
        images=space.images,
        actions=tuple(actions),
        snapshotters=space.snapshotters,
        gc_scheduler=space.gc_scheduler,
        bandwidth=space.bandwidth,
    )


def draw_picks(space: SearchSpace, data: DataObject) -> list[int]:
    """The chooser's picks for one run, drawn before it starts (``PicksChooser``: decision
    ``i`` takes ``picks[i] % n``, FIFO after the list).

    Drawing every decision up front keeps Hypothesis's draws out of the simulation's
    processes, and the list shrinks toward fewer and smaller picks: toward FIFO.
    """
    picks: list[int] = data.draw(
        st.lists(st.integers(0, 7), max_size=space.max_decisions), label="schedule picks"
    )
    return picks


def fault_plan(space: SearchSpace) -> FaultPlan | None:
    """The exploring fault plan of ``space`` (None when it explores no site)."""
    if not space.sites:
        return None
    return FaultPlan.exploring(list(space.sites), fire_one_in=space.fire_one_in)
