"""The concurrent state machine: overlapping actions in simulated time, checked at every step.

A Hypothesis ``RuleBasedStateMachine`` whose rules are the actions of a program
(:mod:`unpacksim.properties.scenario`): start a pull (any preset or plugged-in
implementation, any snapshotter, discarding or not, with or without a user lease), cancel it,
delete an image, create, delete or expire a lease, remove a label, run GC (now or
synchronously through the scheduler), hold a snapshot with a container, unpack an image
into a snapshotter, inject a fault, heal, and advance simulated time.  An action starts at the
current simulated time and runs as its own goroutine, so a pull started by one rule is still
running while the next rules delete its image or collect garbage; only ``advance`` moves
time (and with it every action in flight).  Each ``advance`` also hands the chooser a few
drawn scheduling picks, so the interleaving is part of the test case and shrinks with it.

After every rule the step invariants run (the GC graph invariants, and the Prepare monitor's
findings); at the end the machine heals the faults, lets everything converge, and checks the
properties that hold at rest.  A failure raises :class:`MachineFailure`, which carries the
recorded program, the schedule and the fault plan: ``run_program`` with
``ReplayChooser(failure.schedule)`` replays it exactly.

Use it as a test::

    from unpacksim.properties.machine import run_state_machine, state_machine_test_case

    def test_v17_cri_holds():
        run_state_machine("v1.7-cri", properties=["converges", "state-invariants"])

    TestV20 = state_machine_test_case("v2.0", actions=("pull", "delete_image", "gc"))

The Hypothesis settings come from the active profile (``ci`` is derandomized; ``soak`` runs
long searches) unless ``settings`` is given.
"""

from __future__ import annotations

import unittest
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from hypothesis import settings as Settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from hypothesis.strategies import SearchStrategy

from unpacksim.properties import checks
from unpacksim.properties.audit import DeterminismAudit
from unpacksim.properties.invariants import Violation
from unpacksim.properties.monitors import Found, Monitors
from unpacksim.properties.program import RunResult, result_of
from unpacksim.properties.runner import DEFAULT_MAX_STEPS, ProgramRunner
from unpacksim.properties.scenario import (
    ACTIONS,
    DEFAULT_PLATFORM,
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
from unpacksim.properties.strategies import ERROR_SITES, PicksChooser, fault_plans, image_sets
from unpacksim.sim.faults import FaultPlan
from unpacksim.unpack.interface import Implementation, resolve

__all__ = [
    "ADVANCES",
    "MachineConfig",
    "MachineFailure",
    "UnpackMachine",
    "run_state_machine",
    "state_machine",
    "state_machine_test_case",
]

F = TypeVar("F", bound=Callable[..., Any])

#: The time steps ``advance`` draws from (seconds); the first is the shrunk one.
ADVANCES = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.2)
#: Up to 12 scheduling picks of 0..3, packed two bits each into one drawn integer (one draw
#: instead of a list: the machine's own cost per step stays close to a bare machine's).
_PICKS = st.integers(0, 4**12 - 1)


def _picks(packed: int) -> list[int]:
    """The picks packed in ``packed``, lowest two bits first; 0 packs none."""
    out = []
    while packed:
        out.append(packed & 3)
        packed >>= 2
    return out


class MachineFailure(AssertionError):
    """A property broke in a state machine run.

    Attributes:
        found: what broke (with graphs, times and actors).
        program: the actions the machine applied, as a replayable program.
        schedule: the chooser's decisions (``ReplayChooser(schedule)`` replays them).
        faults: the fault plan the run used.
        implementation: the implementation's name.
    """

    def __init__(
        self,
        found: list[Found],
        program: Program,
        schedule: str,
        faults: FaultPlan,
        implementation: str,
    ) -> None:
        self.found = found
        self.program = program
        self.schedule = schedule
        self.faults = faults
        self.implementation = implementation
        lines = [f"{f.property}: {f.violation}" for f in found]
        lines += ["program:", *("  " + line for line in program.describe().splitlines())]
        lines.append(f"schedule: {schedule!r}")
        lines.append(f"faults: rules={list(faults.rules)} explore={list(faults.explore)}")
        super().__init__("\n".join(lines))


@dataclass(frozen=True)
class MachineConfig:
    """What a generated machine explores.

    Attributes:
        implementation: the implementation under test (name, path or object).
        images: a strategy of image tuples, or fixed images (default :func:`image_sets`).
        actions: the action kinds the rules may take (default: all).
        properties: the properties checked (default: all).
        faults: a strategy of fault plans (default: :func:`fault_plans`; ``st.just(
            FaultPlan.none())`` for none).
        snapshotters: the daemon's snapshotters.
        gc_scheduler: run containerd's GC scheduler.
        max_steps: the simulation step bound of one run.
        audit: the share of runs replayed from their recorded program and schedule
            (:class:`~unpacksim.properties.audit.DeterminismAudit`); a replay whose trace
            differs fails the run (property ``deterministic``).
    """

    implementation: str | Implementation = "v2.0"
    images: SearchStrategy[tuple[ImageSpec, ...]] | tuple[ImageSpec, ...] | None = None
    actions: tuple[str, ...] = tuple(ACTIONS)
    properties: tuple[str, ...] | None = None
    faults: SearchStrategy[FaultPlan] | None = None
    snapshotters: tuple[str, ...] = ("native",)
    gc_scheduler: bool = True
    max_steps: int = DEFAULT_MAX_STEPS
    audit: float = 0.0

    def image_strategy(self) -> SearchStrategy[tuple[ImageSpec, ...]]:
        if self.images is None:
            return image_sets(max_size=2, max_layers=3)
        if isinstance(self.images, SearchStrategy):
            return self.images
        return st.just(tuple(self.images))

    def fault_strategy(self) -> SearchStrategy[FaultPlan]:
        return fault_plans() if self.faults is None else self.faults


def _on(kind: str) -> Callable[[F], F]:
    """Enable a rule once the machine is set up and only if ``kind`` is configured."""
    decorate: Callable[[F], F] = precondition(
        lambda self: self.ready and kind in self.config.actions
    )
    return decorate


class UnpackMachine(RuleBasedStateMachine):
    """The machine (see the module docstring); :func:`state_machine` makes a configured
    subclass.  After teardown, ``result`` holds the :class:`RunResult` of the run."""

    config: ClassVar[MachineConfig] = MachineConfig()
    audit: ClassVar[DeterminismAudit | None] = None
    pulls = Bundle("pulls")
    leases = Bundle("leases")

    def __init__(self) -> None:
        super().__init__()
        self.runner: ProgramRunner | None = None
        self.monitors: Monitors | None = None
        self.chooser = PicksChooser()
        self.plan = FaultPlan.none()
        self.names = checks.property_names(self.config.properties)
        self.result: RunResult | None = None
        self._count = 0
        self._reported = 0
        self._broken = False

    @property
    def ready(self) -> bool:
        return self.runner is not None and not self._broken

    def _runner(self) -> ProgramRunner:
        assert self.runner is not None
        return self.runner

    # --- setup -----------------------------------------------------------------------------

    @initialize(picks=_PICKS, data=st.data())
    def setup(self, picks: int, data: st.DataObject) -> None:
        images = data.draw(self.config.image_strategy(), label="images")
        self.plan = data.draw(self.config.fault_strategy(), label="faults")
        self.chooser = PicksChooser(_picks(picks))
        program = Program(
            images, (), self.config.snapshotters, gc_scheduler=self.config.gc_scheduler
        )
        self.runner, self.monitors = self._start(program)

    def _start(self, program: Program) -> tuple[ProgramRunner, Monitors | None]:
        """The run's runner and monitors (a benchmark replaces them with stubs)."""
        runner = ProgramRunner(
            program,
            self.config.implementation,
            chooser=self.chooser,
            faults=self.plan,
            max_steps=self.config.max_steps,
        )
        return runner, Monitors(runner)

    # --- helpers ---------------------------------------------------------------------------

    def _actor(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}{self._count}"

    def _image(self, i: int) -> ImageSpec:
        images = self._runner().program.images
        return images[i % len(images)]

    def _sn(self, i: int) -> str:
        sns = self.config.snapshotters
        return sns[i % len(sns)]

    def _apply(self, action: Action) -> None:
        try:
            self._runner().apply(action)
        except BaseException:
            self._broken = True
            raise

    # --- rules -----------------------------------------------------------------------------

    @_on("pull")
    @rule(
        target=pulls,
        image=st.integers(0, 7),
        sn=st.integers(0, 3),
        discard=st.booleans(),
        limit=st.sampled_from((0, 1, 2)),
    )
    def pull(self, image: int, sn: int, discard: bool, limit: int) -> str:
        return self._pull(image, sn, discard, limit, None)

    @_on("pull")
    @rule(target=pulls, lease=leases, image=st.integers(0, 7), discard=st.booleans())
    def pull_with_lease(self, lease: str, image: int, discard: bool) -> str:
        return self._pull(image, 0, discard, 0, lease)

    def _pull(self, image: int, sn: int, discard: bool, limit: int, lease: str | None) -> str:
        actor = self._actor("p")
        self._apply(
            Pull(
                at=self._runner().now,
                actor=actor,
                image=self._image(image).name,
                snapshotter=self._sn(sn),
                discard=discard,
                lease=lease,
                max_concurrent_downloads=limit,
            )
        )
        return actor

    @_on("cancel")
    @rule(pull=pulls)
    def cancel(self, pull: str) -> None:
        self._apply(Cancel(at=self._runner().now, actor=self._actor("kubelet"), target=pull))

    @_on("delete_image")
    @rule(image=st.integers(0, 7), sync=st.booleans())
    def delete_image(self, image: int, sync: bool) -> None:
        name = self._image(image).name
        self._apply(
            DeleteImage(at=self._runner().now, actor=self._actor("user"), image=name, sync=sync)
        )

    @_on("create_lease")
    @rule(target=leases, expire=st.sampled_from((None, 86400.0, 0.5)))
    def create_lease(self, expire: float | None) -> str:
        actor = self._actor("user")
        lease = f"lease-{actor}"
        self._apply(CreateLease(at=self._runner().now, actor=actor, lease=lease, expire_in=expire))
        return lease

    @_on("delete_lease")
    @rule(lease=leases, sync=st.booleans())
    def delete_lease(self, lease: str, sync: bool) -> None:
        now = self._runner().now
        self._apply(DeleteLease(at=now, actor=self._actor("user"), lease=lease, sync=sync))

    @_on("delete_lease")
    @rule(pull=pulls, sync=st.booleans())
    def delete_pull_lease(self, pull: str, sync: bool) -> None:
        now = self._runner().now
        self._apply(DeleteLease(at=now, actor=self._actor("user"), of_pull=pull, sync=sync))

    @_on("expire_lease")
    @rule(lease=leases)
    def expire_lease(self, lease: str) -> None:
        self._apply(ExpireLease(at=self._runner().now, actor=self._actor("clock"), lease=lease))

    @_on("expire_lease")
    @rule(pull=pulls)
    def expire_pull_lease(self, pull: str) -> None:
        self._apply(ExpireLease(at=self._runner().now, actor=self._actor("clock"), of_pull=pull))

    @_on("edit_labels")
    @rule(image=st.integers(0, 7), selector=st.sampled_from(LABEL_SELECTORS))
    def edit_labels(self, image: int, selector: str) -> None:
        name = self._image(image).name
        self._apply(
            EditLabels(
                at=self._runner().now, actor=self._actor("user"), image=name, selector=selector
            )
        )

    @_on("gc")
    @rule(sync=st.booleans())
    def gc(self, sync: bool) -> None:
        self._apply(CollectGarbage(at=self._runner().now, actor=self._actor("gc"), sync=sync))

    @_on("hold_snapshot")
    @rule(image=st.integers(0, 7), sn=st.integers(0, 3))
    def hold_snapshot(self, image: int, sn: int) -> None:
        actor = self._actor("ctr")
        self._apply(
            HoldSnapshot(
                at=self._runner().now,
                actor=actor,
                image=self._image(image).name,
                container=f"container-{actor}",
                snapshotter=self._sn(sn),
            )
        )

    @_on("unpack")
    @rule(image=st.integers(0, 7), sn=st.integers(0, 3))
    def unpack(self, image: int, sn: int) -> None:
        name = self._image(image).name
        self._apply(
            Unpack(
                at=self._runner().now,
                actor=self._actor("client"),
                image=name,
                snapshotter=self._sn(sn),
            )
        )

    @_on("inject")
    @rule(site=st.sampled_from(ERROR_SITES), image=st.integers(0, 7), layer=st.integers(0, 7))
    def inject(self, site: str, image: int, layer: int) -> None:
        key = _fault_key(site, self._image(image), layer)
        self._apply(Inject(at=self._runner().now, actor=self._actor("chaos"), site=site, key=key))

    @_on("heal")
    @rule()
    def heal(self) -> None:
        self._apply(Heal(at=self._runner().now, actor=self._actor("chaos")))

    @precondition(lambda self: self.ready)
    @rule(dt=st.sampled_from(ADVANCES), picks=_PICKS)
    def advance(self, dt: float, picks: int) -> None:
        """Let ``dt`` simulated seconds pass (every action in flight moves on).

        ``picks`` packs scheduling picks two bits each (see :func:`_picks`): 0 adds none,
        so shrinking it drives the schedule toward FIFO.
        """
        self.chooser.extend(_picks(picks))
        runner = self._runner()
        runner.advance_to(runner.now + dt)

    # --- checks ----------------------------------------------------------------------------

    @invariant()
    def step_invariants(self) -> None:
        """The monitors' findings and the step invariants, after every rule."""
        if not self.ready or self.monitors is None:
            return
        self.monitors.step()
        runner = self._runner()
        new = [f for f in self.monitors.found[self._reported :] if f.property in self.names]
        self._reported = len(self.monitors.found)
        if runner.stopped and "converges" in self.names:
            new.append(_stopped(runner))
        if new:
            self._fail(new)

    def teardown(self) -> None:
        """Heal, converge, and check the properties that hold at rest."""
        runner, monitors = self.runner, self.monitors
        if runner is None or monitors is None or self._broken:
            return
        runner.apply(Heal(at=runner.now, actor=self._actor("heal")))
        runner.finish()
        if runner.quiescence is not None:
            monitors.step()
        self.result = result_of(runner, monitors)
        found = checks.check_all(self.result, self.names)
        self.result.found = found
        found += self._audit(self.result)
        if found:
            self._fail(found)

    def _audit(self, result: RunResult) -> list[Found]:
        audit = type(self).audit
        mismatch = audit.check(result, faults=self.plan) if audit is not None else None
        if mismatch is None:
            return []
        violation = Violation(
            "deterministic",
            mismatch.describe(),
            evidence={"time": result.outcome.time, "process": "", "actor": ""},
        )
        return [Found("deterministic", violation, result.outcome.time)]

    def _fail(self, found: list[Found]) -> None:
        """Raise :class:`MachineFailure` (from this one line, so Hypothesis sees one failure
        whether a step or the teardown found it)."""
        self._broken = True
        runner = self._runner()
        program = Program(
            runner.program.images,
            tuple(runner.applied),
            runner.program.snapshotters,
            gc_scheduler=runner.program.gc_scheduler,
        )
        raise MachineFailure(found, program, self.chooser.schedule, self.plan, runner.impl.name)


def _stopped(runner: ProgramRunner) -> Found:
    """``converges`` broken mid-run: a goroutine failed or the step bound was hit."""
    failures = [f.describe() for f in runner.env.failures]
    violation = Violation(
        "converges",
        f"the run stopped ({runner.stopped}) at t={runner.now}: " + "; ".join(failures),
        evidence={"time": runner.now, "process": "", "actor": "", "outcome": runner.stopped},
    )
    return Found("converges", violation, runner.now)


def _fault_key(site: str, image: ImageSpec, layer: int) -> str:
    """The key a fault site is hit with for layer ``layer`` of ``image`` ("" if none)."""
    built = image.build().platform(DEFAULT_PLATFORM)
    if not built.layers:
        return ""
    i = layer % len(built.layers)
    if site.startswith("snapshots."):
        return built.chain_ids[i]
    if site == "content.ref_locked":
        return f"layer-{built.layers[i].digest}"
    return built.layers[i].digest


def state_machine(
    implementation: str | Implementation = "v2.0",
    *,
    images: SearchStrategy[tuple[ImageSpec, ...]] | Sequence[ImageSpec] | None = None,
    actions: Sequence[str] | None = None,
    properties: Sequence[str] | None = None,
    faults: SearchStrategy[FaultPlan] | None = None,
    snapshotters: Sequence[str] = ("native",),
    gc_scheduler: bool = True,
    max_steps: int = DEFAULT_MAX_STEPS,
    audit: float = 0.0,
) -> type[UnpackMachine]:
    """A machine class exploring ``implementation`` (see :class:`MachineConfig`).

    Raises:
        ImplementationError: ``implementation`` does not resolve.
        InvalidArgument: an unknown action kind or property, or no snapshotter.
    """
    impl = resolve(implementation)
    kinds = tuple(ACTIONS) if actions is None else tuple(actions)
    unknown = sorted(set(kinds) - set(ACTIONS))
    if unknown:
        raise InvalidArgument(f"unknown action kinds {unknown}; choose from {list(ACTIONS)}")
    if not snapshotters:
        raise InvalidArgument("snapshotters must name at least one snapshotter")
    try:
        checks.property_names(properties)
    except ValueError as exc:
        raise InvalidArgument(str(exc)) from None
    fixed = images if images is None or isinstance(images, SearchStrategy) else tuple(images)
    config = MachineConfig(
        implementation=impl,
        images=fixed,
        actions=kinds,
        properties=None if properties is None else tuple(properties),
        faults=faults,
        snapshotters=tuple(snapshotters),
        gc_scheduler=gc_scheduler,
        max_steps=max_steps,
        audit=audit,
    )
    name = "UnpackMachine_" + "".join(c if c.isalnum() else "_" for c in impl.name)
    namespace = {"config": config, "audit": DeterminismAudit(audit) if audit else None}
    return type(name, (UnpackMachine,), namespace)


def run_state_machine(
    implementation: str | Implementation = "v2.0",
    *,
    settings: Settings | None = None,
    **options: Any,
) -> None:
    """Run the machine for ``implementation`` as a test (Hypothesis searches and shrinks).

    ``options`` are :func:`state_machine`'s keywords; ``settings`` default to the active
    profile's.  (Hypothesis's ``explain`` phase traces every line of the simulation once a
    failure is shrunk, which makes reporting a failure several times slower; leave
    ``Phase.explain`` out of ``settings.phases`` where that matters.)

    Raises:
        MachineFailure: a property broke (the shrunk failure).
    """
    machine = state_machine(implementation, **options)
    run_state_machine_as_test(machine, settings=settings)  # type: ignore[no-untyped-call,unused-ignore]


def state_machine_test_case(
    implementation: str | Implementation = "v2.0",
    *,
    settings: Settings | None = None,
    **options: Any,
) -> type[unittest.TestCase]:
    """A ``unittest.TestCase`` class running the machine (assign it to a ``Test*`` name)."""
    machine = state_machine(implementation, **options)
    if settings is not None:
        machine.TestCase.settings = settings
    case: type[unittest.TestCase] = machine.TestCase
    return case
