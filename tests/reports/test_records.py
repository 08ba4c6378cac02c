"""Finding records: the JSON round trip, schema errors that name the field, misuse errors."""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

import pytest

from unpacksim import __version__
from unpacksim.reports.records import (
    FINDING_SCHEMA,
    Actor,
    FaultRule,
    Finding,
    GraphData,
    GraphEdge,
    GraphNode,
    RecordError,
    Step,
    TraceEvent,
    TraceKind,
    Versions,
    dumps,
    pair_calls,
)
from unpacksim.reports.summary import FindingRef, Summary


def _data(finding: Finding) -> dict[str, Any]:
    return copy.deepcopy(json.loads(dumps(finding)))


def _error(data: object) -> RecordError:
    with pytest.raises(RecordError) as info:
        Finding.from_json(data)
    return info.value


# --- round trip --------------------------------------------------------------------------


def test_json_round_trip_gives_an_equal_finding(finding: Finding) -> None:
    text = dumps(finding)
    again = Finding.from_json(json.loads(text))
    assert again == finding
    assert dumps(again) == text


def test_json_form_is_versioned_and_keeps_field_order(finding: Finding) -> None:
    data = finding.to_json()
    assert data["schema"] == FINDING_SCHEMA == "unpacksim.finding/1"
    assert list(data) == [f.name for f in dataclasses.fields(Finding)]
    event = data["trace"]
    assert isinstance(event, list) and isinstance(event[0], dict)
    assert list(event[0]) == [f.name for f in dataclasses.fields(TraceEvent)]


def test_canonical_text_is_stable_and_ends_with_newline(finding: Finding) -> None:
    assert dumps(finding) == dumps(Finding.from_json(finding.to_json()))
    assert dumps(finding).endswith("}\n")
    assert "\\u202e" not in dumps(finding)  # ensure_ascii off: text stays readable
    assert "\u202e" in dumps(finding)


def test_tuples_in_arguments_become_lists_so_the_round_trip_is_exact() -> None:
    step = Step("a", "pull", {"layers": (1, 2), "nested": {"t": ("x",)}})  # type: ignore[dict-item]
    assert step.args == {"layers": [1, 2], "nested": {"t": ["x"]}}


# --- schema errors name the field ----------------------------------------------------------


def test_unknown_top_level_field_is_named(finding: Finding) -> None:
    data = _data(finding)
    data["colour"] = "red"
    err = _error(data)
    assert err.field == "colour"
    assert "unknown field" in str(err)


def test_missing_field_is_named(finding: Finding) -> None:
    data = _data(finding)
    del data["replay"]["command"]
    assert _error(data).field == "replay.command"
    assert "missing" in str(_error(data))


def test_nested_unknown_field_is_named_with_its_index(finding: Finding) -> None:
    data = _data(finding)
    data["trace"][3]["colour"] = 1
    assert _error(data).field == "trace[3].colour"


def test_wrong_type_is_named(finding: Finding) -> None:
    data = _data(finding)
    data["trace"][2]["seq"] = "2"
    err = _error(data)
    assert err.field == "trace[2].seq"
    assert "expected an integer, got a string" in str(err)


def test_a_boolean_is_not_an_integer(finding: Finding) -> None:
    data = _data(finding)
    data["fault_plan"][0]["reached"] = True
    assert _error(data).field == "fault_plan[0].reached"


def test_bad_value_inside_a_record_is_named_with_its_path(finding: Finding) -> None:
    data = _data(finding)
    data["trace"][0]["kind"] = "start"
    err = _error(data)
    assert err.field == "trace[0].kind"
    assert "must be 'invoke', 'complete' or 'fault', got 'start'" in str(err)


def test_graph_edge_to_unknown_node_is_named(finding: Finding) -> None:
    data = _data(finding)
    data["graph_after"]["edges"][0]["target"] = "nowhere"
    err = _error(data)
    assert err.field == "graph_after.edges[0].target"
    assert "'nowhere'" in str(err)


def test_other_schema_version_says_which_versions(finding: Finding) -> None:
    data = _data(finding)
    data["schema"] = "unpacksim.finding/2"
    data["new_field"] = 1  # a newer file: the version is reported, not the unknown field
    err = _error(data)
    assert err.field == "schema"
    assert "'unpacksim.finding/2' is not supported" in str(err)
    assert "'unpacksim.finding/1'" in str(err)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ([1, 2], "expected a JSON object, got a list"),
        ({"id": "x"}, "missing: this is not an unpacksim finding"),
        ({"schema": "unpacksim.summary/1"}, "is not an unpacksim finding"),
    ],
)
def test_not_a_finding_is_said_plainly(data: object, words: str) -> None:
    assert words in str(_error(data))


# --- misuse when building records in Python ----------------------------------------------


def test_step_actor_must_be_declared(finding: Finding) -> None:
    with pytest.raises(RecordError, match=r"program\[1\].actor.*'ghost'.*declare it in actors"):
        dataclasses.replace(finding, program=(finding.program[0], Step("ghost", "gc")))


def test_path_node_must_be_in_a_graph(finding: Finding) -> None:
    with pytest.raises(RecordError, match=r"path\[0\].*'nowhere' is in neither graph"):
        dataclasses.replace(finding, path=("nowhere",))


def test_non_json_argument_is_refused_with_advice() -> None:
    with pytest.raises(RecordError, match=r"args.when.*set is not JSON data: convert it"):
        Step("a", "pull", {"when": {1, 2}})  # type: ignore[dict-item]


def test_nan_is_refused() -> None:
    with pytest.raises(RecordError, match="finite"):
        TraceEvent(
            seq=0, time=0.0, process="p", kind="invoke", call=1, op="x", args={"t": float("nan")}
        )


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"kind": "invoke", "outcome": "ok"}, "outcome"),
        ({"kind": "invoke", "injected": True}, "injected"),
        ({"kind": "complete", "outcome": None}, "outcome"),
        ({"kind": "invoke", "seq": -1}, "seq"),
        ({"kind": "invoke", "op": ""}, "op"),
        ({"kind": "invoke", "call": 0}, "call"),
        ({"kind": "fault", "call": -1, "outcome": "AlreadyExists"}, "call"),
        ({"kind": "fault", "call": 0}, "outcome"),
    ],
)
def test_trace_event_checks_its_fields(kwargs: dict[str, Any], field: str) -> None:
    base: dict[str, Any] = {"seq": 0, "time": 0.0, "process": "p", "call": 1, "op": "x.stat"}
    with pytest.raises(RecordError) as info:
        TraceEvent(**(base | kwargs))
    assert info.value.field == field
    assert str(info.value).startswith(f"TraceEvent field {field!r}")


def test_fault_rule_fired_hits_must_have_been_reached() -> None:
    with pytest.raises(RecordError, match="fired"):
        FaultRule("snapshots.prepare", "AlreadyExists", reached=1, fired=(2,))


def test_graph_node_ids_are_unique() -> None:
    node = GraphNode("a", "content", "a")
    with pytest.raises(RecordError, match=r"nodes\[1\].id.*duplicate 'a'"):
        GraphData(nodes=(node, node))


# --- the trace's calls ---------------------------------------------------------------------


def _event(
    seq: int,
    t: float,
    process: str,
    kind: TraceKind,
    call: int,
    op: str,
    outcome: str | None = None,
) -> TraceEvent:
    return TraceEvent(
        seq=seq, time=t, process=process, kind=kind, call=call, op=op, outcome=outcome
    )


def test_pair_calls_pairs_by_call_id_in_invoke_order() -> None:
    trace = (
        _event(0, 0, "a", "invoke", 1, "pull"),
        _event(1, 0, "b", "invoke", 2, "gc"),
        _event(2, 1, "a", "invoke", 3, "snapshots.stat"),
        _event(3, 1, "a", "fault", 3, "snapshots.stat", "NotFound"),
        _event(4, 2, "a", "complete", 3, "snapshots.stat", "NotFound"),
        _event(5, 3, "main", "complete", 2, "gc", "indeterminate"),  # closed at the run's end
    )
    calls = pair_calls(trace)
    assert [(c.call, c.process, c.op, c.start, c.end, c.outcome) for c in calls] == [
        (1, "a", "pull", 0, None, None),
        (2, "b", "gc", 0, 3, "indeterminate"),
        (3, "a", "snapshots.stat", 1, 2, "NotFound"),
    ]
    assert [(c.invoke_seq, c.complete_seq) for c in calls] == [(0, None), (1, 5), (2, 4)]


@pytest.mark.parametrize(
    ("events", "words"),
    [
        (
            [(0, "complete", 1, "gc", "ok")],
            r"trace\[0\].call.*complete of call 1, which is not open",
        ),
        (
            [(0, "invoke", 1, "gc", None), (1, "invoke", 1, "gc", None)],
            r"trace\[1\].call.*call 1 reused",
        ),
        (
            [(0, "invoke", 1, "gc", None), (1, "complete", 1, "x", "ok")],
            r"trace\[1\].op.*invoked 'gc', not 'x'",
        ),
        (
            [
                (0, "invoke", 1, "gc", None),
                (1, "complete", 1, "gc", "ok"),
                (2, "complete", 1, "gc", "ok"),
            ],
            r"trace\[2\].call.*not open",
        ),
        ([(0, "fault", 4, "site", "Unavailable")], r"trace\[0\].call.*call 4 was never invoked"),
    ],
)
def test_malformed_histories_are_refused(
    finding: Finding, events: list[tuple[int, TraceKind, int, str, str | None]], words: str
) -> None:
    trace = tuple(_event(seq, 0, "a", kind, call, op, out) for seq, kind, call, op, out in events)
    with pytest.raises(RecordError, match=words):
        dataclasses.replace(finding, trace=trace)


@pytest.mark.parametrize(("seqs", "times"), [((1, 1), (0, 0)), ((0, 1), (2, 1))])
def test_trace_order_is_checked(
    finding: Finding, seqs: tuple[int, int], times: tuple[float, float]
) -> None:
    trace = (
        _event(seqs[0], times[0], "a", "invoke", 1, "x"),
        _event(seqs[1], times[1], "b", "invoke", 2, "y"),
    )
    with pytest.raises(RecordError, match=r"trace\[1\]"):
        dataclasses.replace(finding, trace=trace)


# --- ids and versions ----------------------------------------------------------------------


def _fields(finding: Finding) -> dict[str, Any]:
    skip = ("schema", "id", "versions")
    return {
        f.name: getattr(finding, f.name) for f in dataclasses.fields(Finding) if f.name not in skip
    }


def test_new_derives_a_stable_id_from_the_story(finding: Finding) -> None:
    one = Finding.new(**_fields(finding))
    two = Finding.new(**_fields(finding))
    assert one.id == two.id
    assert one.id.startswith("f-") and len(one.id) == 14
    other = Finding.new(**(_fields(finding) | {"schedule": "0.0.1"}))
    assert other.id != one.id


def test_new_collects_installed_versions(finding: Finding) -> None:
    made = Finding.new(**_fields(finding))
    assert made.versions == Versions.collect()
    assert made.versions.unpacksim == __version__
    assert made.versions.python.count(".") == 2


def test_the_explicit_id_wins(finding: Finding) -> None:
    assert Finding.new(id="f-mine", **_fields(finding)).id == "f-mine"


def test_actor_and_graph_records_are_frozen() -> None:
    actor = Actor("a", "b")
    with pytest.raises(dataclasses.FrozenInstanceError):
        actor.name = "c"  # type: ignore[misc]
    edge = GraphEdge("a", "b", "label", "containerd.io/gc.ref.content.0")
    assert {edge} == {GraphEdge("a", "b", "label", "containerd.io/gc.ref.content.0")}


# --- summaries -----------------------------------------------------------------------------


def test_summary_round_trip_and_exit_codes() -> None:
    found = Summary(
        command="explore", status="found", runs=40, findings=(FindingRef("f-1", "p", "f-1.json"),)
    )
    assert Summary.from_json(json.loads(dumps(found))) == found
    assert found.exit_code == 1
    assert Summary(command="explore", status="clean", runs=40).exit_code == 0
    assert Summary(command="replay", status="reproduced").exit_code == 1
    assert Summary(command="replay", status="not-reproduced").exit_code == 0


def test_summary_refuses_an_unknown_status() -> None:
    with pytest.raises(RecordError, match="status"):
        Summary(command="explore", status="maybe")  # type: ignore[arg-type]
    data = Summary(command="explore", status="clean").to_json() | {"status": "maybe"}
    with pytest.raises(RecordError, match="status"):
        Summary.from_json(data)
