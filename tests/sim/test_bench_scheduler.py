"""The scheduler benchmark stays runnable, and the sim layer keeps its dependencies."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_scheduler.py"


def test_quick_benchmark_reports_every_workload() -> None:
    spec = importlib.util.spec_from_file_location("bench_scheduler", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report: str = module.run(True)
    rows = [line for line in report.splitlines() if line.startswith("| ") and "---" not in line]
    assert [row.split("|")[1].strip() for row in rows[1:]] == ["ties", "distinct", "handoff"]
    for row in rows[1:]:
        ratios = [float(cell) for cell in row.split("|")[4:7:2]]
        assert all(r > 0 for r in ratios)


def test_importing_sim_needs_no_hypothesis() -> None:
    probe = (
        "import sys, unpacksim.sim, unpacksim.sim.go, unpacksim.sim.run\n"
        "print('hypothesis' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "False"
