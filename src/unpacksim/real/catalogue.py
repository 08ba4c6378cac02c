"""The differential scenarios: what runs on a real containerd and on the reference.

Each :class:`~unpacksim.real.scenarios.Scenario` below says in its description what
containerd 1.6.20 does; the ``expect`` of its steps is the outcome it gives.  Scenarios end
in a state that does not depend on thread timing: where a failed pull leaves racy leftovers
(which sibling layer fetches finished before the error cancelled the rest), a synchronous GC
follows, which removes them once the pull's lease is gone.

Shared layers are exact: images name the same entries of :data:`LAYERS`.
"""

from __future__ import annotations

import hashlib

from unpacksim.real.outcome import DISTRIBUTION_SOURCE
from unpacksim.real.registry import Effect
from unpacksim.real.scenarios import (
    GC,
    CreateLease,
    DeleteImage,
    DeleteLease,
    Fault,
    ImageSpec,
    Pull,
    PullStep,
    Scenario,
)

__all__ = ["IMAGES", "LAYERS", "SCENARIOS", "scenario"]


def _noise(size: int, seed: bytes) -> bytes:
    """Incompressible, deterministic bytes (a sha256 chain), so gzip keeps the size."""
    out = bytearray()
    block = seed
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


LAYERS: dict[str, dict[str, bytes]] = {
    "base": {"etc/os-release": b"ID=unpacksim\n", "bin/sh": b"#!/bin/true\n" * 20},
    "lib": {"usr/lib/libshared.so": bytes(range(256)) * 8},
    "app-a": {"app/a.txt": b"a" * 3000, "etc/app-a/": b""},
    "app-b": {"app/b.txt": b"b" * 3000},
    "app-c": {"app/c.txt": b"c" * 3000},
    "big": {"data/blob.bin": _noise(96 * 1024, b"big")},
}

APP = ImageSpec("app", layers=("base", "lib", "app-a"))
OTHER = ImageSpec("other", layers=("base", "lib", "app-b"))
THIRD = ImageSpec("third", layers=("base", "app-c"))
BIG = ImageSpec("big", layers=("base", "big"))
MULTI = ImageSpec(
    "multi", platforms={"linux/amd64": ("base", "app-a"), "linux/arm64": ("base", "app-b")}
)
DOCKER = ImageSpec("docker", layers=("base", "lib"), docker=True)
PLAIN = ImageSpec("plain", layers=("base", "lib"), compressed=False)
DUP = ImageSpec("dup", layers=("base", "app-a", "base"))

#: Every image the catalogue uses.
IMAGES = (APP, OTHER, THIRD, BIG, MULTI, DOCKER, PLAIN, DUP)


def _s(name: str, description: str, *steps: object, **extra: object) -> Scenario:
    used = {i.name for s in steps if isinstance(s, PullStep) for i in _pulled(s)}
    used |= {s.image for s in steps if isinstance(s, DeleteImage)}
    images = tuple(i for i in IMAGES if i.name in used)
    layer_names = {n for i in images for n in i.layers + sum(i.platforms.values(), ())}
    layers = {k: v for k, v in LAYERS.items() if k in layer_names}
    return Scenario(name, description, layers, images, tuple(steps), **extra)  # type: ignore[arg-type]


def _pulled(step: PullStep) -> list[ImageSpec]:
    return [i for p in step.pulls for i in IMAGES if i.name == p.image]


def _pull(*images: str, **options: object) -> PullStep:
    return PullStep(tuple(Pull(i, **options) for i in images))  # type: ignore[arg-type]


def _faulted(image: str, *faults: Fault, expect: str, **options: object) -> PullStep:
    return PullStep((Pull(image, **options),), faults, (expect,))  # type: ignore[arg-type]


_A, _O, _T = APP.name, OTHER.name, THIRD.name
# Pulls of two repositories that fetch a shared blob at once race on its distribution-source
# label (Info then Update in AppendDistributionSourceLabel): see unpacksim.real.outcome.
_RACY = (DISTRIBUTION_SOURCE,)

SCENARIOS: tuple[Scenario, ...] = (
    # --- plain pulls ---------------------------------------------------------------------------
    _s("pull-one", "One pull with unpack: blobs, child labels, chain-ID snapshots, the pull "
       "lease deleted at the end (its resources wait for the next GC).", _pull(_A)),
    _s("pull-then-gc", "A pull, then GC: the image keeps manifest, config, layers and the "
       "snapshot chain through the config's gc.ref.snapshot.native label.", _pull(_A), GC()),
    _s("pull-twice", "The second pull finds every chain ID (Stat skip) and fetches no layer.",
       _pull(_A), _pull(_A), GC()),
    _s("pull-without-unpack", "Pull without unpack: content only, no snapshot, no "
       "gc.ref.snapshot label on the config.", _pull(_A, unpack=False), GC()),
    _s("pull-limited-downloads", "MaxConcurrentDownloads(1): in 1.6 the unpacker's layer "
       "fetches honour it too (#6109).", _pull(_A, max_concurrent_downloads=1), GC()),
    # --- concurrency ---------------------------------------------------------------------------
    _s("concurrent-same-image", "Two pulls of one image at once: both succeed; the loser of "
       "each Prepare/Commit race aborts its extraction key.", _pull(_A, _A), GC()),
    _s("concurrent-shared-layers", "Three images sharing base (and two of them lib) pulled at "
       "once: one snapshot per chain ID, every image complete.", _pull(_A, _O, _T), GC(),
       racy_labels=_RACY),
    _s("concurrent-limited", "Two pulls of one image, both with MaxConcurrentDownloads(1).",
       _pull(_A, _A, max_concurrent_downloads=1), GC()),
    _s("concurrent-slow-shared-layer", "Two images sharing base pulled at once while the "
       "first fetch of base is held 0.3s: the other puller waits on the ingest ref lock "
       "(Unavailable, backoff) and then finds the blob.",
       PullStep((Pull(_A), Pull(_O)), (Fault(Effect.DELAY, _A, "layer", 0, seconds=0.3),)),
       GC(), racy_labels=_RACY),
    _s("concurrent-one-faulted", "Two images sharing base and lib at once; the layer only "
       "'other' has fails with 500: 'other' fails, 'app' succeeds.",
       PullStep((Pull(_A), Pull(_O)), (Fault(Effect.ERROR, _O, "layer", 2),), ("ok", "other")),
       GC(), racy_labels=_RACY),
    # --- discard (WithChildLabelMap(ChildGCLabelsFilterLayers)) -------------------------------
    _s("discard-then-gc", "A discard pull writes no layer labels on the manifest: after GC the "
       "layer blobs are gone, the snapshots stay (config -> snapshot).",
       _pull(_A, discard=True), GC()),
    _s("discard-then-second-pull", "Discard, GC, then a normal pull: every chain ID exists, so "
       "no layer is fetched (#8973); the manifest's new l.* labels point at absent blobs.",
       _pull(_A, discard=True), GC(), _pull(_A), GC()),
    _s("discard-then-shared-image", "Discard 'app', GC, then pull 'other': base and lib are "
       "skipped by Stat, only app-b is fetched; base and lib blobs stay absent.",
       _pull(_A, discard=True), GC(), _pull(_O), GC()),
    _s("discard-under-user-lease", "TestImagePullWithDiscardContent: discard pull under a user "
       "lease, then the lease deleted synchronously: snapshots stay, layer blobs go.",
       CreateLease("user", expire="24h"), _pull(_A, discard=True, lease="user"),
       DeleteLease("user", sync=True)),
    # --- deletion and GC -----------------------------------------------------------------------
    _s("delete-image-sync", "Pull, then delete the image synchronously: everything goes.",
       _pull(_A), DeleteImage(_A, sync=True)),
    _s("delete-image-then-gc", "Pull, delete the image without waiting, then GC.",
       _pull(_A), DeleteImage(_A), GC()),
    _s("delete-one-of-shared", "Pull two images sharing base and lib, delete one: the shared "
       "blobs and snapshots stay for the other.", _pull(_A, _O), DeleteImage(_A, sync=True),
       racy_labels=_RACY),
    _s("delete-then-repull", "Pull, delete synchronously, pull again: a full refetch.",
       _pull(_A), DeleteImage(_A, sync=True), _pull(_A), GC()),
    _s("lease-holds-after-image-delete", "TestLeaseResources' shape: a pull under a user lease "
       "survives the image's synchronous deletion; the lease holds everything.",
       CreateLease("user"), _pull(_A, lease="user"), DeleteImage(_A, sync=True)),
    _s("delete-missing-image", "Deleting an image that does not exist is NotFound.",
       DeleteImage(_A, expect="NotFound"), _pull(_A), GC()),
    # --- registry faults -----------------------------------------------------------------------
    _s("layer-error-500", "A layer fetch answered 500: the pull fails with the status; the "
       "extraction snapshot leaks until GC (no abort on fetch errors in 1.6).",
       _faulted(_A, Fault(Effect.ERROR, _A, "layer", 1), expect="other"), GC()),
    _s("layer-error-404", "A layer fetch answered 404: NotFound.",
       _faulted(_A, Fault(Effect.ERROR, _A, "layer", 2, status=404), expect="NotFound"),
       GC()),
    _s("layer-truncate-then-retry", "A truncated layer fails the pull; the retry resumes the "
       "ingest with a Range request and succeeds.",
       _faulted(BIG.name, Fault(Effect.TRUNCATE, BIG.name, "layer", 1), expect="other"),
       _pull(BIG.name), GC()),
    _s("layer-corrupt-poisons-ingest", "A corrupted layer fails the commit (FailedPrecondition); "
       "the complete-but-wrong ingest is committed again by the next pull, which fails the "
       "same way without fetching; after GC a pull succeeds.",
       _faulted(_A, Fault(Effect.CORRUPT, _A, "layer", 1), expect="FailedPrecondition",
                max_concurrent_downloads=1),
       PullStep((Pull(_A),), expect=("FailedPrecondition",)), GC(), _pull(_A), GC()),
    _s("layer-drop-reconnects", "The connection drops mid-layer once: the fetcher reconnects "
       "with a Range request and the pull succeeds.",
       _faulted(BIG.name, Fault(Effect.DROP, BIG.name, "layer", 1), expect="ok"), GC()),
    _s("manifest-error", "The manifest fetch answers 500: the pull fails before any unpack.",
       _faulted(_A, Fault(Effect.ERROR, _A, "manifest"), expect="other"), GC()),
    _s("resolve-error", "The HEAD resolving the tag answers 503: resolve fails.",
       _faulted(_A, Fault(Effect.ERROR, _A, "manifest", method="HEAD", status=503),
                expect="other"), GC()),
    _s("config-truncate", "The config arrives truncated: the dispatch fails before unpack.",
       _faulted(_A, Fault(Effect.TRUNCATE, _A, "config"), expect="other"), GC()),
    _s("config-corrupt", "The config arrives with a flipped byte: its commit fails the digest "
       "check (FailedPrecondition) before any unpack.",
       _faulted(_A, Fault(Effect.CORRUPT, _A, "config"), expect="FailedPrecondition"), GC()),
    _s("manifest-404", "The manifest GET answers 404: NotFound, 'content at <url> not found' "
       "(the fetcher's manifests endpoint).",
       _faulted(_A, Fault(Effect.ERROR, _A, "manifest", status=404), expect="NotFound"), GC()),
    _s("resolve-404", "The HEAD resolving the tag answers 404: the resolver tries the next "
       "host, then fails NotFound '<ref>: not found'.",
       _faulted(_A, Fault(Effect.ERROR, _A, "manifest", method="HEAD", status=404),
                expect="NotFound"), GC()),
    _s("fail-then-repull", "A layer fetch answers 500; the pull is retried at once, before any "
       "GC: it finds the blobs the failed pull committed and a fresh extraction key beside the "
       "leaked one, and succeeds; GC then takes the leaked snapshot.",
       _faulted(_A, Fault(Effect.ERROR, _A, "layer", 1), expect="other"), _pull(_A), GC()),
    # --- image shapes --------------------------------------------------------------------------
    _s("index-two-platforms", "An OCI index for amd64 and arm64: the index labels both "
       "manifests (m.0, m.1); only the amd64 one is fetched and unpacked.",
       _pull(MULTI.name, platform="linux/amd64"), GC()),
    _s("docker-media-types", "Docker schema 2 manifest, config and gzip layers.",
       _pull(DOCKER.name), GC()),
    _s("uncompressed-layers", "Plain tar layers: the uncompressed label equals the digest.",
       _pull(PLAIN.name), GC()),
    _s("duplicate-layer", "The same layer blob twice in one manifest (#3583): two chain IDs, "
       "one blob.", _pull(DUP.name), GC()),
)  # fmt: skip


def scenario(name: str) -> Scenario:
    """The catalogue scenario called ``name``."""
    for s in SCENARIOS:
        if s.name == name:
            return s
    raise KeyError(f"no scenario {name!r}; there are {[s.name for s in SCENARIOS]}")
