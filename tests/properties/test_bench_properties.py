"""The properties benchmark stays runnable and reports its three machines."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_properties.py"


def test_quick_benchmark_reports_every_machine() -> None:
    spec = importlib.util.spec_from_file_location("bench_properties", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    report: str = module.run(True)
    rows = [line for line in report.splitlines() if line.startswith("| ") and "---" not in line]
    names = [row.split("|")[1].strip() for row in rows[1:]]
    assert names == ["unpack machine (v2.0)", "bare, same rules", "bare, one rule"]
    rates = [float(row.split("|")[4]) for row in rows[1:]]
    assert all(rate > 0 for rate in rates)
    assert rates[0] < rates[1]  # simulating costs something: the comparison is not vacuous
