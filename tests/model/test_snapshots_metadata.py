"""The metadata snapshotter (``metadata/snapshot.go`` at the seed) over the in-memory backend."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from unpacksim.model.clock import ManualClock
from unpacksim.model.context import Ctx, ModelContext
from unpacksim.model.db import DB, LeaseRecord
from unpacksim.model.errdefs import (
    AlreadyExists,
    ContainerdError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    Unknown,
)
from unpacksim.model.labels import GC_ROOT, SNAPSHOT_REF
from unpacksim.model.snapshots import (
    Info,
    Kind,
    MemorySnapshotter,
    MetadataSnapshotter,
    Mount,
    PendingCreate,
)

SN = "native"
RES = "snapshots/native"


@dataclass
class World:
    db: DB
    clock: ManualClock
    backend: MemorySnapshotter
    sn: MetadataSnapshotter
    mutations: list[bool]

    def lease(self, lease_id: str = "l1", ns: str = "default") -> Ctx:
        self.db.namespace(ns).leases[lease_id] = LeaseRecord(lease_id)
        return Ctx(ns, lease_id)

    def leased(self, lease_id: str = "l1", ns: str = "default") -> list[tuple[str, str]]:
        return list(self.db.namespace(ns).leases[lease_id].resources)

    def records(self, ns: str = "default") -> dict[str, object]:
        return dict(self.db.namespace(ns).snapshotter(SN))


def make_world(*, remote: bool = False, lease_on_exists: bool = False) -> World:
    clock = ManualClock(100.0)
    db = DB(clock)
    backend = MemorySnapshotter(clock=clock, remote=remote)
    sn = MetadataSnapshotter(db, SN, backend, lease_on_exists=lease_on_exists)
    mutations: list[bool] = []
    db.listeners.append(mutations.append)
    return World(db, clock, backend, sn, mutations)


@pytest.fixture
def w() -> World:
    return make_world()


CTX = Ctx("default")


def commit_chain(w: World, *names: str, ctx: Ctx = CTX) -> None:
    parent = ""
    for name in names:
        w.sn.prepare(ctx, f"{name}-a", parent)
        w.sn.commit(ctx, name, f"{name}-a")
        parent = name


def test_the_backend_is_registered_once(w: World) -> None:
    assert w.db.snapshot_backends[SN] is w.backend
    MetadataSnapshotter(w.db, SN, w.backend)  # the same backend again is fine
    with pytest.raises(ValueError, match="already has another backend"):
        MetadataSnapshotter(w.db, SN, MemorySnapshotter())


def test_records_name_backend_keys_per_namespace(w: World) -> None:
    w.sn.prepare(CTX, "a", "", labels={"containerd.io/snapshot/x": "1", "other": "2"})
    record = w.db.namespace("default").snapshotter(SN)["a"]
    assert (record.kind, record.backend_key, record.created_at) == (
        Kind.ACTIVE,
        "default/1/a",
        100.0,
    )
    # Only inherited labels reach the backend; the record keeps them all.
    assert w.backend.stat(CTX, "default/1/a").labels == {"containerd.io/snapshot/x": "1"}
    assert record.labels == {"containerd.io/snapshot/x": "1", "other": "2"}
    w.clock.advance(1)
    w.sn.commit(CTX, "c", "a", labels={"l": "v"})
    committed = w.db.namespace("default").snapshotter(SN)["c"]
    assert (committed.kind, committed.backend_key, committed.labels) == (
        Kind.COMMITTED,
        "default/2/c",
        {"l": "v"},
    )
    assert w.backend.backend_tree() == [("default/2/c", "")]


def test_backend_key_numbers_are_per_namespace_and_snapshotter(w: World) -> None:
    # metadata/snapshot.go: NextSequence on the bucket v1/<ns>/snapshots/<snapshotter>.
    overlay = MetadataSnapshotter(w.db, "overlayfs", MemorySnapshotter(clock=w.clock))
    w.sn.prepare(CTX, "a")
    w.sn.prepare(Ctx("ns2"), "a")
    overlay.prepare(CTX, "a")
    w.sn.prepare(CTX, "b")
    w.sn.commit(Ctx("ns2"), "c", "a")
    keys = [
        w.db.namespace("default").snapshotter(SN)["a"].backend_key,
        w.db.namespace("ns2").snapshotter(SN)["c"].backend_key,
        w.db.namespace("default").snapshotter("overlayfs")["a"].backend_key,
        w.db.namespace("default").snapshotter(SN)["b"].backend_key,
    ]
    assert keys == ["default/1/a", "ns2/2/c", "default/1/a", "default/2/b"]


def test_a_namespace_is_required(w: World) -> None:
    with pytest.raises(FailedPrecondition, match="namespace is required"):
        w.sn.prepare(Ctx(""), "a")


def test_a_refused_create_writes_nothing(w: World) -> None:
    with pytest.raises(NotFound):
        w.sn.prepare(Ctx("fresh"), "a", "missing")
    assert "fresh" not in w.db.namespaces
    assert w.mutations == []


# -- bad input names the bad value ---------------------------------------------------------------


def test_a_parent_that_is_active_is_invalid_argument_naming_it(w: World) -> None:
    w.sn.prepare(CTX, "active-parent")
    with pytest.raises(InvalidArgument) as info:
        w.sn.prepare(CTX, "child", "active-parent")
    # containerd names the parent by its backend key.
    assert str(info.value) == (
        'failed to create snapshot: parent "default/1/active-parent" is not committed snapshot: '
        "invalid argument"
    )
    assert "child" not in w.records()


def test_an_unknown_field_path_is_invalid_argument_naming_it(w: World) -> None:
    w.sn.prepare(CTX, "a", labels={"k": "v"})
    with pytest.raises(InvalidArgument) as info:
        w.sn.update(CTX, Info("a", labels={"k": "x"}), "labels.k", "parent")
    assert str(info.value) == 'cannot update "parent" field on snapshot "a": invalid argument'
    assert w.sn.stat(CTX, "a").labels == {"k": "v"}


@pytest.mark.parametrize(
    ("op", "message"),
    [
        (lambda w: w.sn.stat(CTX, "missing"), "snapshot missing does not exist: not found"),
        (lambda w: w.sn.usage(CTX, "missing"), "snapshot missing does not exist: not found"),
        (lambda w: w.sn.mounts(CTX, "missing"), "snapshot missing does not exist: not found"),
        (lambda w: w.sn.remove(CTX, "missing"), "snapshot missing does not exist: not found"),
        (
            lambda w: w.sn.update(CTX, Info("missing")),
            "snapshot missing does not exist: not found",
        ),
        (lambda w: w.sn.commit(CTX, "n", "missing"), "snapshot missing does not exist: not found"),
        (
            lambda w: w.sn.prepare(CTX, "k", "missing"),
            "parent snapshot missing does not exist: not found",
        ),
    ],
)
def test_a_missing_key_is_not_found_naming_it(
    w: World, op: Callable[[World], object], message: str
) -> None:
    w.sn.prepare(CTX, "present")  # the snapshotter bucket exists
    with pytest.raises(NotFound) as info:
        op(w)
    assert str(info.value) == message


def test_other_invalid_inputs(w: World) -> None:
    w.sn.prepare(CTX, "a")
    with pytest.raises(InvalidArgument) as info:
        w.sn.update(CTX, Info(""))
    assert str(info.value) == ": invalid argument"  # errors.Wrap(ErrInvalidArgument, "")
    with pytest.raises(
        InvalidArgument, match=r"greater than maximum size \(4096 bytes\), key: big"
    ):
        w.sn.prepare(CTX, "b", labels={"big": "x" * 4096})
    with pytest.raises(TypeError, match="snapshot keys are strings"):
        w.sn.prepare(CTX, 7)  # type: ignore[arg-type]


def test_empty_keys_fail_where_bolt_refuses_them(w: World) -> None:
    # metadata/snapshot.go: the empty key passes the first transaction and the backend, then
    # bolt refuses it in the second (Put under a lease, else CreateBucket); the backend
    # snapshot is cleaned up.  Commit's CreateBucket(name) refuses an empty name.
    for ctx, message in ((CTX, "bucket name required"), (w.lease(), "key required")):
        with pytest.raises(Unknown) as info:
            w.sn.prepare(ctx, "")
        assert str(info.value) == f"{message}: unknown"
    assert w.records() == {} and w.backend.backend_tree() == []
    w.sn.prepare(CTX, "a")
    with pytest.raises(Unknown, match=r"^bucket name required: unknown$"):
        w.sn.commit(CTX, "", "a")
    assert list(w.records()) == ["a"]


# -- create ----------------------------------------------------------------------------------------


def test_existing_target_or_key_is_already_exists_without_a_lease_at_the_seed(w: World) -> None:
    commit_chain(w, "t")
    w.sn.prepare(CTX, "k")
    ctx = w.lease()
    with pytest.raises(AlreadyExists) as target:
        w.sn.prepare(ctx, "k2", labels={SNAPSHOT_REF: "t"})
    with pytest.raises(AlreadyExists) as key:
        w.sn.prepare(ctx, "k")
    assert str(target.value) == 'target snapshot "t": already exists'
    assert str(key.value) == 'snapshot "k": already exists'
    assert w.leased() == []


def test_lease_on_exists_leases_what_already_exists() -> None:
    w = make_world(lease_on_exists=True)
    commit_chain(w, "t", "n")
    w.sn.prepare(CTX, "k")
    w.sn.prepare(CTX, "k2")
    ctx = w.lease()
    with pytest.raises(AlreadyExists, match='target snapshot "t"'):
        w.sn.prepare(ctx, "x", labels={SNAPSHOT_REF: "t"})
    with pytest.raises(AlreadyExists, match='snapshot "k"'):
        w.sn.view(ctx, "k")
    with pytest.raises(AlreadyExists, match='snapshot "n"'):
        w.sn.commit(ctx, "n", "k2")
    assert w.leased() == [(RES, "t"), (RES, "k"), (RES, "n")]
    # The AlreadyExists paths check the lease first.
    gone = Ctx("default", "gone")
    for op in (lambda: w.sn.prepare(gone, "k"), lambda: w.sn.commit(gone, "n", "k2")):
        with pytest.raises(NotFound, match="lease does not exist"):
            op()


def test_leases_follow_prepare_commit_and_remove(w: World) -> None:
    ctx = w.lease()
    w.sn.prepare(ctx, "a")
    assert w.leased() == [(RES, "a")]
    w.sn.commit(ctx, "c", "a")
    assert w.leased() == [(RES, "c")]
    w.sn.remove(ctx, "c")
    assert w.leased() == []


def test_a_deleted_lease_fails_the_create_and_the_backend_snapshot_is_removed(w: World) -> None:
    ctx = w.lease()
    del w.db.namespace("default").leases["l1"]
    with pytest.raises(NotFound) as info:
        w.sn.prepare(ctx, "a")
    assert str(info.value) == "lease does not exist: not found"
    assert w.records() == {}
    assert w.backend.backend_tree() == []


def test_mutations_are_reported_per_committed_transaction(w: World) -> None:
    w.sn.prepare(CTX, "a")  # two transactions
    with pytest.raises(AlreadyExists):
        w.sn.prepare(CTX, "a")  # rolled back at the seed: no callback
    w.sn.commit(CTX, "c", "a")
    w.sn.update(CTX, Info("c", labels={"x": "y"}))
    assert w.mutations == [False, False, False, False]
    w.sn.remove(CTX, "c")
    w.sn.prepare(CTX, "b")
    # After a deletion every write reports dirty until GC resets db.dirty (DB.Update).
    assert w.mutations[4:] == [True, True, True]
    assert (w.db.dirty, list(w.db.dirty_snapshotters)) == (1, [SN])


def test_remove_leaves_the_backend_snapshot_for_gc(w: World) -> None:
    commit_chain(w, "base")
    w.sn.prepare(CTX, "a", "base")
    backend_key = w.db.namespace("default").snapshotter(SN)["a"].backend_key
    with pytest.raises(FailedPrecondition, match="cannot remove snapshot with child"):
        w.sn.remove(CTX, "base")
    w.sn.remove(CTX, "a")
    assert "a" not in w.records()
    assert w.db.namespace("default").snapshotter(SN)["base"].children == {}
    assert w.backend.stat(CTX, backend_key).kind is Kind.ACTIVE
    assert [k for k, _ in w.backend.backend_tree()] == ["default/2/base", backend_key]


# -- the gaps between the three steps --------------------------------------------------------------


def test_the_steps_run_in_order_only(w: World) -> None:
    pending = w.sn.create_begin(CTX, "a")
    with pytest.raises(RuntimeError, match=r"call create_backend\(\) first"):
        w.sn.create_finish(CTX, pending)
    w.sn.create_backend(CTX, pending)
    with pytest.raises(RuntimeError, match="each step once per create"):
        w.sn.create_backend(CTX, pending)
    assert w.sn.create_finish(CTX, pending) == w.backend.mounts(CTX, "default/1/a")
    with pytest.raises(TypeError, match="takes the PendingCreate"):
        w.sn.create_backend(CTX, "a")  # type: ignore[arg-type]


def test_a_key_created_in_the_gap_is_already_exists_and_the_loser_is_cleaned_up(w: World) -> None:
    ctx = w.lease()
    first = w.sn.create_begin(ctx, "k")
    second = w.sn.create_begin(ctx, "k")
    for pending in (first, second):
        w.sn.create_backend(ctx, pending)
    w.sn.create_finish(ctx, first)
    with pytest.raises(AlreadyExists) as info:
        w.sn.create_finish(ctx, second)
    assert str(info.value) == 'snapshot "k": already exists'
    assert w.backend.backend_tree() == [(first.backend_key, "")]
    assert w.leased() == [(RES, "k")]


def test_a_parent_removed_in_the_gap_is_not_found(w: World) -> None:
    commit_chain(w, "p")
    pending = w.sn.create_begin(CTX, "child", "p")
    w.sn.create_backend(CTX, pending)
    w.sn.remove(CTX, "p")
    with pytest.raises(NotFound, match="parent snapshot p does not exist"):
        w.sn.create_finish(CTX, pending)
    assert pending.backend_key not in dict(w.backend.backend_tree())


def test_a_parent_replaced_in_the_gap_is_a_mismatched_parent(w: World) -> None:
    commit_chain(w, "p")
    pending = w.sn.create_begin(CTX, "child", "p")
    w.sn.create_backend(CTX, pending)
    w.sn.remove(CTX, "p")
    commit_chain(w, "p")  # same name, another backend snapshot
    with pytest.raises(InvalidArgument) as info:
        w.sn.create_finish(CTX, pending)
    assert str(info.value) == "mismatched parent p from target : invalid argument"
    assert "child" not in w.records()


# -- the remote-snapshotter adoption path ------------------------------------------------------


def test_a_target_the_remote_backend_serves_is_adopted() -> None:
    w = make_world(remote=True)
    commit_chain(w, "base")
    w.backend.serve_remote("sha256:top")
    ctx = w.lease()
    labels = {SNAPSHOT_REF: "sha256:top", GC_ROOT: "keep", "containerd.io/snapshot/x": "1"}
    with pytest.raises(AlreadyExists) as info:
        w.sn.prepare(ctx, "extract-1 sha256:top", "base", labels=labels)
    assert str(info.value) == 'target snapshot "sha256:top" from snapshotter: already exists'
    record = w.db.namespace("default").snapshotter(SN)["sha256:top"]
    assert (record.kind, record.parent, record.backend_key) == (
        Kind.COMMITTED,
        "base",
        "sha256:top",
    )
    assert "extract-1 sha256:top" not in w.records()
    assert w.sn.stat(ctx, "sha256:top").labels == labels
    assert w.leased() == [(RES, "sha256:top")]
    assert w.db.namespace("default").snapshotter(SN)["base"].children == {"sha256:top": None}
    # Now in this namespace: the next Prepare stops at the record.
    with pytest.raises(AlreadyExists, match=r'^target snapshot "sha256:top": already exists$'):
        w.sn.prepare(ctx, "extract-2 sha256:top", "base", labels=labels)


def test_a_target_committed_in_another_namespace_is_imported() -> None:
    w = make_world(remote=True)
    ref = {SNAPSHOT_REF: "t"}
    w.sn.prepare(CTX, "t-a", labels=ref)
    w.sn.commit(CTX, "t", "t-a", labels=ref)
    other = Ctx("other")
    with pytest.raises(AlreadyExists, match="from snapshotter"):
        w.sn.prepare(other, "t-a", labels=ref)
    ours = w.db.namespace("default").snapshotter(SN)["t"]
    theirs = w.db.namespace("other").snapshotter(SN)["t"]
    assert theirs.backend_key == ours.backend_key == "default/2/t"


def test_an_adoption_recorded_in_the_gap_keeps_the_target_error() -> None:
    w = make_world(remote=True)
    w.backend.serve_remote("t")
    first = w.sn.create_begin(CTX, "k1", labels={SNAPSHOT_REF: "t"})
    second = w.sn.create_begin(CTX, "k2", labels={SNAPSHOT_REF: "t"})
    w.sn.create_backend(CTX, first)
    w.sn.create_backend(CTX, second)
    for pending in (first, second):
        with pytest.raises(AlreadyExists, match="from snapshotter"):
            w.sn.create_finish(CTX, pending)
    assert list(w.records()) == ["t"]
    assert w.backend.backend_tree() == [("t", "")]


class AlwaysExists(MemorySnapshotter):
    """A backend whose Prepare always says AlreadyExists and holds no matching target."""

    def prepare(
        self,
        ctx: ModelContext,
        key: str,
        parent: str = "",
        *,
        labels: Mapping[str, str] | None = None,
    ) -> list[Mount]:
        raise AlreadyExists("found target")


def test_backend_already_exists_without_a_match_or_a_target() -> None:
    db = DB()
    backend = AlwaysExists(remote=True)
    backend.view(CTX, "unrelated")  # the backend's buckets exist: its Walk finds nothing
    sn = MetadataSnapshotter(db, SN, backend)
    with pytest.raises(NotFound) as missing:
        sn.prepare(CTX, "k", labels={SNAPSHOT_REF: "t"})
    assert str(missing.value) == 'target snapshot "t" in backend: not found'
    with pytest.raises(Unknown) as unknown:
        sn.prepare(CTX, "k")
    assert str(unknown.value) == (
        "unexpected error from snapshotter: found target: already exists: unknown"
    )
    assert db.namespace("default").snapshotter(SN) == {}


def test_a_walk_of_a_backend_that_never_created_anything_fails() -> None:
    # snapshots/storage WalkInfo: the "v1" bucket is created by the first create.
    sn = MetadataSnapshotter(DB(), SN, AlwaysExists(remote=True))
    with pytest.raises(NotFound) as info:
        sn.prepare(CTX, "k", labels={SNAPSHOT_REF: "t"})
    assert str(info.value) == "failed walking backend snapshots: bucket does not exist: not found"


def test_a_bad_target_fails_the_backend_walk_as_invalid_argument() -> None:
    db = DB()
    sn = MetadataSnapshotter(db, SN, AlwaysExists(remote=True))
    with pytest.raises(InvalidArgument, match=r"^failed walking backend snapshots: filters: "):
        sn.prepare(CTX, "k", labels={SNAPSHOT_REF: "a b"})


# -- reads, Update, Walk ---------------------------------------------------------------------------


def test_stat_overlays_the_record_on_the_backend(w: World) -> None:
    w.sn.prepare(CTX, "a", labels={"containerd.io/snapshot/x": "1", "k": "v"})
    w.clock.advance(3)
    info = w.sn.update(CTX, Info("a", labels={"k": "w", "containerd.io/snapshot/x": "2"}), "labels")
    assert info == Info(
        "a", "", Kind.ACTIVE, {"containerd.io/snapshot/x": "2", "k": "w"}, 100.0, 103.0
    )
    assert w.sn.stat(CTX, "a") == info
    assert w.backend.stat(CTX, "default/1/a").labels == {"containerd.io/snapshot/x": "2"}
    w.sn.update(CTX, Info("a", labels={}), "labels.containerd.io/snapshot/x")
    assert w.backend.stat(CTX, "default/1/a").labels == {}


def test_stat_of_a_record_whose_backend_snapshot_is_gone(w: World) -> None:
    w.sn.prepare(CTX, "a")
    w.backend.backend_remove("default/1/a")  # metadata/backend skew (#3051)
    with pytest.raises(NotFound, match=r"^snapshot does not exist"):
        w.sn.stat(CTX, "a")
    seen: list[str] = []
    w.sn.walk(CTX, lambda c, i: seen.append(i.name))
    assert seen == []


def test_commit_rolls_back_when_the_backend_refuses(w: World) -> None:
    commit_chain(w, "base")
    w.sn.view(CTX, "v", "base")
    before = w.records()
    with pytest.raises(FailedPrecondition, match='snapshot "default/3/v" is not active'):
        w.sn.commit(CTX, "c", "v")
    assert w.records() == before
    assert w.db.namespace("default").snapshotter(SN)["base"].children == {"v": None}
    # The rolled-back Commit used up no sequence number; Create's first transaction, which
    # commits before the backend refuses, does (metadata/snapshot.go).
    with pytest.raises(InvalidArgument, match="is not committed snapshot"):
        w.sn.prepare(CTX, "x", "v")
    w.sn.prepare(CTX, "y")
    assert w.db.namespace("default").snapshotter(SN)["y"].backend_key == "default/5/y"


def test_walk_reads_in_name_order_in_batches_and_tolerates_removal(w: World) -> None:
    for i in range(250):
        w.sn.prepare(CTX, f"k{i:03d}")
    seen: list[str] = []

    def fn(ctx: ModelContext, info: Info) -> None:
        seen.append(info.name)
        if info.name == "k050":
            w.sn.remove(ctx, "k150")  # in a later batch: never reported
            w.sn.remove(ctx, "k060")  # already read in this batch; its backend Stat works

    w.sn.walk(CTX, fn)
    assert seen == [f"k{i:03d}" for i in range(250) if i != 150]


def test_walk_filters_see_the_overlaid_info(w: World) -> None:
    commit_chain(w, "p")
    w.sn.prepare(CTX, "a", "p", labels={"l": "1"})
    w.sn.view(CTX, "v", "p")
    seen: list[str] = []
    w.sn.walk(CTX, lambda c, i: seen.append(i.name), "kind==active", "kind==committed")
    assert seen == ["a", "p"]
    seen.clear()
    w.sn.walk(CTX, lambda c, i: seen.append(i.name), "parent==p,labels.l==1")
    assert seen == ["a"]
    seen.clear()
    w.sn.walk(Ctx("elsewhere"), lambda c, i: seen.append(i.name))
    assert seen == []


def test_usage_mounts_and_close_go_to_the_backend(w: World) -> None:
    commit_chain(w, "p")
    mounts = w.sn.view(CTX, "v", "p")
    assert w.sn.mounts(CTX, "v") == mounts
    assert w.sn.usage(CTX, "p").size == 0
    with pytest.raises(FailedPrecondition, match="not active or view"):
        w.sn.mounts(CTX, "p")
    w.sn.close()
    w.sn.close()
    assert w.backend.closed == 2


def test_pending_records_the_request(w: World) -> None:
    pending = w.sn.create_begin(CTX, "a", labels={SNAPSHOT_REF: "t"}, readonly=True)
    assert isinstance(pending, PendingCreate)
    assert (pending.target, pending.kind, pending.stage) == ("t", Kind.VIEW, "begun")


# -- property: records and backend stay consistent under any sequence of calls -----------------

_NAMES = ("a", "b", "c")
_NAMESPACES = ("default", "other")


def _names(w: World, ns: str, *, committed: bool = False) -> list[str]:
    records = w.db.namespace(ns).snapshotter(SN)
    return sorted(n for n, r in records.items() if r.kind is Kind.COMMITTED or not committed)


def _step(w: World, data: st.DataObject) -> None:
    """One call, its arguments drawn from what exists so that the calls interact."""
    op = data.draw(st.sampled_from(("layer", "target", "prepare", "view", "remove")))
    ctx = Ctx(data.draw(st.sampled_from(_NAMESPACES)))
    if op == "remove":
        w.sn.remove(ctx, data.draw(st.sampled_from(["missing", *_names(w, ctx.namespace)])))
        return
    name = data.draw(st.sampled_from(_NAMES))
    # Mostly committed parents; sometimes any record, to reach the refusals too.
    parents = _names(w, ctx.namespace, committed=data.draw(st.booleans()))
    parent = data.draw(st.sampled_from(["", *parents]))
    ref = {SNAPSHOT_REF: name}
    if op == "layer":  # as the unpacker does: the committed name is its own ref
        w.sn.prepare(ctx, f"{name}-a", parent)
        w.sn.commit(ctx, name, f"{name}-a", labels=ref)
    elif op == "target":
        w.sn.prepare(ctx, f"extract {name}", parent, labels=ref)
    elif op == "prepare":
        w.sn.prepare(ctx, name, parent)
    else:
        w.sn.view(ctx, name, parent)


def _check_consistent(w: World) -> None:
    for ns in w.db.namespaces.values():
        records = ns.snapshotter(SN)
        for name, record in records.items():
            backend = w.backend.snapshots[record.backend_key]  # Remove never touches the backend
            assert backend.kind is record.kind
            parent_key = records[record.parent].backend_key if record.parent else ""
            assert backend.parent == parent_key
            children = [n for n, r in records.items() if r.parent == name]
            assert sorted(record.children) == sorted(children)


@given(st.data())
def test_records_and_backend_agree_after_any_calls(data: st.DataObject) -> None:
    w = make_world(remote=True)
    for _ in range(data.draw(st.integers(min_value=1, max_value=20))):
        with contextlib.suppress(ContainerdError):  # anything else fails the test
            _step(w, data)
        _check_consistent(w)
