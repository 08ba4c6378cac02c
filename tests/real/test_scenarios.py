"""Scenarios as data: validation, image building, fault targeting, and the catalogue."""

from __future__ import annotations

import pytest

from unpacksim.model.digest import chain_ids
from unpacksim.real.catalogue import SCENARIOS, scenario
from unpacksim.real.registry import Effect
from unpacksim.real.scenarios import (
    GC,
    DeleteImage,
    Fault,
    ImageSpec,
    Pull,
    PullStep,
    Scenario,
    ScenarioError,
    build_images,
    resolve_fault,
)

LAYERS = {"base": {"etc/base": b"base"}, "top": {"app": b"top"}}


def make(*steps: object, images: tuple[ImageSpec, ...] | None = None) -> Scenario:
    images = images or (ImageSpec("app", layers=("base", "top")),)
    return Scenario("s", "test", LAYERS, images, tuple(steps))  # type: ignore[arg-type]


def test_images_share_layers_exactly_and_build_deterministically() -> None:
    images = (ImageSpec("a", layers=("base", "top")), ImageSpec("b", layers=("base",)))
    s = make(PullStep((Pull("a:v1"), Pull("b:v1"))), images=images)
    built = build_images(s)
    assert built["a:v1"].single.layers[0] == built["b:v1"].single.layers[0]
    assert build_images(s)["a:v1"].blobs == built["a:v1"].blobs
    a = built["a:v1"].single
    assert list(a.chain_ids) == chain_ids(a.diff_ids)


def test_index_images_and_fault_targets() -> None:
    multi = ImageSpec("m", platforms={"linux/amd64": ("base",), "linux/arm64": ("top",)})
    s = make(PullStep((Pull("m:v1"),)), images=(multi,))
    built = build_images(s)
    image = built["m:v1"]
    arm = image.platform("linux/arm64")
    rule = resolve_fault(Fault(Effect.TRUNCATE, "m:v1", "layer", 0, platform="linux/arm64"), built)
    assert (rule.digest, rule.endpoint, rule.method) == (arm.layers[0].digest, "blobs", "GET")
    rule = resolve_fault(Fault(Effect.ERROR, "m:v1", "index"), built)
    assert (rule.digest, rule.endpoint) == (image.target.digest, "manifests")
    rule = resolve_fault(Fault(Effect.ERROR, "m:v1", "manifest", platform="linux/arm64"), built)
    assert rule.digest == arm.manifest.digest
    rule = resolve_fault(Fault(Effect.ERROR, "m:v1", "manifest", method="HEAD"), built)
    assert (rule.digest, rule.site) == (image.target.digest, "resolve")


def test_bad_fault_targets_are_refused() -> None:
    built = build_images(make(PullStep((Pull("app:v1"),))))
    with pytest.raises(ScenarioError, match=r"layer 5 .* has 2 layers"):
        resolve_fault(Fault(Effect.ERROR, "app:v1", "layer", 5), built)
    with pytest.raises(ScenarioError, match="no index"):
        resolve_fault(Fault(Effect.ERROR, "app:v1", "index"), built)
    with pytest.raises(ScenarioError, match="part must be"):
        resolve_fault(Fault(Effect.ERROR, "app:v1", "blob"), built)


def test_scenarios_that_cannot_run_are_refused() -> None:
    with pytest.raises(ScenarioError, match="unknown images"):
        make(DeleteImage("nope:v1"))
    with pytest.raises(ScenarioError, match="uses"):
        make(GC(), images=(ImageSpec("x", layers=("missing",)),))
    with pytest.raises(ScenarioError, match="either `layers`"):
        ImageSpec("x")
    with pytest.raises(ScenarioError, match="2 outcomes for 1"):
        PullStep((Pull("app:v1"),), expect=("ok", "ok"))
    with pytest.raises(ScenarioError, match="unknown outcomes"):
        PullStep((Pull("app:v1"),), expect=("fine",))
    with pytest.raises(ScenarioError, match="given twice"):
        make(GC(), images=(ImageSpec("a", layers=("base",)), ImageSpec("a", layers=("top",))))


def _effects(s: Scenario) -> set[tuple[Effect, str]]:
    return {
        (f.effect, f.part) for step in s.steps if isinstance(step, PullStep) for f in step.faults
    }


def test_the_catalogue_covers_what_the_issue_asks_for() -> None:
    assert len(SCENARIOS) >= 20
    assert len({s.name for s in SCENARIOS}) == len(SCENARIOS)
    # Concurrent pulls of images sharing layers.
    shared = scenario("concurrent-shared-layers")
    first = shared.steps[0]
    assert isinstance(first, PullStep) and len(first.pulls) == 3
    # Discard followed by a second pull.
    discard = scenario("discard-then-second-pull").steps
    assert isinstance(discard[0], PullStep) and discard[0].pulls[0].discard
    assert isinstance(discard[2], PullStep) and not discard[2].pulls[0].discard
    # Image deletion with GC.
    assert any(isinstance(st, DeleteImage) for st in scenario("delete-image-then-gc").steps)
    # Registry faults on layer fetches: errors, truncation, corruption.
    effects = set().union(*(_effects(s) for s in SCENARIOS))
    for effect in (Effect.ERROR, Effect.TRUNCATE, Effect.CORRUPT, Effect.DROP):
        assert (effect, "layer") in effects
    with pytest.raises(KeyError, match="no scenario"):
        scenario("nope")


@pytest.mark.parametrize("s", SCENARIOS, ids=lambda s: s.name)
def test_every_catalogue_scenario_builds_and_resolves_its_faults(s: Scenario) -> None:
    built = build_images(s)
    assert set(built) == {i.name for i in s.images}
    for step in s.steps:
        if isinstance(step, PullStep):
            for fault in step.faults:
                rule = resolve_fault(fault, built)
                assert rule.digest in built[fault.image].blobs
