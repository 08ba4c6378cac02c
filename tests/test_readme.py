"""The README's Python examples run as written (the real-containerd one runs in tests/real)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from unpacksim.unpack.interface import registered, unregister

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _blocks() -> list[str]:
    return [b for b in _BLOCK.findall(README.read_text()) if "unpacksim.real" not in b]


def test_readme_has_python_examples() -> None:
    assert len(_blocks()) >= 4


@pytest.mark.parametrize("upto", range(len(_blocks())))
def test_readme_example_runs(upto: int) -> None:
    # Later examples build on the names earlier ones define, as a reader runs them in order.
    namespace: dict[str, object] = {}
    names = set(registered())
    try:
        for i, block in enumerate(_blocks()[: upto + 1]):
            exec(compile(block, f"README.md python block {i}", "exec"), namespace)
    finally:
        # An example may register an implementation; leave the registry as it was.
        for name in registered():
            if name not in names:
                unregister(name)
