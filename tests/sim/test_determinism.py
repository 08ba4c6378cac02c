"""The same seed gives the same trace bytes: over 100 runs, and under other PYTHONHASHSEEDs."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from unpacksim.sim.trace import Trace, first_divergence

HERE = Path(__file__).resolve().parent
SCENARIO = HERE / "mixed_scenario.py"


def load_scenario() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mixed_scenario", SCENARIO)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scenario() -> Callable[[int], str]:
    run_mixed: Callable[[int], str] = load_scenario().run_mixed
    return run_mixed


def test_the_scenario_exercises_choices_and_faults() -> None:
    text = scenario()(5)
    trace = Trace.from_jsonl(text)
    assert len(trace) > 30
    assert {e.type for e in trace.events} == {"invoke", "complete", "fault"}
    # different seeds take different paths: the test below compares like with like
    assert scenario()(6) != text


def test_same_seed_same_bytes_over_100_runs() -> None:
    run_mixed = scenario()
    first = run_mixed(5)
    for _ in range(99):
        again = run_mixed(5)
        assert again == first, first_divergence(first, again)


def test_same_bytes_under_different_hash_seeds() -> None:
    expected = hashlib.sha256(scenario()(5).encode()).hexdigest()
    probe = (
        "import hashlib, importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('m', {str(SCENARIO)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "print(hashlib.sha256(m.run_mixed(5).encode()).hexdigest())\n"
    )
    for hash_seed in ("0", "4242"):
        env = dict(os.environ, PYTHONHASHSEED=hash_seed)
        out = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=env
        ).stdout.strip()
        assert out == expected, f"PYTHONHASHSEED={hash_seed} changed the trace"
