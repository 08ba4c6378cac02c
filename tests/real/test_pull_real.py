"""The Go harness against a real daemon: pulls, readback, label layout, GC, errors."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from unpacksim.model.builders import build_image
from unpacksim.model.db import Kind
from unpacksim.model.digest import chain_ids
from unpacksim.model.labels import GC_REF_CONTENT, UNCOMPRESSED, snapshot_gc_label
from unpacksim.properties.invariants import check_state
from unpacksim.real.daemon import Daemon
from unpacksim.real.harness import Harness, HarnessError, PullRequest
from unpacksim.real.readback import read_back
from unpacksim.real.registry import Effect, Registry, RegistryFault

pytestmark = pytest.mark.real

IMAGE = build_image(
    "app:v1",
    [{"etc/os-release": b"ID=t\n"}, {"lib/x": bytes(range(256)) * 4}, {"app/run": b"r" * 999}],
)


@dataclass
class Env:
    daemon: Daemon
    registry: Registry
    harness: Harness

    def ref(self) -> str:
        return self.registry.ref("app", "v1")

    def dump(self) -> dict[str, Any]:
        return self.harness.dump()


@pytest.fixture
def env(harness_binary: Path) -> Iterator[Env]:
    with Daemon() as daemon, Registry() as registry:
        registry.add_image("app", "v1", IMAGE)
        yield Env(daemon, registry, Harness(daemon.address, binary=harness_binary, timeout=60))


def labels_of(dump: dict[str, Any], digest: str) -> dict[str, str]:
    for c in dump["content"]:
        if c["digest"] == digest:
            return dict(c["labels"] or {})
    raise AssertionError(f"{digest} not in the content store")


def typed(key: str) -> str:
    """A label key with digests and indexes blanked, to compare layouts."""
    return re.sub(r"\.\d+$", ".<i>", key)


def test_pull_produces_the_model_chain_ids(env: Env) -> None:
    (report,) = env.harness.pull([PullRequest(env.ref())])
    assert report.outcome.ok, report.outcome
    assert report.image is not None and report.image["target"]["digest"] == IMAGE.target.digest
    image = IMAGE.single
    snaps = {s["name"]: s for s in env.dump()["snapshots"]["native"]}
    expected = chain_ids(image.diff_ids)
    assert sorted(snaps) == sorted(expected)
    for parent, child in zip(["", *expected], expected, strict=False):
        assert snaps[child]["parent"] == parent and snaps[child]["kind"] == "committed"
        assert snaps[child]["labels"] == {"containerd.io/snapshot.ref": child}


def test_label_layout_matches_the_observed_vectors(
    env: Env, chainid_vectors: dict[str, Any]
) -> None:
    env.harness.pull([PullRequest(env.ref())])
    dump, image = env.dump(), IMAGE.single
    manifest = labels_of(dump, image.manifest.digest)
    manifest_refs = {k: v for k, v in manifest.items() if k.startswith(GC_REF_CONTENT)}
    assert manifest_refs == {
        f"{GC_REF_CONTENT}.config": image.config.digest,
        **{f"{GC_REF_CONTENT}.l.{i}": d.digest for i, d in enumerate(image.layers)},
    }
    config = labels_of(dump, image.config.digest)
    assert config[snapshot_gc_label("native")] == chain_ids(image.diff_ids)[-1]
    for layer, diff_id in zip(image.layers, image.diff_ids, strict=True):
        assert labels_of(dump, layer.digest)[UNCOMPRESSED] == diff_id
    # The same key layout as the vectors observed on containerd 1.6.20.
    vectors = chainid_vectors["content_labels"]
    vector_manifest = next(v for k, v in vectors.items() if k.startswith("manifest "))
    assert {typed(k) for k in manifest_refs} == {typed(k) for k in vector_manifest}
    assert len(vector_manifest) == len(manifest_refs)
    vector_config = next(v for k, v in vectors.items() if k.startswith("config "))
    assert set(vector_config) == {k for k in config if k.startswith("containerd.io/gc.")}


def test_discard_writes_no_layer_labels(env: Env) -> None:
    env.harness.pull([PullRequest(env.ref(), discard=True)])
    manifest = labels_of(env.dump(), IMAGE.single.manifest.digest)
    assert [k for k in manifest if k.startswith(GC_REF_CONTENT)] == [f"{GC_REF_CONTENT}.config"]


def test_concurrent_pulls_each_report_in_order(env: Env) -> None:
    reports = env.harness.pull([PullRequest(env.ref()) for _ in range(2)])
    assert [r.outcome.ok for r in reports] == [True, True]
    assert len(env.dump()["snapshots"]["native"]) == 3  # one per chain ID, losers aborted


def test_manual_gc_keeps_leftovers_until_asked(env: Env) -> None:
    layer = IMAGE.single.layers[1].digest
    env.registry.arm(RegistryFault(Effect.ERROR, digest=layer))
    (report,) = env.harness.pull([PullRequest(env.ref(), max_concurrent_downloads=1)])
    assert report.outcome.error_class == "other" and "500" in report.outcome.message
    env.registry.arm()
    left = env.dump()
    assert left["leases"] == []  # the pull's lease is gone ...
    assert any(s["kind"] == "active" for s in left["snapshots"]["native"])  # ... not its work
    env.harness.delete_image("nothing")  # another deletion: still no collection
    assert env.dump()["snapshots"]["native"] == left["snapshots"]["native"]
    env.harness.gc()
    after = env.dump()
    assert after["snapshots"]["native"] == [] and after["content"] == []
    assert after["ingests"] == []


def test_readback_is_a_db_the_invariants_accept(env: Env) -> None:
    env.harness.create_lease("user", expire="1h")
    env.harness.pull([PullRequest(env.ref(), lease="user")])
    back = read_back(env.harness, root=env.daemon.root)
    ns = back.db.namespace("default")
    assert list(ns.images) == [env.ref()]
    assert {s.kind for s in ns.snapshotter("native").values()} == {Kind.COMMITTED}
    lease = ns.leases["user"]
    assert ("content", IMAGE.target.digest) in lease.resources
    assert "containerd.io/gc.expire" in lease.labels
    backend = back.db.content_backend
    assert backend is not None and sorted(backend.backend_digests()) == sorted(IMAGE.blobs)
    assert check_state(back.db) == []


def test_truncated_fetch_leaves_a_resumable_ingest(env: Env) -> None:
    layer = IMAGE.single.layers[2]
    env.registry.arm(RegistryFault(Effect.TRUNCATE, digest=layer.digest, keep=100))
    env.harness.pull([PullRequest(env.ref(), max_concurrent_downloads=1)])
    back = read_back(env.harness, root=env.daemon.root)
    assert back.ingest_offsets[f"layer-{layer.digest}"] == (100, layer.size)
    ingest = back.db.namespace("default").ingests[f"layer-{layer.digest}"]
    assert ingest.backend_ref.startswith("default/") and ingest.backend_ref.endswith(ingest.ref)
    env.registry.arm()
    (report,) = env.harness.pull([PullRequest(env.ref())])
    assert report.outcome.ok
    resumed = [r for r in env.registry.requests() if r.digest == layer.digest][-1]
    assert (resumed.status, resumed.offset) == (206, 100)


def test_containerd_errors_are_outcomes_with_their_class(env: Env) -> None:
    missing = env.harness.delete_image("nope")
    assert (missing.ok, missing.error_class, missing.message) == (
        False, "NotFound", 'image "nope": not found'
    )  # fmt: skip
    assert env.harness.create_lease("l").ok
    again = env.harness.create_lease("l")
    assert (again.error_class, again.message) == ("AlreadyExists", 'lease "l": already exists')
    assert env.harness.delete_lease("l", sync=True).ok
    assert env.harness.delete_lease("l").error_class == "NotFound"
    (unknown,) = env.harness.pull([PullRequest(env.registry.ref("app", "v9"))])
    assert unknown.outcome.error_class == "NotFound"
    assert unknown.outcome.message.startswith(f'failed to resolve reference "{env.ref()[:-2]}v9"')


def test_a_harness_without_daemon_fails_clearly(harness_binary: Path, tmp_path: Path) -> None:
    harness = Harness(str(tmp_path / "none.sock"), binary=harness_binary, timeout=1)
    with pytest.raises(HarnessError, match=r"exit 3\): harness: connect to"):
        harness.version()


def test_an_unknown_operation_is_refused(env: Env) -> None:
    with pytest.raises(HarnessError, match=r"exit 4\): harness: x: unknown operation"):
        env.harness.call("x")
