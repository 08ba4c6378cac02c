"""Shared fixtures.  Hypothesis profiles come from unpacksim's pytest plugin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="session")
def chainid_vectors() -> dict[str, Any]:
    """Facts observed on a real containerd 1.6.20 (``../shared/vectors``)."""
    path = SHARED / "vectors" / "containerd-1.6.20-chainids.json"
    if not path.exists():  # a checkout without shared/ beside it: a clear failure, not a skip
        pytest.fail(f"the shared vectors are missing: expected {path}")
    data: dict[str, Any] = json.loads(path.read_text())
    return data
