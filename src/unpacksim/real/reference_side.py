"""Run a differential scenario on the reference: the v1.6 preset in a simulated World.

:func:`run_reference` is the reference's counterpart of
:func:`unpacksim.real.runner.run_real`.  It builds the scenario's images, serves them from the
World's registry model under :data:`REFERENCE_HOST`, and runs each step the way the real
tier's Go harness does:

- a :class:`~unpacksim.real.scenarios.PullStep` starts its pulls at once (``Client.Pull``
  with unpack, the snapshotter, ``MaxConcurrentDownloads``, the discard mode
  ``ChildGCLabelsFilterLayers``, the platform, a user lease) with the step's registry faults
  armed, and runs the World until every pull has returned;
- image and lease deletions go through the World's proxies (``SynchronousDelete`` waits for a
  collection, as it does on the daemon);
- a :class:`~unpacksim.real.scenarios.GC` step is one collection.  The World has no GC
  scheduler (``gc=None``), as the real daemon runs with ``gc="manual"``: nothing is collected
  except on these steps and on synchronous deletes.

The result is the side-neutral :class:`~unpacksim.real.outcome.ScenarioRun`: one
:class:`~unpacksim.real.outcome.Outcome` per operation (ok, or the errdefs class and
containerd's message) and the final :class:`~unpacksim.model.db.DB`.

Registry faults are translated into the simulator's fetch fault sites by
:func:`translate_faults`; :data:`FAULT_MAPPING` documents the mapping, effect by effect.
"""

from __future__ import annotations

import http
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
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
    "ReferenceSideError",
    "RegistryFaultPlan",
    "TranslatedFault",
    "run_reference",
    "translate_faults",
]

#: The era preset the reference runs: containerd 1.6.20 as Debian ships it.
PRESET = "v1.6"
#: The host part of image references on the reference side (canonicalised like the real
#: registry's ``127.0.0.1:<port>``).
REFERENCE_HOST = "127.0.0.1:5000"
#: The bound on simulated steps of one scenario step (a longer run is a livelock).
MAX_STEPS = 500_000

#: How each registry fault (:class:`~unpacksim.real.registry.Effect`) reaches the reference.
#: The real registry answers HTTP; the reference's registry model (``unpack/registry.py``)
#: has fault sites instead.  Each entry says which site (or hook) stands for the effect and
#: what containerd 1.6.20's client makes of it (``remotes/docker/fetcher.go``,
#: ``resolver.go``, ``httpreadseeker.go``, ``content/helpers.go``).
FAULT_MAPPING: Mapping[str, str] = {
    "error GET blobs 404": "fetch.error raising NotFound 'could not fetch content descriptor "
    "<digest> (<media type>) from remote' (fetcher.go: every host answered 404)",
    "error GET manifests 404": "fetch.error raising NotFound 'content at <url> not found' "
    "(fetcher.go open: the first host's error)",
    "error GET other status": "fetch.error raising a plain Go error (class other) "
    "'unexpected status code <url>: <status> <text>' (fetcher.go open; the registry's body "
    "is no JSON error list, so there is no 'Server message')",
    "error HEAD 404": "registry.resolve raising NotFound '<ref>' (resolver.go: every host "
    "answered 404)",
    "error HEAD other status": "registry.resolve raising a plain Go error 'pulling from host "
    "<host> failed with status code [manifests <tag>]: <status> <text>' (resolver.go)",
    "truncate": "fetch.truncate: the stream ends after half of the remaining bytes (the "
    "registry's default `keep`)",
    "corrupt": "fetch.corrupt: the byte in the middle of the remaining bytes is flipped (the "
    "registry's default `at`)",
    "drop": "nothing: httpReadSeeker reconnects with a Range request on io.ErrUnexpectedEOF "
    "(httpreadseeker.go Read), so the unpacker never sees the drop",
    "delay": "the open of the blob (registry.fetch) or the resolve waits `seconds` of "
    "simulated time first",
}


class ReferenceSideError(RuntimeError):
    """The reference run did not end with every operation returning (a deadlock, a failure,
    a step bound), or a scenario asks for something the reference cannot express."""


# --- registry faults -----------------------------------------------------------------------


@dataclass
class TranslatedFault:
    """One scenario fault as the reference applies it.

    ``site`` is the simulator's site (``fetch.error``, ``fetch.truncate``, ``fetch.corrupt``),
    ``resolve`` or ``delay`` (hooks on the registry model), or ``""`` (no effect on the
    reference, see :data:`FAULT_MAPPING`).  ``error`` makes the error a fired ``fetch.error``
    or ``resolve`` raises.
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
        """The rule as report data, in the real registry's vocabulary."""
        rule = self.fault
        params: dict[str, Any] = {"digest": self.digest, "reference_site": self.site or "none"}
        if rule.effect is Effect.ERROR:
            params["status"] = rule.status
        if rule.effect is Effect.DELAY:
            params["seconds"] = rule.seconds
        return FaultRule(
            site="resolve" if rule.method == "HEAD" else "fetch",
            effect=rule.effect.value,
            hits=rule.hits,
            params=params,
            reached=self.reached,
            fired=tuple(self.fired),
        )


def _status(code: int) -> str:
    """Go's ``resp.Status``: ``500 Internal Server Error``."""
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
    message = f"unexpected status code {url}: {_status(fault.status)}"
    return lambda: GoError(message, injected=True)


def _resolve_error(fault: Fault) -> Callable[[], BaseException]:
    repo, _, tag = fault.image.rpartition(":")
    ref = f"{REFERENCE_HOST}/{repo}:{tag}"
    if fault.status == 404:
        return lambda: NotFound(ref, injected=True)
    message = (
        f"pulling from host {REFERENCE_HOST} failed with status code [manifests {tag}]: "
        f"{_status(fault.status)}"
    )
    return lambda: GoError(message, injected=True)


def _check_expressible(fault: Fault) -> None:
    if fault.keep is not None or fault.at is not None:
        raise ReferenceSideError(
            f"{fault}: the reference's fetch.truncate and fetch.corrupt cut or flip at the "
            "middle of the remaining bytes; leave `keep` and `at` unset to compare"
        )


def translate_faults(
    faults: Sequence[Fault], images: Mapping[str, BuiltImage]
) -> list[TranslatedFault]:
    """The reference's form of a step's registry faults (see :data:`FAULT_MAPPING`).

    Raises:
        ScenarioError: a fault names a part its image lacks.
        ReferenceSideError: a fault the reference cannot express (explicit ``keep``/``at``).
    """
    out: list[TranslatedFault] = []
    for fault in faults:
        _check_expressible(fault)
        rule = resolve_fault(fault, images)
        assert rule.digest is not None
        desc = _descriptor(images[fault.image], rule.digest)
        if fault.effect is Effect.ERROR and fault.method == "HEAD":
            out.append(TranslatedFault(fault, "resolve", rule.digest, _resolve_error(fault)))
        elif fault.effect is Effect.ERROR:
            error = _fetch_error(fault, desc, rule.endpoint)
            out.append(TranslatedFault(fault, "fetch.error", rule.digest, error))
        elif fault.effect is Effect.DELAY:
            out.append(TranslatedFault(fault, "delay", rule.digest))
        else:
            site = {Effect.TRUNCATE: "fetch.truncate", Effect.CORRUPT: "fetch.corrupt"}
            out.append(TranslatedFault(fault, site.get(fault.effect, ""), rule.digest))
    return out


def _descriptor(image: BuiltImage, digest: str) -> Descriptor:
    for platform in image.platforms.values():
        for desc in (platform.manifest, platform.config, *platform.layers):
            if desc.digest == digest:
                return desc
    return image.target


class RegistryFaultPlan(FaultPlan):
    """A fault plan firing translated registry faults at the fetch sites.

    Hits are counted per translated fault over the checks of its site for its digest (the
    registry counts requests per rule the same way); the first fault that fires wins.  A
    fired ``fetch.error`` raises the fault's containerd-shaped error (marked injected).
    """

    def __init__(self, faults: Sequence[TranslatedFault]) -> None:
        super().__init__()
        self.translated = list(faults)

    def check(self, site: str, *, key: str = "", detail: str = "") -> bool:
        super().check(site, key=key, detail=detail)  # counts the hit for the report
        chosen = pick(self.translated, site, key)
        if chosen is None:
            return False
        env = self._bound()
        if chosen.error is None:
            env.trace.fault(site, key, "effect")
            return True
        exc = chosen.error()
        env.trace.fault(site, key, error_class(exc), error=str(exc))
        raise exc


def pick(faults: Sequence[TranslatedFault], site: str, digest: str) -> TranslatedFault | None:
    """Count a hit of ``site`` for ``digest`` on every matching fault; the first that fires."""
    chosen: TranslatedFault | None = None
    for fault in faults:
        if fault.site == site and fault.digest == digest and fault.hit() and chosen is None:
            chosen = fault
    return chosen


def _install_hooks(world: World, faults: list[TranslatedFault]) -> None:
    """Hooks on the registry model for ``resolve`` errors and ``delay`` holds."""
    targets = {name: desc.digest for name, desc in world.registry.images.items()}

    def before_resolve(ctx: Context, ref: str) -> Generator[Any, Any, None] | None:
        chosen = pick(faults, "resolve", targets.get(ref, ""))
        if chosen is not None and chosen.error is not None:
            raise chosen.error()
        return _hold(world, faults, targets.get(ref, ""))

    def before_fetch(ctx: Context, desc: Descriptor, **_: Any) -> Generator[Any, Any, None] | None:
        return _hold(world, faults, desc.digest)

    intercept(world, "registry", resolve=before_resolve, fetch=before_fetch)


def _hold(world: World, faults: list[TranslatedFault], digest: str) -> Generator[Any, Any, None] | None:
    chosen = pick(faults, "delay", digest)
    if chosen is None:
        return None

    def wait() -> Generator[Any, Any, None]:
        yield world.env.timeout(chosen.fault.seconds)

    return wait()


# --- steps ---------------------------------------------------------------------------------


def _platform(text: str) -> Platform | None:
    if not text:
        return None
    parts = text.split("/")
    if len(parts) not in (2, 3):
        raise ScenarioError(f"platform must be 'os/arch[/variant]', got {text!r}")
    return Platform(*parts)


def _options(pull: Any) -> PullOptions:
    return PullOptions(
        snapshotter=pull.snapshotter,
        unpack=pull.unpack,
        platform=_platform(pull.platform),
        max_concurrent_downloads=pull.max_concurrent_downloads,
        discard_content=pull.discard,
    )


class _Session:
    """One scenario on one World: the steps, run one after another."""

    def __init__(self, world: World, images: dict[str, BuiltImage]) -> None:
        self.world = world
        self.images = images

    def ref(self, image: str) -> str:
        return f"{REFERENCE_HOST}/{image}"

    def run(self, index: int, step: Step) -> StepRecord:
        if isinstance(step, PullStep):
            return self._pull(index, step)
        if isinstance(step, DeleteImage):
            op = self.world.images.delete(self._ctx(), self.ref(step.image), sync=step.sync)
            return StepRecord(index, "delete_image", (self._op(op, "delete image"),), (step.expect,))
        if isinstance(step, GC):
            self._op(self.world.gc.collect("scenario gc step"), "gc")
            return StepRecord(index, "gc", (Outcome(True),), ("ok",))
        if isinstance(step, CreateLease):
            labels = {GC_EXPIRE: _expiry(self.world, step.expire)} if step.expire else {}
            op = self.world.leases.create(self._ctx(), id=step.lease, labels=labels)
            return StepRecord(index, "create_lease", (self._op(op, "create lease"),), ("ok",))
        if isinstance(step, DeleteLease):
            op = self.world.leases.delete(self._ctx(), step.lease, sync=step.sync)
            return StepRecord(index, "delete_lease", (self._op(op, "delete lease"),), (step.expect,))
        raise TypeError(f"not a scenario step: {step!r}")

    def _ctx(self) -> Context:
        return self.world.context()

    def _op(self, gen: Generator[Any, Any, Any], name: str) -> Outcome:
        result: list[Outcome] = []

        def body() -> Generator[Any, Any, None]:
            try:
                yield from gen
            except (ContainerdError, GoError) as exc:
                result.append(Outcome(False, error_class(exc), str(exc)))
                return
            result.append(Outcome(True))

        self.world.go(body(), name=name)
        self._run(name)
        return result[0]

    def _run(self, what: str) -> None:
        outcome = self.world.run(max_steps=MAX_STEPS)
        if not outcome.ok:
            raise ReferenceSideError(f"the reference did not finish {what}: {outcome.describe()}")

    def _pull(self, index: int, step: PullStep) -> StepRecord:
        faults = translate_faults(step.faults, self.images)
        self.world.env.faults = RegistryFaultPlan(faults)
        registry = self.world.registry
        _install_hooks(self.world, faults)
        handles: list[PullHandle] = []
        for i, pull in enumerate(step.pulls):
            ctx = self._ctx()
            if pull.lease:
                ctx = ctx.with_lease(pull.lease)
            name = f"pull#{i} {pull.image}"
            handles.append(
                start_pull(self.world, PRESET, self.ref(pull.image), _options(pull), ctx=ctx, name=name)
            )
        try:
            self._run(f"step {index} (pull)")
        finally:
            self.world.registry = registry
            self.world.env.faults = FaultPlan.none()
        outcomes = tuple(_pull_outcome(h) for h in handles)
        return StepRecord(index, "pull", outcomes, step.expect, tuple(f.record() for f in faults))


def _pull_outcome(handle: PullHandle) -> Outcome:
    result = handle.result
    if result is None:
        raise ReferenceSideError(f"{handle.name} did not return")
    return Outcome(result.ok, result.error_class, result.message)


def _expiry(world: World, expire: str) -> str:
    """``leases.WithExpiration(d)``: now + ``d`` (a Go duration of hours, minutes, seconds)."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    if not expire or expire[-1] not in units:
        raise ScenarioError(f"lease expiry must be a Go duration like '24h', got {expire!r}")
    seconds = float(expire[:-1]) * units[expire[-1]]
    return format_rfc3339(float(world.env.now) + seconds)


def run_reference(scenario: Scenario) -> ScenarioRun:
    """Run ``scenario`` on the reference (the :data:`PRESET` preset) and return what happened.

    Raises:
        ReferenceSideError: an operation did not return (deadlock, failure, step bound), or a
            fault the reference cannot express.
        ScenarioError: the scenario names something it does not define.
    """
    images = build_images(scenario)
    world = world_for(PRESET, snapshotters=scenario.snapshotters, namespace=scenario.namespace)
    for spec in scenario.images:
        world.registry.push(images[spec.name], name=f"{REFERENCE_HOST}/{spec.name}")
    session = _Session(world, images)
    steps = tuple(session.run(i, step) for i, step in enumerate(scenario.steps))
    return ScenarioRun(
        scenario=scenario.name,
        side=f"reference {PRESET}",
        registry_host=REFERENCE_HOST,
        steps=steps,
        state=world.db,
        details={"fetches": [dict(vars(f)) for f in world.registry.fetches]},
    )
