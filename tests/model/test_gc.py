"""Golden cases for the model GC, modelled on containerd's ``metadata/gc_test.go``
(TestResourceMax, TestGCRoots, TestGCRemove, TestGCRefs) and ``gc/gc_test.go``: the same
situations and expected sets, written for the model's records.
"""

from __future__ import annotations

import pytest

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
from unpacksim.model.digest import digest_of
from unpacksim.model.oci import Descriptor

C = gc.ResourceType.CONTENT
S = gc.ResourceType.SNAPSHOT
L = gc.ResourceType.LEASE
I = gc.ResourceType.INGEST  # noqa: E741
CF = gc.ResourceType.CONTENT_FLAT
SF = gc.ResourceType.SNAPSHOT_FLAT

ROOT = "containerd.io/gc.root"
CREF = "containerd.io/gc.ref.content"
SREF = "containerd.io/gc.ref.snapshot."
EXPIRE = "containerd.io/gc.expire"
FLAT = "containerd.io/gc.flat"
HOUR = 3600.0


def d(i: int) -> str:
    return digest_of(f"blob-{i}".encode())


def n(kind: gc.ResourceType, ns: str, key: str) -> gc.Node:
    return gc.Node(kind, ns, key)


class Builder:
    """Writes records straight into a DB, like the ``add*`` alter functions of gc_test.go."""

    def __init__(self, now: float = 1000.5) -> None:
        self.clock = ManualClock(now)
        self.db = DB(self.clock)

    def image(self, ns: str, name: str, target: str, labels: dict[str, str] | None = None) -> None:
        desc = Descriptor("irrelevant", target, 256)
        self.db.namespace(ns).images[name] = ImageRecord(name, desc, dict(labels or {}))

    def container(
        self, ns: str, cid: str, sn: str, key: str, labels: dict[str, str] | None = None
    ) -> None:
        record = ContainerRecord(cid, snapshotter=sn, snapshot_key=key, labels=dict(labels or {}))
        self.db.namespace(ns).containers[cid] = record

    def content(self, ns: str, digest: str, labels: dict[str, str] | None = None) -> None:
        self.db.namespace(ns).content[digest] = BlobRecord(digest, 256, dict(labels or {}))

    def ingest(self, ns: str, ref: str, expected: str = "", expire_at: float | None = None) -> None:
        record = IngestRecord(ref, f"{ns}-{ref}", expected=expected, expire_at=expire_at)
        self.db.namespace(ns).ingests[ref] = record

    def snapshot(
        self, ns: str, sn: str, name: str, parent: str = "", labels: dict[str, str] | None = None
    ) -> None:
        key = f"{ns}/{self.db.next_seq()}/{name}"
        record = SnapshotRecord(name, Kind.COMMITTED, parent, key, dict(labels or {}))
        self.db.namespace(ns).snapshotter(sn)[name] = record

    def lease(self, ns: str, lid: str, labels: dict[str, str] | None = None) -> LeaseRecord:
        leases = self.db.namespace(ns).leases
        if lid not in leases:
            leases[lid] = LeaseRecord(lid, labels=dict(labels or {}))
        return leases[lid]

    def lease_content(self, ns: str, lid: str, digest: str) -> None:
        self.lease(ns, lid).resources[("content", digest)] = None

    def lease_snapshot(self, ns: str, lid: str, sn: str, key: str) -> None:
        self.lease(ns, lid).resources[(f"snapshots/{sn}", key)] = None

    def lease_ingest(self, ns: str, lid: str, ref: str) -> None:
        self.lease(ns, lid).resources[("ingests", ref)] = None


def test_flat_types_strip_to_their_objects() -> None:
    # TestResourceMax
    assert CF & gc.RESOURCE_MAX == C
    assert SF & gc.RESOURCE_MAX == S
    assert n(CF, "ns", "x").plain() == n(C, "ns", "x")
    assert n(SF, "ns", "o/x").flat and not n(S, "ns", "o/x").flat


def _roots_state() -> Builder:
    """The objects of containerd's TestGCRoots."""
    b = Builder()
    now = b.clock.now()
    b.image("ns1", "image1", d(1))
    b.image("ns1", "image2", d(2), {SREF + "overlay": "sn2"})
    b.image("ns2", "image3", d(10), {CREF: d(11)})
    b.container("ns1", "container1", "overlay", "sn4")
    b.container("ns1", "container2", "overlay", "sn5", {SREF + "overlay": "sn6"})
    b.container(
        "ns1",
        "container3",
        "overlay",
        "sn7",
        {SREF + "overlay/anything-1": "sn8", SREF + "overlay/anything-2": "sn9", CREF: d(7)},
    )
    b.container("ns1", "container4", "", "", {CREF + ".0": d(8), CREF + ".1": d(9)})
    for i in (1, 2, 3):
        b.content("ns1", d(i))
    b.content("ns2", d(1))
    b.content("ns2", d(2), {ROOT: "always"})
    b.content("ns2", d(8))
    b.content("ns2", d(9))
    b.ingest("ns1", "ingest-1")  # no expiry: seen as expired
    b.ingest("ns1", "ingest-2", expire_at=now)  # expired once time moves on
    b.ingest("ns1", "ingest-3", expire_at=now + HOUR)
    b.ingest("ns2", "ingest-4")
    b.ingest("ns2", "ingest-5", expected=d(8))
    b.ingest("ns2", "ingest-6")  # held by an expired lease
    b.ingest("ns2", "ingest-7", expected=d(9))  # held by an expired lease
    for i in range(1, 10):
        b.snapshot("ns1", "overlay", f"sn{i}", labels={ROOT: "always"} if i == 3 else None)
    b.lease_snapshot("ns2", "l1", "overlay", "sn5")
    b.lease_snapshot("ns2", "l2", "overlay", "sn6")
    b.lease_content("ns2", "l1", d(4))
    b.lease_content("ns2", "l2", d(5))
    b.lease("ns2", "l3", {EXPIRE: format_rfc3339(now + HOUR)})
    b.lease_content("ns2", "l3", d(6))
    b.lease_snapshot("ns2", "l3", "overlay", "sn7")
    b.lease_ingest("ns2", "l3", "ingest-4")
    b.lease_ingest("ns2", "l3", "ingest-5")
    b.lease("ns2", "l4", {EXPIRE: format_rfc3339(now)})
    b.lease_content("ns2", "l4", d(7))
    b.lease_snapshot("ns2", "l4", "overlay", "sn8")
    b.lease_ingest("ns2", "l4", "ingest-6")
    b.lease_ingest("ns2", "l4", "ingest-7")
    b.lease("ns3", "l1", {FLAT: format_rfc3339(now + HOUR)})
    b.lease_content("ns3", "l1", d(1))
    b.lease_snapshot("ns3", "l1", "overlay", "sn1")
    b.lease_ingest("ns3", "l1", "ingest-1")
    b.clock.advance(0.25)  # containerd scans after the set-up, a moment later
    return b


def test_gc_roots_golden() -> None:
    expected = [
        n(C, "ns1", d(1)),
        n(C, "ns1", d(2)),
        n(C, "ns1", d(7)),
        n(C, "ns1", d(8)),
        n(C, "ns1", d(9)),
        n(C, "ns2", d(2)),
        n(C, "ns2", d(4)),
        n(C, "ns2", d(5)),
        n(C, "ns2", d(6)),
        n(C, "ns2", d(10)),
        n(C, "ns2", d(11)),
        *(n(S, "ns1", f"overlay/sn{i}") for i in range(2, 10)),
        n(S, "ns2", "overlay/sn5"),
        n(S, "ns2", "overlay/sn6"),
        n(S, "ns2", "overlay/sn7"),
        n(L, "ns2", "l1"),
        n(L, "ns2", "l2"),
        n(L, "ns2", "l3"),
        n(I, "ns1", "ingest-3"),
        n(I, "ns2", "ingest-4"),
        n(I, "ns2", "ingest-5"),
        n(L, "ns3", "l1"),
        n(I, "ns3", "ingest-1"),
        n(CF, "ns3", d(1)),
        n(SF, "ns3", "overlay/sn1"),
    ]
    assert sorted(gc.scan_roots(_roots_state().db)) == sorted(expected)


def test_gc_roots_follow_time() -> None:
    b = _roots_state()
    b.clock.advance(2 * HOUR)  # l3 and ingest-3 expire too
    roots = gc.scan_roots(b.db)
    assert n(L, "ns2", "l3") not in roots and n(C, "ns2", d(6)) not in roots
    assert n(I, "ns1", "ingest-3") not in roots
    assert n(L, "ns2", "l1") in roots  # no expiry label: live forever


def test_lease_with_unparsable_expiry_is_live() -> None:
    b = Builder()
    b.lease("ns", "l", {EXPIRE: "next tuesday"})
    assert gc.scan_roots(b.db) == [n(L, "ns", "l")]
    assert not gc.lease_expired({EXPIRE: format_rfc3339(1000.0)}, 1000.0)  # After is strict
    assert gc.lease_expired({EXPIRE: format_rfc3339(1000.0)}, 1000.5)


def _remove_state() -> tuple[Builder, list[gc.Node]]:
    """The objects of containerd's TestGCRemove, and every node scanAll must list."""
    b = Builder()
    now = b.clock.now()
    b.image("ns1", "image1", d(1))
    b.image("ns1", "image2", d(2), {SREF + "overlay": "sn2"})
    b.container("ns1", "container1", "overlay", "sn4")
    for i in (1, 2, 3):
        b.content("ns1", d(i))
    b.content("ns2", d(1))
    b.content("ns2", d(2), {ROOT: "always"})
    b.ingest("ns1", "ingest-1")
    b.ingest("ns2", "ingest-2", expire_at=now)
    for i in range(1, 5):
        b.snapshot("ns1", "overlay", f"sn{i}", labels={ROOT: "always"} if i == 3 else None)
    b.snapshot("ns2", "overlay", "sn1")
    b.lease("ns1", "l1", {EXPIRE: format_rfc3339(now + HOUR)})
    b.lease("ns2", "l2", {EXPIRE: format_rfc3339(now)})
    all_nodes = [
        n(C, "ns1", d(1)),
        n(C, "ns1", d(2)),
        n(C, "ns1", d(3)),
        n(C, "ns2", d(1)),
        n(C, "ns2", d(2)),
        n(S, "ns1", "overlay/sn1"),
        n(S, "ns1", "overlay/sn2"),
        n(S, "ns1", "overlay/sn3"),
        n(S, "ns1", "overlay/sn4"),
        n(S, "ns2", "overlay/sn1"),
        n(L, "ns1", "l1"),
        n(L, "ns2", "l2"),
        n(I, "ns1", "ingest-1"),
        n(I, "ns2", "ingest-2"),
    ]
    return b, all_nodes


def test_gc_remove_golden() -> None:
    b, all_nodes = _remove_state()
    assert sorted(gc.scan_all(b.db)) == sorted(all_nodes)
    deleted, remaining = all_nodes[0::2], all_nodes[1::2]
    assert all(gc.remove(b.db, node) for node in deleted)
    assert sorted(gc.scan_all(b.db)) == sorted(remaining)
    assert not gc.remove(b.db, deleted[0])  # already gone
    assert not gc.remove(b.db, n(C, "nowhere", d(1)))


def test_scan_all_order_is_containerds() -> None:
    b, _ = _remove_state()
    kinds = [(node.namespace, node.type) for node in gc.scan_all(b.db)]
    # per namespace: leases, snapshots, ingests, content (bolt bucket order of scanAll)
    assert kinds == [
        ("ns1", L),
        *[("ns1", S)] * 4,
        ("ns1", I),
        *[("ns1", C)] * 3,
        ("ns2", L),
        ("ns2", S),
        ("ns2", I),
        *[("ns2", C)] * 2,
    ]


def _refs_state() -> Builder:
    """The objects of containerd's TestGCRefs."""
    b = Builder()
    for i in (1, 2, 3):
        b.content("ns1", d(i))
    b.content("ns1", d(4), {CREF: d(1)})
    b.content("ns1", d(5), {CREF + ".anything-1": d(2), CREF + ".anything-2": d(3)})
    b.content("ns1", d(6), {CREF + "bad": d(1)})
    b.content("ns1", d(7), {CREF + "/anything-1": d(2), CREF + "/anything-2": d(3)})
    b.content("ns2", d(1))
    b.content("ns2", d(2))
    b.ingest("ns1", "ingest-1")
    b.ingest("ns2", "ingest-2", expected=d(8))
    b.snapshot("ns1", "overlay", "sn1")
    b.snapshot("ns1", "overlay", "sn2", "sn1")
    b.snapshot("ns1", "overlay", "sn3", "sn2")
    b.snapshot("ns1", "overlay", "sn4", labels={SREF + "btrfs": "sn1", SREF + "overlay": "sn1"})
    b.snapshot(
        "ns1",
        "overlay",
        "sn5",
        labels={SREF + "overlay/anything-1": "sn1", SREF + "overlay/anything-2": "sn2"},
    )
    b.snapshot("ns1", "btrfs", "sn1")
    b.snapshot("ns2", "overlay", "sn1")
    b.snapshot("ns2", "overlay", "sn2", "sn1")
    b.snapshot("ns2", "overlay", "sn3", labels={CREF: d(1), CREF + ".keep-me": d(6)})
    # flat references do not follow label references
    b.content("ns3", d(1))
    b.content("ns3", d(2), {CREF + ".0": d(1)})
    b.snapshot("ns3", "overlay", "sn1")
    b.snapshot("ns3", "overlay", "sn2", "sn1")
    b.snapshot("ns3", "overlay", "sn3", labels={SREF + "btrfs": "sn1", SREF + "overlay": "sn1"})
    return b


REFS_GOLDEN: dict[gc.Node, list[gc.Node]] = {
    n(C, "ns1", d(1)): [],
    n(C, "ns1", d(2)): [],
    n(C, "ns1", d(3)): [],
    n(C, "ns1", d(4)): [n(C, "ns1", d(1))],
    n(C, "ns1", d(5)): [n(C, "ns1", d(2)), n(C, "ns1", d(3))],
    n(C, "ns1", d(6)): [],
    n(C, "ns1", d(7)): [n(C, "ns1", d(2)), n(C, "ns1", d(3))],
    n(C, "ns2", d(1)): [],
    n(C, "ns2", d(2)): [],
    n(S, "ns1", "overlay/sn1"): [],
    n(S, "ns1", "overlay/sn2"): [n(S, "ns1", "overlay/sn1")],
    n(S, "ns1", "overlay/sn3"): [n(S, "ns1", "overlay/sn2")],
    n(S, "ns1", "overlay/sn4"): [n(S, "ns1", "btrfs/sn1"), n(S, "ns1", "overlay/sn1")],
    n(S, "ns1", "overlay/sn5"): [n(S, "ns1", "overlay/sn1"), n(S, "ns1", "overlay/sn2")],
    n(S, "ns1", "btrfs/sn1"): [],
    n(S, "ns2", "overlay/sn1"): [],
    n(S, "ns2", "overlay/sn2"): [n(S, "ns2", "overlay/sn1")],
    n(S, "ns2", "overlay/sn3"): [n(C, "ns2", d(1)), n(C, "ns2", d(6))],
    n(I, "ns1", "ingest-1"): [],
    n(I, "ns2", "ingest-2"): [n(C, "ns2", d(8))],
    n(SF, "ns3", "overlay/sn2"): [n(SF, "ns3", "overlay/sn1")],
    n(S, "ns3", "overlay/sn2"): [n(S, "ns3", "overlay/sn1")],
    n(SF, "ns3", "overlay/sn1"): [],
    n(SF, "ns3", "overlay/sn3"): [],
    n(S, "ns3", "overlay/sn3"): [n(S, "ns3", "btrfs/sn1"), n(S, "ns3", "overlay/sn1")],
}


@pytest.mark.parametrize("node", list(REFS_GOLDEN), ids=lambda node: f"{node.type.name}:{node}")
def test_gc_refs_golden(node: gc.Node) -> None:
    assert sorted(gc.references(_refs_state().db, node)) == sorted(REFS_GOLDEN[node])


def test_refs_of_flat_content_and_dead_edges_are_empty() -> None:
    db = _refs_state().db
    assert gc.references(db, n(CF, "ns3", d(2))) == []  # flat content: no case in references
    assert gc.references(db, n(C, "ns9", d(4))) == []  # dead edge: no namespace
    assert gc.references(db, n(S, "ns1", "overlay/missing")) == []
    assert gc.references(db, n(L, "ns1", "anything")) == []


def test_label_refs_order_is_bolt_cursor_order() -> None:
    labels = {SREF + "b": "x", CREF + ".b": d(2), "other": "y", CREF + ".a": d(1), SREF + "a": "z"}
    assert gc.label_refs("ns", labels) == [
        n(C, "ns", d(1)),
        n(C, "ns", d(2)),
        n(S, "ns", "a/z"),
        n(S, "ns", "b/x"),
    ]


def test_snapshot_node_without_snapshotter_is_misuse() -> None:
    with pytest.raises(ValueError, match="'<snapshotter>/<name>'"):
        gc.references(Builder().db, n(S, "ns", "no-slash"))


def test_tricolor_marks_reachable_and_strips_flat() -> None:
    # gc/gc_test.go TestTricolorBasic, plus a flat node reaching its plain twin's object
    refs = {
        "A": ["B", "C"],
        "B": ["D"],
        "C": ["E"],
        "D": [],
        "E": [],
        "F": ["A"],
        "G": [],
    }

    def node(key: str) -> gc.Node:
        return n(C, "ns", key)

    reachable = gc.tricolor([node("A")], lambda x: [node(k) for k in refs[x.key]])
    assert reachable == {node(k) for k in "ABCDE"}
    flat = gc.tricolor([n(SF, "ns", "o/a")], lambda x: [])
    assert flat == {n(S, "ns", "o/a")}
