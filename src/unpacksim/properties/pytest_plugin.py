"""unpacksim's pytest plugin: Hypothesis profiles now; implementation selection with issue 7.

Registered through the ``pytest11`` entry point, so any pytest run in an environment with
unpacksim installed gets the profiles.
"""

from __future__ import annotations

import pytest

from unpacksim.properties.profiles import load_default_profile


def pytest_configure(config: pytest.Config) -> None:
    load_default_profile()
