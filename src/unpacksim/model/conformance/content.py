"""containerd's ``ContentSuite`` as public checks (``content/testsuite/testsuite.go``, seed).

Every check of the upstream suite that applies in memory, the cross-namespace checks of the
shared policy, and the behaviour containerd-semantics.md §3.2 derives from
``metadata/content.go`` (Delete, Walk and its filters, ListStatuses, Abort, the NotFound and
InvalidArgument cases, implicit leasing).  Upstream checks time windows around the wall
clock; here the clock is simulated, so the checks move it and compare times exactly.

    results = run_content_suite()                     # the model
    results = run_content_suite(content_harness_factory(MyStore))   # another store
"""

from __future__ import annotations

import io
import random
from collections.abc import Callable
from dataclasses import dataclass

from unpacksim.model.clock import ManualClock, format_rfc3339
from unpacksim.model.conformance import CheckResult, ConformanceFailure, require, run_suite
from unpacksim.model.content import ContentStore, Info, Store, Writer, copy_content
from unpacksim.model.content import write_blob as _write_blob
from unpacksim.model.context import Ctx, ModelContext
from unpacksim.model.db import DB
from unpacksim.model.digest import digest_of
from unpacksim.model.errdefs import ContainerdError
from unpacksim.model.labels import GC_ROOT
from unpacksim.model.leases import LeaseManager
from unpacksim.model.oci import Descriptor

__all__ = [
    "CONTENT_CHECKS",
    "SUITE_NAMESPACE",
    "ContentHarness",
    "content_harness_factory",
    "run_content_suite",
]

#: The namespace the checks run in (containerd's suite uses the test's name).
SUITE_NAMESPACE = "testsuite"
_EMPTY = digest_of(b"")


@dataclass
class ContentHarness:
    """What a check needs: the store, the DB it writes, its clock, and a lease manager.

    ``clock`` must be the clock the store takes its times from; checks advance it.
    """

    store: Store
    db: DB
    clock: ManualClock
    leases: LeaseManager
    seed: int = 0  # the last seed used for generated content

    def ctx(self, namespace: str = SUITE_NAMESPACE, lease: str | None = None) -> ModelContext:
        return Ctx(namespace, lease)

    def tick(self, seconds: float = 1.0) -> float:
        """Move the clock on; returns the new time."""
        self.clock.advance(seconds)
        return self.clock.now()


def content_harness_factory(
    store: Callable[[DB], Store] = ContentStore,
) -> Callable[[], ContentHarness]:
    """Harnesses over a fresh DB (with a manual clock) and ``store(db)``."""

    def make() -> ContentHarness:
        db = DB(ManualClock(100.0))
        assert isinstance(db.clock, ManualClock)
        return ContentHarness(store(db), db, db.clock, LeaseManager(db))

    return make


def run_content_suite(
    factory: Callable[[], ContentHarness] | None = None,
    *,
    only: Callable[[str], bool] | None = None,
) -> list[CheckResult]:
    """Run every check of :data:`CONTENT_CHECKS` on a fresh harness each."""
    return run_suite(CONTENT_CHECKS, factory or content_harness_factory(), only=only)


# --- helpers -------------------------------------------------------------------------------


def _content(h: ContentHarness, size: int) -> tuple[bytes, str]:
    """``createContent``: seeded pseudo-random bytes, the next seed of the harness each call."""
    h.seed += 1
    data = random.Random(h.seed).randbytes(size)
    return data, digest_of(data)


def _desc(digest: str = "", size: int = 0) -> Descriptor:
    return Descriptor("application/octet-stream", digest or _EMPTY, size)


def _writer(h: ContentHarness, ref: str, size: int = 0, digest: str = "", **kw: str) -> Writer:
    ctx = h.ctx(**kw)
    if digest:
        return h.store.writer(ctx, ref=ref, desc=_desc(digest, size))
    return h.store.writer(ctx, ref=ref, total=size)


def _raises(
    cls: type[ContainerdError], what: str, fn: Callable[..., object], *args: object
) -> ContainerdError:
    """Call ``fn(*args)``; it must raise ``cls`` (``what`` names the call in failures)."""
    try:
        fn(*args)
    except cls as exc:
        return exc
    except ContainerdError as exc:
        raise ConformanceFailure(f"{what}: expected {cls.__name__}, got {exc!r}") from None
    raise ConformanceFailure(f"{what}: expected {cls.__name__}, got success")


def _check_info(
    h: ContentHarness, digest: str, size: int, labels: dict[str, str], created: float,
    updated: float, namespace: str = SUITE_NAMESPACE,
) -> Info:  # fmt: skip
    info = h.store.info(h.ctx(namespace), digest)
    require(info.digest == digest, f"info digest {info.digest}, expected {digest}")
    require(info.size == size, f"info size {info.size}, expected {size}")
    require(info.created_at == created, f"created at {info.created_at}, expected {created}")
    require(info.updated_at == updated, f"updated at {info.updated_at}, expected {updated}")
    require(info.labels == labels, f"labels {info.labels}, expected {labels}")
    return info


def _check_status(
    w: Writer, ref: str, offset: int, total: int, digest: str, started: float, updated: float
) -> None:
    st = w.status()
    require(w.digest() == digest, f"writer digest {w.digest()}, expected {digest}")
    got = (st.ref, st.offset, st.total, st.started_at, st.updated_at)
    want = (ref, offset, total, started, updated)
    require(got == want, f"status (ref, offset, total, started, updated) {got}, expected {want}")


def _read(h: ContentHarness, digest: str, namespace: str = SUITE_NAMESPACE) -> bytes:
    """``content.ReadBlob``."""
    reader = h.store.reader_at(h.ctx(namespace), _desc(digest))
    try:
        return reader.read_at(0, reader.size)
    finally:
        reader.close()


def _labels(h: ContentHarness) -> dict[str, str]:
    return {GC_ROOT: format_rfc3339(h.clock.now())}


def _ref_unavailable(h: ContentHarness, ref: str) -> None:
    from unpacksim.model.errdefs import Unavailable

    _raises(Unavailable, f"a second writer on locked ref {ref!r}", _writer, h, ref)


# --- ContentSuite ----------------------------------------------------------------------------


def check_writer(h: ContentHarness) -> None:
    """checkContentStoreWriter: no, size-only, digest-only and full descriptors."""
    blobs = [_content(h, 256) for _ in range(4)]
    writers = [
        _writer(h, "c1"),
        _writer(h, "c2", size=256),
        _writer(h, "c3", digest=blobs[2][1]),
        _writer(h, "c4", size=256, digest=blobs[3][1]),
    ]
    for w, (data, digest) in zip(writers, blobs, strict=True):
        for i in range(0, len(data), 32):
            w.write(data[i : i + 32])
        commit_time, labels = h.tick(), _labels(h)
        w.commit(h.ctx(), 0, "", labels=labels)
        require(w.digest() == digest, f"commit digest {w.digest()}, expected {digest}")
        _check_info(h, digest, 256, labels, commit_time, commit_time)
        w.close()


def check_update_status(h: ContentHarness) -> None:
    """checkUpdateStatus: offset, total, digest and times after each write."""
    data, digest = _content(h, 256)
    start = h.tick()
    w = _writer(h, "c1", size=256, digest=digest)
    _check_status(w, "c1", 0, 256, _EMPTY, start, start)
    for end in (64, 192, 256):
        now = h.tick()
        w.write(data[w.status().offset : end])
        _check_status(w, "c1", end, 256, digest_of(data[:end]), start, now)
    commit_time, labels = h.tick(), _labels(h)
    w.commit(h.ctx(), 0, "", labels=labels)
    _check_info(h, digest, 256, labels, commit_time, commit_time)


def check_commit_exists(h: ContentHarness) -> None:
    """checkCommitExists: committing bytes the namespace has is AlreadyExists."""
    from unpacksim.model.errdefs import AlreadyExists

    data, digest = _content(h, 256)
    _write_blob(h.ctx(), h.store, "c1", data, _desc(digest))
    for i, expected in enumerate((digest, "")):
        w = _writer(h, f"c1-commitexists-{i}")
        w.write(data)
        _raises(AlreadyExists, f"commit #{i}", w.commit, h.ctx(), len(data), expected)
        w.close()


def check_resume(h: ContentHarness) -> None:
    """checkResumeWriter: a closed writer reopens with the same status, then completes."""
    data, digest = _content(h, 256)
    start = h.tick()
    w = _writer(h, "cb", size=256, digest=digest)
    wrote = h.tick()
    w.write(data[:128])
    _check_status(w, "cb", 128, 256, digest_of(data[:128]), start, wrote)
    w.close()
    h.tick()
    w = _writer(h, "cb", size=256, digest=digest)
    _check_status(w, "cb", 128, 256, digest_of(data[:128]), start, wrote)
    wrote = h.tick()
    w.write(data[128:])
    _check_status(w, "cb", 256, 256, digest, start, wrote)
    commit_time = h.tick()
    w.commit(h.ctx(), 0, "")
    w.close()
    _check_info(h, digest, 256, {}, commit_time, commit_time)


class _PlainReader:
    """An ``io.Reader`` only (Go wraps the reader in a struct to hide Seek and ReadAt)."""

    def __init__(self, data: bytes) -> None:
        self._inner = io.BytesIO(data)

    def read(self, size: int = -1, /) -> bytes:
        return self._inner.read(size)


class _ReaderAtReader(_PlainReader):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self._data = data

    def read_at(self, offset: int, size: int) -> bytes:
        return self._data[offset : offset + size]


def _resume_truncate(h: ContentHarness, w: Writer, data: bytes, digest: str) -> None:
    w.truncate(0)
    for i in range(0, len(data), 1024):
        w.write(data[i : i + 1024])
    w.commit(h.ctx(), len(data), digest)


def _resume_discard(h: ContentHarness, w: Writer, data: bytes, digest: str) -> None:
    written = w.status().offset
    for i in range(written, len(data), 1024):
        w.write(data[i : i + 1024])
    w.commit(h.ctx(), len(data), digest)


def _resume_copy(kind: str) -> Callable[[ContentHarness, Writer, bytes, str], None]:
    def run(h: ContentHarness, w: Writer, data: bytes, digest: str) -> None:
        reader = {"plain": _PlainReader, "seeker": io.BytesIO, "reader_at": _ReaderAtReader}[kind]
        copy_content(h.ctx(), w, reader(data), len(data), digest)

    return run


def _check_resume(
    finish: Callable[[ContentHarness, Writer, bytes, str], None],
) -> Callable[[ContentHarness], None]:
    def check(h: ContentHarness) -> None:
        for i, size in enumerate((500, 5000, 50000)):
            for j, part in enumerate((0.0, 0.1, 0.5, 0.9, 1.0)):
                data, digest = _content(h, size)
                limit, ref = int(size * part), f"ref-{i}-{j}"
                w = _writer(h, ref, size=size, digest=digest)
                w.write(data[:limit])
                w.close()
                w = _writer(h, ref, size=size, digest=digest)
                offset = w.status().offset
                require(offset == limit, f"{ref}: resumed at offset {offset}, expected {limit}")
                commit_time = h.tick()
                finish(h, w, data, digest)
                w.close()
                _check_info(h, digest, size, {}, commit_time, commit_time)

    check.__doc__ = f"checkResume({finish.__name__}): sizes 500/5000/50000, five cut points."
    return check


def check_small_blob(h: ContentHarness) -> None:
    """checkSmallBlob: reading past the end of a blob returns exactly the blob."""
    blob = b"foobar"
    digest = digest_of(blob)
    w = _writer(h, "SmallBlob", size=len(blob), digest=digest)
    w.write(blob)
    w.commit(h.ctx(), len(blob), digest)
    w.close()
    reader = h.store.reader_at(h.ctx(), _desc(digest))
    got = reader.read_at(0, len(blob) + 1)
    reader.close()
    require(got == blob, f"read {got!r}, expected {blob!r}")


def check_labels(h: ContentHarness) -> None:
    """checkLabels: Update without paths replaces; with paths sets, and deletes absent keys."""
    data, digest = _content(h, 256)
    w = _writer(h, "c1-checklabels", size=256, digest=digest)
    w.write(data)
    root = format_rfc3339(h.clock.now())
    labels = {"k1": "v1", "k2": "v2", GC_ROOT: root}
    commit_time = h.tick()
    w.commit(h.ctx(), 0, "", labels=dict(labels))
    _check_info(h, digest, 256, labels, commit_time, commit_time)
    labels = {"k1": "newvalue", "k3": "v3", GC_ROOT: root}
    update_time = h.tick()
    h.store.update(h.ctx(), Info(digest, labels=dict(labels)))
    _check_info(h, digest, 256, labels, commit_time, update_time)
    update_time = h.tick()
    h.store.update(
        h.ctx(), Info(digest, labels={"k1": "v1", GC_ROOT: root}), "labels.k3", "labels.k1"
    )
    _check_info(h, digest, 256, {"k1": "v1", GC_ROOT: root}, commit_time, update_time)


def check_commit_error_state(h: ContentHarness) -> None:
    """checkCommitErrorState: lock, AlreadyExists, FailedPrecondition, reopen after each."""
    from unpacksim.model.errdefs import AlreadyExists, FailedPrecondition

    data, digest = _content(h, 256)
    _, other = _content(h, 256)
    _write_blob(h.ctx(), h.store, "c1", data, _desc(digest))
    ref = "c1-commiterror-state"
    steps: list[tuple[bytes, int, str, type[ContainerdError] | None]] = [
        (data, len(data), digest, AlreadyExists),
        (data, len(data), "", AlreadyExists),
        (data + b"more", len(data) + 4, other, FailedPrecondition),
        (b"", len(data), "", FailedPrecondition),  # resumes the 260 bytes; wrong size
        (b"", len(data) + 4, "", None),  # resumes and commits
        (data, len(data), digest, AlreadyExists),
    ]
    for i, (payload, size, expected, error) in enumerate(steps):
        w = _writer(h, ref)
        _ref_unavailable(h, ref)
        w.write(payload)
        if error is None:
            w.commit(h.ctx(), size, expected)
        else:
            _raises(error, f"step {i} commit", w.commit, h.ctx(), size, expected)
        w.close()
    w = _writer(h, ref)
    _ref_unavailable(h, ref)
    w.close()
    _writer(h, ref).close()


def check_cross_namespace_share(h: ContentHarness) -> None:
    """checkCrossNSShare: another namespace's writer for shared content starts complete."""
    data, digest = _content(h, 1000)
    written = h.tick()
    _write_blob(h.ctx(), h.store, "ref-1000", data, _desc(digest, 1000))
    opened = h.tick()
    w = _writer(h, "ref-1000", size=1000, digest=digest, namespace="testsuite-n2")
    _check_status(w, "ref-1000", 1000, 1000, digest, opened, opened)
    commit_time = h.tick()
    w.commit(h.ctx("testsuite-n2"), 1000, digest)
    _check_info(h, digest, 1000, {}, written, written)
    _check_info(h, digest, 1000, {}, commit_time, commit_time, namespace="testsuite-n2")
    got = _read(h, digest, "testsuite-n2")
    require(got == data, "the shared blob reads back different bytes in the second namespace")


def check_cross_namespace_append(h: ContentHarness) -> None:
    """checkCrossNSAppend: appending to shared content commits a new digest."""
    data, digest = _content(h, 1000)
    _write_blob(h.ctx(), h.store, "ref-1000", data, _desc(digest, 1000))
    opened = h.tick()
    w = _writer(h, "ref-1000", size=1000, digest=digest, namespace="testsuite-n2")
    _check_status(w, "ref-1000", 1000, 1000, digest, opened, opened)
    extra = b"appended bytes"
    w.write(extra)
    commit_time = h.tick()
    w.commit(h.ctx("testsuite-n2"), 1014, digest_of(data + extra))
    appended = digest_of(data + extra)
    _check_info(h, appended, 1014, {}, commit_time, commit_time, namespace="testsuite-n2")
    require(_read(h, appended, "testsuite-n2") == data + extra, "the appended blob differs")
    require(_read(h, digest) == data, "the original blob changed")


# --- derived from metadata/content.go (containerd-semantics.md §3.2) ------------------------


def _blob(h: ContentHarness, size: int, ref: str, **labels: str) -> str:
    data, digest = _content(h, size)
    _write_blob(h.ctx(), h.store, ref, data, _desc(digest, size), labels=labels or None)
    return digest


def _walked(h: ContentHarness, *filters: str) -> list[str]:
    seen: list[str] = []
    h.store.walk(h.ctx(), lambda info: seen.append(info.digest), *filters)
    return seen


def check_delete(h: ContentHarness) -> None:
    """Delete removes the namespace's record, marks the store dirty, unleases; NotFound twice."""
    from unpacksim.model.errdefs import NotFound

    h.leases.create(h.ctx(), id="l1")
    leased = h.ctx(lease="l1")
    data, digest = _content(h, 64)
    _write_blob(leased, h.store, "d1", data, _desc(digest, 64))
    require(("content", digest) in h.leases.list_resources(h.ctx(), "l1"), "write did not lease")
    dirty = h.db.dirty
    h.store.delete(leased, digest)
    require(h.db.dirty == dirty + 1 and h.db.dirty_content, "Delete did not mark content dirty")
    require(("content", digest) not in h.leases.list_resources(h.ctx(), "l1"), "still leased")
    error = _raises(NotFound, "Info after Delete", h.store.info, h.ctx(), digest)
    require(f"content digest {digest}" in str(error), f"Info error {error} does not name it")
    _raises(NotFound, "second Delete", h.store.delete, h.ctx(), digest)


def check_walk(h: ContentHarness) -> None:
    """Walk visits every blob of the namespace, in digest order, and no other namespace's."""
    digests = sorted(_blob(h, 32, f"w{i}") for i in range(4))
    data, other = _content(h, 32)
    _write_blob(h.ctx("elsewhere"), h.store, "w-other", data, _desc(other, 32))
    seen = _walked(h)
    require(seen == digests, f"walk saw {seen}, expected {digests}")


def check_walk_filters(h: ContentHarness) -> None:
    """Walk filters: digest and labels.<k>; OR across strings, AND within; size never matches."""
    from unpacksim.model.errdefs import InvalidArgument

    a = _blob(h, 16, "fa", role="base", tier="1")
    b = _blob(h, 16, "fb", role="app", tier="1")
    c = _blob(h, 16, "fc")
    cases = {
        ("labels.role==base",): [a],
        ("labels.tier==1,labels.role!=base",): [b],
        ("labels.role==base", f"digest=={c}"): [a, c],
        ("labels.tier",): [a, b],
        ("size==16",): [],
        (): [a, b, c],
    }
    for filters, expected in cases.items():
        seen = _walked(h, *filters)
        require(seen == sorted(expected), f"walk{filters} saw {seen}, expected {sorted(expected)}")
    error = _raises(InvalidArgument, "Walk with a bad filter", _walked, h, "labels.x==")
    require("labels.x==" in str(error), f"filter error {error} does not name the input")


def check_list_statuses(h: ContentHarness) -> None:
    """ListStatuses lists open ingests by ref (field ``ref``); Status of a missing ref NotFound."""
    from unpacksim.model.errdefs import NotFound

    for ref, n in (("s-b", 10), ("s-a", 20)):
        w = _writer(h, ref, size=100)
        w.write(b"x" * n)
        w.close()
    listed = [(st.ref, st.offset) for st in h.store.list_statuses(h.ctx())]
    require(listed == [("s-a", 20), ("s-b", 10)], f"list_statuses gave {listed}")
    only = [st.ref for st in h.store.list_statuses(h.ctx(), "ref==s-b")]
    require(only == ["s-b"], f"list_statuses('ref==s-b') gave {only}")
    require(h.store.status(h.ctx(), "s-a").offset == 20, "status of s-a has the wrong offset")
    _raises(NotFound, "Status of an unknown ref", h.store.status, h.ctx(), "nope")


def check_abort(h: ContentHarness) -> None:
    """Abort drops the ingest and its data; aborting it again, or an unknown ref, NotFound."""
    from unpacksim.model.errdefs import NotFound

    w = _writer(h, "ab", size=100)
    w.write(b"y" * 40)
    w.close()
    h.store.abort(h.ctx(), "ab")
    _raises(NotFound, "Status after Abort", h.store.status, h.ctx(), "ab")
    require(not h.store.list_statuses(h.ctx()), "an aborted ingest is still listed")
    error = _raises(NotFound, "second Abort", h.store.abort, h.ctx(), "ab")
    require("reference ab" in str(error), f"Abort error {error} does not name the ref")
    w = _writer(h, "ab", size=100)
    require(w.status().offset == 0, "a writer after Abort resumed old data")
    w.close()


def check_missing_content(h: ContentHarness) -> None:
    """Info, ReaderAt and Update of a digest the namespace lacks: NotFound naming it."""
    from unpacksim.model.errdefs import NotFound

    data, digest = _content(h, 8)
    _write_blob(h.ctx("elsewhere"), h.store, "m", data, _desc(digest, 8))
    calls: dict[str, Callable[[], object]] = {
        "Info": lambda: h.store.info(h.ctx(), digest),
        "ReaderAt": lambda: h.store.reader_at(h.ctx(), _desc(digest)),
        "Update": lambda: h.store.update(h.ctx(), Info(digest, labels={"a": "b"})),
    }
    for name, call in calls.items():
        error = _raises(NotFound, f"{name} of a missing digest", call)
        require(f"content digest {digest}" in str(error), f"{name} error {error} lacks it")


def check_update_unknown_field(h: ContentHarness) -> None:
    """Update with a field path other than labels: InvalidArgument naming it, nothing changed."""
    from unpacksim.model.errdefs import InvalidArgument

    digest = _blob(h, 8, "u", keep="yes")
    update = Info(digest, size=99, labels={})
    error = _raises(InvalidArgument, "Update", h.store.update, h.ctx(), update, "size")
    require('"size"' in str(error), f"Update error {error} does not name the field path")
    info = h.store.info(h.ctx(), digest)
    require(info.labels == {"keep": "yes"} and info.size == 8, f"Update changed {info}")


def check_empty_ref(h: ContentHarness) -> None:
    """A writer with an empty ref: InvalidArgument "ref must not be empty"."""
    from unpacksim.model.errdefs import InvalidArgument

    error = _raises(InvalidArgument, "Writer with ref ''", _writer, h, "")
    require("ref must not be empty" in str(error), f"wrong message: {error}")


def check_content_leased(h: ContentHarness) -> None:
    """TestContentLeased: commit moves the lease to the content; an existing digest is leased."""
    from unpacksim.model.errdefs import AlreadyExists

    for lease in ("lease-1", "lease-2"):
        h.leases.create(h.ctx(), id=lease)
    data, digest = _content(h, 11)
    _write_blob(h.ctx(lease="lease-1"), h.store, "test-1", data, _desc(digest, 11))
    first = h.leases.list_resources(h.ctx(), "lease-1")
    require(first == [("content", digest)], f"lease-1 holds {first} after the write")
    opened = h.store.writer  # the Writer for a digest the namespace has
    desc = _desc(digest, 11)
    _raises(
        AlreadyExists, "Writer", lambda: opened(h.ctx(lease="lease-2"), ref="test-2", desc=desc)
    )
    second = h.leases.list_resources(h.ctx(), "lease-2")
    require(second == [("content", digest)], f"lease-2 holds {second}, expected the content")


def check_ingest_leased(h: ContentHarness) -> None:
    """TestIngestLeased: an ingest under a lease is leased and never expires; Abort unleases."""
    h.leases.create(h.ctx(), id="lease-1")
    w = _writer(h, "test-1", size=11, lease="lease-1")
    w.close()
    held = h.leases.list_resources(h.ctx(), "lease-1")
    require(held == [("ingests", "test-1")], f"lease-1 holds {held}, expected the ingest")
    record = h.db.namespace(SUITE_NAMESPACE).ingests["test-1"]
    require(record.expire_at is None, f"a leased ingest expires at {record.expire_at}")
    h.store.abort(h.ctx(lease="lease-1"), "test-1")
    held = h.leases.list_resources(h.ctx(), "lease-1")
    require(held == [], f"lease-1 still holds {held} after Abort")
    opened = h.clock.now()
    _writer(h, "test-2", size=11).close()
    expire = h.db.namespace(SUITE_NAMESPACE).ingests["test-2"].expire_at
    require(expire == opened + 24 * 3600, f"an unleased ingest expires at {expire}")


CONTENT_CHECKS: dict[str, Callable[[ContentHarness], None]] = {
    "Writer": check_writer,
    "UpdateStatus": check_update_status,
    "CommitExists": check_commit_exists,
    "Resume": check_resume,
    "ResumeTruncate": _check_resume(_resume_truncate),
    "ResumeDiscard": _check_resume(_resume_discard),
    "ResumeCopy": _check_resume(_resume_copy("plain")),
    "ResumeCopySeeker": _check_resume(_resume_copy("seeker")),
    "ResumeCopyReaderAt": _check_resume(_resume_copy("reader_at")),
    "SmallBlob": check_small_blob,
    "Labels": check_labels,
    "CommitErrorState": check_commit_error_state,
    "CrossNamespaceShare": check_cross_namespace_share,
    "CrossNamespaceAppend": check_cross_namespace_append,
    "Delete": check_delete,
    "Walk": check_walk,
    "WalkFilters": check_walk_filters,
    "ListStatuses": check_list_statuses,
    "Abort": check_abort,
    "MissingContent": check_missing_content,
    "UpdateUnknownField": check_update_unknown_field,
    "EmptyRef": check_empty_ref,
    "ContentLeased": check_content_leased,
    "IngestLeased": check_ingest_leased,
}
