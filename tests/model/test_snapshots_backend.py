"""The in-memory backend: native/storage error classes and messages, IDs, mounts, remote mode."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from unpacksim.model.clock import ManualClock
from unpacksim.model.context import Ctx, ModelContext
from unpacksim.model.errdefs import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from unpacksim.model.labels import SNAPSHOT_REF
from unpacksim.model.snapshots import Info, Kind, MemorySnapshotter, Mount

CTX = Ctx("ignored")


@pytest.fixture
def sn() -> MemorySnapshotter:
    return MemorySnapshotter(clock=ManualClock(10.0))


def chain(sn: MemorySnapshotter, *names: str) -> None:
    parent = ""
    for name in names:
        sn.prepare(CTX, f"{name}-a", parent)
        sn.commit(CTX, name, f"{name}-a")
        parent = name


def test_a_fresh_backend_has_no_buckets(sn: MemorySnapshotter) -> None:
    # snapshots/storage withBucket: NotFound "bucket does not exist" until the first create
    # commits (a refused create rolls the buckets back).
    with pytest.raises(NotFound):
        sn.prepare(CTX, "x", "gone")
    calls: list[tuple[Callable[[], object], str]] = [
        (lambda: sn.stat(CTX, "k"), "bucket does not exist"),
        (lambda: sn.usage(CTX, "k"), "bucket does not exist"),
        (lambda: sn.update(CTX, Info("k")), "bucket does not exist"),
        (lambda: sn.commit(CTX, "n", "k"), "bucket does not exist"),
        (lambda: sn.mounts(CTX, "k"), "failed to get snapshot mount: bucket does not exist"),
        (lambda: sn.remove(CTX, "k"), "failed to remove: bucket does not exist"),
        (lambda: sn.walk(CTX, lambda c, i: None), "bucket does not exist"),
    ]
    for call, message in calls:
        with pytest.raises(NotFound) as info:
            call()
        assert str(info.value) == f"{message}: not found"
    with pytest.raises(InvalidArgument):  # the filter is parsed first
        sn.walk(CTX, lambda c, i: None, "name==")
    sn.prepare(CTX, "a")
    sn.remove(CTX, "a")
    with pytest.raises(NotFound) as after:
        sn.stat(CTX, "a")
    assert str(after.value) == "snapshot does not exist: not found"


def test_commit_keeps_the_id_and_ids_are_unique(sn: MemorySnapshotter) -> None:
    sn.prepare(CTX, "a", "")
    sn.prepare(CTX, "b", "")
    first = sn.snapshots["a"].id
    sn.commit(CTX, "c", "a")
    assert sn.snapshots["c"].id == first
    assert sn.snapshots["b"].id != first
    assert "a" not in sn.snapshots


def test_mounts_are_native_bind_mounts(sn: MemorySnapshotter) -> None:
    chain(sn, "base")
    base_id = sn.snapshots["base"].id
    active = sn.prepare(CTX, "a", "base")
    view = sn.view(CTX, "v", "base")
    lone_view = sn.view(CTX, "v2", "")
    a_id, v2_id = sn.snapshots["a"].id, sn.snapshots["v2"].id
    assert active == [Mount("bind", f"/memory/snapshots/{a_id}", ("rw", "rbind"))]
    # A view of a parent mounts the parent's directory read-only.
    assert view == [Mount("bind", f"/memory/snapshots/{base_id}", ("ro", "rbind"))]
    assert lone_view == [Mount("bind", f"/memory/snapshots/{v2_id}", ("ro", "rbind"))]
    assert sn.mounts(CTX, "a") == active


@pytest.mark.parametrize(
    ("call", "cls", "message"),
    [
        (
            lambda s: s.prepare(CTX, "x", "gone"),
            NotFound,
            'failed to create snapshot: missing parent "gone" bucket: not found',
        ),
        (
            lambda s: s.view(CTX, "x", "act"),
            InvalidArgument,
            'failed to create snapshot: parent "act" is not committed snapshot: invalid argument',
        ),
        (
            lambda s: s.prepare(CTX, "act", ""),
            AlreadyExists,
            "failed to create snapshot: snapshot act: already exists",
        ),
        (
            lambda s: s.commit(CTX, "base", "act"),
            AlreadyExists,
            "failed to commit snapshot: committed snapshot base: already exists",
        ),
        (
            lambda s: s.commit(CTX, "n", "view"),
            FailedPrecondition,
            'failed to commit snapshot: snapshot "view" is not active: failed precondition',
        ),
        (lambda s: s.commit(CTX, "n", "gone"), NotFound, "snapshot does not exist: not found"),
        (
            lambda s: s.remove(CTX, "base"),
            FailedPrecondition,
            "failed to remove: cannot remove snapshot with child: failed precondition",
        ),
        (lambda s: s.remove(CTX, "gone"), NotFound, "failed to remove: snapshot gone: not found"),
        (lambda s: s.stat(CTX, "gone"), NotFound, "snapshot does not exist: not found"),
        (lambda s: s.usage(CTX, "gone"), NotFound, "snapshot does not exist: not found"),
        (
            lambda s: s.mounts(CTX, "base"),
            FailedPrecondition,
            "failed to get snapshot mount: requested snapshot base not active or view: "
            "failed precondition",
        ),
        (
            lambda s: s.update(CTX, Info("act"), "labels.a", "foo"),
            InvalidArgument,
            'cannot update "foo" field on snapshot "act": invalid argument',
        ),
        (
            lambda s: s.walk(CTX, lambda c, i: None, "name=="),
            InvalidArgument,
            "filters: parse error: [name==]: expected value or quoted: invalid argument",
        ),
    ],
)
def test_errors_have_containerds_class_and_message(
    sn: MemorySnapshotter,
    call: Callable[[MemorySnapshotter], object],
    cls: type[Exception],
    message: str,
) -> None:
    chain(sn, "base")
    sn.prepare(CTX, "act", "base")
    sn.view(CTX, "view", "base")
    with pytest.raises(cls) as info:
        call(sn)
    assert str(info.value) == message


def test_a_failed_create_changes_nothing(sn: MemorySnapshotter) -> None:
    sn.prepare(CTX, "act", "")
    before = sn.backend_tree()
    with pytest.raises(InvalidArgument):
        sn.prepare(CTX, "child", "act")
    assert sn.backend_tree() == before
    assert sn.snapshots["act"].children == {}


def test_labels_drop_empty_values_and_commit_replaces_them(sn: MemorySnapshotter) -> None:
    sn.prepare(CTX, "a", "", labels={"b": "2", "a": "1", "empty": ""})
    assert list(sn.stat(CTX, "a").labels.items()) == [("a", "1"), ("b", "2")]
    sn.commit(CTX, "c", "a", labels={"z": "9"})
    assert sn.stat(CTX, "c").labels == {"z": "9"}


def test_update_rules_and_time(sn: MemorySnapshotter) -> None:
    assert isinstance(sn.clock, ManualClock)
    sn.prepare(CTX, "a", "", labels={"l1": "v1", "l2": "v2"})
    sn.clock.advance(5)
    info = sn.update(CTX, Info("a", labels={"l1": "new", "l3": "v3"}), "labels.l1", "labels.l2")
    assert info.labels == {"l1": "new"}
    assert (info.created, info.updated) == (10.0, 15.0)
    assert sn.update(CTX, Info("a", labels={"x": "y"})).labels == {"x": "y"}
    assert sn.update(CTX, Info("a", labels={"k": "v"}), "labels").labels == {"k": "v"}


def test_walk_is_in_key_order_over_the_state_at_its_start(sn: MemorySnapshotter) -> None:
    for key in ("b", "c", "a"):
        sn.prepare(CTX, key, "")
    seen: list[str] = []

    def fn(ctx: ModelContext, info: Info) -> None:
        seen.append(info.name)
        if info.name == "a":
            sn.remove(ctx, "c")  # a bolt read transaction does not see this
            sn.prepare(ctx, "aa", "")

    sn.walk(CTX, fn)
    assert seen == ["a", "b", "c"]
    assert sorted(sn.snapshots) == ["a", "aa", "b"]


def test_walk_filters_on_kind_name_parent_and_labels(sn: MemorySnapshotter) -> None:
    chain(sn, "p")
    sn.prepare(CTX, "a", "p", labels={"l": "1"})
    sn.view(CTX, "v", "p")

    def walk(*filters: str) -> list[str]:
        seen: list[str] = []
        sn.walk(CTX, lambda c, i: seen.append(i.name), *filters)
        return seen

    assert walk("kind==view") == ["v"]
    assert walk("parent==p,labels.l==1") == ["a"]
    assert walk("name==p", "kind==view") == ["p", "v"]
    assert walk("nosuchfield") == []


def test_backend_tree_lists_parents_before_children(sn: MemorySnapshotter) -> None:
    chain(sn, "c1", "c2")
    sn.prepare(CTX, "top", "c2")
    assert sn.backend_tree() == [("c1", ""), ("c2", "c1"), ("top", "c2")]
    with pytest.raises(FailedPrecondition):
        sn.backend_remove("c2")
    sn.backend_remove("top")
    sn.backend_remove("c2")
    assert sn.backend_tree() == [("c1", "")]


def test_close_is_idempotent(sn: MemorySnapshotter) -> None:
    sn.close()
    sn.close()
    assert sn.closed == 2


def test_keys_must_be_strings(sn: MemorySnapshotter) -> None:
    with pytest.raises(TypeError, match="snapshot keys are strings"):
        sn.prepare(CTX, None, "")  # type: ignore[arg-type]


# -- remote mode ---------------------------------------------------------------------------------


def test_remote_target_with_the_same_parent_already_exists() -> None:
    sn = MemorySnapshotter(remote=True)
    chain(sn, "base")
    sn.prepare(CTX, "t-a", "base", labels={SNAPSHOT_REF: "t"})
    sn.commit(CTX, "t", "t-a", labels={SNAPSHOT_REF: "t"})
    with pytest.raises(AlreadyExists, match="found target"):
        sn.prepare(CTX, "t-b", "base", labels={SNAPSHOT_REF: "t"})
    assert "t-b" not in sn.snapshots
    # Another parent is another layer: the backend creates it.
    sn.prepare(CTX, "t-c", "", labels={SNAPSHOT_REF: "t"})
    assert sn.stat(CTX, "t-c").kind is Kind.ACTIVE


def test_a_plain_backend_ignores_the_ref() -> None:
    sn = MemorySnapshotter()
    sn.prepare(CTX, "t-a", "", labels={SNAPSHOT_REF: "t"})
    sn.commit(CTX, "t", "t-a", labels={SNAPSHOT_REF: "t"})
    sn.prepare(CTX, "t-b", "", labels={SNAPSHOT_REF: "t"})
    assert sn.stat(CTX, "t-b").kind is Kind.ACTIVE


def test_a_served_target_is_materialised_committed() -> None:
    sn = MemorySnapshotter(remote=True, clock=ManualClock(3.0))
    chain(sn, "base")
    sn.serve_remote("sha256:top")
    labels = {SNAPSHOT_REF: "sha256:top", "containerd.io/snapshot/x": "y"}
    with pytest.raises(AlreadyExists) as info:
        sn.prepare(CTX, "ns/9/extract-1", "base", labels=labels)
    assert str(info.value) == 'target snapshot "sha256:top": already exists'
    assert "ns/9/extract-1" not in sn.snapshots
    assert sn.stat(CTX, "sha256:top") == Info(
        "sha256:top", "base", Kind.COMMITTED, labels, 3.0, 3.0
    )
    # Only refs the backend serves are materialised.
    sn.prepare(CTX, "other", "base", labels={SNAPSHOT_REF: "sha256:other"})


def test_serve_remote_misuse_is_explained() -> None:
    with pytest.raises(ValueError, match=r"MemorySnapshotter\(remote=True\)"):
        MemorySnapshotter().serve_remote("t")
    with pytest.raises(ValueError, match="non-empty target strings"):
        MemorySnapshotter(remote=True).serve_remote("")
