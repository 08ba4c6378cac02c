"""GC benchmark: the model's mark, the graph build and each invariant on generated states.

States of about 1k, 10k and 100k graph nodes (records plus backend objects) are built
deterministically: images whose manifests reference a config and layers, configs that
reference the top of a snapshot chain, containers, leases (plain, flat, expired), ingests and
unreferenced garbage, over two namespaces and two snapshotters.  Each step is timed on its
own (best of a few runs, ``time.perf_counter``) and reported per node.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

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
from unpacksim.model.oci import MEDIA_TYPE_OCI_MANIFEST, Descriptor
from unpacksim.properties import graph as gr
from unpacksim.properties import invariants as inv

SIZES = (1_000, 10_000, 100_000)
_REACHABLE = "reachable (networkx graph)"
LAYERS = 3


class _Blobs:
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


class _Snapshots:
    def __init__(self) -> None:
        self.tree: dict[str, str] = {}

    def backend_tree(self) -> list[tuple[str, str]]:
        return list(self.tree.items())

    def backend_remove(self, backend_key: str) -> None:
        self.tree.pop(backend_key, None)


class _Generator:
    def __init__(self) -> None:
        self.db = DB(ManualClock(1000.0))
        self.blobs = _Blobs()
        self.snapshots = {"overlayfs": _Snapshots(), "native": _Snapshots()}
        self.db.content_backend = self.blobs
        self.db.snapshot_backends.update(self.snapshots)
        self.stacks: list[list[str]] = []
        self.nodes = 0  # graph nodes so far: records plus backend objects

    def blob(self, ns: str, digest: str, labels: dict[str, str]) -> None:
        self.db.namespace(ns).content[digest] = BlobRecord(digest, 1, labels)
        self.blobs.blobs[digest] = None
        self.nodes += 2

    def snapshot(self, ns: str, sn: str, name: str, parent: str) -> None:
        records = self.db.namespace(ns).snapshotter(sn)
        key = f"{ns}/{self.db.next_seq()}/{name}"
        parent_key = records[parent].backend_key if parent else ""
        records[name] = SnapshotRecord(name, Kind.COMMITTED, parent, key)
        self.snapshots[sn].tree[key] = parent_key
        self.nodes += 2

    def image_set(self, i: int) -> None:
        ns = f"ns{i % 2}"
        sn = "overlayfs" if i % 3 else "native"
        diff_ids = [digest_of(f"diff-{i % 50}-{j}".encode()) for j in range(LAYERS)]
        chain = chain_ids(diff_ids)
        self.stacks.append(diff_ids)
        for j, cid in enumerate(chain):
            if cid not in self.db.namespace(ns).snapshotter(sn):
                self.snapshot(ns, sn, cid, chain[j - 1] if j else "")
        config = digest_of(f"config-{i}".encode())
        self.blob(ns, config, {f"containerd.io/gc.ref.snapshot.{sn}": chain[-1]})
        layers = [digest_of(f"layer-{i}-{j}".encode()) for j in range(LAYERS)]
        for layer in layers:
            self.blob(ns, layer, {"containerd.io/uncompressed": diff_ids[0]})
        refs = {"containerd.io/gc.ref.content.0": config}
        refs.update({f"containerd.io/gc.ref.content.{j + 1}": d for j, d in enumerate(layers)})
        manifest = digest_of(f"manifest-{i}".encode())
        self.blob(ns, manifest, refs)
        target = Descriptor(MEDIA_TYPE_OCI_MANIFEST, manifest, 1)
        self.db.namespace(ns).images[f"image-{i}"] = ImageRecord(f"image-{i}", target)
        self.nodes += 1
        self.extras(i, ns, sn, chain, layers)

    def extras(self, i: int, ns: str, sn: str, chain: list[str], layers: list[str]) -> None:
        space = self.db.namespace(ns)
        if i % 4 == 0:
            space.containers[f"c-{i}"] = ContainerRecord(f"c-{i}", sn, chain[-1])
        lease = LeaseRecord(f"lease-{i}")
        lease.resources[("content", layers[0])] = None
        lease.resources[(f"snapshots/{sn}", chain[0])] = None
        if i % 5 == 0:
            lease.labels["containerd.io/gc.flat"] = "x"
        if i % 7 == 0:
            lease.labels["containerd.io/gc.expire"] = format_rfc3339(0.0)
        space.leases[lease.id] = lease
        ref = f"ingest-{i}"
        space.ingests[ref] = IngestRecord(ref, f"b-{ref}", expire_at=2000.0 if i % 2 else None)
        self.blobs.ingests[f"b-{ref}"] = None
        self.blob(ns, digest_of(f"garbage-{i}".encode()), {})
        self.blobs.blobs[digest_of(f"orphan-{i}".encode())] = None
        self.nodes += 4 + (1 if i % 4 == 0 else 0)  # lease, ingest x2, orphan, container


def generate(nodes: int) -> tuple[DB, list[list[str]]]:
    """A state of about ``nodes`` graph nodes, and the layer stacks its images unpacked."""
    gen = _Generator()
    i = 0
    while gen.nodes < nodes:
        gen.image_set(i)
        i += 1
    return gen.db, gen.stacks


def _best(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best = float("inf")
    result: Any = None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def measure(nodes: int, repeat: int = 3) -> list[tuple[str, int, float]]:
    """(step, graph nodes, seconds) for every step on a generated state of about ``nodes``."""
    db, stacks = generate(nodes)
    build_s, graph = _best(lambda: gr.build_graph(db), repeat)
    size = graph.number_of_nodes()
    mark_s, marked = _best(lambda: gc.mark(db), repeat)
    steps: list[tuple[str, Callable[[], Any]]] = [
        (_REACHABLE, lambda: gr.reachable(graph)),
        ("gc-oracle", lambda: inv.gc_oracle(db, graph, marked)),
        ("metadata-backend-agree", lambda: inv.metadata_backend_agree(graph)),
        ("snapshot-parents-forest", lambda: inv.snapshot_parents_forest(graph)),
        ("chain-id-parents", lambda: inv.chain_id_parents(graph, stacks)),
        ("no-harmful-dangling", lambda: inv.no_harmful_dangling(graph)),
        ("collection-removed-unreachable", lambda: inv.collection_removed_unreachable(graph)),
    ]
    out = [("build_graph", size, build_s), ("gc.mark", size, mark_s)]
    for name, fn in steps:
        seconds, violations = _best(fn, repeat)
        if name in ("gc-oracle", "metadata-backend-agree", "snapshot-parents-forest"):
            assert not violations, f"{name} failed on a generated state: {violations[:1]}"
        out.append((name, size, seconds))
    return out


def run(quick: bool) -> str:
    """The Markdown table of every step at each size (1k only when ``quick``)."""
    sizes = SIZES[:1] if quick else SIZES
    lines = [
        "| step | nodes | total | per node |",
        "| --- | ---: | ---: | ---: |",
    ]
    for nodes in sizes:
        rows = measure(nodes, repeat=1 if quick else 3)
        # The checks proper: the mark and every invariant (reachable is inside the oracle).
        total = sum(s for name, _, s in rows if name not in ("build_graph", _REACHABLE))
        rows.append(("mark + all checks", rows[0][1], total))
        for name, size, seconds in rows:
            per_node = seconds / size * 1e6
            lines.append(f"| {name} | {size} | {seconds * 1e3:.1f} ms | {per_node:.2f} us |")
    return "\n".join(lines)
