"""``World``: everything one simulated run has.

A world is one simulated containerd daemon and the registry it pulls from:

- ``env``: the :class:`~unpacksim.sim.env.Environment` (its chooser orders same-instant
  events; its fault plan decides the fault sites); ``services``: latency, trace, the metadata
  write lock;
- ``db``: the metadata :class:`~unpacksim.model.db.DB`, whose clock is simulated time;
- the model stores (``content_store``, ``snapshot_stores``, ``lease_manager``,
  ``image_store``) and, for clients, their timed proxies (``content``, ``snapshotters``,
  ``leases``, ``images``; :mod:`unpacksim.sim.proxies`);
- ``registry``: the remote :class:`~unpacksim.unpack.registry.Registry`; ``applier``: the
  daemon's :class:`~unpacksim.unpack.applier.DiffApplier`; ``gc``: the
  :class:`~unpacksim.sim.gcproc.GCProcess`;
- ``namespace`` (``default``) and ``unique`` (extraction keys and lease IDs).

Client code (a pull, the properties layer) uses only the proxies, the registry, the applier
and the GC, so every step it takes is traced, timed, a scheduling point and a fault site::

    world = World.create(chooser=RandomChooser(7))
    world.push(build_image("registry.test/app:1", [{"etc/os-release": b"x"}]))
    ctx = world.context()
    world.go(my_pull(world, ctx, "registry.test/app:1"), name="pull")
    outcome = world.run()

The model stores stay reachable for checks after a run (``world.db`` holds every record).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import simpy

from unpacksim.model.content import ContentStore
from unpacksim.model.db import DB
from unpacksim.model.gc_scheduler import SchedulerConfig
from unpacksim.model.images import ImageStore
from unpacksim.model.leases import LeaseManager
from unpacksim.model.snapshot_backend import MemorySnapshotter
from unpacksim.model.snapshots import MetadataSnapshotter
from unpacksim.sim.choose import Chooser
from unpacksim.sim.context import Context, background
from unpacksim.sim.env import Environment
from unpacksim.sim.faults import FaultPlan
from unpacksim.sim.gcproc import GCProcess
from unpacksim.sim.go import RWLock, go
from unpacksim.sim.proxies import (
    ContentProxy,
    ImagesProxy,
    LeasesProxy,
    SnapshotterProxy,
)
from unpacksim.sim.run import RunOutcome, run
from unpacksim.sim.services import LatencyModel, Services
from unpacksim.unpack.applier import DiffApplier, MemoryContents, Tree
from unpacksim.unpack.registry import Network, Registry
from unpacksim.unpack.unique import UniqueSource

if TYPE_CHECKING:
    from unpacksim.model.builders import BuiltImage

__all__ = ["SnapshotterSpec", "World"]


@dataclass(frozen=True)
class SnapshotterSpec:
    """A snapshotter of a world: its name, and whether its backend is a remote one.

    A remote backend (``MemorySnapshotter(remote=True)``) answers a Prepare whose target
    exists with AlreadyExists, like stargz; ``world.snapshot_backends[name].serve_remote(...)``
    makes it materialise targets itself.
    """

    name: str
    remote: bool = False


class World:
    """One run's daemon, registry and environment (see the module docstring).

    Build it with :meth:`create`; the constructor takes the parts already built.
    """

    def __init__(
        self,
        *,
        env: Environment,
        services: Services,
        db: DB,
        namespace: str,
        stores: _Stores,
        registry: Registry,
        applier: DiffApplier,
        gc: GCProcess,
    ) -> None:
        self.env = env
        self.services = services
        self.db = db
        self.namespace = namespace
        self.content_store = stores.content
        self.snapshot_stores = stores.snapshotters
        self.snapshot_backends = stores.backends
        self.contents = stores.contents
        self.lease_manager = stores.leases
        self.image_store = stores.images
        self.registry = registry
        self.applier = applier
        self.gc = gc
        self.unique = UniqueSource(env)
        self.content = ContentProxy(services, stores.content, stores.content_lock)
        self.snapshotters = {
            name: SnapshotterProxy(services, store, stores.snapshot_locks[name])
            for name, store in stores.snapshotters.items()
        }
        self.leases = LeasesProxy(services, stores.leases, gc)
        self.images = ImagesProxy(services, stores.images, gc)

    @classmethod
    def create(
        cls,
        chooser: Chooser | None = None,
        faults: FaultPlan | None = None,
        snapshotters: Sequence[str | SnapshotterSpec] = ("native",),
        gc: SchedulerConfig | bool | None = None,
        *,
        latency: LatencyModel | None = None,
        network: Network | None = None,
        namespace: str = "default",
        lease_on_exists: bool = False,
        keep_contents: bool = True,
        apply_rate: float = 256 * 1024 * 1024,
    ) -> World:
        """A fresh world.

        Args:
            chooser: orders same-instant events and takes every decision (FIFO if None).
            faults: the fault plan (none fires if None).
            snapshotters: names (or :class:`SnapshotterSpec`) of the snapshotters; the first
                is the default for pulls.
            gc: a :class:`SchedulerConfig` (or True for containerd's defaults) runs
                containerd's GC scheduler; None or False collects only on demand
                (``gc.collect``, ``gc.schedule_and_wait``, synchronous deletes, ``gc.run``).
            latency: the latency model of service calls (1 ms each if None).
            network: the registry link's bandwidth and chunk size.
            namespace: the namespace :meth:`context` uses.
            lease_on_exists: containerd #10187 (c7fb8a925) in every metadata snapshotter.
            keep_contents: keep file trees of applied layers (:meth:`tree`).
            apply_rate: bytes per simulated second the applier processes.

        Raises:
            ValueError: no snapshotter, a repeated snapshotter name, or a bad ``gc``.
        """
        env = Environment(chooser, faults=faults)
        services = Services(env, latency=latency)
        db = DB(clock=env.clock)
        stores = _Stores.build(env, db, _specs(snapshotters), lease_on_exists, keep_contents)
        gc_process = GCProcess(
            env,
            db,
            services,
            content_lock=stores.content_lock,
            snapshot_locks=stores.snapshot_locks,
            config=_scheduler_config(gc),
        )
        registry = Registry(services, network=network)
        applier = DiffApplier(
            services, stores.content, rate=apply_rate, keepers=list(stores.contents.values())
        )
        world = cls(
            env=env,
            services=services,
            db=db,
            namespace=namespace,
            stores=stores,
            registry=registry,
            applier=applier,
            gc=gc_process,
        )
        gc_process.start()
        return world

    # --- using the world -----------------------------------------------------------------

    @property
    def default_snapshotter(self) -> str:
        """The first snapshotter given to :meth:`create`."""
        return next(iter(self.snapshotters))

    def snapshotter(self, name: str | None = None) -> SnapshotterProxy:
        """The proxy of snapshotter ``name`` (default: :attr:`default_snapshotter`).

        Raises:
            KeyError: the world has no such snapshotter (the message lists the ones it has).
        """
        key = self.default_snapshotter if name is None else name
        proxy = self.snapshotters.get(key)
        if proxy is None:
            raise KeyError(
                f"this world has no snapshotter {key!r}; it has {list(self.snapshotters)} "
                "(pass snapshotters=... to World.create)"
            )
        return proxy

    def context(self, namespace: str | None = None) -> Context:
        """A background context in ``namespace`` (default: the world's)."""
        return background(self.env, self.namespace if namespace is None else namespace)

    def push(self, *images: BuiltImage) -> list[str]:
        """Serve built images from the registry under their names; returns the names."""
        return [self.registry.push(image) for image in images]

    def go(self, gen: Generator[simpy.Event, Any, Any], *, name: str) -> simpy.Process:
        """Start ``gen`` as a goroutine of this world (:func:`unpacksim.sim.go.go`)."""
        return go(self.env, gen, name=name)

    def run(self, *, until: float | None = None, max_steps: int | None = None) -> RunOutcome:
        """Run the environment to a named outcome (:func:`unpacksim.sim.run.run`)."""
        return run(self.env, until=until, max_steps=max_steps)

    def tree(
        self, key: str, *, snapshotter: str | None = None, namespace: str | None = None
    ) -> Tree:
        """The file tree of snapshot ``key`` (as the metadata names it), from the backend.

        Raises:
            KeyError: no such snapshot record, contents are not kept for that snapshotter,
                or its backend snapshot is gone.
        """
        name = self.default_snapshotter if snapshotter is None else snapshotter
        keeper = self.contents.get(name)
        if keeper is None:
            raise KeyError(
                f"snapshotter {name!r} keeps no contents: build the world with keep_contents=True"
            )
        ns = self.db.namespaces.get(self.namespace if namespace is None else namespace)
        record = None if ns is None else ns.snapshots.get(name, {}).get(key)
        if record is None:
            raise KeyError(f"no snapshot {key!r} in snapshotter {name!r}")
        return keeper.tree(record.backend_key)


@dataclass
class _Stores:
    """The model stores of one daemon and the store locks their proxies and the GC share."""

    content: ContentStore
    content_lock: RWLock
    snapshotters: dict[str, MetadataSnapshotter]
    backends: dict[str, MemorySnapshotter]
    snapshot_locks: dict[str, RWLock]
    contents: dict[str, MemoryContents]
    leases: LeaseManager
    images: ImageStore

    @classmethod
    def build(
        cls,
        env: Environment,
        db: DB,
        specs: list[SnapshotterSpec],
        lease_on_exists: bool,
        keep_contents: bool,
    ) -> _Stores:
        backends = {
            s.name: MemorySnapshotter(clock=db.clock, remote=s.remote, root=f"/{s.name}")
            for s in specs
        }
        return cls(
            content=ContentStore(db),
            content_lock=RWLock(env, "content.lock"),
            snapshotters={
                name: MetadataSnapshotter(db, name, backend, lease_on_exists=lease_on_exists)
                for name, backend in backends.items()
            },
            backends=backends,
            snapshot_locks={name: RWLock(env, f"snapshots.{name}.lock") for name in backends},
            contents=(
                {name: MemoryContents(b) for name, b in backends.items()} if keep_contents else {}
            ),
            leases=LeaseManager(db),
            images=ImageStore(db),
        )


def _specs(snapshotters: Sequence[str | SnapshotterSpec]) -> list[SnapshotterSpec]:
    specs = [s if isinstance(s, SnapshotterSpec) else SnapshotterSpec(s) for s in snapshotters]
    names = [s.name for s in specs]
    if not specs or any(not isinstance(n, str) or not n for n in names):
        raise ValueError(f"a world needs snapshotter names, got {list(snapshotters)!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"snapshotter names repeat in {names}: give each one once")
    return specs


def _scheduler_config(gc: SchedulerConfig | bool | None) -> SchedulerConfig | None:
    if gc is None or gc is False:
        return None
    if gc is True:
        return SchedulerConfig()
    if isinstance(gc, SchedulerConfig):
        return gc
    raise ValueError(
        f"gc={gc!r}: pass a SchedulerConfig (or True) to run containerd's GC scheduler, "
        "or None for collections on demand only"
    )
