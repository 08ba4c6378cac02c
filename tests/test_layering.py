"""Dependencies point one way: ``unpacksim.model`` needs only the standard library."""

from __future__ import annotations

import subprocess
import sys

_PROBE = """
import sys, pkgutil, importlib
import unpacksim.model as m
for info in pkgutil.walk_packages(m.__path__, 'unpacksim.model.'):
    importlib.import_module(info.name)
bad = sorted(n for n in ('simpy', 'hypothesis', 'networkx') if n in sys.modules)
print(','.join(bad))
"""


def test_model_imports_no_third_party_package() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "", f"unpacksim.model imported {out}"
