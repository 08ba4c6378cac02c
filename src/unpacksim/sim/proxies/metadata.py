"""The lease manager and image store proxies, with ``SynchronousDelete``."""

from __future__ import annotations

import builtins
from typing import TYPE_CHECKING

from unpacksim.model.images import Image, ImageStore
from unpacksim.model.leases import Lease, LeaseManager
from unpacksim.sim.context import Context
from unpacksim.sim.go import Gen
from unpacksim.sim.proxies.base import Proxy, SyncCollector
from unpacksim.sim.services import Services

if TYPE_CHECKING:
    from unpacksim.model.db import Resource

__all__ = ["ImagesProxy", "LeasesProxy"]


class LeasesProxy(Proxy):
    """The lease manager as a client sees it; ``gc`` serves ``SynchronousDelete``."""

    def __init__(
        self, services: Services, store: LeaseManager, gc: SyncCollector | None = None
    ) -> None:
        super().__init__(services)
        self.store = store
        self.gc = gc

    def create(self, ctx: Context, *, id: str, labels: dict[str, str] | None = None) -> Gen[Lease]:
        """``Create``.

        Raises:
            AlreadyExists, Unknown, FailedPrecondition: as ``LeaseManager.create``.
        """
        return self._write(
            ctx,
            "leases.create",
            lambda: self.store.create(ctx, id=id, labels=labels),
            {"id": id, "labels": dict(labels or {})},
        )

    def delete(self, ctx: Context, id: str, *, sync: bool = False) -> Gen[None]:
        """``Delete``; with ``sync`` (``leases.SynchronousDelete``) wait for a collection.

        Raises:
            NotFound, FailedPrecondition: as ``LeaseManager.delete``.
            ValueError: ``sync`` without a GC attached to this proxy.
        """
        yield from self._write(
            ctx, "leases.delete", lambda: self.store.delete(ctx, id), {"id": id, "sync": sync}
        )
        if sync:
            yield from _sync_collect(self.gc, ctx, "leases.delete")

    def list(self, ctx: Context, *filters: str) -> Gen[list[Lease]]:
        """``List``.

        Raises:
            InvalidArgument, FailedPrecondition: as ``LeaseManager.list``.
        """
        return self._read(
            ctx, "leases.list", lambda: self.store.list(ctx, *filters), {"filters": filters}
        )

    def add_resource(self, ctx: Context, id: str, resource: Resource) -> Gen[None]:
        """``AddResource``.

        Raises:
            NotFound, InvalidArgument, NotImplementedYet: as ``LeaseManager.add_resource``.
        """
        return self._write(
            ctx,
            "leases.add_resource",
            lambda: self.store.add_resource(ctx, id, resource),
            {"id": id, "resource": list(resource)},
        )

    def delete_resource(self, ctx: Context, id: str, resource: Resource) -> Gen[None]:
        """``DeleteResource``.

        Raises:
            NotFound, InvalidArgument, NotImplementedYet: as ``LeaseManager.delete_resource``.
        """
        return self._write(
            ctx,
            "leases.delete_resource",
            lambda: self.store.delete_resource(ctx, id, resource),
            {"id": id, "resource": list(resource)},
        )

    def list_resources(self, ctx: Context, id: str) -> Gen[builtins.list[Resource]]:
        """``ListResources``.

        Raises:
            NotFound, FailedPrecondition: as ``LeaseManager.list_resources``.
        """
        return self._read(
            ctx, "leases.list_resources", lambda: self.store.list_resources(ctx, id), {"id": id}
        )


class ImagesProxy(Proxy):
    """The image store as a client sees it; ``gc`` serves ``SynchronousDelete``."""

    def __init__(
        self, services: Services, store: ImageStore, gc: SyncCollector | None = None
    ) -> None:
        super().__init__(services)
        self.store = store
        self.gc = gc

    def get(self, ctx: Context, name: str) -> Gen[Image]:
        """``Get``.

        Raises:
            NotFound, FailedPrecondition: as ``ImageStore.get``.
        """
        return self._read(ctx, "images.get", lambda: self.store.get(ctx, name), {"name": name})

    def list(self, ctx: Context, *filters: str) -> Gen[list[Image]]:
        """``List``.

        Raises:
            InvalidArgument, FailedPrecondition: as ``ImageStore.list``.
        """
        return self._read(
            ctx, "images.list", lambda: self.store.list(ctx, *filters), {"filters": filters}
        )

    def create(self, ctx: Context, image: Image) -> Gen[Image]:
        """``Create``.

        Raises:
            AlreadyExists, InvalidArgument, FailedPrecondition: as ``ImageStore.create``.
        """
        return self._write(
            ctx, "images.create", lambda: self.store.create(ctx, image), _image_args(image)
        )

    def update(self, ctx: Context, image: Image, *fieldpaths: str) -> Gen[Image]:
        """``Update``.

        Raises:
            NotFound, InvalidArgument, FailedPrecondition: as ``ImageStore.update``.
        """
        args = {**_image_args(image), "fieldpaths": list(fieldpaths)}
        return self._write(
            ctx, "images.update", lambda: self.store.update(ctx, image, *fieldpaths), args
        )

    def delete(self, ctx: Context, name: str, *, sync: bool = False) -> Gen[None]:
        """``Delete``; with ``sync`` (``images.SynchronousDelete``) wait for a collection.

        Raises:
            NotFound, FailedPrecondition: as ``ImageStore.delete``.
            ValueError: ``sync`` without a GC attached to this proxy.
        """
        yield from self._write(
            ctx,
            "images.delete",
            lambda: self.store.delete(ctx, name),
            {"name": name, "sync": sync},
        )
        if sync:
            yield from _sync_collect(self.gc, ctx, "images.delete")


def _image_args(image: Image) -> dict[str, object]:
    return {"name": image.name, "target": image.target.digest, "labels": image.labels}


def _sync_collect(gc: SyncCollector | None, ctx: Context, op: str) -> Gen[None]:
    if gc is None:
        raise ValueError(
            f"{op}(sync=True) needs a GC: build the proxy with gc=<GCProcess> "
            "(World.create does this)"
        )
    yield from gc.schedule_and_wait(ctx)
