"""Label strings containerd gives meaning to (seed commit; see containerd-semantics.md §2.1)."""

from __future__ import annotations

GC_ROOT = "containerd.io/gc.root"
GC_REF_CONTENT = "containerd.io/gc.ref.content"
GC_REF_SNAPSHOT_PREFIX = "containerd.io/gc.ref.snapshot."
GC_EXPIRE = "containerd.io/gc.expire"
GC_FLAT = "containerd.io/gc.flat"

SNAPSHOT_REF = "containerd.io/snapshot.ref"
SNAPSHOT_INHERIT_PREFIX = "containerd.io/snapshot/"
UNCOMPRESSED = "containerd.io/uncompressed"
DISTRIBUTION_SOURCE_PREFIX = "containerd.io/distribution.source."


def snapshot_gc_label(snapshotter: str) -> str:
    """``containerd.io/gc.ref.snapshot.<snapshotter>`` (unpacker.go, after the layer loop)."""
    return GC_REF_SNAPSHOT_PREFIX + snapshotter


def filter_inherited_labels(labels: dict[str, str] | None) -> dict[str, str]:
    """``snapshots.FilterInheritedLabels``: keep ``snapshot.ref`` and ``containerd.io/snapshot/*``."""
    if not labels:
        return {}
    return {
        k: v
        for k, v in labels.items()
        if k == SNAPSHOT_REF or k.startswith(SNAPSHOT_INHERIT_PREFIX)
    }
