"""The metadata snapshotter proxy: Prepare and View keep containerd's two gaps."""

from __future__ import annotations

from collections.abc import Mapping

from unpacksim.model.labels import SNAPSHOT_REF
from unpacksim.model.snapshot_api import Info as SnapshotInfo
from unpacksim.model.snapshot_api import Mount, Usage
from unpacksim.model.snapshot_api import WalkFunc as SnapshotWalkFunc
from unpacksim.model.snapshots import MetadataSnapshotter
from unpacksim.sim.context import Context
from unpacksim.sim.go import Gen, RWLock
from unpacksim.sim.proxies.base import Proxy
from unpacksim.sim.services import Services

__all__ = ["SnapshotterProxy"]


class SnapshotterProxy(Proxy):
    """A metadata snapshotter as a client sees it; ``lock`` is its ``s.l``."""

    def __init__(self, services: Services, store: MetadataSnapshotter, lock: RWLock) -> None:
        super().__init__(services)
        self.store = store
        self.lock = lock

    @property
    def name(self) -> str:
        """The snapshotter's name (``native``, ...)."""
        return self.store.name

    def _args(self, **args: object) -> dict[str, object]:
        return {"snapshotter": self.store.name, **args}

    def stat(self, ctx: Context, key: str) -> Gen[SnapshotInfo]:
        """``Stat``.

        Raises:
            NotFound, FailedPrecondition: as ``MetadataSnapshotter.stat``.
        """
        return self._read(
            ctx, "snapshots.stat", lambda: self.store.stat(ctx, key), self._args(key=key)
        )

    def update(self, ctx: Context, info: SnapshotInfo, *fieldpaths: str) -> Gen[SnapshotInfo]:
        """``Update`` (holds ``s.l`` shared).

        Raises:
            NotFound, InvalidArgument, FailedPrecondition: as ``MetadataSnapshotter.update``.
        """
        args = self._args(key=info.name, fieldpaths=list(fieldpaths), labels=info.labels)
        return self._write(
            ctx,
            "snapshots.update",
            lambda: self.store.update(ctx, info, *fieldpaths),
            args,
            store_lock=self.lock,
        )

    def usage(self, ctx: Context, key: str) -> Gen[Usage]:
        """``Usage``.

        Raises:
            NotFound, FailedPrecondition: as ``MetadataSnapshotter.usage``.
        """
        return self._read(
            ctx, "snapshots.usage", lambda: self.store.usage(ctx, key), self._args(key=key)
        )

    def mounts(self, ctx: Context, key: str) -> Gen[list[Mount]]:
        """``Mounts``.

        Raises:
            NotFound, FailedPrecondition: as ``MetadataSnapshotter.mounts``.
        """
        return self._read(
            ctx, "snapshots.mounts", lambda: self.store.mounts(ctx, key), self._args(key=key)
        )

    def walk(self, ctx: Context, fn: SnapshotWalkFunc, *filters: str) -> Gen[None]:
        """``Walk`` (``fn`` runs inside the one simulated call).

        Raises:
            InvalidArgument, FailedPrecondition: as ``MetadataSnapshotter.walk``.
        """
        return self._read(
            ctx,
            "snapshots.walk",
            lambda: self.store.walk(ctx, fn, *filters),
            self._args(filters=list(filters)),
        )

    def prepare(
        self, ctx: Context, key: str, parent: str = "", *, labels: Mapping[str, str] | None = None
    ) -> Gen[list[Mount]]:
        """``Prepare``: create_begin, gap, create_backend, gap, create_finish (``s.l`` held).

        Fault site ``snapshots.prepare.exists`` (key: the target chain ID) is consulted when
        ``labels`` carry ``containerd.io/snapshot.ref``.

        Raises:
            AlreadyExists, NotFound, InvalidArgument, FailedPrecondition, Unknown: as
                ``MetadataSnapshotter.prepare`` (AlreadyExists also when injected).
        """
        return self._create(ctx, "snapshots.prepare", key, parent, labels, readonly=False)

    def view(
        self, ctx: Context, key: str, parent: str = "", *, labels: Mapping[str, str] | None = None
    ) -> Gen[list[Mount]]:
        """``View``: the same three steps as :meth:`prepare` (no fault site).

        Raises:
            The same as :meth:`prepare`.
        """
        return self._create(ctx, "snapshots.view", key, parent, labels, readonly=True)

    def _create(
        self,
        ctx: Context,
        op: str,
        key: str,
        parent: str,
        labels: Mapping[str, str] | None,
        *,
        readonly: bool,
    ) -> Gen[list[Mount]]:
        store, services = self.store, self.services
        target = (labels or {}).get(SNAPSHOT_REF, "")
        site = "snapshots.prepare.exists" if target and not readonly else None

        def body() -> Gen[list[Mount]]:
            yield from self.lock.rlock()
            try:
                pending = yield from services.atomic(
                    lambda: store.create_begin(ctx, key, parent, labels=labels, readonly=readonly),
                    write=True,
                )
                yield from services.gap(ctx, op)
                yield from services.atomic(lambda: store.create_backend(ctx, pending))
                yield from services.gap(ctx, op)
                return (
                    yield from services.atomic(
                        lambda: store.create_finish(ctx, pending), write=True
                    )
                )
            finally:
                self.lock.runlock()

        args = self._args(key=key, parent=parent, labels=dict(labels or {}))
        return services.call_steps(ctx, op, body, args=args, site=site, key=target)

    def commit(
        self, ctx: Context, name: str, key: str, *, labels: Mapping[str, str] | None = None
    ) -> Gen[None]:
        """``Commit`` ``key`` as ``name`` (holds ``s.l`` shared).

        Fault site ``snapshots.commit.exists`` (key: ``name``).

        Raises:
            AlreadyExists, NotFound, InvalidArgument, FailedPrecondition: as
                ``MetadataSnapshotter.commit`` (AlreadyExists also when injected).
        """
        return self._write(
            ctx,
            "snapshots.commit",
            lambda: self.store.commit(ctx, name, key, labels=labels),
            self._args(name=name, key=key, labels=dict(labels or {})),
            store_lock=self.lock,
            site="snapshots.commit.exists",
            key=name,
        )

    def remove(self, ctx: Context, key: str) -> Gen[None]:
        """``Remove`` the record (holds ``s.l`` shared); the backend waits for GC.

        Raises:
            NotFound, FailedPrecondition: as ``MetadataSnapshotter.remove``.
        """
        return self._write(
            ctx,
            "snapshots.remove",
            lambda: self.store.remove(ctx, key),
            self._args(key=key),
            store_lock=self.lock,
        )
