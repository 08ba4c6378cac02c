"""Canonical forms and the comparison of two runs (pure data; no daemon)."""

from __future__ import annotations

from unpacksim.model.db import DB, BlobRecord, ImageRecord, Kind, LeaseRecord, SnapshotRecord
from unpacksim.model.oci import MEDIA_TYPE_OCI_MANIFEST, Descriptor
from unpacksim.real.compare import compare_runs, compare_states
from unpacksim.real.outcome import (
    DISTRIBUTION_SOURCE,
    Outcome,
    ScenarioRun,
    StepRecord,
    canonical_state,
    message_shape,
)
from unpacksim.real.scenarios import CreateLease, ImageSpec, Pull, PullStep, Scenario

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
HOST = "127.0.0.1:40001"


def state(*, host: str, extract: str, lease: str, source: str = "app") -> DB:
    db = DB()
    ns = db.namespace("default")
    ns.content[D1] = BlobRecord(
        D1, 10, {"containerd.io/distribution.source.127.0.0.1": source, "x": "1"}
    )
    snaps = ns.snapshotter("native")
    snaps[D2] = SnapshotRecord(D2, Kind.COMMITTED, "", "", {})
    snaps[f"extract-{extract} {D2}"] = SnapshotRecord(f"extract-{extract} {D2}", Kind.ACTIVE,
                                                       "", "", {})  # fmt: skip
    record = LeaseRecord(lease, labels={"containerd.io/gc.expire": "2026-01-01T00:00:00Z"})
    record.resources[("snapshots/native", f"extract-{extract} {D2}")] = None
    ns.leases[lease] = record
    ns.leases["user"] = LeaseRecord("user")
    ns.images[f"{host}/app:v1"] = ImageRecord(
        f"{host}/app:v1", Descriptor(MEDIA_TYPE_OCI_MANIFEST, D1, 10)
    )
    return db


def test_random_names_and_hosts_are_canonical() -> None:
    a = canonical_state(state(host=HOST, extract="123-AbC_", lease="99-xY-z"),
                        registry_host=HOST, keep=("user",))  # fmt: skip
    b = canonical_state(state(host="reg.test", extract="7-zzzz", lease="5-a_b-"),
                        registry_host="reg.test", keep=("user",))  # fmt: skip
    assert a == b
    ns = a["default"]
    assert f"extract-<unique> {D2}" in [s["name"] for s in ns["snapshots"]["native"]]
    assert sorted(lease["id"] for lease in ns["leases"]) == ["<random>", "user"]
    random_lease = next(x for x in ns["leases"] if x["id"] == "<random>")
    assert random_lease["labels"] == {"containerd.io/gc.expire": "<time>"}
    assert random_lease["resources"] == [["snapshots/native", f"extract-<unique> {D2}"]]
    assert list(ns["images"]) == ["<registry>/app:v1"]
    assert ns["content"][D1]["labels"][DISTRIBUTION_SOURCE] == "app"


def test_a_real_difference_survives_canonicalization() -> None:
    a = canonical_state(state(host=HOST, extract="1-aaaa", lease="1-bbbb"), registry_host=HOST)
    other = state(host=HOST, extract="1-aaaa", lease="1-bbbb")
    other.namespace("default").content[D1].labels["x"] = "2"
    del other.namespace("default").snapshotter("native")[D2]
    b = canonical_state(other, registry_host=HOST)
    where = [d.where for d in compare_states(a, b)]
    assert where == [f"default content {D1}", "default snapshots/native"]


def test_racy_labels_are_masked() -> None:
    a = state(host=HOST, extract="1-aaaa", lease="1-bbbb", source="app,other")
    b = state(host=HOST, extract="1-aaaa", lease="1-bbbb", source="other")
    racy = (DISTRIBUTION_SOURCE,)
    assert canonical_state(a, registry_host=HOST) != canonical_state(b, registry_host=HOST)
    assert canonical_state(a, registry_host=HOST, racy=racy) == canonical_state(
        b, registry_host=HOST, racy=racy
    )


def test_message_shape_hides_host_and_extraction_keys() -> None:
    message = (
        f'failed to prepare extraction snapshot "extract-1234-Ab_- {D2}": parent of '
        f"http://{HOST}/v2/app/blobs/{D1}: not found"
    )
    assert message_shape(message, registry_host=HOST) == (
        f'failed to prepare extraction snapshot "extract-<unique> {D2}": parent of '
        f"http://<registry>/v2/app/blobs/{D1}: not found"
    )


SCENARIO = Scenario(
    "s", "t", {"l": {"f": b"x"}}, (ImageSpec("app", layers=("l",)),),
    (CreateLease("user"), PullStep((Pull("app:v1"),))),
)  # fmt: skip


def run(side: str, host: str, outcome: Outcome, db: DB) -> ScenarioRun:
    steps = (
        StepRecord(0, "create_lease", (Outcome(True),), ("ok",)),
        StepRecord(1, "pull", (outcome,), ("ok",)),
    )
    return ScenarioRun("s", side, host, steps, db)


def test_compare_runs_checks_outcomes_then_states() -> None:
    db_a = state(host=HOST, extract="1-aaaa", lease="1-bbbb")
    db_b = state(host="reg.test", extract="2-cccc", lease="2-dddd")
    ok_a, ok_b = run("real", HOST, Outcome(True), db_a), run("ref", "reg.test", Outcome(True), db_b)
    same = compare_runs(SCENARIO, ok_a, ok_b)
    assert same.agrees and same.findings == () and same.left_state == same.right_state
    failed = Outcome(False, "NotFound", f"content at http://{HOST}/v2/x: not found")
    diff = compare_runs(SCENARIO, run("real", HOST, failed, db_a), ok_b)
    assert [d.where for d in diff.divergences] == ["step 1 pull 0"]
    assert diff.divergences[0].left == ("NotFound", "content at http://<registry>/v2/x: not found")
    assert ok_a.unexpected() == []
    assert run("real", HOST, failed, db_a).unexpected() == [
        f"step 1 (pull): expected ['ok'], got ['NotFound: content at http://{HOST}/v2/x: not found']"
    ]
