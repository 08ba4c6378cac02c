"""Public Hypothesis strategies: images, image sets, fault plans, latencies, schedules, programs.

Each function takes keyword-only arguments with bounds, as Hypothesis's own strategies do
(``min_layers``/``max_layers``, ``min_size``/``max_size``), checks them when called (an
:class:`hypothesis.errors.InvalidArgument` says what is wrong), and returns a strategy::

    from hypothesis import given
    from unpacksim.properties.strategies import programs, schedules
    from unpacksim.properties.program import run_program

    @given(programs(max_actions=6), schedules())
    def test_v20_holds(program, chooser):
        assert run_program(program, "v2.0", chooser=chooser).ok

Everything shrinks toward the simple case: fewer layers and images, no faults, the nominal
latency, FIFO schedules (a :class:`PicksChooser` with no picks), fewer actions at time 0.
Images are :class:`~unpacksim.properties.scenario.ImageSpec` (call ``.build()`` for the
built image); equal layer tokens are the same blob, so shared bases and duplicate layers
appear as repeated tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.strategies import DrawFn, SearchStrategy

from unpacksim.properties.scenario import (
    ACTIONS,
    LABEL_SELECTORS,
    Action,
    Cancel,
    CollectGarbage,
    CreateLease,
    DeleteImage,
    DeleteLease,
    EditLabels,
    ExpireLease,
    Heal,
    HoldSnapshot,
    ImageSpec,
    Inject,
    Program,
    Pull,
    Unpack,
)
from unpacksim.sim.choose import BaseChooser, Chooser, FifoChooser, PCTChooser, RandomChooser
from unpacksim.sim.errors import SimUsageError
from unpacksim.sim.faults import FaultPlan, Rule, get_site, sites
from unpacksim.sim.services import LatencyModel

__all__ = [
    "ERROR_SITES",
    "DrawnFaultPlan",
    "PicksChooser",
    "choosers",
    "fault_plans",
    "image_sets",
    "images",
    "latency_models",
    "programs",
    "schedules",
]

#: Layer tokens the image strategies draw from by default (few, so images share layers).
DEFAULT_TOKENS = ("base", "lib", "app", "data", "tool")
#: Fault sites the default fault plans explore: errors and corruption, not the effect sites
#: that stand for actions a program has (``gc.run``, ``ctx.cancel``, ``labels.remove``).
ERROR_SITES = (
    "fetch.error",
    "fetch.truncate",
    "fetch.corrupt",
    "content.ref_locked",
    "snapshots.prepare.exists",
    "diff.apply.error",
    "diff.apply.wrong_diff_id",
    "snapshots.commit.exists",
)
_LATENCIES = (0.001, 0.0005, 0.002, 0.005)
_GAPS = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05)
_OPS = ("content", "snapshots", "registry", "diff", "leases", "images")


def _bounds(name: str, low: int, high: int, floor: int = 0) -> None:
    if low < floor:
        raise InvalidArgument(f"min_{name}={low} must be at least {floor}")
    if high < low:
        raise InvalidArgument(f"max_{name}={high} must be at least min_{name}={low}")


class PicksChooser(BaseChooser):
    """Plays a list of picks: decision ``i`` answers ``picks[i] % n``; FIFO after the list.

    Drawn from Hypothesis before the run (see :func:`schedules`), so the run itself never
    draws; the list shrinks toward fewer and smaller picks, that is toward FIFO.
    ``extend`` adds picks for later decisions (the state machine adds some at each step).
    Its ``schedule`` (the decisions actually taken) replays with ``ReplayChooser``.
    """

    def __init__(self, picks: Sequence[int] = ()) -> None:
        super().__init__()
        self.picks = [int(p) for p in picks]
        if any(p < 0 for p in self.picks):
            raise InvalidArgument(f"picks must be non-negative, got {self.picks}")
        self._used = 0

    def extend(self, picks: Sequence[int]) -> None:
        """Queue more picks after those not yet used."""
        self.picks.extend(int(p) for p in picks)

    def _pick(self, n: int, kind: str) -> int:
        if self._used >= len(self.picks):
            return 0
        pick = self.picks[self._used] % n
        self._used += 1
        return pick

    def __repr__(self) -> str:
        return f"PicksChooser({self.picks!r})"


# --- images ----------------------------------------------------------------------------------


def images(
    *,
    name: str = "registry.test/image:1",
    min_layers: int = 1,
    max_layers: int = 4,
    tokens: Sequence[str] = DEFAULT_TOKENS,
    max_platforms: int = 1,
    docker: bool | None = False,
    layer_bytes: int = 256,
) -> SearchStrategy[ImageSpec]:
    """Images called ``name`` with ``min_layers..max_layers`` layers drawn from ``tokens``.

    A token drawn twice is a duplicate layer.  ``max_platforms`` > 1 may add platforms (an
    index; the pull still takes ``linux/amd64``); ``docker`` None draws the media types.

    Raises:
        InvalidArgument: bad bounds, no tokens, or ``layer_bytes`` < 1.
    """
    _bounds("layers", min_layers, max_layers)
    if not tokens:
        raise InvalidArgument("tokens must name at least one layer token")
    if max_platforms < 1 or layer_bytes < 1:
        raise InvalidArgument("max_platforms and layer_bytes must be at least 1")
    stack = st.lists(st.sampled_from(tuple(tokens)), min_size=min_layers, max_size=max_layers)
    others = st.lists(
        st.tuples(st.sampled_from(("linux/arm64", "linux/arm/v7", "windows/amd64")), stack),
        max_size=max_platforms - 1,
        unique_by=lambda pair: pair[0],
    )
    kinds = st.just(docker) if docker is not None else st.booleans()
    return st.builds(
        lambda layers, more, dock: ImageSpec(
            name, tuple(layers), tuple((p, tuple(ls)) for p, ls in more), dock, layer_bytes
        ),
        stack,
        others,
        kinds,
    )


@st.composite
def _image_sets(
    draw: DrawFn,
    min_size: int,
    max_size: int,
    min_layers: int,
    max_layers: int,
    tokens: tuple[str, ...],
    shared_base: bool | None,
    layer_bytes: int,
) -> tuple[ImageSpec, ...]:
    size = draw(st.integers(min_size, max_size))
    base: list[str] = []
    share = draw(st.booleans()) if shared_base is None else shared_base
    if share and max_layers > 0:
        base = draw(st.lists(st.sampled_from(tokens), min_size=1, max_size=max(1, max_layers - 1)))
    out = []
    for i in range(size):
        low = max(min_layers - len(base), 0)
        high = max(max_layers - len(base), low)
        own = draw(st.lists(st.sampled_from(tokens), min_size=low, max_size=high))
        out.append(ImageSpec(f"registry.test/i{i}:1", (*base, *own), layer_bytes=layer_bytes))
    return tuple(out)


def image_sets(
    *,
    min_size: int = 1,
    max_size: int = 3,
    min_layers: int = 1,
    max_layers: int = 4,
    tokens: Sequence[str] = DEFAULT_TOKENS,
    shared_base: bool | None = None,
    layer_bytes: int = 256,
) -> SearchStrategy[tuple[ImageSpec, ...]]:
    """Tuples of ``min_size..max_size`` images named ``registry.test/i<k>:1``.

    With ``shared_base`` (drawn if None) every image starts with the same base layers, as
    images built ``FROM`` one base do; tokens repeat across images anyway.

    Raises:
        InvalidArgument: bad bounds or no tokens.
    """
    _bounds("size", min_size, max_size, floor=1)
    _bounds("layers", min_layers, max_layers)
    if not tokens:
        raise InvalidArgument("tokens must name at least one layer token")
    return _image_sets(
        min_size, max_size, min_layers, max_layers, tuple(tokens), shared_base, layer_bytes
    )


# --- faults, latencies, schedules -----------------------------------------------------------


class DrawnFaultPlan(FaultPlan):
    """A :class:`FaultPlan` whose ``repr`` says what it does (for falsifying examples)."""

    def __repr__(self) -> str:
        parts = []
        if self.rules:
            parts.append(f"rules={list(self.rules)!r}")
        if self.explore:
            parts.append(f"explore={list(self.explore)!r}, fire_one_in={self.fire_one_in}")
        return f"FaultPlan({', '.join(parts)})"


def fault_plans(
    *,
    sites: Sequence[str] = ERROR_SITES,
    keys: Sequence[str] = (),
    max_rules: int = 3,
    scripted: bool = True,
    exploring: bool = True,
) -> SearchStrategy[FaultPlan]:
    """Fault plans over ``sites``: none, scripted rules, or exploring a subset.

    Scripted rules pick a site, a key from ``keys`` (or any key), the hit to fire on and how
    often; an exploring plan lets the chooser activate and fire the chosen sites.  Shrinks
    toward no fault.

    Raises:
        InvalidArgument: an unknown site, no sites, or ``max_rules`` < 0.
    """
    if not sites:
        raise InvalidArgument("sites must name at least one fault site")
    for name in sites:
        try:
            get_site(name)
        except SimUsageError as exc:
            raise InvalidArgument(str(exc)) from None
    if max_rules < 0:
        raise InvalidArgument(f"max_rules={max_rules} must be at least 0")
    options: list[SearchStrategy[FaultPlan]] = [st.builds(DrawnFaultPlan)]
    site = st.sampled_from(tuple(sites))
    if scripted and max_rules:
        key = st.sampled_from((None, *keys)) if keys else st.none()
        rule = st.builds(
            lambda s, k, hit, times: Rule(s, key=k, hit=hit, times=times),
            site,
            key,
            st.integers(1, 3),
            st.sampled_from((1, None)),
        )
        options.append(
            st.lists(rule, min_size=1, max_size=max_rules).map(lambda r: DrawnFaultPlan(rules=r))
        )
    if exploring:
        subset = st.lists(site, min_size=1, max_size=len(sites), unique=True)
        options.append(
            st.builds(
                lambda s, one_in: DrawnFaultPlan(explore=s, fire_one_in=one_in),
                subset,
                st.sampled_from((4, 2, 8)),
            )
        )
    return st.one_of(options)


def latency_models(
    *, ops: Sequence[str] = _OPS, max_candidates: int = 3
) -> SearchStrategy[LatencyModel]:
    """Latency models: for some of ``ops`` (operation prefixes), 1..``max_candidates``
    candidate latencies (the first is nominal; the chooser picks per call).  Shrinks toward
    1 ms for everything.

    Raises:
        InvalidArgument: ``max_candidates`` < 1.
    """
    if max_candidates < 1:
        raise InvalidArgument(f"max_candidates={max_candidates} must be at least 1")
    candidates = st.lists(
        st.sampled_from(_LATENCIES), min_size=1, max_size=max_candidates, unique=True
    )
    table = st.dictionaries(st.sampled_from(tuple(ops)), candidates, max_size=len(ops))
    return st.builds(lambda t: LatencyModel(t), table)


def schedules(*, max_decisions: int = 200, max_choice: int = 3) -> SearchStrategy[PicksChooser]:
    """Choosers that play a drawn schedule: up to ``max_decisions`` picks in
    ``0..max_choice`` (each taken modulo the options offered), then FIFO.

    Raises:
        InvalidArgument: negative bounds.
    """
    if max_decisions < 0 or max_choice < 0:
        raise InvalidArgument("max_decisions and max_choice must be at least 0")
    picks = st.lists(st.integers(0, max_choice), max_size=max_decisions)
    return st.builds(PicksChooser, picks)


def choosers(
    *, kinds: Sequence[str] = ("fifo", "random", "pct", "schedule"), max_steps: int = 5000
) -> SearchStrategy[Chooser]:
    """Any chooser: FIFO, seeded random, PCT (depth 1..3) or a drawn schedule.

    Raises:
        InvalidArgument: an unknown kind.
    """
    known = {"fifo", "random", "pct", "schedule"}
    unknown = sorted(set(kinds) - known)
    if unknown or not kinds:
        raise InvalidArgument(f"unknown chooser kinds {unknown}; choose from {sorted(known)}")
    options: dict[str, SearchStrategy[Chooser]] = {
        "fifo": st.builds(FifoChooser),
        "random": st.builds(RandomChooser, st.integers(0, 2**32 - 1)),
        "pct": st.builds(
            lambda seed, depth: PCTChooser(seed, depth, max_steps),
            st.integers(0, 2**32 - 1),
            st.integers(1, 3),
        ),
        "schedule": schedules(),
    }
    return st.one_of([options[k] for k in kinds])


# --- programs ----------------------------------------------------------------------------


_ALL_KINDS = tuple(k for k in ACTIONS if k not in ("inject", "heal"))


@st.composite
def _programs(
    draw: DrawFn,
    image_strategy: SearchStrategy[tuple[ImageSpec, ...]],
    kinds: tuple[str, ...],
    min_actions: int,
    max_actions: int,
    snapshotters: tuple[str, ...],
    gc_scheduler: bool | None,
) -> Program:
    specs = draw(image_strategy)
    builder = _ProgramBuilder(draw, specs, snapshotters)
    for _ in range(draw(st.integers(min_actions, max_actions))):
        builder.time += draw(st.sampled_from(_GAPS))
        options = [k for k in kinds if builder.possible(k)]
        if options:
            builder.add(draw(st.sampled_from(options)))
    scheduler = draw(st.booleans()) if gc_scheduler is None else gc_scheduler
    return Program(specs, tuple(builder.actions), snapshotters, gc_scheduler=scheduler)


class _ProgramBuilder:
    """Draws valid actions one at a time (names refer to what exists so far)."""

    def __init__(self, draw: DrawFn, specs: tuple[ImageSpec, ...], sns: tuple[str, ...]):
        self.draw = draw
        self.specs = specs
        self.sns = sns
        self.time = 0.0
        self.actions: list[Action] = []
        self.pulls: list[str] = []
        self.leases: list[str] = []

    def possible(self, kind: str) -> bool:
        if kind == "cancel":
            return bool(self.pulls)
        if kind in ("delete_lease", "expire_lease"):
            return bool(self.pulls or self.leases)
        return True

    def _pick(self, values: Sequence[Any]) -> Any:
        return self.draw(st.sampled_from(tuple(values)))

    def _image(self) -> str:
        return str(self._pick([s.name for s in self.specs]))

    def _sn(self) -> str | None:
        return None if len(self.sns) == 1 else str(self._pick(self.sns))

    def add(self, kind: str) -> None:
        n = len(self.actions) + 1
        at = round(self.time, 6)
        action = getattr(self, f"_{kind}")(at, n)
        self.actions.append(action)

    def _pull(self, at: float, n: int) -> Action:
        actor = f"p{len(self.pulls) + 1}"
        self.pulls.append(actor)
        lease = self._pick([None, *self.leases]) if self.leases else None
        limit = self._pick((0, 1, 2))
        discard = self.draw(st.booleans())
        return Pull(
            at=at,
            actor=actor,
            image=self._image(),
            snapshotter=self._sn(),
            discard=discard,
            lease=lease,
            max_concurrent_downloads=limit,
        )

    def _cancel(self, at: float, n: int) -> Action:
        return Cancel(at=at, actor=f"kubelet{n}", target=str(self._pick(self.pulls)))

    def _delete_image(self, at: float, n: int) -> Action:
        sync = self.draw(st.booleans())
        return DeleteImage(at=at, actor=f"user{n}", image=self._image(), sync=sync)

    def _create_lease(self, at: float, n: int) -> Action:
        lease = f"lease{len(self.leases) + 1}"
        self.leases.append(lease)
        expire = self._pick((None, 86400.0, 0.5))
        return CreateLease(at=at, actor=f"user{n}", lease=lease, expire_in=expire)

    def _lease_target(self) -> dict[str, str]:
        if self.leases and (not self.pulls or self.draw(st.booleans())):
            return {"lease": str(self._pick(self.leases))}
        return {"of_pull": str(self._pick(self.pulls))}

    def _delete_lease(self, at: float, n: int) -> Action:
        sync = self.draw(st.booleans())
        return DeleteLease(at=at, actor=f"user{n}", sync=sync, **self._lease_target())

    def _expire_lease(self, at: float, n: int) -> Action:
        return ExpireLease(at=at, actor=f"clock{n}", **self._lease_target())

    def _edit_labels(self, at: float, n: int) -> Action:
        selector = str(self._pick(LABEL_SELECTORS))
        return EditLabels(at=at, actor=f"user{n}", image=self._image(), selector=selector)

    def _gc(self, at: float, n: int) -> Action:
        return CollectGarbage(at=at, actor=f"gc{n}", sync=self.draw(st.booleans()))

    def _hold_snapshot(self, at: float, n: int) -> Action:
        return HoldSnapshot(
            at=at, actor=f"ctr{n}", image=self._image(), container=f"c{n}", snapshotter=self._sn()
        )

    def _unpack(self, at: float, n: int) -> Action:
        return Unpack(at=at, actor=f"client{n}", image=self._image(), snapshotter=self._sn())

    def _inject(self, at: float, n: int) -> Action:
        return Inject(at=at, actor=f"chaos{n}", site=str(self._pick(ERROR_SITES)))

    def _heal(self, at: float, n: int) -> Action:
        return Heal(at=at, actor=f"chaos{n}")


def programs(
    *,
    images: SearchStrategy[tuple[ImageSpec, ...]] | Sequence[ImageSpec] | None = None,
    actions: Sequence[str] = _ALL_KINDS,
    min_actions: int = 1,
    max_actions: int = 8,
    snapshotters: Sequence[str] = ("native",),
    gc_scheduler: bool | None = True,
) -> SearchStrategy[Program]:
    """Programs of ``min_actions..max_actions`` actions of the kinds in ``actions``.

    ``images`` is a strategy of image tuples (default :func:`image_sets`) or fixed images.
    Actions are drawn in time order (gaps of 0 to 50 ms, so they overlap), each valid for
    what exists before it (a cancel targets an earlier pull, a lease deletion an earlier
    lease or pull); an action kind whose precondition never holds is skipped.  Actor names
    say what they are: ``p1`` pulls, ``user3`` deletes, ``gc4`` collects, ``ctr5`` holds a
    container.  ``gc_scheduler`` None draws whether containerd's GC scheduler runs.

    Raises:
        InvalidArgument: an unknown action kind, bad bounds, or no snapshotter.
    """
    unknown = sorted(set(actions) - set(ACTIONS))
    if unknown or not actions:
        raise InvalidArgument(f"unknown action kinds {unknown}; choose from {list(ACTIONS)}")
    _bounds("actions", min_actions, max_actions)
    if not snapshotters:
        raise InvalidArgument("snapshotters must name at least one snapshotter")
    if images is None:
        image_strategy: SearchStrategy[tuple[ImageSpec, ...]] = image_sets()
    elif isinstance(images, SearchStrategy):
        image_strategy = images
    else:
        image_strategy = st.just(tuple(images))
    return _programs(
        image_strategy,
        tuple(actions),
        min_actions,
        max_actions,
        tuple(snapshotters),
        gc_scheduler,
    )


def all_sites() -> list[str]:
    """Every registered fault site's name (for ``fault_plans(sites=...)``)."""
    return [s.name for s in sites()]
