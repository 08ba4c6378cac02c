"""Run a scenario on a real containerd: a fresh daemon and registry, the steps, the readback.

:func:`run_real` builds the scenario's images, serves them from a loopback
:class:`~unpacksim.real.registry.Registry`, starts a fresh
:class:`~unpacksim.real.daemon.Daemon` (manual GC, so the final state is deterministic), runs
each step through the Go :class:`~unpacksim.real.harness.Harness`, and reads the final state
back into a :class:`~unpacksim.model.db.DB`.  The result is a
:class:`~unpacksim.real.outcome.ScenarioRun`, the record the reference side produces too, so
:func:`unpacksim.real.compare.compare_runs` can hold the two against each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from unpacksim.model.builders import BuiltImage
from unpacksim.real.daemon import Daemon, DaemonConfig
from unpacksim.real.harness import Harness, HarnessError, OpReport, PullRequest
from unpacksim.real.outcome import Outcome, ScenarioRun, StepRecord
from unpacksim.real.readback import read_back
from unpacksim.real.registry import Registry
from unpacksim.real.scenarios import (
    GC,
    CreateLease,
    DeleteImage,
    DeleteLease,
    PullStep,
    Scenario,
    Step,
    build_images,
    resolve_fault,
)

__all__ = ["run_real", "state_violations"]


def _outcome(report: OpReport) -> Outcome:
    return Outcome(report.ok, report.error_class, report.message)


class _Session:
    """One scenario's live pieces: registry, harness and built images."""

    def __init__(self, registry: Registry, harness: Harness, images: dict[str, BuiltImage]) -> None:
        self.registry = registry
        self.harness = harness
        self.images = images

    def ref(self, image: str) -> str:
        repo, _, tag = image.rpartition(":")
        return self.registry.ref(repo, tag)

    def run(self, index: int, step: Step) -> StepRecord:
        if isinstance(step, PullStep):
            return self._pull(index, step)
        if isinstance(step, DeleteImage):
            report = self.harness.delete_image(self.ref(step.image), sync=step.sync)
            return StepRecord(index, "delete_image", (_outcome(report),), (step.expect,))
        if isinstance(step, GC):
            self.harness.gc()
            return StepRecord(index, "gc", (Outcome(True),), ("ok",))
        if isinstance(step, CreateLease):
            report = self.harness.create_lease(step.lease, expire=step.expire)
            return StepRecord(index, "create_lease", (_outcome(report),), ("ok",))
        if isinstance(step, DeleteLease):
            report = self.harness.delete_lease(step.lease, sync=step.sync)
            return StepRecord(index, "delete_lease", (_outcome(report),), (step.expect,))
        raise TypeError(f"not a scenario step: {step!r}")

    def _pull(self, index: int, step: PullStep) -> StepRecord:
        self.registry.arm(*(resolve_fault(f, self.images) for f in step.faults))
        requests = [
            PullRequest(
                ref=self.ref(p.image),
                snapshotter=p.snapshotter,
                unpack=p.unpack,
                max_concurrent_downloads=p.max_concurrent_downloads,
                discard=p.discard,
                platform=p.platform,
                lease=p.lease,
            )
            for p in step.pulls
        ]
        try:
            reports = self.harness.pull(requests)
        finally:
            faults = self.registry.fault_rules()
            self.registry.arm()
        outcomes = tuple(_outcome(r.outcome) for r in reports)
        return StepRecord(index, "pull", outcomes, step.expect, faults)


def _details(
    version: Mapping[str, Any], registry: Registry, offsets: Mapping[str, tuple[int, int]]
) -> dict[str, Any]:
    return {
        "daemon": dict(version),
        "requests": [asdict(r) for r in registry.requests()],
        "ingest_offsets": {k: list(v) for k, v in offsets.items()},
    }


def run_real(
    scenario: Scenario,
    *,
    binary: Path | None = None,
    daemon_config: DaemonConfig | None = None,
    timeout: float = 60.0,
) -> ScenarioRun:
    """Run ``scenario`` on a fresh containerd daemon and return what happened.

    ``binary`` is a built harness (``build_harness()`` when None).  Each harness operation is
    bounded by ``timeout`` seconds.

    Raises:
        DaemonError: the daemon did not start, or died during the scenario.
        HarnessError: the harness could not run an operation.
        ScenarioError: the scenario names something it does not define.
    """
    images = build_images(scenario)
    with Daemon(daemon_config) as daemon, Registry() as registry:
        for spec in scenario.images:
            registry.add_image(spec.repo, spec.tag, images[spec.name])
        harness = Harness(
            daemon.address, namespace=scenario.namespace, binary=binary, timeout=timeout
        )
        version = harness.version()
        session = _Session(registry, harness, images)
        try:
            steps = tuple(session.run(i, step) for i, step in enumerate(scenario.steps))
        except HarnessError as exc:
            raise HarnessError(f"{exc}\ncontainerd log tail:\n{daemon.log_tail()}") from exc
        daemon.check_running()
        back = read_back(harness, root=daemon.root, snapshotters=scenario.snapshotters)
        return ScenarioRun(
            scenario=scenario.name,
            side=f"containerd {version.get('version', '?')}",
            registry_host=registry.host,
            steps=steps,
            state=back.db,
            details=_details(version, registry, back.ingest_offsets),
        )


def state_violations(run: ScenarioRun) -> list[Any]:
    """The invariants that hold at every step (``properties.invariants.check_state``) on the
    run's final state; empty when they all hold.
    """
    from unpacksim.properties.invariants import check_state

    return list(check_state(run.state))
