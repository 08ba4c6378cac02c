"""The stricter snapshotter checks: error classes containerd's implementations use but its suite
does not pin (``snapshots/storage/metastore_test.go``, ``metadata/snapshot.go``), and the
target-ref checks (``metadata/snapshot_test.go`` ``TestSnapshotterWithRef``).

They are registered in :data:`unpacksim.model.conformance.snapshots.SNAPSHOTTER_CHECKS` under
the groups ``strict``, ``ref`` and ``ref-ns``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from unpacksim.model.conformance import require
from unpacksim.model.conformance.snapshot_subject import (
    Check,
    SnapshotterSubject,
    expect_error,
    expect_info,
    make_committed,
    opt_labels,
    ref_labels,
    walk_infos,
)
from unpacksim.model.context import ModelContext
from unpacksim.model.db import Kind
from unpacksim.model.errdefs import (
    AlreadyExists,
    ContainerdError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
)
from unpacksim.model.labels import SNAPSHOT_REF
from unpacksim.model.snapshots import Info

__all__ = ["REF_CHECKS", "REF_NS_CHECKS", "STRICT_CHECKS"]


# -- strict -----------------------------------------------------------------------------------


def check_prepare_existing_key(s: SnapshotterSubject) -> None:
    """Creating over an active, view or committed key is AlreadyExists."""
    sn, ctx, opt = s.snapshotter, s.ctx(), opt_labels(s)
    make_committed(s, "c1")
    sn.prepare(ctx, "a1", "c1", labels=opt)
    sn.view(ctx, "v1", "c1", labels=opt)
    for key in ("a1", "v1", "c1"):
        expect_error(AlreadyExists, f"Prepare over {key}", sn.prepare, ctx, key, "")
        expect_error(AlreadyExists, f"View over {key}", sn.view, ctx, key, "")


def check_prepare_missing_parent(s: SnapshotterSubject) -> None:
    """A missing parent is NotFound, and the message names it."""
    err = expect_error(
        NotFound, "Prepare on a missing parent", s.snapshotter.prepare, s.ctx(), "a", "gone"
    )
    require("gone" in str(err), f"the NotFound does not name the parent: {err}")
    expect_error(NotFound, "View on a missing parent", s.snapshotter.view, s.ctx(), "v", "gone")


def check_prepare_parent_not_committed(s: SnapshotterSubject) -> None:
    """A parent that is active or a view is InvalidArgument, and the message names it."""
    sn, ctx = s.snapshotter, s.ctx()
    sn.prepare(ctx, "active-parent", "", labels=opt_labels(s))
    sn.view(ctx, "view-parent", "", labels=opt_labels(s))
    for parent in ("active-parent", "view-parent"):
        err = expect_error(
            InvalidArgument, f"Prepare on {parent}", sn.prepare, ctx, "child", parent
        )
        require(parent in str(err), f"the InvalidArgument does not name the parent: {err}")
        expect_error(InvalidArgument, f"View on {parent}", sn.view, ctx, "child", parent)
    expect_error(NotFound, "Stat of a child that failed to be created", sn.stat, ctx, "child")


def check_commit_existing_name(s: SnapshotterSubject) -> None:
    """Commit to an existing name is AlreadyExists and leaves the active snapshot alone."""
    sn, ctx = s.snapshotter, s.ctx()
    make_committed(s, "c1")
    sn.prepare(ctx, "a1", "", labels=opt_labels(s))
    expect_error(AlreadyExists, "Commit to an existing name", sn.commit, ctx, "c1", "a1")
    expect_info(sn.stat(ctx, "a1"), Kind.ACTIVE, "", "the active key after a failed Commit")


def check_commit_not_active(s: SnapshotterSubject) -> None:
    """Commit of a committed key is FailedPrecondition; of a view, an error."""
    sn, ctx = s.snapshotter, s.ctx()
    make_committed(s, "c1")
    sn.view(ctx, "v1", "c1", labels=opt_labels(s))
    expect_error(FailedPrecondition, "Commit of a committed key", sn.commit, ctx, "c3", "c1")
    expect_error(ContainerdError, "Commit of a view", sn.commit, ctx, "c4", "v1")
    expect_error(NotFound, "Stat of a name whose Commit failed", sn.stat, ctx, "c3")


def check_missing_key(s: SnapshotterSubject) -> None:
    """Stat, Usage, Mounts, Update, Remove and Commit of a missing key are NotFound."""
    sn, ctx = s.snapshotter, s.ctx()
    expect_error(NotFound, "Stat", sn.stat, ctx, "missing")
    expect_error(NotFound, "Usage", sn.usage, ctx, "missing")
    expect_error(NotFound, "Mounts", sn.mounts, ctx, "missing")
    expect_error(NotFound, "Update", sn.update, ctx, Info("missing"))
    expect_error(NotFound, "Remove", sn.remove, ctx, "missing")
    expect_error(NotFound, "Commit", sn.commit, ctx, "name", "missing")


def check_remove_with_child(s: SnapshotterSubject) -> None:
    """Remove of a parent of an active, view or committed child is FailedPrecondition."""
    sn, ctx = s.snapshotter, s.ctx()
    make_committed(s, "c1")
    sn.prepare(ctx, "a", "c1", labels=opt_labels(s))
    sn.view(ctx, "v", "c1", labels=opt_labels(s))
    make_committed(s, "c2", "c1")
    for child in ("a", "v", "c2"):
        err = expect_error(
            FailedPrecondition, f"Remove of c1 with child {child}", sn.remove, ctx, "c1"
        )
        require("cannot remove snapshot with child" in str(err), f"unexpected message: {err}")
        sn.remove(ctx, child)
    sn.remove(ctx, "c1")
    expect_error(NotFound, "Stat of the removed parent", sn.stat, ctx, "c1")


def check_update_immutable(s: SnapshotterSubject) -> None:
    """Update of any field path but labels is InvalidArgument naming it; nothing changes."""
    sn, ctx = s.snapshotter, s.ctx()
    sn.prepare(ctx, "a1", "", labels={"keep": "me"})
    before = sn.stat(ctx, "a1")
    for path in ("parent", "name", "kind", "created", "updated", "unknown"):
        attempt = replace(before, labels={"other": "x"})
        err = expect_error(InvalidArgument, f"Update of {path}", sn.update, ctx, attempt, path)
        require(path in str(err), f"the InvalidArgument does not name {path!r}: {err}")
    require(sn.stat(ctx, "a1") == before, "a refused Update changed the snapshot")


def check_walk_bad_filter(s: SnapshotterSubject) -> None:
    """A filter that does not parse is InvalidArgument."""
    expect_error(InvalidArgument, "Walk with a bad filter", walk_infos, s, "labels.")


def check_commit_replaces_labels(s: SnapshotterSubject) -> None:
    """The committed snapshot has the Commit's labels only; empty values are dropped."""
    sn, ctx = s.snapshotter, s.ctx()
    sn.prepare(ctx, "a1", "", labels={"from-prepare": "1", "empty": ""})
    require("empty" not in sn.stat(ctx, "a1").labels, "an empty label value was stored")
    sn.commit(ctx, "c1", "a1", labels={"from-commit": "2"})
    got = sn.stat(ctx, "c1").labels
    require(got == {"from-commit": "2"}, f"committed labels {got}, expected the Commit's only")


def check_key_reuse_after_commit(s: SnapshotterSubject) -> None:
    """After Commit the active key is free again."""
    make_committed(s, "c1")
    s.snapshotter.prepare(s.ctx(), "c1-a", "c1", labels=opt_labels(s))
    expect_info(s.snapshotter.stat(s.ctx(), "c1-a"), Kind.ACTIVE, "c1", "the reused key")


def check_mounts_committed(s: SnapshotterSubject) -> None:
    """Mounts of a committed snapshot is FailedPrecondition; of an active or view, some."""
    sn, ctx = s.snapshotter, s.ctx()
    make_committed(s, "c1")
    sn.prepare(ctx, "a1", "c1", labels=opt_labels(s))
    sn.view(ctx, "v1", "c1", labels=opt_labels(s))
    require(len(sn.mounts(ctx, "a1")) >= 1 and len(sn.mounts(ctx, "v1")) >= 1, "no mounts")
    expect_error(FailedPrecondition, "Mounts of a committed snapshot", sn.mounts, ctx, "c1")


# -- ref --------------------------------------------------------------------------------------


def _refused(
    cls: type[ContainerdError], ctx: ModelContext, s: SnapshotterSubject, key: str, parent: str,
    target: str,
) -> None:  # fmt: skip
    """Require Prepare(key, parent) with ref ``target`` to raise ``cls``."""
    what = f"Prepare({key!r}, {parent!r}) with ref {target!r} in {ctx.namespace!r}"
    expect_error(cls, what, s.snapshotter.prepare, ctx, key, parent, labels=ref_labels(target))


def check_ref_target_exists(s: SnapshotterSubject) -> None:
    """Prepare for the ref of a committed snapshot with that parent: AlreadyExists, no key."""
    sn, ctx = s.snapshotter, s.ctx()
    sn.prepare(ctx, "t1-a", "", labels=ref_labels("t1"))
    sn.commit(ctx, "t1", "t1-a", labels=ref_labels("t1"))
    _refused(AlreadyExists, ctx, s, "t1-b", "", "t1")
    expect_error(NotFound, "Stat of the key of a refused Prepare", sn.stat, ctx, "t1-b")
    info = sn.stat(ctx, "t1")
    expect_info(info, Kind.COMMITTED, "", "the target")
    require(info.labels.get(SNAPSHOT_REF) == "t1", f"the target lost its ref label: {info}")


def check_ref_active_does_not_block(s: SnapshotterSubject) -> None:
    """Only a committed target counts: two actives with one ref both succeed."""
    sn, ctx = s.snapshotter, s.ctx()
    sn.prepare(ctx, "t1-a", "", labels=ref_labels("t1"))
    sn.prepare(ctx, "t1-b", "", labels=ref_labels("t1"))
    expect_info(sn.stat(ctx, "t1-b"), Kind.ACTIVE, "", "the second active")


# -- ref-ns -----------------------------------------------------------------------------------


def check_snapshotter_with_ref(s: SnapshotterSubject) -> None:
    """TestSnapshotterWithRef (``metadata/snapshot_test.go``), step for step."""
    sn, ctx, ctx2, ctx3 = s.snapshotter, s.ctx(), s.ctx("testing2"), s.ctx("testing3")
    t1, t2 = ref_labels("test1"), ref_labels("test2")
    sn.prepare(ctx, "test1-tmp", "", labels=t1)
    sn.commit(ctx, "test1", "test1-tmp", labels=t1)
    _refused(AlreadyExists, ctx2, s, "test1-tmp", "", "test1")
    sn.stat(ctx2, "test1")  # imported into testing2
    sn.prepare(ctx2, "test2-tmp", "test1", labels=t2)
    sn.prepare(ctx, "test2-tmp", "test1", labels=t2)  # not committed in the first namespace
    sn.commit(ctx2, "test2", "test2-tmp", labels=t2)
    sn.commit(ctx, "test2", "test2-tmp", labels=t2)
    _refused(AlreadyExists, ctx2, s, "test2-tmp-again", "", "test2")  # despite the parent
    _refused(AlreadyExists, ctx, s, "test2-tmp-again", "test1", "test2")
    sn.prepare(ctx3, "test2-tmp", "", labels=t2)  # no committed test2 without a parent
    sn.remove(ctx3, "test2-tmp")
    _refused(NotFound, ctx3, s, "test2-tmp", "test1", "test2")
    _refused(AlreadyExists, ctx3, s, "test1-tmp", "", "test1")
    _refused(AlreadyExists, ctx3, s, "test2-tmp", "test1", "test2")
    expect_info(sn.stat(ctx3, "test2"), Kind.COMMITTED, "test1", "test2 imported into testing3")


def check_ref_adopt_after_remove(s: SnapshotterSubject) -> None:
    """Remove leaves the backend snapshot, so the target is adopted back before any GC."""
    sn, ctx = s.snapshotter, s.ctx()
    sn.prepare(ctx, "t1-a", "", labels=ref_labels("t1"))
    sn.commit(ctx, "t1", "t1-a", labels=ref_labels("t1"))
    sn.remove(ctx, "t1")
    expect_error(NotFound, "Stat of a removed target", sn.stat, ctx, "t1")
    _refused(AlreadyExists, ctx, s, "t1-b", "", "t1")
    expect_info(sn.stat(ctx, "t1"), Kind.COMMITTED, "", "the re-adopted target")


STRICT_CHECKS: Mapping[str, Check] = {
    "strict/PrepareExistingKey": check_prepare_existing_key,
    "strict/PrepareMissingParent": check_prepare_missing_parent,
    "strict/PrepareParentNotCommitted": check_prepare_parent_not_committed,
    "strict/CommitExistingName": check_commit_existing_name,
    "strict/CommitNotActive": check_commit_not_active,
    "strict/MissingKey": check_missing_key,
    "strict/RemoveWithChild": check_remove_with_child,
    "strict/UpdateImmutable": check_update_immutable,
    "strict/WalkBadFilter": check_walk_bad_filter,
    "strict/CommitReplacesLabels": check_commit_replaces_labels,
    "strict/KeyReuseAfterCommit": check_key_reuse_after_commit,
    "strict/MountsCommitted": check_mounts_committed,
}

REF_CHECKS: Mapping[str, Check] = {
    "ref/TargetExists": check_ref_target_exists,
    "ref/ActiveDoesNotBlock": check_ref_active_does_not_block,
}

REF_NS_CHECKS: Mapping[str, Check] = {
    "ref-ns/SnapshotterWithRef": check_snapshotter_with_ref,
    "ref-ns/AdoptAfterRemove": check_ref_adopt_after_remove,
}
