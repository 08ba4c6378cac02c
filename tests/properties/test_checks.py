"""Each named property fails on a scripted bad run and holds on a good one.

The bad runs are real runs: a preset that has the race (under a schedule that shows it), or
a deliberately broken implementation plugged in (``plugins.py``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from unpacksim.properties import checks
from unpacksim.properties.program import (
    Cancel,
    CollectGarbage,
    CreateLease,
    DeleteImage,
    DeleteLease,
    EditLabels,
    HoldSnapshot,
    ImageSpec,
    Inject,
    Program,
    Pull,
    RunResult,
    Unpack,
    run_program,
)
from unpacksim.properties.scenario import Action
from unpacksim.unpack.eras import preset
from unpacksim.unpack.interface import Implementation
from unpacksim.unpack.reference import ReferenceImplementation


def _load_plugins() -> ModuleType:
    path = Path(__file__).with_name("plugins.py")
    spec = importlib.util.spec_from_file_location("properties_plugins", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


plugins = _load_plugins()

BASE = ImageSpec("registry.test/base:1", ("base",))
APP = ImageSpec("registry.test/app:1", ("base", "app"))
BIG = ImageSpec("registry.test/big:1", ("big-a", "big-b", "big-c"), layer_bytes=100_000)
SLOW = 1_000_000.0  # bytes per simulated second: big layers take 0.1 s


def _run(impl: str | Implementation, *actions: Action, name: str, **program: object) -> list[str]:
    """The messages of property ``name``'s violations in a run of ``actions``."""
    return [v.message for v in _result(impl, *actions, name=name, **program).violations]


def _result(
    impl: str | Implementation, *actions: Action, name: str, **program: object
) -> RunResult:
    images = program.pop("images", (BASE, APP, BIG))
    prog = Program(images=images, actions=actions, **program)  # type: ignore[arg-type]
    result = run_program(prog, impl, properties=[name])
    assert checks.PROPERTIES[name].check(result) == result.violations or name in checks.MONITORED
    return result


def test_every_property_is_registered_with_a_description() -> None:
    assert len(checks.PROPERTIES) == 13
    for name, prop in checks.PROPERTIES.items():
        assert prop.name == name and prop.description.endswith(".")
    assert checks.property_names(["gc-converged", "converges"]) == ["converges", "gc-converged"]


# --- converges ---------------------------------------------------------------------------------


def test_converges_fails_when_the_implementation_crashes() -> None:
    (message,) = _run(plugins.Raising(), Pull(at=0.0, actor="p1", image=APP.name), name="converges")
    assert message.startswith("the run ended failed") and "the implementation crashed" in message


def test_converges_holds_for_the_reference() -> None:
    assert _run("seed", Pull(at=0.0, actor="p1", image=APP.name), name="converges") == []


# --- pull-failure-reported ---------------------------------------------------------------------


def test_a_failure_without_a_message_is_not_reported() -> None:
    (message,) = _run(
        plugins.Silent(), Pull(at=0.0, actor="p1", image=APP.name), name="pull-failure-reported"
    )
    assert message == "p1 failed with an empty message (other)"
    (nameless,) = _run(
        plugins.Silent(succeed=True),
        Pull(at=0.0, actor="p1", image=APP.name),
        name="pull-failure-reported",
    )
    assert nameless == "p1 reported success but names no image"


def test_the_reference_reports_its_failures() -> None:
    actions = (
        Pull(at=0.0, actor="p1", image=BIG.name),
        Cancel(at=0.01, actor="kubelet", target="p1"),
    )
    result = _result("seed", *actions, name="pull-failure-reported", bandwidth=SLOW)
    pull = result.pulls["p1"]
    assert pull is not None and not pull.ok and result.violations == []


# --- pulls-succeed-without-faults (#1041) ---------------------------------------------------


def test_prepare_collisions_without_unique_keys_fail_undisturbed_pulls() -> None:
    impl = ReferenceImplementation(preset("seed").but(unique_keys=False), name="2017-keys")
    actions = (Pull(at=0.0, actor="p1", image=APP.name), Pull(at=0.0, actor="p2", image=APP.name))
    (message,) = _run(impl, *actions, name="pulls-succeed-without-faults")
    assert message.startswith("p2 failed without a fault or interference: unable to prepare")
    assert _run("seed", *actions, name="pulls-succeed-without-faults") == []


def test_a_fault_or_a_cancellation_excuses_a_failure() -> None:
    layer = APP.build().single.layers[1].digest
    actions = (
        Inject(at=0.0, actor="chaos", site="fetch.error", key=layer),
        Pull(at=0.0, actor="p1", image=APP.name),
        Pull(at=0.0, actor="p2", image=BIG.name),
        Cancel(at=0.01, actor="kubelet", target="p2"),
    )
    result = _result("seed", *actions, name="pulls-succeed-without-faults", bandwidth=SLOW)
    assert [p is not None and p.ok for p in result.pulls.values()] == [False, False]
    assert result.violations == []


# --- parent-protected-at-prepare (#3787) ------------------------------------------------------

# p1 pulls the base; its image is deleted; p2 pulls an image on the same base: the seed's
# Stat skip sees the base, takes no lease on it, and prepares the next layer on it.
STAT_SKIP = (
    Pull(at=0.0, actor="p1", image=BASE.name),
    DeleteImage(at=0.05, actor="user", image=BASE.name),
    Pull(at=0.06, actor="p2", image=APP.name),
)


@pytest.mark.parametrize("impl", ["seed", "v1.6", "v1.7"])
def test_the_stat_skip_prepares_on_an_unprotected_parent(impl: str) -> None:
    (message,) = _run(impl, *STAT_SKIP, name="parent-protected-at-prepare")
    base = BASE.build().single.chain_ids[0]
    assert message.startswith("p2 prepared 'extract-") and f"on parent {base} while" in message


def test_v20_leases_the_existing_parent() -> None:
    assert _run("v2.0", *STAT_SKIP, name="parent-protected-at-prepare") == []


def test_a_prepare_under_a_lease_the_program_revoked_is_not_judged() -> None:
    actions = (
        CreateLease(at=0.0, actor="user", lease="l1"),
        Pull(at=0.01, actor="p1", image=BASE.name),
        DeleteImage(at=0.06, actor="user", image=BASE.name),
        Pull(at=0.07, actor="p2", image=APP.name, lease="l1"),
        DeleteLease(at=0.07, actor="user", lease="l1"),
    )
    result = _result("seed", *actions, name="parent-protected-at-prepare")
    assert result.runner.revoked == {"l1": 0.07} and result.violations == []


# --- failed-pull-no-extraction-left (#6294) ------------------------------------------------

CANCELLED = (
    Pull(at=0.0, actor="p1", image=BIG.name),
    Cancel(at=0.03, actor="kubelet", target="p1"),
)


def test_the_seed_leaks_the_extraction_snapshot_of_a_cancelled_pull() -> None:
    result = _result("seed", *CANCELLED, name="failed-pull-no-extraction-left", bandwidth=SLOW)
    (violation,) = result.violations
    assert violation.message.startswith("p1 failed (Canceled) but its extraction snapshot")
    assert result.quiescence is not None and result.quiescence.leases  # the lease stayed


def test_v17_aborts_on_cancellation() -> None:
    result = _result("v1.7", *CANCELLED, name="failed-pull-no-extraction-left", bandwidth=SLOW)
    pull = result.pulls["p1"]
    assert pull is not None and not pull.ok and pull.aborted
    assert result.violations == []


# --- image-usable-after-pull (#8674) ------------------------------------------------------


def _discard_then_unpack(discard: bool) -> tuple[Action, ...]:
    return (
        Pull(at=0.0, actor="p1", image=APP.name, discard=discard),
        CollectGarbage(at=0.1, actor="gc", sync=True),
        Unpack(at=0.2, actor="client", image=APP.name, snapshotter="overlay"),
    )


@pytest.mark.parametrize("impl", ["seed", "v1.6"])
def test_a_discarding_pull_leaves_an_image_another_snapshotter_cannot_unpack(impl: str) -> None:
    messages = _run(
        impl,
        *_discard_then_unpack(True),
        name="image-usable-after-pull",
        snapshotters=("native", "overlay"),
    )
    assert len(messages) == 1 and "client's unpack failed" in messages[0]
    assert "content digest" in messages[0] and "not found" in messages[0]


def test_without_discard_the_image_stays_usable() -> None:
    assert (
        _run(
            "v1.6",
            *_discard_then_unpack(False),
            name="image-usable-after-pull",
            snapshotters=("native", "overlay"),
        )
        == []
    )


def test_an_image_whose_rootfs_label_is_missing_is_not_usable() -> None:
    # The naive plug-in writes its label only for the default snapshotter it unpacked into,
    # but never sets manifest child labels: at rest GC takes the config, so the image breaks.
    messages = _run(
        plugins.Naive(), Pull(at=0.0, actor="p1", image=APP.name), name="image-usable-after-pull"
    )
    assert messages and all(
        m.startswith("p1 pulled registry.test/app:1 successfully, but") for m in messages
    )


# --- referenced-blobs-present (#8973) ------------------------------------------------------


def _held_then_repulled(hold: bool) -> tuple[Action, ...]:
    actions: list[Action] = [Pull(at=0.0, actor="p1", image=APP.name)]
    if hold:
        actions.append(HoldSnapshot(at=0.1, actor="ctr", image=APP.name, container="c1"))
    actions += [
        DeleteImage(at=0.2, actor="user", image=APP.name, sync=True),
        Pull(at=0.3, actor="p2", image=APP.name),
    ]
    return tuple(actions)


@pytest.mark.parametrize("impl", ["seed", "v2.0"])
def test_a_repull_over_kept_snapshots_never_fetches_the_layers(impl: str) -> None:
    messages = _run(impl, *_held_then_repulled(True), name="referenced-blobs-present")
    assert len(messages) == 2
    assert all(m.startswith("image registry.test/app:1 references its layer") for m in messages)


def test_without_kept_snapshots_the_repull_fetches_everything() -> None:
    assert _run("v2.0", *_held_then_repulled(False), name="referenced-blobs-present") == []


# --- corrupt-layer-never-committed (#3569) ------------------------------------------------


def _wrong_diff(layer: int = 1) -> tuple[Action, ...]:
    digest = APP.build().single.layers[layer].digest
    return (
        Inject(at=0.0, actor="chaos", site="diff.apply.wrong_diff_id", key=digest),
        Pull(at=0.0, actor="p1", image=APP.name),
    )


def test_an_unpacker_without_the_diff_id_check_commits_a_corrupt_layer() -> None:
    messages = _run(plugins.Naive(), *_wrong_diff(), name="corrupt-layer-never-committed")
    chain = APP.build().single.chain_ids[1]
    assert messages == [
        f"p1 committed {chain} after diff.apply.wrong_diff_id corrupted "
        f"{APP.build().single.layers[1].digest}"
    ]


def test_the_reference_refuses_a_wrong_diff_id_and_names_it() -> None:
    result = _result("seed", *_wrong_diff(), name="corrupt-layer-never-committed")
    pull = result.pulls["p1"]
    assert pull is not None and "wrong diff id calculated on extraction" in pull.message
    assert result.violations == []


def test_an_error_that_does_not_name_the_corrupt_layer_fails() -> None:
    digest = APP.build().single.layers[0].digest
    actions = (
        Inject(at=0.0, actor="chaos", site="fetch.corrupt", key=digest),
        Pull(at=0.0, actor="p1", image=APP.name),
    )
    (message,) = _run(plugins.Vague(), *actions, name="corrupt-layer-never-committed")
    assert message.endswith("but its error does not name one: the pull did not work out")
    assert _run("seed", *actions, name="corrupt-layer-never-committed") == []


# --- chain-applied-once (#4937) ---------------------------------------------------------------

TWICE = (Pull(at=0.0, actor="p1", image=APP.name), Pull(at=0.0, actor="p2", image=APP.name))


def test_concurrent_pulls_apply_the_same_layers_twice() -> None:
    messages = _run("v2.0", *TWICE, name="chain-applied-once")
    assert len(messages) == 2 and all("committed meanwhile" in m for m in messages)


def test_the_duplication_suppressor_applies_each_chain_once() -> None:
    assert _run("v1.7-cri", *TWICE, name="chain-applied-once") == []


# --- downloads-within-limit (#6054) -------------------------------------------------------

LIMITED = (Pull(at=0.0, actor="p1", image=BIG.name, max_concurrent_downloads=1),)


def test_the_seed_ignores_the_download_limit() -> None:
    (message,) = _run("seed", *LIMITED, name="downloads-within-limit", bandwidth=SLOW)
    assert message.startswith("p1 ran 3 layer downloads at once (limit 1)")


def test_v16_keeps_to_the_download_limit() -> None:
    assert _run("v1.6", *LIMITED, name="downloads-within-limit", bandwidth=SLOW) == []


# --- no-lost-update -----------------------------------------------------------------------


# The clobberer re-writes the manifest's labels 50 ms after reading them (no field paths);
# meanwhile a user changes the config label.
RELABELLED = (
    Pull(at=0.0, actor="p1", image=APP.name),
    EditLabels(at=0.06, actor="user", image=APP.name, selector="manifest.config", value="x"),
)


def test_a_stale_whole_map_update_loses_another_actors_label() -> None:
    (message,) = _run(plugins.Clobberer(), *RELABELLED, name="no-lost-update")
    manifest = APP.build().single.manifest.digest
    assert message == (
        f"p1 replaced the labels of {manifest} and dropped "
        "containerd.io/gc.ref.content.0='x', which user wrote after p1 last read them"
    )


def test_field_path_updates_lose_nothing() -> None:
    assert _run("seed", *RELABELLED, name="no-lost-update") == []


# --- state-invariants and gc-converged -------------------------------------------------------


def test_a_backend_that_loses_a_snapshot_breaks_the_state_invariants() -> None:
    result = _result(
        plugins.Rogue("backend"), Pull(at=0.0, actor="p1", image=APP.name), name="state-invariants"
    )
    assert {v.invariant for v in result.violations} >= {"metadata-backend-agree"}
    found = result.found[0]
    assert found.after is not None and found.violation.evidence["time"] == found.time


def test_the_reference_keeps_the_state_invariants() -> None:
    assert _run("seed", *STAT_SKIP, name="state-invariants") == []


def test_an_active_snapshot_left_at_rest_breaks_gc_converged() -> None:
    (message,) = _run(
        plugins.Rogue("root"), Pull(at=0.0, actor="p1", image=APP.name), name="gc-converged"
    )
    assert message == "snapshot 'leftover' (native) is still active at rest"


def test_gc_converges_after_an_ordinary_run() -> None:
    assert _run("seed", *CANCELLED, name="gc-converged", bandwidth=SLOW) == []
