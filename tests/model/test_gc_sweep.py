"""The two-phase sweep: containerd's TestMetadataCollector as a golden case, and the backend
sweeps of ``metadata/content.go`` and ``metadata/snapshot.go`` (``garbageCollect``).
"""

from __future__ import annotations

import pytest

from unpacksim.model import gc
from unpacksim.model.clock import ManualClock
from unpacksim.model.context import Ctx
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
from unpacksim.model.errdefs import FailedPrecondition, Unavailable
from unpacksim.model.oci import Descriptor
from unpacksim.model.snapshots import MemorySnapshotter, MetadataSnapshotter

NS = "test"
C = gc.ResourceType.CONTENT
S = gc.ResourceType.SNAPSHOT
L = gc.ResourceType.LEASE


def d(i: int) -> str:
    return digest_of(f"bytes-{i}".encode())


class FakeContent:
    """A content backend: blobs and ingests by name, removal recorded."""

    def __init__(self) -> None:
        self.blobs: dict[str, None] = {}
        self.ingests: dict[str, None] = {}
        self.fail_on: str | None = None

    def backend_digests(self) -> list[str]:
        return list(self.blobs)

    def backend_delete(self, digest: str) -> None:
        if digest == self.fail_on:
            raise Unavailable("disk on fire")
        self.blobs.pop(digest, None)

    def backend_ingests(self) -> list[str]:
        return list(self.ingests)

    def backend_abort(self, backend_ref: str) -> None:
        self.ingests.pop(backend_ref, None)


class FakeSnapshots:
    """A snapshot backend: key -> parent key, refusing to remove a snapshot with children."""

    def __init__(self) -> None:
        self.tree: dict[str, str] = {}
        self.removed: list[str] = []

    def backend_tree(self) -> list[tuple[str, str]]:
        return list(self.tree.items())

    def backend_remove(self, backend_key: str) -> None:
        if backend_key in self.tree.values():
            raise FailedPrecondition("cannot remove snapshot with child")
        del self.tree[backend_key]
        self.removed.append(backend_key)


class Store:
    """A DB with fake backends; records and backend objects are written together."""

    def __init__(self) -> None:
        self.db = DB(ManualClock(10.0))
        self.content = FakeContent()
        self.native = FakeSnapshots()
        self.db.content_backend = self.content
        self.db.snapshot_backends["native"] = self.native
        self.ns = self.db.namespace(NS)

    def blob(self, i: int, labels: dict[str, str] | None = None) -> str:
        self.ns.content[d(i)] = BlobRecord(d(i), 256, dict(labels or {}))
        self.content.blobs[d(i)] = None
        return d(i)

    def snapshot(self, name: str, parent: str = "", labels: dict[str, str] | None = None) -> str:
        records = self.ns.snapshotter("native")
        key = f"{NS}/{self.db.next_seq()}/{name}"
        parent_key = records[parent].backend_key if parent else ""
        records[name] = SnapshotRecord(name, Kind.COMMITTED, parent, key, dict(labels or {}))
        if parent:
            records[parent].children[name] = None
        self.native.tree[key] = parent_key
        return key

    def lease(self, lid: str, resources: list[tuple[str, str]], **labels: str) -> None:
        lease = LeaseRecord(lid, labels=dict(labels))
        lease.resources.update(dict.fromkeys(resources))
        self.ns.leases[lid] = lease


def _collector_state() -> tuple[Store, list[gc.Node]]:
    """containerd's TestMetadataCollector objects, and the nodes that must remain."""
    s = Store()
    remaining: list[gc.Node] = []

    def blob(i: int, removed: bool, labels: dict[str, str] | None = None) -> None:
        s.blob(i, labels)
        if not removed:
            remaining.append(gc.Node(C, NS, d(i)))

    def snap(name: str, parent: str, removed: bool, labels: dict[str, str] | None = None) -> None:
        s.snapshot(name, parent, labels)
        if not removed:
            remaining.append(gc.Node(S, NS, f"native/{name}"))

    blob(1, True)
    blob(2, False)
    blob(3, True)
    blob(4, False, {"containerd.io/gc.root": "2020-06-21T00:00:00Z"})
    snap("1", "", False)
    snap("2", "1", False)
    snap("3", "2", False)
    snap("4", "3", False)
    snap("5", "3", True)
    s.ns.containers["1"] = ContainerRecord("1", snapshotter="native", snapshot_key="4")
    s.ns.images["image-1"] = ImageRecord("image-1", Descriptor("irrelevant", d(2), 256))
    # lease preservation
    blob(5, False, {"containerd.io/gc.ref.content.0": d(6)})
    blob(6, False)
    blob(7, False)
    snap("6", "", False, {"containerd.io/gc.ref.content.0": d(7)})
    s.lease("lease-1", [("content", d(5)), ("snapshots/native", "6")])
    remaining.append(gc.Node(L, NS, "lease-1"))
    # flat lease: parents followed, labels not
    blob(8, False, {"containerd.io/gc.ref.content.0": d(9)})
    blob(9, True)
    blob(10, True)
    snap("7", "", False, {"containerd.io/gc.ref.content.0": d(10)})
    snap("8", "7", False)
    snap("9", "8", False)
    s.lease("lease-2", [("content", d(8)), ("snapshots/native", "9")])
    s.ns.leases["lease-2"].labels["containerd.io/gc.flat"] = "2020-06-21T00:00:00Z"
    remaining.append(gc.Node(L, NS, "lease-2"))
    return s, remaining


def test_metadata_collector_golden() -> None:
    s, remaining = _collector_state()
    result = gc.collect(s.db)
    assert sorted(gc.scan_all(s.db)) == sorted(remaining)
    # the backends follow: exactly the removed blobs and the snapshot "5" are gone
    assert sorted(result.backends.removed_blobs) == sorted([d(1), d(3), d(9), d(10)])
    assert sorted(s.content.blobs) == sorted(n.key for n in remaining if n.type == C)
    assert s.native.removed == [f"{NS}/5/5"]
    assert result.backends.errors == ()


def test_metadata_sweep_hands_dirty_backends_over() -> None:
    s, _ = _collector_state()
    s.db.mark_dirty()  # an earlier lease deletion
    report = gc.sweep_metadata(s.db, gc.mark(s.db))
    assert report.targets == gc.BackendTargets(content=True, snapshotters=("native",))
    assert s.db.dirty == 0 and not s.db.dirty_content and not s.db.dirty_snapshotters
    # metadata gone, backend objects still there until the backend sweep
    assert d(1) in s.content.blobs and f"{NS}/5/5" in s.native.tree
    gc.sweep_backends(s.db, report.targets)
    assert d(1) not in s.content.blobs and f"{NS}/5/5" not in s.native.tree


def test_sweep_does_not_unlink_children_like_containerd() -> None:
    s, _ = _collector_state()
    gc.collect(s.db)
    # snapshot "5" is gone but "3" still lists it: metadata/gc.go remove() deletes the bucket
    assert "5" in s.ns.snapshots["native"]["3"].children


def test_sweep_does_not_call_mutation_listeners() -> None:
    s, _ = _collector_state()
    calls: list[bool] = []
    s.db.listeners.append(calls.append)
    gc.collect(s.db)
    assert calls == []


def test_backend_dirtied_between_phases_waits_for_next_collection() -> None:
    s = Store()
    s.blob(1)
    report = gc.sweep_metadata(s.db, gc.mark(s.db))  # the blob is unreachable: removed
    s.snapshot("late")  # a snapshot removed between the phases
    del s.ns.snapshots["native"]["late"]
    s.db.mark_dirty_snapshotter("native")
    gc.sweep_backends(s.db, report.targets)
    assert d(1) not in s.content.blobs
    assert f"{NS}/1/late" in s.native.tree  # native was not dirty at the metadata sweep
    assert s.db.dirty_snapshotters == {"native": None}


def test_content_sweep_keeps_expected_blobs_and_live_ingests() -> None:
    s = Store()
    s.content.blobs[d(1)] = None  # only in the backend, expected by an ingest
    s.content.blobs[d(2)] = None  # nobody's
    s.content.ingests.update({"b-ref": None, "stale": None})
    other = s.db.namespace("other")
    other.ingests["ref"] = IngestRecord("ref", "b-ref", expected=d(1), expire_at=100.0)
    report = gc.sweep_content_backend(s.db)
    assert report.removed_blobs == (d(2),) and report.aborted_ingests == ("stale",)
    assert list(s.content.blobs) == [d(1)] and list(s.content.ingests) == ["b-ref"]


def test_snapshot_sweep_removes_children_first_across_namespaces() -> None:
    s = Store()
    base = s.snapshot("base")
    mid = s.snapshot("mid", "base")
    top = s.snapshot("top", "mid")
    s.ns.snapshots["native"].clear()  # metadata gone, backend left
    other = s.db.namespace("other").snapshotter("native")
    other["shared"] = SnapshotRecord("shared", Kind.COMMITTED, "", base)  # keeps base
    report = gc.sweep_snapshot_backend(s.db, "native")
    assert s.native.removed == [top, mid]
    assert report.removed_snapshots == (("native", top), ("native", mid))
    assert list(s.native.tree) == [base]


def test_snapshot_sweep_keeps_unreferenced_parent_of_kept_child() -> None:
    s = Store()
    base = s.snapshot("base")
    s.snapshot("child", "base")
    del s.ns.snapshots["native"]["base"]  # a metadata skew: the child outlives its parent
    report = gc.sweep_snapshot_backend(s.db, "native")
    assert report.kept_snapshots == (("native", base),)
    assert report.removed_snapshots == () and base in s.native.tree


class PermissiveSnapshots(FakeSnapshots):
    """A backend that removes a snapshot even while it has children."""

    def backend_remove(self, backend_key: str) -> None:
        self.removed.append(backend_key)
        del self.tree[backend_key]


def test_snapshot_sweep_relies_on_the_backend_to_refuse_parents_of_kept_children() -> None:
    # metadata/snapshot.go pruneBranch calls Remove on every unreferenced node, children
    # first, and only tolerates FailedPrecondition: it never checks for children itself.
    s = Store()
    s.native = PermissiveSnapshots()
    s.db.snapshot_backends["native"] = s.native
    base = s.snapshot("base")
    child = s.snapshot("child", "base")
    del s.ns.snapshots["native"]["base"]  # the child still references base in the backend
    report = gc.sweep_snapshot_backend(s.db, "native")
    assert s.native.removed == [base]
    assert report.removed_snapshots == (("native", base),) and report.kept_snapshots == ()
    assert list(s.native.tree) == [child]


def test_snapshot_sweep_removes_in_the_backend_walk_order() -> None:
    # walkTree collects roots and children in the order the backend's Walk reports them: the
    # native snapshotter walks its bolt bucket, in key (byte) order.
    db = DB(ManualClock(10.0))
    sn = MetadataSnapshotter(db, "native", MemorySnapshotter(clock=db.clock))
    ctx = Ctx(NS)
    for i in range(1, 11):
        sn.prepare(ctx, f"k{i}")
        sn.remove(ctx, f"k{i}")
    report = gc.collect(db).backends
    keys = [key for _, key in report.removed_snapshots]
    assert keys[:3] == [f"{NS}/1/k1", f"{NS}/10/k10", f"{NS}/2/k2"]
    assert keys == sorted(keys) and len(keys) == 10


def test_a_parent_keeps_the_stale_child_link_gc_left() -> None:
    # metadata/gc.go remove() deletes only the child's bucket; the "children" bucket lives
    # under the parent's record (metadata/snapshot.go createSnapshot/Commit), so the link to
    # the collected child stays and metadata Remove of the parent refuses for ever after.
    db = DB(ManualClock(10.0))
    sn = MetadataSnapshotter(db, "native", MemorySnapshotter(clock=db.clock))
    ctx = Ctx(NS)
    sn.prepare(ctx, "base-a")
    sn.commit(ctx, "base", "base-a", labels={"containerd.io/gc.root": "x"})
    sn.prepare(ctx, "extract-1", "base")  # abandoned: nothing references it
    gc.collect(db)
    records = db.namespace(NS).snapshotter("native")
    assert list(records) == ["base"] and records["base"].children == {"extract-1": None}
    with pytest.raises(FailedPrecondition, match="cannot remove snapshot with child"):
        sn.remove(ctx, "base")


def test_snapshot_sweep_skips_subtrees_without_walked_root() -> None:
    s = Store()
    s.native.tree["orphan"] = "never-walked"
    report = gc.sweep_snapshot_backend(s.db, "native")
    assert report.removed_snapshots == () and "orphan" in s.native.tree


def test_backend_error_stops_that_sweep_and_is_reported() -> None:
    s = Store()
    s.content.blobs.update({d(1): None, d(2): None})
    s.content.fail_on = d(1)
    report = gc.sweep_content_backend(s.db)
    assert report.errors == ("content garbage collection failed: disk on fire: unavailable",)
    assert d(2) in s.content.blobs  # the walk stopped at the error


def test_sweeps_without_backends_do_nothing() -> None:
    db = DB()
    db.namespace("ns").content[d(1)] = BlobRecord(d(1), 1)
    result = gc.collect(db)
    assert result.metadata.removed == (gc.Node(C, "ns", d(1)),)
    assert result.backends == gc.SweepReport()
    assert gc.sweep_snapshot_backend(db, "overlay") == gc.SweepReport()


def test_deep_chain_is_swept_without_recursion_limit() -> None:
    s = Store()
    parent = ""
    for i in range(3000):
        s.snapshot(f"s{i}", parent)
        parent = f"s{i}"
    s.ns.snapshots["native"].clear()
    report = gc.sweep_snapshot_backend(s.db, "native")
    assert len(report.removed_snapshots) == 3000 and not s.native.tree


def test_misuse_is_explained() -> None:
    db = DB()
    with pytest.raises(TypeError, match=r"Marked result of gc.mark\(db\)"):
        gc.sweep_metadata(db, frozenset())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="BackendTargets of a metadata sweep"):
        gc.sweep_backends(db, ("native",))  # type: ignore[arg-type]
