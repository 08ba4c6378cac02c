"""The reference graph: node ids and attributes, typed edges, dangling targets, roots,
reachability with flat leases, and the deterministic GraphML and DOT exports.
"""

from __future__ import annotations

from collections.abc import Callable

import networkx as nx
import pytest

from unpacksim.model.clock import ManualClock, format_rfc3339
from unpacksim.model.db import (
    DB,
    BlobRecord,
    ContainerRecord,
    ImageRecord,
    IngestRecord,
    Kind,
    LeaseRecord,
    SnapshotRecord,
)
from unpacksim.model.digest import digest_of
from unpacksim.model.oci import Descriptor
from unpacksim.properties import graph as gr

CREF = "containerd.io/gc.ref.content"
SREF = "containerd.io/gc.ref.snapshot."


def d(i: int) -> str:
    return digest_of(f"g-{i}".encode())


class Content:
    def __init__(self, blobs: list[str], ingests: list[str]) -> None:
        self.blobs, self.ingests = blobs, ingests

    def backend_digests(self) -> list[str]:
        return list(self.blobs)

    def backend_delete(self, digest: str) -> None:
        self.blobs.remove(digest)

    def backend_ingests(self) -> list[str]:
        return list(self.ingests)

    def backend_abort(self, backend_ref: str) -> None:
        self.ingests.remove(backend_ref)


class Snapshots:
    def __init__(self, tree: list[tuple[str, str]]) -> None:
        self.tree = tree

    def backend_tree(self) -> list[tuple[str, str]]:
        return list(self.tree)

    def backend_remove(self, backend_key: str) -> None:
        self.tree = [(k, p) for k, p in self.tree if k != backend_key]


def small_db(reverse: bool = False, clock: ManualClock | None = None) -> DB:
    """A namespace with one of everything; ``reverse`` writes the records in reverse order."""
    db = DB(clock or ManualClock(50.0))
    ns = db.namespace("default")
    writes: list[Callable[[], object]] = [
        lambda: ns.content.__setitem__(d(1), BlobRecord(d(1), 3, {CREF + ".0": d(2)})),
        lambda: ns.content.__setitem__(
            d(2), BlobRecord(d(2), 4, {SREF + "native": "top", CREF + ".9": d(9)})
        ),
        lambda: ns.snapshotter("native").__setitem__(
            "base", SnapshotRecord("base", Kind.COMMITTED, "", "default/1/base")
        ),
        lambda: ns.snapshotter("native").__setitem__(
            "top", SnapshotRecord("top", Kind.COMMITTED, "base", "default/2/top")
        ),
        lambda: ns.images.__setitem__(
            "img", ImageRecord("img", Descriptor("application/x", d(1), 3), {"quote": 'a"b'})
        ),
        lambda: ns.containers.__setitem__("c1", ContainerRecord("c1", "native", "work")),
        lambda: ns.ingests.__setitem__("ref", IngestRecord("ref", "b-ref", d(2), 60.0)),
    ]
    for write in reversed(writes) if reverse else writes:
        write()
    lease = LeaseRecord("pull", labels={"containerd.io/gc.expire": format_rfc3339(10.0)})
    lease.resources[("content", d(3))] = None
    ns.leases["pull"] = lease
    db.content_backend = Content([d(1), d(2), d(8)], ["b-ref"])
    db.snapshot_backends["native"] = Snapshots(
        [("default/1/base", ""), ("default/2/top", "default/1/base")]
    )
    return db


def test_nodes_have_stable_ids_and_kinds() -> None:
    graph = gr.build_graph(small_db())
    kinds = dict(graph.nodes(data="kind"))
    assert kinds[gr.content_id("default", d(1))] == "content"
    assert kinds[gr.snapshot_id("default", "native", "top")] == "snapshot"
    assert kinds[gr.lease_id("default", "pull")] == "lease"
    assert kinds[gr.image_id("default", "img")] == "image"
    assert kinds[gr.ingest_id("default", "ref")] == "ingest"
    assert kinds[gr.container_id("default", "c1")] == "container"
    assert kinds[gr.backend_content_id(d(8))] == "backend_content"
    assert kinds[gr.backend_snapshot_id("native", "default/2/top")] == "backend_snapshot"
    assert kinds[gr.backend_ingest_id("b-ref")] == "backend_ingest"
    assert gr.snapshot_id("ns", "overlay", "sn1") == "snapshot:ns:overlay/sn1"


def test_edges_are_typed() -> None:
    graph = gr.build_graph(small_db())
    edges = {(u, v, k): data for u, v, k, data in graph.edges(keys=True, data=True)}
    label = edges[
        (gr.content_id("default", d(1)), gr.content_id("default", d(2)), f"label:{CREF}.0")
    ]
    assert label == {"kind": "label", "key": CREF + ".0"}
    top, base = (
        gr.snapshot_id("default", "native", "top"),
        gr.snapshot_id("default", "native", "base"),
    )
    assert edges[(top, base, "parent")] == {"kind": "parent"}
    image = gr.image_id("default", "img")
    assert edges[(image, gr.content_id("default", d(1)), "target")]["kind"] == "target"
    lease = edges[(gr.lease_id("default", "pull"), gr.content_id("default", d(3)), "lease")]
    assert lease == {"kind": "lease", "flat": False, "resource": "content"}
    ingest = gr.ingest_id("default", "ref")
    assert edges[(ingest, gr.content_id("default", d(2)), "expected")]["kind"] == "expected"
    assert edges[(ingest, gr.backend_ingest_id("b-ref"), "backend")]["kind"] == "backend"
    container = gr.container_id("default", "c1")
    assert edges[(container, gr.snapshot_id("default", "native", "work"), "snapshot")]
    backend_top = gr.backend_snapshot_id("native", "default/2/top")
    backend_base = gr.backend_snapshot_id("native", "default/1/base")
    assert edges[(backend_top, backend_base, "backend_parent")]["kind"] == "backend_parent"


def test_dangling_targets_are_absent_nodes() -> None:
    graph = gr.build_graph(small_db())
    absent = sorted(n for n, present in graph.nodes(data="present") if not present)
    assert absent == sorted([
        gr.content_id("default", d(3)),  # leased, never written
        gr.content_id("default", d(9)),  # a label to content not pulled
        gr.snapshot_id("default", "native", "work"),  # the container's snapshot
    ])  # fmt: skip
    work = graph.nodes[gr.snapshot_id("default", "native", "work")]
    assert work == {"kind": "snapshot", "present": False, "namespace": "default",
                    "key": "native/work", "root": False, "root_reason": ""}  # fmt: skip


def test_roots_follow_containerds_scan() -> None:
    clock = ManualClock(50.0)
    db = small_db(clock=clock)
    graph = gr.build_graph(db)
    assert gr.roots(graph) == [
        gr.container_id("default", "c1"),
        gr.image_id("default", "img"),
        gr.ingest_id("default", "ref"),
    ]  # the pull lease expired at 10s; the ingest expires at 60s
    assert graph.nodes[gr.lease_id("default", "pull")]["expired"] is True
    clock.advance(20.0)
    assert gr.ingest_id("default", "ref") not in gr.roots(gr.build_graph(db))


def test_reachable_records_paths_from_roots() -> None:
    graph = gr.build_graph(small_db())
    pred = gr.reachable(graph)
    base = gr.snapshot_id("default", "native", "base")
    # breadth first: the shortest path, here through the ingest expecting d(2)
    assert gr.path_to(pred, base) == (
        gr.ingest_id("default", "ref"),
        gr.content_id("default", d(2)),
        gr.snapshot_id("default", "native", "top"),
        base,
    )
    assert gr.content_id("default", d(3)) not in pred  # only the expired lease holds it
    assert gr.path_to(pred, gr.content_id("default", d(3))) == ()
    assert not any(k.startswith("backend_") for k in pred)  # backend edges are not GC edges


def test_flat_lease_follows_parents_only() -> None:
    db = DB()
    ns = db.namespace("ns")
    ns.snapshotter("native")["base"] = SnapshotRecord("base", Kind.COMMITTED, "", "k1")
    ns.snapshotter("native")["top"] = SnapshotRecord(
        "top", Kind.COMMITTED, "base", "k2", {CREF: d(1)}
    )
    ns.content[d(1)] = BlobRecord(d(1), 1, {CREF: d(2)})
    ns.content[d(2)] = BlobRecord(d(2), 1)
    lease = LeaseRecord("flat", labels={"containerd.io/gc.flat": "1"})
    lease.resources.update({("snapshots/native", "top"): None, ("content", d(1)): None})
    ns.leases["flat"] = lease
    pred = gr.reachable(gr.build_graph(db))
    assert sorted(pred) == sorted([
        gr.lease_id("ns", "flat"),
        gr.snapshot_id("ns", "native", "top"),
        gr.snapshot_id("ns", "native", "base"),
        gr.content_id("ns", d(1)),
    ])  # fmt: skip
    lease.labels.clear()  # the same lease, not flat: labels are followed
    assert gr.content_id("ns", d(2)) in gr.reachable(gr.build_graph(db))


def test_without_backends_no_backend_nodes() -> None:
    graph = gr.build_graph(small_db(), backends=False)
    assert not [n for n, kind in graph.nodes(data="kind") if kind.startswith("backend_")]
    assert graph.graph == {"now": 50.0, "content_backend": False, "snapshot_backends": ""}


def test_graphml_is_deterministic_and_round_trips() -> None:
    text = gr.to_graphml(gr.build_graph(small_db()))
    assert text == gr.to_graphml(gr.build_graph(small_db(reverse=True)))
    back = nx.parse_graphml(text, force_multigraph=True)
    graph = gr.build_graph(small_db())
    assert sorted(back.nodes) == sorted(graph.nodes)
    assert back.number_of_edges() == graph.number_of_edges()
    node = gr.snapshot_id("default", "native", "top")
    assert back.nodes[node]["parent"] == "base" and back.nodes[node]["present"] is True


def test_dot_is_deterministic_and_escaped() -> None:
    text = gr.to_dot(gr.build_graph(small_db()))
    assert text == gr.to_dot(gr.build_graph(small_db(reverse=True)))
    assert text.startswith('digraph gc {\n  graph [x_content_backend="true"')
    assert text.endswith("}\n")
    top = gr.snapshot_id("default", "native", "top")
    base = gr.snapshot_id("default", "native", "base")
    assert f'"{top}" -> "{base}" [label="parent"' in text
    assert 'style="dashed"' in text  # the absent nodes
    graph = gr.build_graph(small_db())
    graph.nodes[top]["note"] = 'say "hi"\\'
    assert 'x_note="say \\"hi\\"\\\\"' in gr.to_dot(graph)


def test_build_graph_misuse() -> None:
    with pytest.raises(TypeError, match=r"needs a unpacksim.model.db.DB, got dict"):
        gr.build_graph({})  # type: ignore[arg-type]
