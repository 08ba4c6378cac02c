"""Reading a real daemon's state back into the model's records (``unpacksim.model.db.DB``).

The harness's ``dump`` (client API: content ``Walk`` and ``ListStatuses``, snapshot ``Walk``
per snapshotter, leases with their resources, images) becomes a :class:`DB` with one
namespace, so the graph builder (``unpacksim.properties.graph``) and the invariants run on
it unchanged.  What the client API does not show, and how it is filled in:

- the content backend is observed from the daemon's root on disk
  (``io.containerd.content.v1.content/blobs/sha256/*`` and ``ingest/*/ref``, the layout of
  ``content/local/store.go``) and registered as a read-only :class:`ObservedContentBackend`;
- an ingest's backend ref is the observed backend ref ``<ns>/<id>/<ref>``
  (``metadata/content.go`` ``createKey``) that ends with its ref;
- an ingest's ``expire_at`` is not exposed; pulls ingest under a lease, which sets none;
- snapshot backend keys (``<ns>/<seq>/<name>``) live in the native snapshotter's bolt file,
  which the running daemon locks; they are left empty and no snapshot backend is registered,
  so backend checks on snapshots see "not observed" rather than "absent";
- record times are the daemon's wall-clock times on the model's scale (seconds since
  ``clock.EPOCH``); the DB's clock stands at the dump's ``now`` so lease expiry is judged as
  the daemon would judge it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unpacksim.model.clock import ManualClock, parse_rfc3339
from unpacksim.model.db import (
    DB,
    BlobRecord,
    ImageRecord,
    IngestRecord,
    Kind,
    LeaseRecord,
    SnapshotRecord,
)
from unpacksim.model.oci import Descriptor, Platform
from unpacksim.real.harness import Harness

__all__ = [
    "ObservedContentBackend",
    "ReadBack",
    "dump_to_db",
    "observe_content_backend",
    "read_back",
]

_CONTENT_DIR = "io.containerd.content.v1.content"


class ReadOnlyBackendError(RuntimeError):
    """Something tried to change an observed backend (a GC run against a read-back DB)."""


@dataclass(frozen=True)
class ObservedContentBackend:
    """The content backend as found on disk (``db.ContentBackend``, read-only)."""

    digests: tuple[str, ...] = ()
    ingests: tuple[str, ...] = ()

    def backend_digests(self) -> list[str]:
        return list(self.digests)

    def backend_ingests(self) -> list[str]:
        return list(self.ingests)

    def backend_delete(self, digest: str) -> None:
        raise ReadOnlyBackendError(
            f"cannot delete {digest}: a read-back backend is an observation of a real daemon; "
            "run GC on the daemon (Harness.gc) and read back again"
        )

    def backend_abort(self, backend_ref: str) -> None:
        raise ReadOnlyBackendError(
            f"cannot abort {backend_ref}: a read-back backend is an observation; "
            "abort on the daemon and read back again"
        )


def observe_content_backend(root: Path) -> ObservedContentBackend:
    """The blobs and ingests in the content store under the daemon's ``root``."""
    store = root / _CONTENT_DIR
    blobs = store / "blobs" / "sha256"
    digests = sorted(f"sha256:{p.name}" for p in blobs.iterdir()) if blobs.is_dir() else []
    refs: list[str] = []
    ingest_dir = store / "ingest"
    if ingest_dir.is_dir():
        for entry in sorted(ingest_dir.iterdir()):
            ref_file = entry / "ref"
            if ref_file.is_file():
                refs.append(ref_file.read_text())
    return ObservedContentBackend(tuple(digests), tuple(sorted(refs)))


def _time(value: object) -> float:
    parsed = parse_rfc3339(str(value)) if value else None
    return parsed if parsed is not None else 0.0


def _labels(value: object) -> dict[str, str]:
    if not value:
        return {}
    assert isinstance(value, Mapping)
    return {str(k): str(v) for k, v in sorted(value.items())}


def _descriptor(data: Mapping[str, Any]) -> Descriptor:
    platform = data.get("platform")
    return Descriptor(
        media_type=str(data["mediaType"]),
        digest=str(data["digest"]),
        size=int(data["size"]),
        annotations=_labels(data.get("annotations")),
        platform=(
            Platform(platform["os"], platform["architecture"], platform.get("variant", ""))
            if platform
            else None
        ),
    )


def _backend_ref(namespace: str, ref: str, observed: Sequence[str]) -> str:
    for bref in observed:
        if bref.startswith(namespace + "/") and bref.endswith("/" + ref):
            return bref
    return ""


def _add_snapshots(db: DB, namespace: str, snapshots: Mapping[str, Any]) -> None:
    ns = db.namespace(namespace)
    for snapshotter, infos in snapshots.items():
        records = ns.snapshotter(snapshotter)
        for info in infos:
            records[info["name"]] = SnapshotRecord(
                name=info["name"],
                kind=Kind(info["kind"]),
                parent=info["parent"],
                backend_key="",
                labels=_labels(info["labels"]),
                created_at=_time(info["created_at"]),
                updated_at=_time(info["updated_at"]),
            )
        for name, record in records.items():
            parent = records.get(record.parent)
            if parent is not None:
                parent.children[name] = None


def dump_to_db(
    dump: Mapping[str, Any], *, content_backend: ObservedContentBackend | None = None
) -> DB:
    """The harness's ``dump`` as a :class:`DB` (one namespace; see the module docstring)."""
    db = DB(clock=ManualClock(_time(dump["now"])))
    namespace = str(dump["namespace"])
    ns = db.namespace(namespace)
    observed = content_backend.ingests if content_backend is not None else ()
    for c in dump["content"]:
        ns.content[c["digest"]] = BlobRecord(
            c["digest"], int(c["size"]), _labels(c["labels"]), _time(c["created_at"]),
            _time(c["updated_at"]),
        )  # fmt: skip
    for i in dump["ingests"]:
        expected = i["expected"] if i["expected"] else ""
        ns.ingests[i["ref"]] = IngestRecord(
            i["ref"], _backend_ref(namespace, i["ref"], observed), expected
        )
    _add_snapshots(db, namespace, dump["snapshots"])
    for lease in dump["leases"]:
        record = LeaseRecord(lease["id"], _time(lease["created_at"]), _labels(lease["labels"]))
        for r in lease["resources"]:
            record.resources[(r["type"], r["id"])] = None
        ns.leases[lease["id"]] = record
    for img in dump["images"]:
        ns.images[img["name"]] = ImageRecord(
            img["name"], _descriptor(img["target"]), _labels(img["labels"]),
            _time(img.get("created_at")), _time(img.get("updated_at")),
        )  # fmt: skip
    if content_backend is not None:
        db.content_backend = content_backend
    return db


@dataclass(frozen=True)
class ReadBack:
    """One read-back: the DB, the raw dump it came from, and ingest progress.

    ``ingest_offsets`` maps an ingest ref to ``(offset, total)``: how much of a blob a failed
    fetch left behind (the model's ``IngestRecord`` does not carry it).
    """

    db: DB
    dump: Mapping[str, Any]
    ingest_offsets: Mapping[str, tuple[int, int]]


def read_back(
    harness: Harness, *, root: Path | None, snapshotters: Sequence[str] = ("native",)
) -> ReadBack:
    """Dump the daemon through ``harness`` and convert it; observe the backend under ``root``.

    ``root`` is the daemon's root directory (``Daemon.root``); None skips the backend.

    Raises:
        HarnessError: the dump failed.
    """
    dump = harness.dump(snapshotters)
    backend = observe_content_backend(root) if root is not None else None
    offsets = {i["ref"]: (int(i["offset"]), int(i["total"])) for i in dump["ingests"]}
    return ReadBack(dump_to_db(dump, content_backend=backend), dump, offsets)
