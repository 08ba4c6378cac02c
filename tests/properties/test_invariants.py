"""Each invariant fails on a hand-built bad state and holds on a good one; the GC oracle agrees
with the model's mark on thousands of generated states (Hypothesis).
"""

from __future__ import annotations

import json
from typing import Any

import networkx as nx
from hypothesis import given
from hypothesis import strategies as st

from unpacksim.model import gc
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
from unpacksim.model.digest import chain_ids, digest_of
from unpacksim.model.oci import Descriptor
from unpacksim.properties import graph as gr
from unpacksim.properties import invariants as inv

CREF = "containerd.io/gc.ref.content"
SREF = "containerd.io/gc.ref.snapshot."


def d(i: int) -> str:
    return digest_of(f"blob-{i}".encode())


class FakeContent:
    def __init__(self) -> None:
        self.blobs: dict[str, None] = {}
        self.ingests: dict[str, None] = {}

    def backend_digests(self) -> list[str]:
        return list(self.blobs)

    def backend_delete(self, digest: str) -> None:
        self.blobs.pop(digest, None)

    def backend_ingests(self) -> list[str]:
        return list(self.ingests)

    def backend_abort(self, backend_ref: str) -> None:
        self.ingests.pop(backend_ref, None)


class FakeSnapshots:
    def __init__(self) -> None:
        self.tree: dict[str, str] = {}

    def backend_tree(self) -> list[tuple[str, str]]:
        return list(self.tree.items())

    def backend_remove(self, backend_key: str) -> None:
        del self.tree[backend_key]


class World:
    """A DB with fake backends; each helper writes a record and its backend object."""

    def __init__(self) -> None:
        self.clock = ManualClock(100.0)
        self.db = DB(self.clock)
        self.content = FakeContent()
        self.backends = {"overlay": FakeSnapshots(), "native": FakeSnapshots()}
        self.db.content_backend = self.content
        self.db.snapshot_backends.update(self.backends)

    def blob(self, ns: str, digest: str, labels: dict[str, str] | None = None) -> None:
        self.db.namespace(ns).content[digest] = BlobRecord(digest, 1, dict(labels or {}))
        self.content.blobs[digest] = None

    def snapshot(
        self,
        ns: str,
        sn: str,
        name: str,
        parent: str = "",
        kind: Kind = Kind.COMMITTED,
        labels: dict[str, str] | None = None,
    ) -> str:
        records = self.db.namespace(ns).snapshotter(sn)
        key = f"{ns}/{self.db.next_seq()}/{name}"
        parent_record = records.get(parent)
        records[name] = SnapshotRecord(name, kind, parent, key, dict(labels or {}))
        if parent_record is not None:
            parent_record.children[name] = None
        self.backends[sn].tree[key] = parent_record.backend_key if parent_record else ""
        return key

    def image(self, ns: str, name: str, target: str, labels: dict[str, str] | None = None) -> None:
        desc = Descriptor("irrelevant", target, 1)
        self.db.namespace(ns).images[name] = ImageRecord(name, desc, dict(labels or {}))

    def lease(self, ns: str, lid: str, *resources: tuple[str, str]) -> None:
        lease = LeaseRecord(lid)
        lease.resources.update(dict.fromkeys(resources))
        self.db.namespace(ns).leases[lid] = lease

    def graph(self) -> nx.MultiDiGraph:
        return gr.build_graph(self.db)


def pulled_image() -> World:
    """An image as a seed pull leaves it: index-less manifest, config, two layers, a chain."""
    w = World()
    diff_ids = [d(100), d(101)]
    bottom, top = chain_ids(diff_ids)
    w.snapshot("default", "overlay", bottom)
    w.snapshot("default", "overlay", top, bottom)
    w.blob("default", d(2), {SREF + "overlay": top})  # config
    w.blob("default", d(3))
    w.blob("default", d(4))
    w.blob("default", d(1), {CREF + ".0": d(2), CREF + ".1": d(3), CREF + ".2": d(4)})
    w.image("default", "docker.io/library/x:1", d(1))
    return w


# -- gc-oracle --------------------------------------------------------------------------------


def test_gc_oracle_holds_on_a_pulled_image() -> None:
    w = pulled_image()
    w.lease("default", "flat", ("content", d(9)), ("snapshots/overlay", "gone"))
    w.db.namespace("default").leases["flat"].labels["containerd.io/gc.flat"] = "x"
    assert inv.gc_oracle(w.db) == []


def test_gc_oracle_catches_a_mark_that_forgets_a_layer() -> None:
    w = pulled_image()
    good = gc.mark(w.db)
    layer = gc.Node(gc.ResourceType.CONTENT, "default", d(4))
    broken = gc.Marked(good.nodes - {layer}, good.roots, good.at)
    [violation] = inv.gc_oracle(w.db, marked=broken)
    assert violation.invariant == "gc-oracle" and violation.node == f"content:default:{d(4)}"
    assert violation.path == (
        "image:default:docker.io/library/x:1",
        f"content:default:{d(1)}",
        f"content:default:{d(4)}",
    )


def test_gc_oracle_catches_a_mark_that_keeps_garbage() -> None:
    w = pulled_image()
    w.blob("default", d(50))
    good = gc.mark(w.db)
    garbage = gc.Node(gc.ResourceType.CONTENT, "default", d(50))
    [violation] = inv.gc_oracle(w.db, marked=gc.Marked(good.nodes | {garbage}, (), good.at))
    assert violation.evidence["in_model_mark"] and not violation.evidence["in_graph_reach"]
    assert violation.path == ()


# -- collection-kept-reachable ----------------------------------------------------------------


def test_collection_keeps_reachable_objects() -> None:
    w = pulled_image()
    w.blob("default", d(50))
    before = w.graph()
    gc.collect(w.db)
    assert inv.collection_kept_reachable(before, w.graph()) == []
    assert d(50) not in w.content.blobs  # the collection did collect something


def test_collection_that_removes_a_reachable_parent_is_caught() -> None:
    w = pulled_image()
    before = w.graph()
    bottom = chain_ids([d(100), d(101)])[0]
    del w.db.namespace("default").snapshots["overlay"][bottom]  # a buggy sweep
    [violation] = inv.collection_kept_reachable(before, w.graph())
    assert violation.node == f"snapshot:default:overlay/{bottom}"
    assert violation.path[0] == "image:default:docker.io/library/x:1"
    assert violation.path[-2:] == (
        f"snapshot:default:overlay/{chain_ids([d(100), d(101)])[1]}",
        f"snapshot:default:overlay/{bottom}",
    )


def test_backend_sweep_that_removes_a_kept_blob_is_caught() -> None:
    w = pulled_image()
    before = w.graph()
    del w.content.blobs[d(3)]
    [violation] = inv.collection_kept_reachable(before, w.graph())
    assert violation.node == f"backend_content:{d(3)}"
    assert violation.missing_edge == (f"content:default:{d(3)}", f"backend_content:{d(3)}")


# -- collection-removed-unreachable -----------------------------------------------------------


def test_nothing_unreachable_remains_after_collection() -> None:
    w = pulled_image()
    w.blob("default", d(50))
    w.snapshot("other", "native", "orphan")
    gc.collect(w.db)
    assert inv.collection_removed_unreachable(w.graph()) == []


def test_unreachable_record_and_unswept_backend_are_caught() -> None:
    w = pulled_image()
    w.blob("default", d(50), {CREF: d(51)})
    violations = inv.collection_removed_unreachable(w.graph())
    assert [v.node for v in violations] == [f"content:default:{d(50)}"]
    # after the metadata sweep only, the backend blob is still there
    gc.sweep_metadata(w.db, gc.mark(w.db))
    assert inv.collection_removed_unreachable(w.graph(), backends=False) == []
    [leftover] = inv.collection_removed_unreachable(w.graph())
    assert leftover.node == f"backend_content:{d(50)}"


# -- metadata-backend-agree -------------------------------------------------------------------


def test_metadata_and_backend_agree_on_a_pulled_image() -> None:
    assert inv.metadata_backend_agree(pulled_image().graph()) == []


def test_missing_backend_snapshot_is_caught() -> None:
    # containerd #3051: the record survived, the backend snapshot did not
    w = pulled_image()
    top = chain_ids([d(100), d(101)])[1]
    record = w.db.namespace("default").snapshots["overlay"][top]
    del w.backends["overlay"].tree[record.backend_key]
    [violation] = inv.metadata_backend_agree(w.graph())
    nid = f"snapshot:default:overlay/{top}"
    assert violation.node == nid
    assert violation.missing_edge == (nid, f"backend_snapshot:overlay/{record.backend_key}")


def test_backend_parent_mismatch_and_missing_blob_are_caught() -> None:
    w = pulled_image()
    top = chain_ids([d(100), d(101)])[1]
    record = w.db.namespace("default").snapshots["overlay"][top]
    w.backends["overlay"].tree[record.backend_key] = ""  # backend thinks it is a base layer
    del w.content.blobs[d(2)]
    violations = inv.metadata_backend_agree(w.graph())
    assert [v.node for v in violations] == [
        f"content:default:{d(2)}",
        f"snapshot:default:overlay/{top}",
    ]
    assert violations[1].evidence["actual_backend_parent"] == ""


# -- snapshot-parents-forest ------------------------------------------------------------------


def test_parent_chains_are_a_forest() -> None:
    assert inv.snapshot_parents_forest(pulled_image().graph()) == []


def test_parent_cycle_and_active_parent_are_caught() -> None:
    w = World()
    w.snapshot("ns", "native", "a", "b")
    w.snapshot("ns", "native", "b", "a")
    w.snapshot("ns", "native", "work", kind=Kind.ACTIVE)
    w.snapshot("ns", "native", "child", "work")
    violations = inv.snapshot_parents_forest(w.graph())
    cycles = [v for v in violations if "cycle" in v.message]
    assert [v.path for v in cycles] == [("snapshot:ns:native/a", "snapshot:ns:native/b",
                                         "snapshot:ns:native/a")]  # fmt: skip
    [active] = [v for v in violations if "not committed" in v.message]
    assert active.node == "snapshot:ns:native/child" and active.evidence["parent_kind"] == "active"


# -- chain-id-parents -------------------------------------------------------------------------


def test_chain_snapshots_have_their_prefix_as_parent() -> None:
    w = pulled_image()
    assert inv.chain_id_parents(w.graph(), [[d(100), d(101)]]) == []


def test_chain_snapshot_with_wrong_parent_is_caught() -> None:
    w = World()
    bottom, top = chain_ids([d(100), d(101)])
    w.snapshot("ns", "native", "unrelated")
    w.snapshot("ns", "native", bottom)
    w.snapshot("ns", "native", top, "unrelated")
    [violation] = inv.chain_id_parents(w.graph(), [[d(100), d(101)]])
    assert violation.node == f"snapshot:ns:native/{top}"
    assert violation.missing_edge == (violation.node, f"snapshot:ns:native/{bottom}")
    assert violation.evidence == {"expected_parent": bottom, "actual_parent": "unrelated"}


# -- dangling references ----------------------------------------------------------------------


def test_dangling_labels_are_harmless() -> None:
    w = pulled_image()
    w.blob("default", d(1), {CREF + ".0": d(2), CREF + ".9": d(77)})  # a platform not pulled
    [edge] = inv.classify_dangling(w.graph())
    assert (edge.target, edge.kind, edge.label_key, edge.harmful) == (
        f"content:default:{d(77)}",
        "label",
        CREF + ".9",
        False,
    )
    assert inv.no_harmful_dangling(w.graph()) == []


def test_missing_parent_is_never_harmless() -> None:
    w = pulled_image()
    bottom, top = chain_ids([d(100), d(101)])
    del w.db.namespace("default").snapshots["overlay"][bottom]
    [violation] = inv.no_harmful_dangling(w.graph())
    assert violation.missing_edge == (
        f"snapshot:default:overlay/{top}",
        f"snapshot:default:overlay/{bottom}",
    )
    assert violation.evidence == {"edge_kind": "parent"}


def test_violations_are_json_data() -> None:
    w = World()
    w.snapshot("ns", "native", "child", "gone")
    violations = inv.check_state(w.db)
    assert [v.invariant for v in violations] == ["no-harmful-dangling"]
    text = json.dumps([v.to_json() for v in violations])
    assert json.loads(text)[0]["missing_edge"] == ["snapshot:ns:native/child",
                                                  "snapshot:ns:native/gone"]  # fmt: skip
    assert str(violations[0]).startswith("no-harmful-dangling: ")


# -- the oracle on generated states -----------------------------------------------------------

NAMESPACES = ("ns1", "ns2")
SNAPSHOTTERS = ("overlay", "native")
NAMES = ("a", "b", "c", "d")
DIGESTS = tuple(d(i) for i in range(5))
LEASES = ("l1", "l2")
label_entry_st = st.one_of(
    st.tuples(st.sampled_from([CREF, CREF + ".0", CREF + "/x", CREF + "bad"]),
              st.sampled_from(DIGESTS)),
    st.tuples(st.sampled_from([SREF + "overlay", SREF + "native/x"]), st.sampled_from(NAMES)),
    st.tuples(st.sampled_from(["containerd.io/gc.root", "other"]), st.just("x")),
)  # fmt: skip
labels_st = st.lists(label_entry_st, max_size=3).map(dict)
resource_st = st.one_of(
    st.tuples(st.just("content"), st.sampled_from(DIGESTS)),
    st.tuples(st.sampled_from(["snapshots/overlay", "snapshots/native"]), st.sampled_from(NAMES)),
    st.tuples(st.just("ingests"), st.sampled_from(("r1", "r2"))),
)
ns_st = st.sampled_from(NAMESPACES)
sn_st = st.sampled_from(SNAPSHOTTERS)
expiry_st = st.sampled_from([None, -10.0, 3600.0])

op_st = st.one_of(
    st.tuples(st.just("blob"), ns_st, st.sampled_from(DIGESTS), labels_st),
    st.tuples(st.just("snapshot"), ns_st, sn_st, st.sampled_from(NAMES),
              st.sampled_from(("", *NAMES)), st.sampled_from(list(Kind)), labels_st),
    st.tuples(st.just("lease"), ns_st, st.sampled_from(LEASES), expiry_st, st.booleans(),
              resource_st),
    st.tuples(st.just("hold"), ns_st, st.sampled_from(LEASES), st.booleans(),
              st.integers(0, 7)),
    st.tuples(st.just("image"), ns_st, st.sampled_from(("i1", "i2")),
              st.sampled_from(DIGESTS), labels_st),
    st.tuples(st.just("container"), ns_st, st.sampled_from(("", "overlay")),
              st.sampled_from(NAMES), labels_st),
    st.tuples(st.just("ingest"), ns_st, st.sampled_from(("r1", "r2")),
              st.sampled_from(("", *DIGESTS)), expiry_st),
    st.tuples(st.just("delete"), ns_st, st.sampled_from(["image", "lease", "container"]),
              st.sampled_from(("i1", "i2", "c", "l1", "l2"))),
    st.tuples(st.just("advance"), st.sampled_from([1.0, 7200.0])),
    st.tuples(st.just("collect")),
    st.tuples(st.just("sweep_metadata")),
    st.tuples(st.just("sweep_backends")),
)  # fmt: skip


def _apply(w: World, op: tuple[Any, ...]) -> None:
    """Apply one generated op to the world (collection ops are the Checker's)."""
    name, *args = op
    now = w.clock.now()
    if name == "blob":
        ns, digest, labels = args
        w.blob(ns, digest, labels)
    elif name == "snapshot":
        ns, sn, key, parent, kind, labels = args
        if key not in w.db.namespace(ns).snapshotter(sn):  # containerd refuses an existing key
            w.snapshot(ns, sn, key, parent, kind, labels)
    elif name == "lease":
        ns, lid, expiry, flat, (rtype, rid) = args
        lease = w.db.namespace(ns).leases.setdefault(lid, LeaseRecord(lid))
        if expiry is not None:
            lease.labels["containerd.io/gc.expire"] = format_rfc3339(now + expiry)
        if flat:
            lease.labels["containerd.io/gc.flat"] = "yes"
        lease.resources[(rtype, rid)] = None
    elif name == "hold":  # a lease on an existing snapshot, the way unpack leases them
        _hold(w, *args)
    elif name == "image":
        w.image(*args)
    elif name == "container":
        ns, sn, key, labels = args
        w.db.namespace(ns).containers["c"] = ContainerRecord("c", sn, key, labels=labels)
    elif name == "ingest":
        ns, ref, expected, expiry = args
        expire_at = None if expiry is None else now + expiry
        ingest = IngestRecord(ref, f"{ns}-{ref}", expected, expire_at)
        w.db.namespace(ns).ingests[ref] = ingest
        if not expected:
            w.content.ingests[ingest.backend_ref] = None
    elif name == "delete":
        _delete(w, *args)
    elif name == "advance":
        w.clock.advance(args[0])


def _delete(w: World, ns: str, kind: str, key: str) -> None:
    space = w.db.namespace(ns)
    table: dict[str, Any] = {
        "image": space.images,
        "lease": space.leases,
        "container": space.containers,
    }
    if table[kind].pop(key, None) is not None:
        w.db.mark_dirty()


def _hold(w: World, ns: str, lid: str, flat: bool, index: int) -> None:
    space = w.db.namespace(ns)
    existing = [(sn, key) for sn in sorted(space.snapshots) for key in sorted(space.snapshots[sn])]
    if not existing:
        return
    sn, key = existing[index % len(existing)]
    lease = space.leases.setdefault(lid, LeaseRecord(lid))
    if flat:
        lease.labels["containerd.io/gc.flat"] = "yes"
    lease.resources[(f"snapshots/{sn}", key)] = None


def _well_formed(graph: nx.MultiDiGraph) -> bool:
    return not inv.no_harmful_dangling(graph) and not inv.metadata_backend_agree(graph)


class Checker:
    """Runs the ops, checking the oracle after each one and the collection invariants around
    each collection step; counts the states it checked."""

    def __init__(self) -> None:
        self.w = World()
        self.pending: gc.BackendTargets | None = None
        self.states = 0

    def step(self, op: tuple[Any, ...]) -> None:
        if op[0] in ("collect", "sweep_metadata") and self.pending is not None:
            # containerd runs one collection at a time: GarbageCollect returns only after
            # its backend sweeps, so the next one starts after them.
            self.step(("sweep_backends",))
        before = self.w.graph()
        if op[0] == "collect":
            gc.collect(self.w.db)
            self.pending = None
            self.after_collection(before, backends=True)
        elif op[0] == "sweep_metadata":
            self.pending = gc.sweep_metadata(self.w.db, gc.mark(self.w.db)).targets
            self.after_collection(before, backends=False)
        elif op[0] == "sweep_backends" and self.pending is not None:
            gc.sweep_backends(self.w.db, self.pending)
            self.pending = None
            assert inv.collection_kept_reachable(before, self.w.graph()) == []
        else:
            _apply(self.w, op)
        graph = self.w.graph()
        assert inv.gc_oracle(self.w.db, graph) == []
        assert set(gr.reachable(graph)) == networkx_reachable(graph)
        self.states += 1

    def after_collection(self, before: nx.MultiDiGraph, *, backends: bool) -> None:
        after = self.w.graph()
        assert inv.collection_kept_reachable(before, after) == []
        if _well_formed(before):
            assert inv.collection_removed_unreachable(after, backends=backends) == []


def networkx_reachable(graph: nx.MultiDiGraph) -> set[str]:
    """The same reachability from networkx's own traversal, over two edge-filtered views."""

    def full(u: str, v: str, k: str) -> bool:
        data = graph.edges[u, v, k]
        return data["kind"] in gr.GC_EDGE_KINDS and not data.get("flat", False)

    def parents(u: str, v: str, k: str) -> bool:
        return bool(graph.edges[u, v, k]["kind"] == "parent")

    full_view = nx.subgraph_view(graph, filter_edge=full)
    parent_view = nx.subgraph_view(graph, filter_edge=parents)
    out = set(gr.roots(graph))
    for root in list(out):
        out |= nx.descendants(full_view, root)
    flat_starts = {v for u, v, f in graph.edges(data="flat") if f and u in out}
    for start in flat_starts:
        out |= {start} | nx.descendants(parent_view, start)
    return out


@given(st.lists(op_st, min_size=15, max_size=40))
def test_gc_oracle_agrees_on_generated_states(ops: list[tuple[Any, ...]]) -> None:
    """About 20 states per example (after every op), so thousands per run."""
    checker = Checker()
    for op in ops:
        checker.step(op)
    assert checker.states >= len(ops)
