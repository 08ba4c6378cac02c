"""Era flags and presets: each preset sets the flags of the release it names."""

from __future__ import annotations

import pytest

from unpacksim.unpack.eras import DEFAULT_PRESET, PRESETS, DiscardMode, Era, EraError, preset


def test_seed_is_the_default_and_matches_the_seed_commit() -> None:
    assert DEFAULT_PRESET == "seed"
    seed = preset("seed")
    assert seed == Era(name="seed")
    assert seed.stat_skip and seed.unique_keys
    assert not (
        seed.lease_on_exists
        or seed.abort_on_cancel_or_fetch_err
        or seed.cleanup_ctx_detached
        or seed.limiter_effective
        or seed.dedup_keyed_lock
        or seed.typed_child_labels
    )
    assert seed.discard_mode is DiscardMode.NONE
    assert seed.discard_mechanism is DiscardMode.SEED_STRIP_LABELS


@pytest.mark.parametrize(
    ("name", "changed"),
    [
        ("v1.4", {"typed_child_labels"}),
        ("v1.6", {"typed_child_labels", "limiter_effective"}),
        (
            "v1.7",
            {
                "typed_child_labels",
                "limiter_effective",
                "abort_on_cancel_or_fetch_err",
                "cleanup_ctx_detached",
            },
        ),
        (
            "v2.0",
            {
                "typed_child_labels",
                "limiter_effective",
                "abort_on_cancel_or_fetch_err",
                "cleanup_ctx_detached",
                "lease_on_exists",
                "stat_skip",
            },
        ),
    ],
)
def test_each_preset_differs_from_the_seed_by_its_changes(name: str, changed: set[str]) -> None:
    seed = preset("seed").flags()
    flags = preset(name).flags()
    differs = {k for k in flags if k != "name" and flags[k] != seed[k]}
    assert differs == changed


def test_v16_lacks_the_2024_backports() -> None:
    # #10187 reached 1.6.32 and #10723 1.6.37, both after the 1.6.20 Debian ships.
    v16 = preset("v1.6")
    assert v16.stat_skip and not v16.lease_on_exists
    assert v16.discard_mechanism is DiscardMode.CHILDLABELMAP_FILTER_LAYERS


@pytest.mark.parametrize("name", ["v1.6", "v1.7", "v2.0"])
def test_no_preset_sets_the_duplication_suppressor(name: str) -> None:
    # The presets model Client.Pull, which never installs a suppressor: the unpacker's default
    # is kmutex.NewNoop() (1.6.20 unpacker.go L63-L65; v1.7.0 pkg/unpack/unpacker.go
    # NewUnpacker) and pull.go passes one only from UnpackConfig, which only CRI sets (in
    # 1.6.20 since the v1.6.3 backport 1764ea9a2, and in v1.7.0 alike).  So the suppressor is
    # no difference between 1.6 and 1.7; it was wrongly on in v1.7 and v2.0.
    assert not preset(name).dedup_keyed_lock


def test_v17_as_cri_pulls_is_registered_beside_the_presets() -> None:
    from unpacksim.unpack.interface import resolve
    from unpacksim.unpack.reference import CRI_V17, ReferenceImplementation

    impl = resolve(CRI_V17)
    assert isinstance(impl, ReferenceImplementation) and impl.name == "v1.7-cri"
    assert impl.era == preset("v1.7").but(name="v1.7-cri", dedup_keyed_lock=True)
    assert CRI_V17 not in PRESETS


def test_presets_are_ordered_oldest_first() -> None:
    assert list(PRESETS) == ["seed", "v1.4", "v1.6", "v1.7", "v2.0"]


def test_unknown_preset_names_the_known_ones() -> None:
    with pytest.raises(EraError, match=r"unknown era preset 'v9'.*seed"):
        preset("v9")


def test_but_changes_flags_and_rejects_unknown_ones() -> None:
    era = preset("v1.6").but(stat_skip=False)
    assert not era.stat_skip and era.name == "custom" and era.limiter_effective
    with pytest.raises(EraError, match="unknown era flag"):
        preset("seed").but(stat_skp=False)


def test_filter_layers_needs_typed_labels() -> None:
    with pytest.raises(EraError, match="typed_child_labels"):
        Era(discard_mode=DiscardMode.CHILDLABELMAP_FILTER_LAYERS)
    with pytest.raises(EraError, match="DiscardMode"):
        Era(discard_mode="none")  # type: ignore[arg-type]


def test_world_options_carry_the_daemon_flag() -> None:
    assert preset("v2.0").world_options == {"lease_on_exists": True}
    assert preset("v1.7").world_options == {"lease_on_exists": False}


def test_flags_are_plain_data() -> None:
    flags = preset("seed").but(discard_mode=DiscardMode.SEED_STRIP_LABELS).flags()
    assert flags["discard_mode"] == "seed_strip_labels"
