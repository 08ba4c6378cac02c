"""What a differential scenario is, as data: images to build, then steps to run.

A :class:`Scenario` names its layers (file maps, so images can share a layer exactly), the
images built from them (:class:`ImageSpec`, built with :mod:`unpacksim.model.builders`), and
the steps in order:

- :class:`PullStep`: one or more :class:`Pull` s started at once, with the registry faults
  (:class:`Fault`) armed for that step only;
- :class:`DeleteImage`, :class:`GC`, :class:`CreateLease`, :class:`DeleteLease`.

Pull steps carry the outcome containerd is expected to give (``expect``: ``ok`` or an errdefs
class name per pull, ``other`` for an error of no errdefs class).  The same scenario runs on a
real daemon (:mod:`unpacksim.real.runner`) and on the reference, and each side's run is a
:class:`~unpacksim.real.outcome.ScenarioRun`.  Faults use the registry's vocabulary
(:class:`~unpacksim.real.registry.Effect`) and are resolved against the built images here, so
a scenario says "truncate layer 1 of app:v1", not a digest.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from unpacksim.model.builders import BuiltImage, Layer, build_image, build_index, build_layer
from unpacksim.model.oci import Descriptor, Platform, is_index_type
from unpacksim.real.registry import Effect, RegistryFault

__all__ = [
    "GC",
    "CreateLease",
    "DeleteImage",
    "DeleteLease",
    "Fault",
    "ImageSpec",
    "Pull",
    "PullStep",
    "Scenario",
    "ScenarioError",
    "Step",
    "build_images",
    "resolve_fault",
]

_OUTCOMES = (
    "ok", "other", "NotFound", "AlreadyExists", "InvalidArgument", "FailedPrecondition",
    "Unavailable", "NotImplementedYet", "Canceled", "DeadlineExceeded", "Unknown",
)  # fmt: skip


class ScenarioError(ValueError):
    """A scenario that cannot run: an unknown layer, image or lease, or a bad fault target."""


def _frozen_map(value: Mapping[str, object]) -> MappingProxyType[str, object]:
    return MappingProxyType(dict(value))


@dataclass(frozen=True)
class ImageSpec:
    """An image served as ``<repo>:<tag>``.

    Give ``layers`` (names from :attr:`Scenario.layers`, bottom first) for a single-platform
    image whose target is its manifest, or ``platforms`` (``"os/arch"`` to layer names) for
    an index.  ``docker`` uses Docker media types; ``compressed`` False serves plain tars.
    """

    repo: str
    tag: str = "v1"
    layers: tuple[str, ...] = ()
    platforms: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    docker: bool = False
    compressed: bool = True

    def __post_init__(self) -> None:
        if bool(self.layers) == bool(self.platforms):
            raise ScenarioError(
                f"image {self.name}: give either `layers` (one platform) or `platforms` "
                "(an index), not both and not neither"
            )
        object.__setattr__(self, "platforms", _frozen_map(self.platforms))

    @property
    def name(self) -> str:
        return f"{self.repo}:{self.tag}"


@dataclass(frozen=True)
class Pull:
    """One ``client.Pull`` of an image of the scenario (by ``repo:tag``) and its options."""

    image: str
    snapshotter: str = "native"
    unpack: bool = True
    max_concurrent_downloads: int = 0
    discard: bool = False
    platform: str = ""
    lease: str = ""


@dataclass(frozen=True)
class Fault:
    """A registry fault aimed at one blob of one image.

    ``part`` is ``layer`` (with ``index``), ``config``, ``manifest`` (the platform's, see
    ``platform``) or ``index``; ``method`` ``HEAD`` with part ``manifest`` faults the resolve
    of the tag instead.  ``hits``, ``status``, ``seconds``, ``keep`` and ``at`` are as in
    :class:`~unpacksim.real.registry.RegistryFault`.
    """

    effect: Effect
    image: str
    part: str = "layer"
    index: int = 0
    platform: str = ""
    method: str = "GET"
    hits: tuple[int, ...] = (1,)
    status: int = 500
    seconds: float = 0.0
    keep: int | None = None
    at: int | None = None


@dataclass(frozen=True)
class PullStep:
    """Pulls started at once, the faults armed meanwhile, and the outcome of each pull."""

    pulls: tuple[Pull, ...]
    faults: tuple[Fault, ...] = ()
    expect: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.pulls:
            raise ScenarioError("a PullStep needs at least one Pull")
        if not self.expect:
            object.__setattr__(self, "expect", ("ok",) * len(self.pulls))
        if len(self.expect) != len(self.pulls):
            raise ScenarioError(f"expect has {len(self.expect)} outcomes for {len(self.pulls)}")
        bad = [e for e in self.expect if e not in _OUTCOMES]
        if bad:
            raise ScenarioError(f"unknown outcomes {bad}; use one of {list(_OUTCOMES)}")


@dataclass(frozen=True)
class DeleteImage:
    """``ImageService().Delete`` of a scenario image (``SynchronousDelete`` if ``sync``)."""

    image: str
    sync: bool = False
    expect: str = "ok"


@dataclass(frozen=True)
class GC:
    """One synchronous garbage collection."""


@dataclass(frozen=True)
class CreateLease:
    """A user lease (``leases.WithID``), optionally expiring (a Go duration, ``24h``)."""

    lease: str
    expire: str = ""


@dataclass(frozen=True)
class DeleteLease:
    """Delete a user lease (``leases.SynchronousDelete`` if ``sync``)."""

    lease: str
    sync: bool = False
    expect: str = "ok"


Step = PullStep | DeleteImage | GC | CreateLease | DeleteLease


@dataclass(frozen=True)
class Scenario:
    """A differential scenario (see the module docstring).

    Attributes:
        name: a short unique id (``concurrent-shared-base``).
        description: what happens and what containerd does, in plain words.
        layers: layer name to its files (path to bytes).
        images: the images the registry serves.
        steps: what runs, in order.
        snapshotters: the snapshotters read back.
        namespace: the containerd namespace everything runs in.
        racy_labels: canonical label keys whose final value depends on thread timing on
            either side (see :mod:`unpacksim.real.outcome`); compared as ``<racy>``.
        divergence: a documented, explained divergence from the reference ("" if none).
    """

    name: str
    description: str
    layers: Mapping[str, Mapping[str, bytes]]
    images: tuple[ImageSpec, ...]
    steps: tuple[Step, ...]
    snapshotters: tuple[str, ...] = ("native",)
    namespace: str = "default"
    racy_labels: tuple[str, ...] = ()
    divergence: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "layers", MappingProxyType({k: _frozen_map(v) for k, v in self.layers.items()})
        )
        self._check()

    def _check(self) -> None:
        names = [i.name for i in self.images]
        if len(set(names)) != len(names):
            raise ScenarioError(f"scenario {self.name}: an image is given twice in {names}")
        for image in self.images:
            used = list(image.layers) + [n for ls in image.platforms.values() for n in ls]
            unknown = sorted(set(used) - set(self.layers))
            if unknown:
                raise ScenarioError(f"scenario {self.name}: image {image.name} uses {unknown}")
        for step in self.steps:
            refs = [p.image for p in step.pulls] if isinstance(step, PullStep) else []
            refs += [f.image for f in step.faults] if isinstance(step, PullStep) else []
            refs += [step.image] if isinstance(step, DeleteImage) else []
            missing = sorted(set(refs) - set(names))
            if missing:
                raise ScenarioError(f"scenario {self.name}: steps name unknown images {missing}")

    def image(self, name: str) -> ImageSpec:
        for image in self.images:
            if image.name == name:
                return image
        raise ScenarioError(f"scenario {self.name} has no image {name!r}")


def build_images(scenario: Scenario) -> dict[str, BuiltImage]:
    """Build every image of ``scenario`` (deterministic bytes), by ``repo:tag``."""
    out: dict[str, BuiltImage] = {}
    for spec in scenario.images:
        layer = {
            name: build_layer(files, compressed=spec.compressed)
            for name, files in scenario.layers.items()
        }
        if spec.layers:
            out[spec.name] = build_image(
                spec.name, [layer[n] for n in spec.layers], docker=spec.docker
            )
        else:
            platforms: dict[Platform | str, Sequence[Layer]] = {
                p: [layer[n] for n in names] for p, names in spec.platforms.items()
            }
            out[spec.name] = build_index(spec.name, platforms, docker=spec.docker)
    return out


def _target(fault: Fault, image: BuiltImage) -> Descriptor:
    if fault.part == "index" and not is_index_type(image.target.media_type):
        raise ScenarioError(f"fault on the index of {image.name}, which is no index")
    if fault.part == "index" or (fault.part == "manifest" and fault.method == "HEAD"):
        return image.target  # a HEAD resolves the tag to the target
    platform = image.platform(fault.platform) if fault.platform else image.single
    if fault.part == "manifest":
        return platform.manifest
    if fault.part == "config":
        return platform.config
    if fault.part == "layer":
        if not 0 <= fault.index < len(platform.layers):
            raise ScenarioError(
                f"fault on layer {fault.index} of {image.name}, which has "
                f"{len(platform.layers)} layers"
            )
        return platform.layers[fault.index]
    raise ScenarioError(f"fault part must be layer, config, manifest or index: {fault.part!r}")


def resolve_fault(fault: Fault, images: Mapping[str, BuiltImage]) -> RegistryFault:
    """The registry rule for ``fault`` against the built images."""
    target = _target(fault, images[fault.image])
    endpoint = "blobs" if fault.part in ("layer", "config") else "manifests"
    return RegistryFault(
        effect=fault.effect,
        digest=target.digest,
        endpoint=endpoint,
        method=fault.method,
        hits=fault.hits,
        status=fault.status,
        seconds=fault.seconds,
        keep=fault.keep,
        at=fault.at,
    )
