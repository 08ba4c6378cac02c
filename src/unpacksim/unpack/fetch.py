"""Fetching blobs into the content store (``remotes/handlers.go``, ``content/helpers.go``,
``remotes/docker/handler.go`` at the seed).

- :func:`fetch_handler` is ``remotes.FetchHandler``: ``OpenWriter`` with the ref key
  ``<kind>-<digest>``; AlreadyExists means the blob is here (the metadata writer has already
  leased it); a complete ingest is committed directly; otherwise fetch and ``content.Copy``,
  which resumes from the ingest's offset and commits with the expected size and digest.
- :func:`open_writer` is ``content.OpenWriter``: retry while the ref is locked
  (Unavailable) with a randomised backoff of ``0..retry`` ms, ``retry`` doubling from 16 to
  2048; give up only when the context is done, returning the lock error (the spin of #4937).
- :func:`distribution_source_handler` is ``docker.AppendDistributionSourceLabel``.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from unpacksim.model.errdefs import AlreadyExists, ContainerdError, Unavailable
from unpacksim.model.filters import go_quote
from unpacksim.model.images import is_known_config
from unpacksim.model.labels import DISTRIBUTION_SOURCE_PREFIX
from unpacksim.model.oci import Descriptor, is_index_type, is_layer_type, is_manifest_type
from unpacksim.sim.choose import choose_int
from unpacksim.sim.go import sleep
from unpacksim.unpack.goerrors import GoError, wrap
from unpacksim.unpack.handlers import Handler, HandlerProcess, update_labels
from unpacksim.unpack.registry import parse_reference as registry_parse_reference

if TYPE_CHECKING:
    from unpacksim.sim.context import Context
    from unpacksim.sim.proxies import WriterProxy
    from unpacksim.unpack.registry import BlobReader
    from unpacksim.unpack.world import World

__all__ = [
    "append_distribution_source",
    "distribution_source_handler",
    "fetch_handler",
    "make_ref_key",
    "open_writer",
    "parse_reference",
]

Proc = Generator[Any, Any, Any]

_SCHEMA1 = "application/vnd.docker.distribution.manifest.v1+prettyjws"


def make_ref_key(desc: Descriptor) -> str:
    """``remotes.MakeRefKey``: ``manifest-``, ``index-``, ``layer-``, ``config-`` or ``unknown-``."""
    mt = desc.media_type
    if is_manifest_type(mt):
        kind = "manifest"
    elif is_index_type(mt):
        kind = "index"
    elif is_layer_type(mt):
        kind = "layer"
    elif is_known_config(mt):
        kind = "config"
    else:
        kind = "unknown"
    return f"{kind}-{desc.digest}"


def fetch_handler(world: World, name: str, *, fetched: list[str] | None = None) -> Handler:
    """``remotes.FetchHandler(store, fetcher)``: fetch ``desc`` into the content store.

    ``name`` is the resolved name the fetcher was made for (``Resolver.Fetcher(ctx, name)``).
    The digest of every descriptor handled without error is appended to ``fetched``.
    """

    def run(ctx: Context, desc: Descriptor) -> HandlerProcess:
        if desc.media_type == _SCHEMA1:
            raise GoError(f"{desc.media_type} not supported")
        yield from fetch_blob(world, ctx, desc, name)
        if fetched is not None:
            fetched.append(desc.digest)
        return []

    return run


def fetch_blob(world: World, ctx: Context, desc: Descriptor, name: str = "") -> Proc:
    """``remotes.fetch`` (``remotes/handlers.go``): open the writer, then commit or copy.

    Raises:
        the writer's errors (not AlreadyExists: the blob is already here), the fetch's,
        and the copy's ("failed to copy: ...", "failed commit on ref ...").
    """
    try:
        cw = yield from open_writer(world, ctx, make_ref_key(desc), desc)
    except AlreadyExists:
        return None  # already in this namespace (and leased by the writer)
    try:
        yield from _fetch_into(world, ctx, cw, desc, name)
    except Exception:
        yield from cw.close(ctx)  # defer cw.Close()
        raise
    yield from cw.close(ctx)
    return None


def _fetch_into(world: World, ctx: Context, cw: WriterProxy, desc: Descriptor, name: str) -> Proc:
    status = yield from cw.status(ctx)
    if status.offset == desc.size:
        # the writer is already complete: commit and return
        try:
            yield from cw.commit(ctx, desc.size, desc.digest)
        except AlreadyExists:
            pass
        except ContainerdError as exc:
            raise wrap(exc, f"failed commit on ref {go_quote(status.ref)}") from None
        return
    reader = yield from world.registry.fetch(ctx, desc, ref=name)
    try:
        yield from copy_into(ctx, cw, reader, desc)
    finally:
        reader.close()  # defer rc.Close()


def copy_into(ctx: Context, cw: WriterProxy, reader: BlobReader, desc: Descriptor) -> Proc:
    """``content.Copy``: resume from the ingest offset, copy, commit (AlreadyExists is fine).

    Raises:
        "failed to get status", "unable to resume write to <ref>", "failed to copy",
        "failed commit on ref <ref>" wrapped around the underlying error.
    """
    try:
        status = yield from cw.status(ctx)
    except ContainerdError as exc:
        raise wrap(exc, "failed to get status") from None
    if status.offset > 0:
        try:
            yield from reader.seek(ctx, status.offset)
        except ContainerdError as exc:
            raise wrap(exc, f"unable to resume write to {status.ref}") from None
    try:
        while True:
            chunk = yield from reader.read(ctx)
            if not chunk:
                break
            yield from cw.write(ctx, chunk)
    except ContainerdError as exc:
        raise wrap(exc, "failed to copy") from None
    try:
        yield from cw.commit(ctx, desc.size, desc.digest)
    except AlreadyExists:
        pass
    except ContainerdError as exc:
        raise wrap(exc, f"failed commit on ref {go_quote(status.ref)}") from None


def open_writer(world: World, ctx: Context, ref: str, desc: Descriptor) -> Proc:
    """``content.OpenWriter``: retry on Unavailable with 0..retry ms backoff (16 -> 2048).

    Raises:
        Unavailable: the ref stayed locked until the context was done (the lock error).
        any other error of ``Writer`` (AlreadyExists when the blob is present).
    """
    retry = 16
    while True:
        try:
            return (yield from world.content.writer(ctx, ref=ref, desc=desc))
        except Unavailable as exc:
            # time.After(rand.Intn(retry) ms), drawn through the chooser (0 is the FIFO answer)
            delay_ms = choose_int(world.env.chooser, 0, retry - 1, "content.open_writer.backoff")
            if not (yield from sleep(ctx, delay_ms / 1000.0)):
                raise exc from None
            if retry < 2048:
                retry <<= 1


# --- distribution source label (remotes/docker/handler.go) ----------------------------------


def parse_reference(ref: str) -> tuple[str, str]:
    """``reference.Parse`` then ``url.Parse`` as ``AppendDistributionSourceLabel`` does.

    Returns (hostname without port, repository path).

    Raises:
        GoError: the reference does not parse ("invalid reference", "hostname required").
    """
    spec = registry_parse_reference(ref)
    return spec.hostname.rsplit(":", 1)[0], spec.repository


def append_distribution_source(origin: str, repo: str) -> str:
    """``appendDistributionSourceLabel``: the sorted, de-duplicated, comma-joined repos."""
    repos = [r for r in origin.split(",") if r] if origin else []
    repos.append(repo)
    return ",".join(sorted(set(repos)))


def distribution_source_handler(world: World, ref: str) -> Handler:
    """``docker.AppendDistributionSourceLabel(store, ref)``: Info then Update of
    ``containerd.io/distribution.source.<host>``.

    Raises:
        NotFound: the blob vanished between the fetch and the Info.
    """
    host, repo = parse_reference(ref)
    key = DISTRIBUTION_SOURCE_PREFIX + host

    def run(ctx: Context, desc: Descriptor) -> HandlerProcess:
        info = yield from world.content.info(ctx, desc.digest)
        value = append_distribution_source(info.labels.get(key, ""), repo)
        yield from update_labels(world, ctx, desc.digest, {key: value})
        return []

    return run
