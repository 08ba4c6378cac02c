"""Safety monitors: checks hooked into a run, at the moment something happens.

- :class:`PrepareMonitor` (``parent-protected-at-prepare``): at every Prepare a pull issues,
  inside the metadata snapshotter's first transaction (``createSnapshot``'s check of the
  parent, ``metadata/snapshot.go``), the parent must be reachable from the GC roots of the
  reference graph.  An unprotected parent is what the seed's Stat skip leaves behind
  (containerd #3787): any collection before the Prepare removes it, and the Prepare then
  fails with "parent snapshot ... does not exist".  The check does not wait for a collection
  to happen; a Prepare on an unprotected parent is already the race.  Prepares under a lease
  the program deleted or expired, or one that is gone or past its expiry, are not judged (the
  program took the protection away, not the implementation), nor Prepares of a pull in which
  a fault already fired (an injected error need not be backed by the world's state).
- :class:`StateMonitor` (``state-invariants``): the invariants that hold at every step
  (:func:`unpacksim.properties.invariants.check_state`: the GC oracle, metadata and backend
  agreement, the parent forest, no harmful dangling edge), run at each step boundary of a
  program or state machine, and only when something happened since the last check.

Each violation is kept as a :class:`Found`: the violation (its ``evidence`` carries ``time``,
``process`` and ``actor``), and the reference graphs when the step began and when the
violation was observed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import networkx as nx

from unpacksim.model import gc
from unpacksim.model.clock import parse_rfc3339
from unpacksim.model.context import ModelContext
from unpacksim.model.labels import GC_EXPIRE
from unpacksim.model.snapshots import MetadataSnapshotter, PendingCreate
from unpacksim.properties.graph import build_graph, reachable, snapshot_id
from unpacksim.properties.invariants import Violation, check_state

if TYPE_CHECKING:
    from unpacksim.properties.runner import ProgramRunner

__all__ = ["PARENT_PROTECTED", "STATE_INVARIANTS", "Found", "Monitors", "PrepareMonitor"]

PARENT_PROTECTED = "parent-protected-at-prepare"
STATE_INVARIANTS = "state-invariants"


@dataclass(frozen=True)
class Found:
    """A violation with where it was seen: the time, the actor and process, and the graphs
    when the violating step began (``before``) and when it was observed (``after``).

    ``property`` is the registered property that found it (a violation of
    ``state-invariants`` keeps the invariant's own name in ``violation.invariant``).
    """

    property: str
    violation: Violation
    time: float
    actor: str = ""
    process: str = ""
    before: nx.MultiDiGraph | None = field(default=None, compare=False, repr=False)
    after: nx.MultiDiGraph | None = field(default=None, compare=False, repr=False)


def with_evidence(violation: Violation, **extra: Any) -> Violation:
    """``violation`` with ``extra`` added to its evidence."""
    return Violation(
        violation.invariant,
        violation.message,
        node=violation.node,
        path=violation.path,
        missing_edge=violation.missing_edge,
        evidence={**dict(violation.evidence), **extra},
    )


class _WatchedSnapshotter:
    """A metadata snapshotter whose ``create_begin`` tells the monitor first."""

    def __init__(self, store: MetadataSnapshotter, monitor: PrepareMonitor) -> None:
        self._store = store
        self._monitor = monitor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def create_begin(
        self,
        ctx: ModelContext,
        key: str,
        parent: str = "",
        *,
        labels: Mapping[str, str] | None = None,
        readonly: bool = False,
    ) -> PendingCreate:
        if parent and not readonly:
            self._monitor.at_prepare(ctx, self._store.name, key, parent)
        return self._store.create_begin(ctx, key, parent, labels=labels, readonly=readonly)


class PrepareMonitor:
    """``parent-protected-at-prepare`` (see the module docstring)."""

    def __init__(self, runner: ProgramRunner, found: list[Found]) -> None:
        self.runner = runner
        self.found = found
        self.checked = 0
        self._scanned = 0
        self._faulted_actors: set[str] = set()

    def install(self) -> None:
        """Watch every snapshotter of the runner's world."""
        for proxy in self.runner.world.snapshotters.values():
            store = getattr(proxy, "store", None)
            if isinstance(store, MetadataSnapshotter):
                proxy.store = _WatchedSnapshotter(store, self)  # type: ignore[assignment]

    def _faulted(self, actor: str) -> bool:
        """Whether a fault (other than a collection starting) fired in ``actor`` so far: an
        injected error tells a story the world does not back (a Commit AlreadyExists with no
        snapshot behind it), so what follows in that pull is not judged."""
        events = self.runner.env.trace.events
        for event in events[self._scanned :]:
            if event.type == "fault" and event.op != "gc.run":
                self._faulted_actors.add(self.runner.actor_of(event.process))
        self._scanned = len(events)
        return actor in self._faulted_actors

    def _lease_live(self, ctx: ModelContext) -> bool:
        """Whether the Prepare's lease is one the program left alone and still lives."""
        lease = ctx.lease
        if not lease:
            return True  # no lease at all: nothing but the implementation to blame
        if lease in self.runner.revoked:
            return False
        record = self.runner.world.db.namespace(ctx.namespace or "").leases.get(lease)
        if record is None:
            return False
        expire = (
            parse_rfc3339(record.labels.get(GC_EXPIRE, "")) if GC_EXPIRE in record.labels else None
        )
        return expire is None or not self.runner.now > expire

    def at_prepare(self, ctx: ModelContext, snapshotter: str, key: str, parent: str) -> None:
        runner = self.runner
        env = runner.env
        process = env.process_name()
        actor = runner.actor_of(process)
        if not runner.is_pull(actor) or not self._lease_live(ctx) or self._faulted(actor):
            return
        self.checked += 1
        namespace = ctx.namespace or ""
        # The model's mark decides (fast; the gc-oracle invariant holds it to the graph's
        # reachability at every step); the graph is built only as evidence.
        wanted = gc.Node(gc.ResourceType.SNAPSHOT, namespace, f"{snapshotter}/{parent}")
        if wanted in gc.mark(runner.world.db):
            return
        graph = build_graph(runner.world.db)
        node = snapshot_id(namespace, snapshotter, parent)
        if node in reachable(graph):
            return
        present = node in graph and bool(graph.nodes[node]["present"])
        holders = sorted(src for src, _ in graph.in_edges(node)) if node in graph else []
        state = "unreachable from every GC root" if present else "already gone"
        violation = Violation(
            PARENT_PROTECTED,
            f"{actor} prepared {key!r} on parent {parent} while the parent was {state}",
            node=node,
            evidence={
                "time": float(env.now),
                "process": process,
                "actor": actor,
                "key": key,
                "parent": parent,
                "snapshotter": snapshotter,
                "lease": ctx.lease or "",
                "parent_present": present,
                "referenced_by": holders,
            },
        )
        before = runner.boundary_graph
        self.found.append(
            Found(PARENT_PROTECTED, violation, float(env.now), actor, process, before, graph)
        )


class StateMonitor:
    """``state-invariants`` at step boundaries, when the trace grew since the last check."""

    def __init__(self, runner: ProgramRunner, found: list[Found]) -> None:
        self.runner = runner
        self.found = found
        self._seen: set[tuple[str, str, str]] = set()
        self._events = -1

    def check(self) -> list[Found]:
        """Check now; returns the violations not seen before (also added to ``found``)."""
        runner = self.runner
        events = len(runner.env.trace.events)
        if events == self._events and runner.boundary_graph is not None:
            return []
        self._events = events
        graph = build_graph(runner.world.db)
        before = runner.boundary_graph
        runner.boundary_graph = graph
        new: list[Found] = []
        for violation in check_state(runner.world.db, graph):
            key = (violation.invariant, violation.node or "", violation.message)
            if key in self._seen:
                continue
            self._seen.add(key)
            now = runner.now
            item = Found(
                STATE_INVARIANTS,
                with_evidence(violation, time=now, process="", actor=""),
                now,
                before=before,
                after=graph,
            )
            new.append(item)
        self.found.extend(new)
        return new


class Monitors:
    """The monitors of one run: the Prepare monitor (installed) and the state monitor."""

    def __init__(self, runner: ProgramRunner) -> None:
        self.found: list[Found] = []
        self.prepare = PrepareMonitor(runner, self.found)
        self.state = StateMonitor(runner, self.found)
        self.prepare.install()

    def step(self) -> list[Found]:
        """Run the step-boundary checks; returns what they found new."""
        return self.state.check()
