"""The reference unpacker: a port of ``reference/unpacker.go`` (containerd ``03ab1b2cac``).

containerd's ``unpack`` is one long function of closures; here it is a set of named steps,
each citing the Go lines it mirrors, with the same control flow, errors and labels.  Era flags
(:class:`~unpacksim.unpack.eras.Era`) switch in the later changes at the places they touched
(``pkg/unpack/unpacker.go`` in 1.7, ``core/unpack/unpacker.go`` in 2.0, ``unpacker.go`` in
1.6.20).  Every store call goes through the World's proxies, so each is traced, timed, a
scheduling point and a fault site.

Structure (Go line numbers are those of ``unpacker.go`` at ``03ab1b2cac``, the file
``reference/unpacker.go`` shows):

- :meth:`Unpacker.wrap` is ``handlerWrapper`` (L307-L363): split layers from non-layers at a
  manifest, start one unpack per config that has layers.
- :meth:`Unpacker.unpack` is ``unpack`` (L76-L276): read the config, then per layer
  :meth:`_LayerRun.run` (the ``EachLayer`` body, L115-L231), then the config's GC label and
  the seed's ``DiscardContent``.
- :meth:`Unpacker.fetch_layers` is ``fetch`` (L278-L305), started lazily once.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from unpacksim.model.content import Info
from unpacksim.model.digest import chain_ids as compute_chain_ids
from unpacksim.model.errdefs import AlreadyExists, ContainerdError, NotFound
from unpacksim.model.filters import go_quote
from unpacksim.model.labels import (
    GC_REF_CONTENT,
    SNAPSHOT_REF,
    UNCOMPRESSED,
    filter_inherited_labels,
    snapshot_gc_label,
)
from unpacksim.model.oci import Descriptor, is_config_type, is_layer_type, is_manifest_type
from unpacksim.sim.context import background
from unpacksim.sim.go import Channel, ErrGroup, Recv, Semaphore, go, select
from unpacksim.unpack.eras import DiscardMode
from unpacksim.unpack.goerrors import ErrSkipDesc, GoError, wrap
from unpacksim.unpack.handlers import Handler, HandlerProcess, update_labels
from unpacksim.unpack.results import AbortRecord, SkipReason, UnpackLog
from unpacksim.unpack.session import Session

if TYPE_CHECKING:
    from unpacksim.sim.context import Context

__all__ = ["Unpacker", "cleanup_context", "config_diff_ids", "parse_diff_ids"]

Proc = Generator[Any, Any, Any]


class Unpacker:
    """``newUnpacker`` + ``handlerWrapper`` state for one pull (L57-L74, L307-L318).

    ``group`` is the unpack errgroup (``errgroup.WithContext(uctx)``); Pull waits on it.
    ``limiter`` is nil at the seed (``u.limiter`` is never set, #6054) and bounds the layer
    fetches with ``limiter_effective`` (535191abf).  ``unpacks`` counts configs with layers.
    """

    def __init__(self, session: Session, uctx: Context) -> None:
        self.session = session
        self.era = session.era
        self.snapshotter = session.opts.snapshotter
        mcd = session.opts.max_concurrent_downloads
        self.limiter: Semaphore | None = None
        if self.era.limiter_effective and mcd > 0:
            self.limiter = Semaphore(session.world.env, mcd)
        self.unpacks = 0
        self.group, self.uctx = ErrGroup.with_context(uctx)

    # --- handlerWrapper (L307-L363) --------------------------------------------------------

    def wrap(self, f: Handler) -> Handler:
        """The wrapper Pull installs outermost: ``handlerWrapper``'s returned func."""
        layers: dict[str, list[Descriptor]] = {}
        parents: dict[str, Descriptor] = {}

        def run(ctx: Context, desc: Descriptor) -> HandlerProcess:
            unlock = yield from self._lock_blob(ctx, desc)  # 1.6.20 lockBlobDescriptor
            try:
                found = yield from f(ctx, desc)
            finally:
                unlock()
            if is_manifest_type(desc.media_type):
                return self._split_manifest(desc, found, layers, parents)
            if is_config_type(desc.media_type):
                self._maybe_start_unpack(f, desc, layers, parents)
            return found

        return run

    def _split_manifest(
        self,
        manifest: Descriptor,
        found: list[Descriptor],
        layers: dict[str, list[Descriptor]],
        parents: dict[str, Descriptor],
    ) -> list[Descriptor]:
        # L326-L347: layers are handled after the config; only non-layers are returned.
        manifest_layers = [c for c in found if is_layer_type(c.media_type)]
        non_layers = [c for c in found if not is_layer_type(c.media_type)]
        for nl in non_layers:
            layers[nl.digest] = manifest_layers
            parents[nl.digest] = manifest
        return non_layers

    def _maybe_start_unpack(
        self,
        f: Handler,
        config: Descriptor,
        layers: dict[str, list[Descriptor]],
        parents: dict[str, Descriptor],
    ) -> None:
        # L348-L359: one unpack per config with layers, given the *un-wrapped* handler f.
        found = layers.get(config.digest, [])
        if not found:
            return
        self.unpacks += 1
        manifest = parents[config.digest]
        self.group.go(
            lambda: self.unpack(self.uctx, f, config, manifest, found),
            name=f"{self.session.name}/unpack:{config.digest[7:19]}",
        )

    # --- unpack (L76-L276) -----------------------------------------------------------------

    def unpack(
        self,
        ctx: Context,
        h: Handler,
        config: Descriptor,
        manifest: Descriptor,
        layers: list[Descriptor],
    ) -> Proc:
        """``unpacker.unpack`` for one config; returns None or raises the unpack's error."""
        log = UnpackLog(config=config.digest)
        self.session.log.unpacks.append(log)
        try:
            yield from self._unpack(ctx, h, config, manifest, layers, log)
        except BaseException as exc:
            log.error = exc
            raise

    def _unpack(
        self,
        ctx: Context,
        h: Handler,
        config: Descriptor,
        manifest: Descriptor,
        layers: list[Descriptor],
        log: UnpackLog,
    ) -> Proc:
        diff_ids = yield from self._read_diff_ids(ctx, config, len(layers))
        log.chain_ids = compute_chain_ids(diff_ids)
        # L110-L113: cancel any ongoing fetch when unpack returns, whichever way.
        ctx, cancel = ctx.with_cancel()
        fetch = _FetchState()
        try:
            for i, desc in enumerate(layers):
                run = _LayerRun(self, ctx, h, layers, diff_ids, log, fetch, i, desc)
                yield from run.run()
            top = log.chain_ids[-1] if log.chain_ids else ""
            yield from self._label_config(ctx, config, top)
            if self._discard_mode() is DiscardMode.SEED_STRIP_LABELS:
                yield from self._discard_content(ctx, manifest, layers)
        finally:
            cancel()

    def _read_diff_ids(self, ctx: Context, config: Descriptor, n_layers: int) -> Proc:
        # L84-L96: ReadBlob(config), unmarshal, compare the layer count.
        blob = yield from self.session.world.content.read_blob(ctx, config)
        diff_ids = config_diff_ids(blob)
        if n_layers != len(diff_ids):
            raise GoError(
                f"number of layers and diffIDs don't match: {n_layers} != {len(diff_ids)}"
            )
        return diff_ids

    def _label_config(self, ctx: Context, config: Descriptor, top: str) -> Proc:
        # L233-L244: gc.ref.snapshot.<snapshotter> = top chain ID, even if all were skipped.
        key = snapshot_gc_label(self.snapshotter)
        yield from update_labels(self.session.world, ctx, config.digest, {key: top})

    def _discard_mode(self) -> DiscardMode:
        if not self.session.opts.discard_content:
            return self.era.discard_mode
        return self.era.discard_mechanism

    def _discard_content(
        self, ctx: Context, manifest: Descriptor, layers: list[Descriptor]
    ) -> Proc:
        # L250-L273 (seed only): blank the manifest's content labels that name a layer.
        content = self.session.world.content
        layer_digests = {d.digest for d in layers}
        info = yield from content.info(ctx, manifest.digest)
        labels = dict(info.labels)
        paths: list[str] = []
        for key in sorted(labels):
            if key.startswith(GC_REF_CONTENT + ".") and labels[key] in layer_digests:
                labels[key] = ""  # already unpacked: an empty value deletes the label
                paths.append(f"labels.{key}")
        # With no matching label the field list is empty and Update replaces the labels
        # with the ones just read (a write that changes nothing), as Go does.
        yield from content.update(ctx, Info(manifest.digest, labels=labels), *paths)

    # --- fetch (L278-L305) -----------------------------------------------------------------

    def fetch_layers(
        self,
        ctx: Context,
        h: Handler,
        layers: list[Descriptor],
        done: list[Channel],
        log: UnpackLog,
    ) -> Proc:
        """``unpacker.fetch``: every layer in an errgroup; close ``done[i]`` when fetched.

        Returns the first error (or None).  If the limiter's Acquire fails it returns at once
        without waiting for the fetches already started, as Go does.
        """
        group, ctx2 = ErrGroup.with_context(ctx)
        for i, desc in enumerate(layers):
            if self.limiter is not None:
                try:
                    yield from self.limiter.acquire(ctx, 1)
                except ContainerdError as exc:
                    return exc
            group.go(
                self._fetch_one_fn(ctx2, h, desc, done[i], log),
                name=f"{self.session.name}/fetch-layer:{desc.digest[7:19]}",
            )
        err = yield from group.wait()
        return err

    def _fetch_one_fn(
        self, ctx: Context, h: Handler, desc: Descriptor, done: Channel, log: UnpackLog
    ) -> Callable[[], Proc]:
        def body() -> Proc:
            try:
                unlock = yield from self._lock_blob(ctx, desc)
            except BaseException:
                self._release()
                raise
            try:
                yield from h(ctx, desc)
            except ErrSkipDesc:
                pass  # ErrSkipDesc counts as fetched
            finally:
                unlock()
                self._release()
            log.fetched.append(desc.digest)
            done.close()

        return body

    def _release(self) -> None:
        if self.limiter is not None:
            self.limiter.release(1)

    # --- duplication suppressor (811375856, 1.6.20 unpacker.go L391-L419) -------------------

    def _lock_blob(self, ctx: Context, desc: Descriptor) -> Generator[Any, Any, Callable[[], None]]:
        return (yield from self._lock(ctx, f"blob://{desc.digest}"))

    def lock_chain(self, ctx: Context, chain_id: str) -> Generator[Any, Any, Callable[[], None]]:
        """``lockSnChainID``: ``sn://<snapshotter>/<chainID>`` (no-op without the flag)."""
        return (yield from self._lock(ctx, f"sn://{self.snapshotter}/{chain_id}"))

    def _lock(self, ctx: Context, key: str) -> Generator[Any, Any, Callable[[], None]]:
        if not self.era.dedup_keyed_lock:
            return _noop
        suppressor = self.session.shared.suppressor
        yield from suppressor.lock(ctx, key)
        return lambda: suppressor.unlock(key)


def config_diff_ids(blob: bytes) -> list[str]:
    """``json.Unmarshal`` into ``ocispec.Image``, then ``RootFS.DiffIDs`` (L90-L93).

    A missing ``rootfs`` or ``diff_ids`` is an empty list, as in Go.  The message of a JSON
    error is Python's, not Go's (the prefix is Go's).

    Raises:
        GoError: "unmarshal image config: ..." (invalid JSON, or a field of the wrong type).
    """
    try:
        return parse_diff_ids(blob)
    except GoError as exc:
        raise GoError(f"unmarshal image config: {exc.message}") from None


def parse_diff_ids(blob: bytes) -> list[str]:
    """An image config's ``rootfs.diff_ids`` as ``json.Unmarshal`` reads it, unprefixed.

    Raises:
        GoError: invalid JSON, or a field of the wrong type.
    """
    try:
        doc = json.loads(blob)
    except ValueError as exc:
        raise GoError(str(exc)) from None
    rootfs = doc.get("rootfs") if isinstance(doc, dict) else None
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(doc, dict) or not isinstance(rootfs, dict | None):
        raise GoError("json: cannot unmarshal into ocispec.Image")
    if diff_ids is None:
        return []
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) for d in diff_ids):
        raise GoError("json: cannot unmarshal diff_ids into []Digest")
    return diff_ids


def _noop(*_: object) -> None:
    return None


def cleanup_context(ctx: Context) -> tuple[Context, Callable[..., None]]:
    """``cleanup.Do``'s context (b550526cc): the namespace and lease of ``ctx`` without its
    cancellation, with a 10 second timeout.  Returns the context and its cancel function."""
    detached = background(ctx.env, ctx.namespace).with_lease(ctx.lease)
    return detached.with_timeout(10.0)


@dataclass
class _FetchState:
    """The lazily created fetch state (L105-L107): ``fetchOffset``, ``fetchC``, ``fetchErr``."""

    offset: int = 0
    done: list[Channel] = field(default_factory=list)
    err: Channel | None = None


class _LayerRun:
    """One iteration of ``EachLayer`` (L115-L231): the steps for layer ``i``."""

    def __init__(
        self,
        unpacker: Unpacker,
        ctx: Context,
        h: Handler,
        layers: list[Descriptor],
        diff_ids: list[str],
        log: UnpackLog,
        fetch: _FetchState,
        i: int,
        desc: Descriptor,
    ) -> None:
        self.u = unpacker
        self.era = unpacker.era
        self.world = unpacker.session.world
        self.sn = self.world.snapshotter(unpacker.snapshotter)
        self.ctx = ctx
        self.h = h
        self.layers = layers
        self.diff_ids = diff_ids
        self.log = log
        self.fetch = fetch
        self.i = i
        self.desc = desc
        self.chain_id = log.chain_ids[i]
        self.parent = log.chain_ids[i - 1] if i > 0 else ""
        self.key = ""
        self.labels: dict[str, str] = {}

    def run(self) -> Proc:
        """The layer's steps; returns normally for "continue", raises for "return err"."""
        unlock = yield from self.u.lock_chain(self.ctx, self.chain_id)
        try:
            yield from self._steps()
        finally:
            unlock()

    def _steps(self) -> Proc:
        if self.era.stat_skip and (yield from self.stat_chain()):
            self.log.skipped.append((self.chain_id, SkipReason.STAT))
            return
        self.labels = self.snapshot_labels()
        mounts = yield from self.prepare()
        if mounts is None:
            return
        self.start_fetch()
        yield from self.wait_for_layer()
        diff = yield from self.apply(mounts)
        if not (yield from self.commit()):
            return
        yield from self.label_uncompressed(diff)

    # Step: Stat by chain ID (L121-L126; removed by d7f83034c).
    def stat_chain(self) -> Generator[Any, Any, bool]:
        try:
            yield from self.sn.stat(self.ctx, self.chain_id)
        except NotFound:
            return False
        except ContainerdError as exc:
            raise wrap(exc, f"failed to stat snapshot {self.chain_id}") from None
        return True

    # Step: snapshot labels (L128-L133): inherited annotations plus snapshot.ref.
    def snapshot_labels(self) -> dict[str, str]:
        labels = filter_inherited_labels(self.desc.annotations)
        labels[SNAPSHOT_REF] = self.chain_id
        return labels

    def extraction_key(self) -> str:
        """``"extract-%s %s"`` with ``uniquePart()``; 2017 (no unique keys): ``extract <id>``."""
        if not self.era.unique_keys:
            return f"extract {self.chain_id}"
        return f"extract-{self.u.session.unique_part()} {self.chain_id}"

    # Step: Prepare, three tries on AlreadyExists (L135-L166).
    def prepare(self) -> Generator[Any, Any, Any]:
        """The mounts of the new extraction snapshot, or None when the layer is skipped."""
        last: ContainerdError | None = None
        for _try in range(3):
            self.key = self.extraction_key()
            try:
                mounts = yield from self.sn.prepare(
                    self.ctx, self.key, self.parent, labels=dict(self.labels)
                )
            except AlreadyExists as exc:
                self.log.prepare_attempts.append((self.chain_id, self.key, "AlreadyExists"))
                last = exc
                if (yield from self.stat_after_exists()):
                    self.log.skipped.append((self.chain_id, SkipReason.PREPARE_EXISTS))
                    return None
                continue  # "extraction snapshot already exists, chain id not found"
            except ContainerdError as exc:
                self.log.prepare_attempts.append((self.chain_id, self.key, type(exc).__name__))
                prefix = f"failed to prepare extraction snapshot {go_quote(self.key)}"
                raise wrap(exc, prefix) from None
            self.log.prepare_attempts.append((self.chain_id, self.key, "ok"))
            self.log.prepared.append((self.chain_id, self.key))
            return mounts
        assert last is not None
        raise wrap(last, "unable to prepare extraction snapshot")

    def stat_after_exists(self) -> Generator[Any, Any, bool]:
        # L146-L156: Stat on AlreadyExists; found -> continue EachLayer; NotFound -> retry.
        return (yield from self.stat_chain())

    # Step: abort (L168-L173): Remove the key; errors are only logged.  At the seed it is
    # called after Apply and Commit failures only; 8017daa12 adds the wait's two exits.
    def abort(self) -> Proc:
        ctx, stop = self.ctx, _noop
        if self.era.cleanup_ctx_detached:
            ctx, stop = cleanup_context(self.ctx)
        outcome = "ok"
        try:
            yield from self.sn.remove(ctx, self.key)
        except ContainerdError as exc:
            outcome = type(exc).__name__  # log.G(ctx).Errorf("failed to cleanup %q", key)
        finally:
            stop()
        self.log.aborted.append(AbortRecord(self.key, self.chain_id, outcome))

    # Step: lazy fetch start, once per unpack (L175-L190).
    def start_fetch(self) -> None:
        fetch = self.fetch
        if fetch.err is not None:
            return
        env = self.world.env
        fetch.err = Channel(env, capacity=1)
        fetch.offset = self.i
        self.log.fetch_offset = self.i
        fetch.done = [Channel(env) for _ in self.layers[self.i :]]
        go(
            env,
            self._fetch_goroutine(fetch.err, fetch.done, self.layers[self.i :]),
            name=f"{self.u.session.name}/unpack-fetch",
        )

    def _fetch_goroutine(
        self, fetch_err: Channel, done: list[Channel], todo: list[Descriptor]
    ) -> Proc:
        err = yield from self.u.fetch_layers(self.ctx, self.h, todo, done, self.log)
        if err is not None:
            yield from fetch_err.send(err)
        fetch_err.close()

    # Step: wait for cancellation, a fetch error, or this layer's download (L192-L200).
    def wait_for_layer(self) -> Proc:
        assert self.fetch.err is not None
        ready = self.fetch.done[self.i - self.fetch.offset]
        which, value = yield from _select_layer(self.ctx, self.fetch.err, ready)
        if which == "done":
            return
        if which == "ctx":
            if self.era.abort_on_cancel_or_fetch_err:
                yield from self.abort()
            raise self.ctx.err_or_canceled()
        if value is not None:  # fetchErr carried an error; a nil receive falls through
            if self.era.abort_on_cancel_or_fetch_err:
                yield from self.abort()
            raise value

    # Step: Apply with the diff ID check (L202-L210).
    def apply(self, mounts: Any) -> Proc:
        try:
            diff = yield from self.world.applier.apply(self.ctx, self.desc, mounts)
        except ContainerdError as exc:
            yield from self.abort()
            raise wrap(exc, f"failed to extract layer {self.diff_ids[self.i]}") from None
        if diff.digest != self.diff_ids[self.i]:
            yield from self.abort()
            raise GoError(
                f"wrong diff id calculated on extraction {go_quote(self.diff_ids[self.i])}"
            )
        self.log.applied.append(self.chain_id)
        return diff

    # Step: Commit, AlreadyExists tolerated (L212-L218).
    def commit(self) -> Generator[Any, Any, bool]:
        try:
            yield from self.sn.commit(self.ctx, self.chain_id, self.key, labels=dict(self.labels))
        except ContainerdError as exc:
            yield from self.abort()
            if isinstance(exc, AlreadyExists):
                self.log.skipped.append((self.chain_id, SkipReason.COMMIT_EXISTS))
                return False
            raise wrap(exc, f"failed to commit snapshot {self.key}") from None
        self.log.committed.append(self.chain_id)
        return True

    # Step: the uncompressed label (L220-L230), only for layers this unpack applied.
    def label_uncompressed(self, diff: Descriptor) -> Proc:
        yield from update_labels(
            self.world, self.ctx, self.desc.digest, {UNCOMPRESSED: diff.digest}
        )


def _select_layer(ctx: Context, fetch_err: Channel, done: Channel) -> Proc:
    """The ``select`` of L192-L200 through the sim's select (the chooser orders ready cases).

    Returns ``("ctx", None)``, ``("err", error or None)`` or ``("done", None)``.
    """
    chosen = yield from select(ctx, [Recv(fetch_err), Recv(done)])
    if chosen.done:
        return "ctx", None
    if chosen.index == 0:
        return "err", chosen.value
    return "done", None
