"""Running a program step by step: the world, the actors, convergence.

:class:`ProgramRunner` is shared by :func:`unpacksim.properties.program.run_program` (which
applies a whole program) and the state machine (which applies one action per rule).  Both
drive it the same way, so a machine run and the program it recorded produce the same trace
under the same chooser decisions:

- :meth:`ProgramRunner.apply` moves simulated time to the action's ``at`` (running every event
  scheduled before it) and starts the action as a goroutine named after its actor;
- :meth:`ProgramRunner.advance_to` runs the events before a time, then sets the clock to it;
- :meth:`ProgramRunner.finish` runs until every action has ended (the faults stay armed
  unless a :class:`Heal` action ran, for ten simulated seconds at most), heals the faults, collects garbage with the leases as
  the pulls left them, then deletes every lease and collects again (the state at rest).

Every action goes through the world's proxies, so it is traced, timed and fault-checked like
the pulls.  The runner remembers which actor started every process (:meth:`actor_of`), which
leases the program revoked, and which blobs it relabelled, so properties can tell an
implementation's fault from the program's interference.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import simpy

from unpacksim.model.clock import format_rfc3339
from unpacksim.model.content import Info
from unpacksim.model.db import Kind
from unpacksim.model.errdefs import ContainerdError, error_class
from unpacksim.model.labels import GC_EXPIRE
from unpacksim.properties.clients import (
    create_container,
    expire_lease,
    label_selection,
    top_chain,
)
from unpacksim.properties.graph import build_graph
from unpacksim.properties.scenario import (
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
    Inject,
    Program,
    ProgramError,
    Pull,
    Unpack,
)
from unpacksim.sim.choose import Chooser
from unpacksim.sim.context import CancelFunc, Context
from unpacksim.sim.env import GoroutineFailure, describe_wait
from unpacksim.sim.faults import FaultPlan, FaultSite, Rule, get_site
from unpacksim.sim.run import BlockedProcess, RunOutcome
from unpacksim.unpack.eras import preset
from unpacksim.unpack.fallback import image_unpack
from unpacksim.unpack.goerrors import GoError
from unpacksim.unpack.interface import Implementation, resolve, run_pull
from unpacksim.unpack.platforms import DEFAULT_PLATFORM as PULL_PLATFORM
from unpacksim.unpack.platforms import only
from unpacksim.unpack.pull import LEASE_EXPIRY
from unpacksim.unpack.registry import Network
from unpacksim.unpack.results import PullLog, PullOptions, PullResult
from unpacksim.unpack.session import Session
from unpacksim.unpack.world import World

__all__ = ["ActionRecord", "HealingFaultPlan", "ProgramRunner", "Quiescence"]

Proc = Generator[Any, Any, Any]
#: The step bound of a whole run (a run that long is a livelock).
DEFAULT_MAX_STEPS = 200_000
#: Simulated seconds after the last action that faults stay armed at most (without ``Heal``).
DEFAULT_HEAL_AFTER = 10.0


class HealingFaultPlan(FaultPlan):
    """A fault plan that can be healed (no fault fires afterwards) and armed one hit at a time.

    Built from any plan's description (its rules, explored sites and rates).  ``inject``
    arms a one-shot rule: the next hit of the site with that key fires.
    """

    def __init__(self, base: FaultPlan | None = None) -> None:
        base = base if base is not None else FaultPlan.none()
        super().__init__(
            rules=base.rules,
            explore=base.explore,
            fire_one_in=base.fire_one_in,
            max_fires=base.max_fires,
        )
        self.healed = False
        self.injected: list[Rule] = []

    def heal(self) -> None:
        """From now on nothing fires (hits are no longer counted either)."""
        self.healed = True

    def inject(self, site: str, key: str = "") -> None:
        """The next hit of ``site`` (with ``key``, or any key if "") fires.

        Raises:
            SimUsageError: no such site.
        """
        get_site(site)
        self.injected.append(Rule(site, key=key or None))

    def check(self, site: str, *, key: str = "", detail: str = "") -> bool:
        if self.healed:
            return False
        return super().check(site, key=key, detail=detail)

    def _decide(self, spec: FaultSite, key: str) -> type[ContainerdError] | bool:
        for i, rule in enumerate(self.injected):
            if rule.site == spec.name and rule.key in (None, key):
                del self.injected[i]
                return spec.errors[0][0] if spec.is_error_site else True
        return super()._decide(spec, key)


@dataclass
class ActionRecord:
    """What one action did: when it started and ended, and its outcome.

    ``outcome`` is ``ok``, an errdefs class name, ``other`` (a plain Go error), ``skipped``
    (nothing to act on, ``message`` says why) or ``running`` (it never ended).
    """

    action: Action
    process: str = ""
    started: float = 0.0
    ended: float | None = None
    outcome: str = "running"
    message: str = ""

    def finish(self, now: float, error: BaseException | None = None, skipped: str = "") -> None:
        self.ended = now
        if skipped:
            self.outcome, self.message = "skipped", skipped
        elif error is None:
            self.outcome = "ok"
        else:
            self.outcome, self.message = error_class(error), str(error)

    def to_json(self) -> dict[str, Any]:
        return {
            "actor": self.action.actor,
            "action": self.action.kind,
            "process": self.process,
            "started": self.started,
            "ended": self.ended,
            "outcome": self.outcome,
            "message": self.message,
        }


@dataclass(frozen=True)
class Quiescence:
    """The state once every action ended and a GC ran, leases as the pulls left them.

    ``active`` maps each snapshotter to its active snapshot keys (sorted); ``leases`` are the
    lease IDs still there.
    """

    time: float
    active: dict[str, tuple[str, ...]] = field(default_factory=dict)
    leases: tuple[str, ...] = ()


class ProgramRunner:
    """One run of a program against an implementation (see the module docstring).

    Args:
        program: the images and configuration (its actions are not applied: call
            :meth:`apply` for each, or :meth:`apply_all`).
        implementation: a registered name, a ``module:attribute`` path, or an object.
        chooser: orders same-instant events and takes every decision (FIFO if None).
        faults: the fault plan (none if None); healed at a :class:`Heal` and at the end.
        max_steps: the step bound of the whole run.
        heal_after: without a :class:`Heal` action, how long after the last action the
            faults stay armed at most (they heal earlier once every action has ended).

    Raises:
        ImplementationError: ``implementation`` does not resolve.
    """

    def __init__(
        self,
        program: Program,
        implementation: str | Implementation,
        *,
        chooser: Chooser | None = None,
        faults: FaultPlan | None = None,
        max_steps: int = DEFAULT_MAX_STEPS,
        heal_after: float = DEFAULT_HEAL_AFTER,
    ) -> None:
        self.program = program
        self.heal_after = heal_after
        self.impl = resolve(implementation)
        self.plan = HealingFaultPlan(faults)
        self.world = World.create(
            chooser=chooser,
            faults=self.plan,
            snapshotters=program.snapshotters,
            gc=True if program.gc_scheduler else None,
            latency=program.latency,
            network=Network(bandwidth=program.bandwidth) if program.bandwidth else None,
            **dict(self.impl.world_options),
        )
        self.env = self.world.env
        self.max_steps = max_steps
        self.steps = 0
        self.applied: list[Action] = []
        self.records: list[ActionRecord] = []
        self.pull_results: dict[str, PullResult | None] = {}
        self.pull_actors: set[str] = set()
        self.cancels: dict[str, CancelFunc] = {}
        self.revoked: dict[str, float] = {}  # lease ID -> when the program deleted/expired it
        self.edited: list[tuple[float, str]] = []  # (time, blob digest) relabelled
        self.roots: dict[str, str] = {}  # root process name -> actor
        self.parents: dict[str, str] = {}  # process name -> parent process name
        self._actors: dict[str, str] = {}  # process name -> actor, once asked
        self.heal_time: float | None = None
        self.quiescence: Quiescence | None = None
        self.quiescent_graph: nx.MultiDiGraph | None = None
        self.boundary_graph: nx.MultiDiGraph | None = None
        self.outcome: RunOutcome | None = None
        self.stopped = ""  # why the run stopped early ("" if it did not)
        self._track_processes()
        self.world.push(*(spec.build() for spec in program.images))

    # --- process attribution --------------------------------------------------------------

    def _track_processes(self) -> None:
        env = self.env
        start = env.start

        def tracked(
            generator: Generator[simpy.Event, Any, Any],
            *,
            name: str | None,
            daemon: bool,
            goroutine: bool,
        ) -> simpy.Process:
            parent = env.process_name() if env.active_process is not None else ""
            proc = start(generator, name=name, daemon=daemon, goroutine=goroutine)
            self.parents[env.process_name(proc)] = parent
            return proc

        # Remember who started whom: an instance attribute shadowing Environment.start.
        env.start = tracked  # type: ignore[method-assign]

    def actor_of(self, process: str) -> str:
        """The actor whose action started ``process`` (``gc`` for the collector, ``daemon``
        for anything else the world runs)."""
        actor = self._actors.get(process)
        if actor is None:
            actor = self._actors[process] = self._find_actor(process)
        return actor

    def _find_actor(self, process: str) -> str:
        seen = 0
        while process and seen < 1000:
            if process in self.roots:
                return self.roots[process]
            if process.startswith("gc."):
                return "gc"
            process = self.parents.get(process, "")
            seen += 1
        return "daemon"

    def is_pull(self, actor: str) -> bool:
        """Whether ``actor`` started a pull."""
        return actor in self.pull_actors

    # --- time --------------------------------------------------------------------------

    @property
    def now(self) -> float:
        return float(self.env.now)

    def advance_to(self, t: float) -> None:
        """Run every event scheduled before ``t``, then set the clock to ``t``.

        Stops early (and records why in :attr:`stopped`) at the step bound or when a
        goroutine failed.
        """
        env = self.env
        while not self.stopped and env.peek() < t:
            if env.failures:
                self.stopped = "failed"
                break
            if self.steps >= self.max_steps:
                self.stopped = "step_bound"
                break
            env.step()
            self.steps += 1
        if not self.stopped and env.failures:
            self.stopped = "failed"
        if env.now < t and not self.stopped:
            env._now = t  # nothing is scheduled before t: jump, as SimPy's run(until) does

    # --- actions -----------------------------------------------------------------------

    def apply_all(self, actions: tuple[Action, ...] | list[Action]) -> None:
        for action in actions:
            self.apply(action)

    def apply(self, action: Action) -> ActionRecord:
        """Advance to ``action.at`` and start the action; returns its record.

        Raises:
            ProgramError: the action is earlier than the last one, or names something the
                program does not have (an image, a snapshotter, an unknown pull).
            ImplementationError: a pull names an implementation that does not resolve.
        """
        if self.applied and action.at < self.applied[-1].at:
            raise ProgramError(f"{action.describe()} is earlier than the action before it")
        self._validate(action)
        if action.at > self.now:
            self.advance_to(action.at)
        self.applied.append(action)
        if isinstance(action, Pull):
            self.pull_actors.add(action.actor)
        record = ActionRecord(action, started=self.now)
        self.records.append(record)
        self._start(action, record)
        return record

    def _validate(self, action: Action) -> None:
        # The program's own checks, on this action after the ones applied.
        pulls = sorted(self.pull_actors)
        self.program.check_action(action, pulls)
        if isinstance(action, Pull) and action.implementation is not None:
            resolve(action.implementation)

    def _start(self, action: Action, record: ActionRecord) -> None:
        now = self.now
        if isinstance(action, Cancel):
            self.cancels[action.target]()
            record.finish(now)
            return
        if isinstance(action, Inject):
            self.plan.inject(action.site, action.key)
            record.finish(now)
            return
        if isinstance(action, Heal):
            self.plan.heal()
            self.heal_time = now if self.heal_time is None else self.heal_time
            record.finish(now)
            return
        body = self._body(action, record)
        proc = self.world.go(self._recorded(body, record), name=action.actor)
        record.process = self.env.process_name(proc)
        self.roots[record.process] = action.actor

    def _recorded(self, body: Proc, record: ActionRecord) -> Proc:
        """Run an action body; it returns "" (done), a reason it skipped, or a pull's error."""
        try:
            out = yield from body
        except (ContainerdError, GoError) as exc:
            record.finish(self.now, exc)
            return
        if isinstance(out, BaseException):
            record.finish(self.now, out)
        else:
            record.finish(self.now, skipped=out or "")

    def _body(self, action: Action, record: ActionRecord) -> Proc:
        handlers: dict[type[Action], Callable[[Any], Proc]] = {
            Pull: self._pull,
            DeleteImage: self._delete_image,
            CreateLease: self._create_lease,
            DeleteLease: self._delete_lease,
            ExpireLease: self._expire_lease,
            EditLabels: self._edit_labels,
            CollectGarbage: self._collect,
            HoldSnapshot: self._hold_snapshot,
            Unpack: self._unpack,
        }
        return handlers[type(action)](action)

    def _ctx(self) -> Context:
        return self.world.context()

    def _pull(self, action: Pull) -> Proc:
        # Set up now, not when the goroutine first runs: a Cancel at the same instant must
        # find the pull's cancel function.
        impl = self.impl if action.implementation is None else resolve(action.implementation)
        ctx, cancel = self._ctx().with_cancel()
        self.cancels[action.actor] = cancel
        self.pull_results[action.actor] = None
        if action.lease:
            ctx = ctx.with_lease(action.lease)
        opts = PullOptions(
            snapshotter=action.snapshotter or self.world.default_snapshotter,
            discard_content=action.discard,
            max_concurrent_downloads=action.max_concurrent_downloads,
        )
        return self._pull_run(impl, ctx, action, opts)

    def _pull_run(
        self, impl: Implementation, ctx: Context, action: Pull, opts: PullOptions
    ) -> Proc:
        result = yield from run_pull(impl, self.world, ctx, action.image, opts)
        self.pull_results[action.actor] = result
        return result.error or ""

    def _delete_image(self, action: DeleteImage) -> Proc:
        yield from self.world.images.delete(self._ctx(), action.image, sync=action.sync)
        return ""

    def _create_lease(self, action: CreateLease) -> Proc:
        labels = {}
        if action.expire_in is not None:
            labels[GC_EXPIRE] = format_rfc3339(self.now + action.expire_in)
        yield from self.world.leases.create(self._ctx(), id=action.lease, labels=labels)
        return ""

    def pull_lease(self, actor: str) -> str | None:
        """The lease pull ``actor`` runs under: its user lease, or the one it created."""
        pull = next((a for a in self.applied if isinstance(a, Pull) and a.actor == actor), None)
        if pull is None:
            return None
        if pull.lease:
            return pull.lease
        for event in self.env.trace.events:
            is_create = event.type == "invoke" and event.op == "leases.create"
            if is_create and self.actor_of(event.process) == actor:
                return str(event.args["id"])
        return None

    def _target_lease(self, action: DeleteLease | ExpireLease) -> str | None:
        if action.lease is not None:
            return action.lease
        assert action.of_pull is not None
        return self.pull_lease(action.of_pull)

    def _delete_lease(self, action: DeleteLease) -> Proc:
        lease = self._target_lease(action)
        if lease is None:
            return f"pull {action.of_pull} has no lease yet"
        self.revoked.setdefault(lease, self.now)
        yield from self.world.leases.delete(self._ctx(), lease, sync=action.sync)
        return ""

    def _expire_lease(self, action: ExpireLease) -> Proc:
        lease = self._target_lease(action)
        if lease is None:
            return f"pull {action.of_pull} has no lease yet"
        self.revoked.setdefault(lease, self.now)
        yield from expire_lease(self.world, self._ctx(), lease)
        return ""

    def _edit_labels(self, action: EditLabels) -> Proc:
        digest, wanted = label_selection(self.program, action)
        if not digest:
            return f"image {action.image} has no {action.selector.split('.')[0]}"
        ctx = self._ctx()
        info = yield from self.world.content.info(ctx, digest)
        keys = sorted(k for k, v in info.labels.items() if wanted(k, v))
        if not keys:
            return "no matching label"
        self.edited.append((self.now, digest))
        labels = {k: action.value or "" for k in keys}
        paths = [f"labels.{k}" for k in keys]
        yield from self.world.content.update(ctx, Info(digest, labels=labels), *paths)
        return ""

    def _collect(self, action: CollectGarbage) -> Proc:
        if action.sync:
            yield from self.world.gc.schedule_and_wait(self._ctx())
        else:
            yield from self.world.gc.collect(f"action of {action.actor}")
        return ""

    def _with_lease(self, ctx: Context, body: Callable[[Context], Proc]) -> Proc:
        """``Client.WithLease``: a lease (24 h) around ``body``, deleted afterwards."""
        lease = self.world.unique.part()
        expire = format_rfc3339(self.now + LEASE_EXPIRY)
        yield from self.world.leases.create(ctx, id=lease, labels={GC_EXPIRE: expire})
        try:
            return (yield from body(ctx.with_lease(lease)))
        finally:
            yield from self.world.leases.delete(ctx, lease)

    def _hold_snapshot(self, action: HoldSnapshot) -> Proc:
        sn = self.world.snapshotter(action.snapshotter)

        def body(ctx: Context) -> Proc:
            image = yield from self.world.images.get(ctx, action.image)
            top = yield from top_chain(self.world, ctx, image.target)
            yield from sn.prepare(ctx, action.container, top)
            yield from create_container(
                self.world, ctx, action.container, sn.name, image=action.image
            )
            return ""

        return (yield from self._with_lease(self._ctx(), body))

    def _unpack(self, action: Unpack) -> Proc:
        sn = action.snapshotter or self.world.default_snapshotter
        era = getattr(self.impl, "era", None) or preset("seed")
        log = PullLog(ref=action.image, implementation="client", started=self.now)
        session = Session(self.world, era, PullOptions(snapshotter=sn), log, name=action.actor)

        def body(ctx: Context) -> Proc:
            image = yield from self.world.images.get(ctx, action.image)
            yield from image_unpack(session, ctx, image.target, only(PULL_PLATFORM))
            return ""

        return (yield from self._with_lease(self._ctx(), body))

    # --- the end ---------------------------------------------------------------------------

    def finish(self) -> RunOutcome:
        """Run until every action ended (faults stay armed unless a :class:`Heal` ran, for
        :attr:`heal_after` simulated seconds at most), heal, collect, then delete every lease
        and collect again.

        Returns the outcome of the run to quiescence (``completed`` if every action ended);
        the trace is closed (calls still open are ``indeterminate``).
        """
        if self.heal_time is None:
            # Faults stay armed until every action ended, or for heal_after seconds at most:
            # a plan that fires on every hit (a ref lock that never frees) must end too.
            deadline = self.now + self.heal_after
            self._drive(deadline=deadline)
            if self.env.live > 0:
                self.advance_to(deadline)
            self.heal_time = self.now
        self.plan.heal()
        self.outcome = self._drive()
        if self.outcome.ok:
            self._settle(self._gc_only, "quiescence")
            self.quiescence = self._quiescence()
            self.quiescent_graph = build_graph(self.world.db)
            self._settle(self._release_all, "rest")
        self.env.trace.close_open()
        return self.outcome

    def _drive(self, deadline: float | None = None) -> RunOutcome:
        """Step until every non-daemon process ended and no call is in flight (or until the
        next event is after ``deadline``)."""
        env = self.env
        while not self.stopped and (env.live > 0 or env.trace.open_calls()):
            if deadline is not None and env.peek() > deadline:
                break
            if env.failures:
                self.stopped = "failed"
            elif self.steps >= self.max_steps:
                self.stopped = "step_bound"
            elif env.peek() == float("inf"):
                self.stopped = "deadlock"
            else:
                env.step()
                self.steps += 1
        if not self.stopped and env.failures:
            self.stopped = "failed"
        return self._outcome(self.stopped or "completed")

    def _outcome(self, name: str) -> RunOutcome:
        env = self.env
        blocked = tuple(
            BlockedProcess(info.name, describe_wait(env, info.process.target), info.daemon)
            for info in env.processes()
            if info.process is not None and info.process.is_alive
        )
        return RunOutcome(
            name=name,
            time=self.now,
            steps=self.steps,
            blocked=blocked,
            failures=tuple(env.failures),
            faults=self.plan.report(),
            schedule=env.chooser.schedule,
        )

    def _settle(self, body: Callable[[], Proc], name: str) -> None:
        proc = self.world.go(body(), name=name)
        self.roots[self.env.process_name(proc)] = name
        outcome = self._drive()
        if not outcome.ok:
            self.outcome = outcome

    def _gc_only(self) -> Proc:
        yield from self.world.gc.collect("quiescence")

    def _release_all(self) -> Proc:
        ctx = self._ctx()
        for ns in sorted(self.world.db.namespaces):
            for lease in sorted(self.world.db.namespaces[ns].leases):
                with contextlib.suppress(ContainerdError):
                    yield from self.world.leases.delete(ctx.with_namespace(ns), lease)
        yield from self.world.gc.collect("rest")

    def _quiescence(self) -> Quiescence:
        ns = self.world.db.namespace(self.world.namespace)
        active = {
            sn: tuple(sorted(k for k, r in records.items() if r.kind is Kind.ACTIVE))
            for sn, records in ns.snapshots.items()
        }
        return Quiescence(self.now, active, tuple(sorted(ns.leases)))

    @property
    def failures(self) -> list[GoroutineFailure]:
        return list(self.env.failures)
