"""Deliberately broken implementations, plugged in to show each property failing.

Each is a small :class:`unpacksim.unpack.interface.Implementation`; several wrap the seed
reference and change one thing.  Loaded by the tests with ``load_plugins()``.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Mapping
from typing import Any

from unpacksim.model.content import Info
from unpacksim.model.digest import chain_ids
from unpacksim.model.errdefs import AlreadyExists, ContainerdError
from unpacksim.model.images import Image, descriptor_from_json
from unpacksim.model.labels import GC_ROOT, snapshot_gc_label
from unpacksim.model.oci import Descriptor
from unpacksim.sim.context import Context
from unpacksim.sim.go import sleep
from unpacksim.unpack.goerrors import GoError
from unpacksim.unpack.interface import resolve
from unpacksim.unpack.results import PullLog, PullOptions, PullResult
from unpacksim.unpack.world import World

Proc = Generator[Any, Any, Any]


class _Base:
    name = "base"
    description = "a test implementation"
    world_options: Mapping[str, Any] = {}

    def _reference(self, world: World, ctx: Context, ref: str, opts: PullOptions) -> Proc:
        return resolve("seed").pull(world, ctx, ref, opts)


class Raising(_Base):
    """Raises a plain exception (a bug, not a containerd error) mid-pull."""

    name = "raising"

    def pull(self, world: World, ctx: Context, ref: str, opts: PullOptions) -> Proc:
        yield from world.registry.resolve(ctx, ref)
        raise RuntimeError("the implementation crashed")


class Silent(_Base):
    """Fails with an empty message, or succeeds without naming the image."""

    name = "silent"

    def __init__(self, succeed: bool = False) -> None:
        self.succeed = succeed

    def pull(self, world: World, ctx: Context, ref: str, opts: PullOptions) -> Proc:
        log = PullLog(ref=ref, implementation=self.name, started=world.env.now)
        yield from world.registry.resolve(ctx, ref)
        return log.freeze(None if self.succeed else GoError(""), world.env.now)


class Vague(_Base):
    """The seed, but a failure's message names nothing."""

    name = "vague"

    def pull(self, world: World, ctx: Context, ref: str, opts: PullOptions) -> Proc:
        result: PullResult = yield from self._reference(world, ctx, ref, opts)
        if result.error is None:
            return result
        return PullLog(ref=ref, implementation=self.name, started=result.started).freeze(
            GoError("the pull did not work out"), result.ended
        )


class Naive(_Base):
    """Fetches everything, then applies and commits every layer without checking diff IDs."""

    name = "naive"

    def pull(self, world: World, ctx: Context, ref: str, opts: PullOptions) -> Proc:
        log = PullLog(ref=ref, implementation=self.name, started=world.env.now)
        error: BaseException | None = None
        try:
            name, desc = yield from world.registry.resolve(ctx, ref)
            manifest = json.loads((yield from self._fetch(world, ctx, desc)))
            config_desc = descriptor_from_json(manifest["config"])
            config = json.loads((yield from self._fetch(world, ctx, config_desc)))
            layers = [descriptor_from_json(raw) for raw in manifest["layers"]]
            top = yield from self._unpack(world, ctx, opts, layers, config)
            label = {snapshot_gc_label(opts.snapshotter): top}
            yield from world.content.update(ctx, Info(config_desc.digest, labels=label))
            yield from world.images.create(ctx, Image(name, desc))
            log.image_name = name
        except (ContainerdError, GoError) as exc:
            error = exc
        return log.freeze(error, world.env.now)

    def _fetch(self, world: World, ctx: Context, desc: Descriptor) -> Proc:
        reader = yield from world.registry.fetch(ctx, desc)
        data: bytes = yield from reader.read_all(ctx)
        try:
            writer = yield from world.content.writer(ctx, ref=f"naive-{desc.digest}", desc=desc)
        except AlreadyExists:
            return data
        try:
            yield from writer.write(ctx, data)
            yield from writer.commit(ctx, len(data), desc.digest)
        finally:
            yield from writer.close(ctx)
        return data

    def _unpack(
        self,
        world: World,
        ctx: Context,
        opts: PullOptions,
        layers: list[Descriptor],
        config: dict[str, Any],
    ) -> Proc:
        sn = world.snapshotter(opts.snapshotter)
        ids = chain_ids(list(config["rootfs"]["diff_ids"]))
        parent = ""
        for layer, chain in zip(layers, ids, strict=True):
            yield from self._fetch(world, ctx, layer)
            key = f"naive {chain}"
            mounts = yield from sn.prepare(ctx, key, parent)
            yield from world.applier.apply(ctx, layer, mounts)  # the diff ID is not checked
            yield from sn.commit(ctx, chain, key)
            parent = chain
        return parent


class Clobberer(_Base):
    """The seed, then it rewrites the manifest's labels as it read them a while ago."""

    name = "clobberer"

    def pull(self, world: World, ctx: Context, ref: str, opts: PullOptions) -> Proc:
        result: PullResult = yield from self._reference(world, ctx, ref, opts)
        if result.target is None:
            return result
        info = yield from world.content.info(ctx, result.target.digest)
        yield from sleep(ctx, 0.05)
        # No field paths: the whole label map is replaced with the stale copy.
        yield from world.content.update(ctx, Info(info.digest, labels=dict(info.labels)))
        return result


class Rogue(_Base):
    """The seed, then it breaks the daemon's state behind the stores' backs.

    ``mode="backend"`` removes a committed snapshot's backend object (metadata and backend
    disagree); ``mode="root"`` leaves an active snapshot marked ``gc.root`` behind.
    """

    name = "rogue"

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def pull(self, world: World, ctx: Context, ref: str, opts: PullOptions) -> Proc:
        result: PullResult = yield from self._reference(world, ctx, ref, opts)
        sn = world.snapshotter(opts.snapshotter)
        if self.mode == "root":
            yield from sn.prepare(ctx, "leftover", "", labels={GC_ROOT: "yes"})
            return result
        records = world.db.namespace(world.namespace).snapshots[opts.snapshotter]
        record = records[result.committed[-1]]
        backend = world.snapshot_backends[opts.snapshotter]
        backend.snapshots.pop(record.backend_key)
        yield from sleep(ctx, 0.001)
        return result
