"""A hand-built finding: the Stat-then-GC race (#3787) with a fault and hostile strings.

The strings carry what every renderer must escape: HTML and XML metacharacters, Markdown
syntax, DOT quotes and backslashes, a terminal escape sequence, a bidi override, a newline.
"""

from __future__ import annotations

from typing import Any

import pytest

from unpacksim.reports.jsonform import JSONValue
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
)

HOSTILE = '<script>alert("x")</script> & | *bold* _u_ `tick` [l](u) \\ \x1b[31m \u202eevil'

C1 = "sha256:" + "1" * 64
C2 = "sha256:" + "2" * 64
MANIFEST = "sha256:" + "a" * 64
CONFIG = "sha256:" + "c" * 64
LAYER = "sha256:" + "d" * 64


class _Trace:
    """Builds a trace as the simulator records one: call ids pair invokes with completes."""

    def __init__(self) -> None:
        self.events: list[TraceEvent] = []
        self.open: dict[str, tuple[int, str]] = {}  # process -> (call id, op)
        self.calls = 0

    def _add(self, **fields: Any) -> None:
        self.events.append(TraceEvent(seq=len(self.events), **fields))

    def call(self, t: float, process: str, op: str, **args: JSONValue) -> None:
        self.calls += 1
        self.open[process] = (self.calls, op)
        self._add(time=t, process=process, kind="invoke", call=self.calls, op=op, args=args)

    def done(
        self,
        t: float,
        process: str,
        outcome: str = "ok",
        message: str = "",
        *,
        injected: bool = False,
    ) -> None:
        call, op = self.open.pop(process)
        self._add(
            time=t,
            process=process,
            kind="complete",
            call=call,
            op=op,
            outcome=outcome,
            injected=injected,
            message=message,
        )

    def fault(self, t: float, process: str, site: str, outcome: str, key: str) -> None:
        call = self.open[process][0] if process in self.open else 0
        self._add(
            time=t,
            process=process,
            kind="fault",
            call=call,
            op=site,
            args={"key": key},
            outcome=outcome,
            injected=True,
        )


def _events() -> tuple[TraceEvent, ...]:
    trace = _Trace()
    trace.call(0.0, "pull-2", "snapshots.stat", key=C1)
    trace.done(0.001, "pull-2")
    trace.call(0.001, "user", "images.delete", name="app:v1", sync=True)
    trace.call(0.001, "gc", "gc.mark")
    trace.done(0.002, "user")
    trace.call(0.004, "pull-2", "content.writer.commit", ref="layer-" + LAYER)
    trace.done(0.005, "gc")
    trace.call(0.005, "gc", "gc.sweep")
    trace.fault(0.006, "pull-2", "content.ref_lock", "Unavailable", "layer-" + LAYER)
    locked = f'ref "layer-{LAYER}" locked: unavailable'
    trace.done(0.006, "pull-2", "Unavailable", locked, injected=True)
    trace.done(0.007, "gc")
    trace.call(0.01, "pull-2", "snapshots.prepare", key="extract-1-aBc " + C2, parent=C1)
    trace.done(0.011, "pull-2", "NotFound", f"parent snapshot {C1} does not exist: not found")
    trace.call(0.011, "pull-3", "snapshots.stat", key=HOSTILE)  # never completes
    return tuple(trace.events)


def _graphs() -> tuple[GraphData, GraphData]:
    image = GraphNode("image/default/app:v1", "image", "app:v1")
    manifest = GraphNode(f"content/default/{MANIFEST}", "content", MANIFEST)
    config = GraphNode(f"content/default/{CONFIG}", "content", CONFIG)
    snap1 = GraphNode(f"snapshot/default/native/{C1}", "snapshot", C1)
    snap2 = GraphNode(f"snapshot/default/native/{C2}", "snapshot", C2, present=False)
    lease = GraphNode("lease/default/pull-2", "lease", HOSTILE)
    layer = GraphNode(f"content/default/{LAYER}", "content", LAYER)
    edges = (
        GraphEdge(image.id, manifest.id, "target"),
        GraphEdge(manifest.id, config.id, "label", "containerd.io/gc.ref.content.0"),
        GraphEdge(manifest.id, layer.id, "label", "containerd.io/gc.ref.content.1"),
        GraphEdge(config.id, snap1.id, "label", "containerd.io/gc.ref.snapshot.native"),
        GraphEdge(lease.id, layer.id, "lease", "content"),
    )
    before = GraphData(nodes=(image, manifest, config, snap1, lease, layer), edges=edges)
    after = GraphData(
        nodes=(lease, layer, snap2, GraphNode(snap1.id, "snapshot", C1, present=False)),
        edges=(GraphEdge(lease.id, layer.id, "lease", "content"),),
    )
    return before, after


def make_finding() -> Finding:
    before, after = _graphs()
    return Finding(
        id="f-0123456789ab",
        property=PropertyRef(
            "parent_reachable_at_prepare",
            "At every Prepare(key, parent) the parent snapshot is reachable from a GC root.",
        ),
        explanation=(
            "pull-2 found chain " + C1 + " committed and skipped it without leasing it.\n\n"
            "user deleted image app:v1; gc then removed the snapshot, so pull-2's Prepare of the "
            "next layer failed: its parent was gone. " + HOSTILE
        ),
        actors=(
            Actor("pull-2", "Pull of app:v2 with unpack (shares layer 1 with app:v1)"),
            Actor("user", "Deletes image app:v1 with SynchronousDelete"),
            Actor("gc", "The metadata garbage collector"),
            Actor("pull-3", HOSTILE),
        ),
        program=(
            Step("pull-2", "pull", {"image": "app:v2", "unpack": True}),
            Step("user", "delete_image", {"name": "app:v1", "sync": True}),
            Step("pull-3", "pull", {"image": HOSTILE}),
        ),
        schedule="0.1.0.2",
        fault_plan=(
            FaultRule("content.writer.commit", "Unavailable", hits=(1,), reached=1, fired=(1,)),
            FaultRule("snapshots.commit", "AlreadyExists", params={"note": HOSTILE}),
        ),
        trace=_events(),
        graph_before=before,
        graph_after=after,
        path=(
            "image/default/app:v1",
            f"content/default/{MANIFEST}",
            f"content/default/{CONFIG}",
            f"snapshot/default/native/{C1}",
        ),
        implementation="seed",
        replay=Replay(
            command="unpacksim replay findings/f-0123456789ab.json", seed=7, hypothesis_blob="AXic"
        ),
        versions=Versions(
            unpacksim="0.1.0",
            python="3.11.2",
            simpy="4.1.2",
            hypothesis="6.155.2",
            networkx="3.6.1",
        ),
    )


@pytest.fixture
def finding() -> Finding:
    return make_finding()
