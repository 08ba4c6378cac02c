"""Scenario programs as data: the images a registry serves and the timed actions of actors.

A :class:`Program` is what one simulated run does: the images pushed to the registry
(:class:`ImageSpec`), the daemon's configuration (snapshotters, the GC scheduler, latencies,
bandwidth) and a list of actions, each started at a simulated time by a named actor.  Actions
overlap in simulated time: a pull started at t=0 is still running when a GC starts at t=0.02.
:func:`unpacksim.properties.program.run_program` runs one.

Programs are plain frozen data with a JSON form (:meth:`Program.to_json` gives the steps of a
finding, ``{"actor", "action", "args"}``; :meth:`Program.from_json` reads them back), so a
finding file alone rebuilds the run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any, ClassVar

from unpacksim.model.builders import (
    BuiltImage,
    Layer,
    LayerSpec,
    build_image,
    build_index,
    build_layer,
)
from unpacksim.model.oci import Platform
from unpacksim.sim.services import LatencyModel

__all__ = [
    "ACTIONS",
    "LABEL_SELECTORS",
    "Action",
    "Cancel",
    "CollectGarbage",
    "CreateLease",
    "DeleteImage",
    "DeleteLease",
    "EditLabels",
    "ExpireLease",
    "Heal",
    "HoldSnapshot",
    "ImageSpec",
    "Inject",
    "Program",
    "ProgramError",
    "Pull",
    "Unpack",
]

DEFAULT_PLATFORM = "linux/amd64"

#: What :class:`EditLabels` can select on an image's blobs.
LABEL_SELECTORS = ("manifest.layers", "manifest.config", "config.snapshot", "index.manifests")


class ProgramError(ValueError):
    """Misuse: a program or action that cannot run (the message says what to change)."""


# --- images ----------------------------------------------------------------------------------


def _noise(token: str, size: int) -> bytes:
    out = bytearray()
    block = token.encode()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return bytes(out[:size])


@lru_cache(maxsize=4096)
def layer_for(token: str, size: int) -> Layer:
    """The layer a token stands for: one file ``layer/<token>`` of ``size`` bytes."""
    return build_layer({f"layer/{token}": _noise(token, size)})


@dataclass(frozen=True)
class ImageSpec:
    """An image the registry serves, built deterministically from layer *tokens*.

    Equal tokens (with equal ``layer_bytes``) are the same layer blob, so shared bases and
    duplicate layers are repeated tokens: ``ImageSpec("r.test/a:1", ("base", "app"))``.

    Attributes:
        name: the reference pulls use (``registry.test/app:1``).
        layers: the ``linux/amd64`` layers, bottom first (may be empty).
        platforms: further ``(platform, layers)`` pairs; if any, the image is an index whose
            first manifest is ``linux/amd64``.
        docker: Docker media types instead of OCI ones.
        layer_bytes: the size of each layer's one file (sets how long a download takes).
    """

    name: str
    layers: tuple[str, ...]
    platforms: tuple[tuple[str, tuple[str, ...]], ...] = ()
    docker: bool = False
    layer_bytes: int = 256

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(
            self, "platforms", tuple((str(p), tuple(ls)) for p, ls in self.platforms)
        )
        if not self.name or "/" not in self.name:
            raise ProgramError(
                f"ImageSpec name {self.name!r} must be a reference such as 'registry.test/app:1'"
            )
        if self.layer_bytes < 1:
            raise ProgramError(f"ImageSpec.layer_bytes must be at least 1, got {self.layer_bytes}")
        names = [DEFAULT_PLATFORM, *(p for p, _ in self.platforms)]
        if len(set(names)) != len(names):
            raise ProgramError(f"ImageSpec {self.name!r} lists a platform twice: {names}")
        for token in self.tokens():
            if not token:
                raise ProgramError(f"ImageSpec {self.name!r} has an empty layer token")

    def tokens(self) -> list[str]:
        """Every layer token of every platform, in order (with repeats)."""
        return [*self.layers, *(t for _, ls in self.platforms for t in ls)]

    def build(self) -> BuiltImage:
        """The built image (cached: the same spec gives the same object)."""
        return _build(self)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "layers": list(self.layers),
            "platforms": {p: list(ls) for p, ls in self.platforms},
            "docker": self.docker,
            "layer_bytes": self.layer_bytes,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ImageSpec:
        """Read :meth:`to_json`'s form back.

        Raises:
            ProgramError: a field is missing or of the wrong type.
        """
        try:
            return cls(
                name=str(data["name"]),
                layers=tuple(str(t) for t in data["layers"]),
                platforms=tuple(
                    (str(p), tuple(str(t) for t in ls)) for p, ls in dict(data["platforms"]).items()
                ),
                docker=bool(data["docker"]),
                layer_bytes=int(data["layer_bytes"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProgramError(f"not an image spec: {data!r} ({exc})") from None


@lru_cache(maxsize=1024)
def _build(spec: ImageSpec) -> BuiltImage:
    def layers(tokens: Sequence[str]) -> list[Layer]:
        return [layer_for(t, spec.layer_bytes) for t in tokens]

    if not spec.platforms:
        return build_image(spec.name, layers(spec.layers), docker=spec.docker)
    platforms: dict[Platform | str, Sequence[LayerSpec | Layer]] = {
        DEFAULT_PLATFORM: layers(spec.layers)
    }
    for platform, tokens in spec.platforms:
        platforms[platform] = layers(tokens)
    return build_index(spec.name, platforms, docker=spec.docker)


# --- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Action:
    """One action of a program: ``actor`` starts it at simulated time ``at``.

    Subclasses name the action (``kind``, the finding step's ``action`` word) and carry its
    arguments.  An action runs as its own goroutine named after the actor, so actions that
    take time (a pull, a synchronous delete) overlap with everything after them.
    """

    kind: ClassVar[str] = ""
    at: float
    actor: str

    def __post_init__(self) -> None:
        if not self.actor:
            raise ProgramError(f"{type(self).__name__} needs an actor name")
        if not (self.at >= 0 and self.at != float("inf")):
            raise ProgramError(f"{type(self).__name__}.at must be a finite time >= 0")

    def args(self) -> dict[str, Any]:
        """The action's arguments as JSON data (``at`` included, ``actor`` not)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "actor"}

    def describe(self) -> str:
        """``t=0.020 p1: pull image=registry.test/a:1`` (defaults left out)."""
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("at", "actor") or value == f.default:
                continue
            shown.append(f"{f.name}={value}")
        return f"t={self.at:.3f} {self.actor}: {self.kind} {' '.join(shown)}".rstrip()


@dataclass(frozen=True, kw_only=True)
class Pull(Action):
    """``Client.Pull(image, WithPullUnpack, ...)``.

    ``lease`` runs the pull under a user lease (created by a :class:`CreateLease`), so Pull
    creates none; ``implementation`` overrides the program's implementation for this pull.
    """

    kind: ClassVar[str] = "pull"
    image: str
    snapshotter: str | None = None
    discard: bool = False
    lease: str | None = None
    max_concurrent_downloads: int = 0
    implementation: str | None = None


@dataclass(frozen=True, kw_only=True)
class Cancel(Action):
    """Cancel the context of pull ``target`` (a kubelet giving up)."""

    kind: ClassVar[str] = "cancel"
    target: str


@dataclass(frozen=True, kw_only=True)
class DeleteImage(Action):
    """``ImageService.Delete(image)``; ``sync`` waits for a collection (SynchronousDelete)."""

    kind: ClassVar[str] = "delete_image"
    image: str
    sync: bool = False


@dataclass(frozen=True, kw_only=True)
class CreateLease(Action):
    """Create user lease ``lease``, expiring ``expire_in`` seconds later (None: never)."""

    kind: ClassVar[str] = "create_lease"
    lease: str
    expire_in: float | None = None


@dataclass(frozen=True, kw_only=True)
class DeleteLease(Action):
    """Delete lease ``lease``, or the lease pull ``of_pull`` runs under (give one of them)."""

    kind: ClassVar[str] = "delete_lease"
    lease: str | None = None
    of_pull: str | None = None
    sync: bool = False


@dataclass(frozen=True, kw_only=True)
class ExpireLease(Action):
    """Let lease ``lease`` (or pull ``of_pull``'s) reach its ``containerd.io/gc.expire``.

    containerd has no API to update a lease; this stands for its expiry time passing (the
    24 h of a pull lease) without moving the whole simulation's clock.
    """

    kind: ClassVar[str] = "expire_lease"
    lease: str | None = None
    of_pull: str | None = None


@dataclass(frozen=True, kw_only=True)
class EditLabels(Action):
    """Remove (``value`` None) or change GC reference labels on one of ``image``'s blobs.

    ``selector`` picks the labels: ``manifest.layers`` (the manifest's labels naming layers),
    ``manifest.config``, ``config.snapshot`` (``gc.ref.snapshot.*`` on the config) or
    ``index.manifests``.  Done as ``ctr content label`` does: Info, then Update with one
    ``labels.<key>`` field path per label.
    """

    kind: ClassVar[str] = "edit_labels"
    image: str
    selector: str
    value: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.selector not in LABEL_SELECTORS:
            raise ProgramError(
                f"EditLabels.selector {self.selector!r} is not one of {list(LABEL_SELECTORS)}"
            )


@dataclass(frozen=True, kw_only=True)
class CollectGarbage(Action):
    """Run a collection now; ``sync``: ask the scheduler and wait (``ScheduleAndWait``)."""

    kind: ClassVar[str] = "gc"
    sync: bool = False


@dataclass(frozen=True, kw_only=True)
class HoldSnapshot(Action):
    """Create container ``container`` on ``image``: Prepare its rootfs on the top chain ID
    (``WithNewSnapshot``) under a lease, then the container record, which GC treats as a root.
    """

    kind: ClassVar[str] = "hold_snapshot"
    image: str
    container: str
    snapshotter: str | None = None


@dataclass(frozen=True, kw_only=True)
class Unpack(Action):
    """``image.Unpack(ctx, snapshotter)`` of an existing image record (the client fallback
    path, ``unpack.fallback.image_unpack``), under its own lease."""

    kind: ClassVar[str] = "unpack"
    image: str
    snapshotter: str | None = None


@dataclass(frozen=True, kw_only=True)
class Inject(Action):
    """Arm fault site ``site``: its next hit with ``key`` fires (any key if ``key`` is "")."""

    kind: ClassVar[str] = "inject"
    site: str
    key: str = ""


@dataclass(frozen=True, kw_only=True)
class Heal(Action):
    """From now on no fault fires."""

    kind: ClassVar[str] = "heal"


#: Every action class by its ``kind``.
ACTIONS: dict[str, type[Action]] = {
    cls.kind: cls
    for cls in (
        Pull,
        Cancel,
        DeleteImage,
        CreateLease,
        DeleteLease,
        ExpireLease,
        EditLabels,
        CollectGarbage,
        HoldSnapshot,
        Unpack,
        Inject,
        Heal,
    )
}


def action_from_step(step: Mapping[str, Any]) -> Action:
    """An action from a finding step ``{"actor", "action", "args"}``.

    Raises:
        ProgramError: an unknown action word or bad arguments.
    """
    kind = step.get("action")
    cls = ACTIONS.get(str(kind))
    if cls is None:
        raise ProgramError(f"unknown action {kind!r}; actions are {list(ACTIONS)}")
    args = dict(step.get("args") or {})
    try:
        return cls(actor=str(step["actor"]), **args)
    except (KeyError, TypeError) as exc:
        raise ProgramError(f"bad {kind} step {dict(step)!r}: {exc}") from None


# --- programs --------------------------------------------------------------------------------


def _latency_json(latency: LatencyModel | None) -> dict[str, Any] | None:
    if latency is None:
        return None
    return {
        "table": {k: list(v) for k, v in latency.table.items()},
        "default": list(latency.default),
    }


def _latency_from(data: Mapping[str, Any] | None) -> LatencyModel | None:
    if data is None:
        return None
    table = {str(k): [float(x) for x in v] for k, v in dict(data["table"]).items()}
    return LatencyModel(table, default=[float(x) for x in data["default"]])


@dataclass(frozen=True)
class Program:
    """A scenario: images, daemon configuration, and timed actions (in start order).

    Attributes:
        images: what the registry serves.
        actions: the actions, sorted by ``at`` (ties keep their order).
        snapshotters: the daemon's snapshotters; the first is the default.
        gc_scheduler: run containerd's GC scheduler (default configuration); otherwise
            collections happen only when an action asks (or the ``gc.run`` fault fires).
        latency: the latency model of service calls (None: 1 ms each).
        bandwidth: the registry link in bytes per simulated second (None: the default).

    Raises (on construction):
        ProgramError: actions out of time order, two images with one name, a pull of an
            image not in ``images``, an action naming an unknown pull, or a repeated pull
            actor.
    """

    images: tuple[ImageSpec, ...]
    actions: tuple[Action, ...]
    snapshotters: tuple[str, ...] = ("native",)
    gc_scheduler: bool = True
    latency: LatencyModel | None = field(default=None, compare=False)
    bandwidth: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "images", tuple(self.images))
        object.__setattr__(self, "actions", tuple(self.actions))
        object.__setattr__(self, "snapshotters", tuple(self.snapshotters))
        self._validate()

    def _validate(self) -> None:
        names = [i.name for i in self.images]
        if len(set(names)) != len(names):
            raise ProgramError(f"two images share a name: {names}")
        if not self.snapshotters:
            raise ProgramError("a program needs at least one snapshotter")
        times = [a.at for a in self.actions]
        if times != sorted(times):
            raise ProgramError(f"actions must be in time order, got times {times}")
        pulls: list[str] = []
        for action in self.actions:
            self.check_action(action, pulls)

    def check_action(self, action: Action, pulls: list[str]) -> None:
        """Check ``action`` against this program's images and snapshotters and the pull
        actors before it (``pulls``, which a valid pull is appended to).

        Raises:
            ProgramError: the action names an unknown image, snapshotter or pull, or repeats
                a pull actor.
        """
        images = {i.name for i in self.images}
        image = getattr(action, "image", None)
        if image is not None and image not in images:
            raise ProgramError(f"{action.describe()}: no image {image!r} in the program")
        sn = getattr(action, "snapshotter", None)
        if sn is not None and sn not in self.snapshotters:
            raise ProgramError(
                f"{action.describe()}: no snapshotter {sn!r} (have {list(self.snapshotters)})"
            )
        target = getattr(action, "target", None) or getattr(action, "of_pull", None)
        if target is not None and target not in pulls:
            raise ProgramError(f"{action.describe()}: no earlier pull by actor {target!r}")
        if isinstance(action, DeleteLease | ExpireLease) and (action.lease is None) == (
            action.of_pull is None
        ):
            raise ProgramError(f"{action.describe()}: give exactly one of lease= or of_pull=")
        if isinstance(action, Pull):
            if action.actor in pulls:
                raise ProgramError(f"{action.describe()}: actor {action.actor!r} pulls twice")
            pulls.append(action.actor)

    # --- reading -----------------------------------------------------------------------

    def image(self, name: str) -> ImageSpec:
        """The image called ``name``.

        Raises:
            KeyError: no such image.
        """
        for spec in self.images:
            if spec.name == name:
                return spec
        raise KeyError(f"no image {name!r} in the program")

    def pulls(self) -> list[Pull]:
        return [a for a in self.actions if isinstance(a, Pull)]

    def actors(self) -> list[str]:
        """Every actor, in the order they first act."""
        return list(dict.fromkeys(a.actor for a in self.actions))

    def end(self) -> float:
        """The time of the last action (0 without actions)."""
        return self.actions[-1].at if self.actions else 0.0

    def describe(self) -> str:
        """The program in plain lines: images, then one line per action."""
        lines = [f"image {i.name}: layers {list(i.layers)}" for i in self.images]
        lines += [a.describe() for a in self.actions]
        return "\n".join(lines)

    # --- JSON ----------------------------------------------------------------------------

    def configuration(self) -> dict[str, Any]:
        return {
            "snapshotters": list(self.snapshotters),
            "gc_scheduler": self.gc_scheduler,
            "latency": _latency_json(self.latency),
            "bandwidth": self.bandwidth,
        }

    def to_json(self) -> list[dict[str, Any]]:
        """The program as finding steps: ``configure``, one ``push`` per image, the actions."""
        steps: list[dict[str, Any]] = [
            {"actor": "daemon", "action": "configure", "args": self.configuration()}
        ]
        steps += [
            {"actor": "registry", "action": "push", "args": spec.to_json()} for spec in self.images
        ]
        steps += [{"actor": a.actor, "action": a.kind, "args": a.args()} for a in self.actions]
        return steps

    @classmethod
    def from_json(cls, steps: Sequence[Mapping[str, Any]]) -> Program:
        """Read :meth:`to_json`'s steps back (exactly).

        Raises:
            ProgramError: a malformed step or an invalid program.
        """
        config: Mapping[str, Any] = {}
        images: list[ImageSpec] = []
        actions: list[Action] = []
        for step in steps:
            if not isinstance(step, Mapping):
                raise ProgramError(f"a program step must be an object, got {step!r}")
            word = step.get("action")
            if word == "configure":
                config = dict(step.get("args") or {})
            elif word == "push":
                images.append(ImageSpec.from_json(dict(step.get("args") or {})))
            else:
                actions.append(action_from_step(step))
        try:
            return cls(
                images=tuple(images),
                actions=tuple(actions),
                snapshotters=tuple(config.get("snapshotters", ("native",))),
                gc_scheduler=bool(config.get("gc_scheduler", True)),
                latency=_latency_from(config.get("latency")),
                bandwidth=config.get("bandwidth"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ProgramError):
                raise
            raise ProgramError(f"bad configure step {dict(config)!r}: {exc}") from None
