"""The state machine with simulation and checks against bare Hypothesis machines, in one run.

Three machines run the same Hypothesis settings (``stateful_step_count=50``, derandomized, no
database, generation only) for the same number of test cases; the figure is test cases per
second (best of a few repeats):

- ``unpack machine``: :func:`unpacksim.properties.machine.state_machine` for ``v2.0`` with
  every property it keeps (all but ``chain-applied-once``), fixed images, no fault plan: every
  rule starts an action in the simulated daemon, ``advance`` runs the simulation, the step
  invariants run after each rule, and each case ends with convergence and the at-rest checks;
- ``bare, same rules``: the same machine class with every rule body, the invariant and the
  teardown replaced by nothing, so Hypothesis draws exactly what it draws for the unpack
  machine (the cost of the search itself);
- ``bare, one rule``: a minimal machine (one rule adding a drawn integer, one invariant).

The ratio is unpack / bare (higher is better; the target is >= 0.4 against the bare machine
of the same step count).
"""

from __future__ import annotations

import time
from typing import Any

from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from unpacksim.properties import checks
from unpacksim.properties.machine import UnpackMachine, state_machine
from unpacksim.properties.program import ImageSpec, Program
from unpacksim.properties.scenario import Action
from unpacksim.sim.faults import FaultPlan

STEPS = 50
IMAGES = (
    ImageSpec("registry.test/base:1", ("base",)),
    ImageSpec("registry.test/app:1", ("base", "app")),
    ImageSpec("registry.test/tool:1", ("base", "lib", "tool")),
)
KEPT = [name for name in checks.PROPERTIES if name != "chain-applied-once"]


class TinyMachine(RuleBasedStateMachine):
    """A bare Hypothesis machine: one rule, one invariant."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    @rule(x=st.integers(0, 10))
    def add(self, x: int) -> None:
        self.total += x

    @invariant()
    def non_negative(self) -> None:
        assert self.total >= 0


def unpack_machine() -> type[UnpackMachine]:
    return state_machine("v2.0", images=IMAGES, properties=KEPT, faults=st.just(FaultPlan.none()))


class _Stub:
    """Stands in for the runner: applies nothing, simulates nothing."""

    now = 0.0

    def __init__(self, program: Program) -> None:
        self.program = program

    def apply(self, action: Action) -> None:
        return None

    def advance_to(self, t: float) -> None:
        return None


def bare_same_rules() -> type[UnpackMachine]:
    """The unpack machine with the simulation and the checks taken out: the same rules draw
    the same values, every body does nothing."""

    class Bare(unpack_machine()):  # type: ignore[misc]
        def _start(self, program: Program) -> tuple[Any, None]:
            return _Stub(program), None

    return Bare


def _settings(examples: int) -> settings:
    return settings(
        max_examples=examples,
        stateful_step_count=STEPS,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )


def cases_per_second(machine: type[Any], examples: int, repeats: int) -> float:
    """Test cases per second of ``machine`` (best of ``repeats``)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run_state_machine_as_test(machine, settings=_settings(examples))  # type: ignore[no-untyped-call,unused-ignore]
        best = min(best, time.perf_counter() - start)
    return examples / best


def run(quick: bool) -> str:
    examples, repeats = (20, 1) if quick else (300, 3)
    unpack = cases_per_second(unpack_machine(), examples, repeats)
    same = cases_per_second(bare_same_rules(), examples, repeats)
    tiny = cases_per_second(TinyMachine, examples, repeats)
    rows = [
        "| machine | steps | cases | cases/s | unpack / this |",
        "| --- | ---: | ---: | ---: | ---: |",
        f"| unpack machine (v2.0) | {STEPS} | {examples} | {unpack:.1f} | 1.00 |",
        f"| bare, same rules | {STEPS} | {examples} | {same:.1f} | {unpack / same:.2f} |",
        f"| bare, one rule | {STEPS} | {examples} | {tiny:.1f} | {unpack / tiny:.2f} |",
    ]
    return "\n".join(rows)


if __name__ == "__main__":
    print(run(False))
