"""Every catalogue scenario on containerd and on the reference: each agrees or diverges exactly
as documented in :mod:`unpacksim.real.divergences`.

An undocumented divergence fails (fix the reference, or document what containerd does), and
so does a documented one that no longer occurs (correct the table).  The invariants that run
on the model run on both final states.  Every divergence becomes a finding that holds both
states and reads back from its JSON form.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from unpacksim.real.catalogue import SCENARIOS
from unpacksim.real.differential import main, run_differential
from unpacksim.real.scenarios import Scenario
from unpacksim.reports.io import load_finding
from unpacksim.reports.records import Finding

pytestmark = pytest.mark.real


@pytest.mark.parametrize("s", SCENARIOS, ids=lambda s: s.name)
def test_scenario_agrees_or_diverges_as_documented(s: Scenario, harness_binary: Path) -> None:
    result = run_differential(s, binary=harness_binary)
    assert result.real.side.startswith("containerd 1.6.")
    assert result.problems() == []
    findings = result.findings()
    assert len(findings) == len(result.comparison.divergences) == len(result.documented)
    states_agree = all(d.where.startswith("step ") for d in result.comparison.divergences)
    for finding in findings:
        assert Finding.from_json(finding.to_json()) == finding
        # Both final states, canonical: equal graphs exactly when the states agree.
        assert (finding.graph_before == finding.graph_after) == states_agree


def test_the_command_line_writes_findings(
    harness_binary: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pull-one", "layer-error-500", "--findings", str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert "| pull-one | agrees | - |" in table
    assert "| layer-error-500 | documented divergence | eager-fetch-open |" in table
    (path,) = sorted(tmp_path.iterdir())
    finding = load_finding(path)
    assert finding.property.name == "agrees-with-containerd-outcome"
    assert "httpReadSeeker: failed open" in finding.explanation
