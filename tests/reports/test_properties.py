"""Properties over generated findings: the JSON round trip is exact, and every renderer stays
safe (no control or bidi character gets through, HTML stays balanced) whatever the strings."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from unpacksim.reports.formats import FORMATS, render
from unpacksim.reports.records import (
    Actor,
    FaultRule,
    Finding,
    GraphData,
    GraphEdge,
    GraphNode,
    PropertyRef,
    Replay,
    Step,
    TraceEvent,
    Versions,
    dumps,
)

UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
VERSIONS = Versions(unpacksim="0.1.0", python="3.11.2", simpy="4", hypothesis="6", networkx="3")

text = st.text(max_size=12)
name = st.text(min_size=1, max_size=8)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)
args = st.dictionaries(text, json_values, max_size=3)


@st.composite
def traces(draw: st.DrawFn, processes: list[str]) -> tuple[TraceEvent, ...]:
    """Calls of the given processes, completed (or not) in a drawn order, with faults."""
    events: list[TraceEvent] = []
    open_calls: dict[int, str] = {}  # call id -> op
    t, calls = 0.0, 0

    def add(**fields: Any) -> None:
        events.append(
            TraceEvent(seq=len(events), time=t, process=draw(st.sampled_from(processes)), **fields)
        )

    for _ in range(draw(st.integers(0, 8))):
        t += draw(st.sampled_from([0.0, 0.001, 0.5]))
        step = draw(st.sampled_from(["invoke", "complete", "fault"]))
        if step == "complete" and open_calls:
            call = draw(st.sampled_from(sorted(open_calls)))
            outcome = draw(st.sampled_from(["ok", "NotFound", "AlreadyExists", "indeterminate"]))
            add(
                kind="complete",
                call=call,
                op=open_calls.pop(call),
                outcome=outcome,
                injected=outcome != "ok" and draw(st.booleans()),
                message=draw(text),
            )
        elif step == "fault":
            call = draw(st.sampled_from([0, *range(1, calls + 1)]))
            add(
                kind="fault",
                call=call,
                op=draw(name),
                args=draw(args),
                outcome=draw(name),
                injected=True,
            )
        else:
            calls += 1
            open_calls[calls] = draw(name)
            add(kind="invoke", call=calls, op=open_calls[calls], args=draw(args))
    return tuple(events)


@st.composite
def graphs(draw: st.DrawFn, ids: list[str]) -> GraphData:
    chosen = draw(st.lists(st.sampled_from(ids), unique=True))
    nodes = tuple(
        GraphNode(
            i, draw(st.sampled_from(["content", "snapshot", "x"])), draw(text), draw(st.booleans())
        )
        for i in chosen
    )
    edges = (
        draw(
            st.lists(st.tuples(st.sampled_from(chosen), st.sampled_from(chosen), text), max_size=6)
        )
        if chosen
        else []
    )
    return GraphData(nodes=nodes, edges=tuple(GraphEdge(s, t, "label", k) for s, t, k in edges))


@st.composite
def findings(draw: st.DrawFn) -> Finding:
    actors = draw(st.lists(name, min_size=1, max_size=3, unique=True))
    ids = draw(st.lists(name, min_size=1, max_size=6, unique=True))
    before, after = draw(graphs(ids)), draw(graphs(ids))
    known = [n.id for n in before.nodes + after.nodes]
    path = draw(st.lists(st.sampled_from(known), max_size=4)) if known else []
    return Finding(
        id=draw(name),
        property=PropertyRef(draw(name), draw(text)),
        explanation=draw(st.text(max_size=40)),
        actors=tuple(Actor(a, draw(text)) for a in actors),
        program=tuple(
            Step(draw(st.sampled_from(actors)), draw(name), draw(args))
            for _ in range(draw(st.integers(0, 3)))
        ),
        schedule=draw(text),
        fault_plan=tuple(
            FaultRule(draw(name), draw(name), params=draw(args))
            for _ in range(draw(st.integers(0, 2)))
        ),
        trace=draw(traces(actors)),
        graph_before=before,
        graph_after=after,
        path=tuple(path),
        implementation=draw(name),
        replay=Replay(
            command="unpacksim replay " + draw(name), seed=draw(st.none() | st.integers(0, 9))
        ),
        versions=VERSIONS,
    )


class _Balance(HTMLParser):
    VOID = ("meta", "link")

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.ok = True

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.ok &= tag != "script"
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        self.ok &= bool(self.stack) and self.stack.pop() == tag


@given(findings())
def test_round_trip_is_exact_and_renderers_stay_safe(finding: Finding) -> None:
    assert Finding.from_json(json.loads(dumps(finding))) == finding
    for fmt in FORMATS:
        out = render(finding, fmt)
        assert not UNSAFE.search(out), fmt
        out.encode("utf-8")
    page = _Balance()
    page.feed(render(finding, "html"))
    page.close()
    assert page.ok and page.stack == []
