"""The real-containerd tier: one prerequisite check for every ``@pytest.mark.real`` test.

Without root, containerd, go or Debian's containerd Go sources, the tier's tests skip with a
message saying what is missing and how to get it.  The ``real`` tox environment sets
``UNPACKSIM_REQUIRE_REAL`` when ``CI`` is set: there a missing prerequisite fails the run, so
CI cannot pass without running the tier.  Tests of this directory that need none of it (the
registry, scenarios, canonical forms) are not marked and run everywhere.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from unpacksim.real.harness import build_harness
from unpacksim.real.prereqs import skip_reason

REASON = skip_reason()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    real = [item for item in items if item.get_closest_marker("real") is not None]
    if REASON is None or not real:
        return
    if os.environ.get("UNPACKSIM_REQUIRE_REAL"):
        raise pytest.UsageError(f"{REASON} (required: UNPACKSIM_REQUIRE_REAL is set, as in CI)")
    skip = pytest.mark.skip(reason=REASON)
    for item in real:
        item.add_marker(skip)


@pytest.fixture(scope="session")
def harness_binary() -> Path:
    """The Go harness, built once (and cached across runs by the source's sha256)."""
    return build_harness()
