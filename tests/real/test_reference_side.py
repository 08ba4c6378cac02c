"""The reference side of the differential tier, and its documented divergences (no daemon).

Every catalogue scenario runs on the reference here: its outcomes must be containerd's (the
scenario's ``expect``) except where :mod:`unpacksim.real.divergences` documents an outcome
divergence, and then the reference's value must be the documented one; the invariants must
hold on its final state.  The fault translation, the manual GC and the findings are checked
on small cases.
"""

from __future__ import annotations

import pytest

from unpacksim.model.clock import format_rfc3339
from unpacksim.model.errdefs import NotFound, error_class
from unpacksim.properties.invariants import check_state
from unpacksim.real.catalogue import SCENARIOS, scenario
from unpacksim.real.compare import compare_runs
from unpacksim.real.divergences import CAUSES, KNOWN, expand, render
from unpacksim.real.reference_side import (
    FAULT_MAPPING,
    REFERENCE_HOST,
    ReferenceSideError,
    lease_expiry,
    pick,
    reference_run,
    run_reference,
    translate_faults,
)
from unpacksim.real.registry import Effect
from unpacksim.real.scenarios import (
    GC,
    DeleteImage,
    Fault,
    Scenario,
    ScenarioError,
    build_images,
)
from unpacksim.unpack.goerrors import GoError

APP = "app:v1"
URL = f"http://{REFERENCE_HOST}/v2/app"


def _documented_outcomes(s: Scenario) -> dict[str, str]:
    images = build_images(s)
    return {
        k.where: expand(k.reference, images)
        for k in KNOWN
        if k.scenario == s.name and k.where.startswith("step ")
    }


@pytest.mark.parametrize("s", SCENARIOS, ids=lambda s: s.name)
def test_every_scenario_gives_containerds_outcomes_or_the_documented_ones(s: Scenario) -> None:
    run = run_reference(s)
    documented = _documented_outcomes(s)
    for step, shapes in zip(run.steps, run.shapes(), strict=True):
        for i, (outcome, shape) in enumerate(zip(step.outcomes, shapes, strict=True)):
            where = f"step {step.index} {step.kind} {i}"
            if where in documented:
                assert render(shape) == documented.pop(where)
            else:
                assert outcome.word == step.expected[i], (where, outcome)
    assert documented == {}  # every documented outcome divergence names a real operation
    assert check_state(run.state) == []


def test_reference_runs_are_deterministic() -> None:
    s = scenario("concurrent-shared-layers")
    first, second = reference_run(s), reference_run(s)
    assert compare_runs(s, first.run, second.run).divergences == ()
    assert first.run.details["trace_sha256"] == second.run.details["trace_sha256"]
    assert first.world.env.trace.lines() == second.world.env.trace.lines()


# --- the documented divergences ----------------------------------------------------------------


def test_every_known_divergence_names_a_scenario_a_cause_and_real_digests() -> None:
    names = {s.name: s for s in SCENARIOS}
    for known in KNOWN:
        assert known.cause in CAUSES
        images = build_images(names[known.scenario])
        for text in (known.real, known.reference):
            assert "<app:" not in expand(text, images) and "<big:" not in expand(text, images)
    assert {k.cause for k in KNOWN} == set(CAUSES)  # no cause without an entry


def test_expand_gives_digests_and_sizes() -> None:
    images = build_images(scenario("config-truncate"))
    config = images[APP].single.config
    text = expand("<app:v1 config> <app:v1 config size> <app:v1 config half> <registry>", images)
    assert text == f"{config.digest} {config.size} {config.size // 2} <registry>"
    with pytest.raises(KeyError):
        expand("<nope:v1 config>", images)


# --- fault translation ---------------------------------------------------------------------------


def _one(fault: Fault) -> tuple[str, BaseException | None]:
    s = scenario("layer-error-500")
    (translated,) = translate_faults([fault], build_images(s))
    return translated.site, translated.error() if translated.error else None


def test_a_500_on_a_layer_is_a_plain_go_error_naming_the_url() -> None:
    layer = build_images(scenario("layer-error-500"))[APP].single.layers[1]
    site, error = _one(Fault(Effect.ERROR, APP, "layer", 1))
    assert site == "fetch.error" and isinstance(error, GoError) and error.injected
    assert error_class(error) == "other"
    assert (
        str(error)
        == f"unexpected status code {URL}/blobs/{layer.digest}: 500 Internal Server Error"
    )


def test_404s_are_not_found_as_the_fetcher_words_them() -> None:
    image = build_images(scenario("layer-error-500"))[APP].single
    _, blob = _one(Fault(Effect.ERROR, APP, "layer", 0, status=404))
    assert isinstance(blob, NotFound)
    layer = image.layers[0]
    assert blob.message == (
        f"could not fetch content descriptor {layer.digest} ({layer.media_type}) from remote"
    )
    _, manifest = _one(Fault(Effect.ERROR, APP, "manifest", status=404))
    assert (
        str(manifest) == f"content at {URL}/manifests/{image.manifest.digest} not found: not found"
    )


def test_head_errors_fail_the_resolve() -> None:
    site, error = _one(Fault(Effect.ERROR, APP, "manifest", method="HEAD", status=503))
    assert site == "resolve" and isinstance(error, GoError)
    assert str(error) == (
        f"pulling from host {REFERENCE_HOST} failed with status code [manifests v1]: "
        "503 Service Unavailable"
    )
    _, missing = _one(Fault(Effect.ERROR, APP, "manifest", method="HEAD", status=404))
    assert str(missing) == f"{REFERENCE_HOST}/{APP}: not found"


@pytest.mark.parametrize(
    ("fault", "site"),
    [
        (Fault(Effect.TRUNCATE, APP, "layer", 1), "fetch.truncate"),
        (Fault(Effect.CORRUPT, APP, "config"), "fetch.corrupt"),
        (Fault(Effect.DROP, APP, "layer", 1), ""),
        (Fault(Effect.DELAY, APP, "layer", 1, seconds=0.5), "fetch.delay"),
        (Fault(Effect.DELAY, APP, "manifest", method="HEAD", seconds=0.5), "resolve.delay"),
    ],
)
def test_each_effect_has_its_site(fault: Fault, site: str) -> None:
    assert _one(fault) == (site, None)


def test_the_mapping_documents_every_effect() -> None:
    assert {key.split(" ")[0] for key in FAULT_MAPPING} == {e.value for e in Effect}


def test_faults_the_reference_cannot_express_are_refused() -> None:
    images = build_images(scenario("layer-error-500"))
    with pytest.raises(ReferenceSideError, match="leave `keep` and `at` unset"):
        translate_faults([Fault(Effect.TRUNCATE, APP, "layer", 1, keep=10)], images)
    with pytest.raises(ReferenceSideError, match="method GET or HEAD"):
        translate_faults([Fault(Effect.ERROR, APP, "layer", 1, method="any")], images)


def test_hits_count_per_fault_from_one_and_the_first_firing_fault_wins() -> None:
    images = build_images(scenario("layer-error-500"))
    digest = images[APP].single.layers[1].digest
    second, every = translate_faults(
        [
            Fault(Effect.ERROR, APP, "layer", 1, hits=(2,)),
            Fault(Effect.ERROR, APP, "layer", 1, hits=(), status=503),
        ],
        images,
    )
    faults = [second, every]
    assert pick(faults, "fetch.error", digest) is every
    assert pick(faults, "fetch.error", digest) is second
    assert pick(faults, "fetch.truncate", digest) is None
    assert (second.reached, second.fired, every.fired) == (2, [2], [1, 2])
    record = second.record()
    assert (record.site, record.effect, record.reached, record.fired) == ("fetch", "error", 2, (2,))


def test_a_delay_holds_the_fetch_in_simulated_time() -> None:
    run = reference_run(scenario("concurrent-slow-shared-layer"))
    base = build_images(scenario("concurrent-slow-shared-layer"))[APP].single.layers[0]
    opens = [f for f in run.world.registry.fetches if f.digest == base.digest]
    assert len(opens) == 1 and opens[0].time >= 0.3
    (rule,) = run.run.steps[0].faults
    assert (rule.effect, rule.fired) == ("delay", (1,))


# --- steps -------------------------------------------------------------------------------------


def test_the_world_collects_only_on_gc_steps_and_synchronous_deletes() -> None:
    assert reference_run(scenario("pull-one")).world.gc.collections == []
    assert len(reference_run(scenario("pull-then-gc")).world.gc.collections) == 1
    assert len(reference_run(scenario("delete-image-sync")).world.gc.collections) == 1
    assert reference_run(scenario("delete-image-then-gc")).world.gc.collections[0].reason == (
        "scenario step"
    )


def test_a_failed_pull_leaks_its_extraction_until_gc() -> None:
    base = scenario("layer-error-500")
    s = Scenario("leak", "", base.layers, base.images, base.steps[:1])
    run = run_reference(s)
    names = run.canonical()["default"]["snapshots"]["native"]
    assert any(n["name"].startswith("extract-<unique> sha256:") for n in names)
    ns = run.state.namespace("default")
    assert ns.leases == {} and ns.images == {}


def test_lease_expiry_is_a_go_duration_from_now() -> None:
    assert lease_expiry(10.0, "24h") == format_rfc3339(10.0 + 86400)
    assert lease_expiry(0.0, "90s") == format_rfc3339(90.0)
    with pytest.raises(ScenarioError, match="Go duration"):
        lease_expiry(0.0, "tomorrow")


def test_deleting_a_missing_image_is_containerds_not_found() -> None:
    base = scenario("delete-missing-image")
    s = Scenario("x", "", base.layers, base.images, (DeleteImage(APP), GC()))
    step = run_reference(s).steps[0]
    assert step.outcomes[0].word == "NotFound"
    assert step.outcomes[0].message == f'image "{REFERENCE_HOST}/{APP}": not found'


def test_a_pull_under_a_user_lease_does_not_create_one() -> None:
    run = reference_run(scenario("lease-holds-after-image-delete"))
    ns = run.run.state.namespace("default")
    assert list(ns.leases) == ["user"]  # the pull used it: Client.WithLease is a no-op
    target = build_images(scenario("lease-holds-after-image-delete"))[APP].target.digest
    assert ("content", target) in ns.leases["user"].resources
