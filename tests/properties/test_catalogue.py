"""The race catalogue: every entry found from scratch with the configuration that has it,
shrunk, replayable, and not found with the configuration that does not.

Each search is the deterministic one CI runs: seed 0, the entry's own example budget.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from unpacksim.model.builders import build_image, build_layer
from unpacksim.properties import catalogue, checks, variants
from unpacksim.properties.catalogue import CATALOGUE, CatalogueError, Configuration, entry
from unpacksim.properties.explore import Budget, explore, search_for
from unpacksim.properties.replay import replay
from unpacksim.properties.scenario import Pull
from unpacksim.unpack.drive import pull_images, world_for
from unpacksim.unpack.interface import resolve
from unpacksim.unpack.reference import ReferenceImplementation

ISSUES = (
    "containerd#1041",
    "containerd#3787",
    "containerd#6294",
    "containerd#8973",
    "containerd#8674",
    "containerd#6054",
    "containerd#4937",
    "containerd#3569",
)


def test_the_catalogue_has_an_entry_for_each_race_of_the_issue() -> None:
    assert sorted(e.issue for e in CATALOGUE) == sorted(ISSUES)
    assert len(set(catalogue.names())) == len(CATALOGUE) == 8


@pytest.mark.parametrize("item", CATALOGUE, ids=lambda e: e.name)
def test_each_entry_is_well_formed(item: catalogue.CatalogueEntry) -> None:
    assert item.properties and all(p in checks.PROPERTIES for p in item.properties)
    assert item.with_race != item.without_race
    for config in (item.with_race, item.without_race):
        assert resolve(config.implementation).name == config.implementation
        assert config.note
    assert item.symptom and item.mechanism and item.fix and item.title
    assert 0 < item.budget <= 300
    assert item.to_json()["space"]["slots"]


def test_entry_lookup_names_the_known_entries() -> None:
    assert entry("stat-skip-gc-parent").issue == "containerd#3787"
    with pytest.raises(CatalogueError, match="no catalogue entry 'nope'; entries are prepare-"):
        entry("nope")


def test_a_configuration_refuses_options_a_pull_does_not_have() -> None:
    with pytest.raises(CatalogueError, match=r"\['colour'\] are not pull options"):
        Configuration("seed", {"colour": "red"})
    assert Configuration("v1.6", {"discard": True}).describe() == "v1.6 with discard=True"


def test_the_catalogue_variants_are_registered_implementations() -> None:
    for name in (variants.NO_UNIQUE_KEYS, variants.NO_TRAILING_READ, variants.FETCH_ONLY):
        assert resolve(name).name == name
    keys = resolve(variants.NO_UNIQUE_KEYS)
    assert isinstance(keys, ReferenceImplementation) and not keys.era.unique_keys


def test_tar_end_is_where_the_tar_reader_stops() -> None:
    layer = build_layer({"a/b.txt": b"x" * 700})
    end = variants.tar_end(layer.tar)
    # Python's tarfile pads to its 10240-byte record; Go's reader stops after the two zero
    # blocks of the end-of-archive marker, which sit right after the last entry's data.
    assert len(layer.tar) == 10240 and end < len(layer.tar) and end % 512 == 0
    assert layer.tar[end - 1024 : end] == bytes(1024) and layer.tar[end:] == bytes(10240 - end)
    assert variants.tar_end(layer.tar[:end]) == end
    assert variants.tar_end(b"") == 0


def test_the_v13_beta_applier_computes_a_wrong_diff_id_for_a_padded_tar() -> None:
    image = build_image("registry.test/p:1", [build_layer({"f": b"1"})])
    results = {}
    for name in ("seed", variants.NO_TRAILING_READ):
        world = world_for(name)
        world.push(image)
        (result,), _ = pull_images(world, name, [image.name])
        results[name] = result
    assert results["seed"].ok
    bad = results[variants.NO_TRAILING_READ]
    diff_id = image.single.diff_ids[0]
    assert bad.message == f'wrong diff id calculated on extraction "{diff_id}"'
    assert bad.committed == ()


@pytest.mark.parametrize("item", CATALOGUE, ids=lambda e: e.name)
def test_found_from_scratch_shrunk_and_replayable(item: catalogue.CatalogueEntry) -> None:
    result = explore(search_for(item), seed=0, budget=Budget(examples=item.budget))
    assert result.found, f"{item.name}: not found in {result.runs} runs"
    finding = result.findings[0].finding
    assert finding.property.name == item.properties[0]
    assert finding.implementation == item.with_race.implementation
    pulls = [s for s in finding.program if s.action == "pull"]
    assert 1 <= len(pulls) <= sum(1 for slot in item.space.slots if "pull" in slot)
    assert len([s for s in finding.program if s.action not in ("configure", "push")]) <= len(
        item.space.slots
    )
    for option, value in item.with_race.pull_options.items():
        assert all(p.args[option] == value for p in pulls)
    outcome = replay(finding)
    assert outcome.reproduced and outcome.trace_matches, outcome.divergence


@pytest.mark.parametrize("item", CATALOGUE, ids=lambda e: e.name)
def test_not_found_without_the_race(item: catalogue.CatalogueEntry) -> None:
    result = explore(search_for(item, fixed=True), seed=0, budget=Budget(examples=item.budget))
    assert not result.found, result.findings[0].finding.explanation if result.found else ""
    assert result.stopped == "examples" and result.runs >= item.budget


def test_search_for_can_put_another_implementation_in_the_same_configuration() -> None:
    item = entry("limiter-ineffective")
    search = search_for(item, implementation="v2.0")
    assert search.implementation == "v2.0"
    assert dict(search.pull_options) == {"max_concurrent_downloads": 1}
    assert search.properties == item.properties
    assert Pull.__dataclass_fields__["max_concurrent_downloads"]


def test_the_catalogue_benchmark_stays_runnable() -> None:
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_catalogue.py"
    spec = importlib.util.spec_from_file_location("bench_catalogue", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    setattr(module, "CATALOGUE", (entry("limiter-ineffective"),))  # noqa: B010
    report: str = module.run(True)
    (row,) = [line for line in report.splitlines() if line.startswith("| limiter")]
    cells = [c.strip() for c in row.split("|")[1:-1]]
    assert cells[:3] == ["limiter-ineffective", "100", "2"] and cells[6] == "yes"
    assert cells[7].startswith("v1.6 with max_concurrent_downloads=1: nothing in ")
