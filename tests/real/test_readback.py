"""A harness dump becomes the model's records; the invariants run on them (no daemon)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from unpacksim.model.clock import parse_rfc3339
from unpacksim.model.db import Kind
from unpacksim.properties.invariants import check_state
from unpacksim.real.readback import (
    ObservedContentBackend,
    ReadOnlyBackendError,
    dump_to_db,
    observe_content_backend,
)

C0 = "sha256:" + "a" * 64
C1 = "sha256:" + "b" * 64
MANIFEST = "sha256:" + "c" * 64
NOW = "2026-11-28T03:28:02.884430781Z"


def dump() -> dict[str, Any]:
    return {
        "namespace": "default",
        "now": NOW,
        "content": [
            {"digest": MANIFEST, "size": 700, "created_at": NOW, "updated_at": "",
             "labels": {"containerd.io/gc.ref.content.l.0": C0}},
        ],
        "ingests": [
            {"ref": f"layer-{C0}", "offset": 61, "total": 122, "expected": "",
             "started_at": NOW, "updated_at": NOW},
        ],
        "snapshots": {"native": [
            {"name": C0, "parent": "", "kind": "committed", "labels": None,
             "created_at": NOW, "updated_at": NOW},
            {"name": C1, "parent": C0, "kind": "committed",
             "labels": {"containerd.io/snapshot.ref": C1}, "created_at": NOW, "updated_at": NOW},
            {"name": f"extract-1-abcd {C1}", "parent": C0, "kind": "active", "labels": {},
             "created_at": NOW, "updated_at": NOW},
        ]},
        "leases": [
            {"id": "1-abcd", "created_at": NOW, "labels": {"containerd.io/gc.expire": NOW},
             "resources": [{"type": "snapshots/native", "id": f"extract-1-abcd {C1}"}]},
        ],
        "images": [
            {"name": "127.0.0.1:1/app:v1", "labels": None, "created_at": NOW, "updated_at": NOW,
             "target": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": MANIFEST, "size": 700}},
        ],
    }  # fmt: skip


def test_dump_becomes_records() -> None:
    backend = ObservedContentBackend((MANIFEST,), (f"default/7/layer-{C0}", "other/1/x"))
    db = dump_to_db(dump(), content_backend=backend)
    assert db.now() == parse_rfc3339(NOW)
    ns = db.namespace("default")
    assert ns.content[MANIFEST].labels == {"containerd.io/gc.ref.content.l.0": C0}
    assert ns.ingests[f"layer-{C0}"].backend_ref == f"default/7/layer-{C0}"
    snaps = ns.snapshotter("native")
    assert snaps[C1].parent == C0 and snaps[C1].kind is Kind.COMMITTED
    assert list(snaps[C0].children) == [C1, f"extract-1-abcd {C1}"]
    assert snaps[C0].labels == {} and snaps[C0].backend_key == ""
    lease = ns.leases["1-abcd"]
    assert list(lease.resources) == [("snapshots/native", f"extract-1-abcd {C1}")]
    image = ns.images["127.0.0.1:1/app:v1"]
    assert image.target.digest == MANIFEST and image.labels == {}
    assert db.content_backend is backend


def test_invariants_run_on_a_readback_and_see_a_broken_one() -> None:
    db = dump_to_db(dump())
    assert check_state(db) == []
    broken = dump()
    broken["snapshots"]["native"] = broken["snapshots"]["native"][1:]  # C1 loses its parent
    violations = check_state(dump_to_db(broken))
    assert violations and any(C0 in str(v) for v in violations)


def test_backend_is_observed_from_the_content_store_layout(tmp_path: Path) -> None:
    store = tmp_path / "io.containerd.content.v1.content"
    (store / "blobs" / "sha256").mkdir(parents=True)
    (store / "blobs" / "sha256" / ("b" * 64)).write_bytes(b"x")
    (store / "blobs" / "sha256" / ("a" * 64)).write_bytes(b"y")
    ingest = store / "ingest" / hashlib.sha256(b"default/3/layer-x").hexdigest()
    ingest.mkdir(parents=True)
    (ingest / "ref").write_text("default/3/layer-x")
    observed = observe_content_backend(tmp_path)
    assert observed.backend_digests() == [C0, C1]
    assert observed.backend_ingests() == ["default/3/layer-x"]
    assert observe_content_backend(tmp_path / "missing") == ObservedContentBackend()
    with pytest.raises(ReadOnlyBackendError, match="observation"):
        observed.backend_delete(C0)
    with pytest.raises(ReadOnlyBackendError, match="observation"):
        observed.backend_abort("default/3/layer-x")
