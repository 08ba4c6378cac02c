"""Leases: ``metadata/leases_test.go`` (TestLeases, TestLeasesList, TestLeaseResource) and more."""

from __future__ import annotations

import pytest

from unpacksim.model.clock import ManualClock, parse_rfc3339
from unpacksim.model.context import Ctx
from unpacksim.model.db import DB, Resource
from unpacksim.model.errdefs import (
    AlreadyExists,
    ContainerdError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    NotImplementedYet,
    Unknown,
)
from unpacksim.model.labels import GC_EXPIRE, GC_FLAT
from unpacksim.model.leases import LeaseManager, expiration_labels, flat_labels

CTX = Ctx("ns1")
DIGEST = "sha256:29f5d56d12684887bdfa50dcd29fc31eea4aaf4ad3bec43daf19026a7ce69912"


@pytest.fixture
def db() -> DB:
    return DB(ManualClock(50.0))


@pytest.fixture
def lm(db: DB) -> LeaseManager:
    return LeaseManager(db)


def test_create_list_delete(lm: LeaseManager, db: DB) -> None:
    lease = lm.create(CTX, id="l1", labels={"a": "1", "empty": ""})
    assert (lease.id, lease.created_at, lease.labels) == ("l1", 50.0, {"a": "1"})
    assert [x.id for x in lm.list(CTX)] == ["l1"]
    assert lm.list(Ctx("ns2")) == []
    with pytest.raises(AlreadyExists) as info:
        lm.create(CTX, id="l1")
    assert str(info.value) == 'lease "l1": already exists'
    dirty = db.dirty
    lm.delete(CTX, "l1")
    assert db.dirty == dirty + 1
    with pytest.raises(NotFound) as info2:
        lm.delete(CTX, "l1")
    assert str(info2.value) == 'lease "l1": not found'


def test_an_empty_id_is_a_plain_go_error(lm: LeaseManager) -> None:
    # metadata/leases.go returns errors.New("lease id must be provided"): no errdefs class.
    with pytest.raises(Unknown, match="lease id must be provided"):
        lm.create(CTX, id="")


def test_a_namespace_is_required(lm: LeaseManager) -> None:
    with pytest.raises(FailedPrecondition):
        lm.create(Ctx(""), id="x")


LIST_CASES = [
    ((), ["lease1", "lease2", "lease3"]),
    (("id==lease1",), ["lease1"]),
    (("id==lease1", "id==lease2"), ["lease1", "lease2"]),
    (("labels.label1",), ["lease1", "lease2", "lease3"]),
    (("labels.label1==value1",), ["lease1", "lease2"]),
    (("labels.label1==value2",), ["lease3"]),
    (("labels.label2",), ["lease3"]),
    (("labels.label2", "labels.label3"), ["lease1", "lease2", "lease3"]),
]


@pytest.mark.parametrize(("filters", "expected"), LIST_CASES)
def test_list_filters(lm: LeaseManager, filters: tuple[str, ...], expected: list[str]) -> None:
    lm.create(CTX, id="lease3", labels={"label1": "value2", "label2": "something"})
    lm.create(CTX, id="lease1", labels={"label1": "value1", "label3": "other"})
    lm.create(CTX, id="lease2", labels={"label1": "value1", "label2": "", "label3": "other"})
    assert [lease.id for lease in lm.list(CTX, *filters)] == expected


def test_a_bad_list_filter_is_wrapped_twice(lm: LeaseManager) -> None:
    with pytest.raises(InvalidArgument) as info:
        lm.list(CTX, "id==")
    assert str(info.value) == (
        "filters: parse error: [id==]: expected value or quoted: invalid argument: invalid argument"
    )


RESOURCE_CASES: list[tuple[Resource, type[ContainerdError] | None, str]] = [
    (("content", DIGEST), None, ""),
    (("ingests", "d2UdcINOwrBTQG9kS8rySAM3eMNBSojH"), None, ""),
    (("ingests", "d2UdcINOwrBTQG9kS8rySAM3eMNBSojH"), None, ""),  # adding twice is fine
    (("leases", "x"), NotImplementedYet, "resource type leases not supported yet"),
    (("containers", "x"), NotImplementedYet, "resource type containers not supported yet"),
    (("image", "x"), NotImplementedYet, "resource type image not supported yet"),
    (("snapshots", "x"), InvalidArgument, "invalid snapshot resource type snapshots"),
    (("snapshots/overlayfs", "RstMI3X8vguKoPFkmIStZ5fQFI7F1L0o"), None, ""),
    (("snapshots/overlayfs/type1", "x"), InvalidArgument, "invalid snapshot resource type"),
    (("content/x", DIGEST), InvalidArgument, "invalid resource type content/x"),
    (
        ("content", "sha256:nothex"),
        InvalidArgument,
        "invalid content resource id sha256:nothex: invalid checksum digest length",
    ),
]


def test_resource_types_are_validated(lm: LeaseManager) -> None:
    lm.create(CTX, id="l1")
    for resource, error, message in RESOURCE_CASES:
        if error is None:
            lm.add_resource(CTX, "l1", resource)
            continue
        with pytest.raises(error) as info:
            lm.add_resource(CTX, "l1", resource)
        assert message in str(info.value), resource
    assert lm.list_resources(CTX, "l1") == [
        ("content", DIGEST),
        ("ingests", "d2UdcINOwrBTQG9kS8rySAM3eMNBSojH"),
        ("snapshots/overlayfs", "RstMI3X8vguKoPFkmIStZ5fQFI7F1L0o"),
    ]
    with pytest.raises(NotFound, match='lease "non-found"'):
        lm.add_resource(CTX, "non-found", ("snapshots/overlayfs", "x"))


def test_empty_names_are_refused_as_bolt_refuses_them(lm: LeaseManager) -> None:
    # metadata/leases.go AddResource: CreateBucketIfNotExists("snapshots", <snapshotter>) and
    # Put(<id>); bolt requires non-empty bucket names and keys.
    lm.create(CTX, id="l1")
    for resource, message in [
        (("snapshots/", "k"), "bucket name required"),
        (("snapshots/native", ""), "key required"),
        (("ingests", ""), "key required"),
    ]:
        with pytest.raises(Unknown) as info:
            lm.add_resource(CTX, "l1", resource)
        assert str(info.value) == f"{message}: unknown"
    with pytest.raises(InvalidArgument, match="invalid content resource id : "):
        lm.add_resource(CTX, "l1", ("content", ""))
    assert lm.list_resources(CTX, "l1") == []
    lm.delete_resource(CTX, "l1", ("snapshots/", "k"))  # DeleteResource finds no bucket: fine


def test_resources_list_in_bolt_order_and_delete_marks_dirty(lm: LeaseManager, db: DB) -> None:
    lm.create(CTX, id="l1")
    for resource in [
        ("snapshots/native", "b"),
        ("ingests", "z"),
        ("snapshots/btrfs", "c"),
        ("content", DIGEST),
        ("snapshots/native", "a"),
    ]:
        lm.add_resource(CTX, "l1", resource)
    assert lm.list_resources(CTX, "l1") == [
        ("content", DIGEST),
        ("ingests", "z"),
        ("snapshots/btrfs", "c"),
        ("snapshots/native", "a"),
        ("snapshots/native", "b"),
    ]
    dirty = db.dirty
    lm.delete_resource(CTX, "l1", ("snapshots/native", "a"))
    lm.delete_resource(CTX, "l1", ("snapshots/native", "never-added"))
    assert db.dirty == dirty + 2  # metadata/leases.go DeleteResource bumps dirty each time
    assert ("snapshots/native", "a") not in lm.list_resources(CTX, "l1")
    with pytest.raises(NotFound):
        lm.list_resources(CTX, "nope")


def test_writes_report_mutations(lm: LeaseManager, db: DB) -> None:
    seen: list[bool] = []
    db.listeners.append(seen.append)
    lm.create(CTX, id="l1")
    lm.add_resource(CTX, "l1", ("content", DIGEST))
    lm.delete(CTX, "l1")
    assert seen == [False, False, True]


def test_expiration_and_flat_labels() -> None:
    clock = ManualClock(10.0)
    labels = expiration_labels(clock, 24 * 3600)
    assert list(labels) == [GC_EXPIRE]
    assert parse_rfc3339(labels[GC_EXPIRE]) == 10.0 + 24 * 3600
    assert labels[GC_EXPIRE] == "2020-06-22T00:00:10Z"
    assert flat_labels() == {GC_FLAT: "true"}
    with pytest.raises(ValueError, match="non-empty"):
        flat_labels("")
