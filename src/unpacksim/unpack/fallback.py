"""The fallback unpack Pull runs when no config with layers was seen (``unpacks == 0``).

A port of ``image.Unpack`` (``image.go``), ``images.Manifest`` (``images/image.go``) and
``rootfs.ApplyLayerWithOpts`` / ``applyLayers`` (``rootfs/apply.go``) at the seed.  Unlike the
unpacker: Prepare is retried without bound on AlreadyExists, a missing parent (NotFound)
makes it apply the lower layers first, no ``snapshot.ref`` label is passed, the key is
removed on any apply or commit failure, a Commit AlreadyExists is swallowed by the caller,
and the wrong-diff-ID message quotes the *computed* digest.  For a manifest without layers
it only writes the config's ``gc.ref.snapshot.<sn>`` label with the empty chain ID ("",
which deletes the label).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from unpacksim.model.digest import chain_id as compute_chain_id
from unpacksim.model.errdefs import AlreadyExists, ContainerdError, NotFound
from unpacksim.model.filters import go_quote
from unpacksim.model.labels import UNCOMPRESSED, snapshot_gc_label
from unpacksim.model.oci import Descriptor, Platform, is_index_type, is_manifest_type
from unpacksim.unpack.goerrors import GoError, wrap
from unpacksim.unpack.handlers import parse_descriptor, update_labels
from unpacksim.unpack.platforms import MatchComparer, normalize
from unpacksim.unpack.session import Session
from unpacksim.unpack.unpacker import parse_diff_ids

if TYPE_CHECKING:
    from unpacksim.sim.context import Context

__all__ = ["image_unpack", "manifest_for"]

Proc = Generator[Any, Any, Any]


def image_unpack(
    session: Session, ctx: Context, target: Descriptor, matcher: MatchComparer
) -> Proc:
    """``image.Unpack(ctx, snapshotter)`` (the Pull already holds a lease, so no new one)."""
    world = session.world
    manifest = yield from manifest_for(session, ctx, target, matcher)  # getLayers
    try:  # image.go getLayers: i.i.RootFS's errors are wrapped, Manifest's are not
        diff_ids = yield from _root_fs(session, ctx, target, matcher)
    except (ContainerdError, GoError) as exc:
        raise wrap(exc, "failed to resolve rootfs") from None
    layer_descs = [parse_descriptor(d) for d in manifest.get("layers") or []]
    if len(diff_ids) != len(layer_descs):
        raise GoError("mismatched image rootfs and manifest layers")
    sn = world.snapshotter(session.opts.snapshotter)
    chain: list[str] = []
    for diff_id, blob in zip(diff_ids, layer_descs, strict=True):
        applied = yield from _apply_layer(session, ctx, sn, blob, diff_id, chain)
        if applied:
            yield from update_labels(world, ctx, blob.digest, {UNCOMPRESSED: diff_id})
        chain.append(diff_id)
    last = yield from manifest_for(session, ctx, target, matcher)  # i.i.Config
    key = snapshot_gc_label(session.opts.snapshotter)
    config_digest = parse_descriptor(last["config"]).digest
    yield from update_labels(world, ctx, config_digest, {key: compute_chain_id(chain)})


def _root_fs(
    session: Session, ctx: Context, target: Descriptor, matcher: MatchComparer
) -> Generator[Any, Any, list[str]]:
    """``images.Image.RootFS``: ``Config`` (a second ``images.Manifest``), then
    ``images.RootFS``: ReadBlob of the config and its ``rootfs.diff_ids`` (none if absent).

    Raises:
        the errors of Manifest and ReadBlob as they are; GoError for a config that does not
        unmarshal (the caller wraps them all in "failed to resolve rootfs").
    """
    config = yield from manifest_for(session, ctx, target, matcher)
    blob = yield from session.world.content.read_blob(ctx, parse_descriptor(config["config"]))
    return parse_diff_ids(blob)


def manifest_for(
    session: Session, ctx: Context, target: Descriptor, matcher: MatchComparer
) -> Generator[Any, Any, dict[str, Any]]:
    """``images.Manifest``: the first manifest for the platform, walking an index.

    Raises:
        NotFound: "manifest <d>" or "no match for platform in manifest <d>"; an unexpected
            media type ("unexpected media type <mt> for <d>").
    """
    pending = [target]
    was_index = False
    while pending:
        desc = pending.pop(0)
        blob = yield from session.world.content.read_blob(ctx, desc)
        doc = _json(blob)
        if is_manifest_type(desc.media_type):
            if desc.digest != target.digest and not (
                yield from _manifest_matches(session, ctx, desc, doc, matcher)
            ):
                continue
            return dict(doc)
        if is_index_type(desc.media_type):
            was_index = True
            found = [
                parse_descriptor(d)
                for d in doc.get("manifests") or []
                if "platform" not in d or matcher.match(parse_descriptor(d).platform or Platform())
            ]
            found.sort(
                key=lambda d: (1, 0) if d.platform is None else (0, matcher.rank(d.platform))
            )
            pending = found[:1] + pending
            continue
        raise NotFound(f"unexpected media type {desc.media_type} for {desc.digest}")
    if was_index:
        raise NotFound(f"no match for platform in manifest {target.digest}")
    raise NotFound(f"manifest {target.digest}")


def _manifest_matches(
    session: Session, ctx: Context, desc: Descriptor, doc: dict[str, Any], matcher: MatchComparer
) -> Generator[Any, Any, bool]:
    if desc.platform is not None:
        return matcher.match(desc.platform)
    config = parse_descriptor(doc["config"])
    blob = yield from session.world.content.read_blob(ctx, config)
    image = _json(blob)
    return matcher.match(normalize(Platform(image.get("os", ""), image.get("architecture", ""))))


def _json(blob: bytes) -> dict[str, Any]:
    try:
        doc = json.loads(blob)
    except ValueError as exc:
        raise GoError(str(exc)) from None
    if not isinstance(doc, dict):
        raise GoError("json: cannot unmarshal into Go value of type ocispec.Manifest")
    return doc


def _apply_layer(
    session: Session, ctx: Context, sn: Any, blob: Descriptor, diff_id: str, chain: list[str]
) -> Generator[Any, Any, bool]:
    """``rootfs.ApplyLayerWithOpts``: Stat the chain ID; apply if missing; True if applied."""
    full = [*chain, diff_id]
    top = compute_chain_id(full)
    try:
        yield from sn.stat(ctx, top)
        return False
    except NotFound:
        pass
    except ContainerdError as exc:
        raise wrap(exc, f"failed to stat snapshot {top}") from None
    try:
        yield from _apply_layers(session, ctx, sn, [(blob, diff_id)], full)
    except AlreadyExists:
        return False
    return True


def _apply_layers(
    session: Session, ctx: Context, sn: Any, layers: list[tuple[Descriptor, str]], chain: list[str]
) -> Proc:
    """``rootfs.applyLayers``: unbounded Prepare retries; recurse on a missing parent."""
    parent, top = compute_chain_id(chain[:-1]), compute_chain_id(chain)
    blob, _diff = layers[-1]
    while True:
        key = f"extract-{session.unique_part()} {top}"
        try:
            mounts = yield from sn.prepare(ctx, key, parent)
            break
        except NotFound as exc:
            if len(layers) <= 1:
                raise wrap(exc, f"failed to prepare extraction snapshot {go_quote(key)}") from None
            with contextlib.suppress(AlreadyExists):
                yield from _apply_layers(session, ctx, sn, layers[:-1], chain[:-1])
            layers = []  # do not try applying the lower layers again
        except AlreadyExists:
            continue  # try a different key
        except ContainerdError as exc:
            raise wrap(exc, f"failed to prepare extraction snapshot {go_quote(key)}") from None
    try:
        yield from _apply_and_commit(session, ctx, sn, blob, chain[-1], key, top, mounts)
    except Exception:
        # deferred cleanup on error: Remove the key; its error is only logged
        with contextlib.suppress(ContainerdError):
            yield from sn.remove(ctx, key)
        raise


def _apply_and_commit(
    session: Session,
    ctx: Context,
    sn: Any,
    blob: Descriptor,
    diff_id: str,
    key: str,
    top: str,
    mounts: Any,
) -> Proc:
    try:
        diff = yield from session.world.applier.apply(ctx, blob, mounts)
    except ContainerdError as exc:
        raise wrap(exc, f"failed to extract layer {diff_id}") from None
    if diff.digest != diff_id:
        raise GoError(f"wrong diff id calculated on extraction {go_quote(diff.digest)}")
    try:
        yield from sn.commit(ctx, top, key)
    except ContainerdError as exc:
        raise wrap(exc, f"failed to commit snapshot {key}") from None
