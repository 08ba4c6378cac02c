"""The same seed gives the same pull trace, whatever the hash seed of the interpreter."""

from __future__ import annotations

import os
import subprocess
import sys

_SCENARIO = """
from unpacksim.model.builders import build_image, build_layer
from unpacksim.sim.choose import RandomChooser
from unpacksim.unpack.drive import pull_images, world_for

base = build_layer({"base": b"b"})
images = [build_image(f"registry.test/i{i}:1", [base, build_layer({"x": bytes([i])})])
          for i in range(3)]
world = world_for("v1.7", chooser=RandomChooser(5))
world.push(*images)
results, _ = pull_images(world, "v1.7", [i.name for i in images] * 2)
print(world.env.trace.sha256(), [r.ok for r in results].count(True))
"""


def _run(hash_seed: str) -> str:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    out = subprocess.run(
        [sys.executable, "-c", _SCENARIO], capture_output=True, text=True, check=True, env=env
    )
    return out.stdout.strip()


def test_same_seed_same_trace_under_different_hash_seeds() -> None:
    first, second = _run("1"), _run("4242")
    assert first == second
    assert first.endswith(" 6")
