"""The reference pull pipeline: a port of ``Client.Pull`` and ``Client.fetch`` (``pull.go``),
``Client.WithLease`` (``lease.go``) and ``createNewImage`` at containerd ``03ab1b2cac``.

:func:`pull` is a SimPy process body (``yield from`` it inside a goroutine).  It never raises
for a containerd-level failure: it returns a :class:`~unpacksim.unpack.results.PullResult`
holding the error Pull would have returned.  The steps, in Go's order:

1. ``with_lease``: a lease with a random ID and ``containerd.io/gc.expire`` = now + 24h,
   unless the context already carries one (``lease.go``).
2. the unpacker and its handler wrapper, outermost around any user wrapper (pull.go L65-L90).
3. ``fetch``: resolve, compose the handler chain, ``Dispatch`` with ``limit=1`` (L128-L229).
4. wait for the unpacks, *before* the image record is created (L97-L106).
5. ``create_new_image``: Create, Update on AlreadyExists, Create again on NotFound (L231-L256).
6. the fallback ``image.Unpack`` when no config with layers was seen (L115-L123).
7. deferred, in LIFO order: the unpack wait again (its error only if none yet, wrapped
   ``unpack``), then the lease ``done`` (Delete without ``SynchronousDelete``, its error
   ignored; on a cancelled context it fails and the lease stays until it expires).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

from unpacksim.model.clock import format_rfc3339
from unpacksim.model.errdefs import AlreadyExists, ContainerdError, NotFound
from unpacksim.model.filters import go_quote
from unpacksim.model.images import Image
from unpacksim.model.labels import GC_EXPIRE
from unpacksim.sim.go import Semaphore
from unpacksim.unpack.eras import DiscardMode, Era
from unpacksim.unpack.fallback import image_unpack
from unpacksim.unpack.fetch import distribution_source_handler, fetch_handler
from unpacksim.unpack.goerrors import GoError, wrap
from unpacksim.unpack.handlers import (
    Handler,
    LabelMap,
    child_gc_labels,
    child_gc_labels_filter_layers,
    children_handler,
    dispatch,
    filter_platforms,
    handlers,
    limit_manifests,
    set_children_labels,
)
from unpacksim.unpack.platforms import DEFAULT_PLATFORM, MatchComparer, only
from unpacksim.unpack.results import PullLog, PullOptions, PullResult
from unpacksim.unpack.session import Session, shared_state
from unpacksim.unpack.unpacker import Unpacker

if TYPE_CHECKING:
    from unpacksim.sim.context import Context
    from unpacksim.unpack.world import World

__all__ = ["LEASE_EXPIRY", "pull"]

Proc = Generator[Any, Any, Any]

#: ``leases.WithExpiration(24 * time.Hour)`` in ``Client.WithLease``.
LEASE_EXPIRY = 24 * 3600.0


def pull(
    world: World, ctx: Context, ref: str, opts: PullOptions, era: Era, *, implementation: str
) -> Generator[Any, Any, PullResult]:
    """``Client.Pull(ctx, ref, opts...)`` under ``era``; returns the record of the pull."""
    shared = shared_state(world)
    shared.pulls += 1
    log = PullLog(ref=ref, implementation=implementation, started=world.env.now)
    session = Session(world, era, opts, log, name=f"pull-{shared.pulls}")
    error: BaseException | None = None
    try:
        yield from _pull(session, ctx, ref)
    except (ContainerdError, GoError) as exc:  # a Go error ends in the record; a bug propagates
        error = exc
    return log.freeze(error, world.env.now)


def _pull(session: Session, ctx: Context, ref: str) -> Proc:
    ctx, done = yield from with_lease(session, ctx)
    unpacker = Unpacker(session, ctx) if session.opts.unpack else None
    error: BaseException | None = None
    try:
        yield from _pull_body(session, ctx, ref, unpacker)
    except Exception as exc:
        error = exc
    if unpacker is not None:  # deferred unpackEg.Wait() (L76-L82), before done(ctx) (L63)
        err = yield from unpacker.group.wait()
        if err is not None and error is None:
            error = wrap(err, "unpack")
    yield from done(ctx)
    if error is not None:
        raise error


def _pull_body(session: Session, ctx: Context, ref: str, unpacker: Unpacker | None) -> Proc:
    wrapper = _handler_wrapper(session.opts.handler_wrapper, unpacker)
    img = yield from fetch(session, ctx, ref, wrapper, limit=1)
    session.log.target = img.target
    if unpacker is not None:  # L97-L106: wait for unpacks (and their downloads) first
        err = yield from unpacker.group.wait()
        if err is not None:
            raise err
    img = yield from create_new_image(session.world, ctx, img)
    session.log.image_name = img.name
    if unpacker is not None and unpacker.unpacks == 0:  # L115-L123: e.g. no layers
        session.log.fallback_unpack = True
        try:
            yield from image_unpack(session, ctx, img.target, _matcher(session))
        except Exception as exc:
            raise wrap(
                exc, f"failed to unpack image on snapshotter {session.opts.snapshotter}"
            ) from None


def _handler_wrapper(
    user: Callable[[Handler], Handler] | None, unpacker: Unpacker | None
) -> Callable[[Handler], Handler] | None:
    # L83-L89: the unpack wrapper is outermost, around any user wrapper.
    if unpacker is None:
        return user
    if user is None:
        return unpacker.wrap
    return lambda h: unpacker.wrap(user(h))


def _matcher(session: Session) -> MatchComparer:
    # L44-L57: the client default, or platforms.Only of the one platform asked for.
    # (Several platforms, "cannot pull multiplatform image locally", are not modelled.)
    return only(session.opts.platform or DEFAULT_PLATFORM)


# --- lease.go -------------------------------------------------------------------------------


def with_lease(session: Session, ctx: Context) -> Proc:
    """``Client.WithLease``: (ctx with the lease, done).  No-op if ``ctx`` has a lease."""
    nop: Callable[[Context], Proc] = _nop_done
    if ctx.lease:
        session.log.lease = ctx.lease
        return ctx, nop
    world = session.world
    lease_id = session.unique_part()  # leases.WithRandomID
    labels = {GC_EXPIRE: format_rfc3339(world.env.now + LEASE_EXPIRY)}
    yield from world.leases.create(ctx, id=lease_id, labels=labels)
    session.log.lease = lease_id
    session.log.lease_created = True

    def done(dctx: Context) -> Proc:
        try:
            yield from world.leases.delete(dctx, lease_id)
        except ContainerdError:
            return  # Pull ignores done's error: the lease then lives until it expires
        session.log.lease_deleted = True

    return ctx.with_lease(lease_id), done


def _nop_done(ctx: Context) -> Proc:
    return
    yield


# --- pull.go fetch --------------------------------------------------------------------------


def fetch(
    session: Session,
    ctx: Context,
    ref: str,
    wrapper: Callable[[Handler], Handler] | None,
    *,
    limit: int,
) -> Generator[Any, Any, Image]:
    """``Client.fetch``: resolve, build the handler chain, Dispatch (pull.go L128-L229).

    Schema 1 conversion and ``AllMetadata`` are not modelled (the convertible handler only
    matters for schema 1).
    """
    world = session.world
    try:
        name, desc = yield from world.registry.resolve(ctx, ref)
    except (ContainerdError, GoError) as exc:
        raise wrap(exc, f"failed to resolve reference {go_quote(ref)}") from None
    matcher = _matcher(session)
    # Get all the children for a descriptor; set their labels; filter; limit.
    children = children_handler(world)
    children = set_children_labels(world, children, _label_map(session))
    children = filter_platforms(children, matcher)
    if limit > 0:
        children = limit_manifests(children, matcher, limit)
    handler = handlers(
        fetch_handler(world, name, fetched=session.log.fetched),
        children,
        distribution_source_handler(world, ref),
    )
    if wrapper is not None:
        handler = wrapper(handler)
    limiter = None
    if session.opts.max_concurrent_downloads > 0:
        limiter = Semaphore(world.env, session.opts.max_concurrent_downloads)
    yield from dispatch(ctx, handler, limiter, [desc], name=f"{session.name}/dispatch")
    return Image(name=name, target=desc, labels=dict(session.opts.labels))


def _label_map(session: Session) -> LabelMap | None:
    """``RemoteContext.ChildLabelMap``: None (seed indexes), ChildGCLabels or FilterLayers."""
    era = session.era
    if not era.typed_child_labels:
        return None
    mode = era.discard_mechanism if session.opts.discard_content else era.discard_mode
    if mode is DiscardMode.CHILDLABELMAP_FILTER_LAYERS:
        return child_gc_labels_filter_layers
    return child_gc_labels


# --- createNewImage -------------------------------------------------------------------------


def create_new_image(world: World, ctx: Context, img: Image) -> Generator[Any, Any, Image]:
    """``Client.createNewImage``: Create; AlreadyExists -> Update; NotFound -> Create again."""
    while True:
        try:
            yield from world.images.create(ctx, img)
        except AlreadyExists:
            try:
                img = yield from world.images.update(ctx, img)
            except NotFound:
                continue  # the image was removed concurrently: try Create again
        return img
