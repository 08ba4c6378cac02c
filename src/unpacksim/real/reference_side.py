"""Run a differential scenario on the reference: the ``v1.6`` preset in a simulated World.

:func:`run_reference` is the reference's counterpart of
:func:`unpacksim.real.runner.run_real`.  It builds the scenario's images, serves them from the
World's registry model under :data:`REFERENCE_HOST`, and runs each step as the real tier's Go
harness does on the daemon:

- a :class:`~unpacksim.real.scenarios.PullStep` starts its pulls at once (``Client.Pull`` with
  unpack, the snapshotter, ``MaxConcurrentDownloads``, the discard mode
  ``ChildGCLabelsFilterLayers``, the platform, a user lease), with the step's registry faults
  armed, and runs the World until every pull has returned;
- image and lease deletions and lease creations go through the World's proxies
  (``SynchronousDelete`` waits for a collection, as on the daemon);
- a :class:`~unpacksim.real.scenarios.GC` step is one collection.  The World runs no GC
  scheduler (``gc=None``), as the daemon runs with ``gc="manual"``: nothing is collected
  except on these steps and on synchronous deletes.

The result is the side-neutral :class:`~unpacksim.real.outcome.ScenarioRun` (one
:class:`~unpacksim.real.outcome.Outcome` per operation, the final
:class:`~unpacksim.model.db.DB`); :func:`reference_run` also hands back the World (its trace
and fault report go into findings).

Registry faults become the simulator's fetch fault sites through :func:`translate_faults`;
:data:`FAULT_MAPPING` documents the mapping effect by effect.  The standard ``fetch.error``
site raises ``Unknown`` (a 503) or ``NotFound`` with the digest in the message; a registry
status reaches containerd's client as a plain error naming the URL
(``remotes/docker/fetcher.go`` ``open``), so :class:`RegistryFaultPlan` raises exactly that.
"""

from __future__ import annotations

import http
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from unpacksim.model.builders import BuiltImage
from unpacksim.model.clock import format_rfc3339
from unpacksim.model.errdefs import ContainerdError, NotFound, error_class
from unpacksim.model.labels import GC_EXPIRE
from unpacksim.model.oci import Descriptor, Platform
from unpacksim.real.outcome import Outcome, ScenarioRun, StepRecord
from unpacksim.real.registry import Effect
from unpacksim.real.scenarios import (
    GC,
    CreateLease,
    DeleteImage,
    DeleteLease,
    Fault,
    Pull,
    PullStep,
    Scenario,
    ScenarioError,
    Step,
    build_images,
    resolve_fault,
)
from unpacksim.reports.records import FaultRule
from unpacksim.sim.context import Context
from unpacksim.sim.faults import FaultPlan
from unpacksim.unpack.drive import PullHandle, intercept, start_pull, world_for
from unpacksim.unpack.goerrors import GoError
from unpacksim.unpack.results import PullOptions
from unpacksim.unpack.world import World

__all__ = [
    "FAULT_MAPPING",
    "PRESET",
    "REFERENCE_HOST",
    "ReferenceRun",
    "ReferenceSideError",
    "RegistryFaultPlan",
    "TranslatedFault",
    "reference_run",
    "run_reference",
    "translate_faults",
]

#: The era preset the reference runs: containerd 1.6.20 as Debian ships it.
PRESET = "v1.6"
#: The host of image references on the reference side (canonicalised to ``<registry>`` like
#: the real registry's ``127.0.0.1:<port>``).
REFERENCE_HOST = "127.0.0.1:5000"
#: The bound on simulated steps of one scenario step (a longer run is a livelock).
MAX_STEPS = 500_000

#: How each registry fault reaches the reference, by effect (and method, endpoint, status):
#: which fault site or registry hook stands for it and what containerd 1.6.20's client makes
#: of it (``remotes/docker/fetcher.go``, ``resolver.go``, ``httpreadseeker.go``).  Hits count
#: per fault over the matching requests, from 1, as the real registry counts them.
FAULT_MAPPING: Mapping[str, str] = {
    "error GET blobs 404": "fetch.error raising NotFound 'could not fetch content descriptor "
    "<digest> (<media type>) from remote' (fetcher.go Fetch: every host answered 404)",
    "error GET manifests 404": "fetch.error raising NotFound 'content at <url> not found' "
    "(fetcher.go open: the first host's error)",
    "error GET <other status>": "fetch.error raising a plain Go error, class other: "
    "'unexpected status code <url>: <status> <text>' (fetcher.go open; the body is no JSON "
    "error list, so there is no 'Server message')",
    "error HEAD 404": "registry.resolve raising NotFound '<ref>' (resolver.go Resolve: every "
    "host answered 404)",
    "error HEAD <other status>": "registry.resolve raising a plain Go error 'pulling from host "
    "<host> failed with status code [manifests <tag>]: <status> <text>' (resolver.go Resolve)",
    "truncate": "fetch.truncate: the body ends after half of the remaining bytes (the "
    "registry's default `keep`)",
    "corrupt": "fetch.corrupt: the byte in the middle of the remaining bytes is flipped (the "
    "registry's default `at`)",
    "drop": "no site: httpReadSeeker reconnects with a Range request on io.ErrUnexpectedEOF "
    "(httpreadseeker.go Read), so the drop never reaches the pull",
    "delay GET": "registry.fetch of the blob waits `seconds` of simulated time first",
    "delay HEAD": "registry.resolve of the tag waits `seconds` of simulated time first",
}

_EFFECT_SITES = {Effect.TRUNCATE: "fetch.truncate", Effect.CORRUPT: "fetch.corrupt"}


class ReferenceSideError(RuntimeError):
    """The reference run did not end with every operation returning (a deadlock, a failure, a
    step bound), or a scenario asks for a fault the reference cannot express."""


# --- registry faults -----------------------------------------------------------------------


@dataclass
class TranslatedFault:
    """One scenario fault as the reference applies it, and how often it was reached and fired.

    ``site`` is a fault site of the simulator (``fetch.error``, ``fetch.truncate``,
    ``fetch.corrupt``), a registry hook (``resolve``, ``resolve.delay``, ``fetch.delay``), or
    ``""`` (the fault does not reach the pull, see :data:`FAULT_MAPPING`).  ``error`` makes
    the error a fired ``fetch.error`` or ``resolve`` raises.
    """

    fault: Fault
    site: str
    digest: str
    error: Callable[[], BaseException] | None = None
    reached: int = 0
    fired: list[int] = field(default_factory=list)

    def hit(self) -> bool:
        """Count one matching request; True if this hit fires."""
        self.reached += 1
        if not self.fault.hits or self.reached in self.fault.hits:
            self.fired.append(self.reached)
            return True
        return False

    def record(self) -> FaultRule:
        """The fault as report data, in the real registry's vocabulary."""
        fault = self.fault
        params: dict[str, object] = {"digest": self.digest, "reference_site": self.site or "none"}
        if fault.effect is Effect.ERROR:
            params["status"] = fault.status
        if fault.effect is Effect.DELAY:
            params["seconds"] = fault.seconds
        return FaultRule(
            site="resolve" if fault.method == "HEAD" else "fetch",
            effect=fault.effect.value,
            hits=fault.hits,
            params=params,  # type: ignore[arg-type]
            reached=self.reached,
            fired=tuple(self.fired),
        )


def status_text(code: int) -> str:
    """Go's ``resp.Status`` for ``code``: ``500 Internal Server Error``."""
    try:
        return f"{code} {http.HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


def _fetch_error(fault: Fault, desc: Descriptor, endpoint: str) -> Callable[[], BaseException]:
    repo = fault.image.rpartition(":")[0]
    url = f"http://{REFERENCE_HOST}/v2/{repo}/{endpoint}/{desc.digest}"
    if fault.status == 404 and endpoint == "blobs":
        text = f"could not fetch content descriptor {desc.digest} ({desc.media_type}) from remote"
        return lambda: NotFound(text, injected=True)
    if fault.status == 404:
        return lambda: NotFound(f"content at {url} not found", injected=True)
    message = f"unexpected status code {url}: {status_text(fault.status)}"
    return lambda: GoError(message, injected=True)


def _resolve_error(fault: Fault) -> Callable[[], BaseException]:
    ref = f"{REFERENCE_HOST}/{fault.image}"
    if fault.status == 404:
        return lambda: NotFound(ref, injected=True)
    tag = fault.image.rpartition(":")[2]
    message = (
        f"pulling from host {REFERENCE_HOST} failed with status code [manifests {tag}]: "
        f"{status_text(fault.status)}"
    )
    return lambda: GoError(message, injected=True)


def _check_expressible(fault: Fault) -> None:
    if fault.method not in ("GET", "HEAD"):
        raise ReferenceSideError(f"{fault}: give method GET or HEAD to compare with the reference")
    if fault.keep is not None or fault.at is not None:
        raise ReferenceSideError(
            f"{fault}: the reference's fetch.truncate and fetch.corrupt cut or flip at the "
            "middle of the remaining bytes; leave `keep` and `at` unset to compare"
        )


def _translate(fault: Fault, images: Mapping[str, BuiltImage]) -> TranslatedFault:
    rule = resolve_fault(fault, images)
    digest = rule.digest or ""
    head = fault.method == "HEAD"
    if fault.effect is Effect.ERROR and head:
        return TranslatedFault(fault, "resolve", digest, _resolve_error(fault))
    if fault.effect is Effect.ERROR:
        desc = _descriptor(images[fault.image], digest)
        return TranslatedFault(
            fault, "fetch.error", digest, _fetch_error(fault, desc, rule.endpoint)
        )
    if fault.effect is Effect.DELAY:
        return TranslatedFault(fault, "resolve.delay" if head else "fetch.delay", digest)
    return TranslatedFault(fault, "" if head else _EFFECT_SITES.get(fault.effect, ""), digest)


def translate_faults(
    faults: Sequence[Fault], images: Mapping[str, BuiltImage]
) -> list[TranslatedFault]:
    """The reference's form of a step's registry faults (see :data:`FAULT_MAPPING`).

    Raises:
        ScenarioError: a fault names a part its image lacks.
        ReferenceSideError: a fault the reference cannot express (an explicit ``keep`` or
            ``at``, a method other than GET or HEAD).
    """
    for fault in faults:
        _check_expressible(fault)
    return [_translate(fault, images) for fault in faults]


def _descriptor(image: BuiltImage, digest: str) -> Descriptor:
    for platform in image.platforms.values():
        for desc in (platform.manifest, platform.config, *platform.layers):
            if desc.digest == digest:
                return desc
    return image.target


def pick(faults: Sequence[TranslatedFault], site: str, digest: str) -> TranslatedFault | None:
    """Count a hit of ``site`` for ``digest`` on every matching fault; the first that fires."""
    chosen: TranslatedFault | None = None
    for fault in faults:
        if fault.site == site and fault.digest == digest and fault.hit() and chosen is None:
            chosen = fault
    return chosen


class RegistryFaultPlan(FaultPlan):
    """A fault plan that fires translated registry faults at the fetch sites.

    Each check of a site counts a hit on every translated fault of that site and digest (the
    real registry counts requests per rule the same way); the first that fires wins.  A fired
    ``fetch.error`` raises the fault's containerd-shaped error, marked injected.
    """

    def __init__(self, faults: Sequence[TranslatedFault]) -> None:
        super().__init__()
        self.translated = tuple(faults)

    def check(self, site: str, *, key: str = "", detail: str = "") -> bool:
        super().check(site, key=key, detail=detail)  # counts the hit for report()
        chosen = pick(self.translated, site, key)
        if chosen is None:
            return False
        trace = self._bound().trace
        if chosen.error is None:
            trace.fault(site, key, "effect")
            return True
        exc = chosen.error()
        trace.fault(site, key, error_class(exc), error=str(exc))
        raise exc


Hook = Generator[Any, Any, None] | None


def _install_hooks(world: World, faults: Sequence[TranslatedFault]) -> None:
    """Hooks on the registry model: ``resolve`` errors, ``delay`` holds."""
    targets = {name: desc.digest for name, desc in world.registry.images.items()}

    def before_resolve(ctx: Context, ref: str) -> Hook:
        digest = targets.get(ref, "")
        chosen = pick(faults, "resolve", digest)
        if chosen is not None and chosen.error is not None:
            raise chosen.error()
        return _hold(world, faults, "resolve.delay", digest)

    def before_fetch(ctx: Context, desc: Descriptor, **_: Any) -> Hook:
        return _hold(world, faults, "fetch.delay", desc.digest)

    intercept(world, "registry", resolve=before_resolve, fetch=before_fetch)


def _hold(world: World, faults: Sequence[TranslatedFault], site: str, digest: str) -> Hook:
    chosen = pick(faults, site, digest)
    if chosen is None:
        return None
    seconds = chosen.fault.seconds

    def wait() -> Generator[Any, Any, None]:
        yield world.env.timeout(seconds)

    return wait()


# --- steps ---------------------------------------------------------------------------------


def _platform(text: str) -> Platform | None:
    if not text:
        return None
    parts = text.split("/")
    if len(parts) not in (2, 3):
        raise ScenarioError(f"platform must be 'os/arch[/variant]', got {text!r}")
    return Platform(*parts)


def pull_options(pull: Pull) -> PullOptions:
    """The reference's options for one scenario pull (``discard`` is the era's mechanism:
    ``ChildGCLabelsFilterLayers`` in v1.6, as the harness asks)."""
    return PullOptions(
        snapshotter=pull.snapshotter,
        unpack=pull.unpack,
        platform=_platform(pull.platform),
        max_concurrent_downloads=pull.max_concurrent_downloads,
        discard_content=pull.discard,
    )


def lease_expiry(now: float, expire: str) -> str:
    """``leases.WithExpiration(d)``'s label value: ``now + d`` in RFC3339 (``d`` like ``24h``).

    Raises:
        ScenarioError: ``expire`` is not a number followed by ``h``, ``m`` or ``s``.
    """
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    try:
        seconds = float(expire[:-1]) * units[expire[-1:]]
    except (KeyError, ValueError):
        raise ScenarioError(
            f"lease expiry must be a Go duration like '24h', got {expire!r}"
        ) from None
    return format_rfc3339(now + seconds)


class _Session:
    """One scenario on one World: the steps, one after another."""

    def __init__(self, world: World, images: dict[str, BuiltImage]) -> None:
        self.world = world
        self.images = images

    def run(self, index: int, step: Step) -> StepRecord:
        if isinstance(step, PullStep):
            return self._pulls(index, step)
        ctx = self.world.context()
        if isinstance(step, DeleteImage):
            ref = f"{REFERENCE_HOST}/{step.image}"
            outcome = self._op(self.world.images.delete(ctx, ref, sync=step.sync), "delete image")
            return StepRecord(index, "delete_image", (outcome,), (step.expect,))
        if isinstance(step, GC):
            self._op(self.world.gc.collect("scenario step"), "gc")
            return StepRecord(index, "gc", (Outcome(True),), ("ok",))
        if isinstance(step, CreateLease):
            now = float(self.world.env.now)
            labels = {GC_EXPIRE: lease_expiry(now, step.expire)} if step.expire else {}
            outcome = self._op(self.world.leases.create(ctx, id=step.lease, labels=labels), "lease")
            return StepRecord(index, "create_lease", (outcome,), ("ok",))
        if isinstance(step, DeleteLease):
            outcome = self._op(self.world.leases.delete(ctx, step.lease, sync=step.sync), "lease")
            return StepRecord(index, "delete_lease", (outcome,), (step.expect,))
        raise TypeError(f"not a scenario step: {step!r}")

    def _op(self, gen: Generator[Any, Any, Any], name: str) -> Outcome:
        box: list[Outcome] = []

        def body() -> Generator[Any, Any, None]:
            try:
                yield from gen
            except (ContainerdError, GoError) as exc:
                box.append(Outcome(False, error_class(exc), str(exc)))
                return
            box.append(Outcome(True))

        self.world.go(body(), name=name)
        self._run(name)
        return box[0]

    def _run(self, what: str) -> None:
        outcome = self.world.run(max_steps=MAX_STEPS)
        if not outcome.ok:
            raise ReferenceSideError(f"the reference did not finish {what}: {outcome.describe()}")

    def _pulls(self, index: int, step: PullStep) -> StepRecord:
        faults = translate_faults(step.faults, self.images)
        registry = self.world.registry
        self.world.env.faults = RegistryFaultPlan(faults)
        _install_hooks(self.world, faults)
        try:
            handles = [self._start(i, pull) for i, pull in enumerate(step.pulls)]
            self._run(f"the pulls of step {index}")
        finally:
            self.world.registry = registry
            self.world.env.faults = FaultPlan.none()
        outcomes = tuple(_pull_outcome(h) for h in handles)
        return StepRecord(index, "pull", outcomes, step.expect, tuple(f.record() for f in faults))

    def _start(self, i: int, pull: Pull) -> PullHandle:
        ctx = self.world.context()
        if pull.lease:
            ctx = ctx.with_lease(pull.lease)
        ref = f"{REFERENCE_HOST}/{pull.image}"
        name = f"pull#{i} {pull.image}"
        return start_pull(self.world, PRESET, ref, pull_options(pull), ctx=ctx, name=name)


def _pull_outcome(handle: PullHandle) -> Outcome:
    result = handle.result
    if result is None:
        raise ReferenceSideError(f"{handle.name} did not return")
    return Outcome(result.ok, result.error_class, result.message)


@dataclass(frozen=True)
class ReferenceRun:
    """A reference run: the side-neutral record and the World it ran in (trace, faults)."""

    run: ScenarioRun
    world: World


def reference_run(scenario: Scenario) -> ReferenceRun:
    """Run ``scenario`` on the reference (preset :data:`PRESET`) in a fresh World.

    Raises:
        ReferenceSideError: an operation did not return (deadlock, failure, step bound), or a
            fault the reference cannot express.
        ScenarioError: the scenario names something it does not define.
    """
    images = build_images(scenario)
    world = world_for(
        PRESET, snapshotters=scenario.snapshotters, namespace=scenario.namespace, gc=None
    )
    for spec in scenario.images:
        world.registry.push(images[spec.name], name=f"{REFERENCE_HOST}/{spec.name}")
    session = _Session(world, images)
    steps = tuple(session.run(i, step) for i, step in enumerate(scenario.steps))
    run = ScenarioRun(
        scenario=scenario.name,
        side=f"reference {PRESET}",
        registry_host=REFERENCE_HOST,
        steps=steps,
        state=world.db,
        details={
            "fetches": [asdict(f) for f in world.registry.fetches],
            "trace_sha256": world.env.trace.sha256(),
        },
    )
    return ReferenceRun(run, world)


def run_reference(scenario: Scenario) -> ScenarioRun:
    """:func:`reference_run`'s side-neutral record only.

    Raises:
        ReferenceSideError, ScenarioError: as :func:`reference_run`.
    """
    return reference_run(scenario).run
