"""What a program's other actors do as containerd clients: containers, label edits, expiry.

Each operation goes through the world's proxies or :meth:`Services.call`, so it is traced,
timed, a scheduling point and a fault site, like the pulls it races with.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from typing import Any

from unpacksim.model.clock import format_rfc3339
from unpacksim.model.db import ContainerRecord
from unpacksim.model.digest import chain_ids
from unpacksim.model.errdefs import AlreadyExists, NotFound
from unpacksim.model.filters import go_quote
from unpacksim.model.images import descriptor_from_json
from unpacksim.model.labels import GC_EXPIRE, GC_REF_CONTENT, GC_REF_SNAPSHOT_PREFIX
from unpacksim.model.oci import Descriptor, is_index_type
from unpacksim.properties.scenario import DEFAULT_PLATFORM, EditLabels, Program
from unpacksim.sim.context import Context
from unpacksim.unpack.world import World

__all__ = ["create_container", "expire_lease", "label_selection", "top_chain"]

Proc = Generator[Any, Any, Any]


def top_chain(world: World, ctx: Context, target: Descriptor) -> Generator[Any, Any, str]:
    """The image's rootfs chain ID, read as the client does (``image.RootFS`` for
    ``linux/amd64``, then ``identity.ChainID``); "" for an image without layers.

    Raises:
        NotFound: a blob is missing, or the index has no ``linux/amd64`` manifest.
    """
    manifest_desc = target
    if is_index_type(target.media_type):
        index = json.loads((yield from world.content.read_blob(ctx, target)))
        for raw in index.get("manifests") or []:
            desc = descriptor_from_json(raw)
            if desc.platform is not None and str(desc.platform) == DEFAULT_PLATFORM:
                manifest_desc = desc
                break
        else:
            raise NotFound(f"no match for platform in manifest {target.digest}")
    manifest = json.loads((yield from world.content.read_blob(ctx, manifest_desc)))
    config_desc = descriptor_from_json(manifest["config"])
    config = json.loads((yield from world.content.read_blob(ctx, config_desc)))
    ids = chain_ids(list(config["rootfs"]["diff_ids"]))
    return ids[-1] if ids else ""


def create_container(
    world: World, ctx: Context, container: str, snapshotter: str, *, image: str
) -> Proc:
    """``ContainerService.Create``: a record whose rootfs is snapshot ``container`` (GC
    treats every container as a root, ``metadata/gc.go``).

    Raises:
        AlreadyExists: 'container "<id>"' (``metadata/containers.go``).
    """
    db = world.db

    def create() -> None:
        ns = db.namespace(ctx.namespace)
        if container in ns.containers:
            raise AlreadyExists(f"container {go_quote(container)}")
        ns.containers[container] = ContainerRecord(container, snapshotter, container, image)
        db.mutated(db.dirty > 0)

    args = {"id": container, "snapshotter": snapshotter, "image": image}
    yield from world.services.call(ctx, "containers.create", create, args=args, write=True)


def expire_lease(world: World, ctx: Context, lease: str) -> Proc:
    """Move lease ``lease``'s ``containerd.io/gc.expire`` one second into the past (its
    expiry time passing; containerd has no call to update a lease).

    Raises:
        NotFound: 'lease "<id>"' when the lease does not exist.
    """
    db = world.db

    def expire() -> None:
        record = db.namespace(ctx.namespace).leases.get(lease)
        if record is None:
            raise NotFound(f"lease {go_quote(lease)}")
        record.labels[GC_EXPIRE] = format_rfc3339(db.now() - 1)
        db.mutated(db.dirty > 0)

    yield from world.services.call(ctx, "leases.expire", expire, args={"id": lease}, write=True)


def label_selection(program: Program, action: EditLabels) -> tuple[str, Callable[[str, str], bool]]:
    """The blob ``action`` edits ("" if the image has no such blob) and a predicate on
    ``(key, value)`` selecting its labels."""
    built = program.image(action.image).build()
    image = built.platform(DEFAULT_PLATFORM)
    layers = {d.digest for d in image.layers}
    selector = action.selector
    if selector == "manifest.layers":
        return image.manifest.digest, lambda k, v: k.startswith(GC_REF_CONTENT) and v in layers
    if selector == "manifest.config":
        config = image.config.digest
        return image.manifest.digest, lambda k, v: k.startswith(GC_REF_CONTENT) and v == config
    if selector == "config.snapshot":
        return image.config.digest, lambda k, _: k.startswith(GC_REF_SNAPSHOT_PREFIX)
    if not is_index_type(built.target.media_type):
        return "", lambda k, v: False
    manifests = {p.manifest.digest for p in built.platforms.values()}
    return built.target.digest, lambda k, v: k.startswith(GC_REF_CONTENT) and v in manifests
