"""Every catalogue scenario on a real containerd: outcomes, invariants, and what it left.

Each scenario gets a fresh daemon and registry.  The outcome of every step must be the one
the scenario documents, the invariants that run on the model must hold on the daemon's final
state, and the scenarios that exist to show one behaviour have that behaviour checked here.
A few racy-looking scenarios run twice: both runs must agree once random names are
canonical, which is what the comparison with the reference relies on.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from unpacksim.model.builders import BuiltImage
from unpacksim.model.digest import chain_ids
from unpacksim.model.labels import GC_REF_CONTENT, UNCOMPRESSED, snapshot_gc_label
from unpacksim.real.catalogue import SCENARIOS, scenario
from unpacksim.real.compare import compare_runs
from unpacksim.real.outcome import ScenarioRun
from unpacksim.real.runner import run_real, state_violations
from unpacksim.real.scenarios import Scenario, build_images

pytestmark = pytest.mark.real

Check = Callable[[ScenarioRun, dict[str, BuiltImage]], None]


def content(run: ScenarioRun) -> dict[str, dict[str, str]]:
    ns = run.state.namespace("default")
    return {d: b.labels for d, b in ns.content.items()}


def snapshots(run: ScenarioRun) -> list[str]:
    return sorted(run.state.namespace("default").snapshotter("native"))


def layer_gets(run: ScenarioRun, digest: str) -> list[dict[str, object]]:
    return [r for r in run.details["requests"] if r["digest"] == digest and r["method"] == "GET"]


def discarded(run: ScenarioRun, images: dict[str, BuiltImage]) -> None:
    app = images["app:v1"].single
    assert not {d.digest for d in app.layers} & set(content(run))
    assert {app.manifest.digest, app.config.digest} <= set(content(run))
    assert snapshots(run) == sorted(app.chain_ids)


def second_pull_fetched_no_layer(run: ScenarioRun, images: dict[str, BuiltImage]) -> None:
    discarded(run, images)
    app = images["app:v1"].single
    labels = content(run)[app.manifest.digest]
    assert labels[f"{GC_REF_CONTENT}.l.0"] == app.layers[0].digest  # dangling since #8973
    assert all(len(layer_gets(run, d.digest)) == 1 for d in app.layers)


def shared_image_skips_known_layers(run: ScenarioRun, images: dict[str, BuiltImage]) -> None:
    app, other = images["app:v1"].single, images["other:v1"].single
    present = set(content(run))
    assert other.layers[2].digest in present
    assert not {app.layers[0].digest, app.layers[1].digest} & present
    assert set(other.chain_ids) <= set(snapshots(run))


def empty(run: ScenarioRun, images: dict[str, BuiltImage]) -> None:
    ns = run.state.namespace("default")
    assert (ns.content, ns.images, ns.ingests, snapshots(run)) == ({}, {}, {}, [])


def lease_holds_everything(run: ScenarioRun, images: dict[str, BuiltImage]) -> None:
    ns = run.state.namespace("default")
    app = images["app:v1"]
    assert ns.images == {} and set(content(run)) == set(app.blobs)
    assert snapshots(run) == sorted(app.single.chain_ids)
    assert ("content", app.target.digest) in ns.leases["user"].resources


def poisoned_ingest_is_not_refetched(run: ScenarioRun, images: dict[str, BuiltImage]) -> None:
    layer = images["app:v1"].single.layers[1].digest
    assert [r["fault"] for r in layer_gets(run, layer)] == ["corrupt", ""]  # steps 0 and 3


def drop_resumes_with_range(run: ScenarioRun, images: dict[str, BuiltImage]) -> None:
    layer = images["big:v1"].single.layers[1]
    first, second = layer_gets(run, layer.digest)
    assert first["fault"] == "drop"
    assert (second["status"], second["offset"]) == (206, layer.size // 2)


def one_platform_fetched(run: ScenarioRun, images: dict[str, BuiltImage]) -> None:
    multi = images["multi:v1"]
    index = content(run)[multi.target.digest]
    arm = multi.platform("linux/arm64").manifest.digest
    assert index[f"{GC_REF_CONTENT}.m.1"] == arm and arm not in content(run)
    assert snapshots(run) == sorted(multi.platform("linux/amd64").chain_ids)


def content_only(run: ScenarioRun, images: dict[str, BuiltImage]) -> None:
    app = images["app:v1"].single
    assert snapshots(run) == []
    assert snapshot_gc_label("native") not in content(run)[app.config.digest]


def plain_tars(run: ScenarioRun, images: dict[str, BuiltImage]) -> None:
    for layer in images["plain:v1"].single.layers:
        assert content(run)[layer.digest][UNCOMPRESSED] == layer.digest


def duplicate_layer(run: ScenarioRun, images: dict[str, BuiltImage]) -> None:
    dup = images["dup:v1"].single
    assert len({d.digest for d in dup.layers}) == 2
    assert snapshots(run) == sorted(chain_ids(dup.diff_ids)) and len(snapshots(run)) == 3


def faulted_one_of_two(run: ScenarioRun, images: dict[str, BuiltImage]) -> None:
    names = [n.rsplit("/", 1)[-1] for n in run.state.namespace("default").images]
    assert names == ["app:v1"]


CHECKS: dict[str, Check] = {
    "discard-then-gc": discarded,
    "discard-under-user-lease": discarded,
    "discard-then-second-pull": second_pull_fetched_no_layer,
    "discard-then-shared-image": shared_image_skips_known_layers,
    "delete-image-sync": empty,
    "delete-image-then-gc": empty,
    "layer-error-500": empty,
    "manifest-error": empty,
    "lease-holds-after-image-delete": lease_holds_everything,
    "layer-corrupt-poisons-ingest": poisoned_ingest_is_not_refetched,
    "layer-drop-reconnects": drop_resumes_with_range,
    "index-two-platforms": one_platform_fetched,
    "pull-without-unpack": content_only,
    "uncompressed-layers": plain_tars,
    "duplicate-layer": duplicate_layer,
    "concurrent-one-faulted": faulted_one_of_two,
}


@pytest.mark.parametrize("s", SCENARIOS, ids=lambda s: s.name)
def test_scenario_on_containerd(s: Scenario, harness_binary: Path) -> None:
    run = run_real(s, binary=harness_binary)
    assert run.side.startswith("containerd 1.6.")
    assert run.unexpected() == []
    assert state_violations(run) == []
    check = CHECKS.get(s.name)
    if check is not None:
        check(run, build_images(s))


def test_every_behaviour_check_names_a_scenario() -> None:
    assert set(CHECKS) <= {s.name for s in SCENARIOS}


@pytest.mark.parametrize(
    "name", ["concurrent-shared-layers", "layer-error-500", "layer-corrupt-poisons-ingest"]
)
def test_two_runs_agree_once_canonical(name: str, harness_binary: Path) -> None:
    s = scenario(name)
    first, second = (run_real(s, binary=harness_binary) for _ in range(2))
    comparison = compare_runs(s, first, second)
    assert comparison.divergences == ()
    assert first.registry_host != second.registry_host  # the canonical form hid the ports
