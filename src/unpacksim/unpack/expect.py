"""What a fault-free pull leaves behind, computed from the built images alone.

An oracle independent of the pipeline: given the images pulled (``BuiltImage``), the platform,
the era and the snapshotter, :func:`expected_state` says which snapshots containerd leaves
(chain IDs, parents, ``containerd.io/snapshot.ref`` plus the inherited layer annotations),
which blobs and which labels (child GC labels by era, ``containerd.io/uncompressed``, the
config's ``containerd.io/gc.ref.snapshot.<sn>``, ``containerd.io/distribution.source.<host>``)
and which image records.  :func:`actual_state` reads the same shape out of a World's DB, and
:func:`compare` lists the differences in words.

It assumes a fresh namespace and pulls that all succeed; the non-matching platforms of an index
are never fetched (only the index's labels name them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from unpacksim.model.builders import BuiltImage, PlatformImage
from unpacksim.model.db import DB, Kind
from unpacksim.model.labels import (
    DISTRIBUTION_SOURCE_PREFIX,
    GC_REF_CONTENT,
    SNAPSHOT_REF,
    UNCOMPRESSED,
    filter_inherited_labels,
    snapshot_gc_label,
)
from unpacksim.model.oci import Platform, is_index_type
from unpacksim.unpack.eras import DiscardMode, Era
from unpacksim.unpack.platforms import DEFAULT_PLATFORM, normalize

__all__ = ["ExpectedPull", "State", "actual_state", "compare", "expected_state"]


@dataclass(frozen=True)
class ExpectedPull:
    """One successful pull: the image, the reference pulled, the options that matter."""

    image: BuiltImage
    ref: str = ""
    platform: Platform | None = None
    discard: bool = False

    @property
    def name(self) -> str:
        return self.ref or self.image.name


@dataclass
class State:
    """Snapshots (name -> (kind, parent, labels)), blobs (digest -> labels), images."""

    snapshots: dict[str, tuple[str, str, dict[str, str]]] = field(default_factory=dict)
    content: dict[str, dict[str, str]] = field(default_factory=dict)
    images: dict[str, str] = field(default_factory=dict)  # name -> target digest


def _platform_image(pull: ExpectedPull) -> PlatformImage:
    wanted = normalize(pull.platform or DEFAULT_PLATFORM)
    for image in pull.image.platforms.values():
        if normalize(image.platform) == wanted:
            return image
    raise ValueError(
        f"{pull.image.name} has no platform {wanted} (it has {list(pull.image.platforms)})"
    )


def _repo_and_host(ref: str) -> tuple[str, str]:
    host, _, rest = ref.partition("/")
    cuts = [i for i in (rest.find(":"), rest.find("@")) if i >= 0]
    return host.split(":")[0], rest[: min(cuts)] if cuts else rest


def _child_labels(kids: Sequence[tuple[str, str]], era: Era, drop_layers: bool) -> dict[str, str]:
    """``kids`` are (kind, digest) with kind config, layer or manifest."""
    labels: dict[str, str] = {}
    if not era.typed_child_labels:
        for i, (kind, digest) in enumerate(kids):
            if not (drop_layers and kind == "layer"):
                labels[f"{GC_REF_CONTENT}.{i}"] = digest
        return labels
    counts = {"layer": 0, "manifest": 0}
    for kind, digest in kids:
        if kind == "config":
            labels[f"{GC_REF_CONTENT}.config"] = digest
        elif kind == "layer" and drop_layers:
            continue
        else:
            prefix = {"layer": "l", "manifest": "m"}[kind]
            labels[f"{GC_REF_CONTENT}.{prefix}.{counts[kind]}"] = digest
            counts[kind] += 1
    return labels


def _discard_mode(era: Era, discard: bool) -> DiscardMode:
    return era.discard_mechanism if discard else era.discard_mode


def expected_state(
    pulls: Iterable[ExpectedPull],
    era: Era,
    *,
    snapshotter: str = "native",
    distribution: bool = True,
) -> State:
    """The state after every pull in ``pulls`` succeeded, one after another, in a fresh world.

    Only the ``distribution.source`` labels depend on the order (a pull whose chain already
    exists does not fetch those layers); pass ``distribution=False`` to leave them out, e.g.
    for pulls that overlap in time.
    """
    state = State()
    repos: dict[str, dict[str, set[str]]] = {}
    for pull in pulls:
        host, repo = _repo_and_host(pull.name)
        for digest in _add_pull(state, pull, era, snapshotter):
            repos.setdefault(digest, {}).setdefault(host, set()).add(repo)
            state.content.setdefault(digest, {})
    if distribution:
        for digest, by_host in repos.items():
            for host, names in by_host.items():
                key = DISTRIBUTION_SOURCE_PREFIX + host
                _merge(state.content, digest, {key: ",".join(sorted(names))})
    return state


def _add_pull(state: State, pull: ExpectedPull, era: Era, snapshotter: str) -> list[str]:
    """Add what ``pull`` leaves to ``state``; return the digests its handlers processed."""
    image = _platform_image(pull)
    # The lazy fetch starts at the first layer whose chain does not exist yet (#8973).
    missing = [i for i, c in enumerate(image.chain_ids) if c not in state.snapshots]
    fetched = image.layers[missing[0] :] if missing else ()
    handled = [image.manifest.digest, image.config.digest, *(d.digest for d in fetched)]
    if is_index_type(pull.image.target.media_type):
        handled.insert(0, pull.image.target.digest)
        kids = [("manifest", p.manifest.digest) for p in pull.image.platforms.values()]
        _merge(state.content, pull.image.target.digest, _child_labels(kids, era, False))
    drop = _discard_mode(era, pull.discard) is not DiscardMode.NONE
    kids = [("config", image.config.digest)] + [("layer", d.digest) for d in image.layers]
    _merge(state.content, image.manifest.digest, _child_labels(kids, era, drop))
    if image.chain_ids:  # an empty chain ID "" would delete the label
        label = {snapshot_gc_label(snapshotter): image.chain_ids[-1]}
        _merge(state.content, image.config.digest, label)
    parent = ""
    for desc, diff_id, chain in zip(image.layers, image.diff_ids, image.chain_ids, strict=True):
        _merge(state.content, desc.digest, {UNCOMPRESSED: diff_id})
        labels = filter_inherited_labels(desc.annotations)
        labels[SNAPSHOT_REF] = chain
        state.snapshots[chain] = (Kind.COMMITTED.value, parent, labels)
        parent = chain
    state.images[pull.name] = pull.image.target.digest
    return handled


def _merge(content: dict[str, dict[str, str]], digest: str, labels: dict[str, str]) -> None:
    content.setdefault(digest, {}).update(labels)


def actual_state(
    db: DB, *, namespace: str = "default", snapshotter: str = "native", distribution: bool = True
) -> State:
    """The same shape read from ``db`` (``distribution=False`` drops those labels)."""
    ns = db.namespace(namespace)
    state = State()
    for name, record in ns.snapshotter(snapshotter).items():
        state.snapshots[name] = (record.kind.value, record.parent, dict(record.labels))
    for digest, blob in ns.content.items():
        labels = dict(blob.labels)
        if not distribution:
            labels = {
                k: v for k, v in labels.items() if not k.startswith(DISTRIBUTION_SOURCE_PREFIX)
            }
        state.content[digest] = labels
    for name, image in ns.images.items():
        state.images[name] = image.target.digest
    return state


def compare(expected: State, actual: State) -> list[str]:
    """The differences between two states, one sentence each (empty when equal)."""
    out: list[str] = []
    out += _diff("snapshot", expected.snapshots, actual.snapshots)
    out += _diff("blob", expected.content, actual.content)
    out += _diff("image", expected.images, actual.images)
    return out


def _diff(kind: str, want: Mapping[str, object], have: Mapping[str, object]) -> list[str]:
    out = [f"missing {kind} {k}" for k in want if k not in have]
    out += [f"unexpected {kind} {k}: {have[k]}" for k in have if k not in want]
    out += [
        f"{kind} {k}: expected {want[k]}, found {have[k]}"
        for k in want
        if k in have and want[k] != have[k]
    ]
    return out
