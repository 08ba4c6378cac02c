"""unpacksim's own suite, collected by the pytest plugin when ``--unpacksim-impl`` is given.

- ``test_property[NAME]``: the explorer searches the general workloads (pulls of images that
  share a base, image and lease deletion, GC, cancellation, containers, fetch errors) for a
  violation of property NAME by the implementation under test;
- ``test_catalogue[NAME]``: the explorer searches catalogue race NAME's workloads, in the
  configuration where containerd does not have it (the fix's pull options, or the feature
  turned off where containerd never fixed it), so a faithful port of a fixed containerd passes
  and a regression fails.

Each search is seeded (seed 0) and bounded by ``--unpacksim-examples`` or the active
Hypothesis profile's ``max_examples`` (a catalogue entry by its own budget when that is
smaller); a violation is
written as a finding file (``--unpacksim-findings``) and fails the test with its summary.
"""

from __future__ import annotations

import pytest
from hypothesis import settings

from unpacksim.properties import catalogue, checks
from unpacksim.properties.explore import GENERAL_SPACE, Budget, Search, explore
from unpacksim.properties.pytest_plugin import FindingRecorder


def _budget(recorder: FindingRecorder, cap: int | None = None) -> Budget:
    examples = recorder.examples or settings().max_examples
    return Budget(examples=min(examples, cap) if cap else examples)


def _check(search: Search, budget: Budget, recorder: FindingRecorder) -> None:
    result = explore(search, seed=0, budget=budget, max_findings=1)
    for discovery in result.findings:
        path = recorder.record(discovery.finding)
        finding = discovery.finding
        pytest.fail(
            f"{finding.property.name} broken by {finding.implementation}: "
            f"{finding.explanation.splitlines()[0]}\nfinding: {path}\n"
            f"replay: unpacksim replay {path}",
            pytrace=False,
        )


@pytest.mark.parametrize("name", list(checks.PROPERTIES))
def test_property(name: str, unpacksim_impl: str, unpacksim_findings: FindingRecorder) -> None:
    search = Search(implementation=unpacksim_impl, space=GENERAL_SPACE, properties=(name,))
    _check(search, _budget(unpacksim_findings), unpacksim_findings)


@pytest.mark.parametrize("name", catalogue.names())
def test_catalogue(name: str, unpacksim_impl: str, unpacksim_findings: FindingRecorder) -> None:
    entry = catalogue.entry(name)
    search = Search(
        implementation=unpacksim_impl,
        space=entry.space,
        properties=entry.properties,
        pull_options=entry.without_race.pull_options,
        entry=entry,
    )
    _check(search, _budget(unpacksim_findings, entry.budget), unpacksim_findings)
