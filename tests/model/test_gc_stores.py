"""The collector through the real stores (content, metadata snapshotter, leases, images),
modelled on containerd's ``lease_test.go`` TestLeaseResources and
``client_test.go`` TestImagePullWithDiscardContent; the graph invariants hold at every step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from unpacksim.model import gc
from unpacksim.model.clock import ManualClock
from unpacksim.model.content import ContentStore
from unpacksim.model.context import Ctx
from unpacksim.model.db import DB
from unpacksim.model.digest import chain_ids, digest_of
from unpacksim.model.errdefs import ContainerdError
from unpacksim.model.images import Image, ImageStore
from unpacksim.model.leases import LeaseManager
from unpacksim.model.oci import MEDIA_TYPE_OCI_MANIFEST, Descriptor
from unpacksim.model.snapshot_backend import MemorySnapshotter
from unpacksim.model.snapshots import MetadataSnapshotter
from unpacksim.properties import graph as gr
from unpacksim.properties import invariants as inv

CTX = Ctx("default")
PULL = CTX.with_lease("pull")
DIFF_IDS = [digest_of(b"diff-0"), digest_of(b"diff-1")]
BASE, TOP = chain_ids(DIFF_IDS)


@dataclass
class Pulled:
    db: DB
    content: ContentStore
    snapshots: MetadataSnapshotter
    backend: MemorySnapshotter
    leases: LeaseManager
    images: ImageStore
    manifest: str
    config: str
    layers: list[str]


def _write(content: ContentStore, data: bytes, labels: dict[str, str]) -> str:
    digest = digest_of(data)
    desc = Descriptor("application/octet-stream", digest, len(data))
    writer = content.writer(PULL, ref=f"ref-{digest}", desc=desc)
    writer.write(data)
    writer.commit(PULL, len(data), digest, labels=labels)
    return digest


def pull() -> Pulled:
    """What a seed pull with unpack leaves: blobs and a chain written under the pull lease."""
    db = DB(ManualClock(100.0))
    content = ContentStore(db)
    backend = MemorySnapshotter(clock=db.clock)
    snapshots = MetadataSnapshotter(db, "native", backend)
    leases = LeaseManager(db)
    leases.create(CTX, id="pull")
    layers = [_write(content, f"layer-{i}".encode(), {}) for i in range(2)]
    for i, (parent, name) in enumerate(zip(["", BASE], [BASE, TOP], strict=True)):
        key = f"extract-{i} {name}"
        snapshots.prepare(PULL, key, parent, labels={"containerd.io/snapshot.ref": name})
        snapshots.commit(PULL, name, key, labels={"containerd.io/snapshot.ref": name})
    config = _write(content, b"config", {"containerd.io/gc.ref.snapshot.native": TOP})
    refs = {"containerd.io/gc.ref.content.0": config}
    refs.update({f"containerd.io/gc.ref.content.{i + 1}": d for i, d in enumerate(layers)})
    manifest = _write(content, b"manifest", refs)
    images = ImageStore(db)
    images.create(CTX, Image("x:1", Descriptor(MEDIA_TYPE_OCI_MANIFEST, manifest, 8)))
    return Pulled(db, content, snapshots, backend, leases, images, manifest, config, layers)


def collect_checked(db: DB) -> None:
    """One collection, with the collection invariants around it and the rest after it."""
    before = gr.build_graph(db)
    gc.collect(db)
    after = gr.build_graph(db)
    assert inv.collection_kept_reachable(before, after) == []
    assert inv.collection_removed_unreachable(after) == []
    assert inv.check_state(db, after) == []
    assert inv.chain_id_parents(after, [DIFF_IDS]) == []


def names(p: Pulled) -> list[str]:
    return sorted(p.db.namespace("default").snapshots.get("native", {}))


def test_pulled_image_survives_its_lease() -> None:
    p = pull()
    assert inv.check_state(p.db) == []
    p.leases.delete(CTX, "pull")
    collect_checked(p.db)
    assert names(p) == sorted([BASE, TOP])  # the extract-* keys were committed away
    assert sorted(p.content.backend.backend_digests()) == sorted([p.manifest, p.config, *p.layers])


def test_lease_resources_keep_the_snapshot_after_image_delete() -> None:
    # lease_test.go TestLeaseResources
    p = pull()
    p.leases.delete(CTX, "pull")
    p.leases.create(CTX, id="keep")
    p.leases.add_resource(CTX, "keep", ("snapshots/native", TOP))
    p.images.delete(CTX, "x:1")
    collect_checked(p.db)  # SynchronousDelete
    assert names(p) == sorted([BASE, TOP])  # the parent follows the leased snapshot
    assert p.db.namespace("default").content == {}
    p.leases.delete_resource(CTX, "keep", ("snapshots/native", TOP))
    p.leases.delete(CTX, "keep")
    collect_checked(p.db)
    assert names(p) == [] and p.backend.backend_tree() == []
    assert p.content.backend.backend_digests() == []


def test_discarded_layer_labels_free_the_blobs_not_the_snapshots() -> None:
    # client_test.go TestImagePullWithDiscardContent, seed semantics: the manifest's layer
    # labels are blanked after the unpack, so only the snapshots stay reachable.
    p = pull()
    info = p.content.info(PULL, p.manifest)
    for key, value in list(info.labels.items()):
        if value in p.layers:
            info.labels[key] = ""
    fields = [f"labels.{k}" for k, v in info.labels.items() if v == ""]
    p.content.update(PULL, info, *fields)
    p.leases.delete(CTX, "pull")
    collect_checked(p.db)
    assert names(p) == sorted([BASE, TOP])
    kept = p.db.namespace("default").content
    assert sorted(kept) == sorted([p.manifest, p.config])
    assert all(layer not in p.content.backend.backend_digests() for layer in p.layers)


def test_every_write_reports_whether_a_deletion_happened_since_the_last_collection() -> None:
    # metadata/db.go DB.Update: after each committed write transaction every mutation
    # callback gets atomic.LoadUint32(&m.dirty) > 0; GarbageCollect resets m.dirty to 0 and
    # its own sweep transaction calls no callback.
    p = pull()
    seen: list[bool] = []
    p.db.listeners.append(seen.append)
    p.images.delete(CTX, "x:1")  # a deletion: dirty from here on
    info = p.content.info(CTX, p.config)
    p.content.update(CTX, info, "labels")  # no deletion, still reported dirty
    p.leases.create(CTX, id="other")
    p.snapshots.update(CTX, p.snapshots.stat(CTX, TOP))
    assert seen == [True, True, True, True]
    gc.collect(p.db)
    assert seen == [True, True, True, True]
    p.leases.create(CTX, id="after-gc")
    p.content.update(CTX, p.content.info(CTX, p.config), "labels")
    assert seen[4:] == [False, False]


def test_reads_and_refused_writes_create_no_namespace() -> None:
    # bolt creates a namespace's buckets only in a write transaction that commits: a View,
    # or an Update that returns an error, leaves no trace (metadata/content.go, leases.go,
    # images.go, snapshot.go).
    db = DB(ManualClock(1.0))
    content, leases, images = ContentStore(db), LeaseManager(db), ImageStore(db)
    sn = MetadataSnapshotter(db, "native", MemorySnapshotter(clock=db.clock))
    fresh, gone = Ctx("fresh"), Ctx("fresh", "no-such-lease")
    digest = digest_of(b"x")
    calls: list[Callable[[], object]] = [
        lambda: content.info(fresh, digest),
        lambda: content.delete(fresh, digest),
        lambda: content.status(fresh, "ref"),
        lambda: content.writer(gone, ref="ref"),
        lambda: leases.delete(fresh, "l"),
        lambda: leases.list_resources(fresh, "l"),
        lambda: images.get(fresh, "x"),
        lambda: images.delete(fresh, "x"),
        lambda: sn.stat(fresh, "k"),
        lambda: sn.prepare(fresh, "k", "missing-parent"),
    ]
    for call in calls:
        with contextlib.suppress(ContainerdError):
            call()
    content.walk(fresh, lambda info: None)
    assert leases.list(fresh) == [] and images.list(fresh) == []
    assert db.namespaces == {}
    leases.create(fresh, id="l")
    assert list(db.namespaces) == ["fresh"]
