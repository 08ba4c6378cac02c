"""The ContentSuite: the model passes it, and every check fails against a store that breaks it."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable

import pytest

from unpacksim.model.conformance.content import (
    CONTENT_CHECKS,
    content_harness_factory,
    run_content_suite,
)
from unpacksim.model.content import ContentStore, ContentWriter, Info, Status, WalkFunc
from unpacksim.model.content_backend import BytesReaderAt, LocalContentStore, LocalWriter
from unpacksim.model.context import ModelContext
from unpacksim.model.db import DB
from unpacksim.model.errdefs import AlreadyExists
from unpacksim.model.oci import Descriptor


def test_the_model_passes_every_check_quickly() -> None:
    start = time.perf_counter()
    results = run_content_suite()
    elapsed = time.perf_counter() - start
    failed = {r.name: r.error for r in results if not r.passed}
    assert failed == {}
    assert [r.name for r in results] == list(CONTENT_CHECKS)
    assert elapsed < 2.0, f"the suite took {elapsed:.2f}s"


def test_the_isolated_policy_passes_all_but_the_shared_checks() -> None:
    results = run_content_suite(content_harness_factory(lambda db: ContentStore(db, shared=False)))
    failed = sorted(r.name for r in results if not r.passed)
    assert failed == ["CrossNamespaceAppend", "CrossNamespaceShare"]


def test_only_selects_checks() -> None:
    results = run_content_suite(only=lambda name: name.startswith("Resume"))
    assert [r.name for r in results] == [n for n in CONTENT_CHECKS if n.startswith("Resume")]


# --- broken variants: each breaks one contract ------------------------------------------------


class _NoLabelsWriter(ContentWriter):
    def commit(
        self, ctx: ModelContext, size: int, expected: str, *, labels: dict[str, str] | None = None
    ) -> None:
        super().commit(ctx, size, expected)


class _ZeroTotalWriter(ContentWriter):
    def status(self) -> Status:
        st = super().status()
        return Status(st.ref, st.offset, 0, st.expected, st.started_at, st.updated_at)


class _SwallowExistsWriter(ContentWriter):
    def commit(
        self, ctx: ModelContext, size: int, expected: str, *, labels: dict[str, str] | None = None
    ) -> None:
        with contextlib.suppress(AlreadyExists):
            super().commit(ctx, size, expected, labels=labels)


class _NoopTruncateWriter(ContentWriter):
    def truncate(self, size: int) -> None:
        pass


class _NoCopyWriter(ContentWriter):
    def _create_and_copy(self, size: int) -> None:
        super()._create_and_copy(0)


def _with_writer(cls: type[ContentWriter]) -> Callable[[DB], ContentStore]:
    def make(db: DB) -> ContentStore:
        store = ContentStore(db)
        store.writer_class = cls
        return store

    return make


class _FreshOnReopen(ContentStore):
    def writer(
        self, ctx: ModelContext, *, ref: str, desc: Descriptor | None = None, total: int = 0
    ) -> ContentWriter:
        self.backend.abort(f"{ctx.namespace}/1/{ref}")
        return super().writer(ctx, ref=ref, desc=desc, total=total)


class _ForgetfulBackend(LocalContentStore):
    """Resumed writers hash only what is written after the resume."""

    def writer(self, ref: str, *, total: int = 0, expected: str = "") -> LocalWriter:
        writer = super().writer(ref, total=total, expected=expected)
        writer._hash = hashlib.sha256()
        return writer


class _NoLockBackend(LocalContentStore):
    def writer(self, ref: str, *, total: int = 0, expected: str = "") -> LocalWriter:
        self.unlock(ref)
        return super().writer(ref, total=total, expected=expected)


class _PaddingReader(BytesReaderAt):
    def read_at(self, offset: int, size: int) -> bytes:
        data = super().read_at(offset, size)
        return data + b"\0" * (size - len(data))


class _PaddedReads(ContentStore):
    def reader_at(self, ctx: ModelContext, desc: Descriptor) -> BytesReaderAt:
        return _PaddingReader(super().reader_at(ctx, desc).read_all())


class _UpdateNeverDeletes(ContentStore):
    def update(self, ctx: ModelContext, info: Info, *fieldpaths: str) -> Info:
        keep = [p for p in fieldpaths if not p.startswith("labels.") or p[7:] in info.labels]
        if fieldpaths and not keep:
            return self.info(ctx, info.digest)
        return super().update(ctx, info, *keep)


class _DeleteNotDirty(ContentStore):
    def delete(self, ctx: ModelContext, digest: str) -> None:
        super().delete(ctx, digest)
        self.db.dirty -= 1
        self.db.dirty_content = False


class _WalkReversed(ContentStore):
    def walk(self, ctx: ModelContext, fn: WalkFunc, *filters: str) -> None:
        found: list[Info] = []
        super().walk(ctx, found.append, *filters)
        for info in reversed(found):
            fn(info)


class _WalkIgnoresFilters(ContentStore):
    def walk(self, ctx: ModelContext, fn: WalkFunc, *filters: str) -> None:
        super().walk(ctx, fn)


class _ListIgnoresFilters(ContentStore):
    def list_statuses(self, ctx: ModelContext, *filters: str) -> list[Status]:
        return super().list_statuses(ctx)


class _AbortKeepsData(ContentStore):
    def abort(self, ctx: ModelContext, ref: str) -> None:
        ns = self.db.namespace(ctx.namespace)
        ingest = ns.ingests.get(ref)
        if ingest is not None:
            ingest.expected = "sha256:" + "0" * 64  # makes Abort believe the ingest is shared
        super().abort(ctx, ref)


class _MissingIsEmpty(ContentStore):
    def info(self, ctx: ModelContext, digest: str) -> Info:
        if digest not in self.db.namespace(ctx.namespace).content:
            return Info(digest)
        return super().info(ctx, digest)


class _UpdateIgnoresUnknown(ContentStore):
    def update(self, ctx: ModelContext, info: Info, *fieldpaths: str) -> Info:
        paths = [p for p in fieldpaths if p == "labels" or p.startswith("labels.")]
        if fieldpaths and not paths:
            return self.info(ctx, info.digest)
        return super().update(ctx, info, *paths)


class _EmptyRefAllowed(ContentStore):
    def writer(
        self, ctx: ModelContext, *, ref: str, desc: Descriptor | None = None, total: int = 0
    ) -> ContentWriter:
        return super().writer(ctx, ref=ref or "anonymous", desc=desc, total=total)


class _ExistingNotLeased(ContentStore):
    def writer(
        self, ctx: ModelContext, *, ref: str, desc: Descriptor | None = None, total: int = 0
    ) -> ContentWriter:
        if desc is not None and desc.digest in self.db.namespace(ctx.namespace).content:
            raise AlreadyExists(f"content {desc.digest}")
        return super().writer(ctx, ref=ref, desc=desc, total=total)


class _LeasedIngestExpires(ContentStore):
    def writer(
        self, ctx: ModelContext, *, ref: str, desc: Descriptor | None = None, total: int = 0
    ) -> ContentWriter:
        writer = super().writer(ctx, ref=ref, desc=desc, total=total)
        self.db.namespace(ctx.namespace).ingests[ref].expire_at = self.db.now() + 86400
        return writer


BROKEN: dict[str, tuple[Callable[[DB], ContentStore], set[str]]] = {
    "commit drops labels": (_with_writer(_NoLabelsWriter), {"Writer", "UpdateStatus", "Labels"}),
    "status total is 0": (_with_writer(_ZeroTotalWriter), {"UpdateStatus", "Resume"}),
    "commit swallows AlreadyExists": (
        _with_writer(_SwallowExistsWriter),
        {"CommitExists", "CommitErrorState"},
    ),
    "truncate does nothing": (_with_writer(_NoopTruncateWriter), {"ResumeTruncate"}),
    "append to shared content skips the copy": (
        _with_writer(_NoCopyWriter),
        {"CrossNamespaceAppend"},
    ),
    "reopen starts afresh": (
        _FreshOnReopen,
        {"Resume", "ResumeTruncate", "ResumeDiscard", "ResumeCopy", "ResumeCopySeeker"}
        | {"ResumeCopyReaderAt"},
    ),
    "resume forgets the digest": (
        lambda db: ContentStore(db, _ForgetfulBackend()),
        {"Resume", "ResumeDiscard", "ResumeCopy", "ResumeCopySeeker", "ResumeCopyReaderAt"},
    ),
    "no ref lock": (lambda db: ContentStore(db, _NoLockBackend()), {"CommitErrorState"}),
    "isolated policy": (
        lambda db: ContentStore(db, shared=False),
        {"CrossNamespaceShare", "CrossNamespaceAppend"},
    ),
    "reads past the end are padded": (_PaddedReads, {"SmallBlob"}),
    "update never deletes a label": (_UpdateNeverDeletes, {"Labels"}),
    "delete does not mark dirty": (_DeleteNotDirty, {"Delete"}),
    "walk out of order": (_WalkReversed, {"Walk", "WalkFilters"}),
    "walk ignores filters": (_WalkIgnoresFilters, {"WalkFilters"}),
    "list_statuses ignores filters": (_ListIgnoresFilters, {"ListStatuses"}),
    "abort keeps the data": (_AbortKeepsData, {"Abort"}),
    "info of a missing blob is empty": (_MissingIsEmpty, {"MissingContent", "Delete"}),
    "update ignores unknown paths": (_UpdateIgnoresUnknown, {"UpdateUnknownField"}),
    "empty ref accepted": (_EmptyRefAllowed, {"EmptyRef"}),
    "existing digest not leased": (_ExistingNotLeased, {"ContentLeased"}),
    "leased ingest expires": (_LeasedIngestExpires, {"IngestLeased"}),
}


@pytest.mark.parametrize("variant", list(BROKEN))
def test_a_broken_store_fails_the_checks_it_breaks(variant: str) -> None:
    make, targeted = BROKEN[variant]
    results = {r.name: r for r in run_content_suite(content_harness_factory(make))}
    still_passing = sorted(name for name in targeted if results[name].passed)
    assert still_passing == [], f"{variant}: these checks did not notice"


def test_every_check_is_targeted_by_some_broken_variant() -> None:
    targeted = set().union(*(checks for _, checks in BROKEN.values()))
    assert targeted == set(CONTENT_CHECKS)
