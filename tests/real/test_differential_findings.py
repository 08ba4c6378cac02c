"""The differential runner's pure part: classification, findings, graphs (no daemon).

The "containerd" run here is a second reference run that a test changes (an outcome, a
record), so every path of :func:`~unpacksim.real.differential.differential` runs without root.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from unpacksim.real import prereqs
from unpacksim.real.catalogue import scenario
from unpacksim.real.differential import canonical_graph, differential, main, summary_table
from unpacksim.real.divergences import KnownDivergence, classify
from unpacksim.real.outcome import Outcome, ScenarioRun
from unpacksim.real.reference_side import REFERENCE_HOST, reference_run
from unpacksim.real.registry import Effect
from unpacksim.real.scenarios import Fault, Pull, PullStep, Scenario, build_images
from unpacksim.reports.records import Finding


def _fake_real(s: Scenario) -> ScenarioRun:
    return replace(reference_run(s).run, side="containerd (a changed reference run)")


def _with_outcome(run: ScenarioRun, step: int, outcome: Outcome) -> ScenarioRun:
    steps = list(run.steps)
    steps[step] = replace(steps[step], outcomes=(outcome, *steps[step].outcomes[1:]))
    return replace(run, steps=tuple(steps))


def test_two_reference_runs_agree_and_make_no_finding() -> None:
    s = scenario("discard-then-second-pull")
    result = differential(s, _fake_real(s), reference_run(s))
    assert (result.verdict, result.problems(), result.findings()) == ("agrees", [], [])
    assert result.explained


def test_an_undocumented_outcome_divergence_fails_and_becomes_a_finding() -> None:
    s = scenario("pull-then-gc")
    real = _with_outcome(_fake_real(s), 0, Outcome(False, "other", "boom"))
    result = differential(s, real, reference_run(s))
    assert result.verdict == "undocumented divergence" and not result.explained
    assert result.problems() == [
        "undocumented: step 0 pull 0: containerd other: boom | reference ok"
    ]
    (finding,) = result.findings()
    assert finding.property.name == "agrees-with-containerd-outcome"
    assert "not documented" in finding.explanation and "boom" in finding.explanation
    assert finding.implementation == "v1.6" and finding.trace  # the reference's history
    assert [a.name for a in finding.actors] == ["client", "pull-0.0"]
    assert Finding.from_json(finding.to_json()) == finding


def test_a_documented_divergence_is_explained_and_a_stale_entry_fails() -> None:
    s = scenario("pull-then-gc")
    real = _with_outcome(_fake_real(s), 0, Outcome(False, "other", "boom"))
    entry = KnownDivergence(s.name, "step 0 pull 0", "other: boom", "ok", "short-read-check")
    stale = KnownDivergence(s.name, "step 1 gc 0", "ok", "other: x", "short-read-check")
    result = differential(s, real, reference_run(s), known=[entry])
    assert result.verdict == "documented divergence" and result.problems() == []
    (finding,) = result.findings()
    assert "Documented (short-read-check)" in finding.explanation
    result = differential(s, real, reference_run(s), known=[entry, stale])
    assert result.verdict == "stale documentation"
    assert result.problems() == ["documented but did not occur: step 1 gc 0 (short-read-check)"]


def test_a_state_divergence_names_its_node_and_both_graphs_show_it() -> None:
    s = scenario("pull-then-gc")
    real = _fake_real(s)
    ns = real.state.namespace("default")
    config = build_images(s)["app:v1"].single.config.digest
    del ns.content[config]
    result = differential(s, real, reference_run(s))
    where = [d.where for d in result.undocumented]
    assert where == [f"default content {config}"]
    (finding,) = result.findings()
    node = f"content:default:{config}"
    assert finding.path == (node,)
    assert finding.property.name == "agrees-with-containerd-state"
    assert finding.graph_before.node(node) is not None  # the reference has it
    after = finding.graph_after.node(node)
    assert after is not None and not after.present  # containerd's manifest points at nothing


def test_a_broken_invariant_on_either_side_is_a_problem_and_a_finding() -> None:
    s = scenario("pull-then-gc")
    real = _fake_real(s)
    snapshots = real.state.namespace("default").snapshotter("native")
    names = list(snapshots)
    snapshots[names[0]].parent = names[-1]  # a parent cycle
    result = differential(s, real, reference_run(s))
    assert result.verdict == "undocumented divergence"  # the parent differs too
    assert result.reference_violations == ()
    invariants = {v.invariant for v in result.real_violations}
    assert "snapshot-parents-forest" in invariants
    assert any(p.startswith("containerd state: snapshot-parents-forest") for p in result.problems())
    findings = [f for f in result.findings() if f.property.name == "snapshot-parents-forest"]
    (finding,) = findings
    assert "containerd final state breaks" in finding.explanation
    assert finding.path and all(finding.graph_after.node(n) for n in finding.path)


def test_classification_pairs_each_entry_once() -> None:
    s = scenario("layer-error-500")
    first = differential(s, _fake_real(s), reference_run(s))
    assert first.comparison.divergences == ()
    real = _with_outcome(_fake_real(s), 0, Outcome(False, "other", "x"))
    divergences = differential(s, real, reference_run(s)).comparison.divergences
    entry = KnownDivergence(s.name, "step 0 pull 0", "other: x", "nope", "eager-fetch-open")
    classes = classify(s, divergences, [entry])
    assert classes.undocumented == divergences and classes.stale == (entry,)


def test_canonical_graphs_hide_the_host_extraction_keys_and_random_leases() -> None:
    base = scenario("layer-error-500")
    s = Scenario("leak", "", base.layers, base.images, base.steps[:1])
    run = reference_run(s).run
    graph, ids = canonical_graph(run.state, registry_host=REFERENCE_HOST)
    names = [n.id for n in graph.nodes]
    assert any(n.startswith("snapshot:default:native/extract-<unique> sha256:") for n in names)
    assert not any(REFERENCE_HOST in n for n in names)
    assert set(ids.values()) == set(names)


def test_canonical_ids_that_collide_are_numbered() -> None:
    # Two failed pulls of one image each leak an extraction snapshot of the same chain ID
    # (1.6 does not abort on fetch errors): both become "extract-<unique> <chain>".
    base = scenario("layer-error-500")
    fault = Fault(Effect.ERROR, "app:v1", "layer", 0, hits=())
    pulls = PullStep((Pull("app:v1"), Pull("app:v1")), (fault,), ("other", "other"))
    run = reference_run(Scenario("t", "", base.layers, base.images, (pulls,))).run
    graph, ids = canonical_graph(run.state, registry_host=REFERENCE_HOST)
    extracts = [n.id for n in graph.nodes if "extract-<unique>" in n.id]
    assert len(extracts) == 2 and extracts[1] == extracts[0] + "#2"
    assert sorted(ids.values()) == sorted(n.id for n in graph.nodes)


def test_the_summary_table_lists_verdicts() -> None:
    s = scenario("pull-one")
    table = summary_table([differential(s, _fake_real(s), reference_run(s))])
    assert table.splitlines()[-1] == "| pull-one | agrees | - |"


def test_main_says_what_is_missing_when_the_tier_cannot_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setattr(prereqs, "skip_reason", lambda: "the real-containerd tier needs: root")
    assert main(["pull-one", "--findings", str(tmp_path)]) == 2
    assert "needs: root" in capsys.readouterr().err
