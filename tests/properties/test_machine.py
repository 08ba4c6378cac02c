"""The concurrent state machine: deterministic in CI, finds a race, replays as a program."""

from __future__ import annotations

import importlib.util
import os
import unittest
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import run_state_machine_as_test

from unpacksim.properties import checks
from unpacksim.properties.machine import (
    MachineFailure,
    UnpackMachine,
    run_state_machine,
    state_machine,
    state_machine_test_case,
)
from unpacksim.properties.program import ImageSpec, RunResult, run_program
from unpacksim.sim.choose import ReplayChooser
from unpacksim.sim.faults import FaultPlan
from unpacksim.unpack.interface import ImplementationError

BASE = ImageSpec("registry.test/base:1", ("base",))
APP = ImageSpec("registry.test/app:1", ("base", "app"))
#: v2.0 breaks chain-applied-once by design (Client.Pull has no duplication suppressor).
V20_HOLDS = [p for p in checks.PROPERTIES if p != "chain-applied-once"]


def _settings(examples: int, steps: int = 30) -> settings:
    # No explain phase: it traces every line of the simulation to explain a failure, which
    # makes a failing machine many times slower.
    return settings(
        max_examples=examples,
        stateful_step_count=steps,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


def _profile(handful: int) -> settings:
    """The active profile; outside ``soak``, only a handful of derandomized examples."""
    if os.environ.get("HYPOTHESIS_PROFILE") == "soak":
        return settings(settings(), stateful_step_count=100)  # the long search
    return settings(settings(), max_examples=handful, derandomize=True, database=None)


def test_the_v20_machine_holds_deterministically() -> None:
    run_state_machine("v2.0", properties=V20_HOLDS, settings=_profile(8), audit=0.5)


def test_the_seed_machine_finds_duplicated_unpacks_shrinks_them_and_they_replay() -> None:
    with pytest.raises(MachineFailure) as caught:
        run_state_machine(
            "seed",
            images=(BASE, APP),
            actions=("pull",),
            properties=["chain-applied-once"],
            faults=st.just(FaultPlan.none()),
            settings=_settings(10, steps=3),
        )
    failure = caught.value
    assert {f.property for f in failure.found} == {"chain-applied-once"}
    assert [a.kind for a in failure.program.actions] == ["pull", "pull", "heal"]
    assert "program:" in str(failure) and "schedule:" in str(failure)
    replay = run_program(
        failure.program,
        failure.implementation,
        chooser=ReplayChooser(failure.schedule),
        faults=failure.faults,
        properties=["chain-applied-once"],
    )
    assert [f.violation.message for f in replay.found] == [
        f.violation.message for f in failure.found
    ]


def test_the_suppressor_machine_applies_each_chain_once() -> None:
    run_state_machine(
        "v1.7-cri",
        images=(BASE, APP),
        actions=("pull", "gc", "delete_image"),
        properties=["chain-applied-once"],
        faults=st.just(FaultPlan.none()),
        settings=_settings(10, steps=10),
    )


def _recording(machine: type[UnpackMachine], results: list[RunResult]) -> type[UnpackMachine]:
    class Recording(machine):  # type: ignore[valid-type,misc]
        def teardown(self) -> None:
            super().teardown()
            if self.result is not None:
                results.append(self.result)

    return Recording


def test_a_machine_run_is_the_program_it_recorded() -> None:
    results: list[RunResult] = []
    machine = state_machine("v1.6", images=(BASE, APP), properties=["converges"])
    run_state_machine_as_test(_recording(machine, results), settings=_settings(6))  # type: ignore[no-untyped-call,unused-ignore]
    assert len(results) == 6
    busy = max(results, key=lambda r: len(r.trace.events))
    assert len(busy.program.actions) > 2 and busy.program.actions[-1].kind == "heal"
    replay = run_program(
        busy.program, "v1.6", chooser=ReplayChooser(busy.schedule), faults=busy.runner.plan
    )
    assert replay.trace_sha256 == busy.trace_sha256


def test_a_crashing_implementation_fails_converges() -> None:
    path = Path(__file__).with_name("plugins.py")
    spec = importlib.util.spec_from_file_location("machine_plugins", path)
    assert spec is not None and spec.loader is not None
    plugins: ModuleType = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plugins)
    with pytest.raises(MachineFailure) as caught:
        run_state_machine(
            plugins.Raising(),
            actions=("pull",),
            properties=["converges"],
            settings=_settings(5, steps=3),
        )
    (found,) = caught.value.found
    assert found.property == "converges" and "the implementation crashed" in str(found.violation)


def test_the_test_case_factory_gives_a_runnable_test_case() -> None:
    case = state_machine_test_case(
        "v2.0", actions=("pull", "gc"), properties=["converges"], settings=_settings(3, 10)
    )
    assert issubclass(case, unittest.TestCase)
    outcome = unittest.TestResult()
    case("runTest").run(outcome)
    assert outcome.wasSuccessful(), outcome.errors + outcome.failures


def test_bad_configurations_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="unknown action kinds"):
        state_machine("v2.0", actions=("reboot",))
    with pytest.raises(InvalidArgument, match="unknown properties"):
        state_machine("v2.0", properties=["nope"])
    with pytest.raises(InvalidArgument, match="snapshotter"):
        state_machine("v2.0", snapshotters=())
    with pytest.raises(ImplementationError):
        state_machine("v0.1")
