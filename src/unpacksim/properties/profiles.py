"""Hypothesis settings profiles: ``ci`` (deterministic), ``dev`` and ``soak``.

``ci`` is loaded when the ``CI`` environment variable is set, so CI runs derandomized;
``HYPOTHESIS_PROFILE`` names another profile explicitly.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

__all__ = ["load_default_profile", "register_profiles"]

_SUPPRESS = [HealthCheck.too_slow, HealthCheck.data_too_large]


def register_profiles() -> None:
    """Register ``ci``, ``dev`` and ``soak`` with Hypothesis (idempotent)."""
    settings.register_profile(
        "ci",
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=True,
        suppress_health_check=_SUPPRESS,
    )
    settings.register_profile("dev", deadline=None, suppress_health_check=_SUPPRESS)
    settings.register_profile(
        "soak",
        max_examples=5000,
        deadline=None,
        suppress_health_check=_SUPPRESS,
    )


def load_default_profile() -> str:
    """Load ``$HYPOTHESIS_PROFILE``, else ``ci`` when ``$CI`` is set, else ``dev``; return its name."""
    register_profiles()
    name = os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev")
    settings.load_profile(name)
    return name
