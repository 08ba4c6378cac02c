"""The snapshotter conformance suite: the model passes it, broken variants fail the right checks."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

import pytest

from unpacksim.model.conformance import CheckResult
from unpacksim.model.conformance.snapshots import (
    GROUPS,
    SNAPSHOTTER_CHECKS,
    SnapshotterSubject,
    backend_factory,
    check_group,
    metadata_factory,
    run_snapshotter_suite,
)
from unpacksim.model.context import ModelContext
from unpacksim.model.errdefs import FailedPrecondition, InvalidArgument, Unknown
from unpacksim.model.snapshots import (
    Info,
    MemorySnapshotter,
    MetadataSnapshotter,
    Mount,
    PendingCreate,
    WalkFunc,
)

Factory = Callable[[], SnapshotterSubject]


def failed(results: list[CheckResult]) -> set[str]:
    return {r.name for r in results if not r.passed}


def names(group: str) -> set[str]:
    return {n for n in SNAPSHOTTER_CHECKS if check_group(n) == group}


MODELS: dict[str, tuple[Factory, tuple[str, ...]]] = {
    "backend": (backend_factory(), ("suite", "strict")),
    "backend-remote": (backend_factory(remote=True), ("suite", "strict", "ref")),
    "metadata": (metadata_factory(), ("suite", "strict", "ref")),
    "metadata-remote": (metadata_factory(remote=True), GROUPS),
    "metadata-remote-lease-on-exists": (
        metadata_factory(remote=True, lease_on_exists=True),
        GROUPS,
    ),
}


@pytest.mark.parametrize("model", list(MODELS))
def test_the_model_passes_every_check(model: str) -> None:
    factory, groups = MODELS[model]
    results = run_snapshotter_suite(factory, groups=groups)
    assert {r.name for r in results} == {n for g in groups for n in names(g)}
    assert [(r.name, r.error) for r in results if not r.passed] == []


def test_the_suite_has_containerds_checks_under_containerds_names() -> None:
    assert names("suite") == {
        "Basic",
        "StatActive",
        "StatComitted",
        "TransitivityTest",
        "PreareViewFailingtest",
        "Update",
        "Remove",
        "Walk",
        "RemoveIntermediateSnapshot",
        "StatInWalk",
        "CloseTwice",
        "128LayersMount",
    }
    assert len(names("strict")) >= 10 and names("ref") and names("ref-ns")


def test_ref_namespaces_need_a_remote_backend() -> None:
    # A plain backend never reports the target, so nothing is imported across namespaces.
    results = run_snapshotter_suite(metadata_factory(remote=False), groups=("ref-ns",))
    assert failed(results) == names("ref-ns")


def test_a_plain_backend_ignores_refs() -> None:
    results = run_snapshotter_suite(backend_factory(remote=False), groups=("ref",))
    assert failed(results) == {"ref/TargetExists"}


def test_bad_groups_are_refused_with_the_known_ones_named() -> None:
    with pytest.raises(ValueError, match=r"unknown check groups \['nope'\].*'strict'"):
        run_snapshotter_suite(backend_factory(), groups=("suite", "nope"))
    with pytest.raises(TypeError, match="not the string"):
        run_snapshotter_suite(backend_factory(), groups="strict")


def test_only_selects_checks() -> None:
    results = run_snapshotter_suite(backend_factory(), only=lambda n: n.startswith("Stat"))
    assert [r.name for r in results] == ["StatActive", "StatComitted", "StatInWalk"]


# -- broken backends: each subclass breaks one contract ------------------------------------------


class RemovesParents(MemorySnapshotter):
    """Remove ignores children."""

    def remove(self, ctx: ModelContext, key: str) -> None:
        snap = self.snapshots.get(key)
        if snap is not None:
            for child in list(snap.children):
                self.snapshots[child].parent = ""
            snap.children.clear()
        super().remove(ctx, key)


class KeepsKeyOnCommit(MemorySnapshotter):
    """Commit leaves the active key behind."""

    def commit(
        self,
        ctx: ModelContext,
        name: str,
        key: str,
        *,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        active = self.snapshots.get(key)
        super().commit(ctx, name, key, labels=labels)
        if active is not None:
            self.snapshots[key] = active


class UpdateIgnoresPaths(MemorySnapshotter):
    """Update always replaces the whole label map."""

    def update(self, ctx: ModelContext, info: Info, *fieldpaths: str) -> Info:
        return super().update(ctx, info)


class StaleUpdated(MemorySnapshotter):
    """Update does not move Updated."""

    def update(self, ctx: ModelContext, info: Info, *fieldpaths: str) -> Info:
        before = self.snapshots[info.name].updated if info.name in self.snapshots else 0.0
        result = super().update(ctx, info, *fieldpaths)
        self.snapshots[info.name].updated = before
        return replace(result, updated=before)


class WalkIgnoresFilters(MemorySnapshotter):
    def walk(self, ctx: ModelContext, fn: WalkFunc, *filters: str) -> None:
        super().walk(ctx, fn)


class UnknownOnExistingKey(MemorySnapshotter):
    """A key in use is refused, but with the wrong class."""

    def prepare(
        self,
        ctx: ModelContext,
        key: str,
        parent: str = "",
        *,
        labels: Mapping[str, str] | None = None,
    ) -> list[Mount]:
        if key in self.snapshots:
            raise Unknown(f"key {key} taken")
        return super().prepare(ctx, key, parent, labels=labels)


class ActiveParentAllowed(MemorySnapshotter):
    def _check_parent(self, parent: str) -> None:
        if parent and parent not in self.snapshots:
            super()._check_parent(parent)


class CloseOnce(MemorySnapshotter):
    def close(self) -> None:
        if self.closed:
            raise FailedPrecondition("already closed")
        super().close()


class CommitInheritsLabels(MemorySnapshotter):
    def commit(
        self,
        ctx: ModelContext,
        name: str,
        key: str,
        *,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        inherited = dict(self.snapshots[key].labels) if key in self.snapshots else {}
        super().commit(ctx, name, key, labels={**inherited, **(labels or {})})


class MountsEverything(MemorySnapshotter):
    def mounts(self, ctx: ModelContext, key: str) -> list[Mount]:
        return self._mounts(self._get(key, "snapshot does not exist"))


class MissingIsInvalid(MemorySnapshotter):
    def stat(self, ctx: ModelContext, key: str) -> Info:
        if key not in self.snapshots:
            raise InvalidArgument(f"bad key {key}")
        return super().stat(ctx, key)


class IgnoresRefs(MemorySnapshotter):
    def _find_target(self, target: str, parent: str) -> str:
        return ""


BROKEN_BACKENDS: list[tuple[type[MemorySnapshotter], set[str]]] = [
    (RemovesParents, {"Basic", "RemoveIntermediateSnapshot", "strict/RemoveWithChild"}),
    # The keys left behind also show up in Walk.
    (KeepsKeyOnCommit, {"Basic", "strict/KeyReuseAfterCommit", "Walk", "StatInWalk"}),
    (UpdateIgnoresPaths, {"Update", "strict/UpdateImmutable"}),
    (StaleUpdated, {"Update"}),
    (WalkIgnoresFilters, {"Walk", "strict/WalkBadFilter"}),
    (UnknownOnExistingKey, {"strict/PrepareExistingKey"}),
    (ActiveParentAllowed, {"strict/PrepareParentNotCommitted"}),
    (CloseOnce, {"CloseTwice"}),
    (CommitInheritsLabels, {"strict/CommitReplacesLabels"}),
    (MountsEverything, {"strict/MountsCommitted"}),
    # The loose suite only asks for an error; every strict Stat-is-NotFound step notices.
    (MissingIsInvalid, {"strict/MissingKey", "strict/CommitNotActive", "strict/RemoveWithChild",
                        "strict/PrepareParentNotCommitted", "ref/TargetExists"}),
    (IgnoresRefs, {"ref/TargetExists"}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("variant", "targeted"), BROKEN_BACKENDS, ids=[v.__name__ for v, _ in BROKEN_BACKENDS]
)
def test_a_broken_backend_fails_exactly_the_targeted_checks(
    variant: type[MemorySnapshotter], targeted: set[str]
) -> None:
    results = run_snapshotter_suite(
        backend_factory(remote=True, backend=variant), groups=("suite", "strict", "ref")
    )
    assert failed(results) == targeted


def test_the_loose_suite_accepts_a_wrong_error_class_and_strict_does_not() -> None:
    results = {
        r.name: r for r in run_snapshotter_suite(backend_factory(backend=UnknownOnExistingKey))
    }
    assert results["PreareViewFailingtest"].passed
    assert not results["strict/PrepareExistingKey"].passed
    assert "expected AlreadyExists, got Unknown" in results["strict/PrepareExistingKey"].error


# -- broken metadata layers ----------------------------------------------------------------------


class LayerRemovesParents(MetadataSnapshotter):
    def remove(self, ctx: ModelContext, key: str) -> None:
        record = (self._records(ctx.namespace) or {}).get(key)
        if record is not None:
            record.children.clear()
        super().remove(ctx, key)


class LayerKeepsChildLink(MetadataSnapshotter):
    """Commit adds the name to the parent's children but leaves the key there too."""

    def commit(
        self,
        ctx: ModelContext,
        name: str,
        key: str,
        *,
        labels: Mapping[str, str] | None = None,
    ) -> None:
        records = self._records(ctx.namespace) or {}
        parent = records[key].parent if key in records else ""
        super().commit(ctx, name, key, labels=labels)
        if parent:
            records[parent].children[key] = None


class LayerWalksWithoutLabels(MetadataSnapshotter):
    def walk(self, ctx: ModelContext, fn: WalkFunc, *filters: str) -> None:
        super().walk(ctx, lambda c, info: fn(c, replace(info, labels={})), *filters)


class LayerNeverAdopts(MetadataSnapshotter):
    """The remote path is missing: every backend AlreadyExists is Unknown."""

    def _adopt(self, ctx: ModelContext, pending: PendingCreate) -> None:
        raise Unknown("unexpected error from snapshotter")


BROKEN_LAYERS: list[tuple[type[MetadataSnapshotter], set[str]]] = [
    (LayerRemovesParents, {"Basic", "RemoveIntermediateSnapshot", "strict/RemoveWithChild"}),
    (LayerKeepsChildLink, {"Basic", "RemoveIntermediateSnapshot", "strict/RemoveWithChild"}),
    # Filters still see the labels, so only the Walk-equals-Stat checks notice.
    (LayerWalksWithoutLabels, {"Basic", "StatInWalk"}),
    (LayerNeverAdopts, {"ref-ns/SnapshotterWithRef", "ref-ns/AdoptAfterRemove"}),
]


@pytest.mark.parametrize(
    ("variant", "targeted"), BROKEN_LAYERS, ids=[v.__name__ for v, _ in BROKEN_LAYERS]
)
def test_a_broken_metadata_layer_fails_exactly_the_targeted_checks(
    variant: type[MetadataSnapshotter], targeted: set[str]
) -> None:
    results = run_snapshotter_suite(metadata_factory(remote=True, layer=variant), groups=GROUPS)
    assert failed(results) == targeted


def test_a_failure_says_what_broke() -> None:
    results = run_snapshotter_suite(
        backend_factory(backend=WalkIgnoresFilters), only=lambda n: n == "Walk"
    )
    assert results[0].error.startswith("[1] Walk['kind==active,")


def test_checks_see_a_fresh_subject_each() -> None:
    made: list[SnapshotterSubject] = []
    factory = backend_factory()

    def counting() -> SnapshotterSubject:
        made.append(factory())
        return made[-1]

    results = run_snapshotter_suite(counting, groups=("suite",))
    assert len(made) == len(results) == len(names("suite"))
    assert len({id(s.snapshotter) for s in made}) == len(made)
