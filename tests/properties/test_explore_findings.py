"""Turning a run into a finding: traces, graphs, fault plans (and back), the story."""

from __future__ import annotations

import re

import pytest

from unpacksim.model.errdefs import NotFound
from unpacksim.properties.catalogue import entry
from unpacksim.properties.findings import (
    AT_REST_GRAPHS,
    FindingsError,
    build_finding,
    fault_plan_of,
    fault_rules,
    graph_data,
    pick,
    short,
    trace_events,
)
from unpacksim.properties.program import DeleteImage, ImageSpec, Program, Pull, run_program
from unpacksim.reports.records import FaultRule, pair_calls
from unpacksim.sim.choose import ReplayChooser
from unpacksim.sim.faults import FaultPlan, Rule
from unpacksim.sim.trace import Trace

APP = ImageSpec("registry.test/app:1", ("base", "app"))
TWO_PULLS = Program(
    images=(APP,),
    actions=(
        Pull(at=0.0, actor="pull-1", image=APP.name),
        Pull(at=0.0, actor="pull-2", image=APP.name),
    ),
)


def test_short_cuts_every_digest() -> None:
    digest = "sha256:" + "ab" * 32
    assert short(f"'extract-1 {digest}' and {digest}.") == (
        "'extract-1 sha256:abababababab' and sha256:abababababab."
    )
    assert short("sha256:notadigest") == "sha256:notadigest"


def test_trace_events_keep_every_event_and_a_limit_closes_open_calls() -> None:
    trace = Trace()
    first = trace.invoke("a.op", {"x": 1})
    trace.invoke("b.op", {})
    trace.complete(first, "NotFound", error="x: not found")
    events = trace_events(trace)
    assert [(e.kind, e.op, e.outcome, e.message) for e in events] == [
        ("invoke", "a.op", None, ""),
        ("invoke", "b.op", None, ""),
        ("complete", "a.op", "NotFound", "x: not found"),
    ]
    cut = trace_events(trace, limit=2)
    assert [(e.kind, e.op, e.outcome) for e in cut] == [
        ("invoke", "a.op", None),
        ("invoke", "b.op", None),
        ("complete", "a.op", "indeterminate"),
        ("complete", "b.op", "indeterminate"),
    ]
    assert len(pair_calls(cut)) == 2


def test_graph_data_shows_metadata_objects_and_only_the_backend_nodes_asked_for() -> None:
    result = run_program(TWO_PULLS, "seed", properties=["chain-applied-once"])
    graph = result.final_graph
    assert graph is not None
    data = graph_data(graph)
    kinds = {n.kind for n in data.nodes}
    assert kinds <= {"image", "content", "snapshot", "lease", "ingest", "container"}
    assert "image" in kinds and "snapshot" in kinds
    assert [n.id for n in data.nodes] == sorted(n.id for n in data.nodes)
    backend = next(n for n, k in graph.nodes(data="kind") if k == "backend_snapshot")
    assert data.node(backend) is None and graph_data(graph, keep=[backend]).node(backend)
    assert graph_data(None).nodes == ()


def test_fault_rules_round_trip_to_the_same_plan() -> None:
    plan = FaultPlan(
        rules=[Rule("fetch.error", key="sha256:x", hit=2, error=NotFound)],
        explore=["gc.run"],
        fire_one_in=3,
    )
    rules = fault_rules(plan, None)
    assert [(r.site, r.effect) for r in rules] == [
        ("fetch.error", "NotFound"),
        ("gc.run", "effect"),
    ]
    again = fault_plan_of(rules)
    assert again.rules == plan.rules and again.explore == plan.explore
    assert (again.fire_one_in, again.max_fires) == (3, None)


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (FaultRule("no.such.site", "effect"), "fault_plan[0]: unknown fault site 'no.such.site'"),
        (FaultRule("fetch.error", "Weird"), "fault_plan[0].effect: 'Weird' is not an errdefs"),
        (FaultRule("gc.run", "effect", params={"plan": "guess"}), "'guess' is not 'explore'"),
        (
            FaultRule("gc.run", "effect", params={"plan": "explore", "fire_one_in": 1}),
            "bad fire_one_in 1",
        ),
    ],
)
def test_fault_plan_of_names_what_is_wrong(rule: FaultRule, message: str) -> None:
    with pytest.raises(FindingsError, match=re.escape(message)):
        fault_plan_of([rule])


def test_a_finding_tells_the_story_and_replays_from_its_own_data() -> None:
    result = run_program(TWO_PULLS, "seed", properties=["chain-applied-once"])
    finding = build_finding(result, ["chain-applied-once"], seed=4, entry=entry("duplicate-unpack"))
    assert finding.property.name == "chain-applied-once"
    assert [a.name for a in finding.actors] == ["daemon", "registry", "pull-1", "pull-2"]
    assert [s.action for s in finding.program] == ["configure", "push", "pull", "pull"]
    assert finding.explanation.count("\n\n") == 4
    assert "The program: t=0.000 pull-1: pull image=registry.test/app:1;" in finding.explanation
    assert entry("duplicate-unpack").mechanism + "\n\n" in finding.explanation
    # Checked at rest: the story says which states the two graphs are.
    assert finding.explanation.endswith(AT_REST_GRAPHS)
    assert finding.replay.seed == 4 and finding.replay.command.endswith(f"{finding.id}.json")
    assert finding.graph_before.nodes and finding.graph_after.nodes
    assert len(finding.trace) == len(result.trace.events)
    again = run_program(
        TWO_PULLS,
        "seed",
        chooser=ReplayChooser(finding.schedule),
        properties=["chain-applied-once"],
    )
    assert again.trace_sha256 == result.trace_sha256


def test_a_finding_seen_at_a_step_does_not_describe_its_graphs_as_at_rest() -> None:
    base = ImageSpec("registry.test/base:1", ("base",))
    program = Program(
        images=(base, APP),
        actions=(
            Pull(at=0.0, actor="p1", image=base.name),
            DeleteImage(at=0.05, actor="user", image=base.name),
            Pull(at=0.06, actor="p2", image=APP.name),
        ),
    )
    result = run_program(program, "seed", properties=["parent-protected-at-prepare"])
    finding = build_finding(result, ["parent-protected-at-prepare"])
    # The monitor's graphs are the state when the Prepare began and when it was seen.
    assert AT_REST_GRAPHS not in finding.explanation
    assert finding.graph_before.nodes


def test_pick_prefers_the_order_given_then_the_earliest() -> None:
    result = run_program(TWO_PULLS, "seed")
    names = [f.property for f in result.found]
    assert "chain-applied-once" in names
    chosen = pick(result.found, ["downloads-within-limit", "chain-applied-once"])
    assert chosen.property == "chain-applied-once"
    with pytest.raises(FindingsError, match="broke no property"):
        pick([], ["chain-applied-once"])
