"""Image handlers and Dispatch (``images/handlers.go``, ``images/image.go`` at the seed).

A handler is a generator function ``handler(ctx, desc)`` returning the children to descend
into.  ``Dispatch`` walks a descriptor tree running siblings in parallel in an errgroup (the
first error cancels the rest); ``Handlers`` runs handlers in sequence and concatenates their
children.  The children handler stack Pull composes (innermost first):
``children`` -> ``set_children_labels`` -> ``filter_platforms`` -> ``limit_manifests``, so
labels are written for the *unfiltered* children (every platform manifest of an index).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any

from unpacksim.model.content import Info
from unpacksim.model.errdefs import NotFound
from unpacksim.model.images import descriptor_from_json, is_known_config
from unpacksim.model.labels import GC_REF_CONTENT
from unpacksim.model.oci import (
    Descriptor,
    is_index_type,
    is_layer_type,
    is_manifest_type,
)
from unpacksim.sim.go import ErrGroup, Semaphore
from unpacksim.unpack.goerrors import ErrSkipDesc, ErrStopHandler, GoError
from unpacksim.unpack.platforms import MatchComparer

if TYPE_CHECKING:
    from unpacksim.sim.context import Context
    from unpacksim.unpack.world import World

__all__ = [
    "Handler",
    "LabelMap",
    "child_gc_labels",
    "child_gc_labels_filter_layers",
    "children",
    "children_handler",
    "dispatch",
    "filter_platforms",
    "handlers",
    "limit_manifests",
    "parse_descriptor",
    "seed_child_labels",
    "set_children_labels",
    "update_labels",
]

Proc = Generator[Any, Any, Any]
HandlerProcess = Generator[Any, Any, list[Descriptor]]
#: ``images.Handler``: ``handler(ctx, desc)`` is a process returning the children.
Handler = Callable[["Context", Descriptor], HandlerProcess]
#: ``RemoteContext.ChildLabelMap``: the label keys for one child (None: the seed's indexes).
LabelMap = Callable[[Descriptor], list[str]]


def handlers(*hs: Handler) -> Handler:
    """``images.Handlers``: run ``hs`` in sequence, concatenate children.

    ``ErrStopHandler`` stops the remaining handlers for this descriptor; any other error is
    returned (and the children gathered so far are dropped, as Go returns nil).
    """

    def run(ctx: Context, desc: Descriptor) -> HandlerProcess:
        found: list[Descriptor] = []
        for h in hs:
            try:
                found.extend((yield from h(ctx, desc)))
            except ErrStopHandler:
                break
        return found

    return run


def dispatch(
    ctx: Context,
    handler: Handler,
    limiter: Semaphore | None,
    descs: Sequence[Descriptor],
    *,
    name: str = "dispatch",
) -> Generator[Any, Any, None]:
    """``images.Dispatch``: handle ``descs`` in parallel, then their children, recursively.

    The limiter (``MaxConcurrentDownloads``) is held only while one ``handler`` call runs.
    ``ErrSkipDesc`` means "do not descend".  If acquiring the limiter fails (the context is
    cancelled) Dispatch returns at once without waiting for the siblings it started, as Go.

    Raises:
        the first error of any handler (the others are cancelled through the group context).
    """
    group, ctx2 = ErrGroup.with_context(ctx)
    for desc in descs:
        if limiter is not None:
            yield from limiter.acquire(ctx, 1)
        group.go(
            _dispatch_one_fn(ctx2, handler, limiter, desc, name),
            name=f"{name}:{_short(desc.digest)}",
        )
    err = yield from group.wait()
    if err is not None:
        raise err


def _dispatch_one_fn(
    ctx: Context, handler: Handler, limiter: Semaphore | None, desc: Descriptor, name: str
) -> Callable[[], Generator[Any, Any, None]]:
    def body() -> Generator[Any, Any, None]:
        try:
            found = yield from handler(ctx, desc)
        except ErrSkipDesc:
            return
        finally:
            if limiter is not None:
                limiter.release(1)
        if found:
            yield from dispatch(ctx, handler, limiter, found, name=name)

    return body


def _short(digest: str) -> str:
    return digest.split(":", 1)[-1][:12]


# --- children -------------------------------------------------------------------------------


#: An OCI descriptor from its JSON object (``model.images.descriptor_from_json``).
parse_descriptor = descriptor_from_json


def children(desc: Descriptor, blob: bytes) -> list[Descriptor]:
    """``images.Children`` given the blob: manifest -> [config, layers...], index -> manifests.

    Layers and known configs have none; an unknown type has none either (Go logs a warning).

    Raises:
        GoError: the blob is not valid JSON (``json.Unmarshal``'s error, no errdefs class).
    """
    if not (is_manifest_type(desc.media_type) or is_index_type(desc.media_type)):
        return []
    try:
        doc = json.loads(blob)
    except ValueError as exc:
        raise GoError(f"invalid character in JSON of {desc.digest}: {exc}") from None
    if not isinstance(doc, dict):
        raise GoError(f"json: cannot unmarshal {type(doc).__name__} into Go value of {desc.digest}")
    if is_manifest_type(desc.media_type):
        # json.Unmarshal into ocispec.Manifest: a missing or null "layers" is no layers.
        layers = doc.get("layers") or []
        return [parse_descriptor(doc["config"])] + [parse_descriptor(d) for d in layers]
    return [parse_descriptor(d) for d in doc.get("manifests") or []]


def children_handler(world: World) -> Handler:
    """``images.ChildrenHandler(store)``: read the blob (manifests and indexes only)."""

    def run(ctx: Context, desc: Descriptor) -> HandlerProcess:
        if not (is_manifest_type(desc.media_type) or is_index_type(desc.media_type)):
            return []
        blob = yield from world.content.read_blob(ctx, desc)
        return children(desc, blob)

    return run


# --- child GC labels ------------------------------------------------------------------------


def seed_child_labels(index: int) -> str:
    """The seed's ``SetChildrenLabels`` key for the child at ``index``."""
    return f"{GC_REF_CONTENT}.{index}"


def child_gc_labels(desc: Descriptor) -> list[str]:
    """``images.ChildGCLabels`` (``c8b14ae4c``): typed keys; ``.`` endings get an index."""
    # images/mediatypes.go: IsKnownConfig (checkpoint configs too), not only image configs.
    if is_known_config(desc.media_type):
        return [f"{GC_REF_CONTENT}.config"]
    if is_manifest_type(desc.media_type):
        return [f"{GC_REF_CONTENT}.m."]
    if is_layer_type(desc.media_type):
        return [f"{GC_REF_CONTENT}.l."]
    return [f"{GC_REF_CONTENT}."]


def child_gc_labels_filter_layers(desc: Descriptor) -> list[str]:
    """``images.ChildGCLabelsFilterLayers``: no label for layers."""
    if is_layer_type(desc.media_type):
        return []
    return child_gc_labels(desc)


def child_labels(found: Sequence[Descriptor], label_map: LabelMap | None) -> dict[str, str]:
    """The labels ``SetChildrenLabels`` / ``SetChildrenMappedLabels`` write for ``found``.

    With no map, the seed's ``containerd.io/gc.ref.content.<i>``.  With a map, a key gets
    its per-key use count appended from the second use on, or always if it ends in ``.``.
    """
    labels: dict[str, str] = {}
    if label_map is None:
        for i, child in enumerate(found):
            labels[seed_child_labels(i)] = child.digest
        return labels
    uses: dict[str, int] = {}
    for child in found:
        for key in label_map(child):
            idx = uses.get(key, 0)
            uses[key] = idx + 1
            if idx > 0 or key.endswith("."):
                key = f"{key}{idx}"
            labels[key] = child.digest
    return labels


def update_labels(world: World, ctx: Context, digest: str, labels: dict[str, str]) -> Proc:
    """``cs.Update(ctx, Info{Digest, Labels}, "labels.<k>"...)``: set (or, with "", delete)
    exactly the given labels in one update."""
    paths = [f"labels.{k}" for k in labels]
    return (yield from world.content.update(ctx, Info(digest, labels=dict(labels)), *paths))


def set_children_labels(world: World, f: Handler, label_map: LabelMap | None) -> Handler:
    """``images.SetChildrenLabels`` (seed) / ``SetChildrenMappedLabels`` (``c8b14ae4c``).

    One ``content.Update`` of the parent with a ``labels.<key>`` field path per label,
    whenever there are children (``images/handlers.go`` SetChildrenMappedLabels): even when
    the map gave no key at all, and then, with no field path, the Update replaces the
    parent's labels with none.
    """

    def run(ctx: Context, desc: Descriptor) -> HandlerProcess:
        found = yield from f(ctx, desc)
        if found:
            labels = child_labels(found, label_map)
            yield from update_labels(world, ctx, desc.digest, labels)
        return found

    return run


# --- platform filters -----------------------------------------------------------------------


def filter_platforms(f: Handler, matcher: MatchComparer | None) -> Handler:
    """``images.FilterPlatforms``: keep children without a platform or with a matching one."""

    def run(ctx: Context, desc: Descriptor) -> HandlerProcess:
        found = yield from f(ctx, desc)
        if matcher is None:
            return found
        return [d for d in found if d.platform is None or matcher.match(d.platform)]

    return run


def limit_manifests(f: Handler, matcher: MatchComparer, n: int) -> Handler:
    """``images.LimitManifests``: for an index, sort by platform preference, keep ``n``.

    Raises:
        NotFound: an index with no matching manifest ("no match for platform in manifest").
    """

    def run(ctx: Context, desc: Descriptor) -> HandlerProcess:
        found = yield from f(ctx, desc)
        if not is_index_type(desc.media_type):
            return found
        ordered = _stable_sort(found, matcher)
        if n > 0:
            if not ordered:
                raise NotFound("no match for platform in manifest")
            ordered = ordered[:n]
        return ordered

    return run


def _stable_sort(found: list[Descriptor], matcher: MatchComparer) -> list[Descriptor]:
    # sort.SliceStable with Less: nil platforms last, else the comparer's preference.
    def rank(d: Descriptor) -> tuple[int, int]:
        if d.platform is None:
            return (1, 0)
        return (0, matcher.rank(d.platform))

    return sorted(found, key=rank)
