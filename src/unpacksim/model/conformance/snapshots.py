"""containerd's ``SnapshotterSuite`` as public checks (``snapshots/testsuite/testsuite.go``).

Four groups of checks, each a function of a fresh :class:`SnapshotterSubject`:

``suite``
    Every check of containerd's suite that applies without a real filesystem, under
    containerd's names: Basic (without file contents), StatActive, StatComitted,
    TransitivityTest, PreareViewFailingtest, Update, Remove, Walk (every filter of the suite),
    RemoveIntermediateSnapshot, StatInWalk (``issues.go``), CloseTwice, 128LayersMount (the
    parent chain, without contents).
``strict``
    The error classes containerd's implementations use but the suite does not pin
    (``snapshots/storage/metastore_test.go``, ``metadata/snapshot.go``).
``ref``
    Target-ref rules that a remote-mode backend and any metadata layer keep: a Prepare carrying
    ``containerd.io/snapshot.ref`` of a committed snapshot with the same parent is AlreadyExists
    and creates nothing; an active snapshot with that ref does not count.
``ref-ns``
    ``metadata/snapshot_test.go`` ``TestSnapshotterWithRef``: targets imported across
    namespaces by the metadata layer over a remote-mode backend.

Run them with :func:`run_snapshotter_suite`; :func:`backend_factory` and
:func:`metadata_factory` build subjects from this package's snapshotters (or subclasses); the
stricter groups live in ``snapshot_strict``, the subject and helpers in ``snapshot_subject``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace

from unpacksim.model.clock import format_rfc3339
from unpacksim.model.conformance import CheckResult, ConformanceFailure, require, run_suite
from unpacksim.model.conformance.snapshot_strict import REF_CHECKS, REF_NS_CHECKS, STRICT_CHECKS
from unpacksim.model.conformance.snapshot_subject import (
    SUITE_NAMESPACE,
    Check,
    SnapshotterSubject,
    backend_factory,
    expect_error,
    expect_info,
    make_committed,
    metadata_factory,
    opt_labels,
    walk_infos,
    work_key,
)
from unpacksim.model.context import ModelContext
from unpacksim.model.db import Kind
from unpacksim.model.errdefs import ContainerdError, InvalidArgument
from unpacksim.model.labels import GC_ROOT
from unpacksim.model.snapshots import Info

__all__ = [
    "GROUPS",
    "SNAPSHOTTER_CHECKS",
    "SUITE_NAMESPACE",
    "Check",
    "SnapshotterSubject",
    "backend_factory",
    "check_group",
    "metadata_factory",
    "run_snapshotter_suite",
]

#: The check groups, in the order they are registered.
GROUPS = ("suite", "strict", "ref", "ref-ns")


def check_group(name: str) -> str:
    """The group of check ``name`` (its prefix before "/", or ``suite``)."""
    head, sep, _ = name.partition("/")
    return head if sep else "suite"


def run_snapshotter_suite(
    factory: Callable[[], SnapshotterSubject],
    *,
    groups: Sequence[str] = ("suite", "strict"),
    only: Callable[[str], bool] | None = None,
) -> list[CheckResult]:
    """Run the checks of ``groups`` (optionally only those ``only`` accepts), each on a fresh
    ``factory()``; one :class:`CheckResult` per check.

    ``ref`` needs a remote-mode backend or a metadata layer; ``ref-ns`` a metadata layer over
    a remote-mode backend.  Anything satisfying ``Snapshotter`` can be a subject: build a
    :class:`SnapshotterSubject` with its clock.

    Raises:
        TypeError, ValueError: ``groups`` is a string or names an unknown group.
    """
    if isinstance(groups, str):
        raise TypeError(f"groups takes a sequence of group names, not the string {groups!r}")
    unknown = [g for g in groups if g not in GROUPS]
    if unknown:
        raise ValueError(f"unknown check groups {unknown}; the groups are {list(GROUPS)}")
    checks = {n: c for n, c in SNAPSHOTTER_CHECKS.items() if check_group(n) in groups}
    return run_suite(checks, factory, only=only)


# -- suite ------------------------------------------------------------------------------------


def check_basic(s: SnapshotterSubject) -> None:
    """checkSnapshotterBasic, without file contents."""
    sn, ctx, opt = s.snapshotter, s.ctx(), opt_labels(s)
    preparing, committed = work_key("preparing"), work_key("committed")
    require(len(sn.prepare(ctx, preparing, "", labels=opt)) >= 1, "Prepare returned no mounts")
    sn.commit(ctx, committed, preparing, labels=opt)
    si = sn.stat(ctx, committed)
    expect_info(si, Kind.COMMITTED, "", "Stat(committed)")
    expect_error(ContainerdError, "Stat of the active key after Commit", sn.stat, ctx, preparing)
    nxt, next_committed = work_key("nextlayer"), work_key("committed-next")
    require(len(sn.prepare(ctx, nxt, committed, labels=opt)) >= 1, "Prepare returned no mounts")
    expect_info(sn.stat(ctx, nxt), Kind.ACTIVE, committed, "Stat(next)")
    sn.commit(ctx, next_committed, nxt, labels=opt)
    si2 = sn.stat(ctx, next_committed)
    expect_info(si2, Kind.COMMITTED, committed, "Stat(committed-next)")
    expect_error(ContainerdError, "Stat of the second active key after Commit", sn.stat, ctx, nxt)
    walked = {info.name: info for info in walk_infos(s)}
    for expected in (si, si2):
        require(expected.name in walked, f"Walk did not report {expected.name}")
        require(
            walked[expected.name] == expected, f"Walk {walked[expected.name]} != Stat {expected}"
        )
    view = work_key("nextnextlayer")
    require(len(sn.view(ctx, view, next_committed, labels=opt)) >= 1, "View returned no mounts")
    sn.remove(ctx, view)
    err = expect_error(ContainerdError, "Remove of a parent", sn.remove, ctx, committed)
    require("remove" in str(err), f"Remove of a parent failed without saying remove: {err}")
    sn.remove(ctx, next_committed)
    sn.remove(ctx, committed)


def check_stat_active(s: SnapshotterSubject) -> None:
    """checkSnapshotterStatActive."""
    key = work_key("preparing")
    require(len(s.snapshotter.prepare(s.ctx(), key, "", labels=opt_labels(s))) >= 1, "no mounts")
    si = s.snapshotter.stat(s.ctx(), key)
    require(si.name == key, f"Stat name {si.name!r}, expected {key!r}")
    expect_info(si, Kind.ACTIVE, "", "Stat(active)")


def check_stat_committed(s: SnapshotterSubject) -> None:
    """checkSnapshotterStatCommitted."""
    key, name = work_key("preparing"), work_key("committed")
    s.snapshotter.prepare(s.ctx(), key, "", labels=opt_labels(s))
    s.snapshotter.commit(s.ctx(), name, key, labels=opt_labels(s))
    si = s.snapshotter.stat(s.ctx(), name)
    require(si.name == name, f"Stat name {si.name!r}, expected {name!r}")
    expect_info(si, Kind.COMMITTED, "", "Stat(committed)")


def check_transitivity(s: SnapshotterSubject) -> None:
    """checkSnapshotterTransitivity: A <- B."""
    sn, ctx, opt = s.snapshotter, s.ctx(), opt_labels(s)
    snap_a, snap_b = work_key("snapA"), work_key("snapB")
    sn.prepare(ctx, work_key("preparing"), "", labels=opt)
    sn.commit(ctx, snap_a, work_key("preparing"), labels=opt)
    sn.prepare(ctx, work_key("next"), snap_a, labels=opt)
    sn.commit(ctx, snap_b, work_key("next"), labels=opt)
    si_b = sn.stat(ctx, snap_b)
    require(sn.stat(ctx, snap_a).parent == "", "A has a parent")
    require(si_b.parent == snap_a, f"B's parent is {si_b.parent!r}, expected A")
    require(sn.stat(ctx, si_b.parent).parent == "", "B's parent has a parent")


def check_prepare_view(s: SnapshotterSubject) -> None:
    """checkSnapshotterPrepareView: a key in use cannot be prepared or viewed again."""
    sn, ctx, opt = s.snapshotter, s.ctx(), opt_labels(s)
    snap_a = work_key("snapA")
    sn.prepare(ctx, work_key("preparing"), "", labels=opt)
    sn.commit(ctx, snap_a, work_key("preparing"), labels=opt)
    for first, second, key in (
        (sn.prepare, sn.view, work_key("newlayer")),
        (sn.prepare, sn.prepare, work_key("prepLayer")),
        (sn.view, sn.view, work_key("viewLayer")),
    ):
        first(ctx, key, snap_a, labels=opt)
        try:
            second(ctx, key, snap_a, labels=opt)
        except ContainerdError:
            continue
        raise ConformanceFailure(f"a second create of {key} succeeded")


_BASE = (  # baseTestSnapshots: (name, kind, parent)
    ("c1", Kind.COMMITTED, ""),
    ("c2", Kind.COMMITTED, "c1"),
    ("a1", Kind.ACTIVE, "c2"),
    ("a2", Kind.ACTIVE, ""),
    ("v1", Kind.VIEW, "c2"),
    ("v2", Kind.VIEW, ""),
)


def _base_snapshots(s: SnapshotterSubject) -> None:
    sn, ctx = s.snapshotter, s.ctx()
    for name, kind, parent in _BASE:
        s.clock.advance(1)
        if kind is Kind.COMMITTED:
            make_committed(s, name, parent)
        elif kind is Kind.ACTIVE:
            sn.prepare(ctx, name, parent, labels=opt_labels(s))
        else:
            sn.view(ctx, name, parent, labels=opt_labels(s))


def check_update(s: SnapshotterSubject) -> None:
    """checkUpdate: timestamps, the three label-update forms, the immutable ``parent``."""
    t1 = s.clock.now()
    _base_snapshots(s)
    t2 = s.clock.now()
    for name, kind, parent in _BASE:
        st = s.snapshotter.stat(s.ctx(), name)
        require(t1 <= st.created <= t2, f"({name}) created {st.created} outside [{t1}, {t2}]")
        require(st.created == st.updated, f"({name}) updated {st.updated} != created")
        expect_info(st, kind, parent, f"({name})")
        require(st.name == name, f"({name}) Stat name {st.name!r}")
        _check_update_labels(s, st, kind, parent)


def _check_update_labels(s: SnapshotterSubject, st: Info, kind: Kind, parent: str) -> None:
    sn, ctx, name = s.snapshotter, s.ctx(), st.name
    root = format_rfc3339(s.clock.now())
    expected = {"l1": "v1", "l2": "v2", "l3": "v3", GC_ROOT: root}
    s.clock.advance(1)
    moved = sn.update(ctx, replace(st, parent="doesnotexist", labels=dict(expected)))
    require(moved.created == st.created, f"({name}) Update changed created")
    require(moved.updated == s.clock.now(), f"({name}) Update did not move updated to now")
    expect_info(moved, kind, parent, f"({name}) after Update")
    require(moved.name == name, f"({name}) Update returned name {moved.name!r}")
    require(moved.labels == expected, f"({name}) labels {moved.labels}, expected {expected}")
    paths = replace(moved, labels={"l1": "updated", "l4": "v4"})
    got = sn.update(ctx, paths, "labels.l1", "labels.l2").labels
    want = {"l1": "updated", "l3": "v3", GC_ROOT: root}
    require(got == want, f"({name}) labels.l1,labels.l2 update gave {got}, expected {want}")
    want = {"l4": "v4", GC_ROOT: root}
    got = sn.update(ctx, replace(moved, labels=dict(want)), "labels").labels
    require(got == want, f"({name}) labels update gave {got}, expected {want}")
    immutable = replace(moved, parent="doesnotexist")
    expect_error(InvalidArgument, f"({name}) Update of parent", sn.update, ctx, immutable, "parent")


def check_remove(s: SnapshotterSubject) -> None:
    """checkRemove: keys and names can be reused after Remove."""
    sn, ctx, opt = s.snapshotter, s.ctx(), opt_labels(s)
    sn.prepare(ctx, "committed-a", "", labels=opt)
    sn.commit(ctx, "committed-1", "committed-a", labels=opt)
    sn.prepare(ctx, "reuse-1", "committed-1", labels=opt)
    sn.remove(ctx, "reuse-1")
    sn.view(ctx, "reuse-1", "committed-1", labels=opt)
    sn.remove(ctx, "reuse-1")
    sn.prepare(ctx, "reuse-1", "", labels=opt)
    sn.remove(ctx, "committed-1")
    sn.commit(ctx, "committed-1", "reuse-1", labels=opt)


_WALK_CASES: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("a-np", "p", "a", "v", "p-wl", "a-wl", "v-wl", "a-np-wl"),
     ('labels."containerd.io/gc.root"==check-walk',)),
    (("a-np", "a", "a-wl", "a-np-wl"),
     ('kind==active,labels."containerd.io/gc.root"==check-walk',)),
    (("v", "v-wl"), ('kind==view,labels."containerd.io/gc.root"==check-walk',)),
    (("p", "p-wl"), ('kind==committed,labels."containerd.io/gc.root"==check-walk',)),
    (("p", "a-np-wl"), ("name==p", "name==a-np-wl")),
    (("a-wl",), ("name==a-wl,labels.l",)),
    (("a", "v"), ("parent==p",)),
    (("a", "v", "a-wl", "v-wl"),
     ('parent!="",labels."containerd.io/gc.root"==check-walk',)),
    (("p-wl", "a-wl", "v-wl", "a-np-wl"), ("labels.l",)),
    (("a-wl", "a-np-wl"), ("labels.l==2",)),
)  # fmt: skip


def check_walk(s: SnapshotterSubject) -> None:
    """checkWalk: every filter expectation of the suite (comma is AND, strings are OR)."""
    sn, ctx = s.snapshotter, s.ctx()
    opt = {GC_ROOT: "check-walk"}
    sn.prepare(ctx, "a-np", "", labels=opt)
    sn.prepare(ctx, "p-tmp", "", labels=opt)
    sn.commit(ctx, "p", "p-tmp", labels=opt)
    sn.prepare(ctx, "a", "p", labels=opt)
    sn.view(ctx, "v", "p", labels=opt)
    sn.prepare(ctx, "p-wl-tmp", "", labels=opt)
    sn.commit(ctx, "p-wl", "p-wl-tmp", labels={**opt, "l": "1"})
    sn.prepare(ctx, "a-wl", "p-wl", labels={**opt, "l": "2"})
    sn.view(ctx, "v-wl", "p-wl", labels={**opt, "l": "3"})
    sn.prepare(ctx, "a-np-wl", "", labels={**opt, "l": "2"})
    for i, (matches, filters) in enumerate(_WALK_CASES):
        actual = sorted(info.name for info in walk_infos(s, *filters))
        require(
            actual == sorted(matches),
            f"[{i}] Walk{list(filters)} gave {actual}, expected {sorted(matches)}",
        )


def check_remove_intermediate(s: SnapshotterSubject) -> None:
    """checkRemoveIntermediateSnapshot."""
    sn, ctx, opt = s.snapshotter, s.ctx(), opt_labels(s)
    base, inter, top = work_key("committed-base"), work_key("committed-inter"), work_key("toplayer")
    sn.prepare(ctx, work_key("base"), "", labels=opt)
    sn.commit(ctx, base, work_key("base"), labels=opt)
    sn.prepare(ctx, work_key("intermediate"), base, labels=opt)
    sn.commit(ctx, inter, work_key("intermediate"), labels=opt)
    sn.prepare(ctx, top, inter, labels=opt)
    expect_error(ContainerdError, "Remove of the intermediate layer", sn.remove, ctx, inter)
    sn.remove(ctx, top)
    sn.remove(ctx, inter)
    sn.remove(ctx, base)


def check_stat_in_walk(s: SnapshotterSubject) -> None:
    """checkStatInWalk: Stat inside the Walk callback agrees with the walked info."""
    prefix = "stats-in-walk-"
    make_committed(s, f"{prefix}c1")
    make_committed(s, f"{prefix}c2", f"{prefix}c1")
    s.snapshotter.prepare(s.ctx(), f"{prefix}a1", f"{prefix}c2", labels=opt_labels(s))
    s.snapshotter.view(s.ctx(), f"{prefix}v1", f"{prefix}c2", labels=opt_labels(s))
    seen: list[str] = []

    def fn(ctx: ModelContext, info: Info) -> None:
        if info.name.startswith(prefix):
            seen.append(info.name)
            again = s.snapshotter.stat(ctx, info.name)
            require(again == info, f"Stat in Walk gave {again}, the walk {info}")

    s.snapshotter.walk(s.ctx(), fn)
    require(len(seen) == 4, f"Walk reported {seen}, expected the 4 snapshots of this check")


def check_close_twice(s: SnapshotterSubject) -> None:
    """closeTwice."""
    make_committed(s, "closeTwice-1")
    s.snapshotter.remove(s.ctx(), "closeTwice-1")
    s.snapshotter.close()
    s.snapshotter.close()


def check_128_layers(s: SnapshotterSubject) -> None:
    """check128LayersMount, as a chain: 128 committed layers, a view of the top."""
    sn, ctx, parent = s.snapshotter, s.ctx(), ""
    for i in range(128):
        preparing = work_key(f"prepare-layer-{i}")
        mounts = sn.prepare(ctx, preparing, parent, labels=opt_labels(s))
        require(len(mounts) >= 1, f"[layer {i}] Prepare returned no mounts")
        parent, child = work_key(f"committed-{i}"), parent
        sn.commit(ctx, parent, preparing, labels=opt_labels(s))
        require(sn.stat(ctx, parent).parent == child, f"[layer {i}] wrong parent")
    require(
        len(sn.view(ctx, work_key("fullview"), parent, labels=opt_labels(s))) >= 1,
        "View: no mounts",
    )
    depth, name = 0, parent
    while name:
        name, depth = sn.stat(ctx, name).parent, depth + 1
    require(depth == 128, f"the chain under the top layer has {depth} layers, expected 128")


SUITE_CHECKS: Mapping[str, Check] = {
    "Basic": check_basic,
    "StatActive": check_stat_active,
    "StatComitted": check_stat_committed,
    "TransitivityTest": check_transitivity,
    "PreareViewFailingtest": check_prepare_view,
    "Update": check_update,
    "Remove": check_remove,
    "Walk": check_walk,
    "RemoveIntermediateSnapshot": check_remove_intermediate,
    "StatInWalk": check_stat_in_walk,
    "CloseTwice": check_close_twice,
    "128LayersMount": check_128_layers,
}

#: Every check by name; the group is the name's prefix before "/" (``suite`` if none).
SNAPSHOTTER_CHECKS: Mapping[str, Check] = {
    **SUITE_CHECKS,
    **STRICT_CHECKS,
    **REF_CHECKS,
    **REF_NS_CHECKS,
}
