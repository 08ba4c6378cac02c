"""A hand-built finding: the Stat-then-GC race (#3787) with a fault and hostile strings.

The strings carry what every renderer must escape: HTML and XML metacharacters, Markdown
syntax, DOT quotes and backslashes, a terminal escape sequence, a bidi override, a newline.
"""

from __future__ import annotations

import pytest

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


def _events() -> list[TraceEvent]:
    rows: list[tuple[float, str, str, str, dict[str, object], str | None, bool, str]] = [
        (0.0, "pull-2", "invoke", "snapshots.stat", {"key": C1}, None, False, ""),
        (0.001, "pull-2", "complete", "snapshots.stat", {}, "ok", False, ""),
        (0.001, "user", "invoke", "images.delete", {"name": "app:v1", "sync": True}, None, False, ""),
        (0.001, "gc", "invoke", "gc.mark", {}, None, False, ""),
        (0.002, "user", "complete", "images.delete", {}, "ok", False, ""),
        (0.004, "pull-2", "invoke", "content.writer.commit", {"ref": "layer-" + LAYER}, None, False, ""),
        (0.005, "gc", "complete", "gc.mark", {}, "ok", False, ""),
        (0.005, "gc", "invoke", "gc.sweep", {}, None, False, ""),
        (0.006, "pull-2", "complete", "content.writer.commit", {}, "Unavailable", True,
         'ref "layer-' + LAYER + '" locked: unavailable'),
        (0.007, "gc", "complete", "gc.sweep", {}, "ok", False, ""),
        (0.01, "pull-2", "invoke", "snapshots.prepare", {"key": "extract-1-aBc " + C2, "parent": C1},
         None, False, ""),
        (0.011, "pull-2", "complete", "snapshots.prepare", {}, "NotFound", False,
         f"parent snapshot {C1} does not exist: not found"),
        (0.011, "pull-3", "invoke", "snapshots.stat", {"key": HOSTILE}, None, False, ""),
    ]  # fmt: skip
    return [
        TraceEvent(seq=i, time=t, process=p, kind=k, op=op, args=a, outcome=o, injected=inj, message=m)  # type: ignore[arg-type]
        for i, (t, p, k, op, a, o, inj, m) in enumerate(rows)
    ]


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
        trace=tuple(_events()),
        graph_before=before,
        graph_after=after,
        path=("image/default/app:v1", f"content/default/{MANIFEST}", f"content/default/{CONFIG}",
              f"snapshot/default/native/{C1}"),  # fmt: skip
        implementation="seed",
        replay=Replay(
            command="unpacksim replay findings/f-0123456789ab.json", seed=7, hypothesis_blob="AXic"
        ),
        versions=Versions(
            unpacksim="0.1.0", python="3.11.2", simpy="4.1.2", hypothesis="6.155.2", networkx="3.6.1"
        ),
    )


@pytest.fixture
def finding() -> Finding:
    return make_finding()
