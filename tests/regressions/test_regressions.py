"""Pinned regressions: the shrunk counterexample of every catalogue race, replayed.

Each ``<entry>.json`` here is the finding ``unpacksim catalogue run <entry>`` (seed 0) wrote:
the explorer's shrunk counterexample.  Replaying it must reproduce the race with the
configuration that has it, and must not with the configuration that does not.  The trace may
drift when the model changes (a message, a latency); the race must not.  To re-pin one::

    unpacksim catalogue run NAME --no-html -o /tmp/pins
    mv /tmp/pins/f-*.json tests/regressions/NAME.json
"""

from __future__ import annotations

from pathlib import Path

import pytest

from unpacksim.properties.catalogue import CATALOGUE, CatalogueEntry
from unpacksim.properties.replay import replay
from unpacksim.reports.io import load_finding

HERE = Path(__file__).parent


def test_every_catalogue_entry_is_pinned() -> None:
    assert sorted(p.stem for p in HERE.glob("*.json")) == sorted(e.name for e in CATALOGUE)


@pytest.mark.parametrize("item", CATALOGUE, ids=lambda e: e.name)
def test_the_pinned_race_reproduces(item: CatalogueEntry) -> None:
    finding = load_finding(HERE / f"{item.name}.json")
    assert finding.property.name == item.properties[0]
    assert finding.implementation == item.with_race.implementation
    outcome = replay(finding)
    assert outcome.reproduced, outcome.message


@pytest.mark.parametrize("item", CATALOGUE, ids=lambda e: e.name)
def test_the_pinned_race_is_gone_without_it(item: CatalogueEntry) -> None:
    finding = load_finding(HERE / f"{item.name}.json")
    fixed = item.without_race
    outcome = replay(finding, implementation=fixed.implementation, pull_options=fixed.pull_options)
    assert not outcome.reproduced, outcome.message
